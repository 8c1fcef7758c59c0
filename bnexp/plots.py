"""Figures from the run store. A small registry maps what an experiment recorded to the figures it gets;
a new kind of experiment adds a function with `@figure(...)`, never a per-config script. Figures draw finished
runs only (completed or diverged): an interrupted or running run is left out of every figure, which says so."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, also on headless machines
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnexp.results import FINISHED, Experiment, Run, aligned, mean_sd
from bnexp.store import atomic_file, real_dir
from bnexp.wording import plural

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
LN10 = math.log(10)

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


@dataclass(frozen=True)
class FigureKind:
    name: str
    applies: Callable[[Experiment], bool]
    draw: Callable[[Experiment], Figure]


FIGURES: list[FigureKind] = []


@dataclass
class Drawn(Experiment):
    """An experiment as its figures show it: its finished runs only; `unfinished` names the runs left out."""

    unfinished: list[str] = field(default_factory=list)


def finished_only(exp: Experiment) -> Experiment:
    """`exp` without its unfinished runs (interrupted, failed, running): a part of a run is no result, and would
    set a panel's smoothing window and the run counts. `exp` itself where every run finished."""
    if isinstance(exp, Drawn):
        return exp
    unfinished = [r.name for r in exp.runs if r.status not in FINISHED]  # the variants group these same runs
    if not unfinished:
        return exp
    fields = {f.name: getattr(exp, f.name) for f in dataclasses.fields(exp)}
    fields["runs"] = [r for r in exp.runs if r.status in FINISHED]
    fields["variants"] = {v: done for v in exp.variants if (done := exp.finished(v))}
    return Drawn(**fields, unfinished=unfinished)


def figure(name: str, applies: Callable[[Experiment], bool]):
    """Registers a figure; it applies to, and draws, the experiment's finished runs (none: no figure)."""

    def register(draw: Callable[[Experiment], Figure]) -> Callable[[Experiment], Figure]:
        FIGURES.append(
            FigureKind(
                name,
                lambda exp: bool(finished_only(exp).runs) and applies(finished_only(exp)),
                lambda exp: draw(finished_only(exp)),
            )
        )
        return draw

    return register


# -- helpers -----------------------------------------------------------------------------------------------


def color(run: Run) -> str:
    """The norm's colour, the same in every figure; the activation darkens it (sigmoid variants)."""
    base = NORM_COLORS.get(run.model["norm"], "#555555")
    return _darker(base) if run.model.get("activation") == "sigmoid" else base


def _darker(hex_color: str) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return "#{:02x}{:02x}{:02x}".format(*(int(c * 0.55) for c in (r, g, b)))


def variant_colors(exp: Experiment) -> dict[str, str]:
    """A colour per variant: the norm's when each norm appears once, else one of tab10 each."""
    variants = list(exp.variants)
    norms = [color(runs[0]) for runs in exp.variants.values()]
    if len(set(norms)) == len(norms):
        return dict(zip(variants, norms, strict=True))
    cycle = plt.get_cmap("tab10").colors
    return {v: matplotlib.colors.to_hex(cycle[i % len(cycle)]) for i, v in enumerate(variants)}


def tag_colors(exp: Experiment) -> dict[str, str]:
    """A colour per model (run.tag): the norm's when no two models share it, else one of tab10 each."""
    first = {r.tag: r for r in exp.runs}
    norms = [color(r) for r in first.values()]
    if len(set(norms)) == len(norms):
        return {t: color(r) for t, r in first.items()}
    cycle = plt.get_cmap("tab10").colors
    return {t: matplotlib.colors.to_hex(cycle[i % len(cycle)]) for i, t in enumerate(first)}


def mixed_outcomes(runs: list[Run]) -> bool:
    """Runs of one cell that ended differently (trained / fell back / never left chance / diverged): a mean
    over them describes no run, so they are drawn one by one."""
    return len({r.course["outcome"] for r in runs}) > 1


def spread_text(groups: list[list[Run]]) -> str:
    """What the bands show: '± 1 sd over seeds' only where a group has two or more runs."""
    if any(len(g) > 1 and not mixed_outcomes(g) for g in groups):
        return "mean ± 1 sd over seeds"
    return "one run per curve" if all(len(g) == 1 for g in groups) else "per seed"


def reference_loss_curves(exp: Experiment) -> dict[str, list[float]]:
    """variant -> the author's per-step loss history, where the config names one."""
    return {
        variant: ref["values"]
        for variant, refs in exp.reference_series().items()
        for ref in refs
        if ref.get("quantity") == "train_loss_per_step"
    }


def draw_reference_loss(ax, values: list[float], steps: int, style: dict, label_text: str | None) -> None:
    """The article's run: its per-step losses as a moving average over `steps` steps, thin and dashed, so it
    never looks like one of our mean +- sd bands."""
    y = smooth(np.asarray(values, dtype=float), max(1, steps))
    ax.plot(
        np.arange(1, len(y) + 1),
        y,
        color=style["color"],
        linewidth=0.9,
        linestyle=(0, (4, 2)),
        alpha=0.9,
        label=label_text,
    )


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


def lr_multipliers(exp: Experiment) -> list[float]:
    return sorted({r.config["lr_multiplier"] for r in exp.runs})


def linestyle(exp: Experiment, run: Run) -> str:
    return LINESTYLES[lr_multipliers(exp).index(run.config["lr_multiplier"]) % len(LINESTYLES)]


def smoothing_window(n_points: int) -> int:
    return max(1, n_points // 60)


def smooth(y: np.ndarray, k: int) -> np.ndarray:
    """Trailing moving average over k points (the first k-1 average what there is)."""
    if k <= 1:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, out])


def band(ax, x, values: list[list[float]], style: dict, label_text: str, k: int = 1, per_seed: bool = False) -> None:
    """Mean line and a +-1 sd band over seeds (values[i] = the seeds' values at x[i]); with `per_seed` (runs
    that ended differently) one thin line per seed instead."""
    arr = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    if k > 1:
        arr = np.stack([smooth(arr[:, j], k) for j in range(arr.shape[1])], 1)
    if per_seed:
        for j in range(arr.shape[1]):
            ax.plot(
                x,
                arr[:, j],
                label=f"{label_text}, each seed (outcomes differ)" if j == 0 else None,
                **{**style, "linewidth": 0.8, "alpha": 0.8},
            )
        return
    mean = np.nanmean(arr, 1)
    if len(x) < 3:  # a line needs points: show very short series as markers
        style = {"marker": "o", **style}
    ax.plot(x, mean, label=label_text, **style)
    if arr.shape[1] > 1:
        sd = np.nanstd(arr, 1, ddof=1)
        ax.fill_between(x, mean - sd, mean + sd, color=style["color"], alpha=0.18, linewidth=0)


OUTCOME_MARKS = {  # how a seed's run that did not simply train is marked over its value, and its legend entry
    "diverged": ({"marker": "x", "color": "red", "markersize": 8}, "diverged run (accuracy 0 where it has none)"),
    "never_left_chance": (
        {"marker": "o", "mfc": "none", "color": "black", "markersize": 9},
        "never left chance (a seed)",
    ),
    "fell_back": ({"marker": "v", "mfc": "none", "color": "black", "markersize": 9}, "left chance, fell back (a seed)"),
}


def mark_outcome(ax, x: float, y: float, run: Run) -> str | None:
    """Marks at (x, y) a run that diverged, never left chance or fell back; returns the outcome it marked, None
    for a run that trained."""
    outcome = run.course["outcome"]
    if outcome not in OUTCOME_MARKS:
        return None
    ax.plot(x, y, linestyle="none", **OUTCOME_MARKS[outcome][0])
    return outcome


def outcome_legend(ax, marked: set[str | None]) -> None:
    """Legend entries for the outcomes `mark_outcome` marked on the figure, and only those."""
    for outcome, (style, text) in OUTCOME_MARKS.items():
        if outcome in marked:
            ax.plot([], [], linestyle="none", label=text, **style)


def legend_below(ax, fontsize: int = 7) -> None:
    """The legend under the axes (below the x label), where it can hide no data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=fontsize, frameon=False)


def finish(fig: Figure, exp: Experiment, title: str) -> Figure:
    fig.suptitle(f"{title}\n{ran(exp)}{not_drawn(exp)}", fontsize=11)
    return fig


def not_drawn(exp: Experiment) -> str:
    """A line naming the unfinished runs the figure leaves out ('' where there are none)."""
    names = exp.unfinished if isinstance(exp, Drawn) else []
    if not names:
        return ""
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    return f"\n{plural(len(names), 'unfinished run')} not drawn ({shown}): see bnexp list"


def ran(exp: Experiment) -> str:
    """What the figure's runs are, from the runs themselves (not from what the config once planned)."""
    seeds = sorted({r.config.get("seed") for r in exp.runs if r.config.get("seed") is not None})
    grid: dict[str, set] = {}
    for r in exp.runs:
        for k, v in r.grid.items():
            grid.setdefault(k, set()).add(str(v))
    cells = "; ".join(f"{k} {', '.join(sorted(v, key=lambda x: (len(x), x)))}" for k, v in grid.items())
    seed_text = (
        f"seed {seeds[0]}"
        if len(seeds) == 1
        else f"seeds {seeds[0]}–{seeds[-1]}"
        if seeds == list(range(seeds[0], seeds[-1] + 1))
        else f"seeds {', '.join(map(str, seeds))}"
    )
    return (
        f"{plural(len(exp.runs), 'run')}, {plural(len(exp.variants), 'variant')}"
        + (f"; {cells}" if cells else "")
        + f"; {seed_text}"
    )


def steps_per_epoch(exp: Experiment) -> int | None:
    for run in exp.runs:
        if run.summary.get("steps_per_epoch"):
            return run.summary["steps_per_epoch"]
    return None


def loss_panel(ax, exp: Experiment, groups: list[list[Run]], style_of: Callable[[Run], dict], label_of) -> int:
    """Smoothed training loss vs step for groups of runs; returns the smoothing window (logged points)."""
    k = 1
    for runs in groups:
        xs, values = aligned(runs, "train", "loss")
        if not xs:
            continue
        k = smoothing_window(len(xs))
        band(ax, xs, values, style_of(runs[0]), label_of(runs), k, per_seed=mixed_outcomes(runs))
        for run in runs:
            if run.status == "diverged":
                at = run.summary.get("diverged_at_step")
                ax.axvline(at, color=style_of(run)["color"], alpha=0.4, linewidth=0.8, linestyle=":")
    ax.axhline(LN10, color="black", linewidth=0.8, linestyle="--", alpha=0.6)
    lo, hi = ax.get_xlim()
    ax.text(lo + 0.45 * (hi - lo), LN10, "ln 10 (chance)", va="bottom", ha="center", fontsize=7, alpha=0.7)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    return k


def log_every(exp: Experiment) -> int:
    return int(exp.config.get("log_every", 1))


# -- figures -----------------------------------------------------------------------------------------------


@figure("convergence", applies=lambda exp: any(r.evals for r in exp.runs) and not any(r.grid for r in exp.runs))
def convergence(exp: Experiment) -> Figure:
    """Training loss per step and test accuracy per evaluation, mean +- 1 sd over seeds (E1/E2)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    groups = list(exp.variants.values())
    several_lrs = _several_lrs_per_model(exp)
    if several_lrs:  # one lr per model, the lowest (E2 within E4); the learning_rate figure has all of them
        lowest = {}
        for runs in groups:
            lowest[runs[0].tag] = min(lowest.get(runs[0].tag, math.inf), runs[0].config["lr"])
        groups = [runs for runs in groups if runs[0].config["lr"] == lowest[runs[0].tag]]
    with_lr = len(lr_multipliers(exp)) > 1

    colors = tag_colors(exp)

    def style(run: Run) -> dict:
        return {"color": colors[run.tag], "linestyle": linestyle(exp, run), "linewidth": 1.4}

    k = loss_panel(ax_loss, exp, groups, style, lambda runs: label(runs, with_lr))
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
    ax_loss.set_ylim(0, min(max(ax_loss.get_ylim()[1], 0.5), 3.0))
    ax_loss.set_title(f"training loss (moving average of {plural(k, 'record')} = {plural(k * log_every(exp), 'step')})")
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
                label(runs, with_lr),
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
                color=colors[exp.variants[variant][0].tag],
                label="article" if first_ref else None,
            )
            first_ref = False
    ax_acc.set_xlabel("epoch" if by_epoch else "training step")
    ax_acc.set_ylabel("test accuracy (eval mode)")
    ax_acc.set_title(f"test accuracy, {spread_text(groups)}" + (" (x: article)" if not first_ref else ""))
    legend_below(ax_acc, 8)
    return finish(fig, exp, f"{exp.name}: convergence" + (" at each model's lowest lr" if several_lrs else ""))


def _several_lrs_per_model(exp: Experiment) -> bool:
    lrs: dict[str, set] = {}
    for r in exp.runs:
        lrs.setdefault(r.tag, set()).add(r.config["lr"])
    return not any(r.grid for r in exp.runs) and any(len(v) > 1 for v in lrs.values())


@figure("learning_rate", applies=_several_lrs_per_model)
def learning_rate(exp: Experiment) -> Figure:
    """One loss panel per norm variant with a curve per learning rate (the article's runs dashed), and final
    accuracy vs lr with the runs that diverged, never left chance or fell back to it marked (E4)."""
    tags = list(dict.fromkeys(r.tag for r in exp.runs))
    references = reference_loss_curves(exp)
    fig, axes = plt.subplots(1, len(tags) + 1, figsize=(4.2 * (len(tags) + 1), 4.2), layout="constrained")
    mults = lr_multipliers(exp)
    cmap = plt.get_cmap("viridis")
    shade = {m: cmap(0.1 + 0.8 * i / max(1, len(mults) - 1)) for i, m in enumerate(mults)}
    for ax, tag in zip(axes, tags, strict=False):
        groups = [runs for runs in exp.variants.values() if runs[0].tag == tag]
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
            f"{label(groups[0], with_lr=False, with_n=False)}: training loss\n"
            f"(moving average of {plural(k * log_every(exp), 'step')})"
        )
        legend_below(ax, 8)
    top = max(ax.get_ylim()[1] for ax in axes[:-1])
    for ax in axes[:-1]:
        ax.set_ylim(0, min(max(top, 0.5), 3.0))
    summary_ax = axes[-1]
    marked: set[str | None] = set()
    any_mixed = False
    for tag in tags:
        groups = [runs for runs in exp.variants.values() if runs[0].tag == tag]
        lrs, means, sds = [], [], []
        for runs in groups:
            mixed = mixed_outcomes(runs)
            any_mixed |= mixed
            if not mixed:
                m, sd, _n = mean_sd([r.summary.get("final_test_acc") for r in runs])
                lrs.append(runs[0].config["lr"])
                means.append(m)
                sds.append(sd)
            # every seed of a cell whose runs ended differently is a point (no mean over them), side by side, with
            # the seeds that did not train marked
            for i, r in enumerate(runs):
                acc = r.summary.get("final_test_acc") or 0.0  # a diverged run may have none
                x = r.config["lr"] * 1.05 ** (i - (len(runs) - 1) / 2)
                if mixed:
                    summary_ax.plot(x, acc, "o", markersize=4, color=color(groups[0][0]), alpha=0.8)
                marked.add(mark_outcome(summary_ax, x, acc, r))
        summary_ax.errorbar(
            lrs,
            means,
            yerr=sds,
            color=color(groups[0][0]),
            marker="o",
            capsize=3,
            label=label(groups[0], with_lr=False, with_n=False),
        )
    if any_mixed:
        summary_ax.plot([], [], "o", markersize=4, color="gray", label="each seed, where outcomes differ")
    outcome_legend(summary_ax, marked)
    summary_ax.set_xscale("log")
    summary_ax.set_xlabel("learning rate")
    summary_ax.set_ylabel("final test accuracy")
    summary_ax.set_title("final test accuracy vs learning rate\n(mean ± 1 sd where all seeds ended alike)")
    summary_ax.set_ylim(0, 1.02)
    legend_below(summary_ax, 8)
    return finish(fig, exp, f"{exp.name}: learning rates")


def _histogram_runs(exp: Experiment) -> list[Run]:
    """The first seed of each variant that has epoch-based probes."""
    return [runs[0] for runs in exp.variants.values() if runs[0].probes]


@figure("feature_distribution", applies=lambda exp: bool((exp.config.get("probes") or {}).get("at_epochs")))
def feature_distribution(exp: Experiment) -> Figure:
    """Layers x variants grid of pre-activation histograms at the first and last probed epoch vs N(0,1) (E3)."""
    runs = _histogram_runs(exp)
    layers = sorted({p["layer"] for p in runs[0].probes})
    size = (2.9 * len(layers), 2.5 * len(runs) + 0.6)
    fig, axes = plt.subplots(len(runs), len(layers), figsize=size, squeeze=False, sharex=True, layout="constrained")
    lo, hi = exp.config["probes"]["range"]
    grid = np.linspace(lo, hi, 400)
    normal = np.exp(-(grid**2) / 2) / math.sqrt(2 * math.pi)
    for row, run in zip(axes, runs, strict=True):
        epochs = sorted({p["epoch"] for p in run.probes})
        first, last = epochs[0], epochs[-1]
        # a probe in an epoch's first batch sits at a fractional epoch (step / steps per epoch): name its epoch
        first_name, last_name = (f"epoch {math.ceil(e - 1e-9)}" for e in (first, last))
        for ax, layer in zip(row, layers, strict=True):
            for epoch, fill in ((first, True), (last, False)) if first != last else ((last, False),):
                rec = next(p for p in run.probes if p["layer"] == layer and p["epoch"] == epoch)
                counts = np.array(rec["hist"], dtype=float)
                edges = np.linspace(lo, hi, len(counts) + 1)
                density = counts / (rec["n"] * (edges[1] - edges[0]))
                if fill:
                    ax.stairs(density, edges, fill=True, color=color(run), alpha=0.25, label=first_name)
                else:
                    ax.stairs(density, edges, color=color(run), linewidth=1.3, label=last_name)
            ax.plot(grid, normal, color="black", linewidth=1, label="N(0, 1)")
            ax.text(
                0.98,
                0.95,
                f"{last_name}:\nmean {rec['mean']:.2f}\nstd {rec['std']:.2f}",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=7,
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0},
            )
            outside = (rec["below_range"] + rec["above_range"]) / rec["n"]
            if outside > 0.001:
                ax.text(
                    0.02, 0.95, f"{outside:.1%} outside\n[{lo:g}, {hi:g}]", transform=ax.transAxes, fontsize=6, va="top"
                )
            ax.set_title(f"layer {layer + 1}", fontsize=10)
            ax.set_ylim(0, max(0.6, ax.get_ylim()[1]))
        # the variant names its row (as a title on every panel it ran into the next one), and says so when the
        # run never trained: its maps are then those of a net that did not learn
        outcome = run.course["outcome"]
        failed = f"\n({outcome.replace('_', ' ')})" if outcome != "trained" else ""
        row[0].set_ylabel(f"{label([run], with_lr=len(lr_multipliers(exp)) > 1, with_n=False)}{failed}\ndensity")
        row[-1].legend(loc="center right", fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("pre-activation value (after the norm)")
    return finish(fig, exp, f"{exp.name}: feature distributions (seed {runs[0].config['seed']}, one training batch)")


@figure("percentiles", applies=lambda exp: bool((exp.config.get("probes") or {}).get("every_steps")))
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
    colors = variant_colors(exp)  # variants of one norm (noise levels, affine or not) get colours of their own
    for variant, runs in exp.variants.items():
        xs, values = aligned(runs, "evals", "test_acc")
        if xs:
            band(
                ax_acc,
                xs,
                values,
                {"color": colors[variant], "linewidth": 1.4},
                label(runs, with_lr=False),
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
        layer = run.probes[0]["layer"]
        recs = [p for p in run.probes if p["layer"] == layer]
        steps = [p["step"] for p in recs]
        for j, q in enumerate(qs):
            key = next(k for k in recs[0]["unit_percentiles"] if k.removesuffix(".0") == q)
            middle = j == len(qs) // 2
            unit_label = f"{'th, '.join(qs)}th pct of unit {recs[0]['unit']}" if middle else None
            ax.plot(
                steps,
                [p["unit_percentiles"][key] for p in recs],
                color=colors[run.variant],
                linewidth=1.8 if middle else 1.0,
                label=unit_label,
            )
            ax.plot(
                steps,
                [p["percentiles"][key] for p in recs],
                color="gray",
                linewidth=0.8,
                linestyle="--",
                label="same, over all units of the layer" if middle else None,
            )
        ax.set_xlabel("training step")
        ax.set_ylabel(f"input to the {run.model.get('activation', 'relu')}")
        ax.set_title(
            f"({chr(98 + i)}) {label([run], with_lr=False, with_n=False)}: "
            f"{', '.join(qs)}th percentiles\n(last hidden layer, seed {run.config['seed']})"
        )
        legend_below(ax, 7)
    lims = [ax.get_ylim() for ax in axes[1:]]
    for ax in axes[1:]:
        ax.set_ylim(min(lo for lo, _ in lims), max(hi for _, hi in lims))
    return finish(fig, exp, f"{exp.name}: {activations} inputs over training")


@figure("generalization", applies=lambda exp: any(r.evals and "train_acc" in r.evals[-1] for r in exp.runs))
def generalization(exp: Experiment) -> Figure:
    """Train (eval mode, fixed subset) and test accuracy per epoch, with the final gap annotated (E5)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.3), layout="constrained")
    per_epoch = steps_per_epoch(exp) or 1
    for runs in exp.variants.values():
        style = {"color": color(runs[0]), "linewidth": 1.5}
        name = label(runs, with_lr=False, with_n=False)
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


def _model_groups(exp: Experiment) -> dict[str, list[Run]]:
    """Runs by model (the variant without grid values, lr and seed)."""
    out: dict[str, list[Run]] = {}
    for run in exp.runs:
        out.setdefault(run.summary.get("model") or run.tag, []).append(run)
    return out


@figure("batch_size", applies=lambda exp: len({r.grid["batch_size"] for r in exp.runs if "batch_size" in r.grid}) > 1)
def batch_size(exp: Experiment) -> Figure:
    """Test error vs batch size (log 2 axis), a line per norm through the means over seeds (GroupNorm paper Fig.
    1); a batch size whose seeds ended differently has no mean: each seed is a dot, marked by how it ended, beside
    the size it ran at."""
    fig, (ax_err, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
    colors = tag_colors(exp)
    most, any_mixed = 0, False
    marked: set[str | None] = set()
    groups = _model_groups(exp)
    for g, runs in enumerate(groups.values()):
        by_size: dict[int, list[Run]] = {}
        for r in runs:
            by_size.setdefault(r.grid["batch_size"], []).append(r)
        sizes, stats = [], []
        style = {"color": colors[runs[0].tag], "marker": "o", "capsize": 3, "linewidth": 1.5}
        for size, cell in sorted(by_size.items()):
            mixed = mixed_outcomes(cell)
            if not mixed:
                sizes.append(size)
                stats.append(mean_sd([r.summary.get("final_test_acc") for r in cell]))
            any_mixed |= mixed
            # each seed that did not train is marked, also where all ended alike (E3's batch-1 nets fell back);
            # seeds sit side by side, and each norm's beside the next, so that runs with one accuracy stay apart
            for i, r in enumerate(cell):
                acc = r.summary.get("final_test_acc") or 0.0  # a diverged run may have none
                x = size * 2 ** (0.06 * (g - (len(groups) - 1) / 2) + 0.03 * (i - (len(cell) - 1) / 2))
                for ax, y in ((ax_err, 100 * (1 - acc)), (ax_acc, acc)):
                    if mixed:
                        ax.plot(x, y, "o", markersize=4, color=style["color"], alpha=0.8)
                    marked.add(mark_outcome(ax, x, y, r))
        acc = np.array([m for m, _, _ in stats])
        sd = np.array([d for _, d, _ in stats])
        most = max(most, *(n for _, _, n in stats), 0)
        name = label(runs, with_lr=False, with_n=False, with_grid=False).removeprefix(runs[0].model["name"] + " ")
        ax_err.errorbar(sizes, 100 * (1 - acc), yerr=100 * sd, label=name, **style)
        ax_acc.errorbar(sizes, acc, yerr=sd, label=name, **style)
    if any_mixed:
        ax_err.plot([], [], "o", markersize=4, color="gray", label="each seed, where outcomes differ")
    outcome_legend(ax_err, marked)
    for ax in (ax_err, ax_acc):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"batch size (images per step; {_lr_over_batch_sizes(exp)})")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax_err.set_ylabel("test error (%)")
    spread = "mean ± 1 sd over seeds" if most > 1 else "one run"
    ax_err.set_title(
        f"test error after the last epoch (eval mode), {spread}"
        + ("\nwhere every seed had the same outcome" if any_mixed else "")
    )
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title("the same as accuracy")
    legend_below(ax_err, 8)
    return finish(fig, exp, f"{exp.name}: accuracy vs batch size")


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


def dots_and_median_line(ax, by_x: dict[float, list[float]], style: dict[str, Any], name: str) -> None:
    """Each run's value a dot at its x, and a line through the medians at each x (outcomes may differ between
    seeds: none is averaged away)."""
    xs = sorted(by_x)
    for x in xs:
        ax.scatter([x] * len(by_x[x]), by_x[x], s=14, alpha=0.6, **style)
    ax.plot(xs, [float(np.median(by_x[x] or [np.nan])) for x in xs], marker="o", label=name, **style)


def finish_accuracy_axes(ax, ylabel: str) -> None:
    """The chance line, the y label, the dots-and-medians title, the legend below."""
    ax.axhline(0.1, color="black", linestyle=":", linewidth=0.8)
    ax.set_ylabel(ylabel)
    ax.set_title("each dot a seed's run; lines through the medians; dotted: chance")
    legend_below(ax, 8)


def _init_scales(exp: Experiment) -> bool:
    return len({r.model.get("init_std") for r in exp.runs} - {None}) > 1


@figure("init_scale", applies=_init_scales)
def init_scale(exp: Experiment) -> Figure:
    """Final test accuracy vs the sd of the N(0, sd²) initial weights (log axis), one line per norm through the
    medians, every seed's run a dot (outcomes may differ: none is averaged away); torch's default init as a dashed
    line in the norm's colour (a3: with BN, the initialization no longer matters)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    by_norm: dict[tuple[str, str], list[Run]] = {}
    for run in exp.runs:
        by_norm.setdefault((run.model["norm"], run.model.get("activation", "relu")), []).append(run)
    for (norm, activation), runs in by_norm.items():
        style = {"color": color(runs[0])}
        name = NORM_LABELS.get(norm, norm) + (" sigmoid" if activation == "sigmoid" else "")
        at_scale: dict[float | None, list[Run]] = {}
        for run in runs:
            at_scale.setdefault(run.model.get("init_std"), []).append(run)
        accs = {
            sd: [a for a in (r.summary.get("final_test_acc") for r in rs) if a is not None]
            for sd, rs in at_scale.items()
        }
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


@figure("long_sequences", applies=lambda exp: any("long_sequences" in r.analyses for r in exp.runs))
def long_sequences(exp: Experiment) -> Figure:
    """Test accuracy vs sequence length (the test images with each row repeated k times), one line per variant
    through the medians, each seed's run a dot; the trained length marked."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    trained, lengths = None, set()
    for runs in exp.variants.values():
        by_steps: dict[int, list[float]] = {}
        for run in runs:
            result = (run.analyses.get("long_sequences") or {}).get("result") or {}
            for row in result.get("rows", []):
                lengths.add(row["steps"])
                if row.get("test_acc") is not None:
                    by_steps.setdefault(row["steps"], []).append(row["test_acc"])
                if row.get("stretch") == 1:
                    trained = row["steps"]
        if by_steps:
            dots_and_median_line(ax, by_steps, {"color": color(runs[0])}, label(runs, with_lr=False))
    if trained:
        ax.axvline(trained, color="black", linestyle="--", linewidth=0.8)
        ax.annotate("trained length", (trained, 0.12), textcoords="offset points", xytext=(4, 0), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(lengths), [str(n) for n in sorted(lengths)])
    ax.minorticks_off()
    ax.set_xlabel("sequence length (rows read; each image row repeated k times)")
    finish_accuracy_axes(ax, "test accuracy (eval mode)")
    return finish(fig, exp, f"{exp.name}: accuracy on longer sequences than in training")


@figure("step_cost", applies=lambda exp: any("step_cost" in r.analyses for r in exp.runs))
def step_cost(exp: Experiment) -> Figure:
    """Left: time per training step as a ratio to the same model with BN, measured side by side (each dot one
    repetition of one run; a bar at the median of the runs' medians). Right: final accuracy, each dot a run."""
    fig, (cost, acc) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    variants = list(exp.variants.items())
    for i, (_, runs) in enumerate(variants):
        style = {"color": color(runs[0])}
        timed = [r.analyses["step_cost"]["result"] for r in runs if "step_cost" in r.analyses]
        for j, t in enumerate(timed):
            offsets = i + 0.08 * (j - (len(timed) - 1) / 2)
            cost.scatter([offsets] * len(t["ratios"]), t["ratios"], s=10, alpha=0.5, **style)
        if timed:
            cost.hlines(float(np.median([t["ratio_to_batchnorm"] for t in timed])), i - 0.3, i + 0.3, **style)
        accs = [r.summary["final_test_acc"] for r in runs if r.summary.get("final_test_acc") is not None]
        acc.scatter([i] * len(accs), accs, s=14, **style)
    names = [label(runs, with_lr=False) for _, runs in variants]
    for ax in (cost, acc):
        ax.set_xticks(range(len(variants)), names, rotation=15, ha="right", fontsize=8)
    cost.axhline(1.0, color="black", linestyle=":", linewidth=0.8)
    cost.set_ylim(bottom=0)
    cost.set_ylabel("time per training step / with BN")
    cost.set_title("cost per step, side by side on one thread", fontsize=9)
    acc.set_ylabel("final test accuracy (eval mode)")
    acc.set_title("accuracy", fontsize=9)
    return finish(fig, exp, f"{exp.name}: cost per training step and accuracy")


@figure("eval_modes", applies=lambda exp: any("eval_modes" in r.analyses for r in exp.runs))
def eval_modes(exp: Experiment) -> Figure:
    """Test accuracy of each trained variant under each evaluation mode (a2's pitfalls), mean +- sd."""
    from bnexp.report_sections import mode_key

    colors = variant_colors(exp)
    table: dict[str, dict[str, list[float]]] = {}
    for variant, runs in exp.variants.items():
        for run in runs:
            for row in (run.analyses.get("eval_modes") or {}).get("result", {}).get("rows", []):
                table.setdefault(mode_key(row), {}).setdefault(variant, []).append(row["test_acc"])
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
            color=colors[variant],
            label=variant,
            capsize=2,
        )
    ax.set_yticks(range(len(modes)), modes, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.1, color="black", linestyle=":", linewidth=0.8)
    ax.set_xlabel("test accuracy (chance 0.1 dotted)")
    ax.set_xlim(0, 1)
    fig.legend(loc="outside lower center", ncol=2, fontsize=7, frameon=False)  # below the axes: hides no bar
    return finish(fig, exp, f"{exp.name}: each trained model, evaluated {len(modes)} ways")


def _probe_series(runs: list[Run], kind: str, value) -> tuple[list[int], np.ndarray]:
    """Steps common to the runs' `kind` probes and, per step, each run's value(record)."""
    per_run = [{p["step"]: value(p) for p in r.probe(kind)} for r in runs]
    per_run = [p for p in per_run if p]
    if not per_run:
        return [], np.zeros((0, 0))
    steps = sorted(set.intersection(*(set(p) for p in per_run)))
    return steps, np.array([[p[s] for p in per_run] for s in steps], dtype=float)


@figure("landscape", applies=lambda exp: any(r.probe("landscape") for r in exp.runs))
def landscape(exp: Experiment) -> Figure:
    """Santurkar et al. Fig. 4: along the gradient step, the loss range (min-max shaded), gradient
    predictiveness and effective beta-smoothness vs training step, mean over seeds."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
    colors = variant_colors(exp)
    for variant, runs in exp.variants.items():
        c = colors[variant]
        steps, lo = _probe_series(runs, "landscape", lambda p: p["loss_min"])
        _, hi = _probe_series(runs, "landscape", lambda p: p["loss_max"])
        if not steps:
            continue
        name = f"{label(runs, with_lr=True, with_n=True)}"
        axes[0].fill_between(steps, lo.mean(1), hi.mean(1), color=c, alpha=0.3, linewidth=0, label=name)
        for ax, key in ((axes[1], "grad_predictiveness"), (axes[2], "beta_smoothness")):
            xs, ys = _probe_series(runs, "landscape", lambda p, key=key: p[key])
            ax.plot(xs, ys.mean(1), color=c, linewidth=1.3, label=name)
    ranges = sorted(
        {
            (min(r.probe("landscape")[0]["etas"]), max(r.probe("landscape")[0]["etas"]))
            for r in exp.runs
            if r.probe("landscape")
        }
    )
    span = "; ".join(f"[{lo:g}, {hi:g}]" for lo, hi in ranges)
    axes[0].set_title(f"range of L(θ − ηg) over η ∈ {span}" + (" (per run's lr)" if len(ranges) > 1 else ""))
    axes[0].set_ylabel("training loss on the step's batch")
    axes[1].set_title("gradient predictiveness: max_η ‖∇L(θ − ηg) − g‖")
    axes[2].set_title("effective β-smoothness: max_η ‖∇L(θ − ηg) − g‖ / ‖ηg‖")
    for ax in axes:
        ax.set_xlabel("training step")
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    legend_below(axes[0], 7)
    return finish(fig, exp, f"{exp.name}: loss landscape along the gradient (Santurkar et al. Fig. 4)")


@figure("ics", applies=lambda exp: any(r.probe("ics") for r in exp.runs))
def ics(exp: Experiment) -> Figure:
    """Internal covariate shift per layer vs step (Santurkar et al. sec. 2.2): ‖G − G′‖ and cos(G, G′)."""
    layers = next(r.probe("ics")[0]["layers"] for r in exp.runs if r.probe("ics"))[1:]  # layer 1: 0 by definition
    fig, axes = plt.subplots(2, len(layers), figsize=(3.3 * len(layers), 6), layout="constrained", squeeze=False)
    colors = variant_colors(exp)
    for variant, runs in exp.variants.items():
        for j in range(len(layers)):
            for row, key in ((0, "shift"), (1, "cosine")):
                steps, values = _probe_series(runs, "ics", lambda p, key=key, j=j: p[key][j + 1])
                if steps:
                    y = smooth(values.mean(1), max(1, len(steps) // 15))
                    axes[row][j].plot(
                        steps, y, color=colors[variant], linewidth=1.2, label=label(runs, with_lr=True, with_n=True)
                    )
    for j, name in enumerate(layers):
        axes[0][j].set_title(f"layer {j + 2} ({name}): ‖G − G′‖")
        axes[0][j].set_yscale("log")
        axes[1][j].set_title(f"layer {j + 2}: cos(G, G′)")
        axes[1][j].set_xlabel("training step")
    legend_below(axes[0][0], 7)
    return finish(fig, exp, f"{exp.name}: internal covariate shift (moving average over probe steps, mean over seeds)")


@figure(
    "distribution_drift",
    applies=lambda exp: (
        bool((exp.config.get("probes") or {}).get("every_steps"))
        and len(exp.variants) > 1
        and not any(r.probe("landscape") for r in exp.runs)
    ),
)
def distribution_drift(exp: Experiment) -> Figure:
    """Test accuracy, and each probed layer's pre-activation mean and sd over training, per variant (noisy BN)."""
    layers = sorted({p["layer"] for r in exp.runs for p in r.probes})
    fig, axes = plt.subplots(
        2, len(layers) + 1, figsize=(3.3 * (len(layers) + 1), 6.2), layout="constrained", squeeze=False
    )
    colors = variant_colors(exp)
    for variant, runs in exp.variants.items():
        c = colors[variant]
        xs, values = aligned(runs, "evals", "test_acc")
        if xs:
            band(axes[0][0], xs, values, {"color": c, "linewidth": 1.4}, label(runs, with_lr=False))
        xs, values = aligned(runs, "train", "loss")
        if xs:
            band(
                axes[1][0],
                xs,
                values,
                {"color": c, "linewidth": 1.2},
                label(runs, with_lr=False),
                smoothing_window(len(xs)),
            )
        run = runs[0]
        for j, layer in enumerate(layers):
            recs = sorted((p for p in run.probes if p["layer"] == layer), key=lambda p: p["step"])
            steps = [p["step"] for p in recs]
            axes[0][j + 1].plot(steps, [p["mean"] for p in recs], color=c, linewidth=1.1)
            axes[1][j + 1].plot(steps, [p["std"] for p in recs], color=c, linewidth=1.1)
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


def _positive(x: float) -> float:
    """A value for a log axis: an exact 0 is left out (NaN) rather than drawn at an invented floor."""
    return x if x > 0 else math.nan


@figure(
    "scale_invariance",
    applies=lambda exp: any("scale_invariance" in r.analyses or r.probe("weights") for r in exp.runs),
)
def scale_invariance(exp: Experiment) -> Figure:
    """BN's output change and gradient ratio vs the weight scale a (trained layers), and weight norms and
    effective steps over training."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), layout="constrained")
    colors = variant_colors(exp)
    for variant, runs in exp.variants.items():
        c = colors[variant]
        for run in runs[:1]:
            result = (run.analyses.get("scale_invariance") or {}).get("result") or {}
            for i, layer in enumerate(result.get("layers", [])):
                a = [row["a"] for row in layer["with_eps"]]
                first = i == 0
                axes[0].plot(
                    a,
                    [_positive(row["output_rel_error"]) for row in layer["with_eps"]],
                    color=c,
                    linewidth=1,
                    marker="o",
                    markersize=3,
                    label=f"{variant}, eps {layer['eps']:g}" if first else None,
                )
                axes[0].plot(
                    a,
                    [_positive(row["output_rel_error"]) for row in layer["without_eps"]],
                    color=c,
                    linewidth=1,
                    linestyle="--",
                    label=f"{variant}, eps 0" if first else None,
                )
                axes[1].plot(
                    a,
                    [row["grad_ratio"] for row in layer["with_eps"]],
                    color=c,
                    linewidth=1,
                    marker="o",
                    markersize=3,
                    label=f"{variant}, eps {layer['eps']:g}" if first else None,
                )
                axes[1].plot(
                    a,
                    [row["grad_ratio"] for row in layer["without_eps"]],
                    color=c,
                    linewidth=1,
                    linestyle="--",
                    label=f"{variant}, eps 0" if first else None,
                )
        for ax, key in ((axes[2], "weight_norm"), (axes[3], "effective_step")):
            per_run = [r.probe("weights") for r in runs if r.probe("weights")]
            if not per_run:
                continue
            steps = [p["step"] for p in per_run[0]]
            n_layers = len(per_run[0][0]["layers"])
            for i in range(n_layers):
                y = np.mean([[p[key][i] for p in recs[: len(steps)]] for recs in per_run], axis=0)
                ax.plot(
                    steps,
                    y,
                    color=c,
                    linewidth=1.1,
                    alpha=0.35 + 0.65 * (i + 1) / n_layers,
                    label=variant if i == n_layers - 1 else None,
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


@figure("data_parallel", applies=lambda exp: any("processes" in r.grid for r in exp.runs))
def data_parallel(exp: Experiment) -> Figure:
    """Test accuracy per epoch for each process count and BN mode, and each model's running-statistics gap."""
    fig, (ax_acc, ax_gap) = plt.subplots(1, 2, figsize=(12, 4.3), layout="constrained")
    colors = variant_colors(exp)
    per_epoch = steps_per_epoch(exp) or 1
    gaps = []
    for variant, runs in exp.variants.items():
        xs, values = aligned(runs, "evals", "test_acc")
        if xs:
            band(
                ax_acc,
                [s / per_epoch for s in xs],
                values,
                {"color": colors[variant], "marker": "o", "markersize": 3, "linewidth": 1.4},
                f"{variant} (n={len(runs)})",
            )
        g = [
            np.mean([x["mean_gap"] for x in r.analyses["eval_modes"]["result"]["population_gap"]])
            for r in runs
            if "eval_modes" in r.analyses
        ]
        gaps.append((variant, g))
    ax_acc.set(
        xlabel="epoch",
        ylabel="test accuracy (eval mode)",
        title=f"test accuracy, {spread_text(list(exp.variants.values()))}",
    )
    legend_below(ax_acc, 7)
    names = [v for v, g in gaps if g]
    ax_gap.bar(
        range(len(names)),
        [np.mean(g) for v, g in gaps if g],
        yerr=[np.std(g, ddof=1) if len(g) > 1 else 0 for v, g in gaps if g],
        color=[colors[v] for v in names],
        capsize=3,
    )
    ax_gap.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=7)
    ax_gap.set(
        ylabel="|running − population mean| / sd\n(mean over layers)", title="running statistics vs the training set's"
    )
    return finish(fig, exp, f"{exp.name}: BatchNorm under data parallelism")


def render(exp: Experiment, out_dir: Path, fmt: str = "png", root: Path | None = None) -> list[Path]:
    """Every figure that applies to `exp`, written to out_dir/<figure>.<fmt> (atomically: a link planted at a
    figure's name is replaced, never written through; out_dir is checked to be a real folder below `root`)."""
    real_dir(root if root is not None else out_dir.parent, out_dir)
    written = []
    for kind in FIGURES:
        if kind.applies(exp):
            fig = kind.draw(exp)
            path = out_dir / f"{kind.name}.{fmt}"
            with atomic_file(path, "wb") as f:
                fig.savefig(f, format=fmt, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
    return written
