"""Claim quantities: one run's number (or True/False for the proportion kind), each quantity that
`bnexp.config.QUANTITIES` declares measured by its function here.

A quantity is None where the run genuinely has none: no probe or analysis of that kind recorded, no such layer,
no evaluation at that epoch, a value it never reached, or a value recorded as null (a non-finite number). Every
record is its model of `bnexp.records` (checked when the run is read), read by attribute: a misspelt field raises
AttributeError, and a field a record may lack is None there. A run that lacks what a claim asks of it (a threshold
its config did not list) raises `NotRecorded`: never reaching a threshold and never recording it are different
things.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from bnexp.config import QUANTITIES, ProbeConfig
from bnexp.records import (
    DistributionProbe,
    EvalModes,
    EvalRecord,
    IcsProbe,
    LandscapeProbe,
    LongSequences,
    ScaleInvariance,
    StepCost,
    WeightsProbe,
)
from bnexp.report_sections import median  # of the finite values; NaN for none, which `measure` turns into None
from bnexp.results import NEAR_CHANCE, Run, curve_quantities, per_step, value_at

Measure = Callable[[Run, Any], Any]


class NotRecorded(Exception):
    """A run did not record what a quantity needs: the claim cannot be measured on it."""


def _layer_pick(values: list[float | None], at: Any, skip_first: bool = False, skip_last: bool = False) -> float | None:
    """values[at − 1] for a 1-based layer number (None past the last layer), or their mean over the layers
    (without the first or last) that have a finite value."""
    if at is not None:
        i = int(at) - 1
        return values[i] if 0 <= i < len(values) else None
    chosen = values[1 if skip_first else 0 : len(values) - 1 if skip_last else len(values)]
    finite = [v for v in chosen if v is not None and math.isfinite(v)]
    return statistics.fmean(finite) if finite else None


def _summary_field(field: str) -> Measure:
    return lambda run, at: getattr(run.summary, field)  # None for a diverged run: it has no accuracy


def _landscape(key: Callable[[LandscapeProbe], float]) -> Measure:
    def measure(run: Run, at: Any) -> float | None:
        records = run.probe(LandscapeProbe)
        return median([key(p) for p in records]) if records else None

    return measure


def _ics_shift(run: Run, at: Any) -> float | None:
    records = run.probe(IcsProbe)
    if not records:
        return None
    layers = len(records[0].shift)
    per_layer = [median([p.shift[i] for p in records if len(p.shift) == layers]) for i in range(layers)]
    return _layer_pick(per_layer, at, skip_first=True)  # layer 1 has no layer before it: 0 by definition


def _drift(field: str) -> Measure:
    def measure(run: Run, at: Any) -> float | None:
        if not run.probes:
            return None
        per_layer = []
        for layer in sorted({p.layer for p in run.probes}):
            values = [getattr(p, field) for p in sorted(run.probes, key=lambda p: p.step) if p.layer == layer]
            per_layer.append(statistics.pstdev(values) if len(values) > 1 else None)
        return _layer_pick(per_layer, at)

    return measure


def _unit_percentile_drift(run: Run, at: Any) -> float | None:
    """sd over probe steps of one unit's 15th/50th/85th percentiles (the BN paper's Fig. 1b, c), averaged."""
    records = sorted((p for p in run.probes if p.unit_percentiles), key=lambda p: p.step)
    if len(records) < 2:
        return None
    series = [[p.unit_percentiles[k] for p in records] for k in records[0].unit_percentiles]
    if any(v is None for values in series for v in values):  # a non-finite percentile: no spread to measure
        return None
    return statistics.fmean(statistics.pstdev(values) for values in series)


def _last_probes(run: Run) -> list[DistributionProbe]:
    """The distribution records of the last probed step, by layer."""
    last = max(p.step for p in run.probes)
    return sorted((p for p in run.probes if p.step == last), key=lambda p: p.layer)


def _feature_sd_spread(run: Run, at: Any) -> float | None:
    """Largest over smallest sd of the probed layers' values at the last probed step (E3: 'differ widely')."""
    if not run.probes:
        return None
    sds = [p.std for p in _last_probes(run)]
    return max(sds) / min(sds) if min(sds) > 0 else None


def _linear_region_share(run: Run, at: Any) -> float | None:
    """Share of the probed activation inputs with |x| < 1 (where a sigmoid is nearly linear, a3's reason for γ
    and β) at the last probed step: histogram bins whose centre lies inside (−1, 1), over all values counted (those
    outside the histogram's range included); per layer, or the mean over layers."""
    if not run.probes:
        return None
    lo, hi = (run.config.get("probes") or {}).get("range") or ProbeConfig().range  # older configs: the default
    shares = []
    for p in _last_probes(run):
        width = (hi - lo) / len(p.hist)
        inside = sum(c for i, c in enumerate(p.hist) if abs(lo + (i + 0.5) * width) < 1)
        shares.append(inside / p.n)  # n ≥ 1: bnexp.records refuses a distribution of no values
    return _layer_pick(shares, at)


WINDOW = 3  # evaluations averaged at each end for weight norms and effective steps


def _weights(field: str) -> Measure:
    """First-window mean over last-window mean (effective_step: how much it shrank) or the reverse (weight
    norm: how much it grew), per layer; without `at`, the mean over all layers but the last (no norm after it).
    A layer with a null (non-finite) value in either window has no ratio."""

    def ratio(first: list[float | None], last: list[float | None]) -> float | None:
        if None in first or None in last:
            return None
        a, b = statistics.fmean(first), statistics.fmean(last)  # type: ignore[arg-type]
        if min(a, b) <= 0:
            return None
        return a / b if field == "effective_step" else b / a

    def measure(run: Run, at: Any) -> float | None:
        records = run.probe(WeightsProbe)
        if len(records) < 2 * WINDOW:
            return None
        layers = range(len(getattr(records[0], field)))
        first, last = records[:WINDOW], records[-WINDOW:]
        ratios = [ratio([getattr(p, field)[i] for p in first], [getattr(p, field)[i] for p in last]) for i in layers]
        return _layer_pick(ratios, at, skip_last=True)

    return measure


def _eval_mode(run: Run, at: Any) -> float | None:
    """Accuracy of one row of the eval_modes analysis; `at` is "mode" or "mode@N" (batch size or batches)."""
    result = run.analysis(EvalModes)
    if result is None:
        return None
    mode, _, size = str(at).partition("@")
    for row in result.rows:
        if row.mode == mode and (not size or int(size) in (row.batch_size, row.batches)):
            return row.test_acc
    return None


def _running_var_gap(run: Run, at: Any) -> float | None:
    result = run.analysis(EvalModes)
    gaps = result.population_gap if result else []  # none recorded without BN (no running statistics)
    return _layer_pick([g.var_log_ratio for g in gaps], at) if gaps else None


def _scale(field: str) -> Measure:
    def measure(run: Run, at: Any) -> float | None:
        result = run.analysis(ScaleInvariance)
        rows = [row for layer in result.layers for row in layer.without_eps] if result else []
        values = [getattr(row, field) for row in rows]
        if not values or None in values:  # no layer measured, or a non-finite error: no largest error
            return None
        return max(abs(v - 1) for v in values) if field == "grad_ratio" else max(values)

    return measure


def _curve(key: str) -> Measure:
    def measure(run: Run, at: Any) -> float | None:
        per_epoch = run.summary.steps_per_epoch
        q = curve_quantities(per_step(run.train), per_epoch, thresholds=(at,) if at else ())
        return q[f"steps_to_loss_below_{at:g}"] if key == "steps_to" else q[key]

    return measure


def _last_evals(run: Run, k: int) -> list[EvalRecord] | None:
    """The run's last k evaluations, None where it has fewer or one of them has no test accuracy (diverged)."""
    last = run.evals[-k:]
    return last if len(last) == k and all(r.test_acc is not None for r in last) else None


def _test_acc_last_mean(run: Run, at: Any) -> float | None:
    """Test accuracy averaged over the last `at` evaluations: an endpoint less noisy than the last one alone."""
    last = _last_evals(run, int(at))
    return statistics.fmean(r.test_acc for r in last) if last else None


def _generalization_gap(run: Run, at: Any) -> float | None:
    """Training-subset accuracy minus test accuracy, averaged over the last `at` evaluations."""
    if run.evals and all(r.train_acc is None for r in run.evals):
        raise NotRecorded(f"{run.name} recorded no training accuracy (its config has no eval_train_subset)")
    last = _last_evals(run, int(at))
    if not last or any(r.train_acc is None for r in last):
        return None
    return statistics.fmean(r.train_acc - r.test_acc for r in last)


def _steps_to_test_acc(run: Run, at: Any) -> float | None:
    """The first evaluation step at or above the accuracy, None where the run never got there."""
    hits = run.summary.time_to_threshold or {}
    if f"{at:g}" not in hits:
        listed = ", ".join(hits) or "none"
        raise NotRecorded(f"{run.name} recorded no time to test accuracy {at:g} (its thresholds: {listed})")
    hit = hits[f"{at:g}"]
    return hit.step if hit is not None else None


def _step_time_ratio(run: Run, at: Any) -> float | None:
    result = run.analysis(StepCost)
    return result.ratio_to_batchnorm if result else None


def _long_sequence_acc(run: Run, at: Any) -> float | None:
    result = run.analysis(LongSequences)
    rows = result.rows if result else []
    return next((r.test_acc for r in rows if r.stretch == at), None)


MEASURES: dict[str, Measure] = {
    "final_test_acc": _summary_field("final_test_acc"),
    "best_test_acc": _summary_field("best_test_acc"),
    "final_train_loss": _summary_field("final_train_loss"),
    "test_acc_at_epoch": lambda run, at: value_at(run, "test_acc", epoch=at),
    "test_acc_at_step": lambda run, at: value_at(run, "test_acc", step=int(at)),
    "test_acc_last_mean": _test_acc_last_mean,
    "generalization_gap": _generalization_gap,
    "steps_to_loss_below": _curve("steps_to"),
    "last_epoch_loss": _curve("final_loss"),
    "steps_to_test_acc": _steps_to_test_acc,
    "left_chance_step": lambda run, at: run.course.left_chance_step,
    "near_chance_at_end": lambda run, at: run.course.outcome in NEAR_CHANCE,
    "landscape_loss_range": _landscape(lambda p: p.loss_max - p.loss_min),
    "landscape_grad_predictiveness": _landscape(lambda p: p.grad_predictiveness),
    "landscape_beta_smoothness": _landscape(lambda p: p.beta_smoothness),
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
    "step_time_ratio_to_bn": _step_time_ratio,
    "long_sequence_acc": _long_sequence_acc,
}
if set(MEASURES) != set(QUANTITIES):  # the declaration and the measures must name the same quantities
    raise RuntimeError(f"bnexp.config.QUANTITIES and MEASURES differ: {set(MEASURES) ^ set(QUANTITIES)}")

# "steps until": a run that never got there took longer than its whole length (censored), which a mean cannot hold
CENSORED = ("steps_to_loss_below", "steps_to_test_acc", "left_chance_step")
# accuracies: a run that diverged has none, and is worse than any run that trained
ACCURACIES = (
    "final_test_acc",
    "best_test_acc",
    "test_acc_at_epoch",
    "test_acc_at_step",
    "test_acc_last_mean",
    "eval_mode_acc",
    "long_sequence_acc",
)


def measure(run: Run, quantity: str, at: Any) -> float | bool | None:
    """One run's value of a claim quantity: True/False for a proportion, else a finite number, or None where the
    run has none (a non-finite value counts as none)."""
    value = MEASURES[quantity](run, at)
    if value is None or isinstance(value, bool):
        return value
    return float(value) if math.isfinite(value) else None
