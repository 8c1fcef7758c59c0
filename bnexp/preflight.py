"""The plan of one `bnexp run` of one config (a bnexp.job.Job): what is checked before anything is written
(device, data, shards; a committed results folder by `check_committed`, which the CLI calls), what each run is
to do, and the plan shown without training (`--dry-run`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bnexp.claim import OTHER_SHARD, plan_actions, status_of, to_train
from bnexp.config import ExperimentConfig
from bnexp.data import check_present, download_folder
from bnexp.distributed import World
from bnexp.errors import BnexpError
from bnexp.estimate import RunCost, busy_note, estimate, wall_seconds
from bnexp.job import Job
from bnexp.progress import PlainReporter, duration
from bnexp.store import COMMITTED_MARK, committed_folder
from bnexp.wording import plural


def check_committed(out: Path, restart: bool, allowed: bool) -> None:
    """Committed results are added to on purpose only, and never deleted by a restart (exit 2 otherwise)."""
    folder = committed_folder(out)
    if folder is None:
        return
    if restart:
        raise BnexpError(
            f"--out {out}: {folder} holds committed results (it carries {COMMITTED_MARK}); --restart and "
            "--restart-run would delete them: train into a working folder (--out runs, the default) instead"
        )
    if not allowed:
        raise BnexpError(
            f"--out {out}: {folder} holds committed results (it carries {COMMITTED_MARK}); bnexp run writes into "
            "runs/ by default: leave out --out, or add --write-committed to add runs there"
        )


def check(job: Job, world: World = World()) -> tuple[Any, set[str]]:
    """Before anything is written (the run and its dry run alike): the device, torch's SyncBN, --jobs under
    torchrun, --restart-run against --shard, and the device and data files of the config and of every grid cell
    of this shard's runs, refused with the run's own messages (BnexpError, exit 2). Returns the device and the
    datasets the run will download first (files missing, downloads allowed). Files present are read by the run."""
    device = job.device(world)
    check_torch_sync(job, device.type)
    if job.jobs > 1 and world.size > 1:
        raise BnexpError("--jobs runs single-process runs side by side; it cannot be combined with torchrun")
    check_restarts_in_shard(job)
    to_download = {job.cfg.dataset.name} if check_present(job.cfg.dataset, job.data_root) is None else set()
    for i, plan in enumerate(job.runs):
        if job.mine(i):
            job.cell_device(plan, device)
            if check_present(plan.experiment.dataset, job.data_root) is None:
                to_download.add(plan.experiment.dataset.name)
    return device, to_download


def check_torch_sync(job: Job, device_type: str) -> None:
    """torch's nn.SyncBatchNorm is CUDA-only (exit 2 before anything runs)."""
    for plan in job.runs:
        exp = plan.experiment
        if (
            exp.processes > 1
            and exp.bn_sync == "sync"
            and plan.model.norm == "torch_batchnorm"
            and device_type != "cuda"
        ):
            raise BnexpError(
                f"{job.cfg.name}: bn_sync: sync with norm: torch_batchnorm needs CUDA (torch's "
                "nn.SyncBatchNorm); on CPU use norm: batchnorm, whose BN synchronizes on gloo too"
            )


def check_restarts_in_shard(job: Job) -> None:
    """A run to restart that another shard trains is a usage error (exit 2): this shard would not restart it."""
    position = {p.name: i for i, p in enumerate(job.runs)}
    shard = job.shard
    for name in job.restart_runs if shard else ():
        if name in position and not shard.holds(position[name]):
            raise BnexpError(
                f"--restart-run {name}: that run is shard {position[name] % shard.count}/{shard.count}'s"
                f", not this one's ({shard.index}/{shard.count}); restart it there"
            )


def decide_actions(job: Job, since: float | None = None) -> dict[str, str]:
    """What to do with each run, as its files say (bnexp.claim.plan_actions, which refuses a changed config):
    start, resume, skip, busy, blocked; and the runs of other shards that are left to do, or blocked, are theirs
    (busy and finished runs say so as they are). `since`: when this command started (see plan_actions)."""
    found = (
        plan_actions(job.runs, job.out_dir, job.restart, job.restart_runs, since)
        if job.out_dir.is_dir()
        else {p.name: "start" for p in job.runs}  # a dry run of a new experiment
    )
    if job.shard is None:
        return found
    theirs = {p.name for i, p in enumerate(job.runs) if not job.mine(i)}
    return {
        name: OTHER_SHARD if name in theirs and not a.startswith(("skip", "busy")) else a for name, a in found.items()
    }


def format_plan(job: Job, actions: dict[str, str], device: str) -> str:
    cfg = job.cfg
    length = plural(cfg.epochs, "epoch") if cfg.epochs else plural(cfg.steps, "step")
    lines = [
        f"experiment {cfg.name}: {plural(len(job.runs), 'run')} on {cfg.dataset.name}, {length}, batch "
        f"{cfg.batch_size}, {cfg.optimizer.name}, device {device} -> {job.out_dir}",
        f"  {'run':<36} {'model':<10} {'norm':<16} {'act':<8} {'lr':>10} {'seed':>5}  action",
    ]
    lines += [
        f"  {p.name:<36} {p.model.name:<10} {p.model.norm:<16} {p.model.activation:<8} {p.lr:>10.4g} {p.seed:>5}  "
        f"{actions[p.name]}" + (f" ({p.experiment.processes} processes)" if p.experiment.processes > 1 else "")
        for p in job.runs
    ]
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class PlanCost:
    """What a dry run estimated: the runs to start or resume, their summed run time and the wall time."""

    runs: int
    run_seconds: float
    wall_seconds: float

    def __add__(self, other: PlanCost) -> PlanCost:
        return PlanCost(
            self.runs + other.runs, self.run_seconds + other.run_seconds, self.wall_seconds + other.wall_seconds
        )


def dry_run(
    cfg: ExperimentConfig,
    out: str | Path,
    reporter: PlainReporter,
    data_root: str | Path | None = None,
    device_name: str | None = None,
    **options: Any,
) -> PlanCost:
    """show_plan of `cfg`'s Job; `options` are Job's fields (restart=..., jobs=..., shard=...)."""
    return show_plan(Job.of(cfg, out, data_root, device_name, **options), reporter)


def show_plans(jobs: Iterable[Job], reporter: PlainReporter) -> PlanCost:
    """A catalogue's budget (`bnexp run configs/*.yaml --dry-run`): show_plan of each job, one after another, and
    what they cost together; the first bad one stops it (BnexpError)."""
    total = PlanCost(0, 0.0, 0.0)
    for job in jobs:
        total += show_plan(job, reporter)
        reporter.message("")
    return total


def show_plan(job: Job, reporter: PlainReporter) -> PlanCost:
    """The plan: what each run would do (start, resume, skip, busy, blocked, another shard's) and how long, and
    the wall time, calibrated on the device the runs would train on. First refuses what the run would refuse,
    with its messages (`check`: a device that is not here, data files missing, ...). Reads the results folder;
    writes nothing, anywhere."""
    device, to_download = check(job)
    out_dir, jobs, todo = job.out_dir, job.jobs, decide_actions(job)
    devices = {p.name: job.cell_device(p, device) for p in job.runs if to_train(todo[p.name])}
    costs = estimate(job.runs, todo, out_dir, jobs, devices, reporter.message)
    shown = {name: f"{a} ({_cost(costs[name])})" if name in costs else a for name, a in todo.items()}
    reporter.message(format_plan(job, shown, str(device)))
    kinds = [status_of(a) for a in todo.values()]
    count = {k: kinds.count(k) for k in ("start", "resume", "busy", "blocked", OTHER_SHARD)}
    sources = [c.source for c in costs.values()]
    wall = duration(wall_seconds(costs, jobs))
    elsewhere = f"{count['busy']} busy in another process, " if count["busy"] else ""
    elsewhere += f"{count[OTHER_SHARD]} {OTHER_SHARD}, " if job.shard else ""
    reporter.message(
        f"dry run: {count['start']} to start, {count['resume']} to resume, "
        f"{len(kinds) - sum(count.values())} finished, {elsewhere}{count['blocked']} blocked; estimated wall time "
        f"{wall} with --jobs {jobs} (per-run times: {sources.count('measured')} from finished runs of the same "
        f"shape, {sources.count('calibrated')} calibrated here, "
        + (
            f"{sources.count('extrapolated')} too large to calibrate here, extrapolated from a sub-batch, "
            if "extrapolated" in sources
            else ""
        )
        + "without probes and multi-process collectives); nothing was written"
    )
    if to_download:  # a dry run downloads nothing; the run will, first
        reporter.message(
            f"note: {', '.join(sorted(to_download))} not found here: the run downloads it first, into "
            f"{download_folder()}"
        )
    note = busy_note() if {"calibrated", "extrapolated"} & set(sources) else None
    if note:
        reporter.message(f"note: {note}")
    return PlanCost(len(costs), sum(c.seconds for c in costs.values()), wall_seconds(costs, jobs))


def _cost(cost: RunCost) -> str:
    """A run's estimate as the plan shows it: `~12 min, calibrated`; a shape too large to calibrate says so."""
    if cost.extrapolated_from is None:
        return f"~{duration(cost.seconds)}, {cost.source}"
    per_step = f"{cost.per_step:.3g} s" if cost.per_step < 60 else duration(cost.per_step)
    return (
        f"~{duration(cost.seconds)}: too large to calibrate here, ~{per_step} per step, extrapolated from a "
        f"batch of {cost.extrapolated_from}"
    )
