"""Market measures: concentration, inequality and dispersion.

Core objects:
    hhi: Herfindahl-Hirschman index of shares (0: atomised, 1: monopoly).
    gini: Gini coefficient of non-negative values.
    coefficient_of_variation: sd / mean from count, sum and sum of squares.
"""

from __future__ import annotations

import numpy as np


def hhi(values: np.ndarray) -> float:
    """sum(share^2) over the values' shares of their total; NaN when the total is 0."""
    v = np.asarray(values, dtype=np.float64)
    total = v.sum()
    if total <= 0:
        return float("nan")
    share = v / total
    return float(np.sum(share * share))


def gini(values: np.ndarray) -> float:
    """Gini coefficient: sum_i (2i - n - 1) x_(i) / (n sum x) over ascending x; NaN if all 0."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() <= 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * x) / (n * x.sum()))


def coefficient_of_variation(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> float:
    """Order-weighted mean, over groups with at least two values, of each group's sd / mean
    (population sd), from running counts, sums and sums of squares; NaN without such groups."""
    count = np.asarray(count, dtype=np.float64)
    keep = count >= 2
    if not keep.any():
        return float("nan")
    c, s, q = count[keep], np.asarray(total, np.float64)[keep], np.asarray(squares, np.float64)[keep]
    mean = s / c
    var = np.maximum(q / c - mean * mean, 0.0)
    cv = np.sqrt(var) / np.where(mean > 0, mean, np.nan)
    ok = np.isfinite(cv)
    if not ok.any():
        return float("nan")
    return float(np.sum(cv[ok] * c[ok]) / c[ok].sum())
