"""Reading results back: experiments and runs from the run store, grouped by variant, averaged over seeds.

Plots, reports and `bnexp list` read only files through this module; nothing here trains or needs a GPU.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bnexp.errors import BnexpError
from bnexp.store import EXPERIMENT_FILE, RunDir, experiment_runs


@dataclass
class Run:
    """One run's files, read once."""

    dir: RunDir
    config: dict[str, Any]
    summary: dict[str, Any]
    evals: list[dict[str, Any]]
    train: list[dict[str, Any]]
    probes: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def variant(self) -> str:
        return re.sub(r"_s\d+$", "", self.name)

    @property
    def model(self) -> dict[str, Any]:
        return self.config["model"]

    @property
    def tag(self) -> str:
        return self.variant.rsplit("_lr", 1)[0]

    @property
    def status(self) -> str:
        return self.summary.get("status", "unfinished")


@dataclass
class Experiment:
    name: str
    dir: Path
    meta: dict[str, Any]  # experiment.yaml: config, runs, data, provenance
    runs: list[Run]
    variants: dict[str, list[Run]] = field(default_factory=dict)  # in config order

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def reference(self) -> dict[str, Any] | None:
        return self.config.get("reference")


def load_run(run_dir: RunDir) -> Run:
    return Run(
        dir=run_dir,
        config=run_dir.config(),
        summary=run_dir.summary() or {},
        evals=run_dir.metrics("eval"),
        train=run_dir.metrics("train"),
        probes=run_dir.probes(),
    )


def load_experiment(path: Path) -> Experiment:
    meta = yaml.safe_load((path / EXPERIMENT_FILE).read_text())
    runs = [load_run(r) for r in experiment_runs(path)]
    order = {name: i for i, name in enumerate(meta.get("runs", []))}
    runs.sort(key=lambda r: order.get(r.name, len(order)))
    exp = Experiment(name=meta["config"]["name"], dir=path, meta=meta, runs=runs)
    for run in runs:
        exp.variants.setdefault(run.variant, []).append(run)
    return exp


def find_experiments(path: str | Path) -> list[Experiment]:
    """An experiment directory, or a results directory holding several."""
    path = Path(path)
    if not path.is_dir():
        raise BnexpError(f"{path}: no such results directory")
    if (path / EXPERIMENT_FILE).is_file():
        return [load_experiment(path)]
    found = [load_experiment(p) for p in sorted(path.iterdir()) if (p / EXPERIMENT_FILE).is_file()]
    if not found:
        raise BnexpError(f"{path}: no experiments here (looked for */{EXPERIMENT_FILE}); run `bnexp run` first")
    return found


CHANCE_MARGIN = 0.9  # a run has left chance once a logged training loss is below 0.9 x ln(classes)
DATASET_CLASSES = {"fashion_mnist": 10, "mnist": 10, "cifar100": 100}


def training_course(train: list[dict[str, Any]], classes: int, diverged_step: int | None) -> dict[str, Any]:
    """What happened to a run, from its logged training losses (means over `log_every` steps):

    left_chance_step: the first logged step whose loss is below 0.9 ln(classes), or None;
    outcome: diverged | never_left_chance | fell_back (left chance, and the last logged loss is above that
    line again: the net trained, then died) | trained;
    not_training: never left chance (and did not diverge).
    """
    line = CHANCE_MARGIN * math.log(classes)
    left = next((r["step"] for r in train if r.get("loss") is not None and r["loss"] < line), None)
    final = train[-1].get("loss") if train else None
    if diverged_step is not None:
        outcome = "diverged"
    elif left is None:
        outcome = "never_left_chance"
    elif final is None or final >= line:
        outcome = "fell_back"
    else:
        outcome = "trained"
    return {"left_chance_step": left, "outcome": outcome, "not_training": outcome == "never_left_chance"}


def mean_sd(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count, ignoring missing values."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def aligned(runs: list[Run], records: str, key: str, x: str = "step") -> tuple[list[float], list[list[float]]]:
    """The x values common to all runs' `records` ("evals" or "train") and, per x, the runs' `key` values."""
    per_run = [{r[x]: r.get(key) for r in getattr(run, records)} for run in runs]
    per_run = [p for p in per_run if p]
    if not per_run:
        return [], []
    xs = sorted(set.intersection(*(set(p) for p in per_run)))
    return xs, [[p[v] for p in per_run] for v in xs]


def value_at(run: Run, key: str, epoch: float | None = None, step: int | None = None) -> float | None:
    """An eval record's `key` at an epoch or a step, or None if the run has no evaluation there."""
    for r in run.evals:
        if (epoch is not None and abs(r["epoch"] - epoch) < 1e-9) or (step is not None and r["step"] == step):
            return r.get(key)
    return None


def status_counts(runs: list[Run]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.status] += 1
        if run.summary.get("not_training"):
            counts["not training"] += 1
    return dict(counts)
