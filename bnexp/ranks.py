"""Runs of N > 1 processes that `bnexp run` starts itself (`processes: N`, `--nproc N`): the launcher's side,
Ranks (the executor of such runs), and each process's, rank_main (what torch's elastic launcher runs in it).

A process is handed its work as arguments, pickled to it by the launcher: the Job (the config as this command
read it, the launch's runs, where they go and how) and each run's action. It reads no command line, parses no
config and takes no decision of the plan: the launching process holds the experiment's lock, has written
experiment.yaml and reports on the whole experiment; the processes train the runs together, rank 0 claiming each
run under its lock and writing its files. (Under the user's own torchrun every process runs `bnexp run`
itself: bnexp.runner, with the World torchrun describes.)
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import torch

from bnexp.claim import FINISHED, Claim, mtime, record_failure, recorded_status
from bnexp.data import DataCache
from bnexp.distributed import World, from_environment, launch, shutdown
from bnexp.errors import BnexpError
from bnexp.estimate import steps_left
from bnexp.execute import Context, Runs, Sequential, exit_code
from bnexp.job import Job
from bnexp.lock import holder
from bnexp.progress import RunLeft, make_reporter
from bnexp.store import CHECKPOINT, SUMMARY, RunDir
from bnexp.train import DistributedRunFailed, Silent, StopRequest


class Ranks:
    """The executor of runs of `processes` processes: each launch trains the runs left, one after another, on
    `processes` processes started by torch's elastic launcher. A process that fails ends its launch: its run is
    marked failed (by the process itself, or here from the launcher's report when it died without a word) and
    the processes start again for the other runs."""

    def __init__(self, processes: int):
        self.processes = processes

    def execute(self, runs: Runs, ctx: Context) -> dict[str, str]:
        if ctx.stop:
            return {}
        ended = self._launches(runs, ctx)
        for name, status in ended.items():  # the experiment's progress, as for --jobs workers
            ctx.reporter.run_finished(name, status)
        return ended

    def _launches(self, runs: Runs, ctx: Context) -> dict[str, str]:
        out_dir, stop, reporter = ctx.claim.out_dir, ctx.stop, ctx.reporter
        plans = {plan.name: plan for plan, _ in runs}
        statuses: dict[str, str] = {}
        todo = {plan.name: action for plan, action in runs}
        code = 0
        while todo and not stop:
            started = time.time()
            reporter.message(f"starting {self.processes} processes for {', '.join(todo)}")
            # the launch's runs; --restart and --restart-run were decided here (the actions say start)
            job = dataclasses.replace(
                ctx.job, runs=[plans[name] for name in todo], restart=False, restart_runs=(), jobs=1, shard=None
            )
            code, message, signum = launch(self.processes, rank_main, (job, dict(todo)))
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
        # not trained by a launch: stopped, or rank 0 found it taken, finished or blocked meanwhile; a launch that
        # ended well left it on purpose (its processes said why)
        for name in todo:
            declined = "blocked" if code == 0 else "failed"
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


def rank_main(job: Job, actions: dict[str, str], threads: int) -> None:
    """One process of a launch: train `job.runs` (each to `actions[name]`, start or resume) with the others, on
    `threads` torch threads; exit 0, 1 (a run failed), 2 (bad input) or 130/143 (stopped by a signal)."""
    torch.set_num_threads(threads)
    stop = StopRequest()
    stop.install()
    world = None
    try:
        world = from_environment(job.device_name or job.cfg.device)
        code = train_runs(job, [(plan, actions[plan.name]) for plan in job.runs], world, stop)
    except BnexpError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        if world is not None:  # every process says why before any exits (the launcher then ends the rest)
            world.settle()
        code = e.exit_code
    except DistributedRunFailed as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        code = 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        code = 130
    finally:
        if world is not None:
            shutdown(world)
    if code in (130, 143):
        # stopped by a signal, checkpoint written: the launcher is shutting down and will not collect a return
        # value, so end now rather than wait for it until its 30-second grace ends in SIGKILL
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)


def train_runs(job: Job, runs: Runs, world: World, stop: StopRequest) -> int:
    """The runs of a launch, one after another, as one of its processes. The launcher decided the actions: its
    starts are restarts (what a run's folder holds from before is replaced), and each run is decided again under
    its lock by rank 0, which counts and reports the launch's runs (the launcher reports on the others)."""
    reporter = make_reporter(True) if world.main else Silent()
    claim = Claim(job.out_dir, restart_runs=tuple(plan.name for plan, action in runs if action == "start"))
    ctx = Context(job, claim, job.device(world), DataCache(job.data_root), reporter, stop, world)
    reporter.start_experiment(
        {p.name: RunLeft(steps_left(p, a, job.out_dir), p.experiment.batch_size) for p, a in runs} if world.main else {}
    )
    statuses = Sequential().execute(runs, ctx)
    reporter.close()
    world.barrier()
    return exit_code(statuses, stop)
