"""The social scenario's action space.

Core objects:
    ACTIONS: action names, in code order (``ActionBatch.action`` indexes this tuple).
    Code constants (CREATE_POST, REPOST, ...) and the groups NEEDS_POST and NEW_POST.
    SocialArgs: the argument columns every social ``ActionBatch`` carries, with the outcome
        columns ``resolve`` fills in.
    REJECTIONS: why an action is refused (``SocialArgs.refusal`` is 1 + an index into it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator.actions import ActionArgs, column

ACTIONS = ("create_post", "repost", "quote", "comment", "like", "dislike", "follow", "unfollow",
           "do_nothing")
CREATE_POST, REPOST, QUOTE, COMMENT, LIKE, DISLIKE, FOLLOW, UNFOLLOW, DO_NOTHING = range(9)
NEEDS_POST = (REPOST, QUOTE, COMMENT, LIKE, DISLIKE)
NEW_POST = (CREATE_POST, REPOST, QUOTE, COMMENT)
REJECTIONS = ("unknown_post", "not_repostable", "duplicate_reaction", "unknown_agent",
              "self_follow", "already_following", "not_following", "bad_topic")


@dataclass
class SocialArgs(ActionArgs):
    """Argument columns of a social ``ActionBatch`` (-1 / NaN / None where unused).

    ``post_id``, ``target_id`` and ``accepted`` are written to the ``actions`` table, in this
    order. ``refusal`` and ``accepted`` are outcomes: ``SocialScenario.resolve`` sets them
    for every action before the batch is applied.
    """

    post_id: np.ndarray = column(
        np.int64, -1, trace=True, doc="the post acted on (repost, quote, comment, like, "
        "dislike; the post that led to a follow or unfollow)")
    target_id: np.ndarray = column(np.int64, -1, trace=True,
                                   doc="the agent acted on (follow, unfollow)")
    topic: np.ndarray = column(np.int64, -1,
                               doc="topic index of a new post (create_post, quote, comment)")
    stance: np.ndarray = column(np.float64, np.nan, doc="stance in [-1, 1] of a new post")
    opinion: np.ndarray = column(np.float64, np.nan,
                                 doc="the agent's opinion after the step (NaN: unchanged)")
    content: np.ndarray = column(object, None, doc="text of a new post (None for rule agents, "
                                 "which write no text)")
    refusal: np.ndarray = column(np.int8, 0, doc="outcome: 0 accepted, else 1 + the index of "
                                 "the reason in REJECTIONS")
    accepted: np.ndarray = column(bool, True, trace=True,
                                  doc="outcome: whether the action took effect")
