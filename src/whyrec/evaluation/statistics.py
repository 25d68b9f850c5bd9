"""Intervals and tests, once, for offline and conversational evaluation alike.

Every reported interval is a Student-t interval for a mean of per-unit values (per user
offline, per episode in conversation; a success rate is the mean of 0/1 outcomes), and
every comparison of two systems on the same units is paired: a t-test and a Wilcoxon
signed-rank test on the differences.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats

LEVEL = 0.95


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval for the mean of per-unit values (a point when n < 2)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, mean
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return mean - float(half), mean + float(half)


def rate_interval(outcomes: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """`t_interval` of 0/1 outcomes, clipped to [0, 1] (a rate cannot leave it)."""
    low, high = t_interval(np.asarray(outcomes, dtype=np.float64), level)
    return max(0.0, low), min(1.0, high)


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def paired_tests(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Paired t-test and Wilcoxon signed-rank test of x against y (same units, same order).

    Identical samples give statistic 0 and p = 1 (scipy would warn and return NaN).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if np.allclose(x - y, 0.0):
        t_stat, t_p, w_stat, w_p = 0.0, 1.0, 0.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t_res = stats.ttest_rel(x, y)
            w_res = stats.wilcoxon(x, y, zero_method="wilcox")
        t_stat, t_p = float(t_res.statistic), float(t_res.pvalue)
        w_stat, w_p = float(w_res.statistic), float(w_res.pvalue)
    return {
        "t_statistic": finite_or_none(t_stat),
        "t_pvalue": finite_or_none(t_p),
        "wilcoxon_statistic": finite_or_none(w_stat),
        "wilcoxon_pvalue": finite_or_none(w_p),
    }
