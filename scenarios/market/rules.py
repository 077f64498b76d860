"""Rule-based customers and businesses, vectorised over a batch (see ``MarketRuleParams``)."""

from __future__ import annotations

import numpy as np

from populace.simulator.actions import ActionBatch
from populace.simulator.policy import Policy
from populace.simulator.step import StepContext

from .actions import DO_NOTHING, LEAVE, PAY, RESPOND, SEARCH, MarketArgs, action_batch
from .config import MarketRuleParams
from .observation import MarketObservation


class MarketRulePolicy(Policy[MarketObservation, MarketArgs]):
    """Customers: search once, wait for proposals, pay the best affordable one of the first
    ``consider``, give up after ``patience``. Businesses: answer inquiries at a markup that
    rises after selling out and falls after a step of inquiries without a sale.

    Args:
        params: validated rule parameters.
        base_cents: the market's expected list price, in cents (scales ``rating_weight``).
    """

    def __init__(self, params: MarketRuleParams, base_cents: int) -> None:
        self.params = params
        self.base = base_cents

    def decide(self, obs: MarketObservation, ctx: StepContext) -> ActionBatch[MarketArgs]:
        """One action per agent of ``obs``."""
        p = self.params
        n = len(obs.agents)
        codes = np.full(n, DO_NOTHING, dtype=np.int16)
        proposal = np.full(n, -1, dtype=np.int64)
        contacts = np.full(n, -1, dtype=np.int64)
        markup = np.full(n, np.nan)

        # customers
        cust = ~obs.is_business & obs.has_need
        k = obs.proposal_id.shape[1]
        consider = k if p.consider == 0 else min(p.consider, k)
        valid = obs.proposal_id >= 0
        valid[:, consider:] = False
        affordable = valid & (obs.price <= np.minimum(obs.budget, obs.balance)[:, None])
        value = obs.value[:, None].astype(np.float64)
        score = (value * np.nan_to_num(obs.match) - obs.price
                 + p.rating_weight * self.base * np.nan_to_num(obs.rating)
                 + p.susceptibility * value * obs.manipulative)
        score = np.where(affordable & (score > 0), score, -np.inf)
        best = np.argmax(score, axis=1) if k else np.zeros(n, dtype=np.int64)
        has_offer = np.isfinite(score[np.arange(n), best]) if k else np.zeros(n, dtype=bool)
        enough = (obs.received >= p.wait_for) | (obs.waited >= p.patience)
        pay = cust & has_offer & enough
        codes[cust & ~obs.searched] = SEARCH
        contacts[cust & ~obs.searched] = p.contacts
        codes[pay] = PAY
        proposal[pay] = obs.proposal_id[np.flatnonzero(pay), best[pay]]
        codes[cust & obs.searched & ~pay & (obs.waited >= p.patience)] = LEAVE

        # businesses
        biz = obs.is_business
        if biz.any():
            current = np.where(obs.answered, obs.markup, p.markup)
            up = biz & (obs.sold >= obs.capacity)
            down = biz & (obs.inquired > 0) & (obs.sold == 0)
            new = current + p.markup_step * up - p.markup_step * down
            new = np.clip(new, p.min_markup, p.max_markup)
            answer = biz & (obs.inquiries > 0)
            codes[answer] = RESPOND
            markup[answer] = new[answer]
        return action_batch(obs.agents, codes,
                            MarketArgs(proposal_id=proposal, contacts=contacts, markup=markup))
