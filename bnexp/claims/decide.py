"""A claim decided on an experiment's runs: the measured effect, its interval, n, the method and the verdict
(supported, contradicted, undecided at n = N with the seeds that would decide, or not measured)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bnexp import stats
from bnexp.claims.groups import censored_ranks, group_values, outcome_notes, outcome_ranks
from bnexp.claims.measure import ACCURACIES, CENSORED, NotRecorded, measure
from bnexp.claims.text import at_text, mean_text, num, signed, verdict_text
from bnexp.config import QUANTITIES, ClaimConfig
from bnexp.results import Experiment, Run


def evaluate(claim: ClaimConfig, exp: Experiment) -> dict[str, Any]:
    """One claim against one experiment's runs: the measured effect, its interval, n, method and verdict."""
    row: dict[str, Any] = {
        "id": claim.id,
        "experiment": exp.name,
        "claim": claim.claim,
        "source": claim.source,
        "quantity": claim.quantity + (f" at {at_text(claim.at)}" if claim.at is not None else ""),
        "expect": claim.expect,
        "group": claim.group,
        "versus": claim.versus,
        "figure": claim.figure,
        "notes": [],
        "compared": _compared_text(claim),
    }
    a = exp.finished(claim.group)
    b = exp.finished(claim.versus or claim.group) if claim.versus or claim.versus_at is not None else []
    if claim.versus_at is not None:
        row["quantity"] = claim.quantity  # the two `at`s are in the compared text
    if not a or ((claim.versus or claim.versus_at is not None) and not b):
        return {**row, "verdict": "not measured", "n": 0, "effect": None}
    if QUANTITIES[claim.quantity].kind == "proportion":
        return {**row, **_proportion(claim, a, b)}
    if claim.expect == "consistent":
        return {**row, **_consistent(claim, a)}
    return {**row, **_compare(claim, a, b)}


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


def _proportion(claim: ClaimConfig, a: list[Run], b: list[Run]) -> dict[str, Any]:
    ka = sum(bool(measure(r, claim.quantity, claim.at)) for r in a)
    sign = 1 if claim.expect == "greater" else -1
    if claim.versus:
        kb = sum(bool(measure(r, claim.quantity, claim.at)) for r in b)
        ci = stats.proportion_difference(ka, len(a), kb, len(b))
        needed = stats.seeds_needed_proportions(ka / len(a), kb / len(b))
        reference = 0.0
    else:
        ci = stats.wilson(ka, len(a))
        reference = float(claim.value)  # type: ignore[arg-type]
        needed = stats.seeds_needed_proportions(ka / len(a), reference)
        ci = stats.Interval(ci.estimate - reference, ci.low - reference, ci.high - reference, ci.n, ci.method)
    decided = _side(ci, sign, reference=0.0)
    n = min(len(a), len(b)) if b else len(a)
    return {
        "effect": ci.estimate,
        "interval": [ci.low, ci.high],
        "n": n,
        "method": ci.method,
        "measured": f"{ka}/{len(a)}" + (f" vs {kb}/{len(b)}" if claim.versus else f" vs {reference:g}"),
        "verdict": verdict_text(decided, n, needed),
        "reference": reference,
    }


def _side(ci: stats.Interval, sign: int, reference: float) -> bool | None:
    """True when the interval lies beyond `reference` on the expected side, False on the other, else None."""
    if math.isnan(ci.low):
        return None
    if (ci.low > reference) if sign > 0 else (ci.high < reference):
        return True
    if (ci.high < reference) if sign > 0 else (ci.low > reference):
        return False
    return None


def _trained_shares(a: list[Run], b: list[Run], sign: int) -> dict[str, Any]:
    """An accuracy compared when every run of a group diverged (no accuracy to average): by the share of runs that
    trained, the difference with Newcombe's interval."""
    ka, kb = (sum(r.course["outcome"] == "trained" for r in runs) for runs in (a, b))
    ci = stats.proportion_difference(ka, len(a), kb, len(b))
    needed = stats.seeds_needed_proportions(ka / len(a), kb / len(b))
    n = min(len(a), len(b))
    return {
        "effect": ci.estimate,
        "interval": [ci.low, ci.high],
        "n": n,
        "method": f"share of runs that trained ({ci.method}): no run of one group trained to an accuracy",
        "measured": f"trained {ka}/{len(a)} vs {kb}/{len(b)}",
        "verdict": verdict_text(_side(ci, sign, reference=0.0), n, needed),
    }


def _compare(claim: ClaimConfig, a_runs: list[Run], b_runs: list[Run]) -> dict[str, Any]:
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
            return {**censored_ranks(a, miss_a, b, miss_b, sign), "notes": notes}
        if (len(a) < 1 or len(b) < 1) and sign and claim.quantity in ACCURACIES:
            return {**_trained_shares(a_runs, b_runs, sign), "notes": notes}
        if len(a) < 1 or len(b) < 1:
            return {"effect": None, "n": 0, "verdict": "not measured", "notes": notes}
        if ranked:
            return {**outcome_ranks(a_runs, b_runs, claim, at_b, sign), "notes": notes}
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
            return {"effect": None, "n": 0, "verdict": "not measured", "notes": notes}
        one = stats.mean_interval(xa)
        value = float(claim.value)  # type: ignore[arg-type]
        spread = stats.Interval(one.estimate - value, one.low - value, one.high - value, one.n, one.method)
        paired, sd = True, _sd(xa)
        measured = f"{mean_text(xa)} vs {value:g}"
    n = spread.n
    if sign == 0:
        margin = float(claim.margin)  # type: ignore[arg-type]
        ci90, equivalent = stats.equivalence(xa, xb, paired, margin)
        outside = not math.isnan(spread.low) and (spread.low > margin or spread.high < -margin)
        decided = True if equivalent else False if outside else None
        room = margin - abs(spread.estimate)  # how far the estimate is from the margin it must stay within
        needed = stats.seeds_needed(room, sd, paired) if room > 0 else None
        why = "the estimate lies outside the margin" if room <= 0 else ""
        return {
            "effect": spread.estimate,
            "interval": [spread.low, spread.high],
            "interval90": [ci90.low, ci90.high],
            "n": n,
            "method": f"{spread.method}; TOST at ±{margin:g} (90 % interval)",
            "measured": measured,
            "verdict": verdict_text(decided, n, needed, why),
            "notes": notes,
        }
    decided = _side(spread, sign, reference=0.0)
    needed = stats.seeds_needed(spread.estimate, sd, paired)
    why = "no difference measured"
    if decided is None and spread.estimate * sign < 0:
        needed, why = None, "the estimate points the other way"  # more seeds would not support the claim
    return {
        "effect": spread.estimate,
        "interval": [spread.low, spread.high],
        "n": n,
        "method": spread.method,
        "measured": measured,
        "verdict": verdict_text(decided, n, needed, why),
        "notes": notes,
    }


def _consistent(claim: ClaimConfig, runs: list[Run]) -> dict[str, Any]:
    """The article's single run(s) against the prediction interval of ours, one per point; with k points each
    interval is at the 1 − 0.05/k level (Bonferroni), so the family errs 5 % of the time when all hold."""
    points = consistency_points(claim)
    level = prediction_level(len(points))
    checks, notes = [], []
    for at, article in points.items():
        values, outcomes, missing = group_values(runs, claim.quantity, at)
        notes += outcome_notes(claim.group, outcomes, missing, claim.quantity) if not notes else []
        pred = stats.prediction_interval(list(values.values()), float(article), level) if values else None
        checks.append((at, float(article), pred))
    measured = [p for _, _, p in checks if p is not None and p.n >= 2]
    n = min((p.n for _, _, p in checks if p is not None), default=0)
    if len(measured) < len(checks):
        return {
            "effect": None,
            "n": n,
            "verdict": f"undecided at n = {n} (a prediction interval needs 2+ runs)",
            "notes": notes,
        }
    inside = [p.low <= art <= p.high for _, art, p in checks]
    offsets = [p.mean - art for _, art, p in checks]
    worst = min(checks, key=lambda c: c[2].p_value)
    pct = f"{level:.1%}" if len(points) > 1 else "95 %"
    row = {
        "effect": worst[2].mean - worst[1],
        "n": n,
        "points": len(points),
        "inside": sum(inside),
        "interval": [worst[2].low - worst[1], worst[2].high - worst[1]],
        "method": f"{pct} prediction interval of one new run, t with n − 1 df"
        + (f" (Bonferroni over {len(points)} points)" if len(points) > 1 else ""),
        "p_value": worst[2].p_value,
        "measured": (
            f"ours {num(worst[2].mean)}, PI {num(worst[2].low)}–{num(worst[2].high)}, article "
            f"{num(worst[1])}" + (f" (least likely at {at_text(worst[0])})" if len(points) > 1 else "")
        ),
        "verdict": "supported" if all(inside) else "contradicted",
        "notes": notes,
    }
    below, above = sum(o < 0 for o in offsets), sum(o > 0 for o in offsets)
    if len(points) > 1 and (below == len(points) or above == len(points)):
        side = "below" if below else "above"
        row["notes"] = [
            *notes,
            f"offset: our mean is {side} the article's at all {len(points)} points "
            f"(mean offset {signed(statistics.fmean(offsets))})",
        ]
    return row


def consistency_points(claim: ClaimConfig) -> dict[Any, float]:
    """A `consistent` claim's article values by where they were taken (an epoch, a step)."""
    return claim.value if isinstance(claim.value, dict) else {claim.at: claim.value}  # type: ignore[return-value]


def prediction_level(points: int) -> float:
    """The level of each point's prediction interval: 95 % for one point, 1 − 0.05/k for k (Bonferroni), so that
    the family errs 5 % of the time when all hold. Figures draw the intervals at this level too."""
    return 1 - (1 - stats.LEVEL) / points


def _var(x: list[float]) -> float:
    return statistics.variance(x) if len(x) > 1 else math.nan


def _sd(x: list[float]) -> float:
    return statistics.stdev(x) if len(x) > 1 else math.nan


def claim_rows(experiments: list[Experiment]) -> list[dict[str, Any]]:
    """Every claim of every experiment decided; a claim that cannot be is a row "not measured" whose note says why
    (one claim never stops the report)."""
    rows = []
    for exp in experiments:
        for claim in exp.claims:
            try:
                rows.append(evaluate(claim, exp))
            except (
                NotRecorded
            ) as e:  # the runs lack what the quantity needs, e.g. a threshold their config did not list
                rows.append(_not_measured(claim, exp, f"not measured: {e}"))
            # a record the checks let through, or a misread field: a visible row that names it, never a silent None
            except (ValueError, TypeError, ZeroDivisionError, KeyError, AttributeError) as e:
                rows.append(_not_measured(claim, exp, f"could not be computed ({type(e).__name__}: {e})"))
    return rows


def _not_measured(claim: ClaimConfig, exp: Experiment, why: str) -> dict[str, Any]:
    return {
        "id": claim.id,
        "experiment": exp.name,
        "claim": claim.claim,
        "source": claim.source,
        "quantity": claim.quantity,
        "compared": _compared_text(claim),
        "figure": claim.figure,
        "n": 0,
        "effect": None,
        "notes": [why],
        "verdict": "not measured",
    }
