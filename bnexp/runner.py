"""Running an experiment: the grid of runs, one after another, each isolated from the others' failures.

Re-running the same command continues where the last one stopped: runs whose summary says completed or
diverged are skipped, runs with a checkpoint resume from it, the rest start. One process at a time may
write an experiment directory (a lock file holding its pid).
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bnexp.config import ExperimentConfig, RunPlan, expand_grid
from bnexp.data import load_data
from bnexp.errors import BnexpError
from bnexp.parallel import run_parallel
from bnexp.progress import PlainReporter
from bnexp.store import CHECKPOINT, EXPERIMENT_FILE, RunDir, dump_yaml, write_atomic
from bnexp.train import StopRequest, Trainer, provenance, select_device

LOCK_FILE = ".lock"
FINISHED = ("completed", "diverged")
# keys that do not change what a run computes: editing them never invalidates a started run
# (eval_batch_size only reorders the float sum of the test loss, ~1e-6 relative; accuracy is unchanged)
NOT_COMPARED = ("description", "reference", "smoke", "eval_batch_size")
EXIT_FOR_SIGNAL = {2: 130, 15: 143}  # SIGINT, SIGTERM


def format_plan(
    cfg: ExperimentConfig, plans: list[RunPlan], actions: dict[str, str], out_dir: Path, device: str
) -> str:
    length = f"{cfg.epochs} epochs" if cfg.epochs else f"{cfg.steps} steps"
    lines = [
        f"experiment {cfg.name}: {len(plans)} runs on {cfg.dataset.name}, {length}, batch {cfg.batch_size}, "
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


@contextmanager
def experiment_lock(out_dir: Path):
    """Exclusive right to write `out_dir`; a lock left by a dead process is taken over."""
    path = out_dir / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise BnexpError(
                    f"{out_dir} is being written by another bnexp process (pid {pid}); wait for it to finish, "
                    f"or stop it (kill {pid}) and run again"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# top-level keys with a default; a run recorded before such a key existed ran with its default
DEFAULTS = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            for f in dataclasses.fields(ExperimentConfig)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}  # fmt: skip


def _config_diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            added_later = key not in old and key in DEFAULTS and new[key] == DEFAULTS[key]
            if not path and (key in NOT_COMPARED or added_later):
                continue
            out += _config_diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def plan_actions(plans: list[RunPlan], out_dir: Path, restart: bool) -> dict[str, str]:
    """What to do with each run: start, resume, skip. A run whose recorded config differs is refused."""
    actions, conflicts = {}, []
    for plan in plans:
        run = RunDir(out_dir / plan.name)
        started = (run.path / "config.yaml").is_file()
        if restart or not started:
            actions[plan.name] = "start"
            continue
        diff = _config_diff(run.config(), plan.resolved())
        summary = run.summary() or {}
        has_checkpoint = (run.path / CHECKPOINT).is_file()
        if diff and (summary.get("status") in FINISHED or has_checkpoint):
            conflicts.append(f"{plan.name}: " + "; ".join(diff))
        elif summary.get("status") in FINISHED:
            actions[plan.name] = f"skip ({summary['status']})"
        else:
            actions[plan.name] = "resume" if has_checkpoint else "start"
    if conflicts:
        raise BnexpError(
            f"{out_dir}: the config changed since these runs started; run with --restart to start them over "
            "(or use another --out):\n  " + "\n  ".join(conflicts)
        )
    return actions


def execute(plan: RunPlan, action: str, run: RunDir, data, device, reporter, stop, keep_checkpoints) -> dict:
    """Train (or resume) one run; a failure becomes a 'failed' summary, never an exception."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    trainer = None
    try:
        run.start(plan.resolved(), fresh=action == "start")
        trainer = Trainer(plan, data, run, device, reporter, stop, keep_checkpoints)
        if action == "resume":
            trainer.load_state_dict(torch.load(run.path / CHECKPOINT, weights_only=False))
        status = trainer.fit()
        summary = trainer.summary(status, started)
        reporter.end_run(f"{plan.name}: {status}, final test_acc {summary['final_test_acc']}")
    except KeyboardInterrupt:
        run.write_summary({"run": plan.name, "status": "interrupted", "seed": plan.seed})
        raise
    except Exception as e:  # one run's failure must not take the experiment down
        summary = {"run": plan.name, "status": "failed", "seed": plan.seed, "error": f"{type(e).__name__}: {e}",
                   "started": started, "step": trainer.step if trainer else 0, **provenance(device)}  # fmt: skip
        with suppress(OSError):  # the disk may be what failed; the summary still says why
            run.write_error(traceback.format_exc())
        reporter.end_run(f"{plan.name}: failed ({summary['error']}); details in {run.path / 'error.log'}")
    finally:
        run.close()
    run.write_summary(summary)
    return summary


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
) -> int:
    """Train every run of the grid that is not done yet; returns the exit code: 0 all completed or diverged,
    1 some failed, 130/143 stopped by SIGINT/SIGTERM. Bad input raises BnexpError before anything is written.
    """
    device = select_device(device_name or cfg.device)
    plans = expand_grid(cfg)
    data = load_data(cfg.dataset, device, data_root)
    out_dir = Path(out) / cfg.name
    _check_writable(out_dir)
    stop = stop if stop is not None else StopRequest()
    with experiment_lock(out_dir):
        actions = plan_actions(plans, out_dir, restart)
        reporter.message(format_plan(cfg, plans, actions, out_dir, str(device)))
        write_atomic(
            out_dir / EXPERIMENT_FILE,
            dump_yaml(
                {
                    "config": dataclasses.asdict(cfg),
                    "runs": [p.name for p in plans],
                    "data": {
                        "source": data.source,
                        "train_images": len(data.train),
                        "test_images": len(data.test),
                        "mean": data.mean,
                        "std": data.std,
                    },
                    "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    **provenance(device),
                }
            ),
        )
        reporter.start_experiment(len(plans))
        statuses: dict[str, str] = {}
        for plan in plans:
            if actions[plan.name].startswith("skip"):
                statuses[plan.name] = actions[plan.name][6:-1]
                reporter.end_run(f"{plan.name}: {actions[plan.name]}")
        todo = [(p, actions[p.name]) for p in plans if p.name not in statuses]
        if jobs > 1 and len(todo) > 1:
            statuses |= run_parallel(todo, jobs, out_dir, data_root, str(device), keep_checkpoints, stop)
            todo = []
        for plan, action in todo:
            summary = execute(plan, action, RunDir(out_dir / plan.name), data, device, reporter, stop,
                               keep_checkpoints)  # fmt: skip
            statuses[plan.name] = summary["status"]
            if stop:
                break
        reporter.close()
    counts = {s: sum(v == s for v in statuses.values()) for s in dict.fromkeys(statuses.values())}
    reporter.message(f"{cfg.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" -> {out_dir}")
    if stop:
        reporter.message(f"stopped by signal {stop.signum}; run the same command again to resume")
        return EXIT_FOR_SIGNAL.get(stop.signum, 1)
    failed = [name for name, s in statuses.items() if s == "failed"]
    if failed:
        reporter.message(f"failed runs: {', '.join(failed)}")
    return 1 if failed else 0
