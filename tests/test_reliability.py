"""Issue 15, second round: nothing outside --out, no code from run files, --jobs as safe as one process, one
bad file never blocks an experiment. Real processes and signals; fault injection where a real full
disk is impractical."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from bnexp import store
from bnexp.errors import BnexpError
from bnexp.store import RunDir, child_path
from bnexp.train import torch_threads

from .conftest import (
    RESUME_CONFIG,
    alive,
    bnexp_process,
    in_process,
    run_files,
    two_cores,
    wait_for_lines,
    wait_gone,
    write_tiny_dataset,
)

BN_RUN, PLAIN_RUN = "lenet5-bn_lr1x_s0", "lenet5_lr1x_s0"


def children(pid: int) -> list[int]:
    """The --jobs workers of a bnexp process (not multiprocessing's resource tracker), waiting for them to start."""
    deadline = time.time() + 30
    while time.time() < deadline:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        found = [int(x) for x in out.split() if "spawn_main" in Path(f"/proc/{x}/cmdline").read_text(errors="replace")]
        if found:
            return found
        time.sleep(0.05)
    return []


def signal_the_worker_of(proc: subprocess.Popen, run: Path, sig: signal.Signals) -> None:
    """Send `sig` to the --jobs worker that trains `run` (the one holding its metrics.jsonl open), once the run
    has written a checkpoint, so a later invocation has something to resume from."""
    metrics, deadline = run / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run / store.CHECKPOINT).is_file():
            for pid in children(proc.pid):
                fds = Path(f"/proc/{pid}/fd")
                try:
                    if any(os.path.realpath(fd) == str(metrics.resolve()) for fd in fds.iterdir()):
                        os.kill(pid, sig)
                        return
                except (FileNotFoundError, ProcessLookupError):  # the worker finished meanwhile
                    continue
        time.sleep(0.05)
    raise AssertionError(f"no worker was training {run.name} with a checkpoint written")


# -- 1, 2: paths and code from files ------------------------------------------------------------------------


def test_a_name_can_never_resolve_outside_its_parent(tmp_path):
    assert child_path(tmp_path, "run_s0") == tmp_path / "run_s0"
    for bad in ("..", "../x", "/etc", "a/b", ""):
        with pytest.raises(BnexpError):
            child_path(tmp_path, bad)


def test_a_crafted_checkpoint_cannot_run_code(setup, tmp_path, capsys):
    """The checkpoint of a results folder from someone else is loaded with weights_only=True: the payload
    never runs, that run fails with what to do, and the other run completes."""
    config, root = setup
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0
    run = tmp_path / "resume" / BN_RUN
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"run": BN_RUN, "model": Payload()}, run / "checkpoint.pt")
    (run / "summary.json").unlink()  # so that the next `bnexp run` resumes from it
    capsys.readouterr()
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 1 and not marker.exists()
    summary = RunDir(run).summary()
    assert summary["status"] == "failed" and "not a plain tensor file" in summary["error"]
    assert f"--restart-run {BN_RUN}" in capsys.readouterr().out
    assert in_process(config, root, tmp_path, ["epochs=1"], restart_runs=(BN_RUN,)) == 0
    assert RunDir(run).summary()["status"] == "completed"


def test_unverified_cifar_pickles_are_refused_unless_trusted(tmp_path):
    from bnexp.config import DatasetConfig
    from bnexp.data import load_data

    from .conftest import write_tiny_cifar100

    root = write_tiny_cifar100(tmp_path / "data", n_train=200, n_test=100)
    cpu = torch.device("cpu")
    with pytest.raises(BnexpError, match="unpickling can run code"):
        load_data(DatasetConfig(name="cifar100", verify_checksums=False), cpu, root)
    data = load_data(DatasetConfig(name="cifar100", verify_checksums=False, trust_unverified_pickles=True), cpu, root)
    assert len(data.train) == 200
    (root / "cifar-100-python" / "train").write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(BnexpError, match=r"not a CIFAR-100 file|are not valid"):
        load_data(DatasetConfig(name="cifar100", verify_checksums=False, trust_unverified_pickles=True), cpu, root)


# -- 3, 4, 5: --jobs keeps every single-process promise ---------------------------------------------------------


def test_kill_9_of_the_parent_takes_the_workers_with_it(setup, reference, tmp_path):
    """...and what they leave resumes bitwise (the resume runs here, on this process's one thread: what it
    checks is the files)."""
    config, root = setup
    with two_cores():  # one thread per worker, as the reference
        proc = bnexp_process(config, root, tmp_path / "killed", "--jobs", "2")
        wait_for_lines(tmp_path / "killed" / "resume" / PLAIN_RUN / "metrics.jsonl", 5, proc)
        workers = children(proc.pid)
        assert workers
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_gone(workers), "workers outlived their parent"
    assert in_process(config, root, tmp_path / "killed") == 0
    assert run_files(tmp_path / "killed") == reference


def test_double_ctrl_c_stops_the_workers_before_the_lock_is_released(setup, tmp_path):
    config, root = setup
    proc = bnexp_process(config, root, tmp_path, "--jobs", "2", "--set", "epochs=30")
    wait_for_lines(tmp_path / "resume" / PLAIN_RUN / "metrics.jsonl", 3, proc)
    workers = children(proc.pid)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert not any(alive(p) for p in workers)


def test_sigterm_to_one_worker_interrupts_its_run_and_exits_143(setup, tmp_path):
    config, root = setup
    proc = bnexp_process(config, root, tmp_path, "--jobs", "2", "--set", "epochs=8")
    signal_the_worker_of(proc, tmp_path / "resume" / PLAIN_RUN, signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, output
    assert RunDir(tmp_path / "resume" / PLAIN_RUN).summary()["status"] == "interrupted"


def test_sigkill_of_a_worker_fails_its_run_with_a_summary_and_the_rest_go_on(setup, tmp_path, capsys):
    config, root = setup
    proc = bnexp_process(config, root, tmp_path, "--jobs", "2", "--set", "seeds=[0, 1]", "--set", "epochs=2")
    signal_the_worker_of(proc, tmp_path / "resume" / PLAIN_RUN, signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, output
    runs = {p.name: RunDir(p) for p in (tmp_path / "resume").iterdir() if p.is_dir()}
    failed = [r for r in runs.values() if r.summary()["status"] == "failed"]
    assert [r.name for r in failed] == [PLAIN_RUN] and "killed by signal 9" in failed[0].summary()["error"]
    assert (failed[0].path / "error.log").is_file()
    assert sum(r.summary()["status"] == "completed" for r in runs.values()) == 3  # a replacement took the rest
    assert in_process(config, root, tmp_path, ["seeds=[0, 1]", "epochs=2"]) == 0  # resumed in this process
    assert "resuming at step" in capsys.readouterr().out


def test_a_run_resumes_with_the_thread_count_it_started_with(setup, reference, tmp_path):
    """Started by --jobs 2 (1 thread each), resumed alone with 2 threads available: it computes with 1 thread
    again, so it equals the uninterrupted run on one thread; the summary records every segment's count."""
    config, root = setup
    with two_cores():
        proc = bnexp_process(config, root, tmp_path / "resumed", "--jobs", "2")
    wait_for_lines(tmp_path / "resumed" / "resume" / BN_RUN / "metrics.jsonl", 12, proc)
    # both runs past their first checkpoint: a run stopped before it has nothing to resume and starts over with
    # the threads it is then given (a different computation), which is not what this test is about
    deadline = time.time() + 120
    while not all((tmp_path / "resumed" / "resume" / r / "checkpoint.pt").is_file() for r in (BN_RUN, PLAIN_RUN)):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    with torch_threads(2):  # resumed in this process, where a new run would now take 2 threads
        assert in_process(config, root, tmp_path / "resumed") == 0
    assert run_files(tmp_path / "resumed") == reference
    segments = RunDir(tmp_path / "resumed" / "resume" / BN_RUN).summary()["segments"]
    assert len(segments) == 2 and {s["torch_threads"] for s in segments} == {1}


def test_a_run_resumed_on_fewer_cores_than_its_threads_says_it_will_be_slow(setup, tmp_path, capfd):
    """Started alone with 2 threads, resumed by --jobs 2 on one pinned core each: it keeps its 2 threads (for
    bitwise reproducibility), and the user is told why it crawls and how to avoid it."""
    config, root = setup
    # the resumed run crawls (2 threads on one core): keep it short, but stop it past its first evaluation (step
    # 16), where the logs are first flushed (the metrics lines this test waits for)
    short = ("epochs=1", "eval_every=16")
    proc = bnexp_process(config, root, tmp_path, *(f"--set={s}" for s in short), threads=2)
    wait_for_lines(tmp_path / "resume" / BN_RUN / "metrics.jsonl", 3, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    capfd.readouterr()
    assert in_process(config, root, tmp_path, short, jobs=2) == 0
    output = capfd.readouterr().out
    assert f"{BN_RUN}: resuming with the 2 torch threads" in output and "(--jobs 1)" in output
    segments = RunDir(tmp_path / "resume" / BN_RUN).summary()["segments"]
    assert [s["torch_threads"] for s in segments] == [2, 2]


# -- 6, 7, 8: one bad file never blocks the others ---------------------------------------------------------------


def test_a_summary_that_cannot_be_written_fails_that_run_only(setup, tmp_path, monkeypatch, capsys):
    """A disk out of inodes fails in write_summary: that run is failed, the next one still runs."""
    config, root = setup
    real = store.RunDir.write_summary

    def write_summary(self, summary):
        if self.name == BN_RUN:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, summary)

    monkeypatch.setattr(store.RunDir, "write_summary", write_summary)
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 1
    out = capsys.readouterr().out
    assert f"{BN_RUN}: failed, cannot write the summary" in out and "No space left on device" in out
    assert RunDir(tmp_path / "resume" / PLAIN_RUN).summary()["status"] == "completed"


def test_a_full_disk_while_checkpointing_says_so(setup, tmp_path, monkeypatch):
    config, root = setup
    real = store.atomic_file

    def full(path, mode="w"):
        if path.name == "checkpoint.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, mode)

    monkeypatch.setattr(store, "atomic_file", full)
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 1
    summary = RunDir(tmp_path / "resume" / BN_RUN).summary()
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]


@pytest.fixture(scope="module")
def killed_mid_run(tmp_path_factory):
    """A run killed by SIGKILL past its first checkpoint (a checkpoint, no summary), made once per module: each
    damage case below copies it."""
    base = tmp_path_factory.mktemp("killed")
    root = write_tiny_dataset(base / "data", n_train=1500, n_test=200)
    config = base / "resume.yaml"
    config.write_text(RESUME_CONFIG)
    proc = bnexp_process(config, root, base / "out", "--set", "epochs=2")
    wait_for_lines(base / "out" / "resume" / BN_RUN / "metrics.jsonl", 20, proc)  # past step 47's checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (base / "out" / "resume" / BN_RUN / "checkpoint.pt").is_file()
    return config, root, base / "out" / "resume"


@pytest.mark.parametrize(
    ("damage", "expect"),
    [
        ("summary", "does not parse"),
        ("config", "does not parse"),
        ("checkpoint", "is unreadable or not a plain tensor file"),
        ("short_metrics", "the checkpoint expects at least"),
        ("deleted_metrics", "is missing, the checkpoint expects"),
    ],
)
def test_a_damaged_run_is_named_and_the_others_go_on(killed_mid_run, tmp_path, capsys, damage, expect):
    config, root, killed = killed_mid_run
    shutil.copytree(killed, tmp_path / "resume")
    run = tmp_path / "resume" / BN_RUN
    if damage == "summary":
        (run / "summary.json").write_text("{garbage")
    elif damage == "config":
        (run / "config.yaml").write_text(": : [\n")
    elif damage == "checkpoint":
        data = (run / "checkpoint.pt").read_bytes()
        (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    elif damage == "short_metrics":
        (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text()[:100])
    else:
        (run / "metrics.jsonl").unlink()
    # in this process: what is tested is how bnexp reads the files, which the killed process left behind
    code, output = in_process(config, root, tmp_path, ["epochs=2"]), capsys.readouterr().out
    assert code == 1, output
    assert expect in output and f"--restart-run {BN_RUN}" in output
    assert RunDir(tmp_path / "resume" / PLAIN_RUN).summary()["status"] == "completed"
    assert in_process(config, root, tmp_path, ["epochs=2"], restart_runs=(BN_RUN,)) == 0
    assert RunDir(run).summary()["status"] == "completed"


def test_temp_files_of_interrupted_writes_are_cleaned_up(setup, tmp_path):
    config, root = setup
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0
    leftovers = [
        tmp_path / "resume" / ".experiment.yaml.bnexp-tmp-x1y2",
        tmp_path / "resume" / BN_RUN / ".checkpoint.pt.bnexp-tmp-k3j4",
        tmp_path / "resume" / BN_RUN / ".summary.json.bnexp-tmp-abcd",
    ]
    # issue 19, item 7: a user's own dot-files are not bnexp's temp files
    users = [tmp_path / "resume" / ".notes.md", tmp_path / "resume" / BN_RUN / ".my.summary.json"]
    for p in leftovers + users:
        p.write_text("partial")
    assert (
        in_process(
            config, root, tmp_path, ["epochs=1", "models=[{name: lenet5, norm: batchnorm}]"], restart_runs=(BN_RUN,)
        )
        == 0
    )
    assert not any(p.exists() for p in leftovers)
    assert all(p.read_text() == "partial" for p in users)


def test_a_corrupt_decoded_cache_is_named_and_rebuilt(tiny_root, capsys):
    from bnexp.config import DatasetConfig
    from bnexp.data import cache_dir, load_data

    cfg = DatasetConfig(name="fashion_mnist", verify_checksums=False)
    first = load_data(cfg, torch.device("cpu"), tiny_root)
    decoded = next((cache_dir() / "decoded").glob("*/FashionMNIST/raw/train-images-idx3-ubyte"))
    decoded.write_bytes(decoded.read_bytes()[:1000])  # a cut copy: the user's files are fine
    again = load_data(cfg, torch.device("cpu"), tiny_root)
    assert "decoded copy" in capsys.readouterr().out and str(tiny_root) not in str(decoded)
    assert torch.equal(first.train.images, again.train.images) and decoded.stat().st_size > 1000


def test_run_files_share_one_mode(setup, tmp_path):
    config, root = setup
    assert in_process(config, root, tmp_path, ["epochs=1"]) == 0
    run = tmp_path / "resume" / BN_RUN
    modes = {
        name: (run / name).stat().st_mode & 0o777
        for name in ("summary.json", "config.yaml", "metrics.jsonl", "checkpoint.pt")
    }
    assert len(set(modes.values())) == 1, modes
