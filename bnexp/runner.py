"""Running an experiment: the grid of runs, each isolated from the others' failures.

Re-running the same command continues where the last one stopped: runs whose summary says completed or
diverged are skipped, runs with a checkpoint resume from it, the rest start. One `bnexp run` at a time may
write an experiment directory (`bnexp.lock`). A run whose files are damaged is named with what is wrong and
left alone; `--restart-run NAME` starts just that run over.
"""

from __future__ import annotations

import dataclasses
import os
import time
import typing
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bnexp.config import ExperimentConfig, ModelConfig, RunPlan, expand_grid
from bnexp.data import load_data
from bnexp.distributed import LAUNCHER_LOCK_ENV, SKIP_RUNS_ENV, World, launch
from bnexp.errors import BnexpError
from bnexp.lock import experiment_lock
from bnexp.parallel import run_parallel
from bnexp.progress import PlainReporter
from bnexp.store import (
    CHECKPOINT,
    EXPERIMENT_FILE,
    SUMMARY,
    CorruptFile,
    RunDir,
    child_path,
    dump_yaml,
    remove_temp_files,
    write_atomic,
)  # fmt: skip
from bnexp.train import Silent, StopRequest, provenance, select_device, train_run

FINISHED = ("completed", "diverged")
# keys that do not change what a run computes: editing them never invalidates a started run
# (eval_batch_size only reorders the float sum of the test loss, ~1e-6 relative; accuracy is unchanged)
NOT_COMPARED = ("description", "reference", "smoke", "eval_batch_size", "analyses")
EXIT_FOR_SIGNAL = {2: 130, 15: 143}  # SIGINT, SIGTERM


def format_plan(
    cfg: ExperimentConfig, plans: list[RunPlan], actions: dict[str, str], out_dir: Path, device: str,
    processes: int = 1,
) -> str:
    length = f"{cfg.epochs} epochs" if cfg.epochs else f"{cfg.steps} steps"
    procs = ""
    if processes > 1:
        procs = f", {processes} processes x {cfg.batch_size // processes} images (bn_sync {cfg.bn_sync})"
    lines = [
        f"experiment {cfg.name}: {len(plans)} runs on {cfg.dataset.name}, {length}, batch {cfg.batch_size}{procs}, "
        f"{cfg.optimizer.name}, device {device} -> {out_dir}",
        f"  {'run':<36} {'model':<10} {'norm':<16} {'act':<8} {'lr':>10} {'seed':>5}  action",
    ]
    lines += [
        f"  {p.name:<36} {p.model.name:<10} {p.model.norm:<16} {p.model.activation:<8} {p.lr:>10.4g} {p.seed:>5}  "
        f"{actions[p.name]}"
        for p in plans
    ]
    return "\n".join(lines)


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise BnexpError(
            f"{out_dir}: output directory is not writable ({e.strerror or e}); choose another with --out"
        ) from None


# the model entry's lr_multipliers/seeds only say which runs exist (recorded by older versions)
NOT_COMPARED_PATHS = ("model.lr_multipliers", "model.seeds")
_MISSING = object()


def _default_at(path: list[str]) -> Any:
    """The schema default of a resolved-config key path (`dataset.normalize`, `model.renorm`), or _MISSING."""
    cls: Any = ExperimentConfig
    for i, key in enumerate(path):
        if i == 0 and key == "model":
            cls = ModelConfig
            continue
        fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if key not in fields:
            return _MISSING
        f = fields[key]
        if i == len(path) - 1:
            if f.default is not dataclasses.MISSING:
                return f.default
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else _MISSING
        hints = typing.get_type_hints(cls)
        cls = next((a for a in (*typing.get_args(hints[key]), hints[key]) if dataclasses.is_dataclass(a)), None)
    return _MISSING


def _config_diff(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[str]:
    """The differences between a run's recorded config and today's. A key that an older bnexp did not record
    counts as equal when today's value is its default (what that version ran with)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            p = (*path, str(key))
            if (not path and key in NOT_COMPARED) or ".".join(p) in NOT_COMPARED_PATHS:
                continue
            if key not in old and _default_at(list(p)) == new[key]:
                continue
            out += _config_diff(old.get(key), new.get(key), p)
        return out
    return [] if old == new else [f"{'.'.join(path)}: {old!r} -> {new!r}"]


def plan_actions(
    plans: list[RunPlan], out_dir: Path, restart: bool, restart_runs: tuple[str, ...] = (), processes: int = 1,
    skip: tuple[str, ...] = (),
) -> dict[str, str]:
    """What to do with each run: start, resume, skip (...) or blocked (why). A run whose recorded config
    differs is refused (all of them at once, before anything is written); a run whose files cannot be read
    is blocked with what to do, and the others go on."""
    unknown = sorted(set(restart_runs) - {p.name for p in plans})
    if unknown:
        raise BnexpError(f"--restart-run: {', '.join(unknown)} is not a run of this experiment; its runs: "
                         f"{', '.join(p.name for p in plans)}")  # fmt: skip
    actions, conflicts = {}, []
    for plan in plans:
        run = RunDir(child_path(out_dir, plan.name))
        if plan.name in skip:
            actions[plan.name] = "skip (failed earlier in this launch)"
            continue
        if restart or plan.name in restart_runs or not (run.path / "config.yaml").is_file():
            actions[plan.name] = "start"
            continue
        try:
            recorded, summary = run.config(), run.summary() or {}
        except CorruptFile as e:
            actions[plan.name] = f"blocked: {e}; start it over with --restart-run {plan.name}"
            continue
        diff = _config_diff(recorded, plan.resolved(processes))
        has_checkpoint = (run.path / CHECKPOINT).is_file()
        if diff and (summary.get("status") in FINISHED or has_checkpoint):
            conflicts.append(f"{plan.name}: " + "; ".join(diff))
        elif summary.get("status") in FINISHED:
            actions[plan.name] = f"skip ({summary['status']})"
        else:
            actions[plan.name] = "resume" if has_checkpoint else "start"
    if conflicts:
        raise BnexpError(
            f"{out_dir}: the config changed since these runs started; run with --restart to start them all over, "
            "--restart-run NAME for one, or use another --out:\n  " + "\n  ".join(conflicts)
        )
    return actions


def check_world(cfg: ExperimentConfig, world: World, device_type: str) -> None:
    """What several processes need from a config (exit 2 before anything runs)."""
    if world.size == 1:
        return
    where = f"{cfg.name} with {world.size} processes"
    if cfg.batch_size % world.size:
        raise BnexpError(f"{where}: batch_size {cfg.batch_size} (the global batch) is not divisible by "
                         f"{world.size} processes; use a multiple of {world.size}")  # fmt: skip
    norms = {m.norm for m in cfg.models}
    batch_stats = norms & {"batchnorm", "torch_batchnorm", "naive_batchnorm", "batchrenorm", "noisy_batchnorm"}
    if batch_stats and cfg.batch_size // world.size < 2:
        raise BnexpError(f"{where}: {cfg.batch_size // world.size} image per process cannot give batch "
                         "statistics; BN needs at least 2 per process")  # fmt: skip
    if cfg.bn_sync == "sync" and "naive_batchnorm" in norms:
        raise BnexpError(f"{where}: bn_sync: sync is not available for naive_batchnorm; allowed: batchnorm, "
                         "batchrenorm, noisy_batchnorm (any backend), torch_batchnorm (CUDA)")  # fmt: skip
    if cfg.bn_sync == "sync" and "torch_batchnorm" in norms and device_type != "cuda":
        raise BnexpError(f"{where}: torch's nn.SyncBatchNorm runs on CUDA only; on CPU use norm: batchnorm "
                         "(bnexp's own BN synchronizes on gloo too)")  # fmt: skip
    if cfg.compile:
        raise BnexpError(f"{where}: compile: true is for one process; set compile: false")
    if cfg.landscape_probe or cfg.ics_probe:
        raise BnexpError(f"{where}: landscape_probe and ics_probe measure one process's model; run them with "
                         "one process")  # fmt: skip


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
) -> int:
    """Train every run of the grid that is not done yet; returns the exit code: 0 all completed or diverged,
    1 some failed or are blocked, 130/143 stopped by SIGINT/SIGTERM. Bad input raises BnexpError before
    anything is written. With several processes (torchrun), every process calls this; rank 0 writes."""
    device = select_device(device_name or cfg.device)
    if world.size > 1 and device.type == "cuda":
        device = select_device("cuda", world.local_rank)
    check_world(cfg, world, device.type)
    if jobs > 1 and world.size > 1:
        raise BnexpError("--jobs runs several single-process runs at once; it cannot be combined with torchrun")
    plans = expand_grid(cfg)
    data = load_data(cfg.dataset, device, data_root)
    out_dir = child_path(Path(out), cfg.name)
    if not world.main:
        reporter = Silent()
    elif world.size == 1 or os.environ.get(LAUNCHER_LOCK_ENV) is None:
        _check_writable(out_dir)
    stop = stop if stop is not None else StopRequest()
    skip = tuple(n for n in os.environ.get(SKIP_RUNS_ENV, "").split(",") if n)
    locked = world.main and os.environ.get(LAUNCHER_LOCK_ENV) is None
    with experiment_lock(out_dir) if locked else nullcontext():
        actions = None
        if world.main:
            remove_temp_files(out_dir)
            actions = plan_actions(plans, out_dir, restart, restart_runs, world.size, skip)
        actions = world.broadcast(actions)
        if world.main:
            reporter.message(format_plan(cfg, plans, actions, out_dir, str(device), world.size))
            write_atomic(out_dir / EXPERIMENT_FILE, dump_yaml(_experiment_record(cfg, plans, data, device, world)))
        reporter.start_experiment(len(plans))
        statuses: dict[str, str] = {}
        for plan in plans:
            action = actions[plan.name]
            if action.startswith(("skip", "blocked")):
                statuses[plan.name] = action[6:-1] if action.startswith("skip (") else "blocked"
                reporter.end_run(f"{plan.name}: {action}")
        todo = [(p, actions[p.name]) for p in plans if p.name not in statuses]
        if jobs > 1 and todo:  # also for a single run: with --jobs N every run computes with cores/N threads
            statuses |= run_parallel(todo, jobs, out_dir, data_root, str(device), keep_checkpoints, stop, reporter)
            todo = []
        for plan, action in todo:
            summary = train_run(plan, action, RunDir(out_dir / plan.name), data, device, reporter, stop,
                                keep_checkpoints, world)  # fmt: skip
            statuses[plan.name] = summary["status"]
            if stop and summary["status"] == "interrupted":
                break
        reporter.close()
    world.barrier()
    counts = {s: sum(v == s for v in statuses.values()) for s in dict.fromkeys(statuses.values())}
    reporter.message(f"{cfg.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" -> {out_dir}")
    interrupted = [name for name, s in statuses.items() if s == "interrupted"]
    if stop or interrupted:
        signum = stop.signum if stop else 15
        reporter.message(f"stopped by signal {signum}; run the same command again to resume")
        return EXIT_FOR_SIGNAL.get(signum, 1)
    for kind in ("failed", "blocked"):
        names = [name for name, s in statuses.items() if s == kind]
        if names:
            reporter.message(f"{kind} runs: {', '.join(names)}")
    return 1 if any(s in ("failed", "blocked") for s in statuses.values()) else 0


def _experiment_record(cfg: ExperimentConfig, plans: list[RunPlan], data: Any, device: Any, world: World) -> dict:
    return {
        "config": dataclasses.asdict(cfg),
        "runs": [p.name for p in plans],
        "processes": world.size,
        "data": {"source": data.source, "train_images": len(data.train), "test_images": len(data.test),
                 "mean": data.mean, "std": data.std},
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **provenance(device),
    }  # fmt: skip


def launch_runs(cfg: ExperimentConfig, out: str | Path, nproc: int, argv: list[str], first_only: list[str],
                reporter: PlainReporter, stop: StopRequest) -> int:  # fmt: skip
    """`bnexp run --nproc N`: hold the experiment's lock and start N processes (torch's elastic launcher) that
    train the runs together. A process that fails ends the group; its run is marked failed and the group is
    started again for the runs after it, so one failure never takes the rest of the experiment down."""
    out_dir = child_path(Path(out), cfg.name)
    _check_writable(out_dir)
    names = [p.name for p in expand_grid(cfg)]
    failed: list[str] = []
    with experiment_lock(out_dir):
        extra = first_only
        while True:
            before = {n: _mtime(out_dir / n / SUMMARY) for n in names}
            started = time.time()
            code, message = launch(nproc, argv + extra, failed)
            extra = []  # --restart and --restart-run apply to the first launch only
            if code == 0 or stop:
                return code if not stop else EXIT_FOR_SIGNAL.get(stop.signum, 1)
            reporter.message(message)
            new = []
            for n in names:
                run = RunDir(out_dir / n)
                if n in failed or not (run.path / "config.yaml").is_file():
                    continue
                changed = _mtime(run.path / SUMMARY) != before[n]
                try:
                    status = (run.summary() or {}).get("status")
                except CorruptFile:
                    status = None
                if status == "failed" and changed:
                    new.append(n)
                elif status is None and _mtime(run.path / "config.yaml") >= started:  # died with no word
                    run.write_summary({"run": n, "status": "failed", "error": f"a process ended: {message}"})
                    run.write_error(message + "\n")
                    new.append(n)
            if not new:
                return 1
            failed += new
            reporter.message(f"failed: {', '.join(new)}; starting the processes again for the other runs")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
