"""The claims in Markdown: the table that opens REPORT.md with the rule each verdict follows and the notes of each
claim, the verdicts counted per experiment, and the short excerpt for a README's generated block."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from bnexp.claims.text import signed

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


REGISTRATION_RULE = (
    "each claim records the day its id first appeared in configs/ (`registered`); a claim registered after its "
    "experiment's runs began (the earliest start in the run files, or the config's `runs_began` where earlier runs "
    "were replaced) is *exploratory*: shown in the table, not counted among the headline's verdicts (seeds started "
    "after a registration are not yet told apart from the earlier ones). Days are compared, so a claim registered on "
    "the day its runs began counts as registered first. Each equivalence margin says why it is that wide "
    "(`margin_why`, in the config)"
)


def effect_text(row: dict[str, Any]) -> str:
    if row.get("effect") is None:
        return "–"
    low, high = row.get("interval", [math.nan, math.nan])
    ci = f" [{signed(low)}, {signed(high)}]" if not math.isnan(low) else ""
    if "interval90" in row and not math.isnan(row["interval90"][0]):  # the interval an equivalence is decided by
        ci += f"; 90 %: [{signed(row['interval90'][0])}, {signed(row['interval90'][1])}]"
    return signed(row["effect"]) + ci


def _p_text(row: dict[str, Any]) -> str:
    """The p-value of the test that decided: a contradicted rank comparison is decided by the opposite
    direction's test (the claim's own p is then near 1)."""
    if row["verdict"].startswith("contradicted") and row.get("p_opposite") is not None:
        return f" (p = {row['p_opposite']:.2g}, the opposite direction)"
    return f" (p = {row['p_value']:.2g})" if row.get("p_value") is not None else ""


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a '|' of its own (a norm, ‖x‖ written as ||x||) would split the row."""
    return str(text).replace("|", "\\|")


def claims_markdown(rows: list[dict[str, Any]], experiments: list[dict[str, Any]], out_dir: Any) -> list[str]:
    """The claims table that opens REPORT.md, with the notes of each claim below it."""
    if not rows:
        return []
    figures = {(e["name"], Path(f).stem): f for e in experiments for f in e["figures"]}
    identities = [r for r in rows if r["kind"] == "identity"]  # checked as unit tests: no row, no count
    lines = [
        "## Claims at a glance",
        "",
        f"How each is decided: {CLAIMS_RULE}.",
        "",
        f"Registration: {REGISTRATION_RULE}.",
        "",
        *claims_tally(rows),
        "",
        "| claim | source | compared | measured | effect [95 % CI] | n | verdict | figure |",
        "|---|---|---|---|---:|---:|---|---|",
    ]
    for r in rows:
        if r["kind"] == "identity":
            continue
        compared = f"{r['quantity']}: {r['compared']}"
        fig = figures.get((r["experiment"], r["figure"] or ""))
        link = f"[{r['figure']}]({os.path.relpath(fig, out_dir)})" if fig else "–"
        p = _p_text(r)
        lines.append(
            f"| {_cell(r['claim'])} (`{r['id']}`{marker(r)}) | {_cell(r['source'])} | {_cell(compared)} | "
            f"{_cell(r.get('measured', '–'))} | {effect_text(r)} | {r['n']} | **{r['verdict']}**{p} | "
            f"{link} |"
        )
    notes = [(r["id"], n) for r in rows for n in r.get("notes", [])]
    if notes:
        lines += ["", "Notes:", ""] + [f"- `{i}`: {n}" for i, n in notes]
    return [*lines, *_quotes(rows), *_identities(identities), *_looks_paragraph(experiments), ""]


def marker(row: dict[str, Any]) -> str:
    """Beside a claim's id: its kind unless it is an article's claim, and *exploratory* if it was registered
    after its experiment's runs began."""
    kind = "" if row["kind"] == "article" else f", {row['kind']}"
    return kind + (f", *exploratory*, registered {row['registered']}" if row.get("exploratory") else "")


def _tags(row: dict[str, Any]) -> str:
    """After a claim in a list: its kind unless it is an article's claim, and whether it is exploratory."""
    tags = ([] if row["kind"] == "article" else [row["kind"]]) + (["exploratory"] if row.get("exploratory") else [])
    return f" ({', '.join(tags)})" if tags else ""


def _identities(rows: list[dict[str, Any]]) -> list[str]:
    """The claims that hold by construction: each checked exactly by a unit test (a test over seeds says nothing
    about an identity), listed with what the runs showed, and counted nowhere."""
    if not rows:
        return []
    return [
        "",
        "### Identities (checked as unit tests, not counted)",
        "",
        *(
            f"- {r['claim']} (`{r['id']}`, {r['experiment']}): checked exactly by `{r['checked_by']}`; "
            f"on the runs: {r.get('measured', '–')}, difference {effect_text(r)}, n = {r['n']}"
            for r in rows
        ),
    ]


def _quotes(rows: list[dict[str, Any]]) -> list[str]:
    """Each quoting claim in the article's own words (the tests check that they occur in the article's file)."""
    quoted = [r for r in rows if r.get("quote")]
    if not quoted:
        return []
    lines = [f"- `{r['id']}` ({r['source'][:2]}): {r['quote']}" for r in quoted]
    return ["", "In the articles' own words:", "", *lines]


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
BEYOND = ("literature", "diagnostic", "consistency")  # the kinds tallied beneath the articles' claims


def claims_tally(rows: list[dict[str, Any]]) -> list[str]:
    """The headline: the articles' own claims, one row per experiment, how many got each verdict; beneath it one
    row per other kind (literature, diagnostic, consistency). Identities are counted nowhere."""
    articles = [r for r in rows if r["kind"] == "article"]
    lines = [
        "The articles' claims (the verdicts count confirmatory claims; exploratory: registered after the "
        "experiment's runs began, their verdicts shown in the report, not counted here):",
        "",
        *_counts("experiment", articles, "experiment"),
    ]
    if len(articles) > 1:
        lines.append(_count_row("**all**", articles))
    beyond = [r for r in rows if r["kind"] in BEYOND]
    if beyond:
        lines += ["", "Beyond the articles' claims (not counted above):", "", *_counts("kind", beyond, "kind")]
    return lines


def _counts(label: str, rows: list[dict[str, Any]], key: str) -> list[str]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[key], []).append(r)
    header = f"| {label} | claims | " + " | ".join(VERDICT_KINDS) + " | exploratory |"
    return [header, "|---|" + "---:|" * (len(VERDICT_KINDS) + 2), *(_count_row(k, g) for k, g in groups.items())]


def _count_row(name: str, rows: list[dict[str, Any]]) -> str:
    counts = dict.fromkeys([*VERDICT_KINDS, "exploratory"], 0)
    for r in rows:
        counts[
            "exploratory" if r.get("exploratory") else next(k for k in VERDICT_KINDS if r["verdict"].startswith(k))
        ] += 1
    return f"| {name} | {len(rows)} | " + " | ".join(str(c or "–") for c in counts.values()) + " |"


def claims_excerpt(rows: list[dict[str, Any]], readme_dir: Any, results: Any) -> list[str]:
    """The claims in short, for a README: the verdicts counted per experiment, then every claim our runs
    contradict, with its effect, interval and n; every claim is in the report (written by `bnexp report
    --readme`)."""
    report = os.path.relpath(Path(results) / "REPORT.md", readme_dir)
    lines = [
        f"Generated by `bnexp report results --readme README.md` from the committed runs; every claim with its "
        f"method, source and notes: [{report}]({report}#claims-at-a-glance).",
        "",
        *claims_tally(rows),
        "",
    ]
    contradicted = [r for r in rows if r["verdict"].startswith("contradicted") and r["kind"] != "identity"]
    for title, kinds in (("Contradicted by our runs:", ("article",)), ("Beyond the articles, contradicted:", BEYOND)):
        listed = [r for r in contradicted if r["kind"] in kinds]
        if listed:
            lines += [title, ""]
            lines += [
                f"- {r['experiment']}: {r['claim']}{_tags(r)}: "
                f"{effect_text(r) if r.get('effect') is not None else r.get('measured', '–') + _p_text(r)}, "
                f"n = {r['n']}"
                for r in listed
            ]
            lines.append("")
    identities = [f"`{r['id']}`" for r in rows if r["kind"] == "identity"]
    if identities:
        lines.append(f"Identities (checked as unit tests, not counted): {', '.join(identities)}.")
    return lines
