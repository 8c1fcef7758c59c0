"""The statistics behind every verdict, on scipy's distributions (REFERENCE.md, "Statistics for verdicts").

Each function takes plain numbers and returns plain data: the estimate, its interval and n. Nothing here
knows about runs or claims (`bnexp.claims` does). Levels are two-sided 95 % unless said otherwise; the
power estimate is for 80 % power at that level.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95
ALPHA = 0.05  # 1 − LEVEL: a p-value below it decides
POWER = 0.80


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int  # observations (pairs when paired; the smaller group otherwise)
    method: str
    p_value: float = math.nan  # two-sided t test of "no difference" (of the mean against `null` for one sample)

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else math.nan


def mean_interval(values: list[float], level: float = LEVEL, null: float = 0.0) -> Interval:
    """Mean with its t interval (one sample), and the two-sided p of the t test of mean = `null`."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, "one value: no interval")
    se = _sd(values) / math.sqrt(n)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    p = 2 * stats.t.sf(abs(mean - null) / se, n - 1) if se > 0 else float(mean == null)  # no spread: exact
    return Interval(mean, mean - half, mean + half, n, f"t interval, n = {n}", float(p))


def difference(a: list[float], b: list[float], paired: bool, level: float = LEVEL) -> Interval:
    """mean(a) − mean(b) with its interval: paired t on the differences (a[i] and b[i] share a seed), or Welch's
    t for independent groups. Fewer than 2 values (pairs) in a group: no interval."""
    if paired:
        if len(a) != len(b):
            raise ValueError("paired samples need equal lengths")
        d = [x - y for x, y in zip(a, b, strict=True)]
        i = mean_interval(d, level)
        return Interval(i.estimate, i.low, i.high, i.n, f"paired t, {len(d)} pairs", i.p_value)
    diff = statistics.fmean(a) - statistics.fmean(b)
    n = min(len(a), len(b))
    if n < 2:
        return Interval(diff, math.nan, math.nan, n, "Welch t: needs 2+ runs per group")
    if _sd(a) == 0 and _sd(b) == 0:  # identical runs in both groups: the difference is exact
        return Interval(diff, diff, diff, n, f"Welch t, n = {len(a)} / {len(b)} (no spread)", float(diff == 0))
    test = stats.ttest_ind(a, b, equal_var=False)
    ci = test.confidence_interval(level)
    return Interval(diff, float(ci.low), float(ci.high), n, f"Welch t, n = {len(a)} / {len(b)}", float(test.pvalue))


def wilson(k: int, n: int, level: float = LEVEL) -> Interval:
    """A proportion k/n with its Wilson score interval."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "no runs")
    ci = stats.binomtest(k, n).proportion_ci(level, method="wilson")
    return Interval(k / n, float(ci.low), float(ci.high), n, f"Wilson, {k}/{n}")


def proportion_difference(k1: int, n1: int, k2: int, n2: int, level: float = LEVEL) -> Interval:
    """p1 − p2 with Newcombe's hybrid score interval (Newcombe 1998, method 10), built on Wilson intervals."""
    a, b = wilson(k1, n1, level), wilson(k2, n2, level)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Interval(d, low, high, min(n1, n2), f"Newcombe hybrid score, {k1}/{n1} vs {k2}/{n2}")


def equivalence(a: list[float], b: list[float], paired: bool, margin: float) -> tuple[Interval, bool]:
    """Two one-sided tests at 5 % each: equivalent within ±margin when the 90 % interval of the difference lies
    inside (−margin, margin). Returns that 90 % interval and the decision."""
    ci = difference(a, b, paired, level=1 - 2 * (1 - LEVEL))
    return ci, (not math.isnan(ci.low)) and -margin < ci.low and ci.high < margin


@dataclass(frozen=True)
class EquivalenceP:
    tost: float  # the larger of the two one-sided p's (difference > −margin, difference < margin)
    outside: float  # twice the smaller one-sided p of "the difference lies beyond the margin" (one side or other)


def equivalence_p(a: list[float], b: list[float], paired: bool, margin: float) -> EquivalenceP:
    """The p-values behind an equivalence verdict, on the t tests of `difference` with the null moved to ±margin:
    TOST's p is below 0.05 exactly when the 90 % interval lies inside ±margin, the outside p exactly when the 95 %
    interval lies wholly beyond one margin. NaN with fewer than 2 values (pairs) in a group."""
    if min(len(a), len(b)) < 2:
        return EquivalenceP(math.nan, math.nan)

    def one_sided(shift: float, alternative: str) -> float:  # H1: mean(a) − mean(b) − shift is on `alternative`
        if paired:
            d = [x - y - shift for x, y in zip(a, b, strict=True)]
            if _sd(d) == 0:  # no spread: the difference is exact
                return float(not (statistics.fmean(d) > 0 if alternative == "greater" else statistics.fmean(d) < 0))
            return float(stats.ttest_1samp(d, 0.0, alternative=alternative).pvalue)
        moved = [x - shift for x in a]
        if _sd(a) == 0 and _sd(b) == 0:
            diff = statistics.fmean(moved) - statistics.fmean(b)
            return float(not (diff > 0 if alternative == "greater" else diff < 0))
        return float(stats.ttest_ind(moved, b, equal_var=False, alternative=alternative).pvalue)

    tost = max(one_sided(-margin, "greater"), one_sided(margin, "less"))
    outside = min(1.0, 2 * min(one_sided(margin, "greater"), one_sided(-margin, "less")))
    return EquivalenceP(tost, outside)


def two_sided(p_one_way: float, p_other_way: float) -> float:
    """A two-sided p from the two one-sided p's of a test: twice the smaller (at most 1), so that it is below
    1 − LEVEL exactly when one direction's p is below half of it (how the verdicts decide a direction)."""
    return min(1.0, 2 * min(p_one_way, p_other_way))


def boschloo(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Boschloo's exact unconditional test of p1 against p2: the p's of p1 > p2 and of p1 < p2. Exact at every n
    (the level holds whatever the common proportion), and more powerful than Fisher's, which conditions on a total
    of successes the design never fixed."""
    if k1 + k2 in (0, n1 + n2):  # every run alike: no evidence either way
        return 1.0, 1.0
    table = [[k1, k2], [n1 - k1, n2 - k2]]
    greater = stats.boschloo_exact(table, alternative="greater").pvalue
    less = stats.boschloo_exact(table, alternative="less").pvalue
    return min(1.0, float(greater)), min(1.0, float(less))


def binomial(k: int, n: int, p0: float) -> tuple[float, float]:
    """The exact binomial test of k successes in n against the proportion p0: the p's of p > p0 and of p < p0."""
    return (
        float(stats.binomtest(k, n, p0, alternative="greater").pvalue),
        float(stats.binomtest(k, n, p0, alternative="less").pvalue),
    )


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (1979), in the order given: the i-th smallest p times (m − i + 1), made
    non-decreasing, at most 1. Rejecting where the adjusted p is below α keeps the family-wise error at α."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini–Hochberg q-values (scipy's false_discovery_control), in the order given: rejecting where q is
    below α keeps the expected share of false discoveries at α (independent or positively dependent tests)."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(p_values, method="bh")]


@dataclass(frozen=True)
class Prediction:
    mean: float
    sd: float
    low: float
    high: float
    n: int
    p_value: float  # two-sided: how likely a new run lies at least as far from our mean as the article's value


def prediction_interval(values: list[float], article: float, level: float = LEVEL) -> Prediction:
    """The interval that holds one new run with probability `level`: m ± t(n−1)·s·√(1 + 1/n), and how far the
    article's single run lies in that predictive (Student t) distribution."""
    n = len(values)
    m = statistics.fmean(values)
    if n < 2:
        return Prediction(m, math.nan, math.nan, math.nan, n, math.nan)
    s = _sd(values)
    scale = s * math.sqrt(1 + 1 / n)
    if scale == 0:
        inside = article == m
        return Prediction(m, s, m, m, n, 1.0 if inside else 0.0)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * scale
    p = 2 * stats.t.sf(abs(article - m) / scale, n - 1)
    return Prediction(m, s, m - half, m + half, n, float(p))


def seeds_needed(
    effect: float, sd: float, paired: bool, alpha: float = (1 - LEVEL) / 2, max_n: int = 10_000
) -> int | None:
    """The smallest n (pairs, or runs per group) at which a one-sided t test at level `alpha` (2.5 %: a direction
    of a two-sided 5 % test; 5 % for each test of an equivalence's TOST) detects a true difference `effect` of
    spread `sd` (sd of the differences when paired, of one run otherwise) with 80 % power (noncentral t), or None
    when there is no effect to detect or it needs more than `max_n`."""
    if not effect or math.isnan(effect) or math.isnan(sd):
        return None
    if sd == 0:
        return 2
    for n in range(2, max_n + 1):
        se = sd / math.sqrt(n) if paired else sd * math.sqrt(2 / n)
        df = n - 1 if paired else 2 * n - 2
        ncp = abs(effect) / se
        if stats.nct.sf(stats.t.ppf(1 - alpha, df), df, ncp) >= POWER:
            return n
    return None


@dataclass(frozen=True)
class RankTest:
    u: float
    p_value: float
    method: str


def rank_test(a: list[float], b: list[float], alternative: str) -> RankTest:
    """Mann-Whitney U of a against b (ties count a half) with its exact permutation p-value (every split of the
    pooled values; values may be inf: 'never got there'); alternative 'greater' or 'less' says which of a's
    ranks the claim expects higher."""
    import numpy as np

    def u(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
        gt = (x[..., :, None] > y[..., None, :]).sum((-1, -2))
        eq = (x[..., :, None] == y[..., None, :]).sum((-1, -2))
        return gt + 0.5 * eq

    res = stats.permutation_test(
        (np.asarray(a, float), np.asarray(b, float)),
        u,
        permutation_type="independent",
        alternative=alternative,
        n_resamples=np.inf,
        vectorized=True,
    )
    return RankTest(
        float(res.statistic), float(res.pvalue), f"Mann-Whitney U, exact permutation p, n = {len(a)} / {len(b)}"
    )


def separation_seeds(alpha: float) -> int:
    """Runs per group at which a complete separation of two groups is significant at `alpha` (one-sided):
    the smallest n with 1 / C(2n, n) < alpha."""
    n = 2
    while 1 / math.comb(2 * n, n) >= alpha:
        n += 1
    return n


def seeds_needed_proportions(p1: float, p2: float) -> int | None:
    """Runs per group to tell proportions p1 and p2 apart at the level and power above (normal approximation
    for two proportions, a guide to the exact test that decides); None when they are equal."""
    if p1 == p2:
        return None
    z = stats.norm.ppf(0.5 + LEVEL / 2) + stats.norm.ppf(POWER)
    var = max(p1 * (1 - p1) + p2 * (1 - p2), 0.05)  # a floor: 0/n against 1/n would otherwise ask for nothing
    return max(2, math.ceil(z**2 * var / (p1 - p2) ** 2))


def seeds_needed_proportion(p: float, p0: float) -> int | None:
    """Runs to tell a proportion p from a fixed p0 at the level and power above: the one-sample normal formula
    n = ((z·√(p0(1 − p0)) + z_power·√(p(1 − p)))/(p − p0))² (Fleiss, Levin & Paik 2003, §2.5); None when p = p0."""
    if p == p0:
        return None
    z, z_power = stats.norm.ppf(0.5 + LEVEL / 2), stats.norm.ppf(POWER)
    # a floor on p's variance: 0/n (or n/n) would otherwise ask for nothing beyond p0's
    spread = z * math.sqrt(p0 * (1 - p0)) + z_power * math.sqrt(max(p * (1 - p), 0.025))
    return max(2, math.ceil((spread / (p - p0)) ** 2))
