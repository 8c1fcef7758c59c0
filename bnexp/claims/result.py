"""A claim's result as one declared model, written by `decide` and read by the Markdown and the report (and
printed by `bnexp report --json` through `model_dump`): what the statistics decided (`Decision`) and which
claim of which experiment it is (`ClaimResult`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Decision(BaseModel):
    """What the runs say about a claim: the measured effect, its interval, n, the method and the verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    verdict: str  # supported / contradicted / undecided at n = N (…) / not measured
    n: int
    effect: float | None = None  # None where nothing is averaged (a rank comparison, not measured)
    interval: tuple[float, float] | None = None  # 95 % (NaN where n is too small for one)
    interval90: tuple[float, float] | None = None  # the interval an equivalence is decided by
    method: str | None = None
    measured: str | None = None
    # the raw p of the test the verdict rests on, on the scale of a two-sided test at 5 % (twice the smaller
    # one-sided p of a t, rank or exact test; TOST's p or its outside test's, whichever is smaller; the
    # prediction interval's): below 5 % exactly when the verdict is supported, contradicted or outside ours
    p_value: float | None = None
    favours: bool | None = None  # whether a small p_value speaks for the claim (else against it)
    notes: tuple[str, ...] = ()
    points: int | None = None  # consistent: the article's points, summarized by their mean
    reference: float | None = None  # a proportion's value it is compared with (0 for two groups)

    def with_notes(self, notes: list[str]) -> Decision:
        return self.model_copy(update={"notes": tuple(notes)})


class ClaimResult(BaseModel):
    """One claim of one experiment, as the report prints it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    experiment: str
    claim: str
    source: str
    kind: str  # article (one family per experiment), literature, diagnostic, consistency or identity
    quote: str | None = None  # an article claim's own words, in the article's language
    checked_by: str | None = None  # an identity's unit test
    registered: str  # the day the claim was first committed (YYYY-MM-DD)
    exploratory: bool  # registered after its experiment's runs began
    expect: str
    quantity: str  # with its `at` where the compared text does not carry it
    compared: str
    figure: str | None
    decision: Decision  # what the claim's own p decided (the raw verdict)
    verdict: str  # what the report says: the raw verdict, or undecided where the Holm p is not below 5 %
    p_holm: float | None = None  # within its experiment's family of article claims
    q_bh: float | None = None  # Benjamini–Hochberg over every claim of the report with a p
    family: str = ""  # why a claim has no Holm p: "not in a family", "not adjusted (multiplicity: none)"
