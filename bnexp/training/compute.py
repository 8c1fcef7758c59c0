"""Where and how a run computes: its device, seeds and determinism, torch thread count and precision."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from bnexp.errors import BnexpError


def select_device(name: str, index: int | None = None) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; `index` selects one of several GPUs (a process's local rank)."""
    if name == "cuda" and index is not None:
        select_device("cuda")
        return torch.device("cuda", index)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if name not in available:
        raise BnexpError(f"unknown device {name!r}; allowed: auto, {', '.join(available)}")
    if not available[name]:
        raise BnexpError(f"device {name!r} is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic = deterministic or device.type == "cpu"
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Compute with `count` torch threads inside, with the count there was before afterwards."""
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def core_slices(jobs: int) -> list[list[int]]:
    """Disjoint groups of the cores this process may use, one per job (shared round-robin if jobs > cores): the
    cores and thread count of each `--jobs` worker (bnexp.parallel), which the dry run's estimate assumes too."""
    cores = sorted(os.sched_getaffinity(0))
    per_job = max(1, len(cores) // jobs)
    return [[cores[(i * per_job + j) % len(cores)] for j in range(per_job)] for i in range(jobs)]


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The mixed-precision context of a run: bf16 convs/matmuls under `precision: bf16`, a no-op for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
