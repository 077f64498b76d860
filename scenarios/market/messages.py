"""Rows of the ``market_messages`` table: inquiries, proposals, payments and text messages.

Core objects:
    message_rows: the columns of a batch of messages of one kind.
    join_messages: one set of columns from several batches, in order.
"""

from __future__ import annotations

import numpy as np

_INT = np.int64

Messages = dict[str, np.ndarray]
"""Columns of ``market_messages`` rows."""


def message_rows(kind: str, sender: np.ndarray, receiver: np.ndarray, need: np.ndarray,
                 arrival: np.ndarray, *, proposal: np.ndarray | None = None,
                 item: np.ndarray | None = None, price: np.ndarray | None = None,
                 content: list[str | None] | None = None) -> Messages:
    """Messages of ``kind`` from ``sender`` to ``receiver`` agents about needs ``need``,
    arriving at ``arrival`` (in steps); the proposal, menu row, price and text where the kind
    has them (-1 / None otherwise)."""
    m = len(sender)
    minus = np.full(m, -1, dtype=_INT)
    texts = np.empty(m, dtype=object)
    if content is not None:
        texts[:] = content
    return {"kind": np.full(m, kind, dtype=object), "sender_id": np.asarray(sender, _INT),
            "receiver_id": np.asarray(receiver, _INT), "need_id": np.asarray(need, _INT),
            "proposal_id": minus if proposal is None else proposal,
            "item_id": minus.copy() if item is None else item,
            "price": minus.copy() if price is None else price,
            "arrival": np.asarray(arrival, np.float64), "content": texts}


def join_messages(batches: list[Messages]) -> Messages:
    """The rows of ``batches`` (at least one) one after the other."""
    return {k: np.concatenate([np.asarray(m[k]) for m in batches]) for k in batches[0]}
