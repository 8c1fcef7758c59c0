"""A claim decided on an experiment's runs: the measured effect, its interval, n, the method and the verdict
(supported, contradicted, undecided at n = N with the seeds that would decide, or not measured)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bnexp import stats
from bnexp.claims.groups import censored_ranks, group_values, outcome_notes, outcome_ranks
from bnexp.claims.measure import ACCURACIES, CENSORED, NotRecorded, measure
from bnexp.claims.multiplicity import adjust
from bnexp.claims.result import ClaimResult, Decision
from bnexp.claims.text import CONSISTENT, OUTSIDE, at_text, mean_text, num, signed, verdict_text
from bnexp.config import QUANTITIES, ClaimConfig
from bnexp.results import Experiment, Run


def exploratory(registered: str, runs_began: str | None) -> bool:
    """A claim registered after its experiment's runs began (both days, YYYY-MM-DD) was written with results that
    could be seen: exploratory, shown but not counted among confirmatory verdicts. On the same day the days cannot
    tell the order: the claim counts as registered first."""
    return runs_began is not None and registered > runs_began


def evaluate(claim: ClaimConfig, exp: Experiment) -> ClaimResult:
    """One claim against one experiment's runs: the measured effect, its interval, n, method and verdict."""
    return _result(claim, exp, _decide(claim, exp))


def _decide(claim: ClaimConfig, exp: Experiment) -> Decision:
    a = exp.finished(claim.group)
    b = exp.finished(claim.versus or claim.group) if claim.versus or claim.versus_at is not None else []
    if not a or ((claim.versus or claim.versus_at is not None) and not b):
        return Decision(verdict="not measured", n=0)
    if QUANTITIES[claim.quantity].kind == "proportion":
        return _proportion(claim, a, b)
    if claim.expect == "consistent":
        return _consistent(claim, a)
    return _compare(claim, a, b)


def _result(claim: ClaimConfig, exp: Experiment, decision: Decision) -> ClaimResult:
    # with versus_at the two `at`s are in the compared text
    at = f" at {at_text(claim.at)}" if claim.at is not None and claim.versus_at is None else ""
    return ClaimResult(
        id=claim.id,
        experiment=exp.name,
        claim=claim.claim,
        source=claim.source,
        kind=claim.kind,
        quote=claim.quote,
        checked_by=claim.checked_by,
        registered=claim.registered,
        exploratory=exploratory(claim.registered, exp.runs_began),
        expect=claim.expect,
        quantity=claim.quantity + at,
        compared=_compared_text(claim),
        figure=claim.figure,
        decision=decision,
        verdict=decision.verdict,
    )


def _compared_text(claim: ClaimConfig) -> str:
    rel = {
        "greater": ">",
        "less": "<",
        "equivalent": f"≈ (±{claim.margin:g})" if claim.margin else "≈",
        "consistent": "vs",
    }[claim.expect]
    if claim.expect == "consistent":
        return f"{claim.group} vs the article's run"
    if claim.versus_at is not None:
        other = claim.versus or "the same runs"
        return f"{claim.group} at {at_text(claim.at)} {rel} {other} at {at_text(claim.versus_at)}"
    return f"{claim.group} {rel} " + (claim.versus or f"{claim.value:g}")


def _proportion(claim: ClaimConfig, a: list[Run], b: list[Run]) -> Decision:
    """A share of runs against another group's (Boschloo's exact test) or a fixed value (the exact binomial test):
    exact tests, whose level holds at the few runs a group has; the interval beside it is Newcombe's (Wilson's)."""
    ka = sum(bool(measure(r, claim.quantity, claim.at)) for r in a)
    sign = 1 if claim.expect == "greater" else -1
    if claim.versus:
        kb = sum(bool(measure(r, claim.quantity, claim.at)) for r in b)
        return _shares(ka, len(a), kb, len(b), sign).model_copy(update={"reference": 0.0})
    reference = float(claim.value)  # type: ignore[arg-type]
    ci = stats.wilson(ka, len(a))
    p, favours = _one_of_two(*stats.binomial(ka, len(a), reference), sign)
    needed = stats.seeds_needed_proportion(ka / len(a), reference)
    return Decision(
        effect=ci.estimate - reference,
        interval=(ci.low - reference, ci.high - reference),
        n=len(a),
        method=f"exact binomial test (twice the smaller one-sided p); {ci.method} interval",
        measured=f"{ka}/{len(a)} vs {reference:g}",
        p_value=p,
        favours=favours,
        verdict=_verdict_by_p(p, favours, len(a), needed, (ka / len(a) - reference) * sign),
        reference=reference,
    )


def _shares(ka: int, na: int, kb: int, nb: int, sign: int) -> Decision:
    """Two groups' shares of runs (that met a condition, or that trained): Boschloo's exact test decides, with
    Newcombe's interval of the difference beside it."""
    ci = stats.proportion_difference(ka, na, kb, nb)
    p, favours = _one_of_two(*stats.boschloo(ka, na, kb, nb), sign)
    needed = stats.seeds_needed_proportions(ka / na, kb / nb)
    n = min(na, nb)
    return Decision(
        effect=ci.estimate,
        interval=(ci.low, ci.high),
        n=n,
        method=f"Boschloo's exact test (twice the smaller one-sided p); {ci.method} interval",
        measured=f"{ka}/{na} vs {kb}/{nb}",
        p_value=p,
        favours=favours,
        verdict=_verdict_by_p(p, favours, n, needed, ci.estimate * sign),
    )


def _one_of_two(p_greater: float, p_less: float, sign: int) -> tuple[float, bool]:
    """A two-sided p from a test's one-sided p's, and whether its smaller side is the claimed one."""
    claimed, other = (p_greater, p_less) if sign > 0 else (p_less, p_greater)
    return stats.two_sided(claimed, other), claimed <= other


def _verdict_by_p(p: float, favours: bool, n: int, needed: int | None, toward_claim: float) -> str:
    """supported / contradicted where p < 5 % (by which side the test favours), else undecided with the runs that
    would decide, or why none would (`toward_claim` < 0: the estimate lies on the other side)."""
    decided = favours if p < stats.ALPHA else None
    if decided is None and toward_claim < 0:
        return verdict_text(None, n, None, "the estimate points the other way")
    return verdict_text(decided, n, needed, "no difference measured")


def _side(ci: stats.Interval, sign: int) -> bool | None:
    """True when the interval lies beyond 0 on the expected side, False on the other, else None."""
    if math.isnan(ci.low):
        return None
    if (ci.low > 0) if sign > 0 else (ci.high < 0):
        return True
    if (ci.high < 0) if sign > 0 else (ci.low > 0):
        return False
    return None


def _trained_shares(a: list[Run], b: list[Run], sign: int) -> Decision:
    """An accuracy compared when every run of a group diverged (no accuracy to average): by the share of runs that
    trained."""
    ka, kb = (sum(r.course.outcome == "trained" for r in runs) for runs in (a, b))
    shares = _shares(ka, len(a), kb, len(b), sign)
    return shares.model_copy(
        update={
            "method": f"share of runs that trained ({shares.method}): no run of one group trained to an accuracy",
            "measured": f"trained {shares.measured}",
        }
    )


def _compare(claim: ClaimConfig, a_runs: list[Run], b_runs: list[Run]) -> Decision:
    a, out_a, miss_a = group_values(a_runs, claim.quantity, claim.at)
    sign = {"greater": 1, "less": -1, "equivalent": 0}[claim.expect]
    if claim.versus or claim.versus_at is not None:
        at_b = claim.versus_at if claim.versus_at is not None else claim.at
        b, out_b, miss_b = group_values(b_runs, claim.quantity, at_b)
        censored = claim.quantity in CENSORED and (miss_a or miss_b)
        # groups whose runs ended differently, both with runs that trained: "greater" / "less" by every run's rank
        ranked = bool(sign and claim.versus and a and b and not censored and (len(out_a) > 1 or len(out_b) > 1))
        notes = outcome_notes(claim.group, out_a, miss_a, claim.quantity, ranked)
        notes += outcome_notes(claim.versus, out_b, miss_b, claim.quantity, ranked) if claim.versus else []
        if censored and sign:
            return censored_ranks(a, miss_a, b, miss_b, sign).with_notes(notes)
        if (len(a) < 1 or len(b) < 1) and sign and claim.quantity in ACCURACIES:
            return _trained_shares(a_runs, b_runs, sign).with_notes(notes)
        if len(a) < 1 or len(b) < 1:
            return Decision(verdict="not measured", n=0, notes=tuple(notes))
        if ranked:
            return outcome_ranks(a_runs, b_runs, claim, at_b, sign).with_notes(notes)
        common = sorted(set(a) & set(b))
        paired = len(common) >= 2 and set(a) == set(b)
        xa, xb = ([a[s] for s in common], [b[s] for s in common]) if paired else (list(a.values()), list(b.values()))
        spread = stats.difference(xa, xb, paired)
        sd = (
            statistics.stdev([x - y for x, y in zip(xa, xb, strict=True)])
            if paired and len(xa) > 1
            else math.sqrt((_var(xa) + _var(xb)) / 2)
        )
        measured = f"{mean_text(xa)} vs {mean_text(xb)}"
    else:
        notes = outcome_notes(claim.group, out_a, miss_a, claim.quantity)
        xa = list(a.values())
        if not xa:
            return Decision(verdict="not measured", n=0, notes=tuple(notes))
        value = float(claim.value)  # type: ignore[arg-type]
        one = stats.mean_interval(xa, null=value)
        spread = stats.Interval(one.estimate - value, one.low - value, one.high - value, one.n, one.method, one.p_value)
        paired, sd = True, _sd(xa)
        measured = f"{mean_text(xa)} vs {value:g}"
    n = spread.n
    if sign == 0:
        margin = float(claim.margin)  # type: ignore[arg-type]
        ci90, equivalent = stats.equivalence(xa, xb, paired, margin)
        outside = not math.isnan(spread.low) and (spread.low > margin or spread.high < -margin)
        decided = True if equivalent else False if outside else None
        tests = stats.equivalence_p(xa, xb, paired, margin)
        room = margin - abs(spread.estimate)  # how far the estimate is from the margin it must stay within
        # each of TOST's one-sided tests is at 5 %: sized at that level
        needed = stats.seeds_needed(room, sd, paired, alpha=stats.ALPHA) if room > 0 else None
        why = "the estimate lies outside the margin" if room <= 0 else ""
        return Decision(
            # at most one of the two tests is below 5 % (the intervals cannot lie both inside and beyond)
            p_value=None if math.isnan(tests.tost) else min(tests.tost, tests.outside),
            favours=None if math.isnan(tests.tost) else tests.tost <= tests.outside,
            effect=spread.estimate,
            interval=(spread.low, spread.high),
            interval90=(ci90.low, ci90.high),
            n=n,
            method=f"{spread.method}; TOST at ±{margin:g} (90 % interval)",
            measured=measured,
            verdict=verdict_text(decided, n, needed, why),
            notes=tuple(notes),
        )
    decided = _side(spread, sign)
    needed = stats.seeds_needed(spread.estimate, sd, paired)
    why = "no difference measured"
    if decided is None and spread.estimate * sign < 0:
        needed, why = None, "the estimate points the other way"  # more seeds would not support the claim
    return Decision(
        p_value=None if math.isnan(spread.p_value) else spread.p_value,
        favours=None if math.isnan(spread.p_value) else spread.estimate * sign > 0,
        effect=spread.estimate,
        interval=(spread.low, spread.high),
        n=n,
        method=spread.method,
        measured=measured,
        verdict=verdict_text(decided, n, needed, why),
        notes=tuple(notes),
    )


def article_points(claim: ClaimConfig) -> dict[Any, float]:
    """A `consistent` claim's article values by where they were taken (an epoch, a step): its mapping, or its
    one value at `at`."""
    return claim.value if isinstance(claim.value, dict) else {claim.at: claim.value}  # type: ignore[return-value]


def consistency_summary(claim: ClaimConfig, runs: list[Run]) -> tuple[list[float], float, list[str]]:
    """What a `consistent` claim compares: each run's mean over the points the article reports (the runs with a
    value at every point), the article's mean over them, and notes on runs that ended differently."""
    points = article_points(claim)
    per_point, notes = [], []
    for at in points:
        values, outcomes, missing = group_values(runs, claim.quantity, at)
        notes += outcome_notes(claim.group, outcomes, missing, claim.quantity) if not notes else []
        per_point.append(values)
    seeds = sorted(set.intersection(*(set(v) for v in per_point)))  # runs with a value at every point
    ours = [statistics.fmean(v[s] for v in per_point) for s in seeds]
    return ours, statistics.fmean(float(v) for v in points.values()), notes


def _consistent(claim: ClaimConfig, runs: list[Run]) -> Decision:
    """The article's single run against ours on one summary of all its points: the mean of its values over the
    points it reports (one point: that value), against the same mean of each of our runs, by the 95 % prediction
    interval of one new run (t, n − 1 df). One summary of all points, so a constant offset shows (testing
    correlated points one by one, Bonferroni-corrected, could not see one)."""
    points = article_points(claim)
    ours, article, notes = consistency_summary(claim, runs)
    if len(ours) < 2:
        n = len(ours)
        return Decision(verdict=f"undecided at n = {n} (a prediction interval needs 2+ runs)", n=n, notes=tuple(notes))
    pred = stats.prediction_interval(ours, article)
    over = points_text(list(points)) if len(points) > 1 else ""
    offset = pred.mean - article
    if pred.low <= article <= pred.high:
        verdict = CONSISTENT
    else:
        verdict = f"{OUTSIDE} (p = {pred.p_value:.2g})"
        side = "below" if offset < 0 else "above"
        notes = [
            *notes,
            f"our runs are systematically {side} the article's: offset {signed(offset)} ({over or 'ours − article'})",
        ]
    return Decision(
        effect=offset,
        n=len(ours),
        points=len(points),
        interval=(pred.low - article, pred.high - article),
        method="95 % prediction interval of one new run, t with n − 1 df"
        + (f", on each run's {over} (the article's {len(points)} points)" if over else ""),
        p_value=pred.p_value,
        favours=False,  # a small p says the article's run is unlike ours
        measured=f"ours {num(pred.mean)}, PI {num(pred.low)}–{num(pred.high)}, article {num(article)}"
        + (f" ({over})" if over else ""),
        verdict=verdict,
        notes=tuple(notes),
    )


def points_text(ats: list) -> str:
    """'mean over 1–5' for consecutive whole numbers (epochs), else the points listed: 'mean over 2, 1'."""
    whole = all(isinstance(a, (int, float)) and float(a).is_integer() for a in ats)
    if whole and len(ats) > 2 and sorted(ats) == list(range(int(min(ats)), int(max(ats)) + 1)):
        return f"mean over {at_text(min(ats))}–{at_text(max(ats))}"
    return "mean over " + ", ".join(at_text(a) for a in ats)


def _var(x: list[float]) -> float:
    return statistics.variance(x) if len(x) > 1 else math.nan


def _sd(x: list[float]) -> float:
    return statistics.stdev(x) if len(x) > 1 else math.nan


def claim_rows(experiments: list[Experiment]) -> list[ClaimResult]:
    """Every claim of every experiment decided, its p adjusted within its family and over the report
    (`multiplicity`); a claim whose runs lack what its quantity needs is a row "not measured" whose note says why
    (one claim never stops the report). Any other error is a bug, and raises."""
    rows = []
    for exp in experiments:
        for claim in exp.claims:
            try:
                decision = _decide(claim, exp)
            except NotRecorded as e:  # e.g. a threshold the runs' config did not list
                decision = Decision(verdict="not measured", n=0, notes=(f"not measured: {e}",))
            rows.append(_result(claim, exp, decision))
    return adjust(
        rows,
        {exp.name: exp.multiplicity for exp in experiments},
        {exp.name: exp.look_levels[-1] for exp in experiments},
    )
