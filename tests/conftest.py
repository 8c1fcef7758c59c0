"""Shared fixtures: a tiny dataset written in the real IDX/gzip format, isolated caches, no network."""

from __future__ import annotations

import fcntl
import gzip
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from bnexp import estimate
from bnexp.lock import LOCK_FILE
from bnexp.progress import PlainReporter
from bnexp.runner import run_experiment
from bnexp.validate import load as load_config

REPO = Path(__file__).resolve().parents[1]
# Tiny models run faster on one thread, and the suite then leaves the other core to whatever runs beside it.
torch.set_num_threads(1)
SHARED_DATA = REPO.parent / "shared" / "data"
ARTICLES = REPO.parent / "shared" / "articles"  # the five articles, a1-....txt to a5-....txt


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX as in the official files: magic 0x0000 08 <ndim>, big-endian dims, uint8 payload, gzipped."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Learnable images: class c lights up a horizontal band at rows 2c+4..2c+6, plus noise."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28))
    for i, c in enumerate(labels):
        images[i, 2 * c + 4 : 2 * c + 7, 4:24] += 180
    return images.clip(0, 255)


def write_tiny_dataset(root: Path, folder: str = "FashionMNIST", n_train: int = 300, n_test: int = 100) -> Path:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        write_idx(raw / f"{split}-images-idx3-ubyte.gz", make_images(labels, rng))
        write_idx(raw / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


def write_tiny_cifar100(root: Path, n_train: int = 400, n_test: int = 200, archive: bool = False) -> Path:
    """CIFAR-100 in its real python-pickle format (cifar-100-python/{train,test,meta}), or as the official
    .tar.gz archive of that folder. Class c is tinted by a colour that depends on c, so it can be learned."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 100
        images = rng.integers(0, 100, size=(n, 3, 32, 32))
        images += (np.stack([labels * 1, (labels * 7) % 100, (labels * 13) % 100], 1) * 1.5)[:, :, None, None].astype(
            int
        )
        entry = {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": f"{split} batch",
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
            "data": images.clip(0, 255).astype(np.uint8).reshape(n, 3072),
        }
        (folder / split).write_bytes(pickle.dumps(entry))
    meta = {
        "fine_label_names": [f"class{i}" for i in range(100)],
        "coarse_label_names": [f"super{i}" for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    if archive:
        with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname="cifar-100-python")
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    return root


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own bnexp cache and never touches the network or the user's data."""
    monkeypatch.setenv("BNEXP_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("BNEXP_OFFLINE", "1")
    monkeypatch.delenv("BNEXP_DATA", raising=False)


@pytest.fixture(autouse=True)
def short_calibration(monkeypatch):
    """A dry run calibrates each shape for 0.2 s here, not its 2.5 s: the tests check what it does, not its timing
    (tests of the budget itself set it back and use a clock of their own)."""
    monkeypatch.setattr(estimate, "CALIBRATION_BUDGET_S", 0.2)


@pytest.fixture
def tiny_root(tmp_path) -> Path:
    return write_tiny_dataset(tmp_path / "data")


TINY_CONFIG = """\
name: tiny
dataset:
  name: fashion_mnist
  verify_checksums: false
models:
  - {name: lenet5, norm: none}
  - {name: lenet5, norm: batchnorm}
optimizer: {name: adam, lr: 0.003}
batch_size: 32
epochs: 2
eval_batch_size: 64
seeds: [0]
log_every: 4
device: cpu
"""


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


# -- real `bnexp run` processes on a small dataset (reliability, --jobs, signals) ------------------------------

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


def run_args(config: Path, root: Path, out: Path) -> list[str]:
    """`bnexp run CONFIG` on generated data into `out`, quietly: for CliRunner, or after `python -m bnexp`."""
    return ["run", str(config), "--data-root", str(root), "--out", str(out), "--quiet"]


def bnexp_process(
    config: Path, root: Path, out: Path, *extra: str, threads: int = 1, start_new_session: bool = False
) -> subprocess.Popen:
    """`python -m bnexp run` of this checkout in its own process, output captured; in a session of its own if
    asked (so that a test can kill it with every process it started)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "bnexp", *run_args(config, root, out), *extra]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=start_new_session
    )


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and path.read_text().count("\n") >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {count} lines: {proc.stdout.read()}")
        time.sleep(0.005)
    raise AssertionError("timed out")


def alive(pid: int) -> bool:
    """Whether a process runs: a zombie waits for its parent's wait() and runs nothing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:  # gone
        return False


def wait_gone(pids: list[int], timeout: float = 15) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


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


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> dict[str, bytes]:
    """The uninterrupted run of RESUME_CONFIG, made once per test process and in it (one thread, as the
    processes the tests start): its files name no path, and the generated data are the same bytes as `setup`'s."""
    base = tmp_path_factory.mktemp("reference")
    root = write_tiny_dataset(base / "data", n_train=1500, n_test=200)
    config = base / "resume.yaml"
    config.write_text(RESUME_CONFIG)
    assert in_process(config, root, base / "reference") == 0
    return run_files(base / "reference")


@contextmanager
def two_cores() -> Iterator[None]:
    """This process and the processes it starts on two cores: `--jobs 2` then trains each run on one thread,
    as an in-process run here does (the suite runs on one torch thread), on a machine with any core count."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(cores)[:2])
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def in_process(config, root, out, overrides=(), **kwargs) -> int:
    return run_experiment(load_config(config, list(overrides)), out, PlainReporter(), root, **kwargs)
