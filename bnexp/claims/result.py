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
    p_value: float | None = None  # the claim's direction (a rank test), or the prediction interval's
    p_opposite: float | None = None  # a rank test of the opposite direction (what a contradiction rests on)
    notes: tuple[str, ...] = ()
    points: int | None = None  # consistent: the article's points, and how many lie inside ours
    inside: int | None = None
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
    kind: str
    quantity: str  # with its `at` where the compared text does not carry it
    compared: str
    figure: str | None
    decision: Decision
