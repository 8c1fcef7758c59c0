"""The articles' claims as checks: each claim of a config (`claims:`) names a per-run quantity, the groups
it compares and the relation it expects; here each is measured on the run store and decided by the statistics
of `bnexp.stats`.

Verdicts: **supported** (the interval lies on the expected side, or the article's run lies inside our
prediction interval), **contradicted** (the interval lies on the other side, or outside it), **undecided at
n = N** with the seeds that a power estimate says would decide, or **not measured** (no finished runs).
Runs with different training outcomes in one group (trained / fell back / never left chance / diverged) are
never pooled into one mean: the counts are reported, and two groups are compared run by run by rank (for
greater / less) or within the runs that trained (for equivalent, or against a value).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

from bnexp import stats
from bnexp.config import QUANTITIES as DECLARED
from bnexp.config import ClaimConfig, ProbeConfig
from bnexp.report_sections import median  # NaN for no values: `measure` turns it into None
from bnexp.results import NEAR_CHANCE, Experiment, Run, curve_quantities, per_step, value_at

# -- quantities: run -> number (or True/False for the proportion kind), None when the run has none ------------


def _layer_pick(values: list[float], at: Any, skip_first: bool = False, skip_last: bool = False) -> float | None:
    """values[at − 1] for a 1-based layer number, or their mean over the layers (without the first or last)."""
    if at is not None:
        i = int(at) - 1
        return values[i] if 0 <= i < len(values) else None
    chosen = values[1 if skip_first else 0 : len(values) - 1 if skip_last else len(values)]
    chosen = [v for v in chosen if v is not None and math.isfinite(v)]
    return statistics.fmean(chosen) if chosen else None


def _landscape(key: Callable[[dict], float]) -> Callable[[Run, Any], float | None]:
    return lambda run, at: median([key(p) for p in run.probe("landscape")])


def _ics_shift(run: Run, at: Any) -> float | None:
    records = run.probe("ics")
    if not records:
        return None
    layers = len(records[0]["shift"])
    per_layer = [median([p["shift"][i] for p in records if len(p["shift"]) == layers]) for i in range(layers)]
    return _layer_pick(per_layer, at, skip_first=True)  # layer 1 has no layer before it: 0 by definition


def _drift(field: str) -> Callable[[Run, Any], float | None]:
    def measure(run: Run, at: Any) -> float | None:
        layers = sorted({p["layer"] for p in run.probes})
        per_layer = []
        for layer in layers:
            values = [p[field] for p in sorted(run.probes, key=lambda p: p["step"]) if p["layer"] == layer]
            per_layer.append(statistics.pstdev(values) if len(values) > 1 else None)
        return _layer_pick(per_layer, at) if per_layer else None

    return measure


def _unit_percentile_drift(run: Run, at: Any) -> float | None:
    """sd over probe steps of one unit's 15th/50th/85th percentiles (the BN paper's Fig. 1b, c), averaged."""
    records = sorted((p for p in run.probes if p.get("unit_percentiles")), key=lambda p: p["step"])
    if len(records) < 2:
        return None
    keys = list(records[0]["unit_percentiles"])
    return statistics.fmean(statistics.pstdev([p["unit_percentiles"][k] for p in records]) for k in keys)


def _feature_sd_spread(run: Run, at: Any) -> float | None:
    """Largest over smallest sd of the probed layers' values at the last probed step (E3: 'differ widely')."""
    if not run.probes:
        return None
    last = max(p["step"] for p in run.probes)
    sds = [p["std"] for p in run.probes if p["step"] == last]
    return max(sds) / min(sds) if sds and min(sds) > 0 else None


def _linear_region_share(run: Run, at: Any) -> float | None:
    """Share of the probed activation inputs with |x| < 1 (where a sigmoid is nearly linear, a3's reason for γ
    and β) at the last probed step: histogram bins whose centre lies inside (−1, 1), over all values counted (those
    outside the histogram's range included); per layer, or the mean over layers."""
    if not run.probes:
        return None
    lo, hi = (run.config.get("probes") or {}).get("range") or ProbeConfig().range
    last = max(p["step"] for p in run.probes)
    shares = []
    for p in sorted((p for p in run.probes if p["step"] == last), key=lambda p: p["layer"]):
        width = (hi - lo) / len(p["hist"])
        inside = sum(c for i, c in enumerate(p["hist"]) if abs(lo + (i + 0.5) * width) < 1)
        shares.append(inside / p["n"] if p["n"] else None)
    return _layer_pick(shares, at)


WINDOW = 3  # evaluations averaged at each end for weight norms and effective steps


def _weights(field: str) -> Callable[[Run, Any], float | None]:
    """First-window mean over last-window mean (effective_step: how much it shrank) or the reverse (weight
    norm: how much it grew), per layer; without `at`, the mean over all layers but the last (no norm after it)."""

    def measure(run: Run, at: Any) -> float | None:
        records = run.probe("weights")
        if len(records) < 2 * WINDOW:
            return None
        n = len(records[0][field])
        first = [statistics.fmean(p[field][i] for p in records[:WINDOW]) for i in range(n)]
        last = [statistics.fmean(p[field][i] for p in records[-WINDOW:]) for i in range(n)]
        ratios = [
            (a / b if field == "effective_step" else b / a) if min(a, b) > 0 else None
            for a, b in zip(first, last, strict=True)
        ]
        return _layer_pick(ratios, at, skip_last=True)

    return measure


def _eval_mode(run: Run, at: Any) -> float | None:
    """Accuracy of one row of the eval_modes analysis; `at` is "mode" or "mode@N" (batch size or batches)."""
    mode, _, size = str(at).partition("@")
    for row in (run.analyses.get("eval_modes") or {}).get("result", {}).get("rows", []):
        if row.get("mode") == mode and (not size or int(size) in (row.get("batch_size"), row.get("batches"))):
            return row.get("test_acc")
    return None


def _running_var_gap(run: Run, at: Any) -> float | None:
    gaps = (run.analyses.get("eval_modes") or {}).get("result", {}).get("population_gap") or []
    return _layer_pick([g["var_log_ratio"] for g in gaps], at) if gaps else None


def _scale(field: str) -> Callable[[Run, Any], float | None]:
    def measure(run: Run, at: Any) -> float | None:
        result = (run.analyses.get("scale_invariance") or {}).get("result") or {}
        rows = [row for layer in result.get("layers", []) for row in layer["without_eps"]]
        if not rows:
            return None
        if field == "grad_ratio":
            return max(abs(row["grad_ratio"] - 1) for row in rows)
        return max(row[field] for row in rows)

    return measure


def _curve(key: str) -> Callable[[Run, Any], float | None]:
    def measure(run: Run, at: Any) -> float | None:
        q = curve_quantities(per_step(run.train), run.summary.get("steps_per_epoch"), thresholds=(at,) if at else ())
        return q[f"steps_to_loss_below_{at:g}"] if key == "steps_to" else q[key]

    return measure


def _steps_to_test_acc(run: Run, at: Any) -> float | None:
    hit = (run.summary.get("time_to_threshold") or {}).get(f"{at:g}")
    return hit["step"] if hit else None


def _long_sequence_acc(run: Run, at: Any) -> float | None:
    rows = run.analyses["long_sequences"]["result"]["rows"]
    return next((r["test_acc"] for r in rows if r["stretch"] == at), None)


QUANTITIES: dict[str, Callable[[Run, Any], Any]] = {
    "final_test_acc": lambda run, at: run.summary.get("final_test_acc"),
    "best_test_acc": lambda run, at: run.summary.get("best_test_acc"),
    "final_train_loss": lambda run, at: run.summary.get("final_train_loss"),
    "test_acc_at_epoch": lambda run, at: value_at(run, "test_acc", epoch=at),
    "test_acc_at_step": lambda run, at: value_at(run, "test_acc", step=int(at)),
    "steps_to_loss_below": _curve("steps_to"),
    "last_epoch_loss": _curve("final_loss"),
    "steps_to_test_acc": _steps_to_test_acc,
    "left_chance_step": lambda run, at: run.course["left_chance_step"],
    "near_chance_at_end": lambda run, at: run.course["outcome"] in NEAR_CHANCE,
    "landscape_loss_range": _landscape(lambda p: p["loss_max"] - p["loss_min"]),
    "landscape_grad_predictiveness": _landscape(lambda p: p["grad_predictiveness"]),
    "landscape_beta_smoothness": _landscape(lambda p: p["beta_smoothness"]),
    "ics_shift": _ics_shift,
    "drift_of_mean": _drift("mean"),
    "drift_of_sd": _drift("std"),
    "unit_percentile_drift": _unit_percentile_drift,
    "feature_sd_spread": _feature_sd_spread,
    "linear_region_share": _linear_region_share,
    "effective_step_shrink": _weights("effective_step"),
    "weight_norm_growth": _weights("weight_norm"),
    "eval_mode_acc": _eval_mode,
    "running_var_gap": _running_var_gap,
    "scale_output_change": _scale("output_rel_error"),
    "scale_grad_ratio_error": _scale("grad_ratio"),
    "step_time_ratio_to_bn": lambda run, at: run.analyses["step_cost"]["result"]["ratio_to_batchnorm"],
    "long_sequence_acc": _long_sequence_acc,
}
assert set(QUANTITIES) == set(DECLARED), "bnexp.config.QUANTITIES and QUANTITIES must agree"


def measure(run: Run, quantity: str, at: Any) -> Any:
    """One run's value of a claim quantity; None when the run has none (damaged records count as none)."""
    try:
        value = QUANTITIES[quantity](run, at)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None
    if isinstance(value, bool):
        return value
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


# -- evaluation ------------------------------------------------------------------------------------------------


def _outcomes(runs: list[Run]) -> Counter:
    return Counter(r.course["outcome"] for r in runs)


def _values(runs: list[Run], quantity: str, at: Any) -> tuple[dict[int, float], dict[str, int], int]:
    """seed -> value for a continuous quantity, the outcome counts, and how many runs had no value (e.g. never
    reached a threshold). A group of mixed outcomes keeps only its runs that trained. Where none trained, an
    accuracy keeps none (the share of runs that trained decides) and any other quantity keeps them all: no run is
    the group's better kind (E3 at batch 1: one net never left chance, the other fell back)."""
    outcomes = _outcomes(runs)
    keep_all = quantity in CENSORED or ("trained" not in outcomes and quantity not in ACCURACIES)
    if len(outcomes) > 1 and not keep_all:  # censored: a run that failed never got there, and stays as such
        runs = [r for r in runs if r.course["outcome"] == "trained"]
    values = {r.config.get("seed", i): measure(r, quantity, at) for i, r in enumerate(runs)}
    kept = {s: v for s, v in values.items() if v is not None}
    return kept, dict(outcomes), len(values) - len(kept)


def _verdict(decided: bool | None, n: int, needed: int | None, why: str = "") -> str:
    if decided is True:
        return "supported"
    if decided is False:
        return "contradicted"
    if n < 2:
        return f"undecided at n = {n} (one run per group: no spread to judge by)"
    more = f" (≈ {needed} would decide)" if needed else f" ({why})" if why else ""
    return f"undecided at n = {n}" + more


def evaluate(claim: ClaimConfig, exp: Experiment) -> dict[str, Any]:
    """One claim against one experiment's runs: the measured effect, its interval, n, method and verdict."""
    row: dict[str, Any] = {
        "id": claim.id,
        "experiment": exp.name,
        "claim": claim.claim,
        "source": claim.source,
        "quantity": claim.quantity
        + (f" at {claim.at:g}" if isinstance(claim.at, float) else f" at {claim.at}" if claim.at is not None else ""),
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
    if DECLARED[claim.quantity].kind == "proportion":
        return {**row, **_proportion(claim, a, b)}
    if claim.expect == "consistent":
        return {**row, **_consistent(claim, a)}
    return {**row, **_compare(claim, a, b)}


def _at(at: Any) -> str:
    return f"{at:g}" if isinstance(at, float) else str(at)


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
        return f"{claim.group} at {_at(claim.at)} {rel} {claim.versus or 'the same runs'} at {_at(claim.versus_at)}"
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
        "verdict": _verdict(decided, n, needed),
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


# "steps until": a run that never got there took longer than its whole length (censored), which a mean cannot hold
CENSORED = ("steps_to_loss_below", "steps_to_test_acc", "left_chance_step")


def _ranks(xa: list[float], xb: list[float], sign: int, method: str, measured: str) -> dict[str, Any]:
    """Two groups compared by a rank test (Mann-Whitney U, exact permutation distribution): it needs no mean, so
    it holds where runs never got somewhere (their values given as +-inf) or ended differently."""
    n = min(len(xa), len(xb))
    if n < 2:
        return {"effect": None, "n": n, "measured": measured, "verdict": _verdict(None, n, None)}
    test = stats.rank_test(xa, xb, "greater" if sign > 0 else "less")
    other = stats.rank_test(xa, xb, "less" if sign > 0 else "greater")
    alpha = (1 - stats.LEVEL) / 2
    decided = True if test.p_value < alpha else False if other.p_value < alpha else None
    needed = stats.separation_seeds(alpha) if decided is None and other.p_value >= test.p_value else None
    why = "the ranks point the other way" if other.p_value < test.p_value else "the ranks do not separate the groups"
    return {
        "effect": None,
        "n": n,
        "p_value": test.p_value,
        "p_opposite": other.p_value,
        "method": f"{test.method}; {method}",
        "measured": measured,
        "verdict": _verdict(decided, n, needed, why),
    }


def _censored_ranks(a: dict[int, float], miss_a: int, b: dict[int, float], miss_b: int, sign: int) -> dict[str, Any]:
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
        f"{_median_text(xa)} vs {_median_text(xb)} (medians; {reached})",
    )


def _outcome_ranks(a_runs: list[Run], b_runs: list[Run], claim: ClaimConfig, at_b: Any, sign: int) -> dict[str, Any]:
    """A quantity compared when a group's runs ended differently (trained / fell back / ...): every run by rank,
    none averaged; an accuracy's run without one (diverged) ranks below every run."""

    def values(runs: list[Run], at: Any) -> list[float]:
        got = [measure(r, claim.quantity, at) for r in runs]
        worst = [-math.inf] * sum(v is None for v in got) if claim.quantity in ACCURACIES else []
        return [v for v in got if v is not None] + worst

    xa, xb = values(a_runs, claim.at), values(b_runs, at_b)
    outcomes = " vs ".join(_counts_text(_outcomes(runs)) for runs in (a_runs, b_runs))
    return _ranks(
        xa,
        xb,
        sign,
        "every run ranked, whatever its outcome",
        f"{_median_text(xa)} vs {_median_text(xb)} (medians; {outcomes})",
    )


def _median_text(x: list[float]) -> str:
    m = statistics.median(x)
    return "never" if m == math.inf else "none" if m == -math.inf else _num(m)


# accuracies: a run that diverged has none, and is worse than any run that trained
ACCURACIES = (
    "final_test_acc",
    "best_test_acc",
    "test_acc_at_epoch",
    "test_acc_at_step",
    "eval_mode_acc",
    "long_sequence_acc",
)


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
        "verdict": _verdict(_side(ci, sign, reference=0.0), n, needed),
    }


def _counts_text(outcomes: dict[str, int]) -> str:
    """'2 fell back, 2 trained': a group's outcome counts."""
    return ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in outcomes.items())


def _outcome_notes(name: str, outcomes: dict[str, int], missing: int, quantity: str, ranked: bool = False) -> list[str]:
    notes = []
    if len(outcomes) > 1:
        counts = _counts_text(outcomes)
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


def _compare(claim: ClaimConfig, a_runs: list[Run], b_runs: list[Run]) -> dict[str, Any]:
    a, out_a, miss_a = _values(a_runs, claim.quantity, claim.at)
    sign = {"greater": 1, "less": -1, "equivalent": 0}[claim.expect]
    if claim.versus or claim.versus_at is not None:
        at_b = claim.versus_at if claim.versus_at is not None else claim.at
        b, out_b, miss_b = _values(b_runs, claim.quantity, at_b)
        censored = claim.quantity in CENSORED and (miss_a or miss_b)
        # groups whose runs ended differently, both with runs that trained: "greater" / "less" by every run's rank
        ranked = bool(sign and claim.versus and a and b and not censored and (len(out_a) > 1 or len(out_b) > 1))
        notes = _outcome_notes(claim.group, out_a, miss_a, claim.quantity, ranked)
        notes += _outcome_notes(claim.versus, out_b, miss_b, claim.quantity, ranked) if claim.versus else []
        if censored and sign:
            return {**_censored_ranks(a, miss_a, b, miss_b, sign), "notes": notes}
        if (len(a) < 1 or len(b) < 1) and sign and claim.quantity in ACCURACIES:
            return {**_trained_shares(a_runs, b_runs, sign), "notes": notes}
        if len(a) < 1 or len(b) < 1:
            return {"effect": None, "n": 0, "verdict": "not measured", "notes": notes}
        if ranked:
            return {**_outcome_ranks(a_runs, b_runs, claim, at_b, sign), "notes": notes}
        common = sorted(set(a) & set(b))
        paired = len(common) >= 2 and set(a) == set(b)
        xa, xb = ([a[s] for s in common], [b[s] for s in common]) if paired else (list(a.values()), list(b.values()))
        spread = stats.difference(xa, xb, paired)
        sd = (
            statistics.stdev([x - y for x, y in zip(xa, xb, strict=True)])
            if paired and len(xa) > 1
            else math.sqrt((_var(xa) + _var(xb)) / 2)
        )
        measured = f"{_mean(xa)} vs {_mean(xb)}"
    else:
        notes = _outcome_notes(claim.group, out_a, miss_a, claim.quantity)
        xa = list(a.values())
        if not xa:
            return {"effect": None, "n": 0, "verdict": "not measured", "notes": notes}
        one = stats.mean_interval(xa)
        value = float(claim.value)  # type: ignore[arg-type]
        spread = stats.Interval(one.estimate - value, one.low - value, one.high - value, one.n, one.method)
        paired, sd = True, _sd(xa)
        measured = f"{_mean(xa)} vs {value:g}"
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
            "verdict": _verdict(decided, n, needed, why),
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
        "verdict": _verdict(decided, n, needed, why),
        "notes": notes,
    }


def _consistent(claim: ClaimConfig, runs: list[Run]) -> dict[str, Any]:
    """The article's single run(s) against the prediction interval of ours, one per point; with k points each
    interval is at the 1 − 0.05/k level (Bonferroni), so the family errs 5 % of the time when all hold."""
    points = claim.value if isinstance(claim.value, dict) else {claim.at: claim.value}
    level = 1 - (1 - stats.LEVEL) / len(points)
    checks, notes = [], []
    for at, article in points.items():
        values, outcomes, missing = _values(runs, claim.quantity, at)
        notes += _outcome_notes(claim.group, outcomes, missing, claim.quantity) if not notes else []
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
            f"ours {_num(worst[2].mean)}, PI {_num(worst[2].low)}–{_num(worst[2].high)}, article "
            f"{_num(worst[1])}" + (f" (least likely at {_at(worst[0])})" if len(points) > 1 else "")
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
            f"(mean offset {_signed(statistics.fmean(offsets))})",
        ]
    return row


def _var(x: list[float]) -> float:
    return statistics.variance(x) if len(x) > 1 else math.nan


def _sd(x: list[float]) -> float:
    return statistics.stdev(x) if len(x) > 1 else math.nan


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100 or (abs(x) >= 10 and x == round(x)):
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.4f}" if abs(x) >= 1e-3 else f"{x:.2e}"


def _mean(x: list[float]) -> str:
    """mean ± sd (n), without sd for one value."""
    if len(x) == 1:
        return f"{_num(x[0])} (n = 1)"
    return f"{_num(statistics.fmean(x))} ± {_num(statistics.stdev(x))} (n = {len(x)})"


def claim_rows(experiments: list[Experiment]) -> list[dict[str, Any]]:
    rows = []
    for exp in experiments:
        for claim in exp.claims:
            try:
                rows.append(evaluate(claim, exp))
            except (ValueError, TypeError, ZeroDivisionError, KeyError) as e:  # one claim never stops the report
                rows.append(
                    {
                        "id": claim.id,
                        "experiment": exp.name,
                        "claim": claim.claim,
                        "source": claim.source,
                        "quantity": claim.quantity,
                        "compared": _compared_text(claim),
                        "figure": claim.figure,
                        "n": 0,
                        "effect": None,
                        "notes": [f"could not be computed: {e}"],
                        "verdict": "not measured",
                    }
                )
    return rows


CLAIMS_BEGIN, CLAIMS_END = "<!-- claims:begin -->", "<!-- claims:end -->"  # README's generated block

CLAIMS_RULE = (
    "greater / less: difference of means with its 95 % interval (paired t by seed when both groups ran the same "
    "seeds, Welch's t otherwise), supported when the interval lies on the claimed side of 0, contradicted when on "
    "the other; proportions: Newcombe's hybrid score interval of the difference (Wilson for one group against a "
    "value); equivalent: two one-sided tests, the 90 % interval inside ±margin (contradicted when the 95 % interval "
    "lies outside); consistent: the article's single run inside the 95 % prediction interval of ours (Bonferroni over "
    "several points); undecided claims give the seeds that would decide at 80 % power from the observed effect and "
    "spread (noncentral t at one-sided 2.5 % for means, equivalences included, which are decided at 5 %: their "
    "estimates are on the high side; the normal approximation for two proportions, also against a fixed value). "
    "Groups whose runs ended differently are counted per outcome, never averaged: "
    "for greater / less every run is ranked (Mann-Whitney U, exact; an accuracy's diverged run ranks lowest), for "
    "equivalent and against a value they are compared within the runs that trained; where no run of a group "
    "trained, accuracies are compared by the share of runs that trained (Newcombe), other quantities over every run"
)


def _effect_text(row: dict[str, Any]) -> str:
    if row.get("effect") is None:
        return "–"
    low, high = row.get("interval", [math.nan, math.nan])
    ci = f" [{_signed(low)}, {_signed(high)}]" if not math.isnan(low) else ""
    if "interval90" in row and not math.isnan(row["interval90"][0]):  # the interval an equivalence is decided by
        ci += f"; 90 %: [{_signed(row['interval90'][0])}, {_signed(row['interval90'][1])}]"
    return _signed(row["effect"]) + ci


def _p_text(row: dict[str, Any]) -> str:
    """The p-value of the test that decided: a contradicted rank comparison is decided by the opposite
    direction's test (the claim's own p is then near 1)."""
    if row["verdict"].startswith("contradicted") and row.get("p_opposite") is not None:
        return f" (p = {row['p_opposite']:.2g}, the opposite direction)"
    return f" (p = {row['p_value']:.2g})" if row.get("p_value") is not None else ""


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a '|' of its own (a norm, ‖x‖ written as ||x||) would split the row."""
    return str(text).replace("|", "\\|")


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "") + _num(x)


def claims_markdown(rows: list[dict[str, Any]], experiments: list[dict[str, Any]], out_dir: Any) -> list[str]:
    """The claims table that opens REPORT.md, with the notes of each claim below it."""
    import os
    from pathlib import Path

    if not rows:
        return []
    figures = {(e["name"], Path(f).stem): f for e in experiments for f in e["figures"]}
    lines = [
        "## Claims at a glance",
        "",
        f"How each is decided: {CLAIMS_RULE}.",
        "",
        *claims_tally(rows),
        "",
        "| claim | source | compared | measured | effect [95 % CI] | n | verdict | figure |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        compared = f"{r['quantity']}: {r['compared']}"
        fig = figures.get((r["experiment"], r["figure"] or ""))
        link = f"[{r['figure']}]({os.path.relpath(fig, out_dir)})" if fig else "–"
        p = _p_text(r)
        lines.append(
            f"| {_cell(r['claim'])} (`{r['id']}`) | {_cell(r['source'])} | {_cell(compared)} | "
            f"{_cell(r.get('measured', '–'))} | {_effect_text(r)} | {r['n']} | **{r['verdict']}**{p} | "
            f"{link} |"
        )
    notes = [(r["id"], n) for r in rows for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- `{i}`: {n}" for i, n in notes]
    return [*lines, *_looks_paragraph(experiments), ""]


def _looks_paragraph(experiments: list[dict[str, Any]]) -> list[str]:
    """Which experiments' seeds were added after their claims were looked at, and what that costs."""
    looked = [(e["name"], e["interim_looks"]) for e in experiments if e.get("interim_looks")]
    if not looked:
        return []
    each = "; ".join(
        f"{name}: {', '.join(map(str, x['looks']))}, then {x['seeds']} ({100 * x['error']:.1f} %)" for name, x in looked
    )
    return [
        "",
        "Seeds added after a look. These experiments' claims were looked at with fewer seeds, and seeds were "
        "added because some were undecided (the number fixed from the power estimate before they ran). The "
        "verdicts above are not corrected for those earlier looks: had a claim no effect, a two-sided 5 % test "
        "at every look would call it supported or contradicted with the chance in brackets (a normal statistic, "
        f"Armitage, McPherson & Rowe 1969). Seeds at each look: {each}.",
    ]


VERDICT_KINDS = ("supported", "contradicted", "undecided", "not measured")


def claims_tally(rows: list[dict[str, Any]]) -> list[str]:
    """One row per experiment: how many of its claims got each verdict."""
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        kind = next(k for k in VERDICT_KINDS if r["verdict"].startswith(k))
        counts.setdefault(r["experiment"], dict.fromkeys(VERDICT_KINDS, 0))[kind] += 1
    header = "| experiment | claims | " + " | ".join(VERDICT_KINDS) + " |"
    lines = [header, "|---|" + "---:|" * (len(VERDICT_KINDS) + 1)]
    for name, c in counts.items():
        cells = " | ".join(str(c[k] or "–") for k in VERDICT_KINDS)
        lines.append(f"| {name} | {sum(c.values())} | {cells} |")
    return lines


def claims_excerpt(rows: list[dict[str, Any]], readme_dir: Any, results: Any) -> list[str]:
    """The claims in short, for a README: the verdicts counted per experiment, then every claim our runs
    contradict, with its effect, interval and n; every claim is in the report (written by `bnexp report
    --readme`)."""
    import os
    from pathlib import Path

    report = os.path.relpath(Path(results) / "REPORT.md", readme_dir)
    lines = [
        f"Generated by `bnexp report results --readme README.md` from the committed runs; every claim with its "
        f"method, source and notes: [{report}]({report}#claims-at-a-glance).",
        "",
        *claims_tally(rows),
        "",
    ]
    contradicted = [r for r in rows if r["verdict"].startswith("contradicted")]
    if contradicted:
        lines += ["Contradicted by our runs:", ""]
        lines += [
            f"- {r['experiment']}: {r['claim']}: "
            f"{_effect_text(r) if r.get('effect') is not None else r.get('measured', '–') + _p_text(r)}, "
            f"n = {r['n']}"
            for r in contradicted
        ]
    return lines
