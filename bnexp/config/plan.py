"""A config's plan: the grid's cells, each model at each learning rate with each seed, as named `RunPlan`s, and the
comparison of a run's recorded config with the plan's."""

from __future__ import annotations

import copy
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from bnexp.config.paths import grid_assignments, set_path
from bnexp.config.schema import ExperimentConfig, ModelConfig

GRID_ABBREVIATIONS = {
    "batch_size": "b",
    "optimizer.lr": "olr",
    "optimizer.momentum": "mom",
    "epochs": "ep",
    "processes": "p",
    "bn_sync": "",
    "bn_running_stats": "rs",
}
# keys that do not change what a run computes: editing them never invalidates a started run
# (eval_batch_size only reorders the float sum of the test loss, ~1e-6 relative; accuracy is unchanged)
NOT_COMPARED = (
    "description",
    "reference",
    "smoke",
    "eval_batch_size",
    "analyses",
    "claims",
    "interim_looks",
    "multiplicity",
    "runs_began",
)
# the model entry's lr_multipliers/seeds only say which runs exist (recorded by older versions)
NOT_COMPARED_PATHS = ("model.lr_multipliers", "model.seeds")
_MISSING = object()


@dataclass(frozen=True)
class RunPlan:
    """One cell of the grid: a model at one learning rate with one seed (and one value of each grid key)."""

    name: str
    model: ModelConfig
    lr_multiplier: float
    seed: int
    experiment: ExperimentConfig  # with this cell's grid values applied
    grid: tuple[tuple[str, Any], ...] = ()  # (key path, value) of this cell

    @property
    def variant(self) -> str:
        return self.name.rsplit("_s", 1)[0]

    @property
    def lr(self) -> float:
        exp = self.experiment
        scale = exp.batch_size / exp.lr_base_batch if exp.lr_scaling == "linear" else 1.0
        return exp.optimizer.lr * self.lr_multiplier * scale

    def resolved(self) -> dict[str, Any]:
        """Everything that determines this run, as plain data (written to the run's config.yaml). The
        number of data-parallel processes is part of it (it changes what BN computes)."""
        exp = self.experiment.model_dump(exclude={"models", "seeds", "lr_multipliers", "grid"})
        return {
            "run": self.name,
            # the model's own lr_multipliers/seeds only say which runs exist; this run's are below
            "model": self.model.model_dump(exclude={"lr_multipliers", "seeds"}),
            "lr_multiplier": self.lr_multiplier,
            "lr": self.lr,
            "seed": self.seed,
            **({"grid": {k: v for k, v in self.grid}} if self.grid else {}),
            **exp,
        }


def variant_name(model: ModelConfig, lr_multiplier: float, grid: Sequence[tuple[str, Any]] = ()) -> str:
    """A run's name without its seed: what seeds are averaged over (e.g. lenet5-bn_lr1x, lenet5-gn_b8_lr1x)."""
    return "_".join([model.tag, *(grid_tag(k, v) for k, v in grid), f"lr{lr_multiplier:g}x"])


def grid_tag(path: str, value: Any) -> str:
    """`batch_size=8` -> b8; `models[0].bn_momentum=0.01` -> bn_momentum0.01; null -> 'none'."""
    short = GRID_ABBREVIATIONS[path] if path in GRID_ABBREVIATIONS else re.sub(r"\[\d+\]", "", path).rsplit(".", 1)[-1]
    text = "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", f"{short}{text}")


def expand_grid(cfg: ExperimentConfig) -> list[RunPlan]:
    """grid cells x models x lr multipliers x seeds, in that nesting order, with stable readable names."""
    plans = []
    for values, cell in grid_cells(cfg):
        for m in cell.models:
            for mult in m.lr_multipliers or cell.lr_multipliers:
                for seed in m.seeds or cell.seeds:
                    plans.append(RunPlan(f"{variant_name(m, mult, values)}_s{seed}", m, mult, seed, cell, values))
    return plans


def grid_cells(cfg: ExperimentConfig) -> list[tuple[tuple[tuple[str, Any], ...], ExperimentConfig]]:
    """Each combination of the grid's values, and the config with those values applied (grid emptied). The loader
    has checked every cell (`bnexp.config.load`), so building one here cannot fail."""
    if not cfg.grid:
        return [((), cfg)]
    base = cfg.model_dump()
    base["grid"] = {}
    cells = []
    for combo in itertools.product(*cfg.grid.values()):
        assignments = [pair for key, v in zip(cfg.grid, combo, strict=True) for pair in grid_assignments(key, v)]
        data = copy.deepcopy(base)
        for key, value in assignments:
            set_path(data, key, copy.deepcopy(value), "grid")
        cells.append((tuple(assignments), ExperimentConfig.model_validate(data, strict=True)))
    return cells


def count_runs(cfg: ExperimentConfig) -> int:
    """How many runs the plan has, without building it (grid cells x each model's lr multipliers x seeds)."""
    cells = math.prod(len(v) if isinstance(v, list) else 1 for v in cfg.grid.values())
    per_cell = sum(len(m.lr_multipliers or cfg.lr_multipliers) * len(m.seeds or cfg.seeds) for m in cfg.models)
    return cells * per_cell


def _default_at(path: list[str]) -> Any:
    """The schema default of a resolved-config key path (`dataset.normalize`, `model.renorm`), or _MISSING."""
    cls: Any = ExperimentConfig
    for i, key in enumerate(path):
        if i == 0 and key == "model":
            cls = ModelConfig
            continue
        fields = cls.model_fields if isinstance(cls, type) and issubclass(cls, BaseModel) else {}
        if key not in fields:
            return _MISSING
        field = fields[key]
        if i == len(path) - 1:
            return _MISSING if field.is_required() else field.get_default(call_default_factory=True)
        cls = next((a for a in (*get_args(field.annotation), field.annotation) if _is_model(a)), None)
    return _MISSING


def _is_model(tp: Any) -> bool:
    return get_origin(tp) is None and isinstance(tp, type) and issubclass(tp, BaseModel)


def config_diff(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[str]:
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
            out += config_diff(old.get(key), new.get(key), p)
        return out
    return [] if old == new else [f"{'.'.join(path)}: {old!r} -> {new!r}"]
