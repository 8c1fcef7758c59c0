"""What a checkpoint holds besides the model and optimizer (every RNG state, as plain tensors and numbers that
torch.load(weights_only=True) accepts), and the checks every field passes before a run uses it: a checkpoint in
a results folder from someone else may say anything."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from bnexp.store import LOGS, CorruptFile

MAX_THREADS = 1024


def rng_states() -> dict[str, Any]:
    """Every RNG state, as tensors and plain numbers."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": np_state["state"]["pos"],
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    n = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


def check_checkpoint(state: Any, total_steps: int, per_epoch: int, log_every: int, where: str, remedy: str) -> None:
    """Every field of a run's checkpoint against the run's config (its length, epoch and log window), before
    any of it is used; CorruptFile naming `where` and the `remedy` otherwise."""

    def fail(what: str) -> NoReturn:
        raise CorruptFile(f"{where}: {what}; {remedy}")

    def integer(key: str, lo: int, hi: int) -> None:
        v = state.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi):
            fail(f"{key} {v!r} is not an integer in [{lo}, {hi}]")

    if not isinstance(state, dict):
        fail(f"not a checkpoint (a {type(state).__name__})")
    integer("step", 0, total_steps)
    integer("batch_in_epoch", 0, per_epoch)
    window = state.get("window_losses")
    if not (isinstance(window, torch.Tensor) and window.dim() == 1 and len(window) < log_every + 1):
        fail(f"window_losses is not a list of at most {log_every} losses")
    if not (isinstance(state.get("epoch_rng"), torch.Tensor) and state["epoch_rng"].dtype == torch.uint8):
        fail("epoch_rng is not a generator state")
    offsets = state.get("log_offsets")
    if not (
        isinstance(offsets, dict)
        and set(offsets) <= set(LOGS)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in offsets.values())
    ):
        fail("log_offsets is not a byte length per log")
    check_segments(state.get("segments"), fail)
    for key in ("model", "optimizer", "rng"):
        if not isinstance(state.get(key), dict):
            fail(f"{key} is not a state dict")


def check_segments(segments: Any, fail: Callable[[str], NoReturn]) -> None:
    """A checkpoint's segments: [{from_step, torch_threads, processes}] with sane integers."""
    if segments is None:
        return
    if not isinstance(segments, list) or len(segments) > 100_000:
        fail("segments is not a list of resumed segments")
    for seg in segments:
        ok = isinstance(seg, dict) and all(
            isinstance(seg.get(k), int) and not isinstance(seg.get(k), bool) for k in ("from_step", "torch_threads")
        )
        if not ok or not 1 <= seg["torch_threads"] <= MAX_THREADS or seg["from_step"] < 0:
            fail(f"segment {seg!r} is not {{from_step >= 0, torch_threads 1..{MAX_THREADS}}}")


def checkpoint_threads(state: Any, where: Path | None = None, remedy: str = "") -> int | None:
    """The torch thread count a checkpointed run was computing with (its last segment's), checked."""

    def fail(what: str) -> NoReturn:
        raise CorruptFile(f"{where}: {what}" + (f"; {remedy}" if remedy else ""))

    if not isinstance(state, dict):
        fail(f"not a checkpoint (a {type(state).__name__})")
    segments = state.get("segments") or []
    check_segments(segments, fail)
    return segments[-1]["torch_threads"] if segments else None
