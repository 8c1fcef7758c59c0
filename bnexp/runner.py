"""Running an experiment: the grid of runs, each isolated from the others' failures.

Re-running the same command continues where the last one stopped: runs whose summary says completed or
diverged are skipped, runs with a checkpoint resume from it, the rest start. Several `bnexp run` processes may
fill one experiment folder together (`--shard I/N` splits the plan; each run is trained by whoever claims its
lock, see bnexp.lock). A run whose files are damaged is named with what is wrong and left alone;
`--restart-run NAME` starts just that run over.

`run` is the whole command, in five steps: the plan (a bnexp.job.Job: the runs, expanded once; checked by
bnexp.preflight before anything is written), the claim on the experiment folder (its lock, each run's action,
experiment.yaml), the execution (each run by the executor `executors` chooses for it: bnexp.execute), the
analyses, the exit code.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from bnexp.analyses import analyze_experiment, requested
from bnexp.claim import Claim, left_to_others, status_of, to_train
from bnexp.config import ExperimentConfig, RunPlan, config_diff, load_series
from bnexp.data import DataCache, data_digest
from bnexp.distributed import World
from bnexp.errors import BnexpError
from bnexp.estimate import steps_left
from bnexp.execute import EXIT_FOR_SIGNAL, Context, Executor, Runs, Sequential
from bnexp.job import Job
from bnexp.lock import alone, experiment_lock
from bnexp.parallel import Workers
from bnexp.preflight import check, decide_actions, format_plan
from bnexp.progress import PlainReporter, RunLeft
from bnexp.ranks import Ranks
from bnexp.results import REFERENCES_FILE
from bnexp.store import (
    EXPERIMENT_FILE,
    WRITERS_CONFIG,
    CorruptFile,
    child_path,
    dump_yaml,
    parse_yaml,
    read_experiment_meta,
    read_regular,
    real_dir,
    remove_temp_files,
    write_atomic,
)
from bnexp.train import Silent, StopRequest, provenance


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path,
    reporter: PlainReporter,
    data_root: str | Path | None = None,
    device_name: str | None = None,
    *,
    stop: StopRequest | None = None,
    world: World = World(),
    **options: Any,
) -> int:
    """`run` of `cfg`'s Job; `options` are Job's fields (restart=..., restart_runs=..., keep_checkpoints=...,
    jobs=..., shard=..., config_dir=...)."""
    return run(Job.of(cfg, out, data_root, device_name, **options), reporter, stop, world)


def run(job: Job, reporter: PlainReporter, stop: StopRequest | None = None, world: World = World()) -> int:
    """Train every run of the job's plan that is not done yet; returns the exit code: 0 all completed or diverged,
    1 some failed or are blocked, 130/143 stopped by SIGINT/SIGTERM. Bad input raises BnexpError before anything
    is written. Under the user's torchrun every process calls this with its World; rank 0 writes."""
    stop = stop if stop is not None else StopRequest()
    reporter = reporter if world.main else Silent()
    device, _ = check(job, world)
    cache = DataCache(job.data_root)  # each grid cell's own dataset settings, shared where they agree
    data = cache.get(job.cfg.dataset, device)
    claim = Claim(child_path(job.out, job.cfg.name), job.restart, job.restart_runs, since=time.time())
    with claim_experiment(job, claim, data, device, reporter, world) as actions:
        context = Context(job, claim, device, cache, reporter, stop, world)
        statuses = execute(job, actions, context)
        problems = analyse(job, statuses, context)
    world.barrier()
    return outcome(job, statuses, problems, reporter, stop)


@contextmanager
def claim_experiment(
    job: Job, claim: Claim, data: Any, device: Any, reporter: PlainReporter, world: World
) -> Iterator[dict[str, str]]:
    """The experiment folder, held (shared with the other processes that fill it) while the block runs, and each
    run's action: start, resume, skip, busy, blocked, another shard's. Rank 0 decides and tells the others; it
    prints the plan and records the experiment (experiment.yaml, the reference series). A folder that cannot be
    written or that another config is filling is refused (BnexpError), on every rank."""
    out_dir = claim.out_dir
    with ExitStack() as held:
        actions, refused = None, None
        if world.main:
            try:
                _check_writable(job.out, out_dir)
                alone_here = held.enter_context(experiment_lock(out_dir, lambda: _first_writer(out_dir, job.cfg)))
                # also when alone: two processes can each find the folder free (flock's EX -> SH is no atomic
                # step); the second to record its config then finds the first's gone, and is refused
                _check_same_experiment(out_dir, job.cfg, fallback=not alone_here)
                actions = decide_actions(job, claim.since)
            except BnexpError as e:  # under torchrun the other ranks must hear it, not wait forever
                refused = str(e)
            if world.size > 1 and actions is not None:  # a user's torchrun: it trains the runs of its size
                for p in job.runs:
                    if p.experiment.processes != world.size and to_train(actions[p.name]):
                        actions[p.name] = f"skip (needs processes: {p.experiment.processes})"
        refused, actions = world.broadcast((refused, actions))
        if refused:
            world.barrier()  # every rank has the message before any exits (torchrun ends the rest then)
            raise BnexpError(refused)
        if world.main:
            reporter.message(format_plan(job, actions, str(device)))
            _record_experiment(job, out_dir, data, device)
        yield actions


def execute(job: Job, actions: dict[str, str], context: Context) -> dict[str, str]:
    """Every run's status: those not to train here as their action says, the others as their executor ends them."""
    reporter, out_dir = context.reporter, context.claim.out_dir
    todo = [(p, actions[p.name]) for p in job.runs if to_train(actions[p.name])]
    reporter.start_experiment(
        {p.name: RunLeft(steps_left(p, a, out_dir), p.experiment.batch_size) for p, a in todo}
        if context.world.main
        else {}
    )
    statuses: dict[str, str] = {}
    for plan in job.runs:
        if not to_train(actions[plan.name]):
            statuses[plan.name] = status_of(actions[plan.name])
            reporter.skip_run(f"{plan.name}: {actions[plan.name]}")
    for executor, runs in executors(todo, job, context.world):
        statuses |= executor.execute(runs, context)
    reporter.close()
    return statuses


def executors(todo: Runs, job: Job, world: World) -> list[tuple[Executor, Runs]]:
    """The one place that decides how each run trains. Under the user's torchrun: every run here, by all its
    processes together (they are the runs of its size). Otherwise the runs of N > 1 processes first, by N
    processes bnexp starts (fewest first), then the one-process runs: by --jobs workers, or here one after
    another."""
    if world.size > 1:
        return [(Sequential(), todo)] if todo else []
    chosen: list[tuple[Executor, Runs]] = [
        (Ranks(n), [(p, a) for p, a in todo if p.experiment.processes == n])
        for n in sorted({p.experiment.processes for p, _ in todo} - {1})
    ]
    single = [(p, a) for p, a in todo if p.experiment.processes == 1]
    if single:
        chosen.append((Workers(job.jobs) if job.jobs > 1 else Sequential(), single))
    return chosen


def analyse(job: Job, statuses: dict[str, str], context: Context) -> int:
    """The experiment's analyses (the config's `analyses:`), by the last of the processes filling the folder to
    finish (the others say so); returns how many could not run."""
    reporter, out_dir = context.reporter, context.claim.out_dir
    if not context.world.main or not requested(job.cfg.analyses) or context.stop:
        return 0
    waiting = left_to_others(job.runs, out_dir, statuses)
    if waiting:
        reporter.message(
            f"analyses: {len(waiting)} of {len(job.runs)} runs are with other processes; the last to "
            f"end computes them (or run `bnexp analyze {out_dir}` then)"
        )
        return 0
    with alone(out_dir) as first:
        if not first:
            reporter.message("analyses: another process is computing them")
            return 0
        return analyze_experiment(out_dir, job.data_root, context.device, False, reporter.message, job.out)


def outcome(job: Job, statuses: dict[str, str], problems: int, reporter: PlainReporter, stop: StopRequest) -> int:
    """The exit code, and the lines that explain it: what each run ended as, why the command stopped."""
    out_dir = job.out_dir
    counts = {s: sum(v == s for v in statuses.values()) for s in dict.fromkeys(statuses.values())}
    reporter.message(f"{job.cfg.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" -> {out_dir}")
    interrupted = [name for name, s in statuses.items() if s == "interrupted"]
    if stop or interrupted:
        signum = stop.signum if stop else 15
        reporter.message(f"stopped by signal {signum}; run the same command again to resume")
        return EXIT_FOR_SIGNAL.get(signum, 1)
    for kind in ("failed", "blocked", "busy"):
        names = [name for name, s in statuses.items() if s == kind]
        if names:
            reporter.message(
                f"{kind} runs: {', '.join(names)}"
                + (" (trained by other processes: run again after they end to check)" if kind == "busy" else "")
            )
    return 1 if problems or any(s in ("failed", "blocked") for s in statuses.values()) else 0


def _check_writable(out: Path, out_dir: Path) -> None:
    """The experiment folder is a real folder under --out (no link on the way) where a file can be created.
    The probe is a fresh temp file (O_EXCL), so nothing planted in the folder is ever written through."""
    try:
        real_dir(out, out_dir)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".write-test")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise BnexpError(
            f"{out_dir}: output directory is not writable ({e.strerror or e}); choose another with --out"
        ) from None


def _record_experiment(job: Job, out_dir: Path, data: Any, device: Any) -> None:
    """experiment.yaml (the config, the plan's runs, the data by content, where it ran) and the reference series."""
    cfg, config_dir = job.cfg, job.config_dir
    write_atomic(out_dir / EXPERIMENT_FILE, dump_yaml(_experiment_record(cfg, job.runs, data, device)))
    if cfg.reference and cfg.reference.series and config_dir is not None:
        series = {
            variant: [{**ref.model_dump(), **load_series(config_dir, ref)} for ref in refs]
            for variant, refs in cfg.reference.series.items()
        }
        write_atomic(out_dir / REFERENCES_FILE, json.dumps(series) + "\n")


def _first_writer(out_dir: Path, cfg: ExperimentConfig) -> None:
    """While alone in the folder: clean up interrupted writes, and record the config the writers share, so that a
    process that starts while this one still plans (experiment.yaml not yet written) compares with it."""
    remove_temp_files(out_dir)
    write_atomic(out_dir / WRITERS_CONFIG, dump_yaml(cfg.model_dump()))


def _check_same_experiment(out_dir: Path, cfg: ExperimentConfig, fallback: bool = True) -> None:
    """Processes that write one folder together must run one experiment (same config, maybe other shards). With
    `fallback`, a folder without the writers' record (an older bnexp's) is compared with its experiment.yaml."""
    try:
        recorded = parse_yaml(read_regular(out_dir / WRITERS_CONFIG, follow=False))
    except (CorruptFile, OSError, yaml.YAMLError, UnicodeDecodeError):
        recorded = None
    if not isinstance(recorded, dict) and fallback:
        try:
            recorded = read_experiment_meta(out_dir)["config"]
        except (CorruptFile, OSError):
            recorded = None
    if not isinstance(recorded, dict):
        return  # nothing to compare with: it is rewritten
    diff = config_diff(recorded, yaml.safe_load(dump_yaml(cfg.model_dump())))  # as it is recorded
    if diff:
        raise BnexpError(
            f"{out_dir} is being written by another bnexp process with a different config ("
            f"{'; '.join(diff[:3])}); wait for it, or use another --out"
        )


def _experiment_record(cfg: ExperimentConfig, plans: list[RunPlan], data: Any, device: Any) -> dict:
    return {
        "config": cfg.model_dump(),
        "runs": [p.name for p in plans],
        # the dataset by name and content, never by the folder it was read from (records travel between machines)
        "data": {
            "dataset": data.name,
            "sha256": data_digest(data),
            "train_images": len(data.train),
            "test_images": len(data.test),
            "mean": data.mean,
            "std": data.std,
        },
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **provenance(device),
    }
