"""Market measures: concentration, inequality and dispersion, and the metrics of a step.

Core objects:
    hhi: Herfindahl-Hirschman index of shares (0: atomised, 1: monopoly).
    gini: Gini coefficient of non-negative values.
    coefficient_of_variation: sd / mean from count, sum and sum of squares.
    market_metrics: every metric of the market after a step.
"""

from __future__ import annotations

import numpy as np

from .actions import ACTIONS
from .settlement import Outcome
from .state import MarketState


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


def market_metrics(state: MarketState, codes: np.ndarray, outcome: Outcome) -> dict[str, float]:
    """Action counts (``codes``: the step's action codes), refusals, orders, welfare against
    the full-information optimum, first-proposal bias, search breadth, concentration,
    inequality, price dispersion and the money in the market."""
    counts = np.bincount(codes.astype(np.int64), minlength=len(ACTIONS))
    out: dict[str, float] = {f"actions.{name}": float(c) for name, c in zip(ACTIONS, counts,
                                                                         strict=True)}
    out.update({f"rejected.{k}": float(v) for k, v in outcome.rejected.items()})
    t, biz, prices = state.totals, state.businesses, state.prices
    nan = float("nan")
    out.update({
        "orders": float(outcome.orders),
        "revenue": outcome.revenue / 100.0,
        "orders_total": float(t.orders),
        "needs_open": float((state.needs.id >= 0).sum()),
        "needs_met": float(t.met),
        "needs_abandoned": float(t.left),
        "proposals_open": float(len(state.proposals)),
        "welfare": t.welfare / 100.0,
        "welfare_optimal": t.optimal / 100.0,
        "welfare_ratio": t.welfare / t.optimal if t.optimal > 0 else nan,
        "first_proposal_bias": (t.first - t.chance_first) / t.orders if t.orders else nan,
        "search_breadth": t.contacted / t.searched_needs if t.searched_needs else nan,
        "hhi": hhi(biz.revenue),
        "gini_revenue": gini(biz.revenue),
        "price_dispersion": coefficient_of_variation(prices.count, prices.sum, prices.sq),
        "manipulative_revenue_share": (state.counters.manip_revenue / int(biz.revenue.sum())
                                       if biz.revenue.sum() > 0 else nan),
        "mean_markup": float(biz.markup.mean()),
        "search.llm_fallbacks": float(state.counters.llm_fallbacks),
        "money": state.money() / 100.0,
    })
    return out
