"""The reproduction report: measured values (mean ± sd over seeds) next to the articles' figures, with a
plain verdict, as Markdown or JSON. Reads the run store only."""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bnexp
from bnexp.report_sections import SECTIONS
from bnexp.results import (
    CHANCE_MARGIN,
    SMOOTH_STEPS,
    Experiment,
    Run,
    curve_quantities,
    mean_sd,
    per_step,
    status_counts,
    value_at,
)  # fmt: skip

ACC_TOLERANCE = 0.01  # absolute, for accuracies
REL_TOLERANCE = 0.05  # relative, for other quantities (losses)
VERDICT_RULE = (
    f"reproduced when |measured mean - reference| <= max(2 sd, {ACC_TOLERANCE}) for accuracies and "
    f"<= max(2 sd, {REL_TOLERANCE:.0%} of the reference) for other quantities; the articles report single runs"
)


def verdict(reference: float, mean: float, sd: float, n: int, key: str) -> str:
    if n == 0:
        return "not measured"
    tolerance = max(2 * sd, ACC_TOLERANCE if "acc" in key else REL_TOLERANCE * abs(reference))
    return "reproduced" if abs(mean - reference) <= tolerance else "not reproduced"


def _compare(variant: str, runs: list[Run], key: str, at: str, ref: float, values: list[float | None]) -> dict:
    mean, sd, n = mean_sd(values)
    return {
        "variant": variant, "quantity": key, "at": at, "reference": ref, "mean": mean, "sd": sd, "n": n,
        "difference": mean - ref if n else None, "verdict": verdict(ref, mean, sd, n, key),
    }  # fmt: skip


def comparisons(exp: Experiment) -> list[dict[str, Any]]:
    """One row per reference value of the experiment's config."""
    ref = exp.reference or {}
    rows = []
    for variant, points in (ref.get("test_acc_at_epoch") or {}).items():
        runs = exp.variants.get(variant, [])
        for epoch, value in sorted(points.items()):
            vals = [value_at(r, "test_acc", epoch=epoch) for r in runs]
            rows.append(_compare(variant, runs, "test_acc", f"epoch {epoch}", value, vals))
    for variant, points in (ref.get("test_acc_at_step") or {}).items():
        runs = exp.variants.get(variant, [])
        for step, value in sorted(points.items()):
            vals = [value_at(r, "test_acc", step=step) for r in runs]
            rows.append(_compare(variant, runs, "test_acc", f"step {step}", value, vals))
    for variant, quantities in (ref.get("final") or {}).items():
        runs = exp.variants.get(variant, [])
        for key, value in quantities.items():
            rows.append(_compare(variant, runs, key, "end of run", value, [r.summary.get(key) for r in runs]))
    return rows


STEP_TOLERANCE = (20, 0.10)  # steps-to-threshold: at least one 20-step window and 10 % of the reference
QUANTITIES = ("steps_to_loss_below_2", "steps_to_loss_below_1", "steps_to_loss_below_0.5", "final_loss", "min_loss")


def series_comparisons(exp: Experiment) -> list[dict[str, Any]]:
    """Our runs against the author's published curves, on the same smoothing (`results.curve_quantities`)."""
    rows = []
    for variant, refs in exp.reference_series().items():
        runs = exp.variants.get(variant, [])
        for ref in refs:
            if ref.get("quantity") != "train_loss_per_step":
                rows += _accuracy_series_rows(variant, runs, ref)
                continue
            per_epoch = ref.get("steps_per_epoch")
            theirs = curve_quantities(ref["values"], per_epoch)
            ours = [curve_quantities(per_step(r.train), r.summary.get("steps_per_epoch")) for r in runs]
            for key in QUANTITIES:
                mean, sd, n = mean_sd([q[key] for q in ours])
                reference = theirs[key]
                row = {"variant": variant, "quantity": key, "reference": reference, "mean": mean, "sd": sd, "n": n,
                       "runs": len(runs), "difference": mean - reference if n and reference is not None else None,
                       "source": f"{ref['key']} ({ref['file']})"}  # fmt: skip
                row["verdict"] = _series_verdict(key, reference, mean, sd, n, len(runs))
                rows.append(row)
            same = sum(q["outcome"] == theirs["outcome"] for q in ours)
            rows.append({"variant": variant, "quantity": "outcome", "reference": theirs["outcome"], "runs": len(runs),
                         "matching": same, "outcomes": dict(Counter(q["outcome"] for q in ours)),
                         "source": f"{ref['key']} ({ref['file']})",
                         "verdict": f"{same} of {len(runs)} seeds" if runs else "not measured"})  # fmt: skip
    return rows


def _series_verdict(key: str, reference: float | None, mean: float, sd: float, n: int, runs: int) -> str:
    if not runs:
        return "not measured"
    if reference is None:
        return "reproduced" if n == 0 else f"not reproduced ({n}/{runs} reached it; the article's run did not)"
    if n == 0:
        return "not reproduced (never reached)"
    if key.startswith("steps_to"):
        tolerance = max(2 * sd, STEP_TOLERANCE[0], STEP_TOLERANCE[1] * reference)
        reached = "" if n == runs else f", {n}/{runs} reached it"
        return ("reproduced" if abs(mean - reference) <= tolerance else "not reproduced") + reached
    return verdict(reference, mean, sd, n, key)


def _accuracy_series_rows(variant: str, runs: list[Run], ref: dict[str, Any]) -> list[dict[str, Any]]:
    values = ref["values"]
    key = "train_acc" if ref["quantity"] == "train_acc_per_epoch" else "test_acc"
    rows = []
    for name, reference, pick in (("best", max(values), max), ("final", values[-1], lambda v: v[-1])):
        mine = [pick([e[key] for e in r.evals if e.get(key) is not None] or [math.nan]) for r in runs]
        mean, sd, n = mean_sd(mine)
        rows.append({"variant": variant, "quantity": f"{name}_{key}", "reference": reference, "mean": mean, "sd": sd,
                     "n": n, "runs": len(runs), "difference": mean - reference if n else None,
                     "source": f"{ref['key']} ({ref['file']})", "verdict": verdict(reference, mean, sd, n, key)})
    return rows  # fmt: skip


def variant_rows(exp: Experiment) -> list[dict[str, Any]]:
    rows = []
    for variant, runs in exp.variants.items():
        row: dict[str, Any] = {"variant": variant, "n": len(runs), "status": status_counts(runs),
                               "outcomes": dict(Counter(r.course["outcome"] for r in runs))}  # fmt: skip
        for key in ("final_test_acc", "best_test_acc", "final_train_acc", "final_generalization_gap"):
            mean, sd, n = mean_sd([r.summary.get(key) for r in runs])
            if n:
                row[key] = {"mean": mean, "sd": sd, "n": n}
        left = [r.course["left_chance_step"] for r in runs]
        if any(v is not None for v in left):
            mean, sd, n = mean_sd(left)
            row["left_chance_step"] = {"mean": mean, "sd": sd, "n": n}
        thresholds: dict[str, Any] = {}
        for t in exp.config.get("thresholds") or []:
            hits = [(r.summary.get("time_to_threshold") or {}).get(f"{t:g}") for r in runs]
            mean, sd, n = mean_sd([h["step"] if h else None for h in hits])
            thresholds[f"{t:g}"] = {"mean_step": mean if n else None, "sd": sd if n else None, "reached": n}
        if thresholds:
            row["steps_to_threshold"] = thresholds
        speeds = [r.summary.get("images_per_s") for r in runs if r.summary.get("images_per_s")]
        row["images_per_s_median"] = statistics.median(speeds) if speeds else None
        rows.append(row)
    return rows


def problem_runs(exp: Experiment) -> list[dict[str, Any]]:
    out = []
    for r in exp.runs:
        course = r.course
        if r.status != "completed" or course["outcome"] in ("never_left_chance", "fell_back"):
            reason = r.summary.get("error") or (
                f"diverged at step {r.summary.get('diverged_at_step')}" if r.status == "diverged" else ""
            )
            if course["outcome"] == "never_left_chance":
                reason = _join(reason, f"never left chance (no logged loss below {CHANCE_MARGIN} ln C)")
            elif course["outcome"] == "fell_back":
                dead = r.summary.get("final_dead_units")
                reason = _join(reason, f"left chance at step {course['left_chance_step']}, then fell back to it"
                               + (f"; {dead:.0%} of ReLU units dead at the end" if dead is not None else ""))
            out.append({"run": r.name, "status": r.status, "reason": reason})  # fmt: skip
    return out


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def build(experiments: list[Experiment]) -> dict[str, Any]:
    """The whole report as plain data (what --json prints)."""
    runs = [r for e in experiments for r in e.runs]
    versions = sorted({f"torch {r.summary['versions']['torch']}" for r in runs if r.summary.get("versions")})
    devices = sorted({f"{d['type']} ({d['name']})" for r in runs if (d := r.summary.get("device"))})
    return {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bnexp": bnexp.__version__,
        "torch": versions,
        "devices": devices,
        "verdict_rule": VERDICT_RULE,
        "experiments": [
            {
                "name": e.name,
                "description": e.config.get("description", ""),
                "directory": str(e.dir),
                "data": e.meta.get("data", {}),
                "reference_source": (e.reference or {}).get("source"),
                "reference_note": (e.reference or {}).get("note"),
                "comparisons": comparisons(e),
                "series_comparisons": series_comparisons(e),
                "variants": variant_rows(e),
                "problem_runs": problem_runs(e),
                "left_out": e.left_out,
                "sections": {s.name: s.build(e) for s in SECTIONS if s.applies(e)},
                "figures": sorted(str(p) for p in (e.dir / "figures").glob("*") if p.is_file()),
            }
            for e in experiments
        ],
    }


def _pm(stat: dict[str, Any] | None, digits: int = 4) -> str:
    if not stat:
        return "–"
    return f"{stat['mean']:.{digits}f} ± {stat['sd']:.{digits}f} (n={stat['n']})"


def to_markdown(report: dict[str, Any], out_dir: Path) -> str:
    """Markdown with figure links relative to `out_dir` (where the report is written)."""
    lines = [
        "# bnexp reproduction report",
        "",
        f"Generated {report['generated']} by bnexp {report['bnexp']}; {', '.join(report['torch']) or 'torch ?'}; "
        f"devices: {', '.join(report['devices']) or '?'}.",
        f"Experiments: {', '.join(e['name'] for e in report['experiments'])}. Verdict rule: {report['verdict_rule']}.",
        f"Curves against the author's published series: {SERIES_RULE}.",
        "",
    ]
    for e in report["experiments"]:
        lines += [f"## {e['name']}", "", e["description"], ""]
        if e["data"]:
            d = e["data"]
            lines += [f"Data: {d.get('train_images')} train / {d.get('test_images')} test images from "
                      f"`{d.get('source')}`.", ""]  # fmt: skip
        if e["reference_source"]:
            lines += [f"Reference: {e['reference_source']}.", ""]
        if e["reference_note"]:
            lines += [f"Article's claim: {e['reference_note']}", ""]
        if e["comparisons"]:
            lines += [
                "| variant | quantity | at | article | measured (mean ± sd, n) | difference | verdict |",
                "|---|---|---|---:|---:|---:|---|",
            ]
            for c in e["comparisons"]:
                measured = f"{c['mean']:.4f} ± {c['sd']:.4f} (n={c['n']})" if c["n"] else "–"
                diff = f"{c['difference']:+.4f}" if c["difference"] is not None else "–"
                lines.append(f"| {c['variant']} | {c['quantity']} | {c['at']} | {c['reference']:.4f} | {measured} | "
                             f"{diff} | **{c['verdict']}** |")  # fmt: skip
            lines.append("")
        if e["series_comparisons"]:
            lines += _series_table(e["series_comparisons"])
        if not e["comparisons"] and not e["series_comparisons"]:
            lines += ["No numeric reference for this experiment: verdict **no reference**.", ""]
        lines += _variant_table(e["variants"])
        for section in e["sections"].values():
            lines += section["markdown"] + [""]
        if e["problem_runs"]:
            lines += ["Runs that failed, diverged or did not train:", ""]
            lines += [f"- `{p['run']}`: {p['status']}" + (f", {p['reason']}" if p["reason"] else "")
                      for p in e["problem_runs"]]  # fmt: skip
            lines.append("")
        if e["left_out"]:
            lines += ["Left out of this report (not grouped with the runs above):", ""]
            lines += [f"- {x}" for x in e["left_out"]] + [""]
        for fig in e["figures"]:
            rel = os.path.relpath(fig, out_dir)
            lines += [f"![{e['name']} {Path(fig).stem}]({rel})", ""]
    return "\n".join(lines)


SERIES_RULE = (
    f"the loss histories (ours: {SMOOTH_STEPS}-step window means built from the logged window means; the author's: "
    f"{SMOOTH_STEPS}-step window means of the per-step values) give the first step each threshold is reached, the mean "
    "loss of the last epoch and the lowest window; steps are reproduced when within max(2 sd, "
    f"{STEP_TOLERANCE[0]} steps, {STEP_TOLERANCE[1]:.0%}); outcome: trained, fell_back (left chance, ended near ln C) "
    "or never_left_chance, and how many of our seeds share the article's"
)


def _fmt(value: Any) -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def _series_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| variant | quantity | article's run | ours (mean ± sd, n) | verdict |", "|---|---|---:|---:|---|"]
    for r in rows:
        if r["quantity"] == "outcome":
            ours = ", ".join(f"{n} {o}" for o, n in r["outcomes"].items()) or "–"
        else:
            reached = f", reached by {r['n']}/{r['runs']}" if r["n"] != r["runs"] else ""
            ours = f"{_fmt(r['mean'])} ± {_fmt(r['sd'])} (n={r['n']}{reached})" if r["n"] else "never"
        lines.append(f"| {r['variant']} | {r['quantity']} | {_fmt(r['reference'])} | {ours} | **{r['verdict']}** |")
    return [*lines, ""]


def _variant_table(variants: list[dict[str, Any]]) -> list[str]:
    has_gap = any("final_generalization_gap" in v for v in variants)
    header = "| variant | runs | final test acc | best test acc |" + (" train acc | gap |" if has_gap else "")
    lines = [header + " left chance (step) | steps to thresholds (mean) | img/s (median) |",
             "|---|---|---:|---:|" + ("---:|---:|" if has_gap else "") + "---:|---|---:|"]  # fmt: skip
    for v in variants:
        status = ", ".join(f"{n} {s}" for s, n in v["status"].items())
        thresholds = "; ".join(
            f"{t}: {s['mean_step']:.0f} ({s['reached']}/{v['n']})" if s["reached"] else f"{t}: never"
            for t, s in (v.get("steps_to_threshold") or {}).items()
        )
        gap = f" {_pm(v.get('final_train_acc'))} | {_pm(v.get('final_generalization_gap'))} |" if has_gap else ""
        speed = f"{v['images_per_s_median']:.0f}" if v["images_per_s_median"] else "–"
        left = v.get("left_chance_step")
        left_text = f"{left['mean']:.0f} ± {left['sd']:.0f} (n={left['n']})" if left else "never"
        lines.append(f"| {v['variant']} | {status} | {_pm(v.get('final_test_acc'))} | "
                     f"{_pm(v.get('best_test_acc'))} |{gap} {left_text} | {thresholds or '–'} | {speed} |")  # fmt: skip
    return [*lines, ""]
