"""Reliability: resume bit for bit after SIGKILL, skip finished runs, refuse changed configs, one writer,
clean stops on SIGINT/SIGTERM, failures isolated. Uses real subprocesses of `python -m bnexp`."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bnexp import store
from bnexp.lock import LOCK_FILE
from bnexp.progress import PlainReporter
from bnexp.runner import run_experiment
from bnexp.store import RunDir
from bnexp.validate import load as load_config

from .conftest import REPO, write_tiny_dataset

RESUME_CONFIG = """\
name: resume
dataset: {name: fashion_mnist, verify_checksums: false}
models:
  - {name: lenet5, norm: batchnorm}
  - {name: lenet5, norm: none, dropout: 0.0}
optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
batch_size: 32
epochs: 4
eval_batch_size: 500
seeds: [0]
log_every: 3
device: cpu
probes: {every_steps: 20, layers: [0, -1], bins: 20}
"""


@pytest.fixture
def setup(tmp_path):
    root = write_tiny_dataset(tmp_path / "data", n_train=1500, n_test=200)
    config = tmp_path / "resume.yaml"
    config.write_text(RESUME_CONFIG)
    return config, root


def bnexp_process(config: Path, root: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bnexp", "run", str(config), "--data-root", str(root), "--out", str(out), "--quiet"]
    return subprocess.Popen([*cmd, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run_to_end(config: Path, root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    p = bnexp_process(config, root, out, *extra)
    output, _ = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, output)


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and path.read_text().count("\n") >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {count} lines: {proc.stdout.read()}")
        time.sleep(0.005)
    raise AssertionError("timed out")


def lock_is_free(experiment_dir: Path) -> bool:
    fd = os.open(experiment_dir / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def run_files(out: Path) -> dict[str, bytes]:
    """Everything that must be identical between an uninterrupted and a resumed run."""
    files = {}
    for run in sorted((out / "resume").iterdir()):
        if run.is_dir():
            for name in ("metrics.jsonl", "probes.jsonl", "config.yaml"):
                files[f"{run.name}/{name}"] = (run / name).read_bytes()
            state = torch.load(run / "checkpoint.pt", weights_only=True)
            files[f"{run.name}/weights"] = b"".join(t.numpy().tobytes() for t in state["model"].values())
    return files


@pytest.fixture
def reference(setup, tmp_path):
    config, root = setup
    result = run_to_end(config, root, tmp_path / "reference")
    assert result.returncode == 0, result.stdout
    return run_files(tmp_path / "reference")


@pytest.mark.parametrize("kill_after_lines", [2, 17, 40, 75])
def test_sigkill_and_resume_is_bitwise_identical(setup, reference, tmp_path, kill_after_lines):
    config, root = setup
    out = tmp_path / "killed"
    metrics = out / "resume" / "lenet5-bn_lr1x_s0" / "metrics.jsonl"
    if kill_after_lines > 68:  # past the first run (68 lines): kill during the second one
        metrics = out / "resume" / "lenet5_lr1x_s0" / "metrics.jsonl"
        kill_after_lines -= 68
    proc = bnexp_process(config, root, out)
    wait_for_lines(metrics, kill_after_lines, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_is_free(out / "resume")  # the kernel released the killed process's lock
    result = run_to_end(config, root, out)
    assert result.returncode == 0, result.stdout
    assert "resume" in result.stdout or "start" in result.stdout
    assert run_files(out) == reference


def test_sigint_stops_with_checkpoint_and_resumes_identically(setup, reference, tmp_path):
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
    result = run_to_end(config, root, out)
    assert result.returncode == 0 and "resuming at step" in result.stdout
    assert run_files(out) == reference


def test_sigterm_exit_code(setup, tmp_path):
    config, root = setup
    proc = bnexp_process(config, root, tmp_path)
    wait_for_lines(tmp_path / "resume" / "lenet5-bn_lr1x_s0" / "metrics.jsonl", 5, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143


def test_second_writer_is_refused_while_the_first_runs(setup, tmp_path):
    config, root = setup
    first = bnexp_process(config, root, tmp_path, "--set", "epochs=30")
    wait_for_lines(tmp_path / "resume" / "lenet5-bn_lr1x_s0" / "metrics.jsonl", 3, first)
    second = run_to_end(config, root, tmp_path)
    first.kill()
    first.wait()
    assert second.returncode == 2
    assert f"being written by another bnexp process (pid {first.pid} on" in second.stdout


def in_process(config, root, out, overrides=(), **kwargs) -> int:
    return run_experiment(load_config(config, list(overrides)), out, PlainReporter(), root, **kwargs)


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


def test_jobs_run_concurrently_and_match_sequential_runs(setup, tmp_path):
    config, root = setup
    overrides = ["epochs=1"]
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(cores)[:2])  # 2 jobs x 1 thread, like the sequential runs here
    try:
        assert in_process(config, root, tmp_path / "parallel", overrides, jobs=2) == 0
    finally:
        os.sched_setaffinity(0, cores)
    assert in_process(config, root, tmp_path / "sequential", overrides) == 0
    for run in ("lenet5-bn_lr1x_s0", "lenet5_lr1x_s0"):
        a, b = (RunDir(tmp_path / kind / "resume" / run) for kind in ("parallel", "sequential"))
        assert a.summary()["status"] == "completed" and a.summary()["device"]["torch_threads"] == 1
        assert (a.path / "metrics.jsonl").read_bytes() == (b.path / "metrics.jsonl").read_bytes()


def test_jobs_stop_on_sigterm_and_resume(setup, tmp_path):
    config, root = setup
    proc = bnexp_process(config, root, tmp_path, "--jobs", "2")
    wait_for_lines(tmp_path / "resume" / "lenet5_lr1x_s0" / "metrics.jsonl", 5, proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, output
    statuses = {RunDir(p).summary()["status"] for p in (tmp_path / "resume").iterdir() if p.is_dir()}
    assert statuses == {"interrupted"}
    result = run_to_end(config, root, tmp_path, "--jobs", "2")
    assert result.returncode == 0 and result.stdout.count("resuming at step") == 2, result.stdout
