"""Actions of the marketplace: their names, codes and argument columns."""

from __future__ import annotations

import numpy as np

from populace.simulator.actions import ActionBatch

ACTIONS = ("do_nothing", "search", "pay", "leave", "respond", "message")
DO_NOTHING, SEARCH, PAY, LEAVE, RESPOND, MESSAGE = range(len(ACTIONS))
CUSTOMER_ACTIONS = (DO_NOTHING, SEARCH, PAY, LEAVE, MESSAGE)
BUSINESS_ACTIONS = (DO_NOTHING, RESPOND, MESSAGE)


def action_batch(agents: np.ndarray, codes: np.ndarray, *, proposal_id: np.ndarray | None = None,
                 contacts: np.ndarray | None = None, markup: np.ndarray | None = None,
                 price: np.ndarray | None = None, target_id: np.ndarray | None = None,
                 content: np.ndarray | None = None) -> ActionBatch:
    """An ActionBatch with every market argument column (-1 / NaN where unused).

    ``price`` is what the agent says it pays (cents; -1: the proposal's price), so a payment
    that disagrees with the proposal is refused rather than settled at an invented price.
    """
    n = len(agents)

    def ints(v: np.ndarray | None) -> np.ndarray:
        return np.full(n, -1, dtype=np.int64) if v is None else np.asarray(v, dtype=np.int64)

    args = {"proposal_id": ints(proposal_id), "contacts": ints(contacts),
            "markup": (np.full(n, np.nan) if markup is None else np.asarray(markup, np.float64)),
            "price": ints(price), "target_id": ints(target_id)}
    args["content"] = np.full(n, None, dtype=object) if content is None else content
    return ActionBatch(np.asarray(agents, dtype=np.int64), np.asarray(codes, dtype=np.int16), args)
