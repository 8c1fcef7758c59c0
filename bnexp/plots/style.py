"""How runs look in every figure: the matplotlib settings, one colour and one name per normalization, and the
legend text of a group of runs."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt

from bnexp.results import Experiment, Run

# One colour per normalization, the same in every figure (no norm orange, BN blue, as in the main article).
NORM_COLORS = {
    "none": "#e8710a",
    "batchnorm": "#1a73e8",
    "torch_batchnorm": "#174ea6",
    "naive_batchnorm": "#12b5cb",
    "groupnorm": "#1e8e3e",
    "layernorm": "#9334e6",
    "instancenorm": "#b06000",
    "batchrenorm": "#d01884",
    "noisy_batchnorm": "#7cb342",
    "weightnorm": "#f9ab00",
    "spectralnorm": "#5f6368",
    "l1_batchnorm": "#8ab4f8",
    "linf_batchnorm": "#0b3d91",
    "decorrelated_batchnorm": "#c5221f",
}
NORM_LABELS = {
    "none": "no norm",
    "batchnorm": "BN",
    "torch_batchnorm": "torch BN",
    "naive_batchnorm": "naive BN",
    "groupnorm": "GroupNorm",
    "layernorm": "LayerNorm",
    "instancenorm": "InstanceNorm",
    "batchrenorm": "Batch Renorm",
    "noisy_batchnorm": "noisy BN",
    "weightnorm": "Weight Norm",
    "spectralnorm": "Spectral Norm",
    "l1_batchnorm": "ℓ1 BN",
    "linf_batchnorm": "ℓ∞ BN",
    "decorrelated_batchnorm": "ZCA-whitened BN",
}
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
