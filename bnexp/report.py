"""The reproduction report: measured values (mean ± sd over seeds) next to the articles' figures, with a
plain verdict, as Markdown or JSON. Reads the run store only."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bnexp
from bnexp.results import Experiment, Run, mean_sd, status_counts, value_at

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


def variant_rows(exp: Experiment) -> list[dict[str, Any]]:
    rows = []
    for variant, runs in exp.variants.items():
        row: dict[str, Any] = {"variant": variant, "n": len(runs), "status": status_counts(runs)}
        for key in ("final_test_acc", "best_test_acc", "final_train_acc", "final_generalization_gap"):
            mean, sd, n = mean_sd([r.summary.get(key) for r in runs])
            if n:
                row[key] = {"mean": mean, "sd": sd, "n": n}
        thresholds: dict[str, Any] = {}
        for t in exp.config.get("thresholds") or []:
            hits = [(r.summary.get("time_to_threshold") or {}).get(f"{t:g}") for r in runs]
            mean, sd, n = mean_sd([h["step"] if h else None for h in hits])
            thresholds[f"{t:g}"] = {"mean_step": mean if n else None, "sd": sd if n else None, "reached": n}
        if thresholds:
            row["steps_to_threshold"] = thresholds
        speeds = [r.summary.get("images_per_s") for r in runs if r.summary.get("images_per_s")]
        row["images_per_s_median"] = sorted(speeds)[len(speeds) // 2] if speeds else None
        rows.append(row)
    return rows


def problem_runs(exp: Experiment) -> list[dict[str, Any]]:
    out = []
    for r in exp.runs:
        if r.status != "completed" or r.summary.get("not_training"):
            reason = r.summary.get("error") or (
                f"diverged at step {r.summary.get('diverged_at_step')}" if r.status == "diverged" else ""
            )
            if r.summary.get("not_training"):
                reason = (reason + "; " if reason else "") + "not training (test accuracy <= 1.5x chance after epoch 1)"
            out.append({"run": r.name, "status": r.status, "reason": reason})
    return out


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
                "variants": variant_rows(e),
                "problem_runs": problem_runs(e),
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
        else:
            lines += ["No numeric reference for this experiment: verdict **no reference**.", ""]
        has_gap = any("final_generalization_gap" in v for v in e["variants"])
        header = "| variant | runs | final test acc | best test acc |" + (" train acc | gap |" if has_gap else "")
        lines += [header + " steps to thresholds (mean) | img/s (median) |",
                  "|---|---|---:|---:|" + ("---:|---:|" if has_gap else "") + "---|---:|"]  # fmt: skip
        for v in e["variants"]:
            status = ", ".join(f"{n} {s}" for s, n in v["status"].items())
            thresholds = "; ".join(
                f"{t}: {s['mean_step']:.0f} ({s['reached']}/{v['n']})" if s["reached"] else f"{t}: never"
                for t, s in (v.get("steps_to_threshold") or {}).items()
            )
            gap = f" {_pm(v.get('final_train_acc'))} | {_pm(v.get('final_generalization_gap'))} |" if has_gap else ""
            speed = f"{v['images_per_s_median']:.0f}" if v["images_per_s_median"] else "–"
            lines.append(f"| {v['variant']} | {status} | {_pm(v.get('final_test_acc'))} | "
                         f"{_pm(v.get('best_test_acc'))} |{gap} {thresholds or '–'} | {speed} |")  # fmt: skip
        lines.append("")
        if e["problem_runs"]:
            lines += ["Runs that failed, diverged or did not train:", ""]
            lines += [f"- `{p['run']}`: {p['status']}" + (f", {p['reason']}" if p["reason"] else "")
                      for p in e["problem_runs"]]  # fmt: skip
            lines.append("")
        for fig in e["figures"]:
            rel = os.path.relpath(fig, out_dir)
            lines += [f"![{e['name']} {Path(fig).stem}]({rel})", ""]
    return "\n".join(lines)
