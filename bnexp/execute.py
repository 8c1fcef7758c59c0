"""How runs are trained, behind one interface: an Executor takes runs (each with the action the plan decided) and
the Context they run in, trains them, and returns each run's status. Three of them:

- Sequential (here): one run after another in this process; under torchrun, every rank of the user's processes
  runs it together;
- bnexp.parallel.Workers: `--jobs N`, one-process runs side by side in N worker processes;
- bnexp.ranks.Ranks: runs of N > 1 processes, each trained by N processes that bnexp starts.

Whichever trains a run claims it first (its lock; the action decided again under it): see bnexp.claim.
bnexp.runner chooses the executor of each run, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bnexp.claim import Claim, claimed, status_of, to_train
from bnexp.config import RunPlan
from bnexp.data import DataCache
from bnexp.distributed import World
from bnexp.job import Job
from bnexp.progress import PlainReporter
from bnexp.store import RunDir
from bnexp.train import StopRequest, train_run

EXIT_FOR_SIGNAL = {2: 130, 15: 143}  # SIGINT, SIGTERM

# runs to train, each with its action (start or resume), in plan order
Runs = list[tuple[RunPlan, str]]


@dataclass(frozen=True)
class Context:
    """What training runs needs besides the runs: the job (where the runs go, their data root, --device,
    --keep-checkpoints, --jobs), how this command claims runs, the device and data, the reporter, the stop
    request, and this process's place among the processes of a multi-process run."""

    job: Job
    claim: Claim
    device: Any
    cache: DataCache
    reporter: PlainReporter
    stop: StopRequest
    world: World = field(default_factory=World)


class Executor(Protocol):
    def execute(self, runs: Runs, ctx: Context) -> dict[str, str]:
        """Train `runs`, each claimed first; returns the status each ended with (completed, diverged, failed,
        interrupted; or, where the claim found it so, busy, blocked, or the status of a run it skips). A run it
        never got to (a stop) may be missing."""
        ...


class Sequential:
    """One run after another, in this process (with `ctx.world`: as one of the processes training each run)."""

    def execute(self, runs: Runs, ctx: Context) -> dict[str, str]:
        statuses: dict[str, str] = {}
        for plan, _ in runs:
            if ctx.stop:
                break
            with claimed(plan, ctx.claim, ctx.world) as action:
                if not to_train(action):  # another process finished or took it since the plan was made
                    statuses[plan.name] = status_of(action)
                    ctx.reporter.skip_run(f"{plan.name}: {action}", plan.name)
                    continue
                device = ctx.job.cell_device(plan, ctx.device)  # a grid over device: the cell's own
                summary = train_run(
                    plan,
                    action,
                    RunDir(ctx.claim.out_dir / plan.name),
                    ctx.cache.get(plan.experiment.dataset, device),
                    device,
                    ctx.reporter,
                    ctx.stop,
                    ctx.job.keep_checkpoints,
                    ctx.world,
                )
            statuses[plan.name] = summary["status"]
        return statuses


def exit_code(statuses: dict[str, str], stop: StopRequest) -> int:
    """0 every run completed or diverged, 1 one failed, 130/143 stopped by SIGINT/SIGTERM."""
    if stop:
        return EXIT_FOR_SIGNAL.get(stop.signum, 1)
    return 1 if any(s == "failed" for s in statuses.values()) else 0
