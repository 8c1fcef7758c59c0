"""The words and numbers a claim's row is written in: numbers to a sensible precision, a group's mean or median,
outcome counts and the verdict's wording (shared by the decisions and the Markdown)."""

from __future__ import annotations

import math
import statistics
from typing import Any


def num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100 or (abs(x) >= 10 and x == round(x)):
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.4f}" if abs(x) >= 1e-3 else f"{x:.2e}"


def signed(x: float) -> str:
    return ("+" if x >= 0 else "") + num(x)


def mean_text(x: list[float]) -> str:
    """mean ± sd (n), without sd for one value."""
    if len(x) == 1:
        return f"{num(x[0])} (n = 1)"
    return f"{num(statistics.fmean(x))} ± {num(statistics.stdev(x))} (n = {len(x)})"


def median_text(x: list[float]) -> str:
    """The median of values where +inf stands for 'never got there' and -inf for 'no value' (ranked lowest)."""
    m = statistics.median(x)
    return "never" if m == math.inf else "none" if m == -math.inf else num(m)


def at_text(at: Any) -> str:
    return f"{at:g}" if isinstance(at, float) else str(at)


def counts_text(outcomes: dict[str, int]) -> str:
    """'2 fell back, 2 trained': a group's outcome counts."""
    return ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in outcomes.items())


# an article's single run against ours (expect: consistent): its verdict words
CONSISTENT, OUTSIDE = "consistent with ours", "outside ours"
VERDICT_KINDS = ("supported", "contradicted", "undecided", "not measured")


def verdict_kind(verdict: str) -> str:
    """Which of VERDICT_KINDS a verdict counts as: an article's run consistent with ours supports what it was
    checked for, one outside ours contradicts it."""
    if verdict.startswith(CONSISTENT):
        return "supported"
    if verdict.startswith(OUTSIDE):
        return "contradicted"
    return next(k for k in VERDICT_KINDS if verdict.startswith(k))


def verdict_text(decided: bool | None, n: int, needed: int | None, why: str = "") -> str:
    if decided is True:
        return "supported"
    if decided is False:
        return "contradicted"
    if n < 2:
        return f"undecided at n = {n} (one run per group: no spread to judge by)"
    more = f" (≈ {needed} would decide)" if needed else f" ({why})" if why else ""
    return f"undecided at n = {n}" + more
