"""The social scenario's action space.

Core objects:
    ACTIONS: action names, in code order (``ActionBatch.action`` indexes this tuple).
    Code constants (CREATE_POST, REPOST, ...), and the argument columns every batch carries.

Argument columns of a social ``ActionBatch`` (-1 / NaN where unused):
    post_id: the post acted on (repost, quote, comment, like, dislike; the post that led to a
        follow or unfollow).
    target_id: the agent acted on (follow, unfollow).
    topic: topic index of a new post (create_post, quote, comment).
    stance: stance in [-1, 1] of a new post.
    opinion: the agent's opinion after the step (NaN: unchanged).
    content: text of a new post (object array; None for rule agents, which write no text).
"""

from __future__ import annotations

import numpy as np

from populace.simulator.actions import ActionBatch

ACTIONS = ("create_post", "repost", "quote", "comment", "like", "dislike", "follow", "unfollow",
           "do_nothing")
CREATE_POST, REPOST, QUOTE, COMMENT, LIKE, DISLIKE, FOLLOW, UNFOLLOW, DO_NOTHING = range(9)
NEEDS_POST = (REPOST, QUOTE, COMMENT, LIKE, DISLIKE)
NEW_POST = (CREATE_POST, REPOST, QUOTE, COMMENT)


def action_batch(agents: np.ndarray, codes: np.ndarray, *, post_id: np.ndarray | None = None,
                 target_id: np.ndarray | None = None, topic: np.ndarray | None = None,
                 stance: np.ndarray | None = None, opinion: np.ndarray | None = None,
                 content: np.ndarray | None = None) -> ActionBatch:
    """A social ``ActionBatch`` with every argument column present (missing ones unset)."""
    n = len(agents)

    def ints(v: np.ndarray | None) -> np.ndarray:
        return np.full(n, -1, dtype=np.int64) if v is None else np.asarray(v, dtype=np.int64)

    def floats(v: np.ndarray | None) -> np.ndarray:
        return np.full(n, np.nan) if v is None else np.asarray(v, dtype=np.float64)

    return ActionBatch(
        np.asarray(agents, dtype=np.int64), np.asarray(codes, dtype=np.int16),
        {"post_id": ints(post_id), "target_id": ints(target_id), "topic": ints(topic),
         "stance": floats(stance), "opinion": floats(opinion),
         "content": np.full(n, None, dtype=object) if content is None else content},
    )
