"""Customers' needs: when they appear and what they ask for.

Core objects:
    draw_needs: give customers a new need (item type, required features, budget, value) and
        return its ``market_needs`` rows.
    arriving_needs: the customers without a need who get one this step.
"""

from __future__ import annotations

import numpy as np

from populace.simulator.world import World

from .catalog import Catalog
from .config import MarketConfig
from .search import optimal_utility
from .state import MarketState

_INT = np.int64


def draw_needs(config: MarketConfig, catalog: Catalog, state: MarketState, world: World,
               cust: np.ndarray, step: int) -> dict[str, object] | None:
    """Give customers ``cust`` (indexes) a new need, drawn per customer from stream
    ``market.need`` (a ``budget`` population column, in currency units, wins where it has a
    value); return its rows, None when ``cust`` is empty."""
    if len(cust) == 0:
        return None
    agents = catalog.cust_agent[cust]
    u = world.rng.uniform("market.need", step, agents, 2 + len(config.features))
    ntypes = len(config.item_types)
    t = np.minimum((u[:, 0] * ntypes).astype(_INT), ntypes - 1)
    bits = u[:, 2:] < config.need_feature_prob
    feat = (bits * (1 << np.arange(len(config.features), dtype=_INT))).sum(axis=1).astype(_INT)
    lo, hi = config.budget
    budget_mult = lo + (hi - lo) * u[:, 1]
    attrs = world.population.attributes
    if "budget" in attrs:
        given = attrs["budget"].to_numpy()[agents].astype(np.float64) * 100
        budget = np.where(np.isnan(given), budget_mult * catalog.base, given)
    else:
        budget = budget_mult * catalog.base
    counters, needs = state.counters, state.needs
    ids = np.arange(counters.n_needs, counters.n_needs + len(cust), dtype=_INT)
    counters.n_needs += len(cust)
    needs.id[cust] = ids
    needs.type[cust] = t
    needs.feat[cust] = feat
    needs.budget[cust] = np.round(budget).astype(_INT)
    needs.value[cust] = int(round(config.value_multiple * catalog.base))
    needs.searched[cust] = -1
    needs.contacted[cust] = 0
    needs.optimal[cust] = optimal_utility(catalog, state, cust)
    return {"need_id": ids, "customer_id": agents,
            "item_type": np.asarray(config.item_types, dtype=object)[t],
            "features": catalog.feature_names(feat), "budget": needs.budget[cust].copy(),
            "value": needs.value[cust].copy(), "optimal_utility": needs.optimal[cust].copy()}


def arriving_needs(config: MarketConfig, catalog: Catalog, state: MarketState, world: World,
                   step: int) -> np.ndarray:
    """Customers (indexes) without a need, active or not, who get one in ``step``: each with
    chance ``need_rate`` (stream ``market.need_arrival``)."""
    idle = np.flatnonzero(state.needs.id < 0)
    if len(idle) == 0:
        return idle
    u = world.rng.uniform("market.need_arrival", step, catalog.cust_agent[idle])[:, 0]
    return idle[u < config.need_rate]
