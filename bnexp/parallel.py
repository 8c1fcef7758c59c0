"""Several runs at once (`bnexp run --jobs N`): one worker process per job, each pinned to its share of the
CPU cores with as many torch threads, for runs too small to use the whole machine.

The promises of a single process hold: workers die with the parent (PR_SET_PDEATHSIG), and each claims its
run's lock itself, so a worker that outlives a killed parent blocks its own run only; SIGINT/SIGTERM to the
parent becomes one SIGTERM per worker, each of which stops its run at the next step with a checkpoint; a second
Ctrl-C kills them; a worker that is killed gets its run marked failed (summary and error.log) and a replacement
takes the remaining runs. Each worker talks to the parent over its own pipe, so a worker killed mid-message
can block no one else.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from bnexp.claim import Claim, claimed, record_failure, status_of, to_train
from bnexp.config import RunPlan
from bnexp.data import DataCache
from bnexp.execute import Context, Runs
from bnexp.lifetime import die_with_parent
from bnexp.progress import PlainReporter
from bnexp.store import RunDir
from bnexp.train import StopRequest, core_slices, select_device, train_run

KILL_GRACE_S = 10.0


def _worker(
    cores: list[int],
    conn: Connection,
    parent_pid: int,
    claim: Claim,
    data_root: Any,
    device_name: str | None,
    keep_checkpoints: bool,
) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    stop = StopRequest()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.request(signum))
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))
    data = DataCache(data_root)
    while not stop:
        plan = conn.recv()
        if plan is None:
            break
        with claimed(plan, claim) as action:
            if not to_train(action):  # another process finished or took it since the plan was made
                conn.send(("skip", plan.name, action))
                continue
            conn.send(("start", plan.name))
            device = select_device(device_name or plan.experiment.device)  # the cell's, unless --device says
            reporter = WorkerReporter()
            summary = train_run(
                plan,
                action,
                RunDir(claim.out_dir / plan.name),
                data.get(plan.experiment.dataset, device),
                device,
                reporter,
                stop,
                keep_checkpoints,
            )
        conn.send(("done", plan.name, summary["status"], reporter.last_line))
    conn.close()


class WorkerReporter(PlainReporter):
    """A worker's evaluation lines as they come; its run's last line goes to the parent, which prints it once
    with the experiment's progress."""

    last_line: str | None = None

    def end_run(self, line: str) -> None:
        self.last_line = line


class _Slot:
    """One worker process and the run it is on."""

    def __init__(self, ctx: Any, cores: list[int], args: tuple):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(cores, child, os.getpid(), *args), daemon=True)
        self.process.start()
        child.close()
        self.cores, self.current, self.busy = cores, None, False

    def give(self, plan: RunPlan | None) -> None:
        self.busy = plan is not None
        self.conn.send(plan)


class Workers:
    """The executor of `--jobs N`: one-process runs side by side in N worker processes (also a single run: with
    --jobs N every run computes with cores/N threads, which decide its numbers bitwise)."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def execute(self, runs: Runs, ctx: Context) -> dict[str, str]:
        return run_parallel([plan for plan, _ in runs], self.jobs, ctx)


def run_parallel(todo: list[RunPlan], jobs: int, context: Context) -> dict[str, str]:
    """Run `todo` on `jobs` worker processes, each run claimed by its worker (`context.claim`); returns each run's
    final status. The job's --device overrides every run's device; without it each run's own config says."""
    claim, job, stop, reporter = context.claim, context.job, context.stop, context.reporter
    out_dir = claim.out_dir
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    args = (claim, job.data_root, job.device_name, job.keep_checkpoints)
    pending = list(todo)
    # cores/jobs threads per run also when fewer runs are left: a run's threads decide its numbers bitwise
    slots = [_Slot(ctx, cores, args) for cores in core_slices(jobs)[: len(todo)]]
    statuses: dict[str, str] = {}
    forwarded, grace = False, KILL_GRACE_S
    try:
        for slot in slots:
            slot.give(pending.pop(0) if pending else None)
        while any(s.process.is_alive() or s.busy for s in slots):
            if stop and not forwarded:
                pending.clear()
                for s in slots:
                    if s.process.is_alive():
                        os.kill(s.process.pid, signal.SIGTERM)
                forwarded = True
            ready = wait([s.conn for s in slots if not s.conn.closed] + [s.process.sentinel for s in slots], 0.2)
            for slot in list(slots):
                if slot.conn in ready:
                    try:
                        message = slot.conn.recv()
                    except (EOFError, OSError):
                        slot.conn.close()
                        continue
                    if message[0] == "start":
                        slot.current = message[1]
                    elif message[0] == "skip":
                        statuses[message[1]] = status_of(message[2])
                        reporter.skip_run(f"{message[1]}: {message[2]}", message[1])
                        slot.give(pending.pop(0) if pending and not stop else None)
                    else:
                        statuses[message[1]] = message[2]
                        reporter.run_finished(message[1], message[2], message[3])
                        slot.current, slot.busy = None, False
                        if message[2] != "interrupted" and slot.process.is_alive():
                            slot.give(pending.pop(0) if pending and not stop else None)
                elif slot.process.sentinel in ready and not slot.process.is_alive():
                    slot.process.join()
                    if not slot.conn.closed:
                        slot.conn.close()
                    if slot.busy:
                        name = slot.current or "(a run not yet started)"
                        _record_dead_worker(out_dir, slot, name, reporter, statuses)
                        slot.busy = False
                    if pending and not stop:  # a replacement takes the remaining runs
                        replacement = _Slot(ctx, slot.cores, args)
                        replacement.give(pending.pop(0))
                        slots[slots.index(slot)] = replacement
                    else:
                        slots.remove(slot)
    except KeyboardInterrupt:  # a second Ctrl-C: stop now, not at the next step
        grace = 0.0
        for s in slots:
            if s.current is not None:
                with suppress(OSError):
                    RunDir(out_dir / s.current).write_summary({"run": s.current, "status": "interrupted"})
        raise
    finally:
        _end_workers(slots, grace)
    for plan in todo:
        statuses.setdefault(plan.name, "interrupted" if stop else "failed")
    return statuses


def _record_dead_worker(
    out_dir: Path, slot: _Slot, name: str, reporter: PlainReporter, statuses: dict[str, str]
) -> None:
    code = slot.process.exitcode
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
    error = f"worker process {slot.process.pid} {how} during this run; its last checkpoint is kept: run again to resume"
    reporter.message(f"{name}: failed: {error}")
    if slot.current is None:
        return
    statuses[name] = "failed"
    try:
        record_failure(RunDir(out_dir / name), error, error + "\n")
    except OSError as e:
        reporter.message(f"{name}: cannot record the failure ({e})")


def _end_workers(slots: list[_Slot], grace: float) -> None:
    """Workers never outlive this call: SIGTERM (they checkpoint at the next step), SIGKILL after `grace` s."""
    for s in slots:
        if s.process.is_alive():
            os.kill(s.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for s in slots:
        s.process.join(max(0.0, deadline - time.monotonic()))
        if s.process.is_alive():
            s.process.kill()
            s.process.join()
