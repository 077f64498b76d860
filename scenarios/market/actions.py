"""Actions of the marketplace: their names, codes and argument columns.

Core objects:
    ACTIONS: the action names (an ``ActionBatch.action`` code indexes them), and the codes.
    MarketArgs: the argument columns of a market batch, with the outcome columns ``apply``
        fills in (``accepted``, ``reason``).
    action_batch: a market ``ActionBatch`` from ids, codes and arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator.actions import ActionArgs, ActionBatch, column

ACTIONS = ("do_nothing", "search", "pay", "leave", "respond", "message")
DO_NOTHING, SEARCH, PAY, LEAVE, RESPOND, MESSAGE = range(len(ACTIONS))
CUSTOMER_ACTIONS = (DO_NOTHING, SEARCH, PAY, LEAVE, MESSAGE)
BUSINESS_ACTIONS = (DO_NOTHING, RESPOND, MESSAGE)


@dataclass
class MarketArgs(ActionArgs):
    """The market's argument columns. The traced ones, in declaration order, are the columns
    of ``market_actions`` after ``agent_id`` and ``action``.

    ``price`` is what a paying customer says it pays (cents; -1: the proposal's price), so a
    payment that disagrees with the proposal is refused rather than settled at an invented
    price.
    """

    proposal_id: np.ndarray = column(np.int64, -1, trace=True, doc="the proposal paid (pay)")
    target_id: np.ndarray = column(np.int64, -1, trace=True,
                                   doc="agent id of a text message's receiver (message)")
    contacts: np.ndarray = column(np.int64, -1, trace=True,
                                  doc="how many search results to ask for proposals (search)")
    markup: np.ndarray = column(np.float64, np.nan, trace=True,
                                doc="markup over the list prices (respond)")
    accepted: np.ndarray = column(bool, False, trace=True,
                                  doc="outcome: the action took effect (set by apply)")
    reason: np.ndarray = column(object, None, trace=True,
                                doc="outcome: why the action was refused (set by apply)")
    price: np.ndarray = column(np.int64, -1, doc="the price agreed to, in cents (pay)")
    content: np.ndarray = column(object, None, doc="a text message's text (message)")


def action_batch(agents: np.ndarray, codes: np.ndarray,
                 args: MarketArgs | None = None) -> ActionBatch[MarketArgs]:
    """A market batch: ids as int64, codes as int16, unset argument columns filled."""
    return ActionBatch(np.asarray(agents, dtype=np.int64), np.asarray(codes, dtype=np.int16),
                       MarketArgs() if args is None else args)
