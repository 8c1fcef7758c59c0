"""How runs look in every figure: the matplotlib settings, one colour and one name per normalization, and the
legend text of a group of runs."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt

from bnexp.config import NORMS
from bnexp.results import Experiment, Run

# one colour and one name per normalization, the same in every figure: bnexp.config's table of norms
NORM_COLORS = {name: norm.color for name, norm in NORMS.items()}
NORM_LABELS = {name: norm.label for name, norm in NORMS.items()}
LINESTYLES = ["-", "--", ":", "-."]

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


def color(run: Run) -> str:
    """The norm's colour, the same in every figure; the activation darkens it (sigmoid variants)."""
    base = NORM_COLORS.get(run.model["norm"], "#555555")
    return _darker(base) if run.model.get("activation") == "sigmoid" else base


def _darker(hex_color: str) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return "#{:02x}{:02x}{:02x}".format(*(int(c * 0.55) for c in (r, g, b)))


def variant_colors(exp: Experiment) -> dict[str, str]:
    """A colour per variant: the norm's when each norm appears once, else one of tab10 each."""
    return _distinct_colors({variant: runs[0] for variant, runs in exp.variants.items()})


def tag_colors(exp: Experiment) -> dict[str, str]:
    """A colour per model (run.tag): the norm's when no two models share it, else one of tab10 each."""
    return _distinct_colors({r.tag: r for r in exp.runs})


def _distinct_colors(runs: dict[str, Run]) -> dict[str, str]:
    """key -> its run's norm colour where these differ for every key, else one of tab10 per key."""
    norms = [color(run) for run in runs.values()]
    if len(set(norms)) == len(norms):
        return dict(zip(runs, norms, strict=True))
    cycle = plt.get_cmap("tab10").colors
    return {key: matplotlib.colors.to_hex(cycle[i % len(cycle)]) for i, key in enumerate(runs)}


def label(runs: list[Run], with_lr: bool = True, with_n: bool = True, with_grid: bool = True) -> str:
    """lenet5 BN, lr 0.05 (n=3); a model with its own `label` is named by it, so that variants of one norm
    (momenta, noise levels, BN after the convolutions only) never share a legend entry."""
    m = runs[0].model
    parts = [m["name"], NORM_LABELS.get(m["norm"], m["norm"])]
    if m.get("norm_layers") == "conv" and m["norm"] != "none":
        parts.append("(conv layers only)")
    if m["activation"] != "relu":
        parts.append(m["activation"])
    text = m.get("label") or " ".join(parts)
    if with_grid:
        text += "".join(f", {k.replace('_', ' ')} {v}" for k, v in runs[0].grid.items())
    if with_lr:
        text += f", lr {runs[0].config['lr']:g}"
    return f"{text} (n={len(runs)})" if with_n else text
