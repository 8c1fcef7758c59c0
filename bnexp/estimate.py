"""How long a plan will take, before it runs (`bnexp run --dry-run`).

Each run's time is its steps (and evaluations) times the seconds they take for its shape (model, batch,
processes, dataset, probes): measured by finished runs of the same shape and torch thread count in the results
folder when there are some (their summaries record training and evaluation time and the threads of each
segment), else by a few seconds of calibration on this machine
(a handful of training steps and one evaluation batch on random data, with the torch threads each run will get).
Calibration leaves out what it cannot see (probes, data-parallel collectives), so those estimates are lower bounds.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bnexp.config import RunPlan
from bnexp.data import SOURCES, model_inputs
from bnexp.models import build_model
from bnexp.store import CorruptFile, RunDir
from bnexp.train import make_optimizer, steps_per_epoch, torch_threads

CALIBRATION_STEPS = 8


@dataclass(frozen=True)
class RunCost:
    seconds: float
    source: str  # "measured" (finished runs of this shape) or "calibrated"


def shape(plan: RunPlan) -> str:
    """What decides a step's cost: everything of the run but its seed, learning rate and name."""
    resolved = plan.resolved()
    for key in ("run", "seed", "lr", "lr_multiplier", "grid", "description", "reference", "claims", "smoke"):
        resolved.pop(key, None)
    return json.dumps(resolved, sort_keys=True, default=str)


def per_epoch(plan: RunPlan) -> int:
    exp = plan.experiment
    train_size = exp.dataset.subset or SOURCES[exp.dataset.name].sizes[0]
    return steps_per_epoch(train_size, exp.batch_size, exp.processes)


def total_steps(plan: RunPlan) -> int:
    return plan.experiment.steps or plan.experiment.epochs * per_epoch(plan)


def measured_seconds_per_step(plans: list[RunPlan], out_dir: Path, threads: int) -> dict[str, float]:
    """Median seconds per step (training and evaluation) of the finished runs of each shape in `out_dir` that
    computed with `threads` torch threads (a run with other threads is no measure of this one)."""
    per_shape: dict[str, list[float]] = {}
    for plan in plans:
        try:
            summary = RunDir(out_dir / plan.name).summary() or {}
        except (CorruptFile, OSError):
            continue
        seconds = (summary.get("train_time_s") or 0) + (summary.get("eval_time_s") or 0)
        steps = summary.get("steps")
        segments = summary.get("segments") or []
        same_threads = bool(segments) and all(isinstance(s, dict) and s.get("torch_threads") == threads
                                              for s in segments)  # fmt: skip
        finished = summary.get("status") == "completed" and isinstance(steps, int) and steps > 0
        if finished and seconds > 0 and same_threads:
            per_shape.setdefault(shape(plan), []).append(seconds / steps)
    return {k: statistics.median(v) for k, v in per_shape.items()}


def calibrate(plan: RunPlan, threads: int) -> float:
    """Seconds per training step of `plan`'s model and batch on random data, plus its evaluations spread over
    the steps, with `threads` torch threads."""
    exp = plan.experiment
    inputs = model_inputs(exp.dataset)
    size = (inputs.height, inputs.width)
    batch = exp.batch_size // exp.processes
    steps = total_steps(plan)
    test_size = exp.dataset.test_subset or SOURCES[exp.dataset.name].sizes[1]
    eval_images = test_size + (exp.eval_train_subset or 0)
    with torch_threads(threads):
        model = build_model(plan.model, inputs)
        optimizer = make_optimizer(exp.optimizer, model.parameters(), plan.lr)
        x = torch.rand(batch, inputs.channels, *size)
        y = torch.randint(0, inputs.num_classes, (batch,))
        times = []
        for i in range(min(CALIBRATION_STEPS, steps) + 2):  # no more steps than the run has (a smoke run: 2)
            t = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if i >= 2:  # the first steps allocate
                times.append(time.perf_counter() - t)
        model.eval()
        xe = torch.rand(min(exp.eval_batch_size, eval_images, 1000), inputs.channels, *size)
        with torch.no_grad():
            t = time.perf_counter()
            model(xe)
            per_image = (time.perf_counter() - t) / len(xe)
    evals = math.ceil(steps / (exp.eval_every or per_epoch(plan)))
    return statistics.median(times) + evals * eval_images * per_image / steps


def estimate(plans: list[RunPlan], actions: dict[str, str], out_dir: Path, jobs: int) -> dict[str, RunCost]:
    """The seconds each run to start or resume will take (a resumed run: its remaining steps)."""
    # what the runs will compute with: this process's threads, or each --jobs worker's share of the cores
    threads = torch.get_num_threads() if jobs <= 1 else max(1, len(os.sched_getaffinity(0)) // jobs)
    measured = measured_seconds_per_step(plans, out_dir, threads)
    calibrated: dict[str, float] = {}
    costs = {}
    for plan in plans:
        action = actions[plan.name]
        if not action.startswith(("start", "resume")):
            continue
        key = shape(plan)
        if key in measured:
            per_step, source = measured[key], "measured"
        else:
            if key not in calibrated:
                calibrated[key] = calibrate(plan, threads)
            per_step, source = calibrated[key], "calibrated"
        costs[plan.name] = RunCost(per_step * steps_left(plan, action, out_dir), source)
    return costs


def steps_left(plan: RunPlan, action: str, out_dir: Path) -> int:
    """The steps a run to start or resume has left to train."""
    done = _steps_done(out_dir / plan.name) if action.startswith("resume") else 0
    return max(0, total_steps(plan) - done)


def busy_note() -> str | None:
    """A warning when other work shares the cores: calibration then measures contention, and a run with several
    torch threads slows far more than in proportion (one measured case: 13 h estimated with 2 threads on 2 busy
    cores against 26 min with 1 thread per run)."""
    load, cores = os.getloadavg()[0], len(os.sched_getaffinity(0))
    if load < 0.5 * cores:
        return None
    return (f"the machine is busy (load {load:.1f} on {cores} cores): calibrated times measure that contention "
            "and can be many times too long, most with several threads per run (--jobs gives each run fewer)")


def _steps_done(run_path: Path) -> int:
    """The last step a run's log records (its checkpoint is at or before it)."""
    try:
        train = RunDir(run_path).metrics("train")
    except (CorruptFile, OSError):
        return 0
    steps = [r.get("step") for r in train if isinstance(r.get("step"), int)]
    return max(steps, default=0)


def wall_seconds(costs: dict[str, RunCost], jobs: int) -> float:
    """Runs side by side on `jobs` workers: the longest of the greedy per-worker sums (longest runs first)."""
    workers = [0.0] * max(1, jobs)
    for cost in sorted((c.seconds for c in costs.values()), reverse=True):
        workers[workers.index(min(workers))] += cost
    return max(workers)

