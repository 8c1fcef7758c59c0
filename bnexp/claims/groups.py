"""A group's runs as a claim sees them: the values of a quantity, the runs' outcome counts (trained / fell back /
never left chance / diverged) and the notes they call for; and two groups compared run by run by rank where a
mean cannot hold them (runs that never got somewhere, or that ended differently)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from bnexp import stats
from bnexp.claims.measure import ACCURACIES, CENSORED, measure
from bnexp.claims.result import Decision
from bnexp.claims.text import counts_text, median_text, verdict_text
from bnexp.config import ClaimConfig
from bnexp.results import Run


def outcome_counts(runs: list[Run]) -> Counter:
    return Counter(r.course.outcome for r in runs)


def group_values(runs: list[Run], quantity: str, at: Any) -> tuple[dict[int, float], dict[str, int], int]:
    """seed -> value for a continuous quantity, the outcome counts, and how many runs had no value (e.g. never
    reached a threshold). A group of mixed outcomes keeps only its runs that trained. Where none trained, an
    accuracy keeps none (the share of runs that trained decides) and any other quantity keeps them all: no run is
    the group's better kind (E3 at batch 1: one net never left chance, the other fell back)."""
    outcomes = outcome_counts(runs)
    keep_all = quantity in CENSORED or ("trained" not in outcomes and quantity not in ACCURACIES)
    if len(outcomes) > 1 and not keep_all:  # censored: a run that failed never got there, and stays as such
        runs = [r for r in runs if r.course.outcome == "trained"]
    got = {r.config.get("seed", i): measure(r, quantity, at) for i, r in enumerate(runs)}
    kept = {s: v for s, v in got.items() if v is not None}
    return kept, dict(outcomes), len(got) - len(kept)


def _ranks(xa: list[float], xb: list[float], sign: int, method: str, measured: str) -> Decision:
    """Two groups compared by a rank test (Mann-Whitney U, exact permutation distribution): it needs no mean, so
    it holds where runs never got somewhere (their values given as +-inf) or ended differently."""
    n = min(len(xa), len(xb))
    if n < 2:
        return Decision(n=n, measured=measured, verdict=verdict_text(None, n, None))
    test = stats.rank_test(xa, xb, "greater" if sign > 0 else "less")
    other = stats.rank_test(xa, xb, "less" if sign > 0 else "greater")
    alpha = (1 - stats.LEVEL) / 2
    decided = True if test.p_value < alpha else False if other.p_value < alpha else None
    needed = stats.separation_seeds(alpha) if decided is None and other.p_value >= test.p_value else None
    why = "the ranks point the other way" if other.p_value < test.p_value else "the ranks do not separate the groups"
    return Decision(
        n=n,
        p_value=stats.two_sided(test.p_value, other.p_value),  # below 5 % exactly when one side is below 2.5 %
        favours=test.p_value <= other.p_value,
        method=f"{test.method}; {method}",
        measured=measured,
        verdict=verdict_text(decided, n, needed, why),
    )


def censored_ranks(a: dict[int, float], miss_a: int, b: dict[int, float], miss_b: int, sign: int) -> Decision:
    """Steps-until compared when some runs never got there: those runs count as slower than every run that did
    (runs of one experiment have the same length)."""
    xa = list(a.values()) + [math.inf] * miss_a
    xb = list(b.values()) + [math.inf] * miss_b
    reached = f"{len(a)}/{len(xa)} vs {len(b)}/{len(xb)} reached it"
    return _ranks(
        xa,
        xb,
        sign,
        "runs that never reached it rank as slowest",
        f"{median_text(xa)} vs {median_text(xb)} (medians; {reached})",
    )


def outcome_ranks(a_runs: list[Run], b_runs: list[Run], claim: ClaimConfig, at_b: Any, sign: int) -> Decision:
    """A quantity compared when a group's runs ended differently (trained / fell back / ...): every run by rank,
    none averaged; an accuracy's run without one (diverged) ranks below every run."""

    def ranked(runs: list[Run], at: Any) -> list[float]:
        got = [measure(r, claim.quantity, at) for r in runs]
        worst = [-math.inf] * sum(v is None for v in got) if claim.quantity in ACCURACIES else []
        return [v for v in got if v is not None] + worst

    xa, xb = ranked(a_runs, claim.at), ranked(b_runs, at_b)
    outcomes = " vs ".join(counts_text(outcome_counts(runs)) for runs in (a_runs, b_runs))
    return _ranks(
        xa,
        xb,
        sign,
        "every run ranked, whatever its outcome",
        f"{median_text(xa)} vs {median_text(xb)} (medians; {outcomes})",
    )


def outcome_notes(name: str, outcomes: dict[str, int], missing: int, quantity: str, ranked: bool = False) -> list[str]:
    notes = []
    if len(outcomes) > 1:
        counts = counts_text(outcomes)
        how = (
            ""
            if quantity in CENSORED
            else "; every run ranked"
            if ranked
            else "; compared within the runs that trained"
            if "trained" in outcomes
            else ""
        )
        notes.append(f"{name}: mixed outcomes ({counts}){how}")
    elif outcomes and "trained" not in outcomes:  # e.g. a feature spread measured on a net that never trained
        ((outcome, n),) = outcomes.items()
        runs = {1: "the run", 2: "both runs"}.get(n, f"all {n} runs")
        notes.append(f"{name}: {runs} {outcome.replace('_', ' ')}")
    if missing and quantity in CENSORED:
        notes.append(f"{name}: {missing} run(s) never reached it, ranked as slower than every run that did")
    elif missing:
        notes.append(f"{name}: {missing} run(s) without a value (a run that diverged has none), left out")
    return notes
