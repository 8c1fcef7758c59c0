"""Running an experiment: the grid of runs, each isolated from the others' failures.

Re-running the same command continues where the last one stopped: runs whose summary says completed or
diverged are skipped, runs with a checkpoint resume from it, the rest start. Several `bnexp run` processes may
fill one experiment folder together (`--shard I/N` splits the plan; each run is trained by whoever claims its
lock, see bnexp.lock). A run whose files are damaged is named with what is wrong and left alone;
`--restart-run NAME` starts just that run over.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from bnexp.analyses import analyze_experiment, requested
from bnexp.claim import (
    FINISHED,
    OTHER_SHARD,
    Claim,
    claimed,
    left_to_others,
    mtime,
    plan_actions,
    record_failure,
    recorded_status,
    status_of,
    to_train,
)
from bnexp.config import ExperimentConfig, RunPlan, config_diff, expand_grid, load_series
from bnexp.data import DataCache, check_present, data_digest, download_folder
from bnexp.distributed import LAUNCHER_ENV, RankCommand, World, launch
from bnexp.errors import BnexpError
from bnexp.estimate import RunCost, busy_note, estimate, steps_left, wall_seconds
from bnexp.lock import alone, experiment_lock, holder
from bnexp.parallel import run_parallel
from bnexp.progress import PlainReporter, RunLeft, duration
from bnexp.results import REFERENCES_FILE
from bnexp.store import (
    CHECKPOINT,
    EXPERIMENT_FILE,
    SUMMARY,
    WRITERS_CONFIG,
    CorruptFile,
    RunDir,
    child_path,
    dump_yaml,
    parse_yaml,
    read_experiment_meta,
    read_regular,
    real_dir,
    remove_temp_files,
    write_atomic,
)
from bnexp.train import Silent, StopRequest, provenance, select_device, train_run
from bnexp.wording import plural

EXIT_FOR_SIGNAL = {2: 130, 15: 143}  # SIGINT, SIGTERM


def format_plan(
    cfg: ExperimentConfig, plans: list[RunPlan], actions: dict[str, str], out_dir: Path, device: str
) -> str:
    length = plural(cfg.epochs, "epoch") if cfg.epochs else plural(cfg.steps, "step")
    lines = [
        f"experiment {cfg.name}: {plural(len(plans), 'run')} on {cfg.dataset.name}, {length}, batch {cfg.batch_size}, "
        f"{cfg.optimizer.name}, device {device} -> {out_dir}",
        f"  {'run':<36} {'model':<10} {'norm':<16} {'act':<8} {'lr':>10} {'seed':>5}  action",
    ]
    lines += [
        f"  {p.name:<36} {p.model.name:<10} {p.model.norm:<16} {p.model.activation:<8} {p.lr:>10.4g} {p.seed:>5}  "
        f"{actions[p.name]}" + (f" ({p.experiment.processes} processes)" if p.experiment.processes > 1 else "")
        for p in plans
    ]
    return "\n".join(lines)


def dry_run(
    cfg: ExperimentConfig,
    out: str | Path,
    reporter: PlainReporter,
    restart: bool = False,
    restart_runs: tuple[str, ...] = (),
    jobs: int = 1,
    shard: Shard | None = None,
    data_root: str | Path | None = None,
    device_name: str | None = None,
) -> PlanCost:
    """The plan: what each run would do (start, resume, skip, busy, blocked, another shard's) and how long, and
    the wall time, calibrated on the device the runs would train on. First refuses, as run_experiment would and
    with its messages (BnexpError, exit 2), a device that is not here and a dataset whose files are not under the
    data root or the cache (present, not read: damaged files are found by the run). Reads the results folder;
    writes nothing, anywhere."""
    device = select_device(device_name or cfg.device)
    check_torch_sync(cfg, device.type)
    plans = expand_grid(cfg)
    check_restarts_in_shard(plans, restart_runs, shard)
    to_download = check_cells(cfg, plans, device, device_name, data_root, shard)
    out_dir = Path(out) / cfg.name
    actions = (
        plan_actions(plans, out_dir, restart, restart_runs) if out_dir.is_dir() else {p.name: "start" for p in plans}
    )
    actions = split(plans, actions, shard)
    devices = {p.name: cell_device(p, cfg, device, device_name) for p in plans if to_train(actions[p.name])}
    costs = estimate(plans, actions, out_dir, jobs, devices, reporter.message)
    shown = {name: f"{a} ({_cost(costs[name])})" if name in costs else a for name, a in actions.items()}
    reporter.message(format_plan(cfg, plans, shown, out_dir, str(device)))
    kinds = [status_of(a) for a in actions.values()]
    count = {k: kinds.count(k) for k in ("start", "resume", "busy", "blocked", OTHER_SHARD)}
    sources = [c.source for c in costs.values()]
    wall = duration(wall_seconds(costs, jobs))
    elsewhere = f"{count['busy']} busy in another process, " if count["busy"] else ""
    elsewhere += f"{count[OTHER_SHARD]} {OTHER_SHARD}, " if shard else ""
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


@dataclasses.dataclass(frozen=True)
class PlanCost:
    """What a dry run estimated: the runs to start or resume, their summed run time and the wall time."""

    runs: int
    run_seconds: float
    wall_seconds: float


def _cost(cost: RunCost) -> str:
    """A run's estimate as the plan shows it: `~12 min, calibrated`; a shape too large to calibrate says so."""
    if cost.extrapolated_from is None:
        return f"~{duration(cost.seconds)}, {cost.source}"
    per_step = f"{cost.per_step:.3g} s" if cost.per_step < 60 else duration(cost.per_step)
    return (
        f"~{duration(cost.seconds)}: too large to calibrate here, ~{per_step} per step, extrapolated from a "
        f"batch of {cost.extrapolated_from}"
    )


def check_cells(
    cfg: ExperimentConfig,
    plans: list[RunPlan],
    device: Any,
    device_name: str | None,
    data_root: Any,
    shard: Shard | None,
) -> set[str]:
    """Before anything is written (the run and its dry run alike): the device and the data files of the config and
    of every grid cell of this shard's runs, refused with the run's own messages (BnexpError). Returns the datasets
    the run will download first (files missing, downloads allowed). Files that are present are read by the run."""
    to_download = {cfg.dataset.name} if check_present(cfg.dataset, data_root) is None else set()
    for i, plan in enumerate(plans):
        if shard is None or i % shard.count == shard.index:
            cell_device(plan, cfg, device, device_name)
            if check_present(plan.experiment.dataset, data_root) is None:
                to_download.add(plan.experiment.dataset.name)
    return to_download


def cell_device(plan: RunPlan, cfg: ExperimentConfig, device: Any, device_name: str | None) -> Any:
    """The device a grid cell trains on: --device's, else the cell's own `device` where a grid sets it."""
    return device if device_name or plan.experiment.device == cfg.device else select_device(plan.experiment.device)


@dataclasses.dataclass(frozen=True)
class Shard:
    """`--shard INDEX/COUNT`: this process trains the runs whose position in the plan is INDEX modulo COUNT."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, _, count = text.partition("/")
        digits = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit also takes '²'
        if not (digits.fullmatch(index) and digits.fullmatch(count) and int(index) < int(count)):
            raise BnexpError(
                f"--shard {text}: expected INDEX/COUNT with 0 <= INDEX < COUNT, e.g. --shard 0/4 "
                "(Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
            )
        return cls(int(index), int(count))


def split(plans: list[RunPlan], actions: dict[str, str], shard: Shard | None) -> dict[str, str]:
    """Runs of other shards that are left to do, or blocked, are theirs (busy and finished runs say so as they are)."""
    if shard is None:
        return actions
    theirs = {p.name for i, p in enumerate(plans) if i % shard.count != shard.index}
    return {
        name: OTHER_SHARD if name in theirs and not a.startswith(("skip", "busy")) else a for name, a in actions.items()
    }


def check_restarts_in_shard(plans: list[RunPlan], restart_runs: tuple[str, ...], shard: Shard | None) -> None:
    """A run to restart that another shard trains is a usage error (exit 2): this shard would not restart it."""
    position = {p.name: i for i, p in enumerate(plans)}
    for name in restart_runs if shard else ():
        if name in position and position[name] % shard.count != shard.index:
            raise BnexpError(
                f"--restart-run {name}: that run is shard {position[name] % shard.count}/{shard.count}'s"
                f", not this one's ({shard.index}/{shard.count}); restart it there"
            )


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


def check_torch_sync(cfg: ExperimentConfig, device_type: str) -> None:
    """torch's nn.SyncBatchNorm is CUDA-only (exit 2 before anything runs)."""
    for plan in expand_grid(cfg):
        exp = plan.experiment
        if (
            exp.processes > 1
            and exp.bn_sync == "sync"
            and plan.model.norm == "torch_batchnorm"
            and device_type != "cuda"
        ):
            raise BnexpError(
                f"{cfg.name}: bn_sync: sync with norm: torch_batchnorm needs CUDA (torch's "
                "nn.SyncBatchNorm); on CPU use norm: batchnorm, whose BN synchronizes on gloo too"
            )


def run_experiment(
    cfg: ExperimentConfig,
    out: str | Path,
    reporter: PlainReporter,
    data_root: str | Path | None = None,
    device_name: str | None = None,
    restart: bool = False,
    keep_checkpoints: bool = False,
    stop: StopRequest | None = None,
    jobs: int = 1,
    restart_runs: tuple[str, ...] = (),
    world: World = World(),
    config_dir: Path | None = None,
    ranks: RankCommand | None = None,
    shard: Shard | None = None,
) -> int:
    """Train every run of the grid that is not done yet; returns the exit code: 0 all completed or diverged,
    1 some failed or are blocked, 130/143 stopped by SIGINT/SIGTERM. Bad input raises BnexpError before
    anything is written.

    Runs with `processes: N > 1` are trained by N processes: this process starts them with
    torch's elastic launcher, running `ranks` (this command, repeated in each) on the runs to do; they call this
    function again as ranks of one World. Under a user's own torchrun every rank calls it; rank 0 writes."""
    device = select_device(device_name or cfg.device)
    if world.size > 1 and device.type == "cuda":
        device = select_device("cuda", world.local_rank)
    check_torch_sync(cfg, device.type)
    if jobs > 1 and world.size > 1:
        raise BnexpError("--jobs runs single-process runs side by side; it cannot be combined with torchrun")
    plans = expand_grid(cfg)
    check_restarts_in_shard(plans, restart_runs, shard)
    check_cells(cfg, plans, device, device_name, data_root, shard)
    launched = os.environ.get(LAUNCHER_ENV)  # this process is a rank started by our own launcher
    cache = DataCache(data_root)  # each grid cell's own dataset settings, shared where they agree
    data = cache.get(cfg.dataset, device)
    out_dir = child_path(Path(out), cfg.name)
    if not world.main:
        reporter = Silent()
    stop = stop if stop is not None else StopRequest()
    since = time.time()
    with ExitStack() as held:
        if launched:
            actions = json.loads(os.environ[LAUNCHER_ENV])  # the launcher decided
            actions = {p.name: actions.get(p.name, "skip (another launch)") for p in plans}
        else:
            actions, refused = None, None
            if world.main:
                try:
                    _check_writable(Path(out), out_dir)
                    alone_here = held.enter_context(experiment_lock(out_dir, lambda: _first_writer(out_dir, cfg)))
                    # also when alone: two processes can each find the folder free (flock's EX -> SH is no atomic
                    # step); the second to record its config then finds the first's gone, and is refused
                    _check_same_experiment(out_dir, cfg, fallback=not alone_here)
                    actions = split(plans, plan_actions(plans, out_dir, restart, restart_runs, since), shard)
                except BnexpError as e:  # under torchrun the other ranks must hear it, not wait forever
                    refused = str(e)
                if world.size > 1 and actions is not None:  # a user's torchrun: it trains the runs of its size
                    for p in plans:
                        if p.experiment.processes != world.size and to_train(actions[p.name]):
                            actions[p.name] = f"skip (needs processes: {p.experiment.processes})"
            refused, actions = world.broadcast((refused, actions))
            if refused:
                world.barrier()  # every rank has the message before any exits (torchrun ends the rest then)
                raise BnexpError(refused)
            if world.main:
                reporter.message(format_plan(cfg, plans, actions, out_dir, str(device)))
                write_atomic(out_dir / EXPERIMENT_FILE, dump_yaml(_experiment_record(cfg, plans, data, device)))
                if cfg.reference and cfg.reference.series and config_dir is not None:
                    series = {
                        variant: [{**ref.model_dump(), **load_series(config_dir, ref)} for ref in refs]
                        for variant, refs in cfg.reference.series.items()
                    }
                    write_atomic(out_dir / REFERENCES_FILE, json.dumps(series) + "\n")
        # a rank of our launcher counts only its launch's runs (the launcher reports on the others)
        reporter.start_experiment(
            {
                p.name: RunLeft(steps_left(p, actions[p.name], out_dir), p.experiment.batch_size)
                for p in plans
                if to_train(actions[p.name])
            }
            if world.main
            else {}
        )
        statuses: dict[str, str] = {}
        for plan in plans:
            action = actions[plan.name]
            if not to_train(action) and not launched:
                statuses[plan.name] = status_of(action)
                reporter.skip_run(f"{plan.name}: {action}")
        todo = [(p, actions[p.name]) for p in plans if to_train(actions[p.name])]
        if world.size == 1 and not launched:
            multi = [(p, a) for p, a in todo if p.experiment.processes > 1]
            todo = [(p, a) for p, a in todo if p.experiment.processes == 1]
            for n in sorted({p.experiment.processes for p, _ in multi}):
                group = [(p, a) for p, a in multi if p.experiment.processes == n]
                if ranks is None:
                    raise BnexpError(
                        f"{group[0][0].name} needs {n} processes: start it with `bnexp run` (which "
                        f"launches them) or torchrun --nproc_per_node={n}"
                    )
                if not stop:
                    ended = launch_group(group, n, ranks, out_dir, reporter, stop)
                    for name, status in ended.items():  # the experiment's progress, as for --jobs workers
                        reporter.run_finished(name, status)
                    statuses |= ended
        claim = (
            Claim(out_dir, restart, restart_runs, since)
            if not launched  # the launcher's starts are restarts
            else Claim(out_dir, restart_runs=tuple(n for n, a in actions.items() if a == "start"))
        )
        if jobs > 1 and todo:  # also for a single run: with --jobs N every run computes with cores/N threads
            statuses |= run_parallel(
                [p for p, _ in todo], jobs, data_root, device_name, keep_checkpoints, stop, reporter, claim
            )
            todo = []
        for plan, _ in todo:
            if stop:
                break
            with claimed(plan, claim, world) as action:
                if not to_train(action):  # another process finished or took it since the plan was made
                    statuses[plan.name] = status_of(action)
                    reporter.skip_run(f"{plan.name}: {action}", plan.name)
                    continue
                on = cell_device(plan, cfg, device, device_name)  # a grid over device: the cell's own
                summary = train_run(
                    plan,
                    action,
                    RunDir(out_dir / plan.name),
                    cache.get(plan.experiment.dataset, on),
                    on,
                    reporter,
                    stop,
                    keep_checkpoints,
                    world,
                )
            statuses[plan.name] = summary["status"]
        reporter.close()
        analysis_problems = 0
        if world.main and not launched and requested(cfg.analyses) and not stop:
            analysis_problems = _analyze_when_all_ended(
                cfg, plans, statuses, out_dir, data_root, device, reporter, Path(out)
            )
    world.barrier()
    if launched:  # the launcher reports for the whole experiment
        if stop:  # a stopped rank says so (130/143): it then ends at once instead of waiting on the launcher
            return EXIT_FOR_SIGNAL.get(stop.signum, 1)
        return 1 if any(s == "failed" for s in statuses.values()) else 0
    counts = {s: sum(v == s for v in statuses.values()) for s in dict.fromkeys(statuses.values())}
    reporter.message(f"{cfg.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" -> {out_dir}")
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
    return 1 if analysis_problems or any(s in ("failed", "blocked") for s in statuses.values()) else 0


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


def _analyze_when_all_ended(
    cfg: ExperimentConfig,
    plans: list[RunPlan],
    statuses: dict[str, str],
    out_dir: Path,
    data_root: Any,
    device: Any,
    reporter: PlainReporter,
    results: Path,
) -> int:
    """The experiment's analyses, by the last of the processes filling the folder to finish (the others say so)."""
    waiting = left_to_others(plans, out_dir, statuses)
    if waiting:
        reporter.message(
            f"analyses: {len(waiting)} of {len(plans)} runs are with other processes; the last to "
            f"end computes them (or run `bnexp analyze {out_dir}` then)"
        )
        return 0
    with alone(out_dir) as first:
        if not first:
            reporter.message("analyses: another process is computing them")
            return 0
        return analyze_experiment(out_dir, data_root, device, False, reporter.message, results)


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


def launch_group(
    group: list[tuple[RunPlan, str]],
    nproc: int,
    ranks: RankCommand,
    out_dir: Path,
    reporter: PlainReporter,
    stop: StopRequest,
) -> dict[str, str]:
    """Train `group` (runs of `nproc` processes) with `nproc` processes started by torch's elastic launcher.
    A process that fails ends its group: its run is marked failed (by the process itself, or here from the
    launcher's report when it died without a word) and the processes start again for the group's other runs."""
    statuses: dict[str, str] = {}
    todo = dict((p.name, a) for p, a in group)
    code = 0
    while todo and not stop:
        started = time.time()
        reporter.message(f"starting {nproc} processes for {', '.join(todo)}")
        code, message, signum = launch(nproc, ranks, todo)
        if signum is not None:  # the launcher took over SIGINT/SIGTERM while it ran: ours again, and stop
            stop.install()
            stop.request(signum)
        for name in list(todo):
            run = RunDir(out_dir / name)
            status = recorded_status(run.path)
            if status and mtime(run.path / SUMMARY) >= started:
                statuses[name] = status
                del todo[name]
            elif code and mtime(run.path / "config.yaml") >= started:  # it died without a word
                record_failure(run, f"a process ended: {message[-500:]}", message + "\n")
                statuses[name] = "failed"
                del todo[name]
        if code == 0 or stop:
            break
        if code:
            reporter.message(message)
            if not any(s == "failed" for s in statuses.values()):
                break  # nothing to blame and skip: do not loop
        todo = {
            n: ("resume" if (out_dir / n / CHECKPOINT).is_file() else "start") if a == "resume" else a
            for n, a in todo.items()
        }
    for name in todo:  # not trained by this launch: stopped, or rank 0 found it taken, finished or blocked meanwhile
        declined = "blocked" if code == 0 else "failed"  # a launch that ended well left it on purpose (ranks said why)
        recorded = recorded_status(out_dir / name)
        statuses.setdefault(
            name,
            "interrupted"
            if stop
            else "busy"
            if holder(out_dir / name)
            else recorded
            if recorded in FINISHED
            else declined,
        )
    return statuses
