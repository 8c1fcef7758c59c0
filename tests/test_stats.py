"""Each statistic against a case computed by hand (or a published example)."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as scipy_stats

from bnexp import stats


def test_paired_difference_is_a_t_interval_on_the_differences():
    # differences 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t(0.975, 2) = 4.302653
    ci = stats.difference([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], paired=True)
    half = 4.302653 / math.sqrt(3)
    assert ci.estimate == pytest.approx(2.0)
    assert (ci.low, ci.high) == pytest.approx((2 - half, 2 + half), abs=1e-5)
    assert ci.n == 3 and "paired" in ci.method


def test_welch_interval_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    va, vb = 5 / 3, 4.0  # sample variances
    se = math.sqrt(va / 4 + vb / 3)
    df = (va / 4 + vb / 3) ** 2 / ((va / 4) ** 2 / 3 + (vb / 3) ** 2 / 2)  # Welch-Satterthwaite
    assert df == pytest.approx(3.2347, abs=1e-4)
    ci = stats.difference(a, b, paired=False)
    assert ci.estimate == pytest.approx(-1.5)
    t_table = 3.182 - 0.2347 * (3.182 - 2.776)  # a t table, interpolated between 3 and 4 df
    assert (ci.low, ci.high) == pytest.approx((-1.5 - t_table * se, -1.5 + t_table * se), abs=0.06)
    t = scipy_stats.t.ppf(0.975, df)  # and exactly, at the hand-computed df
    assert (ci.low, ci.high) == pytest.approx((-1.5 - t * se, -1.5 + t * se), abs=1e-9)
    assert "Welch" in ci.method


def test_wilson_interval_matches_the_closed_form():
    k, n, z = 4, 10, 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    ci = stats.wilson(k, n)
    assert (ci.low, ci.high) == pytest.approx((centre - half, centre + half), abs=1e-6)
    assert (round(ci.low, 2), round(ci.high, 2)) == (0.17, 0.69)  # the E4 figure quoted since issue 11


def test_newcombe_difference_matches_newcombes_published_example():
    """Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339."""
    ci = stats.proportion_difference(56, 70, 48, 80)
    assert ci.estimate == pytest.approx(0.2)
    assert (ci.low, ci.high) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_equivalence_is_two_one_sided_tests():
    a, b = [0.900, 0.902, 0.901, 0.899], [0.901, 0.901, 0.900, 0.900]
    ci90, equivalent = stats.equivalence(a, b, paired=True, margin=0.005)
    # differences -0.001, 0.001, 0.001, -0.001: mean 0, sd 0.0011547, t(0.95, 3) = 2.353363
    half = 2.353363 * 0.0011547 / 2
    assert (ci90.low, ci90.high) == pytest.approx((-half, half), abs=1e-6)
    assert equivalent
    assert not stats.equivalence(a, b, paired=True, margin=0.001)[1]  # 0.00136 > 0.001


def test_prediction_interval_by_hand():
    values = [0.90, 0.91, 0.89]  # mean 0.90, sd 0.01, t(0.975, 2) = 4.302653
    pred = stats.prediction_interval(values, 0.95)
    half = 4.302653 * 0.01 * math.sqrt(1 + 1 / 3)
    assert (pred.low, pred.high) == pytest.approx((0.90 - half, 0.90 + half), abs=1e-6)
    # p: the article's value 0.05 from the mean, t = 0.05 / 0.011547 = 4.3301, two-sided with 2 df:
    # P(|T| > t) = 1 - t / sqrt(t^2 + 2) for 2 df
    t = 0.05 / (0.01 * math.sqrt(4 / 3))
    assert pred.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert math.isnan(stats.prediction_interval([0.9], 0.9).low)


def test_seeds_needed_grows_with_noise_and_shrinks_with_the_effect():
    small = stats.seeds_needed(0.01, 0.01, paired=True)
    # paired, d/s = 1: the textbook answer for 80 % power at two-sided 5 % is 10 pairs (noncentral t)
    assert small == 10
    assert stats.seeds_needed(0.02, 0.01, paired=True) < small < stats.seeds_needed(0.01, 0.02, paired=True)
    assert stats.seeds_needed(0.01, 0.01, paired=False) > small  # independent groups need more
    assert stats.seeds_needed(0.0, 0.01, paired=True) is None
    assert stats.seeds_needed_proportions(0.4, 0.0) > 2 and stats.seeds_needed_proportions(0.3, 0.3) is None


def test_rank_test_exact_p_by_counting_splits():
    """Complete separation of 3 and 3 values: 1 of the C(6, 3) = 20 splits is as extreme, p = 0.05 one-sided;
    'never got there' (inf) ranks last; 4 and 4 separate at 1/70."""
    inf = math.inf
    assert stats.rank_test([1.0, 2.0, 3.0], [inf, inf, inf], "less").p_value == pytest.approx(1 / 20)
    assert stats.rank_test([1.0, 2.0, 3.0], [inf, inf, inf], "greater").p_value == pytest.approx(1.0)
    assert stats.rank_test([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, inf, inf], "less").p_value == pytest.approx(1 / 70)
    # one overlap (3 > 2.5): U counts a's values above b's; 2 of 20 splits have U <= 1
    assert stats.rank_test([1.0, 2.0, 3.0], [2.5, 4.0, 5.0], "less").p_value == pytest.approx(2 / 20)
    assert stats.separation_seeds(0.025) == 4


def test_holm_against_a_hand_computed_case():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> made non-decreasing: 0.06 for both
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.6, 0.9]) == [1.0, 1.0]  # 1.2 capped at 1, and the larger p keeps it
    assert stats.holm([0.02]) == [0.02] and stats.holm([]) == []


def test_benjamini_hochberg_against_a_hand_computed_case():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4/1, 4/2, 4/3, 4/4: 0.02, 0.02, 0.04, 0.04 (already non-increasing from top)
    assert stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # 0.02 * 2 = 0.04 but the larger p's q is 0.03: the step-up takes the smaller
    assert stats.benjamini_hochberg([0.02, 0.03]) == pytest.approx([0.03, 0.03])
    assert stats.benjamini_hochberg([]) == []


def test_t_p_values_are_scipys_and_agree_with_the_intervals():
    rng = random.Random(3)
    for _ in range(30):
        a = [rng.gauss(0.3, 1) for _ in range(5)]
        b = [rng.gauss(0, 1.5) for _ in range(4)]
        one = stats.mean_interval(a, null=0.2)
        assert one.p_value == pytest.approx(scipy_stats.ttest_1samp(a, 0.2).pvalue)
        welch = stats.difference(a, b, paired=False)
        assert welch.p_value == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)
        paired = stats.difference(a[:4], b, paired=True)
        assert paired.p_value == pytest.approx(scipy_stats.ttest_rel(a[:4], b).pvalue)
        for ci in (welch, paired):  # one test: p < 5 % exactly when the 95 % interval leaves out 0
            assert (ci.p_value < stats.ALPHA) == ci.excludes_zero()
    assert stats.difference([1.0, 1.0], [0.5, 0.5], paired=False).p_value == 0.0  # no spread: exact


def test_equivalence_p_values_agree_with_the_intervals_and_scipy():
    rng = random.Random(5)
    seen = set()
    for _ in range(200):
        a = [rng.gauss(0, 0.01) for _ in range(6)]
        b = [rng.gauss(rng.choice([0, 0.02]), 0.01) for _ in range(6)]
        for paired in (True, False):
            p = stats.equivalence_p(a, b, paired, 0.01)
            _, equivalent = stats.equivalence(a, b, paired, 0.01)
            ci95 = stats.difference(a, b, paired)
            assert (p.tost < stats.ALPHA) == equivalent
            assert (p.outside < stats.ALPHA) == (ci95.low > 0.01 or ci95.high < -0.01)
            seen.add((p.tost < stats.ALPHA, p.outside < stats.ALPHA))
    assert seen == {(True, False), (False, True), (False, False)}  # never both
    a, b = [0.0, 0.002, 0.001, -0.001], [0.001, 0.0, 0.002, 0.0]
    lower = scipy_stats.ttest_ind([x + 0.01 for x in a], b, equal_var=False, alternative="greater").pvalue
    upper = scipy_stats.ttest_ind([x - 0.01 for x in a], b, equal_var=False, alternative="less").pvalue
    assert stats.equivalence_p(a, b, False, 0.01).tost == pytest.approx(max(lower, upper))


def test_exact_proportion_tests_by_hand():
    # 0/2 against 2/2: the only table as extreme has probability (1 − π)²π², largest at π = 1/2: 1/16
    assert stats.boschloo(0, 2, 2, 2) == pytest.approx((1.0, 1 / 16))
    assert stats.boschloo(3, 3, 3, 3) == (1.0, 1.0)  # every run alike
    # 7 of 10 against 1/2: P(X >= 7) = (120 + 45 + 10 + 1) / 1024
    assert stats.binomial(7, 10, 0.5)[0] == pytest.approx(176 / 1024)
    assert stats.two_sided(0.01, 0.99) == 0.02 and stats.two_sided(0.6, 0.5) == 1.0


def test_seeds_needed_matches_published_t_power_tables():
    """Cohen's d = 0.5 at 80 % power (G*Power; Cohen 1988): one sample 34 two-sided at 5 %, 27 one-sided at 5 %
    (each test of a TOST); two samples 64 and 51 per group."""
    assert stats.seeds_needed(0.5, 1.0, paired=True) == 34
    assert stats.seeds_needed(0.5, 1.0, paired=True, alpha=0.05) == 27
    assert stats.seeds_needed(0.5, 1.0, paired=False) == 64
    assert stats.seeds_needed(0.5, 1.0, paired=False, alpha=0.05) == 51


def test_seeds_needed_for_one_proportion_gives_its_power():
    """The one-sample formula's n gives the two-sided score test about 80 % power, computed exactly on the
    binomial; the two-sample formula (what was used before) asks for about twice as many."""
    p, p0 = 0.7, 0.5
    n = stats.seeds_needed_proportion(p, p0)
    assert n == 47 and stats.seeds_needed_proportions(p, p0) > 1.8 * n

    def power(n: int) -> float:
        z = [(k / n - p0) / math.sqrt(p0 * (1 - p0) / n) for k in range(n + 1)]
        return sum(scipy_stats.binom.pmf(k, n, p) for k in range(n + 1) if abs(z[k]) > 1.959964)

    assert 0.75 < power(n) < 0.85 and power(n // 2) < 0.6
