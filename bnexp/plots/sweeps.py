"""Figures of one result across a swept setting, every seed shown: accuracy vs batch size (GroupNorm paper Fig. 1,
E3) and vs the scale of the initial weights."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnexp.plots.drawing import dots_and_median_line, finish_accuracy_axes, legend_below, mark_seed, outcome_legend
from bnexp.plots.selection import finish, mixed_outcomes, model_groups
from bnexp.plots.style import NORM_LABELS, looks, model_label, norm_color
from bnexp.results import Experiment, Run, mean_sd


def batch_size(exp: Experiment) -> Figure:
    """Test error vs batch size (log 2 axis), a line per norm through the means over seeds (GroupNorm paper Fig.
    1); a batch size whose seeds ended differently has no mean: each seed is a dot, marked by how it ended, beside
    the size it ran at. The right panel zooms in on the sizes where every norm trained, which the left panel's
    0-90 % axis flattens into one band."""
    fig, (ax_err, ax_zoom) = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
    look = looks(exp)
    most, any_mixed = 0, False
    marked: set[str | None] = set()
    groups = model_groups(exp)
    trained: dict[int, list[float]] = {}  # batch size -> the means (+ sd) of the norms, where all seeds trained
    for g, runs in enumerate(groups.values()):
        by_size: dict[int, list[Run]] = {}
        for r in runs:
            by_size.setdefault(r.grid["batch_size"], []).append(r)
        sizes, stats = [], []
        style = {**look(runs[0]), "marker": "o", "capsize": 3, "linewidth": 1.5}
        for size, cell in sorted(by_size.items()):
            mixed = mixed_outcomes(cell)
            if not mixed:
                sizes.append(size)
                stats.append(mean_sd([r.summary.final_test_acc for r in cell]))
            if not mixed and cell[0].course.outcome == "trained":
                m, sd, _ = stats[-1]
                trained.setdefault(size, []).extend([100 * (1 - m - sd), 100 * (1 - m + sd)])
            else:
                trained.setdefault(size, []).append(math.nan)  # a norm did not train here: not in the zoom
            any_mixed |= mixed
            # each seed that did not train is marked, also where all ended alike (E3's batch-1 nets fell back);
            # seeds sit side by side, and each norm's beside the next, so that runs with one accuracy stay apart
            for i, r in enumerate(cell):
                acc = r.summary.final_test_acc or 0.0  # a diverged run may have none
                x = size * 2 ** (0.03 * (g - (len(groups) - 1) / 2) + 0.015 * (i - (len(cell) - 1) / 2))
                marked.add(mark_seed(ax_err, x, 100 * (1 - acc), r, style["color"] if mixed else None))
        acc = np.array([m for m, _, _ in stats])
        sd = np.array([d for _, d, _ in stats])
        most = max(most, *(n for _, _, n in stats), 0)
        name = f"{model_label(exp, runs[0])} (n={_most_in(by_size)} per size)"
        for ax in (ax_err, ax_zoom):
            ax.errorbar(sizes, 100 * (1 - acc), yerr=100 * sd, label=name if ax is ax_err else None, **style)
    outcome_legend(ax_err, marked, each_seed=any_mixed)
    zoomed = {size: v for size, v in trained.items() if not any(math.isnan(x) for x in v)}
    if 2 <= len(zoomed) < len(trained):
        _zoom(ax_zoom, zoomed)
    else:  # nothing to zoom in on (one size, or every size): one panel
        ax_zoom.remove()
        ax_err.set_subplotspec(ax_err.get_subplotspec().get_gridspec()[0, :])
    for ax in fig.axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"batch size (images per step; {_lr_over_batch_sizes(exp)})")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax_err.set_ylabel("test error (%)")
    fig.axes[-1].set_ylabel("test error (%)")
    spread = "mean ± 1 sd over seeds" if most > 1 else "one run"
    ax_err.set_title(
        f"test error after the last epoch (eval mode), {spread}"
        + ("\nwhere every seed had the same outcome" if any_mixed else "")
    )
    legend_below(ax_err, 8)
    return finish(fig, exp, f"{exp.name}: accuracy vs batch size")


def _most_in(by_size: dict[int, list[Run]]) -> int:
    """The most seeds any batch size of a model ran."""
    return max(len(cell) for cell in by_size.values())


def _zoom(ax, trained: dict[int, list[float]]) -> None:
    """The error axis zoomed in on the batch sizes where every norm trained (its own y range, the runs' mean ± sd
    with room around them)."""
    sizes = sorted(trained)
    lo, hi = min(min(v) for v in trained.values()), max(max(v) for v in trained.values())
    pad = 0.1 * (hi - lo) or 1.0
    ax.set_xlim(sizes[0] / 2**0.3, sizes[-1] * 2**0.3)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(f"zoom: batch sizes {sizes[0]}–{sizes[-1]}, where every norm's seeds all trained")


def _lr_over_batch_sizes(exp: Experiment) -> str:
    """How the runs' learning rate went with their batch size: E3 keeps the script's 0.1 at batch 1 and 512, the
    GroupNorm sweep scales it linearly."""
    pairs = {(r.grid["batch_size"], r.config.get("lr")) for r in exp.runs}
    lrs = {lr for _, lr in pairs}
    if None in lrs:
        return "lr as configured per size"
    if len(lrs) == 1:
        return f"lr {lrs.pop():g} at every size"
    per_image = [lr / size for size, lr in pairs]
    if all(math.isclose(x, per_image[0]) for x in per_image):
        return "lr scaled linearly"
    return "lr as configured per size"


def init_scale(exp: Experiment) -> Figure:
    """Final test accuracy vs the sd of the N(0, sd²) initial weights (log axis), one line per norm through the
    medians, every seed's run a dot (outcomes may differ: none is averaged away); torch's default init as a dashed
    line in the norm's colour (a3: with BN, the initialization no longer matters)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    by_norm: dict[tuple[str, str], list[Run]] = {}
    for run in exp.runs:
        by_norm.setdefault((run.model["norm"], run.model.get("activation", "relu")), []).append(run)
    for (norm, activation), runs in by_norm.items():
        style = {"color": norm_color(runs[0])}
        name = NORM_LABELS.get(norm, norm) + (" sigmoid" if activation == "sigmoid" else "")
        at_scale: dict[float | None, list[Run]] = {}
        for run in runs:
            at_scale.setdefault(run.model.get("init_std"), []).append(run)
        accs = {sd: [a for a in (r.summary.final_test_acc for r in rs) if a is not None] for sd, rs in at_scale.items()}
        default = accs.pop(None, [])
        for sd in accs:
            diverged = sum(r.status == "diverged" for r in at_scale[sd])
            if diverged:  # no accuracy to draw: a cross on the chance line, with the count
                ax.scatter([sd], [0.1], marker="x", s=40, **style)
                ax.annotate(
                    f"{diverged} diverged", (sd, 0.1), textcoords="offset points", xytext=(4, 4), fontsize=7, **style
                )
        n = max(len(at_scale[sd]) for sd in accs)
        dots_and_median_line(ax, accs, style, f"{name} (n={n} per scale)")
        if default:
            ax.axhline(
                float(np.median(default)),
                linestyle="--",
                linewidth=1,
                label=f"{name}, torch's default init (median, n={len(default)})",
                **style,
            )
    ax.set_xscale("log")
    ax.set_xlabel("sd of the initial weights (every conv and fc layer; biases 0)")
    finish_accuracy_axes(ax, "final test accuracy (eval mode)")
    return finish(fig, exp, f"{exp.name}: accuracy vs initial weight scale")
