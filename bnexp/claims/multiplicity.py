"""Many claims, one report: each experiment's article claims are one family, decided by Holm-adjusted p-values
(the chance of any false verdict in the family stays at 5 %) unless its config says `multiplicity: none`; every
claim with a p also gets a Benjamini–Hochberg q over the whole report (the expected share of false verdicts among
those with q < 5 %). Claims of the other kinds (literature, diagnostic, consistency, identity) are outside the
families: their verdicts rest on their own p."""

from __future__ import annotations

from bnexp import stats
from bnexp.claims.result import ClaimResult
from bnexp.claims.text import CONSISTENT

FAMILY_KIND = "article"


def adjust(
    rows: list[ClaimResult], multiplicity: dict[str, str], levels: dict[str, float] | None = None
) -> list[ClaimResult]:
    """`rows` with their Holm p within their experiment's family (`multiplicity`: experiment -> holm | none), their
    BH q over the report and the verdict the adjusted p decides at its experiment's level (`levels`: the last
    look's nominal level where seeds were added after the claims were looked at; 5 % otherwise)."""
    # identities hold by construction and are counted nowhere: no q either
    tested = [i for i, r in enumerate(rows) if r.decision.p_value is not None and r.kind != "identity"]
    q = dict(zip(tested, stats.benjamini_hochberg([rows[i].decision.p_value for i in tested]), strict=True))
    holm: dict[int, float] = {}
    for experiment, policy in multiplicity.items():
        family = [i for i in tested if rows[i].experiment == experiment and rows[i].kind == FAMILY_KIND]
        if policy == "holm":
            holm |= dict(zip(family, stats.holm([rows[i].decision.p_value for i in family]), strict=True))
    out = []
    for i, r in enumerate(rows):
        if r.kind != FAMILY_KIND:
            family = "not in a family"
        elif multiplicity.get(r.experiment) != "holm":
            family = "not adjusted (multiplicity: none)"
        else:
            family = ""
        update = {"q_bh": q.get(i), "p_holm": holm.get(i), "family": family}
        level = (levels or {}).get(r.experiment, stats.ALPHA)
        out.append(r.model_copy(update={**update, "verdict": adjusted_verdict(r, holm.get(i), level)}))
    return out


def adjusted_verdict(r: ClaimResult, p_holm: float | None, level: float = stats.ALPHA) -> str:
    """The verdict the adjusted p allows: a raw verdict that rests on p < 5 % stands only where the family's Holm p
    (a claim in no family: its own p) is below `level` too, the last look's nominal level of its experiment's
    group-sequential boundary (5 % without earlier looks); an article's run outside ours is otherwise consistent
    with ours. A raw verdict that does not rest on p < 5 % is kept (an adjusted p is never smaller)."""
    d = r.decision
    p = p_holm if p_holm is not None else d.p_value
    if d.p_value is None or d.p_value >= stats.ALPHA or p is None or p < level:
        return d.verdict
    if r.expect == "consistent":
        return CONSISTENT  # the article's run is no longer shown outside ours
    why = "after Holm" if p_holm is not None and p_holm >= stats.ALPHA else "at the looks' boundary"
    return f"undecided at n = {d.n} ({why})"
