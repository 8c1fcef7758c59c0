"""Drawing shared by the figures: smoothed medians over seeds with each seed thin beneath, the training loss
panel, the article's reference curve, how a seed that did not train is marked, dots with a median line, and
legends placed below the axes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from bnexp.plots.selection import mixed_outcomes
from bnexp.results import Experiment, Run, aligned
from bnexp.wording import plural

LN10 = math.log(10)


def spread_text(groups: list[list[Run]]) -> str:
    """What the curves show: a median over seeds with each seed thin beneath it where a group has two or more runs
    (a mean through runs that left a plateau at different times is a shape no run has)."""
    if any(len(g) > 1 and not mixed_outcomes(g) for g in groups):
        return "median over seeds, each seed thin"
    return "one run per curve" if all(len(g) == 1 for g in groups) else "each seed"


def draw_reference_loss(ax, values: list[float], steps: int, style: dict, label_text: str | None) -> None:
    """The article's run: its per-step losses as a moving average over `steps` steps, thin and dashed, so it
    never looks like one of our curves."""
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


def smoothing_text(steps: int) -> str:
    """What a smoothed loss curve's point is: 'each point the mean of 50 steps' (a logged record averages the
    steps since the last; the moving average then spans several records)."""
    return f"each point the mean of {plural(steps, 'step')}"


def integer_ticks(axis) -> None:
    """Whole numbers only on an axis of counts (epochs): no 2.5 epoch ticks."""
    axis.set_major_locator(MaxNLocator(integer=True))


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
    """Each seed a thin line and the median over seeds a thick one (values[i] = the seeds' values at x[i]); with
    `per_seed` (runs that ended differently) the seeds alone, more visible, and no median."""
    arr = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    if k > 1:
        arr = np.stack([smooth(arr[:, j], k) for j in range(arr.shape[1])], 1)
    thin = {key: v for key, v in style.items() if key not in ("marker", "markersize")} | {"linestyle": "-"}
    if per_seed or arr.shape[1] > 1:
        for j in range(arr.shape[1]):
            ax.plot(
                x,
                arr[:, j],
                label=f"{label_text}, each seed (outcomes differ)" if per_seed and j == 0 else None,
                **{**thin, "linewidth": 0.8 if per_seed else 0.5, "alpha": 0.8 if per_seed else 0.3},
            )
    if per_seed:
        return
    if len(x) < 3:  # a line needs points: show very short series as markers
        style = {"marker": "o", **style}
    ax.plot(x, np.nanmedian(arr, 1), label=label_text, **style)


OUTCOME_MARKS = {  # how a seed's run that did not simply train is marked over its value, and its legend entry
    "diverged": ({"marker": "x", "color": "red", "markersize": 8}, "diverged run (accuracy 0 where it has none)"),
    "never_left_chance": (
        {"marker": "o", "mfc": "none", "color": "black", "markersize": 9},
        "never left chance (a seed)",
    ),
    "fell_back": ({"marker": "v", "mfc": "none", "color": "black", "markersize": 9}, "left chance, fell back (a seed)"),
}


def mark_seed(ax, x: float, y: float, run: Run, dot_color: str | None) -> str | None:
    """One seed's run at (x, y): a dot in `dot_color` where its cell has no mean (None: no dot), and over it the
    mark of a run that diverged, never left chance or fell back; returns the outcome marked, None for a run that
    trained."""
    if dot_color is not None:
        ax.plot(x, y, "o", markersize=4, color=dot_color, alpha=0.8)
    outcome = run.course.outcome
    if outcome not in OUTCOME_MARKS:
        return None
    ax.plot(x, y, linestyle="none", **OUTCOME_MARKS[outcome][0])
    return outcome


def outcome_legend(ax, marked: set[str | None], each_seed: bool) -> None:
    """Legend entries for the seeds `mark_seed` drew: 'each seed' where some had dots, and the outcomes it marked
    on the figure, and only those."""
    if each_seed:
        ax.plot([], [], "o", markersize=4, color="gray", label="each seed, where outcomes differ")
    for outcome, (style, text) in OUTCOME_MARKS.items():
        if outcome in marked:
            ax.plot([], [], linestyle="none", label=text, **style)


def legend_below(ax, fontsize: int = 7, ncol: int = 2) -> None:
    """The legend under the axes (below the x label), where it can hide no data; long names in one column (two
    columns of them ran into the next panel's legend)."""
    names = ax.get_legend_handles_labels()[1]
    if names and max(len(n) for n in names) > 36:
        ncol = 1
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, fontsize=fontsize, frameon=False)


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
                at = run.summary.diverged_at_step
                ax.axvline(at, color=style_of(run)["color"], alpha=0.4, linewidth=0.8, linestyle=":")
    ax.axhline(LN10, color="black", linewidth=0.8, linestyle="--", alpha=0.6)
    lo, hi = ax.get_xlim()
    ax.text(lo + 0.45 * (hi - lo), LN10, "ln 10 (chance)", va="bottom", ha="center", fontsize=7, alpha=0.7)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    return k


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
