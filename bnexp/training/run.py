"""One run from start to summary: resume from its checkpoint if it has one, train, and write its summary. A
failure becomes a 'failed' summary and an error.log, never an exception (except KeyboardInterrupt, and a
failure in a data-parallel run, which must end every process)."""

from __future__ import annotations

import traceback
from contextlib import suppress
from typing import Any

import torch

from bnexp.config import RunPlan
from bnexp.data import Data
from bnexp.distributed import World
from bnexp.store import ERROR_LOG, CorruptFile, LinkRefused, NullRunDir, RunDir
from bnexp.training.loop import Trainer
from bnexp.training.reporting import Reporter
from bnexp.training.resume import load_checkpoint, restart_hint, use_checkpoint_threads
from bnexp.training.stop import StopRequest
from bnexp.training.summary import failed_summary, now, run_summary


class DistributedRunFailed(Exception):
    """A process of a data-parallel run failed; the whole process group must end (exit code 1)."""


def train_run(
    plan: RunPlan,
    action: str,
    run: RunDir,
    data: Data,
    device: torch.device,
    reporter: Reporter,
    stop: StopRequest,
    keep_checkpoints: bool = False,
    world: World = World(),
) -> dict[str, Any]:
    """Train (or resume) one run and write its summary; a failure becomes a 'failed' summary and an
    error.log, never an exception (except KeyboardInterrupt, after an 'interrupted' summary).

    A resumed run computes with the torch thread count recorded in its checkpoint (results are bitwise
    reproducible only for a given count); the count is restored afterwards."""
    started = now()
    trainer, threads = None, torch.get_num_threads()
    try:
        try:
            state = load_checkpoint(plan, action, run, world)
            use_checkpoint_threads(plan, state, run, world, reporter)
            writer = run if world.main else NullRunDir(run.path)
            writer.start(plan.resolved(), fresh=action == "start")
            trainer = Trainer(plan, data, writer, device, reporter, stop, keep_checkpoints, world)
            if state is not None:
                trainer.load_state_dict(state)
            status = trainer.fit()
            if not world.main:
                return {"run": plan.name, "status": status}
            summary = run_summary(
                plan,
                run,
                status,
                started=started,
                steps=trainer.step,
                per_epoch=trainer.per_epoch,
                segments=trainer.segments,
                num_classes=data.inputs.num_classes,
                device=device,
                world=world,
            )
            reporter.end_run(end_line(plan, trainer, status, summary))
        except KeyboardInterrupt:
            run.close()
            with suppress(OSError, LinkRefused):
                run.write_summary({"run": plan.name, "status": "interrupted", "seed": plan.seed})
            raise
        except Exception as e:  # one run's failure must not take the experiment down
            summary = record_failure(e, plan, run, reporter, started, trainer.step if trainer else 0, device, world)
        finally:
            if trainer is not None:
                trainer.run.close()
            run.close()
        run.write_summary(summary)
    except (OSError, LinkRefused) as e:  # the summary itself could not be written (a full disk): say so, go on
        summary = {"run": plan.name, "status": "failed", "error": f"cannot write the summary: {e}"}
        reporter.end_run(f"{plan.name}: failed, {summary['error']}")
    finally:
        torch.set_num_threads(threads)
    return summary


def end_line(plan: RunPlan, trainer: Trainer, status: str, summary: dict[str, Any]) -> str:
    """What the reporter shows when a run ends."""
    if status == "interrupted":
        return (
            f"{plan.name}: interrupted at step {trainer.step} of {trainer.total_steps} (run the same command again "
            "to resume)"
        )
    return f"{plan.name}: {status}, final test_acc {summary['final_test_acc']}"


def record_failure(
    error: Exception,
    plan: RunPlan,
    run: RunDir,
    reporter: Reporter,
    started: str,
    step: int,
    device: torch.device,
    world: World,
) -> dict[str, Any]:
    """The 'failed' summary of a run that raised `error` (called while it is handled: its traceback goes to
    error.log). With several processes raises DistributedRunFailed instead."""
    summary = failed_summary(plan, error, started=started, step=step, device=device, rank=world.rank)
    if world.size > 1:
        # the other processes cannot go on without this one: record why (unless a process that
        # failed first already did), then end this process, which ends the run everywhere
        with suppress(OSError, CorruptFile, LinkRefused):
            if run.summary() is None:  # rank 0 removed the last one when this run started
                run.write_error(f"rank {world.rank} of {world.size}\n{traceback.format_exc()}")
                run.write_summary(summary)
        raise DistributedRunFailed(f"{plan.name}: rank {world.rank} failed: {summary['error']}") from error
    with suppress(OSError, LinkRefused):  # the disk may be what failed; the summary still says why
        run.write_error(traceback.format_exc())
    remedy = f"; details in {run.path / ERROR_LOG}"
    if isinstance(error, CorruptFile) and "--restart-run" not in str(error):
        remedy = f"; {restart_hint(plan)}"
    reporter.end_run(f"{plan.name}: failed ({summary['error']}){remedy}")
    return summary
