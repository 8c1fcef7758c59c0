"""The claims figure: the report's table at a glance, one row per claim (a forest plot): the measured effect and
its 95 % interval, the margin of an equivalence, coloured by verdict, grouped by experiment. The claims' effects
are in their own units (accuracy, steps, ratios), so each row is drawn on its own scale and prints its numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from bnexp.claims import ClaimResult, claim_rows
from bnexp.claims.text import num, verdict_kind
from bnexp.config import ClaimConfig
from bnexp.results import Experiment

# by the verdict's kind (an article's run consistent with ours supports, outside ours contradicts); Okabe & Ito's
# colours, as the norms'
VERDICT_COLORS = {
    "supported": "#009E73",
    "contradicted": "#D55E00",
    "undecided": "#E69F00",
    "not measured": "#999999",
}


@dataclass(frozen=True)
class ForestRow:
    """What the figure needs of one decided claim."""

    id: str  # with its kind where it is not an article's, * where it is exploratory
    experiment: str
    effect: float | None  # None: decided by ranks or not measured (no effect size)
    interval: tuple[float, float] | None  # the one the verdict uses: 90 % for an equivalence (TOST), else 95 %
    verdict: str
    expect: str | None  # greater, less, equivalent, consistent
    margin: float | None  # equivalences only
    measured: str  # what was measured, for a rank comparison (no effect size)
    after_holm: bool  # its own p decided it, the family's Holm p did not


def forest_row(result: ClaimResult, claim: ClaimConfig | None) -> ForestRow:
    """The one place that reads a claim's result (and its claim's margin): the fields the figure draws."""
    d = result.decision
    interval = d.interval90 or d.interval
    return ForestRow(
        id=result.id + ("" if result.kind == "article" else f" ({result.kind})") + (" *" if result.exploratory else ""),
        experiment=result.experiment,
        effect=d.effect,
        interval=interval,
        verdict=verdict_kind(result.verdict),  # the report's verdict (after Holm), by its kind
        expect=result.expect,
        margin=claim.margin if claim is not None and claim.expect == "equivalent" else None,
        measured=d.measured or "",
        after_holm=verdict_kind(result.verdict) != verdict_kind(d.verdict),
    )


def _scale(row: ForestRow) -> float:
    """The row's own unit: its largest distance from 0 among the effect, the interval and the margin."""
    values = [abs(v) for v in (row.effect, *(row.interval or ()), row.margin) if v is not None and math.isfinite(v)]
    return max(values, default=0.0) or 1.0


EXPECTS = {"greater": "expects > 0", "less": "expects < 0", "equivalent": "expects ≈ 0", "consistent": "ours − article"}


def claims_figure(experiments: list[Experiment]) -> Figure:
    """One row per claim of every experiment, grouped by experiment; each row on its own scale (|values| ≤ 1), its
    numbers and what the claim expects printed at its right."""
    claims = {(exp.name, c.id): c for exp in experiments for c in exp.claims}
    results = [r for r in claim_rows(experiments) if r.kind != "identity"]  # identities: unit tests, no row
    rows = [forest_row(r, claims.get((r.experiment, r.id))) for r in results]
    experiments_in_order = list(dict.fromkeys(r.experiment for r in rows))
    lines = len(rows) + len(experiments_in_order)
    fig, ax = plt.subplots(figsize=(11, 0.2 * lines + 1.6), layout="constrained")
    y = 0
    ticks, tick_labels = [], []
    for name in experiments_in_order:
        ax.text(-1.55, y, name, fontsize=8, fontweight="bold", va="center", ha="left")
        y += 1
        for row in (r for r in rows if r.experiment == name):
            colour = VERDICT_COLORS[row.verdict]
            s = _scale(row)
            fill = "none" if row.after_holm else colour
            if row.margin:
                ax.plot([-row.margin / s, row.margin / s], [y, y], color="black", linewidth=5, alpha=0.12)
            if row.interval is not None and row.effect is not None:
                ax.plot([row.interval[0] / s, row.interval[1] / s], [y, y], color=colour, linewidth=1.6)
                ax.plot([row.effect / s], [y], "o", color=colour, markersize=4, mfc=fill)
                numbers = f"{num(row.effect)} [{num(row.interval[0])}, {num(row.interval[1])}]"
            else:
                numbers = f"by ranks: {row.measured}" if row.verdict != "not measured" else "not measured"
                ax.plot([0], [y], "D", color=colour, markersize=4, mfc=fill)
            numbers = f"{EXPECTS.get(row.expect or '', '')}: {numbers}"
            ax.text(1.08, y, numbers + (f" (margin ±{num(row.margin)})" if row.margin else ""), fontsize=6, va="center")
            ticks.append(y)
            tick_labels.append(row.id)
            y += 1
    ax.set_yticks(ticks, tick_labels, fontsize=6)
    ax.set_ylim(y, -1)
    ax.set_xlim(-1.6, 1.6)
    ax.set_xticks([-1, 0, 1], ["−|largest|", "0", "+|largest|"])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(
        "each row on its own scale (its largest |value| = 1; its numbers and what it expects at right,\n"
        "in the claim's units); intervals: 95 %, 90 % for equivalences (TOST), for 'consistent' claims the\n"
        "prediction interval of one new run's mean over the article's points; ◇ decided by ranks (medians at\n"
        "right); hollow: its own p decided it, Holm's p or the looks' boundary did not; beside an id: its kind\n"
        "where it is not an article's claim, * exploratory"
    )
    for kind, colour in VERDICT_COLORS.items():
        ax.plot([], [], "o-", color=colour, label=kind)
    ax.plot([], [], color="black", linewidth=5, alpha=0.12, label="equivalence margin")
    fig.legend(loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    counts = {k: sum(r.verdict == k for r in rows) for k in VERDICT_COLORS}
    fig.suptitle(
        f"All {len(rows)} claims, every kind, exploratory ones included (README's headline counts the articles'\n"
        "confirmatory claims): effect and the interval its verdict uses, by the report's verdict ("
        + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        + ")",
        fontsize=11,
    )
    return fig
