"""Figures of how training went: loss and accuracy curves per variant (E1/E2), per learning rate (E4), train vs
test accuracy (E5), and accuracy under data parallelism with the running statistics' gap."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnexp import stats
from bnexp.claims.decide import article_points, consistency_summary, points_text
from bnexp.plots.drawing import (
    band,
    draw_reference_loss,
    integer_ticks,
    legend_below,
    loss_panel,
    mark_seed,
    outcome_legend,
    smoothing_text,
    spread_text,
)
from bnexp.plots.selection import (
    finish,
    log_every,
    lr_multipliers,
    mixed_outcomes,
    reference_loss_curves,
    several_lrs_per_model,
    steps_per_epoch,
)
from bnexp.plots.style import LINESTYLES, cell_looks, label, looks
from bnexp.records import EvalModes
from bnexp.results import Experiment, Run, aligned, mean_sd


def _linestyle(exp: Experiment, run: Run) -> str:
    """A line style per lr multiplier, so that one model's curves at several learning rates stay apart."""
    return LINESTYLES[lr_multipliers(exp).index(run.config["lr_multiplier"]) % len(LINESTYLES)]


def _loss_top(top: float) -> float:
    """The top of a loss axis: what the curves reach, at least 0.5 and at most 3.0 (just above chance, ln 10),
    so that a diverging run does not flatten the others."""
    return min(max(top, 0.5), 3.0)


def convergence(exp: Experiment) -> Figure:
    """Training loss per step and test accuracy per evaluation, the median over seeds with each seed thin (E1/E2);
    where a claim asks whether the article's run is a draw from ours, the prediction interval its verdict uses."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    groups = list(exp.variants.values())
    several_lrs = several_lrs_per_model(exp)
    if several_lrs:  # one lr per model, the lowest (E2 within E4); the learning_rate figure has all of them
        lowest = {}
        for runs in groups:
            lowest[runs[0].tag] = min(lowest.get(runs[0].tag, math.inf), runs[0].config["lr"])
        groups = [runs for runs in groups if runs[0].config["lr"] == lowest[runs[0].tag]]
    with_lr = len(lr_multipliers(exp)) > 1

    look = looks(exp)

    def style(run: Run) -> dict:
        linestyle = _linestyle(exp, run) if with_lr else look(run)["linestyle"]
        return {"color": look(run)["color"], "linestyle": linestyle, "linewidth": 1.4}

    k = loss_panel(ax_loss, exp, groups, style, lambda runs: label(exp, runs, with_lr))
    references = reference_loss_curves(exp)
    for i, (variant, values) in enumerate(references.items()):
        if any(runs[0].variant == variant for runs in groups):
            draw_reference_loss(
                ax_loss,
                values,
                k * log_every(exp),
                style(exp.variants[variant][0]),
                "article's run (author's file), dashed" if i == 0 else None,
            )
    ax_loss.set_ylim(0, _loss_top(ax_loss.get_ylim()[1]))
    ax_loss.set_title(f"training loss, {spread_text(groups)}\n({smoothing_text(k * log_every(exp))})")
    legend_below(ax_loss, 8)
    per_epoch = steps_per_epoch(exp)
    by_epoch = exp.config.get("epochs") is not None
    for runs in groups:
        xs, values = aligned(runs, "evals", "test_acc")
        if xs:
            x = [s / per_epoch for s in xs] if by_epoch and per_epoch else xs
            band(
                ax_acc,
                x,
                values,
                {**style(runs[0]), "marker": "o", "markersize": 3},
                label(exp, runs, with_lr),
                per_seed=mixed_outcomes(runs),
            )
    ref = exp.reference or {}
    first_ref = True
    for variant, points in (ref.get("test_acc_at_epoch") or {}).items():
        if any(runs[0].variant == variant for runs in groups) and by_epoch:
            ex = sorted(points)
            ax_acc.plot(
                ex,
                [points[e] for e in ex],
                linestyle="none",
                marker="x",
                markersize=6,
                color=look(exp.variants[variant][0])["color"],
                label="article" if first_ref else None,
            )
            first_ref = False
    if by_epoch:
        integer_ticks(ax_acc.xaxis)
    bars = _prediction_bars(ax_acc, exp, groups, look) if by_epoch else ""
    ax_acc.set_xlabel("epoch" if by_epoch else "training step")
    ax_acc.set_ylabel("test accuracy (eval mode)")
    ax_acc.set_title(f"test accuracy, {spread_text(groups)}" + (" (x: article)" if not first_ref else "") + bars)
    legend_below(ax_acc, 8)
    return finish(fig, exp, f"{exp.name}: convergence" + (" at each model's lowest lr" if several_lrs else ""))


def _prediction_bars(ax, exp: Experiment, groups: list[list[Run]], look: dict[str, dict[str, str]]) -> str:
    """For each claim that the article's run is a draw from ours (expect: consistent, test accuracy at epochs),
    what its verdict compares, right of the curves: the 95 % prediction interval of one new run's mean over the
    article's epochs (a bar at our runs' mean) and the article's own mean over them (a star). Returns what the
    bars are, for the title ('' without such a claim)."""
    shown = {runs[0].variant: runs for runs in groups}
    claims = [
        c for c in exp.claims if c.expect == "consistent" and c.group in shown and c.quantity == "test_acc_at_epoch"
    ]
    right = max((r.evals[-1].epoch for runs in groups for r in runs if r.evals), default=1.0)
    spans = set()
    for i, claim in enumerate(claims):
        ours, article, _ = consistency_summary(claim, shown[claim.group])
        if len(ours) < 2:  # no interval of one new run (a smoke run stops before the article's epochs)
            continue
        pred = stats.prediction_interval(ours, article)
        x = right + 0.6 + 0.35 * i
        color = look(shown[claim.group][0])["color"]
        ax.errorbar(
            [x], [pred.mean], yerr=[[pred.mean - pred.low], [pred.high - pred.mean]], color=color, capsize=3,
            marker="_", markersize=9,
        )  # fmt: skip
        ax.plot([x + 0.15], [article], marker="*", markersize=8, color=color, linestyle="none")  # beside, not over
        span = points_text(list(article_points(claim)))
        ax.text(x, pred.low, span.replace("mean over ", "mean\n"), ha="center", va="top", fontsize=6, color=color)
        spans.add(span)
    if not spans:
        return ""
    ax.set_xticks([t for t in ax.get_xticks() if 0 < t <= right])  # no epoch tick under the bars
    return (
        f"\nright: the verdict's 95 % prediction interval of one new run's {' / '.join(sorted(spans))} epochs"
        " (— ours, ★ the article's)"
    )


def learning_rate(exp: Experiment) -> Figure:
    """One loss panel per norm variant with a curve per learning rate (the article's runs dashed), and final
    accuracy vs lr with the runs that diverged, never left chance or fell back to it marked (E4)."""
    tags = list(dict.fromkeys(r.tag for r in exp.runs))
    references = reference_loss_curves(exp)
    fig, axes = plt.subplots(1, len(tags) + 1, figsize=(4.2 * (len(tags) + 1), 4.2), layout="constrained")
    mults = lr_multipliers(exp)
    cmap = plt.get_cmap("viridis")
    # viridis short of its pale yellow end, which a thin line on white hides
    shade = {m: cmap(0.1 + 0.65 * i / max(1, len(mults) - 1)) for i, m in enumerate(mults)}
    by_tag = {tag: [runs for runs in exp.variants.values() if runs[0].tag == tag] for tag in tags}
    look = looks(exp)
    for ax, groups in zip(axes, by_tag.values(), strict=False):
        k = loss_panel(
            ax,
            exp,
            groups,
            lambda run: {"color": shade[run.config["lr_multiplier"]], "linewidth": 1.3},
            lambda runs: f"lr {runs[0].config['lr']:g} (n={len(runs)})",
        )
        drawn = False
        for runs in groups:
            if runs[0].variant in references:
                draw_reference_loss(
                    ax,
                    references[runs[0].variant],
                    k * log_every(exp),
                    {"color": shade[runs[0].config["lr_multiplier"]]},
                    None if drawn else "article's runs (dashed)",
                )
                drawn = True
        ax.set_title(
            f"{label(exp, groups[0], with_lr=False, with_n=False)}: training loss\n"
            f"({smoothing_text(k * log_every(exp))})"
        )
        legend_below(ax, 8)
    top = max(ax.get_ylim()[1] for ax in axes[:-1])
    for ax in axes[:-1]:
        ax.set_ylim(0, _loss_top(top))
    summary_ax = axes[-1]
    marked: set[str | None] = set()
    any_mixed = False
    for groups in by_tag.values():
        lrs, means, sds = [], [], []
        for runs in groups:
            mixed = mixed_outcomes(runs)
            any_mixed |= mixed
            if not mixed:
                m, sd, _n = mean_sd([r.summary.final_test_acc for r in runs])
                lrs.append(runs[0].config["lr"])
                means.append(m)
                sds.append(sd)
            # every seed of a cell whose runs ended differently is a point (no mean over them), side by side, with
            # the seeds that did not train marked
            for i, r in enumerate(runs):
                acc = r.summary.final_test_acc or 0.0  # a diverged run may have none
                x = r.config["lr"] * 1.05 ** (i - (len(runs) - 1) / 2)
                marked.add(mark_seed(summary_ax, x, acc, r, look(r)["color"] if mixed else None))
        summary_ax.errorbar(
            lrs,
            means,
            yerr=sds,
            color=look(groups[0][0])["color"],
            marker="o",
            capsize=3,
            label=label(exp, groups[0], with_lr=False, with_n=False),
        )
    outcome_legend(summary_ax, marked, each_seed=any_mixed)
    summary_ax.set_xscale("log")
    lrs_run = sorted({r.config["lr"] for r in exp.runs})  # a tick at each lr run, in plain numbers: no 3×10⁻¹4×10⁻¹
    summary_ax.set_xticks(lrs_run, [f"{lr:g}" for lr in lrs_run])
    summary_ax.minorticks_off()
    summary_ax.set_xlabel("learning rate")
    summary_ax.set_ylabel("final test accuracy")
    summary_ax.set_title("final test accuracy vs learning rate\n(mean ± 1 sd where all seeds ended alike)")
    summary_ax.set_ylim(0, 1.02)
    legend_below(summary_ax, 8)
    return finish(fig, exp, f"{exp.name}: learning rates")


def generalization(exp: Experiment) -> Figure:
    """Train (eval mode, fixed subset) and test accuracy per epoch, with the final gap annotated (E5)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.3), layout="constrained")
    per_epoch = steps_per_epoch(exp) or 1
    look = looks(exp)
    for runs in exp.variants.values():
        style = {"color": look(runs[0])["color"], "linewidth": 1.5}
        name = label(exp, runs, with_lr=False, with_n=False)
        finals = {}
        for key, ls in (("train_acc", "--"), ("test_acc", "-")):
            xs, values = aligned(runs, "evals", key)
            if xs:
                band(ax, [s / per_epoch for s in xs], values, {**style, "linestyle": ls}, f"{name}: {key[:-4]}")
                finals[key] = (xs[-1] / per_epoch, float(np.nanmean(values[-1])))
        if len(finals) == 2:
            (x, train), (_, test) = finals["train_acc"], finals["test_acc"]
            ax.annotate("", xy=(x, test), xytext=(x, train), arrowprops={"arrowstyle": "<->", "color": style["color"]})
            ax.text(x, (train + test) / 2, f"  gap {train - test:.3f}", color=style["color"], va="center", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (eval mode)")
    ax.set_title("train (dashed, fixed train subset) and test (solid) accuracy")
    legend_below(ax, 7)
    return finish(fig, exp, f"{exp.name}: generalization")


def data_parallel(exp: Experiment) -> Figure:
    """Test accuracy per epoch for each process count and BN mode, and each model's running-statistics gap."""
    fig, (ax_acc, ax_gap) = plt.subplots(1, 2, figsize=(12, 4.3), layout="constrained")
    cells = cell_looks(exp)  # the cells of one model's grid (processes, BN mode) in shades of the norm's colour
    colors = {v: look["color"] for v, look in cells.items()}
    lines = {v: look["linestyle"] for v, look in cells.items()}
    names = {variant: label(exp, runs, with_lr=False, with_n=False) for variant, runs in exp.variants.items()}
    per_epoch = steps_per_epoch(exp) or 1
    gaps = []
    for variant, runs in exp.variants.items():
        xs, values = aligned(runs, "evals", "test_acc")
        if xs:
            band(
                ax_acc,
                [s / per_epoch for s in xs],
                values,
                {
                    "color": colors[variant],
                    "linestyle": lines[variant],
                    "marker": "o",
                    "markersize": 3,
                    "linewidth": 1.4,
                },
                f"{names[variant]} (n={len(runs)})",
            )
        g = [
            np.mean([x.mean_gap for x in result.population_gap])
            for r in runs
            if (result := r.analysis(EvalModes)) is not None
        ]
        gaps.append((variant, g))
    integer_ticks(ax_acc.xaxis)
    ax_acc.set(
        xlabel="epoch",
        ylabel="test accuracy (eval mode)",
        title=f"test accuracy, {spread_text(list(exp.variants.values()))}",
    )
    legend_below(ax_acc, 7, ncol=1)
    measured = [v for v, g in gaps if g]
    ax_gap.bar(
        range(len(measured)),
        [np.mean(g) for v, g in gaps if g],
        yerr=[np.std(g, ddof=1) if len(g) > 1 else 0 for v, g in gaps if g],
        color=[colors[v] for v in measured],
        capsize=3,
    )
    ax_gap.set_xticks(range(len(measured)), [names[v] for v in measured], rotation=20, ha="right", fontsize=7)
    ax_gap.set(
        ylabel="|running − population mean| / sd\n(mean over layers)", title="running statistics vs the training set's"
    )
    return finish(fig, exp, f"{exp.name}: BatchNorm under data parallelism")
