"""The rule-based social agent, vectorised over a batch.

Core objects:
    SocialRulePolicy: picks one action per active agent from configurable rates, targets posts
        by agreement (homophily), and updates opinions by bounded confidence on what the feed
        showed. See ``SocialRuleParams`` for the parameters.
"""

from __future__ import annotations

import numpy as np

from populace.simulator.scenario import ActionBatch, Policy, StepContext

from .actions import (
    COMMENT,
    CREATE_POST,
    DISLIKE,
    DO_NOTHING,
    FOLLOW,
    LIKE,
    QUOTE,
    REPOST,
    UNFOLLOW,
    SocialArgs,
)
from .config import SocialRuleParams
from .observation import SocialObservation


class SocialRulePolicy(Policy[SocialObservation, SocialArgs]):
    """Rule-based social agents.

    Args:
        params: validated rule parameters.
        n_topics: number of topics.
    """

    def __init__(self, params: SocialRuleParams, n_topics: int) -> None:
        self.params = params
        self.n_topics = n_topics
        p = params
        rates = [p.post_rate, p.repost_rate, p.quote_rate, p.comment_rate, p.like_rate,
                 p.dislike_rate, p.follow_rate, p.unfollow_rate]
        self.codes = np.array([CREATE_POST, REPOST, QUOTE, COMMENT, LIKE, DISLIKE, FOLLOW,
                               UNFOLLOW], dtype=np.int16)
        self.cum = np.cumsum(rates)

    def decide(self, obs: SocialObservation, ctx: StepContext) -> ActionBatch[SocialArgs]:
        """One action per agent of ``obs``, plus each agent's updated opinion."""
        p = self.params
        n = len(obs.agents)
        # draws keyed by agent id: a decision does not depend on who else is in the batch
        u = ctx.uniform("social.rules", obs.agents, 4).T
        op = obs.opinion
        valid = obs.feed >= 0
        dist = np.abs(obs.stance - op[:, None])
        agree = valid & (dist < p.confidence)
        disagree = valid & (dist >= p.confidence)

        pick = np.searchsorted(self.cum, u[0], side="right")
        codes = np.where(pick < len(self.codes), self.codes[np.minimum(pick, len(self.codes) - 1)],
                         DO_NOTHING).astype(np.int16)

        # candidate posts for each agent's chosen action; who follows whom is looked up only
        # for the agents about to follow or unfollow
        followed = np.zeros(obs.feed.shape, dtype=bool)
        social = np.flatnonzero((codes == FOLLOW) | (codes == UNFOLLOW))
        if len(social):
            followed[social] = obs.followed(social)
        engage = np.where((u[1] < p.homophily)[:, None], agree, valid)
        cand = engage
        cand = np.where((codes == DISLIKE)[:, None], disagree, cand)
        cand = np.where((codes == UNFOLLOW)[:, None], disagree & followed, cand)
        own = obs.author == obs.agents[:, None]
        # the system account (author -1, broadcasts) cannot be followed
        cand = np.where((codes == FOLLOW)[:, None], engage & ~followed & ~own & (obs.author >= 0),
                        cand)
        keys = ctx.uniform("social.rules.target", obs.agents, cand.shape[1])
        if p.herding:  # weighted draw (Efraimidis-Spirakis): key u ** (1 / weight)
            sign = np.where((codes == DISLIKE) | (codes == UNFOLLOW), -1.0, 1.0)[:, None]
            weight = np.exp(p.herding * sign * np.clip(obs.score, -20, 20))
            keys = keys ** (1.0 / weight)
        keys[~cand] = -1.0
        j = np.argmax(keys, axis=1) if cand.shape[1] else np.zeros(n, dtype=np.int64)
        has = keys[np.arange(n), j] >= 0 if cand.shape[1] else np.zeros(n, dtype=bool)
        targeted = codes != CREATE_POST
        codes = np.where(targeted & (codes != DO_NOTHING) & ~has, DO_NOTHING, codes)
        rows = np.arange(n)
        post = np.where((codes != CREATE_POST) & (codes != DO_NOTHING), obs.feed[rows, j], -1)
        target = np.where((codes == FOLLOW) | (codes == UNFOLLOW), obs.author[rows, j], -1)

        writes = (codes == CREATE_POST) | (codes == QUOTE) | (codes == COMMENT)
        stance = np.where(writes, np.clip(
            op + p.stance_noise * ctx.normal("social.rules.stance", obs.agents)[:, 0], -1, 1),
                          np.nan)
        random_topic = (u[3] * self.n_topics).astype(np.int64)
        topic = np.where(u[2] < p.topic_focus, obs.interest, random_topic)
        topic = np.where(codes == CREATE_POST, topic, -1)
        topic = np.where((codes == QUOTE) | (codes == COMMENT), obs.topic[rows, j], topic)

        # bounded confidence on everything the feed showed
        diff = np.where(valid, obs.stance - op[:, None], 0.0)
        n_agree = agree.sum(axis=1)
        n_far = disagree.sum(axis=1)
        pull = np.where(n_agree > 0, (diff * agree).sum(axis=1) / np.maximum(n_agree, 1), 0.0)
        push = np.where(n_far > 0, (diff * disagree).sum(axis=1) / np.maximum(n_far, 1), 0.0)
        opinion = np.clip(op + p.convergence * pull - p.backfire * push, -1.0, 1.0)
        return ActionBatch(np.asarray(obs.agents, dtype=np.int64), codes,
                           SocialArgs(post_id=post, target_id=target, topic=topic, stance=stance,
                                      opinion=opinion))
