"""Steering the marketplace: its per-agent variables, read and written over every agent id.

The market keeps its state by role (businesses' markups and balances, customers' wallets,
indexed by business or customer index, money in int64 cents), while events address agents
by id. A variable is therefore assembled over every agent id when it is asked for, and an
assignment to it is written back to the state in the state's own units.

Core objects:
    AgentColumn: a variable's values over every agent id; assigning items writes them back.
    VARIABLES: the market's variables (``MarketScenario.variables``).
    markup_column, balance_column: the column of each variable for a catalog and a state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from populace.simulator.scenario import Variable

from .catalog import Catalog
from .config import MAX_TOTAL_CENTS
from .state import MarketState

_INT = np.int64

# Markups the settlement accepts from a business's answer (``Settlement.respond`` clips to
# this range), so a set event cannot give a price no business could have set.
MARKUP_RANGE = (-0.99, 10.0)

VARIABLES: dict[str, Variable] = {
    "markup": Variable("a business's markup over its list prices (it sells at list price x "
                       "(1 + markup)); NaN for customers. A change is its new price from this "
                       "step on: a rule business moves on from it as demand says",
                       *MARKUP_RANGE),
    "balance": Variable("each agent's money in currency units (a customer's wallet, a "
                        "business's balance); a change is booked as a transfer from outside "
                        "the market, so money stays conserved", 0.0),
}


class AgentColumn(np.ndarray):
    """A variable's values over every agent id (a copy assembled from the state). Assigning
    items (``column[ids] = values``) also hands the positions, their old and their new values
    to ``write``, which puts them back into the state; arrays derived from the column
    (slices, arithmetic) are plain copies that write nothing."""

    _write: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None

    def __new__(cls, values: np.ndarray,
                write: Callable[[np.ndarray, np.ndarray, np.ndarray], None]) -> AgentColumn:
        """The column of ``values``; ``write(ids, old, new)`` takes assignments back."""
        column = np.asarray(values, dtype=np.float64).view(cls)
        column._write = write
        return column

    def __array_finalize__(self, obj: Any) -> None:
        self._write = None

    def __setitem__(self, key: Any, value: Any) -> None:
        write = self._write
        if write is None:
            super().__setitem__(key, value)
            return
        ids = np.atleast_1d(np.arange(len(self), dtype=_INT)[key])
        plain = self.view(np.ndarray)
        old = plain[ids].copy()
        super().__setitem__(key, value)
        write(ids, old, plain[ids].copy())


def markup_column(catalog: Catalog, state: MarketState) -> AgentColumn:
    """Businesses' markups by agent id (NaN for customers). A written markup is the
    business's price from now on, and counts as set by the business (``answered``), so a rule
    business adjusts from it instead of starting from its policy's opening markup."""
    values = np.full(len(catalog.agent_biz), np.nan)
    businesses = state.businesses
    values[catalog.biz_agent] = businesses.markup

    def write(ids: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        b = catalog.agent_biz[ids]
        keep = (b >= 0) & np.isfinite(new)  # a customer has no markup
        businesses.markup[b[keep]] = np.clip(new[keep], *MARKUP_RANGE)
        businesses.answered[b[keep]] = True

    return AgentColumn(values, write)


def balance_column(catalog: Catalog, state: MarketState) -> AgentColumn:
    """Every agent's money in currency units. A written balance is rounded to cents; the
    difference is booked with the income paid in (``counters.income_paid``, the money that
    entered the market from outside), so the settlement's conservation check still holds."""
    values = np.zeros(len(catalog.agent_biz))
    values[catalog.cust_agent] = state.wallets / 100.0
    values[catalog.biz_agent] = state.businesses.balance / 100.0

    def write(ids: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        cents = np.round(np.maximum(new, 0.0) * 100.0)
        c, b = catalog.agent_cust[ids], catalog.agent_biz[ids]
        is_c = c >= 0
        before = np.where(is_c, state.wallets[np.maximum(c, 0)],
                          state.businesses.balance[np.maximum(b, 0)])
        added = float(cents.sum() - before.sum())
        if state.money() + added > MAX_TOTAL_CENTS:
            raise ValueError(f"balances of {added / 100:.3g} more would take the market's "
                             f"money past the {MAX_TOTAL_CENTS:.3g} cents the settlement can "
                             "count")
        cents = cents.astype(_INT)
        state.wallets[c[is_c]] = cents[is_c]
        state.businesses.balance[b[~is_c]] = cents[~is_c]
        state.counters.income_paid += int(cents.sum() - before.sum())

    return AgentColumn(values, write)


COLUMNS: dict[str, Callable[[Catalog, MarketState], AgentColumn]] = {
    "markup": markup_column, "balance": balance_column}
"""How each of ``VARIABLES`` is assembled."""
