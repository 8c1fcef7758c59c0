"""Claims looked at before all their seeds ran: a group-sequential boundary that holds the error rate over the
looks that happened, and the error rate a rule of looks actually achieves, by simulation.

Boundary: Lan & DeMets (1983) α-spending with the O'Brien–Fleming-type function α(t) = 2 − 2Φ(z_{1−α/2} / √t)
at information fractions t_k = n_k / N (n_k seeds at look k, N at the last), for a two-sided test of a
normal statistic whose looks correlate as √(n_i / n_j); each boundary c_k spends α(t_k) − α(t_{k−1}) given that the
earlier looks stayed inside theirs (scipy's multivariate normal). With few seeds the statistic is a t, not a normal:
each boundary is used as its nominal two-sided level p_k = 2 − 2Φ(c_k) for the t test at that look, and the level
that rule achieves is checked by simulating paired t tests under the null (`achieved_level`).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
from scipy import optimize, stats

LEVEL = 0.05
SIMULATIONS = 200_000


def spent(fraction: float, level: float = LEVEL) -> float:
    """The O'Brien–Fleming-type spending function: the error rate spent by information fraction `fraction`."""
    return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - level / 2) / math.sqrt(fraction)))


def _inside(bounds: list[float], fractions: list[float]) -> float:
    """P(|Z_k| < c_k at every look) for looks correlated as √(t_i / t_j)."""
    corr = [[math.sqrt(min(a, b) / max(a, b)) for b in fractions] for a in fractions]
    if len(bounds) == 1:
        return float(2 * stats.norm.cdf(bounds[0]) - 1)
    mvn = stats.multivariate_normal(cov=corr, seed=0)
    return float(mvn.cdf(bounds, lower_limit=[-c for c in bounds]))


def _crossing_minus_target(bounds: list[float], fractions: list[float], inside_left: float, c: float) -> float:
    """P(inside the earlier boundaries, outside c at the last look) − the error rate to spend there, as
    P(inside before) − target − P(inside at every look up to this one)."""
    return inside_left - _inside([*bounds, c], fractions)


def boundaries(looks: list[int], level: float = LEVEL) -> list[float]:
    """The two-sided z boundaries c_1..c_K at `looks` seeds (increasing; the last is the final analysis)."""
    if looks != sorted(set(looks)) or looks[0] < 1:
        raise ValueError(f"looks must be increasing numbers of seeds, got {looks}")
    fractions = [n / looks[-1] for n in looks]
    bounds: list[float] = []
    for k, t in enumerate(fractions):
        inside_before = _inside(bounds, fractions[:k]) if bounds else 1.0
        target = spent(t, level) - (spent(fractions[k - 1], level) if k else 0.0)
        crossing = partial(_crossing_minus_target, bounds, fractions[: k + 1], inside_before - target)
        bounds.append(float(optimize.brentq(crossing, 0.5, 12.0, xtol=1e-6)))
    return bounds


def nominal_levels(looks: list[int], level: float = LEVEL) -> list[float]:
    """Each look's boundary as the two-sided nominal level of the test at that look."""
    return [float(2 - 2 * stats.norm.cdf(c)) for c in boundaries(looks, level)]


def achieved_level(looks: list[int], levels: list[float], simulations: int = SIMULATIONS, seed: int = 0) -> float:
    """The chance that a true null is rejected at some look when look k rejects at two-sided nominal level
    levels[k]: `simulations` paired designs (normal differences, one per seed) tested by a one-sample t test
    at each look. Deterministic for a given seed; its standard error is about √(p(1 − p) / simulations)."""
    rng = np.random.default_rng(seed)
    # only each look's sum and sum of squares matter: per block of seeds between looks, the block's sum
    # (N(0, m)) and its squares about the block mean (chi-squared, m - 1 df, independent of the sum), so the
    # cost grows with the looks, not the seeds
    total = np.zeros(simulations)
    squares = np.zeros(simulations)
    rejected = np.zeros(simulations, dtype=bool)
    previous = 0
    for n, p in zip(looks, levels, strict=True):
        m = n - previous
        block = rng.standard_normal(simulations) * math.sqrt(m)
        squares += block**2 / m + (rng.chisquare(m - 1, simulations) if m > 1 else 0.0)
        total += block
        previous = n
        if n < 2:  # one seed has no spread: no t test, no verdict, no error spent
            continue
        sd = np.sqrt((squares - total**2 / n) / (n - 1))
        rejected |= np.abs(total / n / (sd / math.sqrt(n))) > stats.t.ppf(1 - p / 2, n - 1)
    return float(rejected.mean())
