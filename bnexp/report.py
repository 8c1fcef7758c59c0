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
from bnexp import sequential, stats
from bnexp.claims import claim_rows, claims_markdown
from bnexp.records import Device, SeriesRecord
from bnexp.report_sections import SECTIONS, outcome_stats, stat_text
from bnexp.results import (
    CHANCE_MARGIN,
    FINISHED,
    NEAR_CHANCE,
    SMOOTH_STEPS,
    Experiment,
    Run,
    curve_quantities,
    mean_sd,
    per_step,
    status_counts,
    value_at,
)
from bnexp.wording import plural

VERDICT_RULE = (
    "an article's single run is one sample: it is consistent with ours when it lies inside the 95 % prediction "
    "interval of one new run from our n seeds (mean ± t(n − 1) · sd · √(1 + 1/n)); p is how likely a run lies at "
    "least that far from our mean; with fewer than 2 seeds there is no interval (undecided)"
)


def verdict(reference: float, values: list[float]) -> tuple[str, float | None]:
    """supported / contradicted / undecided at n = N for an article's single value against our runs' values,
    and the two-sided p of the article's value under our predictive distribution."""
    if not values:
        return "not measured", None
    if len(values) < 2:
        return f"undecided at n = {len(values)}", None
    pred = stats.prediction_interval(values, reference)
    return ("supported" if pred.low <= reference <= pred.high else "contradicted"), pred.p_value


def _compare(variant: str, runs: list[Run], key: str, at: str, ref: float, values: list[float | None]) -> dict:
    mean, sd, n = mean_sd(values)
    word, p = verdict(ref, [v for v in values if v is not None and math.isfinite(v)])
    return {
        "variant": variant,
        "quantity": key,
        "at": at,
        "reference": ref,
        "mean": mean,
        "sd": sd,
        "n": n,
        "difference": mean - ref if n else None,
        "verdict": word,
        "p_value": p,
    }


def comparisons(exp: Experiment) -> list[dict[str, Any]]:
    """One row per reference value of the experiment's config."""
    ref = exp.reference or {}
    rows = []
    for variant, points in (ref.get("test_acc_at_epoch") or {}).items():
        runs = exp.finished(variant)
        for epoch, value in sorted(points.items()):
            vals = [value_at(r, "test_acc", epoch=epoch) for r in runs]
            rows.append(_compare(variant, runs, "test_acc", f"epoch {epoch}", value, vals))
    for variant, points in (ref.get("test_acc_at_step") or {}).items():
        runs = exp.finished(variant)
        for step, value in sorted(points.items()):
            vals = [value_at(r, "test_acc", step=step) for r in runs]
            rows.append(_compare(variant, runs, "test_acc", f"step {step}", value, vals))
    for variant, quantities in (ref.get("final") or {}).items():
        runs = exp.finished(variant)
        for key, value in quantities.items():
            rows.append(
                _compare(variant, runs, key, "end of run", value, [getattr(r.summary, key, None) for r in runs])
            )
    return rows


QUANTITIES = ("steps_to_loss_below_2", "steps_to_loss_below_1", "steps_to_loss_below_0.5", "final_loss", "min_loss")


def series_comparisons(exp: Experiment) -> list[dict[str, Any]]:
    """Our runs against the author's published curves, on the same smoothing (`results.curve_quantities`)."""
    rows = []
    for variant, refs in exp.reference_series().items():
        runs = exp.finished(variant)
        for ref in refs:
            if ref.quantity != "train_loss_per_step":
                rows += _accuracy_series_rows(variant, runs, ref)
                continue
            theirs = curve_quantities(ref.values, ref.steps_per_epoch)
            ours = [curve_quantities(per_step(r.train), r.summary.steps_per_epoch) for r in runs]
            for key in QUANTITIES:
                mean, sd, n = mean_sd([q[key] for q in ours])
                reference = theirs[key]
                row = {
                    "variant": variant,
                    "quantity": key,
                    "reference": reference,
                    "mean": mean,
                    "sd": sd,
                    "n": n,
                    "runs": len(runs),
                    "difference": mean - reference if n and reference is not None else None,
                    "source": f"{ref.key} ({ref.file})",
                }
                row["verdict"], row["p_value"] = _series_verdict(reference, [q[key] for q in ours], len(runs))
                rows.append(row)
            same = sum(q["outcome"] == theirs["outcome"] for q in ours)
            rows.append(
                {
                    "variant": variant,
                    "quantity": "outcome",
                    "reference": theirs["outcome"],
                    "runs": len(runs),
                    "matching": same,
                    "outcomes": dict(Counter(q["outcome"] for q in ours)),
                    "source": f"{ref.key} ({ref.file})",
                    "verdict": f"{same} of {len(runs)} seeds" if runs else "not measured",
                }
            )
    return rows


def _series_verdict(reference: float | None, values: list[float | None], runs: int) -> tuple[str, float | None]:
    """The author's value of a curve quantity (None: never reached) against ours (None: never reached)."""
    reached = [v for v in values if v is not None]
    if not runs:
        return "not measured", None
    if reference is None:
        return (
            ("supported", None)
            if not reached
            else (f"contradicted ({len(reached)}/{runs} reached it; the article's run did not)", None)
        )
    if not reached:
        return "contradicted (never reached)", None
    word, p = verdict(reference, reached)
    return word + ("" if len(reached) == runs else f", {len(reached)}/{runs} reached it"), p


def _accuracy_series_rows(variant: str, runs: list[Run], ref: SeriesRecord) -> list[dict[str, Any]]:
    values = ref.values
    key = "train_acc" if ref.quantity == "train_acc_per_epoch" else "test_acc"
    rows = []
    for name, reference, pick in (("best", max(values), max), ("final", values[-1], lambda v: v[-1])):
        mine = [pick([v for e in r.evals if (v := getattr(e, key)) is not None] or [math.nan]) for r in runs]
        mean, sd, n = mean_sd(mine)
        word, p = verdict(reference, [v for v in mine if math.isfinite(v)])
        rows.append(
            {
                "variant": variant,
                "quantity": f"{name}_{key}",
                "reference": reference,
                "mean": mean,
                "sd": sd,
                "n": n,
                "runs": len(runs),
                "difference": mean - reference if n else None,
                "source": f"{ref.key} ({ref.file})",
                "verdict": word,
                "p_value": p,
            }
        )
    return rows


def variant_rows(exp: Experiment) -> list[dict[str, Any]]:
    rows = []
    for variant, runs in exp.variants.items():
        done = [r for r in runs if r.status in FINISHED]  # an unfinished run counts in its status only
        row: dict[str, Any] = {
            "variant": variant,
            "n": len(runs),
            "status": status_counts(runs),
            "outcomes": dict(Counter(r.course.outcome for r in done)),
        }
        for key in ("final_test_acc", "best_test_acc", "final_train_acc", "final_generalization_gap"):
            if (stat := outcome_stats(done, key)) is not None:
                row[key] = stat
        left = [r.course.left_chance_step for r in done]
        if any(v is not None for v in left):
            mean, sd, n = mean_sd(left)
            row["left_chance_step"] = {"mean": mean, "sd": sd, "n": n}
        thresholds: dict[str, Any] = {}
        for t in exp.config.get("thresholds") or []:
            hits = [(r.summary.time_to_threshold or {}).get(f"{t:g}") for r in done]
            mean, sd, n = mean_sd([h.step if h else None for h in hits])
            thresholds[f"{t:g}"] = {
                "mean_step": mean if n else None,
                "sd": sd if n else None,
                "reached": n,
                "of": len(done),
            }
        if thresholds:
            row["steps_to_threshold"] = thresholds
        speeds = [r.summary.images_per_s for r in runs if r.summary.images_per_s]
        row["images_per_s_median"] = statistics.median(speeds) if speeds else None
        rows.append(row)
    return rows


def problem_runs(exp: Experiment) -> list[dict[str, Any]]:
    out = []
    for r in exp.runs:
        course = r.course
        if r.status != "completed" or course.outcome in NEAR_CHANCE:
            reason = r.summary.error or (
                f"diverged at step {r.summary.diverged_at_step}" if r.status == "diverged" else ""
            )
            if course.outcome == "never_left_chance":
                reason = _join(reason, f"never left chance (no logged loss below {CHANCE_MARGIN} ln C)")
            elif course.outcome == "fell_back":
                dead = r.summary.final_dead_units
                reason = _join(
                    reason,
                    f"left chance at step {course.left_chance_step}, then fell back to it"
                    + (f"; {dead:.0%} of ReLU units dead at the end" if dead is not None else ""),
                )
            out.append({"run": r.name, "status": r.status, "reason": reason})
    return out


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _interim_looks(e: Experiment) -> dict[str, Any] | None:
    """Seeds added after the claims were looked at: the looks, the final number of seeds, the chance of a wrong
    verdict on a true null that uncorrected 5 % looks allow, and the group-sequential boundary for those looks
    (each look's nominal level, and the chance they allow), both by simulated paired t tests."""
    if not (looks := e.interim_looks):
        return None
    final = len(e.config["seeds"])
    every = [*looks, final]
    levels = e.look_levels
    return {
        "looks": looks,
        "seeds": final,
        "error": sequential.achieved_level(every, [sequential.LEVEL] * len(every)),
        "levels": levels,
        "error_with_boundary": sequential.achieved_level(every, levels),
    }


def conditions(e: Experiment) -> list[dict[str, Any]]:
    """The runs grouped by what bitwise reproduction needs to match (bnexp.training.summary.provenance): torch
    version, torch threads (of every segment), device, and the CPU and its kernels (unknown for runs recorded before
    they were)."""
    groups: dict[tuple, list[Any]] = {}
    for run in e.runs:
        device = run.summary.device or Device()
        threads = sorted({s.torch_threads for s in run.summary.segments or []} - {None}) or [device.torch_threads]
        gpu = device.name if device.type not in (None, "cpu") else None
        key = (
            run.summary.versions.torch if run.summary.versions else None,
            "/".join(str(t) for t in threads),
            device.type or "cpu",
            gpu,
            device.cpu,
            device.cpu_capability,
        )
        groups.setdefault(key, []).append(run.config.get("seed"))
    fields = ("torch", "threads", "device", "gpu", "cpu", "cpu_capability")
    return [
        {
            **dict(zip(fields, key, strict=True)),
            "runs": len(seeds),
            "seeds": sorted({s for s in seeds if isinstance(s, int)}),
        }
        for key, seeds in groups.items()
    ]


def _seed_ranges(seeds: list[int]) -> str:
    """[0, 1, 2, 5] -> '0–2, 5'."""
    spans: list[list[int]] = []
    for seed in seeds:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(f"{a}" if a == b else f"{a}, {b}" if b == a + 1 else f"{a}–{b}" for a, b in spans)


def conditions_text(groups: list[dict[str, Any]]) -> str:
    """One sentence: under which conditions the runs were made (bitwise reproducible only within one)."""

    def one(g: dict[str, Any]) -> str:
        threads = (
            "torch threads not recorded"
            if g["threads"] == "None"
            else f"{g['threads']} torch thread{'s' if g['threads'] != '1' else ''}"
        )
        cpu = ", ".join(x for x in (g["cpu_capability"], g["cpu"]) if x) or "not recorded"
        where = f"on {g['device']} ({g['gpu']})" if g["gpu"] else f"on CPU ({cpu})"
        seeds = f" (seed{'s' if len(g['seeds']) != 1 else ''} {_seed_ranges(g['seeds'])})" if g["seeds"] else ""
        return f"torch {g['torch']}, {threads}, {where}: {plural(g['runs'], 'run')}{seeds}"

    if not groups:
        return ""
    head = (
        "Made under one set of conditions: "
        if len(groups) == 1
        else f"Made under {len(groups)} sets of conditions (a run repeats bitwise only under its own): "
    )
    return head + "; ".join(one(g) for g in groups) + "."


def build(experiments: list[Experiment]) -> dict[str, Any]:
    """The whole report as plain data (what --json prints)."""
    runs = [r for e in experiments for r in e.runs]
    versions = sorted({f"torch {r.summary.versions.torch}" for r in runs if r.summary.versions})
    devices = sorted({f"{d.type} ({d.name})" for r in runs if (d := r.summary.device)})
    return {
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bnexp": bnexp.__version__,
        "torch": versions,
        "devices": devices,
        "verdict_rule": VERDICT_RULE,
        "claims": claim_rows(experiments),
        "experiments": [
            {
                "name": e.name,
                "description": e.config.get("description", ""),
                "directory": e.dir.name,
                "data": {
                    "dataset": (e.config.get("dataset") or {}).get("name"),
                    **{k: v for k, v in (e.meta.get("data") or {}).items() if k != "source"},
                },
                "reference_source": (e.reference or {}).get("source"),
                "reference_note": (e.reference or {}).get("note"),
                "comparisons": comparisons(e),
                "series_comparisons": series_comparisons(e),
                "variants": variant_rows(e),
                "problem_runs": problem_runs(e),
                "left_out": e.left_out,
                "conditions": conditions(e),
                "interim_looks": _interim_looks(e),
                "sections": {s.name: s.build(e) for s in SECTIONS if s.applies(e)},
                "figures": sorted(str(p) for p in (e.dir / "figures").glob("*.png") if p.is_file()),
            }
            for e in experiments
        ],
    }


def _claims_figure_link(out_dir: Path) -> list[str]:
    """A link to the claims figure `bnexp plot` wrote beside the report, where there is one."""
    if not (out_dir / "claims.png").is_file():
        return []
    return ["Every claim's effect, interval and verdict at a glance: [claims.png](claims.png) (`bnexp plot`).", ""]


def to_markdown(report: dict[str, Any], out_dir: Path) -> str:
    """Markdown with figure links relative to `out_dir` (where the report is written)."""
    lines = [
        "# bnexp reproduction report",
        "",
        f"Generated {report['generated']} by bnexp {report['bnexp']}; {', '.join(report['torch']) or 'torch ?'}; "
        f"devices: {', '.join(report['devices']) or '?'}.",
        f"Experiments: {', '.join(e['name'] for e in report['experiments'])}.",
        "",
        *_claims_figure_link(out_dir),
        *claims_markdown(report["claims"], report["experiments"], out_dir),
        "## Per-experiment tables",
        "",
        f"Article values against ours: {report['verdict_rule']}. Curves against the author's published series: "
        f"{SERIES_RULE}. img/s is each run's own training throughput, with whatever else ran on the machine beside "
        "it (other runs, builds): a record, not a benchmark; costs are compared side by side by `bnexp bench` and "
        "the cost analyses.",
        "",
    ]
    for e in report["experiments"]:
        lines += [f"### {e['name']}", "", e["description"], ""]
        if e["data"]:
            d = e["data"]
            digest = f" (sha256 of images and labels {d['sha256'][:16]}…)" if d.get("sha256") else ""
            lines += [
                f"Data: {d.get('train_images')} train / {d.get('test_images')} test images of "
                f"{d.get('dataset')}{digest}.",
                "",
            ]
        if e["conditions"]:
            lines += [conditions_text(e["conditions"]), ""]
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
                measured = stat_text({"mean": c["mean"], "sd": c["sd"], "n": c["n"]}) if c["n"] else "–"
                diff = f"{c['difference']:+.4f}" if c["difference"] is not None else "–"
                p = f" (p = {c['p_value']:.2g})" if c.get("p_value") is not None else ""
                lines.append(
                    f"| {c['variant']} | {c['quantity']} | {c['at']} | {c['reference']:.4f} | {measured} | "
                    f"{diff} | **{c['verdict']}**{p} |"
                )
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
            lines += [
                f"- `{p['run']}`: {p['status']}" + (f", {p['reason']}" if p["reason"] else "")
                for p in e["problem_runs"]
            ]
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
    "loss of the last epoch and the lowest window, each judged by the prediction interval above over the seeds "
    "that reached it; outcome: trained, fell_back (left chance, ended near ln C) or never_left_chance, and how many "
    "of our seeds share the article's"
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
            spread = f" ± {_fmt(r['sd'])}" if r["n"] > 1 else ""
            ours = f"{_fmt(r['mean'])}{spread} (n={r['n']}{reached})" if r["n"] else "never"
        p = f" (p = {r['p_value']:.2g})" if r.get("p_value") is not None else ""
        lines.append(f"| {r['variant']} | {r['quantity']} | {_fmt(r['reference'])} | {ours} | **{r['verdict']}**{p} |")
    return [*lines, ""]


def _variant_table(variants: list[dict[str, Any]]) -> list[str]:
    has_gap = any("final_generalization_gap" in v for v in variants)
    header = "| variant | runs | final test acc | best test acc |" + (" train acc | gap |" if has_gap else "")
    lines = [
        header + " left chance (step) | steps to thresholds (mean) | img/s as trained (median) |",
        "|---|---|---:|---:|" + ("---:|---:|" if has_gap else "") + "---:|---|---:|",
    ]
    for v in variants:
        status = ", ".join(f"{n} {s}" for s, n in v["status"].items())
        thresholds = "; ".join(
            f"{t}: {s['mean_step']:.0f} ({s['reached']}/{s.get('of', v['n'])})" if s["reached"] else f"{t}: never"
            for t, s in (v.get("steps_to_threshold") or {}).items()
        )
        gap = (
            f" {stat_text(v.get('final_train_acc'))} | {stat_text(v.get('final_generalization_gap'))} |"
            if has_gap
            else ""
        )
        speed = f"{v['images_per_s_median']:.0f}" if v["images_per_s_median"] else "–"
        left = v.get("left_chance_step")
        left_text = (
            f"{left['mean']:.0f}" + (f" ± {left['sd']:.0f}" if left["n"] > 1 else "") + f" (n={left['n']})"
            if left
            else "never"
        )
        accuracies = f"{stat_text(v.get('final_test_acc'))} | {stat_text(v.get('best_test_acc'))}"
        lines.append(f"| {v['variant']} | {status} | {accuracies} |{gap} {left_text} | {thresholds or '–'} | {speed} |")
    return [*lines, ""]
