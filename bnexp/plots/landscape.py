"""Santurkar et al.'s figures: the loss landscape along the gradient step (Fig. 4) and the internal covariate
shift per layer (sec. 2.2), from the runs' `landscape` and `ics` probes, mean over seeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from bnexp.plots.drawing import legend_below, smooth
from bnexp.plots.selection import finish
from bnexp.plots.style import label, looks
from bnexp.records import IcsProbe, LandscapeProbe, Record
from bnexp.results import Experiment, Run

P = TypeVar("P", bound=Record)


def _probe_series(runs: list[Run], kind: type[P], value: Callable[[P], float]) -> tuple[list[int], np.ndarray]:
    """Steps common to the runs' `kind` probes and, per step, each run's value(record)."""
    per_run = [{p.step: value(p) for p in r.probe(kind)} for r in runs]
    per_run = [p for p in per_run if p]
    if not per_run:
        return [], np.zeros((0, 0))
    steps = sorted(set.intersection(*(set(p) for p in per_run)))
    return steps, np.array([[p[s] for p in per_run] for s in steps], dtype=float)


LANDSCAPE_ROWS = (  # the quantity, its title, whether on a log axis
    ("loss_range", "range of L(θ − ηg) over η\n(median over seeds of min and max)", False),
    ("grad_predictiveness", "gradient predictiveness\nmax_η ‖∇L(θ − ηg) − g‖", True),
    ("beta_smoothness", "effective β-smoothness\nmax_η ‖∇L(θ − ηg) − g‖ / ‖ηg‖", True),
)


def landscape(exp: Experiment) -> Figure:
    """Santurkar et al. Fig. 4 as small multiples, a column per variant (overlaid translucent bands of several
    norms cannot be read): along the gradient step, the loss range (min-max shaded), gradient predictiveness and
    effective beta-smoothness vs training step, each seed thin under the median; the no-norm median dashed in
    every other column for comparison. Each row shares its y axis."""
    variants = [runs for runs in exp.variants.values() if any(r.probe(LandscapeProbe) for r in runs)]
    fig, axes = plt.subplots(
        3, len(variants), figsize=(2.4 * len(variants) + 1, 7.8), sharex=True, sharey="row", squeeze=False,
        layout="constrained",
    )  # fmt: skip
    look = looks(exp)
    baseline = next((runs for runs in variants if runs[0].model["norm"] == "none"), None)
    for col, runs in zip(axes.T, variants, strict=True):
        c = look(runs[0])["color"]
        steps, lo = _probe_series(runs, LandscapeProbe, lambda p: p.loss_min)
        _, hi = _probe_series(runs, LandscapeProbe, lambda p: p.loss_max)
        col[0].fill_between(steps, np.median(lo, 1), np.median(hi, 1), color=c, alpha=0.45, linewidth=0)
        for ax, key in ((col[1], "grad_predictiveness"), (col[2], "beta_smoothness")):
            xs, ys = _probe_series(runs, LandscapeProbe, lambda p, key=key: getattr(p, key))
            ax.plot(xs, ys, color=c, linewidth=0.5, alpha=0.3)
            ax.plot(xs, np.median(ys, 1), color=c, linewidth=1.4)
            if baseline is not None and baseline is not runs:
                bx, by = _probe_series(baseline, LandscapeProbe, lambda p, key=key: getattr(p, key))
                ax.plot(bx, np.median(by, 1), color=look(baseline[0])["color"], linewidth=1, linestyle="--")
        col[0].set_title(label(exp, runs, with_lr=False), fontsize=8)
        col[-1].set_xlabel("training step")
    for row, (_, title, log) in zip(axes, LANDSCAPE_ROWS, strict=True):
        row[0].set_ylabel(title, fontsize=8)
        if log:
            row[0].set_yscale("log")
    ranges = sorted(
        {
            (min(r.probe(LandscapeProbe)[0].etas), max(r.probe(LandscapeProbe)[0].etas))
            for r in exp.runs
            if r.probe(LandscapeProbe)
        }
    )
    span = "; ".join(f"[{lo:g}, {hi:g}]" for lo, hi in ranges)
    note = "; dashed: no norm's median" if baseline is not None else ""
    return finish(
        fig,
        exp,
        f"{exp.name}: loss landscape along the gradient (Santurkar et al. Fig. 4), η ∈ {span}"
        + (" (per run's lr)" if len(ranges) > 1 else "")
        + f"\neach seed thin, the median thick{note}",
    )


def ics(exp: Experiment) -> Figure:
    """Internal covariate shift per layer vs step (Santurkar et al. sec. 2.2): ‖G − G′‖ and cos(G, G′)."""
    layers = next(r.probe(IcsProbe)[0].layers for r in exp.runs if r.probe(IcsProbe))[1:]  # layer 1: 0 by definition
    fig, axes = plt.subplots(2, len(layers), figsize=(3.3 * len(layers), 6), layout="constrained", squeeze=False)
    look = looks(exp)
    for runs in exp.variants.values():
        for j in range(len(layers)):
            for row, key in ((0, "shift"), (1, "cosine")):
                steps, values = _probe_series(runs, IcsProbe, lambda p, key=key, j=j: getattr(p, key)[j + 1])
                if steps:
                    y = smooth(values.mean(1), max(1, len(steps) // 15))
                    axes[row][j].plot(steps, y, **look(runs[0]), linewidth=1.2, label=label(exp, runs))
    for j, name in enumerate(layers):
        axes[0][j].set_title(f"layer {j + 2} ({name}): ‖G − G′‖")
        axes[0][j].set_yscale("log")
        axes[1][j].set_title(f"layer {j + 2}: cos(G, G′)")
        axes[1][j].set_xlabel("training step")
    legend_below(axes[0][0], 7)
    return finish(fig, exp, f"{exp.name}: internal covariate shift (moving average over probe steps, mean over seeds)")
