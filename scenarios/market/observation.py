"""What agents of the marketplace perceive.

Core objects:
    MarketObservation: per-agent columns of customers (their need and the proposals they
        received, first arrived first) and businesses (pending inquiries, sales, markup).
    observe: the observation of a batch of agents from the catalog and the state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator.step import Observation

from .catalog import Catalog, match
from .state import MarketState

_INT = np.int64


@dataclass
class MarketObservation(Observation):
    """Per-agent columns; customer columns are -1/NaN on business rows and vice versa."""

    is_business: np.ndarray  # (n,) bool
    has_need: np.ndarray  # (n,) bool
    searched: np.ndarray  # (n,) bool: asked for proposals for the current need
    waited: np.ndarray  # (n,) steps since the search (-1 if none)
    budget: np.ndarray  # (n,) cents
    value: np.ndarray  # (n,) cents: worth of the need met with every feature
    balance: np.ndarray  # (n,) cents
    proposal_id: np.ndarray  # (n, k) received proposals, first arrived first; -1 padding
    price: np.ndarray  # (n, k) cents
    match: np.ndarray  # (n, k) share of the required features the item has
    rating: np.ndarray  # (n, k)
    manipulative: np.ndarray  # (n, k) bool
    received: np.ndarray  # (n,) proposals received in all (may exceed k)
    markup: np.ndarray  # (n,) a business's current markup
    answered: np.ndarray  # (n,) bool: the business has set a markup (answered once)
    capacity: np.ndarray  # (n,)
    sold: np.ndarray  # (n,) orders in the previous step
    inquiries: np.ndarray  # (n,) inquiries waiting for an answer
    inquired: np.ndarray  # (n,) inquiries received in the previous step


def observe(catalog: Catalog, state: MarketState, agents: np.ndarray, step: int,
            k: int) -> MarketObservation:
    """Customers of ``agents`` see their need and the first ``k`` proposals made to them
    before ``step`` (first arrived first); businesses their pending inquiries, last step's
    sales and their markup. Reads the state only."""
    n = len(agents)
    needs, businesses = state.needs, state.businesses
    biz = catalog.agent_biz[agents]
    cust = catalog.agent_cust[agents]
    is_biz = biz >= 0
    c_ok = cust >= 0
    cs = np.where(c_ok, cust, 0)
    bs = np.where(is_biz, biz, 0)
    has_need = c_ok & (needs.id[cs] >= 0)
    searched_at = np.where(has_need, needs.searched[cs], -1)
    obs = MarketObservation(
        agents=agents, is_business=is_biz, has_need=has_need, searched=searched_at >= 0,
        waited=np.where(searched_at >= 0, step - searched_at, -1),
        budget=np.where(has_need, needs.budget[cs], -1),
        value=np.where(has_need, needs.value[cs], -1),
        balance=np.where(c_ok, state.wallets[cs], np.where(is_biz, businesses.balance[bs], 0)),
        proposal_id=np.full((n, k), -1, dtype=_INT), price=np.full((n, k), -1, dtype=_INT),
        match=np.full((n, k), np.nan), rating=np.full((n, k), np.nan),
        manipulative=np.zeros((n, k), dtype=bool), received=np.zeros(n, dtype=_INT),
        markup=np.where(is_biz, businesses.markup[bs], np.nan),
        answered=is_biz & businesses.answered[bs],
        capacity=np.where(is_biz, catalog.capacity[bs], -1),
        sold=np.where(is_biz, businesses.sold_last[bs], -1),
        inquiries=np.where(is_biz, state.inquiries.pending(catalog.n_biz)[bs], -1),
        inquired=np.where(is_biz, businesses.inquired_last[bs], -1))
    # proposals that have arrived (made in an earlier step) for the batch's customers
    pos = np.full(catalog.n_cust, -1, dtype=_INT)
    pos[cust[c_ok]] = np.flatnonzero(c_ok)
    props = state.proposals
    idx, rank, starts, counts = props.arrived(step, pos >= 0)
    if len(idx):
        row = pos[props.cust[idx]]
        obs.received[row[starts]] = counts
        keep = rank < k
        i, r, row = idx[keep], rank[keep], row[keep]
        obs.proposal_id[row, r] = props.id[i]
        obs.price[row, r] = props.price[i]
        obs.match[row, r] = match(needs.feat[props.cust[i]], catalog.menu_feat[props.row[i]])
        obs.rating[row, r] = catalog.rating[props.biz[i]]
        obs.manipulative[row, r] = catalog.manipulative[props.biz[i]]
    return obs
