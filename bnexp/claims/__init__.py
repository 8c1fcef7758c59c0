"""The articles' claims as checks: each claim of a config (`claims:`) names a per-run quantity, the groups
it compares and the relation it expects; here each is measured on the run store (`measure`), decided by the
statistics of `bnexp.stats` (`decide`, with `groups` for runs that ended differently), adjusted for the many
claims of one report (`multiplicity`: Holm within an experiment's article claims, Benjamini–Hochberg over the
report), held in one model (`result`) and written as Markdown (`markdown`, in the words of `text`).

Verdicts: **supported** (the interval lies on the expected side), **contradicted** (the interval lies on the
other side), for an article's single run **consistent with ours** or **outside ours** (our prediction
interval, on the mean over the points it reports), **undecided at
n = N** with the seeds that a power estimate says would decide (or "after Holm" where only the family's
adjusted p keeps it from a verdict), or **not measured** (no finished runs, or runs
that did not record what the quantity needs, with a note saying so).
Runs with different training outcomes in one group (trained / fell back / never left chance / diverged) are
never pooled into one mean: the counts are reported, and two groups are compared run by run by rank (for
greater / less) or within the runs that trained (for equivalent, or against a value).
"""

from bnexp.claims.decide import claim_rows, evaluate
from bnexp.claims.markdown import CLAIMS_BEGIN, CLAIMS_END, claims_excerpt, claims_markdown
from bnexp.claims.measure import MEASURES, NotRecorded, measure
from bnexp.claims.result import ClaimResult, Decision

__all__ = [
    "CLAIMS_BEGIN",
    "CLAIMS_END",
    "MEASURES",
    "ClaimResult",
    "Decision",
    "NotRecorded",
    "claim_rows",
    "claims_excerpt",
    "claims_markdown",
    "evaluate",
    "measure",
]
