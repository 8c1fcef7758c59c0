"""The files that let a run continue: its checkpoint (written at checkpoint steps and on a stop, read back by a
resumed run together with the torch thread count it records) and its final weights."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from bnexp.checkpoint import checkpoint_threads
from bnexp.config import RunPlan
from bnexp.distributed import World
from bnexp.store import CHECKPOINT, WEIGHTS, RunDir, load_tensors, save_atomic
from bnexp.training.reporting import Reporter


def restart_hint(plan: RunPlan) -> str:
    return f"start this run over with `bnexp run CONFIG --restart-run {plan.name}`"


def load_checkpoint(plan: RunPlan, action: str, run: RunDir, world: World) -> dict[str, Any] | None:
    """The state a resumed run continues from (read by rank 0, sent to every process); None for a fresh start."""
    state = None
    if action == "resume" and world.main:
        state = load_tensors(run.path / CHECKPOINT, "the checkpoint", restart_hint(plan))
    return world.broadcast(state)


def use_checkpoint_threads(
    plan: RunPlan, state: dict[str, Any] | None, run: RunDir, world: World, reporter: Reporter
) -> None:
    """Compute with the torch thread count the checkpoint records (results are bitwise reproducible only for a
    given count); the caller restores its own count afterwards."""
    saved_threads = checkpoint_threads(state, run.path / CHECKPOINT, restart_hint(plan)) if state is not None else None
    if saved_threads and saved_threads != torch.get_num_threads():
        torch.set_num_threads(saved_threads)
        cores = len(os.sched_getaffinity(0))
        if saved_threads > cores and world.main:  # OpenMP threads spinning on fewer cores crawl
            reporter.message(
                f"{plan.name}: resuming with the {saved_threads} torch threads it started "
                f"with (results are bitwise reproducible only for one thread count) on "
                f"{cores} core(s): slow; run it alone (--jobs 1) for speed"
            )


def write_checkpoint(run: RunDir, state: dict[str, Any], step: int, keep: bool) -> None:
    """The run's checkpoint.pt, written whole or not at all; `keep` also keeps it as checkpoint-stepNNNNNNNN.pt."""
    path = run.path / CHECKPOINT
    run.check_folder()
    save_atomic(state, path)
    if keep:
        os.link(path, run.path / f"checkpoint-step{step:08d}.pt")


def write_final_weights(run: RunDir, model: nn.Module) -> None:
    run.check_folder()
    save_atomic(model.state_dict(), run.path / WEIGHTS)
