"""Reliability: resume bit for bit after SIGKILL, skip finished runs, refuse changed configs,
clean stops on SIGINT/SIGTERM, failures isolated. Uses real subprocesses of `python -m bnexp`."""

from __future__ import annotations

import errno
import os
import re
import signal

import pytest
import torch
import yaml

from bnexp import store
from bnexp.store import RunDir
from bnexp.train import torch_threads

from .conftest import bnexp_process, in_process, lock_is_free, run_files, two_cores, wait_for_lines


def test_runs_stopped_again_and_again_resume_bitwise_identical(setup, reference, tmp_path, capsys):
    """Each process resumes from what the one before left: SIGKILL 2 and 17 log lines into the BN run (of its
    68), SIGTERM at 40 (a clean stop: exit 143, the run interrupted), SIGKILL 25 lines into the second run (past
    its first checkpoint). The last resume runs in this process: what it checks is the files, not the process."""
    config, root = setup
    out = tmp_path / "stopped"
    bn, plain = "lenet5-bn_lr1x_s0", "lenet5_lr1x_s0"
    for run, lines, sig in (
        (bn, 2, signal.SIGKILL),
        (bn, 17, signal.SIGKILL),
        (bn, 40, signal.SIGTERM),
        (plain, 25, signal.SIGKILL),
    ):
        proc = bnexp_process(config, root, out)
        wait_for_lines(out / "resume" / run / "metrics.jsonl", lines, proc)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL), output
        if sig == signal.SIGTERM:
            assert RunDir(out / "resume" / run).summary()["status"] == "interrupted"
        assert lock_is_free(out / "resume")  # released by the process, or by the kernel for a killed one
    assert in_process(config, root, out) == 0
    assert "resuming at step" in capsys.readouterr().out
    assert run_files(out) == reference


def test_sigint_stops_with_checkpoint_and_resumes_identically(setup, reference, tmp_path, capsys):
    config, root = setup
    out = tmp_path / "interrupted"
    proc = bnexp_process(config, root, out)
    wait_for_lines(out / "resume" / "lenet5-bn_lr1x_s0" / "metrics.jsonl", 10, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    run = RunDir(out / "resume" / "lenet5-bn_lr1x_s0")
    assert run.summary()["status"] == "interrupted" and (run.path / "checkpoint.pt").is_file()
    assert not (out / "resume" / "lenet5_lr1x_s0").exists()  # the next run did not start
    assert lock_is_free(out / "resume")
    assert in_process(config, root, out) == 0
    assert "resuming at step" in capsys.readouterr().out
    assert run_files(out) == reference


def test_finished_runs_are_skipped(setup, tmp_path, capsys):
    config, root = setup
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0
    metrics = tmp_path / "resume" / "lenet5-bn_lr1x_s0" / "metrics.jsonl"
    before = metrics.stat().st_mtime_ns, metrics.read_bytes()
    capsys.readouterr()
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0
    out = capsys.readouterr().out
    assert out.count("skip (completed)") == 4  # two in the plan, two as the runs go by
    assert (metrics.stat().st_mtime_ns, metrics.read_bytes()) == before


def test_changed_config_is_refused_until_restart(setup, tmp_path, capsys):
    config, root = setup
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0
    from bnexp.errors import BnexpError

    with pytest.raises(BnexpError) as e:
        in_process(config, root, tmp_path, ["epochs=1", "optimizer.lr=0.1"])
    assert "lenet5-bn_lr1x_s0: lr: 0.05 -> 0.1" in str(e.value) and "optimizer.lr: 0.05 -> 0.1" in str(e.value)
    assert "--restart" in str(e.value)
    assert in_process(config, root, tmp_path, ["epochs=1", "optimizer.lr=0.1"], restart=True) == 0
    assert RunDir(tmp_path / "resume" / "lenet5-bn_lr1x_s0").config()["lr"] == 0.1
    # editing the description does not invalidate anything
    assert in_process(config, root, tmp_path, ["epochs=1", "optimizer.lr=0.1", "description=new words"]) == 0


def test_settings_that_do_not_change_a_run_never_invalidate_it(setup, tmp_path, capsys):
    """eval_batch_size only reorders the test-loss sum, and a key added to the schema after a run was
    recorded counts as its default; changing a key that matters is still refused."""
    config, root = setup
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0
    recorded = tmp_path / "resume" / "lenet5-bn_lr1x_s0" / "config.yaml"
    old = yaml.safe_load(recorded.read_text())
    recorded.write_text(yaml.safe_dump({k: v for k, v in old.items() if k not in ("precision", "compile")}))
    capsys.readouterr()
    assert in_process(config, root, tmp_path, ["epochs=1", "eval_batch_size=77"]) == 0
    assert capsys.readouterr().out.count("skip (completed)") == 4
    from bnexp.errors import BnexpError

    with pytest.raises(BnexpError, match=r"lenet5-bn_lr1x_s0: precision: None -> 'bf16'"):
        in_process(config, root, tmp_path, ["epochs=1", "precision=bf16"])


def test_keep_checkpoints(setup, tmp_path):
    config, root = setup
    in_process(config, root, tmp_path, ["epochs=2", "models=[{name: lenet5}]"], keep_checkpoints=True)
    kept = sorted(p.name for p in (tmp_path / "resume" / "lenet5-bn_lr1x_s0").glob("checkpoint-step*.pt"))
    assert kept == ["checkpoint-step00000047.pt", "checkpoint-step00000094.pt"]


def test_disk_full_fails_that_run_keeps_its_checkpoint_and_the_others(setup, tmp_path, monkeypatch):
    config, root = setup
    real = store.RunDir.log

    def log(self, record):
        if self.name == "lenet5_lr1x_s0" and record.get("step", 0) > 50:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, record)

    monkeypatch.setattr(store.RunDir, "log", log)
    assert in_process(config, root, tmp_path) == 1
    failed = RunDir(tmp_path / "resume" / "lenet5_lr1x_s0")
    assert failed.summary()["status"] == "failed" and "No space left" in failed.summary()["error"]
    assert (failed.path / "checkpoint.pt").is_file()
    assert RunDir(tmp_path / "resume" / "lenet5-bn_lr1x_s0").summary()["status"] == "completed"
    monkeypatch.setattr(store.RunDir, "log", real)
    assert in_process(config, root, tmp_path) == 0  # and it resumes from that checkpoint
    assert RunDir(tmp_path / "resume" / "lenet5_lr1x_s0").summary()["status"] == "completed"


def test_jobs_run_concurrently_and_match_sequential_runs(setup, tmp_path, capfd):
    config, root = setup
    overrides = ["epochs=1"]
    with two_cores():
        assert in_process(config, root, tmp_path / "parallel", overrides, jobs=2) == 0
    output = capfd.readouterr().out
    for run in ("lenet5-bn_lr1x_s0", "lenet5_lr1x_s0"):  # one line per finished run, with its accuracy and progress
        ended = [line for line in output.splitlines() if line.startswith(f"{run}: completed")]
        assert len(ended) == 1 and "final test_acc" in ended[0] and "[experiment: " in ended[0], output
    assert in_process(config, root, tmp_path / "sequential", overrides) == 0
    for run in ("lenet5-bn_lr1x_s0", "lenet5_lr1x_s0"):
        a, b = (RunDir(tmp_path / kind / "resume" / run) for kind in ("parallel", "sequential"))
        assert a.summary()["status"] == "completed" and a.summary()["device"]["torch_threads"] == 1
        assert (a.path / "metrics.jsonl").read_bytes() == (b.path / "metrics.jsonl").read_bytes()


def test_jobs_gives_a_lone_run_its_share_of_the_cores_too(setup, tmp_path):
    """--jobs 2 on 2 cores is 1 thread per run, also when one run is left: the threads decide its numbers."""
    config, root = setup
    overrides = ["epochs=1", "models=[{name: lenet5, norm: none}]"]
    with two_cores():
        assert in_process(config, root, tmp_path / "parallel", overrides, jobs=2) == 0
    summary = RunDir(tmp_path / "parallel" / "resume" / "lenet5_lr1x_s0").summary()
    assert summary["segments"][0]["torch_threads"] == 1 and summary["device"]["torch_threads"] == 1


def test_jobs_stop_on_sigterm_and_resume(setup, tmp_path, capsys):
    config, root = setup
    proc = bnexp_process(config, root, tmp_path, "--jobs", "2")
    for run in ("lenet5_lr1x_s0", "lenet5-bn_lr1x_s0"):  # both under way, so both have a step to resume at
        wait_for_lines(tmp_path / "resume" / run / "metrics.jsonl", 5, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    statuses = {RunDir(p).summary()["status"] for p in (tmp_path / "resume").iterdir() if p.is_dir()}
    assert statuses == {"interrupted"}
    assert in_process(config, root, tmp_path) == 0  # both resumed here, one after the other
    assert capsys.readouterr().out.count("resuming at step") == 2


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_grid_over_dataset_keys_trains_each_cell_on_its_own_data(tiny_config, tiny_root, tmp_path, jobs):
    """Issue 19, item 1: each cell loads its own data (with --jobs too), so the cells' results differ as their
    recorded configs say."""
    overrides = [
        "models=[{name: lenet5, norm: none}]",
        'grid={"dataset.normalize": [unit, standardize]}',
        "epochs=1",
        "seeds=[0]",
    ]
    assert in_process(tiny_config, tiny_root, tmp_path, overrides, jobs=jobs) == 0
    unit, standard = (RunDir(tmp_path / "tiny" / f"lenet5_normalize{v}_lr1x_s0") for v in ("unit", "standardize"))
    assert [r.config()["dataset"]["normalize"] for r in (unit, standard)] == ["unit", "standardize"]
    assert (unit.path / "metrics.jsonl").read_bytes() != (standard.path / "metrics.jsonl").read_bytes()
    # the control: the unit cell trains exactly as a plain run with unit inputs, at the same thread count (each of
    # 2 workers computes with 1 thread)
    same = tmp_path / "same"
    plain = [overrides[0], "epochs=1", "seeds=[0]", "dataset.normalize=unit"]
    with torch_threads(torch.get_num_threads() if jobs == 1 else 1):
        assert in_process(tiny_config, tiny_root, same, plain) == 0
    control = same / "tiny" / "lenet5_lr1x_s0" / "metrics.jsonl"
    assert control.read_bytes() == (unit.path / "metrics.jsonl").read_bytes()


def test_a_grid_over_device_uses_each_cells_device(tiny_config, tiny_root, tmp_path, monkeypatch):
    """Issue 19, item 1: the device of each cell is asked for (only CPUs here: the calls show it)."""
    from bnexp import job as planning

    asked = []
    real = planning.select_device
    monkeypatch.setattr(planning, "select_device", lambda name, *a: asked.append(name) or real("cpu"))
    overrides = [
        "models=[{name: lenet5, norm: none}]",
        "grid={device: [cpu, auto]}",
        "steps=2",
        "epochs=null",
        "eval_every=2",
        "seeds=[0]",
    ]
    assert in_process(tiny_config, tiny_root, tmp_path, overrides) == 0
    assert "auto" in asked and len(list((tmp_path / "tiny").glob("lenet5_device*"))) == 2


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.mark.parametrize(
    "grid", ["grid={dataset.name: [fashion_mnist, mnist]}", pytest.param("grid={device: [cpu, cuda]}", marks=NO_CUDA)]
)
def test_a_grid_cell_whose_data_or_device_is_missing_stops_the_run_before_anything(
    tiny_config, tiny_root, tmp_path, grid
):
    """Issue 37, item 13: the earlier cells trained, experiment.yaml was written, then exit 2 partway."""
    from bnexp.errors import BnexpError

    overrides = ["models=[{name: lenet5, norm: none}]", grid, "epochs=1", "seeds=[0]"]  # tiny_root: no MNIST
    with pytest.raises(BnexpError, match=r"mnist not found|cuda"):
        in_process(tiny_config, tiny_root, tmp_path, overrides)
    assert not (tmp_path / "tiny").exists()


def test_the_time_left_counts_each_runs_batch(tiny_config, tiny_root, tmp_path, capsys):
    """The runner tells the progress line each run's batch: after the batch-4 run (150 steps), the batch-100 run
    left (fewer steps of as many images) is a range, from the step pace to the image pace. (Runs not yet started
    are counted at the dataset's official size, 60,000 images here for 300 on disk.)"""
    overrides = ["models=[{name: lenet5, norm: none}]", "grid.batch_size=[4, 100]", "seeds=[0]"]
    assert in_process(tiny_config, tiny_root, tmp_path, overrides) == 0
    finished = [line for line in capsys.readouterr().out.splitlines() if "[experiment: 1/2 runs" in line]
    assert len(finished) == 1 and re.search(r"runs, \d.* to \d.* left\]$", finished[0]), finished


def test_a_dry_run_prints_the_plan_and_an_estimate_and_writes_nothing(tiny_config, tiny_root, tmp_path):
    """Issue 21, item 2: calibrated on a fresh folder, measured from finished runs of the same shape after."""
    from typer.testing import CliRunner

    from bnexp.cli import app

    args = ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path / "out"), "--set", "epochs=1"]
    result = CliRunner().invoke(app, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "lenet5_lr1x_s0" in result.output and "start (~" in result.output and "calibrated" in result.output
    assert "2 to start" in result.output and "nothing was written" in result.output
    assert not (tmp_path / "out").exists()
    assert CliRunner().invoke(app, [*args, "--set", "seeds=[0]"]).exit_code == 0

    def files() -> dict:
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "out").rglob("*") if p.is_file()}

    before = files()
    result = CliRunner().invoke(app, [*args, "--set", "seeds=[0, 1]", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "skip (completed)" in result.output and "measured" in result.output
    assert "2 to start, 0 to resume, 2 finished" in result.output
    assert files() == before and not list((tmp_path / "out" / "tiny").glob("*_s1"))


def test_a_dry_run_on_a_busy_machine_says_its_calibration_is_inflated(tiny_config, tiny_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bnexp import estimate
    from bnexp.cli import app

    cores = len(os.sched_getaffinity(0))
    args = ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path), "--dry-run"]
    monkeypatch.setattr(estimate.os, "getloadavg", lambda: (2.0 * cores, 0.0, 0.0))
    busy = CliRunner().invoke(app, args)
    assert busy.exit_code == 0 and f"note: the machine is busy (load {2.0 * cores:.1f} on {cores} cores)" in busy.output
    monkeypatch.setattr(estimate.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert "the machine is busy" not in CliRunner().invoke(app, args).output


def test_one_bnexp_run_expands_the_plan_once(tiny_config, tiny_root, tmp_path, monkeypatch):
    """Issue 32, item 3: the run and its dry run expand the grid once (the Job's list is handed to everything that
    needs the runs: checks, plan, executors); the config's own validation is bnexp.config's business."""
    from typer.testing import CliRunner

    from bnexp import job as planning
    from bnexp.cli import app

    calls = []
    real = planning.expand_grid
    monkeypatch.setattr(planning, "expand_grid", lambda cfg: calls.append(cfg.name) or real(cfg))
    args = ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path), "--set", "epochs=1"]
    for extra in (["--dry-run"], ["--quiet"]):
        calls.clear()
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        assert calls == ["tiny"]


def test_the_executor_of_each_run_is_chosen_in_one_place(tiny_config):
    """Runs of N > 1 processes by N processes bnexp starts (fewest first), then the one-process runs by --jobs
    workers or one after another here; under the user's torchrun every run here, by all its processes."""
    from bnexp.distributed import World
    from bnexp.execute import Sequential
    from bnexp.job import Job
    from bnexp.parallel import Workers
    from bnexp.ranks import Ranks
    from bnexp.runner import executors
    from bnexp.validate import load as load_config

    cfg = load_config(tiny_config, ["grid.processes=[4, 1, 2]", "models=[{name: lenet5, norm: batchnorm}]"])
    job = Job.of(cfg, "out")
    todo = [(p, "start") for p in job.runs]
    chosen = executors(todo, job, World())
    assert [type(e) for e, _ in chosen] == [Ranks, Ranks, Sequential]
    assert [e.processes for e, _ in chosen[:2]] == [2, 4]
    assert [[p.experiment.processes for p, _ in runs] for _, runs in chosen] == [[2], [4], [1]]
    parallel = executors(todo, Job.of(cfg, "out", jobs=2), World())
    assert isinstance(parallel[-1][0], Workers) and parallel[-1][0].jobs == 2
    assert executors([], job, World()) == []
    two = [(p, a) for p, a in todo if p.experiment.processes == 2]
    assert [(type(e), runs) for e, runs in executors(two, job, World(rank=1, size=2))] == [(Sequential, two)]


def test_nothing_below_the_cli_imports_it():
    """Processes bnexp starts get their work as arguments (bnexp.ranks), never by re-entering the command line."""
    import ast
    from pathlib import Path

    import bnexp

    package = Path(bnexp.__file__).parent
    importers = []
    for path in package.rglob("*.py"):
        if path.name == "__main__.py" or path.is_relative_to(package / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [f"{node.module}.{a.name}" for a in node.names]
                if isinstance(node, ast.ImportFrom) and node.module
                else []
            )
            importers += [
                str(path.relative_to(package)) for n in names if n == "bnexp.cli" or n.startswith("bnexp.cli.")
            ]
    assert not importers


def test_a_dry_run_of_a_shard_of_a_new_experiment_leaves_the_other_shards_runs_to_them(
    tiny_config, tiny_root, tmp_path
):
    from typer.testing import CliRunner

    from bnexp.cli import app

    args = ["run", str(tiny_config), "--data-root", str(tiny_root), "--out", str(tmp_path), "--dry-run"]
    result = CliRunner().invoke(app, [*args, "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    assert "dry run: 1 to start, 0 to resume, 0 finished, 1 in another shard, 0 blocked" in result.output
    assert "lenet5_lr1x_s0" in result.output and not (tmp_path / "tiny").exists()
