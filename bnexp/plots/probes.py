"""Figures of what the probes recorded inside the nets: pre-activation histograms per layer (E3), percentiles of
an activation's input over training (BN paper Fig. 1), and how each layer's mean and sd drift (noisy BN)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnexp.plots.drawing import band, legend_below, smoothing_window, spread_text
from bnexp.plots.selection import finish, lr_multipliers, mixed_outcomes
from bnexp.plots.style import label, looks
from bnexp.results import Experiment, Run, aligned


def _histogram_runs(exp: Experiment) -> list[Run]:
    """The first seed of each variant that has epoch-based probes."""
    return [runs[0] for runs in exp.variants.values() if runs[0].probes]


DENSITY_TOP = 1.1  # the shared top of the histograms' density axis: N(0, 1)'s peak is 0.4


def feature_distribution(exp: Experiment) -> Figure:
    """Layers x variants grid of pre-activation histograms at the first and last probed epoch vs N(0,1) (E3)."""
    runs = _histogram_runs(exp)
    layers = sorted({p.layer for p in runs[0].probes})
    size = (2.9 * len(layers), 2.5 * len(runs) + 0.6)
    # one y scale for every panel: the panels are compared with each other and with N(0, 1)
    fig, axes = plt.subplots(
        len(runs), len(layers), figsize=size, squeeze=False, sharex=True, sharey=True, layout="constrained"
    )
    lo, hi = exp.config["probes"]["range"]
    grid = np.linspace(lo, hi, 400)
    normal = np.exp(-(grid**2) / 2) / math.sqrt(2 * math.pi)
    look = looks(exp)
    for row, run in zip(axes, runs, strict=True):
        epochs = sorted({p.epoch for p in run.probes})
        first, last = epochs[0], epochs[-1]
        # a probe in an epoch's first batch sits at a fractional epoch (step / steps per epoch): name its epoch
        first_name, last_name = (f"epoch {math.ceil(e - 1e-9)}" for e in (first, last))
        for ax, layer in zip(row, layers, strict=True):
            for epoch, fill in ((first, True), (last, False)) if first != last else ((last, False),):
                rec = next(p for p in run.probes if p.layer == layer and p.epoch == epoch)
                counts = np.array(rec.hist, dtype=float)
                edges = np.linspace(lo, hi, len(counts) + 1)
                density = counts / (rec.n * (edges[1] - edges[0]))
                if fill:
                    ax.stairs(density, edges, fill=True, color=look(run)["color"], alpha=0.25, label=first_name)
                else:
                    ax.stairs(density, edges, color=look(run)["color"], linewidth=1.3, label=last_name)
            ax.plot(grid, normal, color="black", linewidth=1, label="N(0, 1)")
            ax.text(
                0.98,
                0.95,
                f"{last_name}:\nmean {rec.mean:.2f}\nstd {rec.std:.2f}",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0},
            )
            outside = (rec.below_range + rec.above_range) / rec.n
            if outside > 0.001:
                ax.text(
                    0.02, 0.95, f"{outside:.1%} outside\n[{lo:g}, {hi:g}]", transform=ax.transAxes, fontsize=6, va="top"
                )
            ax.set_title(f"layer {layer + 1}", fontsize=10)
            peak = max(p.get_data().values.max() for p in ax.patches)
            if peak > DENSITY_TOP:  # a collapsed distribution's spike would flatten every other panel
                ax.text(0.02, 0.5, f"peak {peak:.1f}\n(clipped)", transform=ax.transAxes, fontsize=6)
            ax.set_ylim(0, DENSITY_TOP)
        # the variant names its row (as a title on every panel it ran into the next one), and says so when the
        # run never trained: its maps are then those of a net that did not learn
        outcome = run.course.outcome
        failed = f"\n({outcome.replace('_', ' ')})" if outcome != "trained" else ""
        row[0].set_ylabel(f"{label(exp, [run], with_lr=len(lr_multipliers(exp)) > 1, with_n=False)}{failed}\ndensity")
        row[-1].legend(loc="center right", fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("pre-activation value (after the norm)")
    return finish(fig, exp, f"{exp.name}: feature distributions (seed {runs[0].config['seed']}, one training batch)")


def percentiles(exp: Experiment) -> Figure:
    """Test accuracy vs step, and the sigmoid-input percentiles over training per variant (BN paper Fig. 1)."""
    groups = [runs for runs in exp.variants.values() if runs[0].probes]
    panels = 1 + len(groups)
    cols = min(panels, 4)  # more panels wrap onto further rows instead of one very wide strip
    rows = math.ceil(panels / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.4 * rows), layout="constrained", squeeze=False)
    axes = list(grid.flat)
    for unused in axes[panels:]:
        unused.set_visible(False)
    axes = axes[:panels]
    ax_acc = axes[0]
    look = looks(exp)  # variants of one norm (noise levels, affine or not): shades of its colour
    colors = {variant: look(runs[0])["color"] for variant, runs in exp.variants.items()}
    for runs in exp.variants.values():
        xs, values = aligned(runs, "evals", "test_acc")
        if xs:
            band(
                ax_acc,
                xs,
                values,
                {**look(runs[0]), "linewidth": 1.4},
                label(exp, runs, with_lr=False),
                per_seed=mixed_outcomes(runs),
            )
    ax_acc.set_xlabel("training step")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title(f"(a) test accuracy, {spread_text(list(exp.variants.values()))}")
    legend_below(ax_acc, 8)
    activations = " / ".join(sorted({r.model.get("activation", "relu") for r in exp.runs}))
    qs = [str(q).removesuffix(".0") for q in exp.config["probes"]["percentiles"]]
    for i, (ax, runs) in enumerate(zip(axes[1:], groups, strict=True)):
        run = runs[0]
        layer = run.probes[0].layer
        recs = [p for p in run.probes if p.layer == layer]
        steps = [p.step for p in recs]
        for j, q in enumerate(qs):
            key = next(k for k in recs[0].unit_percentiles if k.removesuffix(".0") == q)
            middle = j == len(qs) // 2
            unit_label = f"{'th, '.join(qs)}th pct of unit {recs[0].unit}" if middle else None
            ax.plot(
                steps,
                [p.unit_percentiles[key] for p in recs],
                color=colors[run.variant],
                linewidth=1.8 if middle else 1.0,
                label=unit_label,
            )
            ax.plot(
                steps,
                [p.percentiles[key] for p in recs],
                color="gray",
                linewidth=0.8,
                linestyle="--",
                label="same, over all units of the layer" if middle else None,
            )
        ax.set_xlabel("training step")
        ax.set_ylabel(f"input to the {run.model.get('activation', 'relu')}")
        ax.set_title(
            f"({chr(98 + i)}) {label(exp, [run], with_lr=False, with_n=False)}\n"
            f"{', '.join(qs)}th percentiles (last hidden layer, seed {run.config['seed']})",
            fontsize=9,
        )
        legend_below(ax, 7, ncol=1)
    lims = [ax.get_ylim() for ax in axes[1:]]
    for ax in axes[1:]:
        ax.set_ylim(min(lo for lo, _ in lims), max(hi for _, hi in lims))
    return finish(fig, exp, f"{exp.name}: {activations} inputs over training")


def distribution_drift(exp: Experiment) -> Figure:
    """Test accuracy, and each probed layer's pre-activation mean and sd over training, per variant (noisy BN)."""
    layers = sorted({p.layer for r in exp.runs for p in r.probes})
    fig, axes = plt.subplots(
        2, len(layers) + 1, figsize=(3.3 * (len(layers) + 1), 6.2), layout="constrained", squeeze=False
    )
    look = looks(exp)
    for runs in exp.variants.values():
        c = look(runs[0])["color"]
        xs, values = aligned(runs, "evals", "test_acc")
        if xs:
            band(axes[0][0], xs, values, {**look(runs[0]), "linewidth": 1.4}, label(exp, runs, with_lr=False))
        xs, values = aligned(runs, "train", "loss")
        if xs:
            band(
                axes[1][0],
                xs,
                values,
                {**look(runs[0]), "linewidth": 1.2},
                label(exp, runs, with_lr=False),
                smoothing_window(len(xs)),
            )
        run = runs[0]
        for j, layer in enumerate(layers):
            recs = sorted((p for p in run.probes if p.layer == layer), key=lambda p: p.step)
            steps = [p.step for p in recs]
            axes[0][j + 1].plot(steps, [p.mean for p in recs], color=c, linewidth=1.1)
            axes[1][j + 1].plot(steps, [p.std for p in recs], color=c, linewidth=1.1)
    axes[0][0].set_title(f"test accuracy, {spread_text(list(exp.variants.values()))}")
    legend_below(axes[0][0], 7)
    axes[1][0].set_title("training loss")
    for j, layer in enumerate(layers):
        axes[0][j + 1].set_title(f"layer {layer + 1}: mean of the pre-activations")
        axes[1][j + 1].set_title(f"layer {layer + 1}: their sd")
        axes[1][j + 1].set_xlabel("training step")
    axes[1][0].set_xlabel("training step")
    seed = exp.runs[0].config["seed"]
    return finish(fig, exp, f"{exp.name}: accuracy and how the layer distributions move (probes: seed {seed})")
