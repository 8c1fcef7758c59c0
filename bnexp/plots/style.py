"""How runs look in every figure: the matplotlib settings, one colour and one name per normalization, and the
legend text of a group of runs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from bnexp.config import NORMS, ModelConfig
from bnexp.results import Experiment, Run
from bnexp.wording import plural

# one colour and one name per normalization, the same in every figure: bnexp.config's table of norms
NORM_COLORS = {name: norm.color for name, norm in NORMS.items()}
NORM_LABELS = {name: norm.label for name, norm in NORMS.items()}
LINESTYLES = ["-", "--", ":", "-."]
ACTIVATION_LINES = {"relu": "-", "sigmoid": "--"}

plt.rcParams.update(
    {
        "figure.dpi": 150,
        "savefig.dpi": 150,
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "legend.fontsize": 8,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def norm_color(run: Run) -> str:
    """The run's norm's colour, the same in every figure."""
    return NORM_COLORS.get(run.model["norm"], "#555555")


def _noise_text(noise: dict[str, Any] | None) -> str:
    lo, hi = (noise or {}).get("mult_mean", (None, None))
    return f"noise ×{lo:g}–{hi:g}" if lo is not None else "no noise"


# the model keys a legend names where an experiment's models differ in them, and how it words their values
DESCRIBED: dict[str, Callable[[Any], str]] = {
    "name": str,
    "activation": str,
    "norm_layers": lambda v: "conv layers only" if v == "conv" else "every layer",
    "bn_momentum": lambda v: "cumulative running average" if v is None else f"momentum {v:g}",
    "affine": lambda v: "with γ, β" if v else "no γ, β",
    "bias_before_norm": lambda v: "bias before the norm" if v else "no bias before the norm",
    "whitening_group": lambda v: f"whitening groups of {v or 16}",
    "noise": _noise_text,
    "init_std": lambda v: "torch's default init" if v is None else f"init sd {v:g}",
    "dropout": lambda v: f"dropout {v:g}",
    "groups": lambda v: f"{v} groups",
    "bn_eps": lambda v: f"eps {v:g}",
    "renorm": lambda v: f"r_max {v['r_max']:g}, d_max {v['d_max']:g}" if v else "default renorm",
}
_DEFAULTS = {key: ModelConfig.model_fields[key].default for key in DESCRIBED}


def _differing(exp: Experiment, norm: str) -> set[str]:
    """The described model keys whose value is not the same in every run of `exp` with this norm (a norm's own
    option, Batch Renorm's r_max, is no difference from the other norms); the model's name across all runs."""
    runs = [r for r in exp.runs if r.model["norm"] == norm]
    differing = {key for key in DESCRIBED if len({repr(r.model.get(key)) for r in runs}) > 1}
    return differing | ({"name"} if len({r.model["name"] for r in exp.runs}) > 1 else set())


def _model_parts(run: Run, differing: set[str], activation: bool = True) -> list[str]:
    """What sets the run's model apart from its experiment's other models: a differing key where it is not the
    default, and an activation other than ReLU always; the model's name first where the models differ in it."""
    m = run.model
    parts = [m["name"]] if "name" in differing else []
    for key in DESCRIBED:
        if key == "name":
            continue
        value = m.get(key, _DEFAULTS[key])
        # a norm's own option is named also at its default where its models differ in it (groups of 16 and of 64)
        own = NORMS[m["norm"]].option == key if m["norm"] in NORMS else False
        if (key in differing and (value != _DEFAULTS[key] or own)) or (
            activation and key == "activation" and value != "relu"
        ):
            parts.append(DESCRIBED[key](value))
    return parts


def model_label(exp: Experiment, run: Run) -> str:
    """The run's model in words: its norm and what sets it apart ('BN, momentum 0.01'), never a run name."""
    differing = _differing(exp, run.model["norm"])
    parts = _model_parts(run, differing)
    if run.model.get("norm_layers") == "conv" and "norm_layers" not in differing:
        parts.append("conv layers only")
    return ", ".join([NORM_LABELS.get(run.model["norm"], run.model["norm"]), *parts])


Look = dict[str, str]  # a curve's colour and line style


def model_of(run: Run) -> str:
    """The run's model as configured (its grid cell, learning rate and seed aside): what one look stands for. A key
    at its default counts as absent (older runs recorded fewer keys for the same model)."""
    fields = ModelConfig.model_fields
    return repr(
        sorted(
            (k, v)
            for k, v in run.model.items()
            if k not in ("seeds", "lr_multipliers", "label") and not (k in fields and v == fields[k].default)
        )
    )


def looks(exp: Experiment) -> Callable[[Run], Look]:
    """run -> its model's colour and line style: the norm's colour for the norm's plainest model, a shade of it
    for the norm's further models (momenta, noise levels, no γ, β), so that a colour keeps meaning one norm across
    every figure; where an experiment has both, a solid line for ReLU nets and a dashed one for sigmoid nets (an
    experiment of sigmoid nets alone draws solid lines: dashed is also the article's run)."""
    models = list({model_of(r): r for r in exp.runs}.values())
    out: dict[str, Look] = {}
    by_kind: dict[tuple[str, str], list[Run]] = {}
    for run in models:
        by_kind.setdefault((run.model["norm"], run.model.get("activation", "relu")), []).append(run)
    both = len({activation for _, activation in by_kind}) > 1
    for (norm, activation), runs in by_kind.items():
        differing = _differing(exp, norm) - {"activation"}
        ordered = sorted(runs, key=lambda r: len(_model_parts(r, differing, activation=False)))
        skip = 1 if _model_parts(ordered[0], differing, activation=False) else 0  # no plain model: all on the ramp
        for i, run in enumerate(ordered):
            out[model_of(run)] = {
                "color": shade(norm_color(run), i + skip, len(runs) + skip),
                "linestyle": ACTIVATION_LINES[activation] if both else "-",
            }
    return lambda run: out[model_of(run)]


def cell_looks(exp: Experiment) -> dict[str, Look]:
    """variant -> look, where variants of one model (grid cells: processes, BN mode) are told apart as `looks` tells
    a norm's models apart: shades of the model's colour, line styles of their own."""
    look = looks(exp)
    of = Counter(model_of(runs[0]) for runs in exp.variants.values())
    seen: dict[str, int] = {}
    out = {}
    for variant, runs in exp.variants.items():
        model = model_of(runs[0])
        i = seen[model] = seen.get(model, -1) + 1
        base = look(runs[0])
        out[variant] = base if i == 0 else {"color": shade(base["color"], i, of[model]), "linestyle": LINESTYLES[i % 4]}
    return out


def shade(hex_color: str, i: int, of: int = 2) -> str:
    """The i-th of `of` looks of one hue: the colour itself (i = 0), then the others from lighter to darker in
    their order (a sweep's values read as a ramp), none the colour itself, none near black (another norm's)."""
    if i == 0:
        return hex_color
    rgb = np.array(matplotlib.colors.to_rgb(hex_color))
    u = -1.0 if of <= 2 else -1 + 2 * (i - 1) / (of - 2)  # -1 the lightest, 1 the darkest of the others
    mixed = rgb + (1 - rgb) * (0.25 - 0.35 * u) if u <= 0 else rgb * (1 - 0.15 - 0.35 * u)
    return matplotlib.colors.to_hex(mixed)


GRID_WORDS: dict[str, Callable[[Any], str]] = {  # a grid cell's values in words, where plain 'key value' reads badly
    "processes": lambda v: plural(v, "process", "processes"),
    "bn_sync": lambda v: "BN synced" if v == "sync" else "BN per process",
    "bn_running_stats": lambda v: "running stats averaged" if v == "reduce" else "running stats of rank 0",
    "batch_size": lambda v: f"batch {v}",
}


def grid_text(key: str, value: Any) -> str:
    """'4 processes', 'BN synced', 'batch 8'; any other key as 'key value'."""
    return GRID_WORDS[key](value) if key in GRID_WORDS else f"{key.replace('_', ' ')} {value}"


def label(exp: Experiment, runs: list[Run], with_lr: bool = True, with_n: bool = True, with_grid: bool = True) -> str:
    """'BN, momentum 0.01, lr 0.05 (n=3)': the model in words, then the grid cell and learning rate."""
    text = model_label(exp, runs[0])
    if with_grid:
        text += "".join(f", {grid_text(k, v)}" for k, v in runs[0].grid.items())
    if with_lr:
        text += f", lr {runs[0].config['lr']:g}"
    return f"{text} (n={len(runs)})" if with_n else text
