"""Several runs at once (`bnexp run --jobs N`): one worker process per job, each pinned to its share of the
CPU cores with as many torch threads, for runs too small to use the whole machine.

Workers ignore SIGINT: the parent turns SIGINT/SIGTERM into one SIGTERM per worker, and each worker stops its
run at the next step with a checkpoint, exactly as a single run does.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from pathlib import Path
from typing import Any

import torch

from bnexp.config import RunPlan
from bnexp.data import load_data
from bnexp.progress import PlainReporter
from bnexp.store import RunDir
from bnexp.train import StopRequest, select_device


def core_slices(jobs: int) -> list[list[int]]:
    """Disjoint groups of the cores this process may use, one per job (shared round-robin if jobs > cores)."""
    cores = sorted(os.sched_getaffinity(0))
    per_job = max(1, len(cores) // jobs)
    return [[cores[(i * per_job + j) % len(cores)] for j in range(per_job)] for i in range(jobs)]


def _worker(cores: list[int], tasks: Any, results: Any, out_dir: Path, data_root: Any, device_name: str,
            keep_checkpoints: bool) -> None:  # fmt: skip
    from bnexp.runner import execute  # late: runner imports this module

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    stop = StopRequest()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.request(signum))
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(len(cores))
    device = select_device(device_name)
    data = None
    while not stop and (task := tasks.get()) is not None:
        plan, action = task
        data = data or load_data(plan.experiment.dataset, device, data_root)
        summary = execute(plan, action, RunDir(out_dir / plan.name), data, device, PlainReporter(), stop,
                          keep_checkpoints)  # fmt: skip
        results.put((plan.name, summary["status"]))
    results.put(None)


def run_parallel(
    todo: list[tuple[RunPlan, str]],
    jobs: int,
    out_dir: Path,
    data_root: Any,
    device_name: str,
    keep_checkpoints: bool,
    stop: StopRequest,
) -> dict[str, str]:
    """Run `todo` ((plan, action) pairs) on `jobs` worker processes; returns each run's final status."""
    ctx = mp.get_context("spawn")  # fork after torch has started threads can deadlock
    tasks, results = ctx.Queue(), ctx.Queue()
    for item in todo:
        tasks.put(item)
    slices = core_slices(min(jobs, len(todo)))
    for _ in slices:
        tasks.put(None)
    workers = [
        ctx.Process(target=_worker, args=(cores, tasks, results, out_dir, data_root, device_name, keep_checkpoints))
        for cores in slices
    ]
    for w in workers:
        w.start()
    statuses: dict[str, str] = {}
    finished, forwarded = 0, False
    while finished < len(workers):
        if stop and not forwarded:
            for w in workers:
                if w.is_alive():
                    os.kill(w.pid, signal.SIGTERM)
            forwarded = True
        try:
            item = results.get(timeout=0.2)
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                break  # a worker died without its goodbye: nothing more will come
            continue
        if item is None:
            finished += 1
        else:
            statuses[item[0]] = item[1]
    for w in workers:
        w.join()
    for plan, _ in todo:  # a worker that died (not a run that failed: that is reported) leaves runs unfinished
        statuses.setdefault(plan.name, "interrupted" if stop else "failed")
    return statuses
