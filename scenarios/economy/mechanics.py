"""The economic rules of the macro-economy, as pure functions over arrays.

Core objects:
    adjust_to_imbalance: a price or wage moved by the imbalance of demand and supply.
    demand_shares: how households' spending is shared among firms by price.
    taylor_rate: the central bank's interest rate for the next step.
    income_tax: the tax on each household's income under marginal brackets.
    hire: which applicants each firm hires, incumbents first, up to its labour demand.
    choose_firm: the firm each job seeker applies to, drawn by wage.
    gini: the Gini coefficient of a non-negative distribution.
    annualised_inflation: inflation over a window of price levels, annualised.
    growth: per-step growth rates of a series.
    correlation, ols_slope: the statistics of the Phillips curve and Okun's law.
    TINY: the floor of denominators that may be 0.
    AccountingError: money was created or lost somewhere it should not be.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import CentralBankConfig, TaxBracket

TINY = 1e-12


class AccountingError(RuntimeError):
    """The money identity (households + firms + government = initial + created) broke."""


def adjust_to_imbalance(level: np.ndarray, demand: np.ndarray, supply: np.ndarray,
                        rate: float) -> np.ndarray:
    """``level x (1 + rate x (demand - supply) / max(demand, supply))``; unchanged where both
    are 0. The relative change is bounded by ``rate`` either way."""
    top = np.maximum(demand, supply)
    gap = np.divide(demand - supply, top, out=np.zeros(np.shape(top)), where=top > 0)
    return level * (1.0 + rate * gap)


def demand_shares(price: np.ndarray, elasticity: float) -> np.ndarray:
    """Each firm's share of households' spending: proportional to ``price ** -elasticity``."""
    weight = np.power(price / price.min(), -elasticity)
    return weight / weight.sum()


def taylor_rate(bank: CentralBankConfig, inflation: float, unemployment: float,
                previous: float) -> float:
    """The annual policy rate for the next step (see ``CentralBankConfig``).

    Args:
        bank: the rule's parameters.
        inflation: annualised inflation over the bank's window (NaN: assume the target).
        unemployment: the unemployment rate (NaN: assume the natural rate).
        previous: the rate of the step that ends.
    """
    pi = bank.inflation_target if not np.isfinite(inflation) else inflation
    u = bank.natural_unemployment if not np.isfinite(unemployment) else unemployment
    target = (bank.natural_rate + bank.inflation_target
              + bank.inflation_weight * (pi - bank.inflation_target)
              + bank.unemployment_weight * (bank.natural_unemployment - u))
    rate = bank.smoothing * previous + (1.0 - bank.smoothing) * target
    return float(min(max(rate, bank.floor), bank.ceiling))


def annualised_inflation(price_level: np.ndarray, window: int, periods_per_year: float) -> float:
    """Annualised inflation over the last ``window`` steps of ``price_level`` (fewer if the
    history is shorter; NaN with a single price level, inf if prices explode)."""
    window = min(window, len(price_level) - 1)
    if window < 1:
        return float("nan")
    # Python floats: their power raises OverflowError where numpy's would only warn
    now, then = float(price_level[-1]), float(price_level[-1 - window])
    try:
        return float((now / then) ** (periods_per_year / window) - 1.0)
    except OverflowError:  # prices that explode (degenerate settings): the bank's ceiling
        return float("inf")


def income_tax(income: np.ndarray, brackets: Sequence[TaxBracket]) -> np.ndarray:
    """Tax on each income (negative incomes pay nothing) under marginal ``brackets``."""
    income = np.maximum(income, 0.0)
    tax = np.zeros_like(income)
    for i, bracket in enumerate(brackets):
        upper = brackets[i + 1].above if i + 1 < len(brackets) else np.inf
        tax += bracket.rate * np.clip(income - bracket.above, 0.0, upper - bracket.above)
    return tax


def choose_firm(wage: np.ndarray, attraction: float, u: np.ndarray) -> np.ndarray:
    """The firm each job seeker applies to: probability proportional to ``wage ** attraction``.

    Args:
        wage: posted wage of each firm.
        attraction: the exponent (0: every firm equally likely).
        u: one uniform draw in [0, 1) per job seeker.
    """
    weight = np.power(wage / wage.max(), attraction) if wage.max() > 0 else np.ones_like(wage)
    cdf = np.cumsum(weight)
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(wage) - 1)


def hire(firm: np.ndarray, priority: np.ndarray, efficiency: np.ndarray,
         demand: np.ndarray) -> np.ndarray:
    """Which applicants are hired.

    Each firm takes its applicants in order of ``priority`` (lowest first) while the labour
    hired so far plus the applicant's ``efficiency`` stays within its ``demand``.

    Args:
        firm: the firm each applicant applies to.
        priority: sort key per applicant (incumbents get lower keys).
        efficiency: labour each applicant brings (efficiency units).
        demand: labour each firm wants (efficiency units).

    Returns:
        A boolean mask over the applicants.
    """
    if len(firm) == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((priority, firm))
    f, eff = firm[order], efficiency[order]
    total = np.cumsum(eff)
    before = total - eff
    starts = np.r_[0, np.flatnonzero(f[1:] != f[:-1]) + 1]
    base = np.repeat(before[starts], np.diff(np.r_[starts, len(f)]))
    taken = total - base  # labour hired at the firm up to and including this applicant
    out = np.zeros(len(firm), dtype=bool)
    out[order] = taken <= demand[f] * (1.0 + 1e-12)
    return out


def growth(x: np.ndarray) -> np.ndarray:
    """``x[t] / x[t-1] - 1`` for each step (NaN at step 0 and where ``x[t-1]`` is not > 0)."""
    out = np.full(len(x), np.nan)
    prev, cur = x[:-1], x[1:]
    ok = np.isfinite(prev) & (prev > 0)
    out[1:][ok] = cur[ok] / prev[ok] - 1.0
    return out


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: equal; NaN for an empty or all-zero set)."""
    x = np.sort(np.maximum(np.asarray(values, dtype=np.float64), 0.0))
    n, total = len(x), x.sum()
    if n == 0 or total <= 0:
        return float("nan")
    ranks = np.arange(1, n + 1)
    return float(2.0 * np.dot(ranks, x) / (n * total) - (n + 1) / n)


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation over the pairs where both are finite (NaN if fewer than 3)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def ols_slope(x: np.ndarray, y: np.ndarray) -> float:
    """OLS slope of ``y`` on ``x`` over the finite pairs (NaN if fewer than 3)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.var(x[ok]) == 0:
        return float("nan")
    xc = x[ok] - x[ok].mean()
    return float(np.dot(xc, y[ok] - y[ok].mean()) / np.dot(xc, xc))
