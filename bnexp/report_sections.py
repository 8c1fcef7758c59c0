"""Report sections for what an experiment recorded beyond accuracy: outcomes per learning rate, accuracy vs
batch size, evaluation modes, loss landscape, internal covariate shift, distribution drift, scale invariance,
data parallelism. Each section applies when its data is in the run store and gives plain data plus Markdown
(the same registry pattern as the figures)."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bnexp import stats
from bnexp.records import (
    DistributionProbe,
    EvalModeRow,
    EvalModes,
    IcsProbe,
    LandscapeProbe,
    ScaleInvariance,
    WeightsProbe,
)
from bnexp.results import FINISHED, NEAR_CHANCE, Experiment, Run, mean_sd
from bnexp.wording import plural


@dataclass(frozen=True)
class Section:
    name: str
    applies: Callable[[Experiment], bool]
    build: Callable[[Experiment], dict[str, Any]]  # {"data": ..., "markdown": [lines]}


SECTIONS: list[Section] = []


def section(name: str, applies: Callable[[Experiment], bool]):
    def register(build: Callable[[Experiment], dict[str, Any]]) -> Callable[[Experiment], dict[str, Any]]:
        SECTIONS.append(Section(name, applies, build))
        return build

    return register


# -- helpers -----------------------------------------------------------------------------------------------


def model_tag(run: Run) -> str:
    """The model part of a run's name (no grid values, lr or seed)."""
    return run.summary.model or run.tag


def outcome_stats(runs: list[Run], key: str) -> dict[str, Any] | None:
    """Mean, sd and n of the runs' `key`; where the runs that have a value ended differently (trained / fell back
    / never left chance / diverged), per outcome instead ({"by_outcome": ...}): no single mean describes them.
    None where no run has a value."""
    cells = {}
    for outcome in dict.fromkeys(r.course.outcome for r in runs):  # in the runs' order
        mean, sd, n = mean_sd([getattr(r.summary, key) for r in runs if r.course.outcome == outcome])
        if n:
            cells[outcome] = {"mean": mean, "sd": sd, "n": n}
    if len(cells) > 1:
        return {"by_outcome": cells}
    return next(iter(cells.values()), None)


def stat_text(stat: dict[str, Any] | None, digits: int = 4) -> str:
    """mean ± sd (n=N); one run has no sd; a cell of mixed outcomes is given per outcome."""
    if not stat:
        return "–"
    if "by_outcome" in stat:
        return "; ".join(f"{o.replace('_', ' ')}: {stat_text(s, digits)}" for o, s in stat["by_outcome"].items())
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f} (n=1)"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f} (n={stat['n']})"


def pm(values: list[float | None], digits: int = 4) -> str:
    """`stat_text` of plain values."""
    mean, sd, n = mean_sd(values)
    return stat_text({"mean": mean, "sd": sd, "n": n} if n else None, digits)


def table(header: list[str], rows: list[list[str]], align: str = "---:") -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", *[align] * (len(header) - 1)]) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def by_model(exp: Experiment) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = defaultdict(list)
    for run in exp.runs:
        out[model_tag(run)].append(run)
    return dict(out)


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else math.nan


# -- sections ----------------------------------------------------------------------------------------------


def _lrs(exp: Experiment) -> list[float]:
    return sorted({r.config["lr"] for r in exp.runs})


@section("outcomes_by_lr", applies=lambda exp: len(_lrs(exp)) > 1 and not any(r.grid for r in exp.runs))
def outcomes_by_lr(exp: Experiment) -> dict[str, Any]:
    """How often a run ends near chance (never left it, or left and fell back) at each lr, per model."""
    data = []
    models = by_model(exp)
    for tag, runs in models.items():
        for lr in _lrs(exp):
            at = [r for r in runs if r.config["lr"] == lr and r.status in FINISHED]  # no rate counts a part of a run
            if not at:
                continue
            outcomes = [r.course.outcome for r in at]
            k = sum(o in NEAR_CHANCE for o in outcomes)
            ci = stats.wilson(k, len(at))
            lo, hi = ci.low, ci.high
            data.append(
                {
                    "model": tag,
                    "lr": lr,
                    "n": len(at),
                    "near_chance_at_end": k,
                    "fell_back": outcomes.count("fell_back"),
                    "never_left_chance": outcomes.count("never_left_chance"),
                    "diverged": outcomes.count("diverged"),
                    "ci95": [lo, hi],
                    "final_test_acc": mean_sd([r.summary.final_test_acc for r in at])[:2],
                    "dead_units_when_near_chance": [
                        r.summary.final_dead_units for r in at if r.course.outcome in ("fell_back",)
                    ],
                }
            )
    rows = []
    for d in data:
        dead = [x for x in d["dead_units_when_near_chance"] if x is not None]
        rows.append(
            [
                d["model"],
                f"{d['lr']:g}",
                f"{d['near_chance_at_end']}/{d['n']}",
                f"{d['ci95'][0]:.2f}-{d['ci95'][1]:.2f}",
                str(d["fell_back"]),
                str(d["never_left_chance"]),
                str(d["diverged"]),
                ", ".join(f"{x:.0%}" for x in dead) or "–",
            ]
        )
    md = [
        "**Runs that end near chance** (last logged training loss above 0.9 ln C), per model and learning rate; "
        "95 % Wilson interval for the rate; dead units = share of ReLU units never positive on 512 fixed "
        "training images at the end, for runs that fell back:",
        "",
        *table(
            [
                "model",
                "lr",
                "near chance at the end",
                "95 % CI of the rate",
                "fell back",
                "never left chance",
                "diverged",
                "dead units (fell back)",
            ],
            rows,
        ),
    ]
    return {"data": data, "markdown": md}


def _grid_key(exp: Experiment, key: str) -> bool:
    return any(key in r.grid for r in exp.runs)


@section("batch_size", applies=lambda exp: _grid_key(exp, "batch_size"))
def batch_size(exp: Experiment) -> dict[str, Any]:
    sizes = sorted({r.grid["batch_size"] for r in exp.runs})
    data, rows = {}, []
    for tag, runs in by_model(exp).items():
        cells = {b: [r for r in runs if r.grid["batch_size"] == b] for b in sizes}
        stat = {b: outcome_stats(cell, "final_test_acc") for b, cell in cells.items()}
        data[tag] = {b: {"acc": stat[b], "lr": next((r.config["lr"] for r in cell), None)} for b, cell in cells.items()}
        rows.append([tag, *(stat_text(s) for s in stat.values())])
    lrs = next(iter(data.values()))
    md = [
        "**Final test accuracy (eval mode) by batch size** (mean ± sd over seeds; per outcome where the seeds "
        "ended differently; lr " + ", ".join(f"{lrs[b]['lr']:g} at {b}" for b in sizes) + "):",
        "",
        *table(["model", *(f"batch {b}" for b in sizes)], rows),
    ]
    return {"data": {t: {str(b): v for b, v in d.items()} for t, d in data.items()}, "markdown": md}


MODE_LABELS = {
    "a_eval": "(a) eval mode, running statistics",
    "b_batch_stats_shuffled": "(b) batch statistics, shuffled test batches",
    "c_batch_stats_homogeneous": "(c) batch statistics, one class per batch",
    "c_eval_homogeneous": "(c) eval mode, the same one-class batches",
    "c_batch_stats_near_duplicates": "(c) batch statistics, near-duplicate batches",
    "c_eval_near_duplicates": "(c) eval mode, the same near-duplicate batches",
    "d_lost_running_stats": "(d) running statistics lost (mean 0, var 1)",
    "e_reestimated": "(e) re-estimated from training batches",
}


def mode_key(row: EvalModeRow) -> str:
    if row.batches is not None:
        extra = f", {plural(row.batches, 'batch', 'batches')}"
    elif row.batch_size and row.mode.startswith("b_"):
        extra = f", batch {row.batch_size}"
    else:
        extra = ""
    return MODE_LABELS.get(row.mode, row.mode) + extra


@section("eval_modes", applies=lambda exp: any(r.analysis(EvalModes) is not None for r in exp.runs))
def eval_modes(exp: Experiment) -> dict[str, Any]:
    per_variant: dict[str, dict[str, list[float]]] = {}
    gaps: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for variant, runs in exp.variants.items():
        for run in runs:
            result = run.analysis(EvalModes)
            if result is None:
                continue
            for row in result.rows:
                per_variant.setdefault(variant, {}).setdefault(mode_key(row), []).append(row.test_acc)
            for g in result.population_gap:
                gaps.setdefault(variant, {}).setdefault(g.layer, []).append((g.mean_gap, g.var_log_ratio))
    variants = list(per_variant)
    modes = list(dict.fromkeys(m for v in per_variant.values() for m in v))
    rows = [[m, *(pm(per_variant[v].get(m, []), 3) for v in variants)] for m in modes]
    md = [
        "**Test accuracy by evaluation mode** (trained final weights; mean ± sd over seeds):",
        "",
        *table(["mode", *variants], rows),
    ]
    if gaps:
        layers = sorted({layer for g in gaps.values() for layer in g})
        rows = [
            [
                v,
                *(
                    f"{statistics.fmean(x[0] for x in gaps[v][layer]):.3f} / "
                    f"{statistics.fmean(x[1] for x in gaps[v][layer]):.3f}"
                    if layer in gaps[v]
                    else "–"
                    for layer in layers
                ),
            ]
            for v in gaps
        ]
        md += [
            "",
            "**Running statistics vs the training set's population statistics** (per norm layer: mean "
            "|running mean - population mean| in population sd / mean |log(running var / population var)|; "
            "population statistics of each layer's input over all training images, model in eval mode):",
            "",
            *table(["variant", *(f"layer {layer + 1}" for layer in layers)], rows),
        ]
    return {
        "data": {
            "accuracy": per_variant,
            "population_gap": {v: {str(k): x for k, x in g.items()} for v, g in gaps.items()},
        },
        "markdown": md,
    }


@section("landscape", applies=lambda exp: any(r.probe(LandscapeProbe) for r in exp.runs))
def landscape(exp: Experiment) -> dict[str, Any]:
    keys = {
        "loss range (max - min over the step sizes)": lambda p: p.loss_max - p.loss_min,
        "gradient predictiveness (max ‖g(η) − g‖)": lambda p: p.grad_predictiveness,
        "effective beta-smoothness": lambda p: p.beta_smoothness,
    }
    data = {}
    for variant, runs in exp.variants.items():
        data[variant] = {
            name: mean_sd([median([f(p) for p in r.probe(LandscapeProbe)]) for r in runs]) for name, f in keys.items()
        }
    rows = [[v, *(f"{d[k][0]:.3g} ± {d[k][1]:.2g}" for k in keys)] for v, d in data.items()]
    md = [
        "**Loss landscape along the gradient** (Santurkar et al. Fig. 4): per run the median over probe steps, "
        "then mean ± sd over seeds:",
        "",
        *table(["variant", *keys], rows),
    ]
    return {"data": data, "markdown": md}


@section("ics", applies=lambda exp: any(r.probe(IcsProbe) for r in exp.runs))
def ics(exp: Experiment) -> dict[str, Any]:
    data = {}
    for variant, runs in exp.variants.items():
        records = [p for r in runs for p in r.probe(IcsProbe)]
        layers = records[0].layers
        data[variant] = {
            "layers": layers,
            "shift": [median([p.shift[i] for p in records]) for i in range(len(layers))],
            "cosine": [median([p.cosine[i] for p in records]) for i in range(len(layers))],
        }
    layers = next(iter(data.values()))["layers"]
    rows = [[v, *(f"{s:.3g} / {c:.3f}" for s, c in zip(d["shift"], d["cosine"], strict=True))] for v, d in data.items()]
    md = [
        "**Internal covariate shift** (Santurkar et al. sec. 2.2): per layer ‖G − G′‖ / cos(G, G′), medians "
        "over all probe steps and seeds (layer 1 has no layer before it: shift 0 by definition):",
        "",
        *table(["variant", *layers], rows),
    ]
    return {"data": data, "markdown": md}


def _drift(records: list[DistributionProbe], layer: int) -> tuple[float, float, float]:
    recs = sorted((p for p in records if p.layer == layer), key=lambda p: p.step)
    means, stds = [p.mean for p in recs], [p.std for p in recs]
    steps = [abs(b - a) for a, b in itertools.pairwise(means)]
    return (
        statistics.pstdev(means) if len(means) > 1 else 0.0,
        statistics.pstdev(stds) if len(stds) > 1 else 0.0,
        statistics.fmean(steps) if steps else 0.0,
    )


@section(
    "distribution_drift",
    applies=lambda exp: bool((exp.config.get("probes") or {}).get("every_steps")) and any(r.probes for r in exp.runs),
)
def distribution_drift(exp: Experiment) -> dict[str, Any]:
    data = {}
    for variant, runs in exp.variants.items():
        layers = sorted({p.layer for r in runs for p in r.probes})
        data[variant] = {layer: [_drift(r.probes, layer) for r in runs] for layer in layers}
    layers = sorted({layer for d in data.values() for layer in d})
    rows = [
        [
            v,
            *(
                f"{statistics.fmean(x[0] for x in d[layer]):.3f} / {statistics.fmean(x[1] for x in d[layer]):.3f}"
                if layer in d
                else "–"
                for layer in layers
            ),
        ]
        for v, d in data.items()
    ]
    md = [
        "**How much each layer's pre-activation distribution moves during training**: sd over the probe steps "
        "of the layer's mean / of its standard deviation (mean over seeds; larger = less stable):",
        "",
        *table(["variant", *(f"layer {layer + 1}" for layer in layers)], rows),
    ]
    return {"data": {v: {str(k): x for k, x in d.items()} for v, d in data.items()}, "markdown": md}


@section(
    "scale_invariance",
    applies=lambda exp: any(r.analysis(ScaleInvariance) is not None or r.probe(WeightsProbe) for r in exp.runs),
)
def scale_invariance(exp: Experiment) -> dict[str, Any]:
    md: list[str] = []
    data: dict[str, Any] = {"identity": {}, "weights": {}}
    for variant, runs in exp.variants.items():
        results = [x for r in runs if (x := r.analysis(ScaleInvariance)) is not None and x.has_batchnorm]
        if results:
            scales = results[0].scales
            worst = {
                kind: [
                    max(
                        row.output_rel_error
                        for x in results
                        for layer in x.layers
                        for row in getattr(layer, kind)
                        if row.a == a
                    )
                    for a in scales
                ]
                for kind in ("with_eps", "without_eps")
            }
            ratio = [
                [row.grad_ratio for x in results for layer in x.layers for row in layer.without_eps if row.a == a]
                for a in scales
            ]
            ranges = [[min(r), max(r)] for r in ratio]
            data["identity"][variant] = {"scales": scales, **worst, "grad_ratio_range": ranges}
    if data["identity"]:
        for variant, d in data["identity"].items():
            rows = [
                [f"{a:g}", f"{e:.1e}", f"{z:.1e}", f"{lo:.6f}-{hi:.6f}"]
                for a, e, z, (lo, hi) in zip(
                    d["scales"], d["with_eps"], d["without_eps"], d["grad_ratio_range"], strict=True
                )
            ]
            md += [
                f"**Scale invariance of BN on {variant}'s trained layers** (worst layer and seed): relative change "
                "of BN's output when the weights before it are scaled by a, with the layer's eps and with eps = 0, "
                "and a·‖∂L/∂(aW)‖ / ‖∂L/∂W‖ (1 when the gradient scales as 1/a; eps = 0):",
                "",
                *table(["a", "output change (eps 1e-5)", "output change (eps 0)", "gradient ratio"], rows),
                "",
            ]
    for variant, runs in exp.variants.items():
        per_run = [r.probe(WeightsProbe) for r in runs if r.probe(WeightsProbe)]
        if per_run:
            layers = per_run[0][0].layers
            first = [[p[0].weight_norm[i] for p in per_run] for i in range(len(layers))]
            last = [[p[-1].weight_norm[i] for p in per_run] for i in range(len(layers))]
            step0 = [[p[0].effective_step[i] for p in per_run] for i in range(len(layers))]
            step1 = [[p[-1].effective_step[i] for p in per_run] for i in range(len(layers))]
            data["weights"][variant] = {
                "layers": layers,
                "norm_first": first,
                "norm_last": last,
                "step_first": step0,
                "step_last": step1,
            }
    if data["weights"]:
        rows = [
            [
                v,
                name,
                f"{statistics.fmean(d['norm_first'][i]):.2f} -> {statistics.fmean(d['norm_last'][i]):.2f}",
                f"{statistics.fmean(d['step_first'][i]):.2e} -> {statistics.fmean(d['step_last'][i]):.2e}",
            ]
            for v, d in data["weights"].items()
            for i, name in enumerate(d["layers"])
        ]
        md += [
            "**Weight norms and effective steps** (first -> last evaluation, mean over seeds; effective step = "
            "‖W after − W before‖ / ‖W before‖ of the step before the evaluation):",
            "",
            *table(["variant", "layer", "‖W‖", "effective step"], rows),
        ]
    return {"data": data, "markdown": md}


@section("data_parallel", applies=lambda exp: _grid_key(exp, "processes"))
def data_parallel(exp: Experiment) -> dict[str, Any]:
    data = {}
    for variant, runs in exp.variants.items():
        results = [result for r in runs if (result := r.analysis(EvalModes)) is not None]
        gaps = [statistics.fmean(g.mean_gap for g in result.population_gap) for result in results]
        var_gaps = [statistics.fmean(g.var_log_ratio for g in result.population_gap) for result in results]
        exp_cfg = runs[0].config
        data[variant] = {
            "processes": exp_cfg.get("processes", 1),
            "bn_sync": exp_cfg.get("bn_sync"),
            "bn_running_stats": exp_cfg.get("bn_running_stats"),
            "final_test_acc": mean_sd([r.summary.final_test_acc for r in runs]),
            "mean_gap": mean_sd(gaps),
            "var_gap": mean_sd(var_gaps),
            "images_per_s": median([r.summary.images_per_s for r in runs]),
        }
    rows = [
        [
            v,
            str(d["processes"]),
            str(d["bn_sync"]),
            str(d["bn_running_stats"]),
            f"{d['final_test_acc'][0]:.4f} ± {d['final_test_acc'][1]:.4f}",
            f"{d['mean_gap'][0]:.3f} / {d['var_gap'][0]:.3f}" if d["mean_gap"][2] else "–",
            f"{d['images_per_s']:.0f}",
        ]
        for v, d in data.items()
    ]
    md = [
        "**Data-parallel BN**: final test accuracy, and the running statistics' distance from the population "
        "statistics (mean over layers of |Δmean|/sd / |log var ratio|), and training images/s (median):",
        "",
        *table(
            [
                "variant",
                "processes",
                "bn_sync",
                "running stats",
                "final test acc",
                "running-stats gap",
                "img/s as trained",
            ],
            rows,
        ),
    ]
    return {"data": data, "markdown": md}
