"""The claims in Markdown: the table that opens REPORT.md with the rule each verdict follows and the notes of each
claim, the verdicts counted per experiment, and the short excerpt for a README's generated block."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bnexp.claims.result import ClaimResult, Decision
from bnexp.claims.text import VERDICT_KINDS, signed, verdict_kind

CLAIMS_BEGIN, CLAIMS_END = "<!-- claims:begin -->", "<!-- claims:end -->"  # README's generated block

CLAIMS_RULE = (
    "greater / less: difference of means with its 95 % interval (paired t by seed when both groups ran the same "
    "seeds, Welch's t otherwise), supported when the interval lies on the claimed side of 0, contradicted when on "
    "the other (p: the t test's, two-sided); proportions: Boschloo's exact test for two groups, the exact binomial "
    "test against a value (exact tests hold their level at a few runs per group; Boschloo's rather than Fisher's, "
    "which conditions on a total of successes the design never fixed and so errs conservative), shown with "
    "Newcombe's hybrid score interval of the difference (Wilson's against a value); equivalent: two one-sided tests "
    "at 5 % each, supported when the 90 % interval lies inside ±margin (p: the larger one-sided p), contradicted "
    "when the 95 % interval lies beyond it (p: twice the smaller one-sided p of that test), the smaller p shown; "
    "consistent: the article's single run against ours on one summary for all its points (chosen in issue 34, after "
    "the committed runs: these claims are exploratory), the mean over the points it "
    "reports (its epochs), against each of our runs' mean over the same points: consistent with ours when inside "
    "the 95 % prediction interval of one new run (t, n − 1 df), outside ours (p: how likely a run lies that far "
    "from our mean) otherwise, the offset (ours − article) in the effect column. "
    "Groups whose runs ended differently are counted per outcome, never averaged: "
    "for greater / less every run is ranked (Mann-Whitney U, exact; an accuracy's diverged run ranks lowest; p: "
    "twice the smaller one-sided p), for equivalent and against a value they are compared within the runs that "
    "trained; where no run of a group trained, accuracies are compared by the share of runs that trained "
    "(Boschloo), other quantities over every run. Every p is on one scale, a decision at 5 %: an exact "
    "test's two-sided p is twice its smaller one-sided p (each direction at 2.5 %), TOST's is its own. "
    "Multiplicity: an experiment's article claims are one family, whose verdicts are decided by their "
    "Holm-adjusted p (below 5 %; the raw verdict beside it where they differ); q is the Benjamini–Hochberg q over "
    "every claim of the report with a p; claims of other kinds are in no family and keep their own p's verdict, "
    "as do an experiment's with `multiplicity: none`. Undecided claims give the seeds that would decide the raw "
    "test at 80 % power from the observed effect and spread (more under Holm): noncentral t at one-sided 2.5 % for "
    "means, at 5 % for an equivalence (each of its tests, sized on the distance to the nearer margin); for "
    "proportions the normal approximation, two-sample or one-sample against a fixed value, a guide to the exact "
    "test; none where the estimate points the other way"
)


REGISTRATION_RULE = (
    "each claim records the day its id first appeared in configs/ (`registered`); a claim registered after its "
    "experiment's runs began (the earliest start in the run files, or the config's `runs_began` where earlier runs "
    "were replaced) is *exploratory*: shown in the table, not counted among the headline's verdicts (seeds started "
    "after a registration are not yet told apart from the earlier ones). Days are compared, so a claim registered on "
    "the day its runs began counts as registered first. Each equivalence margin says why it is that wide "
    "(`margin_why`, in the config). The claims' kinds, and so which of them form an experiment's family of article "
    "claims, were assigned on 2026-12-07, after every committed run (issue 33): that choice was made with the "
    "results in hand, and results/README.md says which claims it moved out of the articles' tally"
)


def effect_text(d: Decision) -> str:
    if d.effect is None:
        return "–"
    low, high = d.interval or (math.nan, math.nan)
    ci = f" [{signed(low)}, {signed(high)}]" if not math.isnan(low) else ""
    if d.interval90 is not None and not math.isnan(d.interval90[0]):  # the interval an equivalence is decided by
        ci += f"; 90 %: [{signed(d.interval90[0])}, {signed(d.interval90[1])}]"
    return signed(d.effect) + ci


def _p(p: float | None) -> str:
    return f"{p:.2g}" if p is not None else "–"


def _contradiction_text(r: ClaimResult) -> str:
    """The effect and its interval, or (a rank comparison has no effect) what was measured and the deciding p."""
    d = r.decision
    return effect_text(d) if d.effect is not None else f"{d.measured or '–'} (p = {_p(d.p_value)})"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a '|' of its own (a norm, ‖x‖ written as ||x||) would split the row."""
    return str(text).replace("|", "\\|")


def claims_markdown(rows: list[ClaimResult], experiments: list[dict[str, Any]], out_dir: Any) -> list[str]:
    """The claims table that opens REPORT.md, with the notes of each claim below it."""
    if not rows:
        return []
    figures = {(e["name"], Path(f).stem): f for e in experiments for f in e["figures"]}
    identities = [r for r in rows if r.kind == "identity"]  # checked as unit tests: no row, no count
    lines = [
        "## Claims at a glance",
        "",
        f"How each is decided: {CLAIMS_RULE}.",
        "",
        f"Registration: {REGISTRATION_RULE}.",
        "",
        *claims_tally(rows),
        "",
        "| claim | source | compared | measured | effect [95 % CI] | n | p | Holm p | BH q | verdict | figure |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        if r.kind == "identity":
            continue
        d = r.decision
        compared = f"{r.quantity}: {r.compared}"
        fig = figures.get((r.experiment, r.figure or ""))
        link = f"[{r.figure}]({os.path.relpath(fig, out_dir)})" if fig else "–"
        holm = _p(r.p_holm) if r.p_holm is not None or d.p_value is None else r.family
        raw = f" (raw: {d.verdict})" if r.verdict != d.verdict else ""
        lines.append(
            f"| {_cell(r.claim)} (`{r.id}`{marker(r)}) | {_cell(r.source)} | {_cell(compared)} | "
            f"{_cell(d.measured or '–')} | {effect_text(d)} | {d.n} | {_p(d.p_value)} | {holm} | {_p(r.q_bh)} | "
            f"**{r.verdict}**{raw} | {link} |"
        )
    notes = [(r.id, n) for r in rows for n in r.decision.notes]
    if notes:
        lines += ["", "Notes:", ""] + [f"- `{i}`: {n}" for i, n in notes]
    return [*lines, *_quotes(rows), *_identities(identities), *_looks_paragraph(experiments), ""]


def marker(r: ClaimResult) -> str:
    """Beside a claim's id: its kind unless it is an article's claim, and *exploratory* if it was registered
    after its experiment's runs began."""
    kind = "" if r.kind == "article" else f", {r.kind}"
    return kind + (f", *exploratory*, registered {r.registered}" if r.exploratory else "")


def _tags(r: ClaimResult) -> str:
    """After a claim in a list: its kind unless it is an article's claim, and whether it is exploratory."""
    tags = ([] if r.kind == "article" else [r.kind]) + (["exploratory"] if r.exploratory else [])
    return f" ({', '.join(tags)})" if tags else ""


def _identities(rows: list[ClaimResult]) -> list[str]:
    """The claims that hold by construction: each checked exactly by a unit test (a test over seeds says nothing
    about an identity), listed with what the runs showed, and counted nowhere."""
    if not rows:
        return []
    return [
        "",
        "### Identities (checked as unit tests, not counted)",
        "",
        *(
            f"- {r.claim} (`{r.id}`, {r.experiment}): checked exactly by `{r.checked_by}`; "
            f"on the runs: {r.decision.measured or '–'}, difference {effect_text(r.decision)}, n = {r.decision.n}"
            for r in rows
        ),
    ]


def _quotes(rows: list[ClaimResult]) -> list[str]:
    """Each quoting claim in the article's own words (the tests check that they occur in the article's file)."""
    quoted = [r for r in rows if r.quote]
    if not quoted:
        return []
    lines = [f"- `{r.id}` ({r.source[:2]}): {r.quote}" for r in quoted]
    return ["", "In the articles' own words:", "", *lines]


def _looks_paragraph(experiments: list[dict[str, Any]]) -> list[str]:
    """Which experiments' seeds were added after their claims were looked at, and what that costs."""
    looked = [(e["name"], e["interim_looks"]) for e in experiments if e.get("interim_looks")]
    if not looked:
        return []
    each = "; ".join(
        f"{name}: {', '.join(map(str, x['looks']))}, then {x['seeds']} ({100 * x['error']:.1f} %; boundary "
        f"{' / '.join(f'{p:.2g}' for p in x['levels'])}: {100 * x['error_with_boundary']:.1f} %)"
        for name, x in looked
    )
    return [
        "",
        "Seeds added after a look. These experiments' claims were looked at with fewer seeds, and seeds were "
        "added because some were undecided (the number fixed from the power estimate before they ran). The "
        "raw verdicts are not corrected for those earlier looks: had a claim no effect, a two-sided 5 % test "
        "at every look would call it supported or contradicted with the first chance in brackets (200,000 "
        "simulated paired t tests). A group-sequential boundary, set to hold the level over the looks that happened "
        "(Lan & DeMets 1983, O'Brien–Fleming-type spending at n_k / N): the nominal two-sided level at each look, "
        f"and the chance it allows for t tests (simulated), follow. The verdicts above are decided at the last look's "
        "level: a claim whose p (Holm's in a family) is not below it reads undecided (at the looks' boundary). "
        f"Seeds at each look: {each}.",
    ]


BEYOND = ("literature", "diagnostic", "consistency")  # the kinds tallied beneath the articles' claims


def claims_tally(rows: list[ClaimResult]) -> list[str]:
    """The headline: the articles' own claims, one row per experiment, how many got each verdict; beneath it one
    row per other kind (literature, diagnostic, consistency). Identities are counted nowhere."""
    articles = [r for r in rows if r.kind == "article"]
    lines = [
        "The articles' claims (the verdicts count confirmatory claims; exploratory: registered after the "
        "experiment's runs began, their verdicts shown in the report, not counted here):",
        "",
        *_counts("experiment", articles, lambda r: r.experiment),
    ]
    if len(articles) > 1:
        lines.append(_count_row("**all**", articles))
    beyond = [r for r in rows if r.kind in BEYOND]
    if beyond:
        lines += [
            "",
            "Beyond the articles' claims (not counted above):",
            "",
            *_counts("kind", beyond, lambda r: r.kind),
        ]
    return lines


def _counts(label: str, rows: list[ClaimResult], key: Callable[[ClaimResult], str]) -> list[str]:
    groups: dict[str, list[ClaimResult]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    header = f"| {label} | claims | " + " | ".join(VERDICT_KINDS) + " | exploratory |"
    return [header, "|---|" + "---:|" * (len(VERDICT_KINDS) + 2), *(_count_row(k, g) for k, g in groups.items())]


def _count_row(name: str, rows: list[ClaimResult]) -> str:
    counts = dict.fromkeys([*VERDICT_KINDS, "exploratory"], 0)
    for r in rows:
        counts["exploratory" if r.exploratory else verdict_kind(r.verdict)] += 1
    return f"| {name} | {len(rows)} | " + " | ".join(str(c or "–") for c in counts.values()) + " |"


def claims_excerpt(rows: list[ClaimResult], readme_dir: Any, results: Any) -> list[str]:
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
    contradicted = [r for r in rows if verdict_kind(r.verdict) == "contradicted" and r.kind != "identity"]
    for title, kinds in (("Contradicted by our runs:", ("article",)), ("Beyond the articles, contradicted:", BEYOND)):
        listed = [r for r in contradicted if r.kind in kinds]
        if listed:
            lines += [title, ""]
            lines += [
                f"- {r.experiment}: {r.claim}{_tags(r)}: {_contradiction_text(r)}, n = {r.decision.n}" for r in listed
            ]
            lines.append("")
    identities = [f"`{r.id}`" for r in rows if r.kind == "identity"]
    if identities:
        lines.append(f"Identities (checked as unit tests, not counted): {', '.join(identities)}.")
    return lines
