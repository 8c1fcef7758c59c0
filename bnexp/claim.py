"""What to do with each run (start, resume, skip, busy, blocked), decided from its files, and decided again
under the run's lock just before it trains: another process filling the same folder (`--shard`, a second
`bnexp run`) may have finished or taken it since the plan was printed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bnexp.config import RunPlan, config_diff
from bnexp.distributed import World
from bnexp.errors import BnexpError
from bnexp.lock import LOCK_FILE, Busy, alone, holder, run_lock
from bnexp.store import CHECKPOINT, FINISHED, SUMMARY, CorruptFile, LinkRefused, RunDir, child_path, real_dir

OTHER_SHARD = "in another shard"


def to_train(action: str) -> bool:
    return action in ("start", "resume")


def status_of(action: str) -> str:
    """The status a run that is not trained here ends this command with: 'completed' for 'skip (completed)'."""
    if action.startswith("skip ("):
        return action[6:-1]
    return action.split(":")[0]  # busy, blocked, in another shard


def plan_actions(
    plans: list[RunPlan],
    out_dir: Path,
    restart: bool,
    restart_runs: tuple[str, ...] = (),
    since: float | None = None,
    check_busy: bool = True,
) -> dict[str, str]:
    """What to do with each run. A run whose recorded config differs is refused (all of them at once, before
    anything is written); a run whose files cannot be read is blocked with what to do, and the others go on. A run
    another process holds is busy. --restart spares runs that another process finished after `since` (this
    command's start): processes that share a folder never redo each other's work."""
    unknown = sorted(set(restart_runs) - {p.name for p in plans})
    if unknown:
        raise BnexpError(
            f"--restart-run: {', '.join(unknown)} is not a run of this experiment; its runs: "
            f"{', '.join(p.name for p in plans)}"
        )
    actions, conflicts = {}, []
    for plan in plans:
        try:
            run = RunDir(child_path(out_dir, plan.name))
        except LinkRefused as e:  # someone else's folder: that run cannot be written, the others can
            actions[plan.name] = f"blocked: {e}"
            continue
        who = holder(run.path) if check_busy else None
        if who:
            actions[plan.name] = f"busy: {Busy(who)}"
            continue
        if not (run.path / "config.yaml").is_file():
            actions[plan.name] = "start"
            continue
        try:
            recorded, summary = run.config(), run.summary() or {}
        except CorruptFile as e:
            blocked = f"blocked: {e}; start it over with --restart-run {plan.name}"
            actions[plan.name] = "start" if restart or plan.name in restart_runs else blocked
            continue
        if restart or plan.name in restart_runs:
            done_since = since is not None and summary.get("status") in FINISHED and mtime(run.path / SUMMARY) >= since
            actions[plan.name] = "skip (finished by another process)" if done_since else "start"
            continue
        diff = config_diff(recorded, plan.resolved())
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


@dataclass(frozen=True)
class Claim:
    """How runs are claimed by this command: its folder, its --restart flags and when it started."""

    out_dir: Path
    restart: bool = False
    restart_runs: tuple[str, ...] = ()
    since: float | None = None


@contextmanager
def claimed(plan: RunPlan, claim: Claim, world: World = World()) -> Iterator[str]:
    """The run's action, decided again under its lock, which rank 0 holds for the block: train the run when the
    action is start or resume; anything else (busy, skip, blocked) says why not."""
    with ExitStack() as held:
        action = None
        if world.main:
            try:
                path = real_dir(claim.out_dir, child_path(claim.out_dir, plan.name))
                held.enter_context(run_lock(path))
                restart_runs = tuple(name for name in claim.restart_runs if name == plan.name)
                action = plan_actions(
                    [plan], claim.out_dir, claim.restart, restart_runs, claim.since, check_busy=False
                )[plan.name]
            except Busy as e:
                action = f"busy: {e}"
            except BnexpError as e:  # a link, a config that changed meanwhile
                action = f"blocked: {e}"
        yield world.broadcast(action)


def left_to_others(plans: list[RunPlan], out_dir: Path, statuses: dict[str, str]) -> list[str]:
    """Runs left to other processes (busy, or in another shard) that have not ended yet."""
    return [
        plan.name
        for plan in plans
        if statuses.get(plan.name) in ("busy", OTHER_SHARD)
        and (recorded_status(out_dir / plan.name) not in (*FINISHED, "failed") or holder(out_dir / plan.name))
    ]


def recorded_status(run: Path) -> str | None:
    """The status in a run's summary; None without one, or with one that does not parse."""
    try:
        return (RunDir(run).summary() or {}).get("status")
    except CorruptFile:
        return None


def record_failure(run: RunDir, error: str, log: str) -> None:
    """A failed summary (with `error`) and error.log for a run whose process died without writing them, unless
    another process holds the run by now (a rank or worker that outlived its parent, or a new claim)."""
    with alone(run.path, LOCK_FILE) as free:
        if free:
            run.write_error(log)
            run.write_summary({"run": run.name, "status": "failed", "error": error})


def mtime(path: Path) -> float:
    """A file's modification time; 0 when it is missing."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
