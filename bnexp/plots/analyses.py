"""Figures of the post-training analyses: accuracy on longer sequences than trained on, the cost of a training
step, accuracy under each evaluation mode, and BN's scale invariance (with the weight probes over training)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnexp.plots.drawing import dots_and_median_line, finish_accuracy_axes, legend_below
from bnexp.plots.selection import finish
from bnexp.plots.style import cell_looks, label, looks
from bnexp.records import EvalModes, LongSequences, ScaleInvariance, StepCost, WeightsProbe
from bnexp.results import Experiment, mean_sd


def long_sequences(exp: Experiment) -> Figure:
    """Test accuracy vs sequence length (the test images with each row repeated k times), one line per variant
    through the medians, each seed's run a dot; the trained length marked."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    trained, lengths = None, set()
    look = looks(exp)
    for runs in exp.variants.values():
        by_steps: dict[int, list[float]] = {}
        for run in runs:
            result = run.analysis(LongSequences)
            for row in result.rows if result else []:
                lengths.add(row.steps)
                if row.test_acc is not None:
                    by_steps.setdefault(row.steps, []).append(row.test_acc)
                if row.stretch == 1:
                    trained = row.steps
        if by_steps:
            dots_and_median_line(ax, by_steps, {"color": look(runs[0])["color"]}, label(exp, runs, with_lr=False))
    if trained:
        ax.axvline(trained, color="black", linestyle="--", linewidth=0.8)
        ax.annotate("trained length", (trained, 0.12), textcoords="offset points", xytext=(4, 0), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(lengths), [str(n) for n in sorted(lengths)])
    ax.minorticks_off()
    ax.set_xlabel("sequence length (rows read; each image row repeated k times)")
    finish_accuracy_axes(ax, "test accuracy (eval mode)")
    return finish(fig, exp, f"{exp.name}: accuracy on longer sequences than in training")


def step_cost(exp: Experiment) -> Figure:
    """Left: time per training step as a ratio to the same model with BN, measured side by side (each dot one
    repetition of one run; a bar at the median of the runs' medians). Right: final accuracy, each dot a run."""
    fig, (cost, acc) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    variants = list(exp.variants.items())
    look = looks(exp)
    for i, (_, runs) in enumerate(variants):
        style = {"color": look(runs[0])["color"]}
        timed = [t for r in runs if (t := r.analysis(StepCost)) is not None]
        for j, t in enumerate(timed):
            offsets = i + 0.08 * (j - (len(timed) - 1) / 2)
            cost.scatter([offsets] * len(t.ratios), t.ratios, s=10, alpha=0.5, **style)
        if timed:
            cost.hlines(float(np.median([t.ratio_to_batchnorm for t in timed])), i - 0.3, i + 0.3, **style)
        accs = [r.summary.final_test_acc for r in runs if r.summary.final_test_acc is not None]
        acc.scatter([i] * len(accs), accs, s=14, **style)
    names = [label(exp, runs, with_lr=False) for _, runs in variants]
    for ax in (cost, acc):
        ax.set_xticks(range(len(variants)), names, rotation=15, ha="right", fontsize=8)
    cost.axhline(1.0, color="black", linestyle=":", linewidth=0.8)
    cost.set_ylim(bottom=0)
    cost.set_ylabel("time per training step / with BN")
    cost.set_title("cost per step, side by side on one thread", fontsize=9)
    acc.set_ylabel("final test accuracy (eval mode)")
    acc.set_title("accuracy", fontsize=9)
    return finish(fig, exp, f"{exp.name}: cost per training step and accuracy")


def eval_modes(exp: Experiment) -> Figure:
    """Test accuracy of each trained variant under each evaluation mode (a2's pitfalls), mean +- sd."""
    from bnexp.report_sections import mode_key

    cells = cell_looks(exp)
    table: dict[str, dict[str, list[float]]] = {}
    for variant, runs in exp.variants.items():
        for run in runs:
            result = run.analysis(EvalModes)
            for row in result.rows if result else []:
                table.setdefault(mode_key(row), {}).setdefault(variant, []).append(row.test_acc)
    modes = list(table)
    variants = [v for v in exp.variants if any(v in table[m] for m in modes)]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(modes) * max(1, len(variants)) / 2 + 1.5), layout="constrained")
    height = 0.8 / max(1, len(variants))
    for j, variant in enumerate(variants):
        ys = [i + (j - (len(variants) - 1) / 2) * height for i in range(len(modes))]
        stats = [mean_sd(table[m].get(variant, [])) for m in modes]
        ax.barh(
            ys,
            [m if n else 0 for m, _, n in stats],
            height=height * 0.95,
            xerr=[d if n else 0 for _, d, n in stats],
            color=cells[variant]["color"],
            label=label(exp, exp.variants[variant], with_lr=False),
            capsize=2,
        )
    ax.set_yticks(range(len(modes)), modes, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.1, color="black", linestyle=":", linewidth=0.8)
    ax.set_xlabel("test accuracy (chance 0.1 dotted)")
    ax.set_xlim(0, 1)
    fig.legend(loc="outside lower center", ncol=2, fontsize=7, frameon=False)  # below the axes: hides no bar
    return finish(fig, exp, f"{exp.name}: each trained model, evaluated {len(modes)} ways")


def _positive(x: float) -> float:
    """A value for a log axis: an exact 0 is left out (NaN) rather than drawn at an invented floor."""
    return x if x > 0 else math.nan


def scale_invariance(exp: Experiment) -> Figure:
    """BN's output change and gradient ratio vs the weight scale a (trained layers), and weight norms and
    effective steps over training."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), layout="constrained")
    look = looks(exp)
    for runs in exp.variants.values():
        c = look(runs[0])["color"]
        name = label(exp, runs, with_lr=False, with_n=False)
        for run in runs[:1]:
            result = run.analysis(ScaleInvariance)
            for i, layer in enumerate(result.layers if result else []):
                a = [row.a for row in layer.with_eps]
                with_eps = (layer.with_eps, {"marker": "o", "markersize": 3}, f"eps {layer.eps:g}")
                without_eps = (layer.without_eps, {"linestyle": "--"}, "eps 0")
                for ax, key, shown in ((axes[0], "output_rel_error", _positive), (axes[1], "grad_ratio", None)):
                    for rows, style, eps in (with_eps, without_eps):
                        ax.plot(
                            a,
                            [shown(getattr(row, key)) if shown else getattr(row, key) for row in rows],
                            color=c,
                            linewidth=1,
                            label=f"{name}, {eps}" if i == 0 else None,
                            **style,
                        )
        for ax, key in ((axes[2], "weight_norm"), (axes[3], "effective_step")):
            per_run = [r.probe(WeightsProbe) for r in runs if r.probe(WeightsProbe)]
            if not per_run:
                continue
            steps = [p.step for p in per_run[0]]
            n_layers = len(per_run[0][0].layers)
            for i in range(n_layers):
                y = np.mean([[getattr(p, key)[i] for p in recs[: len(steps)]] for recs in per_run], axis=0)
                ax.plot(
                    steps,
                    y,
                    color=c,
                    linewidth=1.1,
                    alpha=0.35 + 0.65 * (i + 1) / n_layers,
                    label=name if i == n_layers - 1 else None,
                )
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="weight scale a",
        ylabel="‖BN((aW)u) − BN(Wu)‖ / ‖BN(Wu)‖",
        title="output change (trained layers, every BN layer)",
    )
    axes[1].set(
        xscale="log",
        xlabel="weight scale a",
        ylabel="a · ‖∂L/∂(aW)‖ / ‖∂L/∂W‖",
        title="gradient ratio (1 = scales as 1/a)",
    )
    axes[2].set(xlabel="training step", ylabel="‖W‖", title="weight norm per layer (darker = deeper)")
    axes[3].set(
        xlabel="training step",
        ylabel="‖ΔW‖ / ‖W‖",
        yscale="log",
        title="effective step of the step before each evaluation",
    )
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            legend_below(ax, 7)
    return finish(fig, exp, f"{exp.name}: scale invariance")
