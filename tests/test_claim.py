"""Processes that fill one experiment folder together: per-run locks, decisions made again under the lock,
--shard, and the last process to finish computing the analyses. Real processes where concurrency is the point."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bnexp.claim import Claim, claimed, plan_actions
from bnexp.cli import app
from bnexp.config import expand_grid
from bnexp.errors import BnexpError
from bnexp.job import Shard
from bnexp.lock import Busy, experiment_lock, holder, run_lock
from bnexp.preflight import dry_run
from bnexp.progress import PlainReporter
from bnexp.runner import run_experiment
from bnexp.store import RunDir
from bnexp.validate import load as load_config

from .conftest import TINY_CONFIG, bnexp_process, in_process, run_args, run_files, wait_for_lines

BN_RUN, PLAIN_RUN = "lenet5-bn_lr1x_s0", "lenet5_lr1x_s0"


def _claim(folder: str, log: str, barrier) -> None:
    barrier.wait()
    try:
        with run_lock(Path(folder)):
            with open(log, "a") as f:
                f.write(f"in {os.getpid()}\n")
            time.sleep(0.05)
            with open(log, "a") as f:
                f.write(f"out {os.getpid()}\n")
    except Busy:
        pass


def test_concurrent_claims_never_hold_one_run_together(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for trial in range(20):
        log = tmp_path / f"log{trial}"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_claim, args=(str(tmp_path), str(log), barrier)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        lines = log.read_text().splitlines() if log.exists() else []
        depth = 0
        for line in lines:  # every "in" is followed by its own "out" before the next "in"
            depth += 1 if line.startswith("in") else -1
            assert depth in (0, 1), lines
        assert lines, "nobody got the lock"


def test_writers_share_the_experiment_lock_and_the_one_alone_cleans_up(tmp_path):
    cleaned = []
    with (
        experiment_lock(tmp_path, lambda: cleaned.append("first")) as first,
        experiment_lock(tmp_path, lambda: cleaned.append("second")) as second,
    ):
        assert first and not second and cleaned == ["first"]


def test_the_run_lock_is_not_fooled_by_pids_or_directories(tmp_path):
    (tmp_path / ".lock").write_text(f"{os.getppid()}\n")  # a live, unrelated process's pid
    assert holder(tmp_path) is None
    with run_lock(tmp_path):
        assert holder(tmp_path).startswith(f"pid {os.getpid()} on ")
        with pytest.raises(Busy, match="being written by another bnexp process"), run_lock(tmp_path):
            pass
    assert holder(tmp_path) is None
    (tmp_path / ".lock").unlink()
    (tmp_path / ".lock").mkdir()
    with pytest.raises(BnexpError, match="not bnexp's lock file"), run_lock(tmp_path):
        pass


def test_a_run_is_decided_again_under_its_lock(setup, tmp_path):
    """The plan said start; meanwhile another process finished the run (or holds it): this one leaves it."""
    config, root = setup
    cfg = load_config(config, ["epochs=1"])
    plans = {p.name: p for p in expand_grid(cfg)}
    out_dir = tmp_path / "resume"
    assert plan_actions(list(plans.values()), out_dir, False) == {BN_RUN: "start", PLAIN_RUN: "start"}
    assert in_process(config, root, tmp_path, ["epochs=1", "models=[{name: lenet5, norm: batchnorm}]"]) == 0
    with claimed(plans[BN_RUN], Claim(out_dir)) as action:
        assert action == "skip (completed)"
    with run_lock(out_dir / BN_RUN), claimed(plans[BN_RUN], Claim(out_dir)) as action:
        assert action.startswith(f"busy: being written by another bnexp process (pid {os.getpid()}")
    since = time.time() - 60  # --restart spares what another process finished after this command started
    with claimed(plans[BN_RUN], Claim(out_dir, restart=True, since=since)) as action:
        assert action == "skip (finished by another process)"
    with claimed(plans[BN_RUN], Claim(out_dir, restart=True, since=time.time() + 60)) as action:
        assert action == "start"
    # ranks started by bnexp's launcher restart what the launcher said to start, a list of several runs
    with claimed(plans[BN_RUN], Claim(out_dir, restart_runs=(PLAIN_RUN, BN_RUN))) as action:
        assert action == "start"


def test_a_process_with_another_config_is_refused_while_the_first_still_plans(setup, tmp_path):
    """Issue 37, item 8: two configs started together on one --out both trained (experiment.yaml, which the second
    compared with, was not written yet). The first writer records its config while alone in the folder."""
    from bnexp.lock import experiment_lock
    from bnexp.runner import _first_writer

    config, root = setup
    first = load_config(config, ["epochs=1"])
    out_dir = tmp_path / "resume"
    out_dir.mkdir()
    with experiment_lock(out_dir, lambda: _first_writer(out_dir, first)) as alone:  # planning, nothing written yet
        assert alone and not (out_dir / "experiment.yaml").exists()
        with pytest.raises(BnexpError, match="being written by another bnexp process with a different config"):
            in_process(config, root, tmp_path, ["epochs=2"])
    assert not [p for p in out_dir.iterdir() if not p.name.startswith(".")]  # the second trained nothing


def test_a_second_process_leaves_the_busy_run_to_the_first_and_trains_the_rest(setup, tmp_path, capsys):
    """The second bnexp is this test's own process."""
    config, root = setup
    first = bnexp_process(config, root, tmp_path, "--set", "epochs=15")
    try:
        wait_for_lines(tmp_path / "resume" / BN_RUN / "metrics.jsonl", 3, first)
        with pytest.raises(BnexpError, match="being written by another bnexp process with a different config"):
            in_process(config, root, tmp_path, ["epochs=15", "models[1].dropout=0.5"])
        capsys.readouterr()
        assert in_process(config, root, tmp_path, ["epochs=15"]) == 0
        second = capsys.readouterr().out
        busy = f"{BN_RUN}: busy: being written by another bnexp process (pid {first.pid} on"
        assert busy in second and "busy runs: lenet5-bn_lr1x_s0" in second, second
        assert RunDir(tmp_path / "resume" / PLAIN_RUN).summary()["status"] == "completed"
        assert f"{BN_RUN}: training" not in second  # left to the first
    finally:
        first.kill()
        first.wait()


def test_shards_fill_one_folder_together_and_a_killed_shard_resumes_bitwise(setup, tmp_path, capsys):
    """Two shards at once, one SIGKILLed mid-run and started again (here, as the last pass over the whole plan):
    the folder ends as one process leaves it."""
    config, root = setup
    overrides = ["seeds=[0, 1]", "epochs=2"]
    extra = [f"--set={o}" for o in overrides]
    assert in_process(config, root, tmp_path / "reference", overrides) == 0
    out = tmp_path / "sharded"
    shards = [bnexp_process(config, root, out, *extra, "--shard", f"{i}/2") for i in range(2)]
    first = out / "resume" / BN_RUN  # the plan's first run: shard 0's
    deadline = time.time() + 120
    while not (first / "checkpoint.pt").is_file() and time.time() < deadline and shards[0].poll() is None:
        time.sleep(0.01)
    shards[0].send_signal(signal.SIGKILL)
    shards[0].wait()
    output, _ = shards[1].communicate(timeout=300)
    assert shards[1].returncode == 0, output
    assert f"{BN_RUN}: training" not in output and output.count(": training for") == 2  # its own two runs
    capsys.readouterr()
    assert in_process(config, root, out, overrides, shard=Shard(0, 2)) == 0
    assert "resuming at step" in capsys.readouterr().out
    assert in_process(config, root, out, overrides) == 0
    assert "resume: 4 completed ->" in capsys.readouterr().out
    assert run_files(out) == run_files(tmp_path / "reference")


@pytest.mark.parametrize("text", ["2/2", "a/2", "1/0", "-1/2", "1", "0/2/3", "²/3", "1/٣"])  # issue 37: not ASCII
def test_a_bad_shard_is_a_usage_error(setup, tmp_path, text):
    config, root = setup
    result = CliRunner().invoke(app, [*run_args(config, root, tmp_path), "--shard", text, "--dry-run"])
    assert result.exit_code == 2 and "--shard" in result.stderr and not (tmp_path / "resume").exists()


@pytest.mark.parametrize("dry", [[], ["--dry-run"]])
def test_restarting_a_run_of_another_shard_is_a_usage_error(setup, tmp_path, dry):
    """Issue 37, item 22: the restart would be dropped silently; it is refused, naming the shard that owns it."""
    config, root = setup
    args = [*run_args(config, root, tmp_path), "--shard", "0/2", "--restart-run", PLAIN_RUN, *dry]  # plan index 1
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and f"--restart-run {PLAIN_RUN}: that run is shard 1/2's" in result.stderr
    assert not (tmp_path / "resume").exists()


def test_the_dry_run_shows_shards_and_busy_runs(setup, tmp_path, capsys):
    config, root = setup
    cfg = load_config(config, ["seeds=[0, 1, 2]"])
    names = [p.name for p in expand_grid(cfg)]
    assert len(names) == 6 and names.index(PLAIN_RUN) % 2 == 1  # shard 1's own
    (tmp_path / "resume" / PLAIN_RUN).mkdir(parents=True)
    with run_lock(tmp_path / "resume" / PLAIN_RUN):
        dry_run(cfg, tmp_path, PlainReporter(), shard=Shard(1, 2), data_root=root)
    out = capsys.readouterr().out
    assert "dry run: 2 to start, 0 to resume, 0 finished, 1 busy in another process, 3 in another shard" in out
    assert "busy: being written by another bnexp process" in out


def test_the_last_shard_to_finish_computes_the_analyses(tiny_root, tmp_path, capsys):
    config = tmp_path / "a.yaml"
    config.write_text(
        TINY_CONFIG.replace("epochs: 2", "epochs: 1") + "keep_final_weights: true\nanalyses: {scale_invariance: true}\n"
    )
    cfg = load_config(config, ["models=[{name: lenet5, norm: batchnorm}]", "seeds=[0, 1]"])
    analysis = tmp_path / "out" / "tiny" / "lenet5-bn_lr1x_s0" / "analyses" / "scale_invariance.json"
    assert run_experiment(cfg, tmp_path / "out", PlainReporter(), tiny_root, shard=Shard(0, 2)) == 0
    assert "analyses: 1 of 2 runs are with other processes" in capsys.readouterr().out and not analysis.exists()
    assert run_experiment(cfg, tmp_path / "out", PlainReporter(), tiny_root, shard=Shard(1, 2)) == 0
    assert analysis.is_file()


def test_a_lock_that_cannot_be_signed_or_is_a_fifo_never_takes_the_command_down(setup, tmp_path, monkeypatch):
    """Issue 37, item 18: a full disk when signing a run's .lock ended the whole command (OSError 28, exit 1); a
    FIFO at .lock gave an OSError 22 traceback."""
    from bnexp import lock

    fifo = tmp_path / "fifo-run"
    fifo.mkdir()
    os.mkfifo(fifo / ".lock")
    with pytest.raises(BnexpError, match="not bnexp's lock file"), run_lock(fifo):
        pass

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lock.os, "pwrite", full)
    config, root = setup
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0  # the signature is only for messages
