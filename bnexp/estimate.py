"""How long a plan will take, before it runs (`bnexp run --dry-run`).

Each run's time is its steps (and evaluations) times the seconds they take for its shape (model, batch,
processes, dataset, probes): measured by finished runs of the same shape and torch thread count in the results
folder when there are some (their summaries record training and evaluation time and the threads of each
segment), else by a few seconds of calibration on this machine, on the device the runs will train on
(training steps and one evaluation batch on random data, with the torch threads each run will get).
Calibration leaves out what it cannot see (probes, data-parallel collectives), so those estimates are lower bounds.

Calibration is bounded: each shape gets CALIBRATION_BUDGET_S seconds. A shape is first timed on a sub-batch of
PROBE_BATCH images (doubled while the budget allows); one whose full step would not fit the budget is never run at
full size: its step is extrapolated from the sub-batch, linearly in the images, and says so. The others take turns,
one timed step of each per round until each one's budget is spent (or it has timed CALIBRATION_STEPS steps), and
each gives the median of its steps: a change in the machine's load then falls on every shape alike, and their
ratios (BN against no norm) hold.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from bnexp.config import RunPlan
from bnexp.data import SOURCES, model_inputs
from bnexp.models import build_model
from bnexp.store import CorruptFile, RunDir
from bnexp.train import core_slices, make_optimizer, steps_per_epoch, torch_threads

# Seconds of calibration per shape (its probe, warm-up, timed steps and evaluation; the step under way finishes):
# enough for a median of several full steps of any model whose step fits, little enough that a dry run of a few
# shapes answers in seconds (it was unbounded: 20 minutes for AlexNet at 224 pixels, batch 256, on a CPU).
CALIBRATION_BUDGET_S = 2.5
# timed steps per shape at most (no more than its run has: a smoke run's 2): 50 steps of a small model take well
# under the budget, and a grid of many such shapes (batch_size: 42) would otherwise wait 2.5 s for each
CALIBRATION_STEPS = 50
PROBE_BATCH = 2  # the sub-batch a shape is first timed on (the least batch a batch statistic needs)
# timed steps per sub-batch, the least counts: a burst of load (a 2-image LeNet5 step took 0.2 s beside other work)
# must not make a shape look too large, which its extrapolation would multiply by batch / sub-batch
PROBE_REPEATS = 3
WARMUP_STEPS = 2  # untimed full-batch steps first (they allocate), where the budget leaves room for them
clock = time.perf_counter  # calibration's clock (tests replace it)


@dataclass(frozen=True)
class StepCost:
    """Seconds per training step of a shape, with its run's evaluations spread over its steps."""

    seconds: float
    extrapolated_from: int | None = None  # the sub-batch a shape too large to time here was timed on


@dataclass(frozen=True)
class RunCost:
    seconds: float
    # "measured" (finished runs of this shape), "calibrated", or "extrapolated" (too large to calibrate here: its
    # step extrapolated from `extrapolated_from` images)
    source: str
    per_step: float = 0.0
    extrapolated_from: int | None = None


def shape(plan: RunPlan) -> str:
    """What decides a step's cost: everything of the run but its seed, learning rate and name (the learning rate
    also where a grid over `optimizer.lr` sets it)."""
    resolved = plan.resolved()
    for key in (
        "run",
        "seed",
        "lr",
        "lr_multiplier",
        "lr_scaling",
        "lr_base_batch",
        "grid",
        "description",
        "reference",
        "claims",
        "smoke",
    ):
        resolved.pop(key, None)
    resolved["optimizer"] = {k: v for k, v in resolved["optimizer"].items() if k != "lr"}
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
        same_threads = bool(segments) and all(
            isinstance(s, dict) and s.get("torch_threads") == threads for s in segments
        )
        finished = summary.get("status") == "completed" and isinstance(steps, int) and steps > 0
        if finished and seconds > 0 and same_threads:
            per_shape.setdefault(shape(plan), []).append(seconds / steps)
    return {k: statistics.median(v) for k, v in per_shape.items()}


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA and MPS run asynchronously): a step is timed when it is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _eval_images(plan: RunPlan) -> int:
    exp = plan.experiment
    return (exp.dataset.test_subset or SOURCES[exp.dataset.name].sizes[1]) + (exp.eval_train_subset or 0)


def _with_evals(plan: RunPlan, per_step: float, per_image: float) -> float:
    """A training step's seconds plus the run's evaluations spread over its steps."""
    steps = total_steps(plan)
    evals = math.ceil(steps / (plan.experiment.eval_every or per_epoch(plan)))
    return per_step + evals * _eval_images(plan) * per_image / steps


class _Shape:
    """One shape's model and optimizer on random data, on its device, and the seconds spent on it so far."""

    def __init__(self, plan: RunPlan, device: torch.device):
        start = clock()
        exp = plan.experiment
        self.plan, self.device = plan, device
        self.inputs = model_inputs(exp.dataset)
        self.batch = exp.batch_size // exp.processes
        self.model = build_model(plan.model, self.inputs).to(device)
        self.optimizer = make_optimizer(exp.optimizer, self.model.parameters(), plan.lr)
        self.times: list[float] = []  # the timed full-batch steps
        self.sub_batch = min(PROBE_BATCH, self.batch)
        self._data: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.spent = clock() - start

    def left(self) -> float:
        return CALIBRATION_BUDGET_S - self.spent

    def _random(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n not in self._data:
            inputs = self.inputs
            self._data[n] = (
                torch.rand(n, inputs.channels, inputs.height, inputs.width, device=self.device),
                torch.randint(0, inputs.num_classes, (n,), device=self.device),
            )
        return self._data[n]

    def step(self, n: int) -> float:
        """One training step on `n` random images; its seconds."""
        start = clock()
        x, y = self._random(n)
        begun = clock()
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        self.optimizer.step()
        _sync(self.device)
        end = clock()
        self.spent += end - start
        return end - begun

    def _least(self, n: int) -> float:
        """The least of up to PROBE_REPEATS timed steps on `n` images, after one that allocates (noise only adds
        time); fewer where each would take more than a quarter of the budget left."""
        self.step(n)
        least = self.step(n)
        for _ in range(PROBE_REPEATS - 1):
            if least > self.left() / 4:
                break
            least = min(least, self.step(n))
        return least

    def probe(self) -> float:
        """The seconds a full-batch step would take, from steps on a sub-batch: from PROBE_BATCH images, doubled
        while the next sub-batch's two steps fit the budget and the full step does not. Linear in the images, so
        an overestimate where a step has a fixed cost."""
        n = self.sub_batch
        seconds = self._least(n)
        while seconds * self.batch / n > CALIBRATION_BUDGET_S and 2 * n < self.batch and 4 * seconds <= self.left():
            n *= 2
            seconds = self._least(n)
        self.sub_batch = n
        return seconds * self.batch / n

    def eval_per_image(self, images: int) -> float:
        """Seconds per image of one evaluation batch of `images` random images (eval mode, no gradients)."""
        start = clock()
        x, _ = self._random(images)
        self.model.eval()
        begun = clock()
        with torch.no_grad():
            self.model(x)
        _sync(self.device)
        end = clock()
        self.model.train()
        self.spent += end - start
        return (end - begun) / images


def calibrate_shapes(plans: list[RunPlan], threads: int, devices: list[torch.device]) -> list[StepCost]:
    """Seconds per training step of each plan's shape (one plan per shape) on random data, on its device, plus
    its evaluations spread over the steps, with `threads` torch threads; bounded by CALIBRATION_BUDGET_S per
    shape (see the module's docstring)."""
    results: dict[int, StepCost] = {}
    timed: list[tuple[int, _Shape]] = []
    with torch_threads(threads):
        for i, (plan, device) in enumerate(zip(plans, devices, strict=True)):
            one = _Shape(plan, device)
            predicted = one.probe()
            if predicted > CALIBRATION_BUDGET_S:  # too large to time here: never run at full size
                per_image = one.eval_per_image(one.sub_batch)
                results[i] = StepCost(_with_evals(plan, predicted, per_image), one.sub_batch)
                continue
            for _ in range(min(WARMUP_STEPS, max(0, int(one.left() / predicted) - 1))):
                one.step(one.batch)
            timed.append((i, one))
        turns = timed
        while turns:  # one timed step of each shape per round: a change of load falls on all alike
            for _, one in turns:
                one.times.append(one.step(one.batch))
            turns = [
                (i, one)
                for i, one in turns
                if one.left() > 0 and len(one.times) < min(CALIBRATION_STEPS, total_steps(one.plan))
            ]
        for i, one in timed:
            per_step = statistics.median(one.times)
            exp = one.plan.experiment
            # no larger an evaluation batch than the run's, nor than the budget left (at a training step's cost
            # per image, more than an evaluation's)
            fits = int(max(one.left(), CALIBRATION_BUDGET_S / 4) * one.batch / max(per_step, 1e-9))
            images = max(1, min(exp.eval_batch_size, _eval_images(one.plan), 1000, fits))
            results[i] = StepCost(_with_evals(one.plan, per_step, one.eval_per_image(images)))
    return [results[i] for i in range(len(plans))]


def calibrate(plan: RunPlan, threads: int, device: torch.device | None = None) -> float:
    """Seconds per training step of `plan`'s model and batch on random data, plus its evaluations spread over
    the steps, with `threads` torch threads (extrapolated where a step would not fit the budget)."""
    return calibrate_shapes([plan], threads, [device or torch.device("cpu")])[0].seconds


def estimate(
    plans: list[RunPlan],
    actions: dict[str, str],
    out_dir: Path,
    jobs: int,
    devices: dict[str, torch.device] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, RunCost]:
    """The seconds each run to start or resume will take (a resumed run: its remaining steps), calibrated on
    each run's device in `devices` (default: the CPU); `say` hears what is calibrated before it is."""
    # what the runs will compute with: this process's threads, or each --jobs worker's share of the cores
    threads = torch.get_num_threads() if jobs <= 1 else len(core_slices(jobs)[0])  # what each worker is given
    measured = measured_seconds_per_step(plans, out_dir, threads)
    todo = [p for p in plans if actions[p.name].startswith(("start", "resume"))]
    uncalibrated: dict[str, RunPlan] = {}
    for plan in todo:
        if shape(plan) not in measured:
            uncalibrated.setdefault(shape(plan), plan)
    device_of = {p.name: (devices or {}).get(p.name, torch.device("cpu")) for p in uncalibrated.values()}
    if uncalibrated and say is not None:
        where = ", ".join(sorted({str(d) for d in device_of.values()}))
        say(
            f"calibrating {len(uncalibrated)} run shape{'s' * (len(uncalibrated) > 1)} on {where}, up to "
            f"{CALIBRATION_BUDGET_S:g} s each"
        )
    found = calibrate_shapes(list(uncalibrated.values()), threads, [device_of[p.name] for p in uncalibrated.values()])
    calibrated = dict(zip(uncalibrated, found, strict=True))
    costs = {}
    for plan in todo:
        key, left = shape(plan), steps_left(plan, actions[plan.name], out_dir)
        if key in measured:
            costs[plan.name] = RunCost(measured[key] * left, "measured", measured[key])
        else:
            step = calibrated[key]
            source = "calibrated" if step.extrapolated_from is None else "extrapolated"
            costs[plan.name] = RunCost(step.seconds * left, source, step.seconds, step.extrapolated_from)
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
    return (
        f"the machine is busy (load {load:.1f} on {cores} cores): calibrated times measure that contention "
        "and can be many times too long, most with several threads per run (--jobs gives each run fewer)"
    )


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
