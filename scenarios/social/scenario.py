"""The social-network scenario: posts, reposts, likes and follows on a recommender-driven feed.

Core objects:
    SocialScenario: the ``social`` scenario (state, observation, checks and application of
        actions, metrics, cascades), shardable across Ray shards.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from populace.simulator.scenario import (
    ActionBatch,
    GraphTable,
    Records,
    Scenario,
    StepContext,
    Variable,
    World,
    chunk_sums,
)
from populace.simulator.sharding import Shardable

from . import tables as _tables  # noqa: F401  (declares the tables on the shared Base)
from .actions import (
    ACTIONS,
    COMMENT,
    CREATE_POST,
    DISLIKE,
    FOLLOW,
    LIKE,
    NEEDS_POST,
    NEW_POST,
    QUOTE,
    REJECTIONS,
    REPOST,
    UNFOLLOW,
    SocialArgs,
)
from .config import SocialBroadcast, SocialConfig, SocialJoin, SocialRuleParams
from .decisions import SocialLLM
from .feeds import FeedContext, build_feed
from .metrics import (
    assortativity_from_sums,
    assortativity_sums,
    bimodality_coefficient,
    cascade_metrics,
    pearson,
)
from .observation import SocialObservation
from .rules import SocialRulePolicy
from .state import KINDS, FollowState, LikeSet, SocialState
from .tables import TABLES

log = logging.getLogger("populace.social")


class SocialScenario(Shardable[SocialArgs],
                     Scenario[SocialConfig, SocialObservation, SocialRuleParams, SocialArgs]):
    """A social network in the style of X/Reddit, driven by rule-based or language-model agents.

    Sharded on the Ray runtime: each agent's follow edges and reactions (``state.follows``,
    ``state.likes``) are private, kept by the replica that owns the agent; posts, opinions and
    feed indexes are shared.
    """

    name: ClassVar[str] = "social"
    headline_metrics = (
        "polarization", "bimodality", "assortativity", "exposure_corr", "opinion_mean",
        "opinion_var", "posts_total", "follow_edges",
    )
    config_model = SocialConfig
    rule_params_model = SocialRuleParams
    actions = ACTIONS
    args_type = SocialArgs
    tables = TABLES
    action_table = "actions"
    graph = GraphTable("follows", "follower_id", "followee_id", op="op")
    examples = Path(__file__).parent / "examples"
    variables: ClassVar[dict[str, Variable]] = {
        "opinion": Variable("each agent's opinion, from -1 to 1", -1.0, 1.0)}
    broadcast_model = SocialBroadcast
    join_model = SocialJoin
    # the feed is read from the config at every refresh, the threshold at every metric
    reconfigurable: ClassVar[tuple[str, ...]] = ("feed", "extreme_threshold")
    state: SocialState

    def __init__(self, config: SocialConfig, world: World) -> None:
        super().__init__(config, world)
        n = world.n_agents
        self.n = n
        self.topics = list(config.topics)
        opinion, self.interest = self._opinion_and_interest(
            world.population.attributes, world.rng.get("social.setup"))
        # the state object lives as long as the scenario (the LLM adapter holds it, and a
        # resume restores it in place): ``setup`` and ``load_state_dict`` fill it in
        self.state = SocialState.empty(opinion)
        self.rejected: dict[str, int] = {}
        self.exposure_corr = float("nan")
        self.new_posts = 0

    def _opinion_and_interest(self, attrs: Any, rng: np.random.Generator
                              ) -> tuple[np.ndarray, np.ndarray]:
        """Opinions and topics of interest of the agents of ``attrs`` (population rows),
        drawn from ``rng`` where the population has none."""
        config, n = self.config, len(attrs)
        if config.opinion_attribute in attrs:
            values = attrs[config.opinion_attribute].to_numpy(dtype=np.float64)
            if np.isnan(values).any():
                raise ValueError(f"population attribute {config.opinion_attribute!r} has missing "
                                 "values; give every agent an opinion in [-1, 1]")
            outside = int((np.abs(values) > 1.0).sum())
            if outside:
                log.warning("%d of %d agents have a %r outside [-1, 1] (from %.3g to %.3g); "
                            "clipped to the bounds", outside, n, config.opinion_attribute,
                            float(values.min()), float(values.max()))
            opinion = np.clip(values, -1.0, 1.0)
        else:
            opinion = rng.uniform(-1.0, 1.0, n)
        random_topics = rng.integers(0, len(self.topics), n)
        if config.interest_attribute not in attrs:
            return opinion, random_topics
        lookup = {t: i for i, t in enumerate(self.topics)}
        names = attrs[config.interest_attribute].astype(str).to_numpy()
        mapped = np.array([lookup.get(v, -1) for v in names], dtype=np.int64) if n else (
            np.zeros(0, dtype=np.int64))
        unknown = mapped < 0
        if unknown.any():
            log.warning("%d agents have an interest that is not among scenario.topics; they "
                        "get a random topic", int(unknown.sum()))
        return opinion, np.where(unknown, random_topics, mapped)

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> Records:
        """Initial follow graph and seed posts, recorded as step 0."""
        world, state = self.world, self.state
        graph = world.graph
        if graph is not None and len(graph.src):
            src, dst = np.asarray(graph.src), np.asarray(graph.dst)
            mine = (src >= self.lo) & (src < self.hi)
            state.follows = FollowState.from_edges(self.n, src[mine], dst[mine])
        follows = state.follows
        records: Records = {"follows": {
            "follower_id": follows.src, "followee_id": follows.dst,
            "op": np.ones(follows.n_edges, dtype=np.int64)}}
        state.posts.mark_step(0)
        seed = world.population.seed_posts
        if self.config.seed_posts and seed is not None and len(seed):  # shared: every replica
            authors = seed["author_id"].to_numpy(dtype=np.int64)
            noise = world.rng.get("social.seed_posts").normal(0.0, 0.1, len(authors))
            stance = np.clip(state.opinion[authors] + noise, -1, 1)
            ids = self._publish(authors, np.full(len(authors), 0), np.full(len(authors), -1),
                                self.interest[authors], stance, step=0,
                                epoch=world.clock.epoch(0))
            texts = seed["content"].astype(str).tolist()
            state.content.add(ids, texts)
            if self.lead:
                records["posts"] = self._post_rows(ids, content=texts)
        return records

    # -- phases ---------------------------------------------------------------------------------

    def observe(self, agents: np.ndarray, ctx: StepContext) -> SocialObservation:
        """Refresh the feed of every active agent with the configured recommender."""
        state = self.state
        p = state.posts
        p.mark_step(ctx.step)
        fctx = FeedContext(
            agents=agents, posts=p, follows=state.follows, recent=state.feed.recent,
            feedable=state.feed.feedable, interest=self.interest, n_topics=len(self.topics),
            step=ctx.step, config=self.config.feed,
            draw=lambda purpose, width: ctx.uniform(purpose, agents, width),
            shared_random=ctx.random,
        )
        feed = build_feed(fctx)
        valid = feed >= 0
        safe = np.where(valid, feed, 0)
        stance = np.where(valid, p.stance[safe] if p.n else 0.0, np.nan)
        author = np.where(valid, p.author[safe] if p.n else 0, -1)
        topic = np.where(valid, p.topic[safe] if p.n else 0, -1)
        score = np.where(valid, p.likes[safe] - p.dislikes[safe] if p.n else 0, 0)
        return SocialObservation(agents=agents, feed=feed, stance=stance, author=author,
                                 topic=topic, score=score, opinion=state.opinion[agents],
                                 interest=self.interest[agents], follows=state.follows)

    def observation_summary(self, obs: SocialObservation) -> dict[str, np.ndarray]:
        """The mean stance of each agent's feed (NaN for an empty feed)."""
        valid = obs.feed >= 0
        mean = np.full(len(obs.agents), np.nan)
        seen = valid.any(axis=1)
        if seen.any():
            mean[seen] = np.nanmean(np.where(valid[seen], obs.stance[seen], np.nan), axis=1)
        return {"mean_seen": mean}

    def observed(self, agents: np.ndarray, summary: dict[str, np.ndarray]) -> None:
        """Exposure correlation: opinions against the mean stance of the feed they saw."""
        mean = summary.get("mean_seen")
        seen = np.isfinite(mean) if mean is not None else np.zeros(0, dtype=bool)
        if mean is not None and seen.sum() > 1:
            self.exposure_corr = pearson(self.state.opinion[agents[seen]], mean[seen])
        else:
            self.exposure_corr = float("nan")

    def rule_policy(self, params: SocialRuleParams) -> SocialRulePolicy:
        """The vectorised rule-based social agent."""
        return SocialRulePolicy(params, len(self.topics))

    def llm_adapter(self) -> SocialLLM:
        """Language-model users: prompts from the feed and the agent's profile (its opinion and
        interest are shown on their own, not in the profile)."""
        return SocialLLM(self.topics, self.state, self.world.population,
                         {self.config.opinion_attribute, self.config.interest_attribute})

    def resolve(self, actions: ActionBatch[SocialArgs], ctx: StepContext) -> None:
        """Refuse invalid actions, each with a reason (``refusal``: 1 + index in REJECTIONS, 0
        accepted); against the state before the step, so the order within the batch does not
        matter. Reactions and follows are checked against the acting agent's own (private)
        state, which lives in the shard that decides for it."""
        a = actions.args
        codes, agents = actions.action, actions.agent
        post, target, topic = a.post_id, a.target_id, a.topic
        p = self.state.posts
        refusal = np.zeros(len(actions), dtype=np.int8)

        def refuse(mask: np.ndarray, reason: str) -> None:
            refusal[mask & (refusal == 0)] = REJECTIONS.index(reason) + 1

        needs_post = np.isin(codes, NEEDS_POST)
        refuse(needs_post & ((post < 0) | (post >= p.n)), "unknown_post")
        safe_post = np.clip(post, 0, max(p.n - 1, 0))
        if p.n:
            refuse(((codes == REPOST) | (codes == QUOTE)) & (p.kind[safe_post] == KINDS.index(
                "comment")), "not_repostable")
        react = (codes == LIKE) | (codes == DISLIKE)
        refuse(react & self.state.likes.contains(agents, safe_post), "duplicate_reaction")
        social = (codes == FOLLOW) | (codes == UNFOLLOW)
        refuse(social & ((target < 0) | (target >= self.n)), "unknown_agent")
        refuse(social & (target == agents), "self_follow")
        safe_target = np.clip(target, 0, self.n - 1)
        following = self.state.follows.has(agents, safe_target)
        refuse((codes == FOLLOW) & following, "already_following")
        refuse((codes == UNFOLLOW) & ~following, "not_following")
        refuse((codes == CREATE_POST) & ((topic < 0) | (topic >= len(self.topics))), "bad_topic")
        a.refusal = refusal
        a.accepted = refusal == 0

    def apply(self, actions: ActionBatch[SocialArgs], ctx: StepContext) -> Records:
        """Apply the resolved batch in activation order.

        Shared state (posts, their counts, opinions, feed indexes) changes on every replica;
        reactions and follows change in the replica that owns the acting agent, which also
        returns their rows; the lead replica returns the new posts' rows.
        """
        a = actions.args
        codes, agents = actions.action, actions.agent
        post, target, topic = a.post_id, a.target_id, a.topic
        state = self.state
        p = state.posts
        ok = a.accepted
        self.rejected = dict(zip(REJECTIONS, np.bincount(
            a.refusal.astype(np.int64), minlength=len(REJECTIONS) + 1)[1:].tolist(),
            strict=True))
        mine = (agents >= self.lo) & (agents < self.hi)

        opinion = a.opinion
        moved = np.isfinite(opinion)
        state.opinion[agents[moved]] = np.clip(opinion[moved], -1.0, 1.0)

        records: Records = {}
        # posts, in batch (activation) order
        new = ok & np.isin(codes, NEW_POST)
        if new.any():
            c = codes[new]
            kind = np.select([c == CREATE_POST, c == REPOST, c == QUOTE, c == COMMENT],
                             [0, 1, 2, 3]).astype(np.int8)
            parent = np.where(c == CREATE_POST, -1, post[new])
            safe_parent = np.maximum(parent, 0)
            t = np.where(c == CREATE_POST, topic[new], p.topic[safe_parent] if p.n else 0)
            stance = np.where(c == REPOST, p.stance[safe_parent] if p.n else 0.0, a.stance[new])
            stance = np.where(np.isfinite(stance), stance, state.opinion[agents[new]])
            if p.n:
                shares = parent[(c == REPOST) | (c == QUOTE)]
                np.add.at(p.cols["shares"], shares, 1)
                np.add.at(p.cols["comments"], parent[c == COMMENT], 1)
            ids = self._publish(agents[new], kind, parent, t, stance, ctx.step, ctx.epoch)
            texts = a.content[new].tolist()
            has_text = any(x is not None for x in texts)
            if has_text:
                state.content.add(ids, texts)
            if self.lead:
                records["posts"] = self._post_rows(ids, content=texts if has_text else None)
        self.new_posts = int(new.sum())
        # likes and dislikes
        ok_react = ok & ((codes == LIKE) | (codes == DISLIKE))
        if ok_react.any():
            value = np.where(codes == LIKE, 1, -1)
            liked = post[ok_react]
            np.add.at(p.cols["likes"], liked[value[ok_react] > 0], 1)
            np.add.at(p.cols["dislikes"], liked[value[ok_react] < 0], 1)
            own = ok_react & mine
            state.likes.add(agents[own], post[own])
            records["likes"] = {"agent_id": agents[own], "post_id": post[own],
                                "value": value[own]}
        # follows and unfollows (the follower's own edges)
        fol = ok & mine & (codes == FOLLOW)
        unf = ok & mine & (codes == UNFOLLOW)
        if fol.any() or unf.any():
            state.follows.update(agents[fol], target[fol], agents[unf], target[unf])
            both = fol | unf
            records["follows"] = {"follower_id": agents[both], "followee_id": target[both],
                                  "op": np.where(codes[both] == FOLLOW, 1, -1)}
        return records

    def metrics(self, actions: ActionBatch[SocialArgs], ctx: StepContext) -> dict[str, float]:
        """Action counts, refusals, opinion distribution, polarization and echo-chamber measures."""
        return self.pool_metrics([self.metric_part(actions, ctx)])

    def metric_part(self, actions: ActionBatch[SocialArgs], ctx: StepContext) -> dict[str, Any]:
        """Sums over this replica's follow edges (per chunk of agents) and, on the lead, the
        metrics of shared state: actions, refusals, posts, opinions, exposure."""
        lo, hi = self.lo, self.hi
        follows, op = self.state.follows, self.state.opinion
        part: dict[str, Any] = {
            "follow_edges": follows.n_edges,
            **{k: chunk_sums(v, lo) for k, v in assortativity_sums(
                op, follows.indptr, follows.dst, lo, hi).items()},
        }
        if not self.lead:
            return part
        present = self.world.present  # the opinions of the agents still in the run
        here = op if present.all() else op[present]
        counts = np.bincount(actions.action.astype(np.int64), minlength=len(ACTIONS))
        out: dict[str, float] = {f"actions.{name}": float(c) for name, c in zip(ACTIONS, counts,
                                                                             strict=True)}
        out.update({f"rejected.{k}": float(v) for k, v in self.rejected.items()})
        out.update({
            "active_agents": float(len(actions)),
            "posts_new": float(self.new_posts),
            "posts_total": float(self.state.posts.n),
            "opinion_mean": float(here.mean()) if len(here) else float("nan"),
            "opinion_var": float(here.var()) if len(here) else float("nan"),
            "polarization": float(np.mean(np.abs(here) >= self.config.extreme_threshold))
            if len(here) else float("nan"),
            "bimodality": bimodality_coefficient(here),
            "exposure_corr": self.exposure_corr,
        })
        part["shared"] = out
        return part

    @classmethod
    def pool_metrics(cls, parts: list[dict[str, Any]]) -> dict[str, float]:
        """The lead's metrics plus the follow graph's edge count and assortativity, from the
        chunk sums of every replica in shard order."""
        out = dict(parts[0]["shared"])
        out["follow_edges"] = float(sum(p["follow_edges"] for p in parts))
        sums = {k: float(np.concatenate([p[k] for p in parts]).sum())
                for k in parts[0] if k not in ("shared", "follow_edges")}
        out["assortativity"] = assortativity_from_sums(int(out["follow_edges"]), sums)
        keys = list(parts[0]["shared"])  # the metrics' usual order
        keys.insert(keys.index("opinion_mean"), "follow_edges")
        keys.insert(keys.index("exposure_corr"), "assortativity")
        return {k: out[k] for k in keys}

    def agent_state(self) -> dict[str, np.ndarray]:
        """Opinions of this replica's agents (all of them, on the local runtime)."""
        return {"opinion": self.state.opinion[self.lo:self.hi]}

    def finish(self, ctx: StepContext) -> Records:
        """Cascade measures of every repost tree of the run (shared: on the lead)."""
        if not self.lead:
            return {}
        p = self.state.posts
        frame = cascade_metrics(p.parent, p.root, p.kind != KINDS.index("comment"))
        return {"cascades": {col: frame[col].to_numpy() for col in frame.columns}}

    def broadcast(self, text: str, args: SocialBroadcast, ctx: StepContext) -> Records:
        """Publish a post by the system account (author -1) with its starting votes; every
        replica adds it to the shared posts, the lead returns its row."""
        state = self.state  # (not ``mark_step``: it is published before step ``ctx.step`` starts)
        topic = self.topics.index(args.topic) if args.topic is not None else 0
        ids = self._publish(np.array([-1]), np.array([KINDS.index("post")]), np.array([-1]),
                            np.array([topic]), np.array([args.stance]), ctx.step, ctx.epoch)
        state.posts.cols["likes"][ids] += args.likes
        state.posts.cols["dislikes"][ids] += args.dislikes
        state.content.add(ids, [text])
        return {"posts": self._post_rows(ids, content=[text])} if self.lead else {}

    def join(self, agents: np.ndarray, args: SocialJoin, ctx: StepContext) -> Records:
        """Newcomers get opinions and interests from their attributes (drawn where they have
        none), empty feeds and reactions, and follow ``args.follows`` agents that were
        present; edge and reaction keys are re-encoded for the larger population."""
        state, old, n = self.state, self.n, int(agents[-1]) + 1
        rows = self.world.population.attributes.iloc[old:n]
        # streams of this join (keyed by its first newcomer: two joins of one step draw apart)
        first = int(agents[0])
        opinion, interest = self._opinion_and_interest(rows, ctx.random(f"social.join.{first}"))
        state.opinion = np.concatenate([state.opinion, opinion])
        self.interest = np.concatenate([self.interest, interest])
        follows, likes = state.follows, state.likes
        src, dst = follows.keys // old, follows.keys % old
        state.follows = FollowState(n, src * n + dst)  # same order: sorted by (src, dst)
        post, who = likes.keys // likes.n, likes.keys % likes.n
        state.likes = LikeSet(n, post * n + who)
        state.feed.recent = np.concatenate([state.feed.recent, np.full(
            (len(agents), state.feed.recent.shape[1]), -1, dtype=state.feed.recent.dtype)])
        self.n = n
        # whom they follow: distinct agents present before, drawn alike on every replica
        present = np.flatnonzero(self.world.present[:old])
        m = min(args.follows, len(present))
        mine = agents[(agents >= self.lo) & (agents < self.hi)]
        if not m or not len(mine):
            return {}
        picks = distinct_draws(ctx.random(f"social.join.follows.{first}"), len(present),
                               len(agents), m)
        followees = np.sort(present[picks[mine - old]], axis=1).ravel()
        followers = np.repeat(mine, m)
        state.follows.update(followers, followees, np.zeros(0, np.int64), np.zeros(0, np.int64))
        return {"follows": {"follower_id": followers, "followee_id": followees,
                            "op": np.ones(len(followers), dtype=np.int64)}}

    # -- helpers ----------------------------------------------------------------------------------

    def _publish(self, authors: np.ndarray, kind: np.ndarray, parent: np.ndarray,
                 topic: np.ndarray, stance: np.ndarray, step: int, epoch: float) -> np.ndarray:
        p = self.state.posts
        start = p.n
        ids = np.arange(start, start + len(authors), dtype=np.int64)
        root = np.where(parent >= 0, p.root[np.maximum(parent, 0)] if p.n else 0, ids)
        p.append(author=authors, step=np.full(len(ids), step), kind=kind, parent=parent,
                 root=root, topic=topic, stance=stance, created=np.full(len(ids), epoch))
        self.state.feed.add(ids, authors, kind)
        return ids

    def _post_rows(self, ids: np.ndarray, content: list[Any] | None = None) -> dict[str, Any]:
        p = self.state.posts
        kinds = np.asarray(KINDS, dtype=object)
        topics = np.asarray(self.topics, dtype=object)
        return {
            "post_id": ids, "author_id": p.author[ids], "kind": kinds[p.kind[ids]],
            "parent_id": p.parent[ids], "root_id": p.root[ids], "topic": topics[p.topic[ids]],
            "stance": p.stance[ids].astype(np.float64),
            "content": content if content is not None else [None] * len(ids),
        }

    # -- checkpoints ------------------------------------------------------------------------------

    @classmethod
    def merge_states(cls, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Shared state from the lead; every replica's edges (keys ``follower * n + followee``:
        blocks of followers, already in order) and reactions (sorted by post)."""
        follow_keys, like_keys = SocialState.FOLLOW_KEYS, SocialState.LIKE_KEYS
        state = dict(parts[0])
        state[follow_keys] = np.concatenate([p[follow_keys] for p in parts])
        state[like_keys] = np.sort(np.concatenate([p[like_keys] for p in parts]))
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` (or ``merge_states``) returned; keep own agents' edges
        and reactions."""
        n, follow_keys, like_keys = self.n, SocialState.FOLLOW_KEYS, SocialState.LIKE_KEYS
        keys = state[follow_keys].astype(np.int64)
        first, last = np.searchsorted(keys, [self.lo * n, self.hi * n])
        likes = state[like_keys].astype(np.int64)
        who = likes % self.state.likes.n
        super().load_state_dict({**state, follow_keys: keys[first:last],
                                 like_keys: likes[(who >= self.lo) & (who < self.hi)]})


def distinct_draws(rng: np.random.Generator, size: int, rows: int, m: int) -> np.ndarray:
    """``rows`` x ``m`` indices into ``range(size)``, distinct within each row, uniformly
    drawn (``m <= size``): with replacement, repeats dropped, in bulk; a row left short (a
    small pool) is drawn by sorting random keys."""
    out = np.empty((rows, m), dtype=np.int64)
    if m == 0 or rows == 0:
        return out
    short = np.ones(rows, dtype=bool)
    if size > 4 * m:
        draws = rng.integers(0, size, size=(rows, 2 * m + 8))
        order = np.argsort(draws, axis=1, kind="stable")
        ranked = np.take_along_axis(draws, order, axis=1)
        repeat = np.zeros(draws.shape, dtype=bool)  # a later draw of a value already drawn
        np.put_along_axis(repeat, order, np.pad(ranked[:, 1:] == ranked[:, :-1],
                                                ((0, 0), (1, 0))), axis=1)
        keep = ~repeat & (np.cumsum(~repeat, axis=1) <= m)
        short = keep.sum(axis=1) < m
        out[~short] = draws[~short][keep[~short]].reshape(-1, m)
    if short.any():
        keys = rng.random((int(short.sum()), size))
        out[short] = np.argsort(keys, axis=1)[:, :m]
    return out
