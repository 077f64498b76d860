"""What an active agent of the social network perceives.

Core objects:
    SocialObservation: each active agent's feed and what it needs to decide (its own module, so
        that the rule policy and the language-model adapter read it without importing the
        scenario).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator.scenario import Observation

from .state import FollowState


@dataclass
class SocialObservation(Observation):
    """The feed of each active agent: post ids and, aligned with them, what the agent sees."""

    feed: np.ndarray  # (n, k) post ids, -1 padding
    stance: np.ndarray  # (n, k) stance of each post (NaN padding)
    author: np.ndarray  # (n, k) author ids (-1 padding)
    topic: np.ndarray  # (n, k) topic index (-1 padding)
    score: np.ndarray  # (n, k) votes each post shows: likes - dislikes (0 padding)
    opinion: np.ndarray  # (n,) the agent's opinion
    interest: np.ndarray  # (n,) the agent's topic of interest
    follows: FollowState  # the follow graph (shared by the batch)

    def followed(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Whether each agent (at ``rows``, default all) follows the author of each feed post.

        Computed on demand: only the agents that consider following or unfollowing need it.
        """
        rows = np.arange(len(self.agents)) if rows is None else rows
        author = self.author[rows]
        valid = author >= 0
        out = np.zeros(author.shape, dtype=bool)
        if valid.any():
            who = np.broadcast_to(self.agents[rows][:, None], author.shape)
            out[valid] = self.follows.has(who[valid], author[valid])
        return out
