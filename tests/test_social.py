"""The social scenario: recommenders, action application and refusals, cascade and polarization
measures, opinion dynamics through the engine, and batch-independence of the rule agent.

Most tests build a small world by hand and step the scenario as the engine does (``observe``
then ``apply`` each step), so what each agent sees and does is known exactly.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from populace.scenarios.social import (
    SocialConfig,
    SocialRuleParams,
    SocialScenario,
    bimodality_coefficient,
    cascades,
)
from populace.scenarios.social.actions import (
    COMMENT,
    CREATE_POST,
    DISLIKE,
    FOLLOW,
    LIKE,
    QUOTE,
    REPOST,
    UNFOLLOW,
    SocialArgs,
)
from populace.scenarios.social.metrics import cascade_metrics
from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.actions import ActionBatch
from populace.simulator.clock import Clock
from populace.simulator.network import FollowGraph
from populace.simulator.population import Population
from populace.simulator.rng import RngStreams
from populace.simulator.runtime import blocks
from populace.simulator.scenario import Records, StepContext, World
from populace.simulator.shard import ShardReplica

from .conftest import experiment
from .helpers import run_experiment

TOPICS = ["politics", "economy", "health", "technology", "sports"]
START = datetime(2025, 1, 1)
HOUR = timedelta(hours=1)
REASONS = ("unknown_post", "not_repostable", "duplicate_reaction", "unknown_agent",
           "self_follow", "already_following", "not_following", "bad_topic")
NAN = float("nan")


# -- a hand-driven world ----------------------------------------------------------------------


def make_scenario(n: int, *, edges: Sequence[tuple[int, int]] = (),
                  feed: dict[str, Any] | None = None,
                  opinion: list[float] | None = None, interest: list[str] | None = None,
                  seed_posts: pd.DataFrame | None = None, seed: int = 1,
                  **config: Any) -> SocialScenario:
    """A social scenario over ``n`` agents with the given follow edges ("src follows dst")."""
    columns: dict[str, Any] = {}
    if opinion is not None:
        columns["opinion"] = np.asarray(opinion, dtype=np.float64)
    if interest is not None:
        columns["interest"] = list(interest)
    population = Population(pd.DataFrame(columns, index=pd.RangeIndex(n)), seed_posts=seed_posts)
    src = np.array([e[0] for e in edges], dtype=np.int64)
    dst = np.array([e[1] for e in edges], dtype=np.int64)
    world = World(population, FollowGraph.from_edges(n, src, dst), Clock(START, HOUR),
                  RngStreams(seed), Path("."))
    return SocialScenario(SocialConfig(feed=feed or {}, **config), world)


def epoch(step: int) -> float:
    """Simulated time of ``step`` in epoch seconds, computed independently of the Clock."""
    return START.replace(tzinfo=UTC).timestamp() + 3600.0 * step


class Driver:
    """Steps a scenario as the engine does (observe, then apply) and keeps every post made."""

    def __init__(self, scenario: SocialScenario) -> None:
        self.sc = scenario
        self.step = 0
        self.posts = self._frame(scenario.setup().get("posts"), 0)

    @staticmethod
    def _frame(rows: dict[str, Any] | None, step: int) -> pd.DataFrame:
        frame = pd.DataFrame(rows or {"post_id": [], "author_id": [], "kind": [],
                                      "parent_id": [], "root_id": [], "topic": [], "stance": []})
        return frame.assign(step=step)

    def ctx(self, step: int | None = None) -> StepContext:
        step = self.step if step is None else step
        return StepContext(step=step, time=START + step * HOUR, epoch=epoch(step),
                           hour=(START + step * HOUR).hour, rng=self.sc.world.rng)

    def feed(self, agents: Any) -> Any:
        """What ``agents`` see at the next step (nothing is applied)."""
        return self.sc.observe(np.asarray(agents, dtype=np.int64), self.ctx(self.step + 1))

    def act(self, agents: Any, codes: Any, **args: Any
            ) -> tuple[Records, ActionBatch[SocialArgs]]:
        """One step in which ``agents`` take ``codes`` (scalars broadcast over the agents)."""
        self.step += 1
        ctx = self.ctx()
        agents = np.atleast_1d(np.asarray(agents, dtype=np.int64))

        def column(v: Any) -> np.ndarray:
            return np.array(np.broadcast_to(np.asarray(v), agents.shape))

        self.sc.observe(agents, ctx)
        batch = ActionBatch(agents, column(codes).astype(np.int16),
                            SocialArgs(**{k: column(v) for k, v in args.items()}))
        self.sc.resolve(batch, ctx)
        records = self.sc.apply(batch, ctx)
        if "posts" in records:
            self.posts = pd.concat([self.posts, self._frame(records["posts"], self.step)],
                                   ignore_index=True)
        return records, batch

    def metrics(self, batch: ActionBatch) -> dict[str, float]:
        return self.sc.metrics(batch, self.ctx())

    def post(self, post_id: int) -> pd.Series:
        return self.posts.set_index("post_id").loc[post_id]


def row(feed_row: np.ndarray) -> list[int]:
    """The post ids of one feed row, padding dropped."""
    return [int(p) for p in feed_row if p >= 0]


def padded(ids: list[int], size: int) -> list[int]:
    return list(ids[:size]) + [-1] * (size - len(ids[:size]))


# -- feeds ------------------------------------------------------------------------------------


def test_followees_feed_newest_posts_of_followed_accounts_in_window() -> None:
    edges = [(0, 1), (0, 2), (0, 3), (4, 1)]
    d = Driver(make_scenario(10, edges=edges, feed={"algorithm": "followees", "size": 5,
                                                    "window": 3}))
    authors = [0, 1, 2, 3, 6]  # 6 is followed by nobody; 0 is the observer itself
    for _ in range(6):
        d.act(authors, CREATE_POST, topic=0)

    def expected(agent: int, follows: set[tuple[int, int]], size: int = 5) -> list[int]:
        followees = {b for a, b in follows if a == agent}
        p = d.posts
        sel = p[p["author_id"].isin(followees) & (p["step"] >= d.step + 1 - 3)]
        return padded(sorted(sel["post_id"], reverse=True), size)

    follows = set(edges)
    obs = d.feed([0, 4, 5])
    assert obs.feed.shape == (3, 5)
    assert obs.feed[0].tolist() == expected(0, follows)
    assert obs.feed[1].tolist() == expected(4, follows)  # 3 posts of agent 1 in the window
    assert row(obs.feed[1]) and len(row(obs.feed[1])) == 3
    assert obs.feed[2].tolist() == [-1] * 5  # follows nobody
    # posts of followees older than the window are not shown
    old = d.posts[(d.posts["author_id"] == 1) & (d.posts["step"] < 4)]["post_id"]
    assert not set(old) & set(obs.feed.ravel())

    # the feed follows the graph as apply() changes it
    d.act([0, 1, 2, 3, 6], [UNFOLLOW, CREATE_POST, CREATE_POST, CREATE_POST, CREATE_POST],
          target_id=[3, -1, -1, -1, -1], topic=[-1, 0, 0, 0, 0])
    d.act([0], FOLLOW, target_id=6)
    follows = (follows - {(0, 3)}) | {(0, 6)}
    obs = d.feed([0])
    assert obs.feed[0].tolist() == expected(0, follows)
    shown = set(d.posts.set_index("post_id").loc[row(obs.feed[0]), "author_id"])
    assert 6 in shown and 3 not in shown


def test_followees_feed_shows_newest_posts_after_several_seed_posts() -> None:
    seed = pd.DataFrame({"author_id": np.array([2, 2, 2, 1], dtype=np.int64),
                         "content": ["first", "second", "third", "other"]})
    d = Driver(make_scenario(6, edges=[(0, 2)], seed_posts=seed,
                             feed={"algorithm": "followees", "size": 4, "window": 50}))
    for _ in range(3):
        d.act([2], CREATE_POST, topic=0)
    own = d.posts[d.posts["author_id"] == 2]["post_id"].tolist()  # 0, 1, 2 (seed), 4, 5, 6
    assert len(own) == 6
    assert d.feed([0]).feed[0].tolist() == sorted(own, reverse=True)[:4]


def hot_world(votes: dict[int, int], *, second_authors: list[int] | None = None,
              **feed: Any) -> Driver:
    """Posts 0-4 at step 1 (agents 0-4), posts 5-9 at step 2, then net votes by agents 10+."""
    d = Driver(make_scenario(60, feed={"algorithm": "hot", **feed}))
    d.act(range(5), CREATE_POST, topic=0)
    d.act(second_authors or list(range(5, 10)), CREATE_POST, topic=0)
    voters = iter(range(10, 60))
    agents, codes, posts = [], [], []
    for post, v in votes.items():
        for _ in range(abs(v)):
            agents.append(next(voters))
            codes.append(LIKE if v > 0 else DISLIKE)
            posts.append(post)
    d.act(agents, codes, post_id=posts)
    return d


def hot_ranking(d: Driver, votes: dict[int, int], agent: int) -> list[int]:
    """The published Reddit hot ranking of every post but ``agent``'s own (ties: newer first)."""
    ranked = []
    for p in d.posts.itertuples():
        if p.author_id == agent:
            continue
        s = votes.get(p.post_id, 0)
        score = np.sign(s) * np.log10(max(abs(s), 1)) + (epoch(p.step) - 1134028003) / 45000
        ranked.append((-score, -p.post_id))
    return [-pid for _, pid in sorted(ranked)]


VOTES = {0: 15, 1: -10, 2: 5, 7: 3, 9: 2}
HOT_OBSERVERS = [0, 2, 7, 9, 20, 55]


def test_hot_feed_selects_the_hottest_posts() -> None:
    d = hot_world(VOTES, size=3)
    obs = d.feed(HOT_OBSERVERS)
    for agent, feed_row in zip(HOT_OBSERVERS, obs.feed, strict=True):
        assert set(row(feed_row)) == set(hot_ranking(d, VOTES, agent)[:3]), agent


def test_hot_feed_is_in_hot_score_order() -> None:
    d = hot_world(VOTES, size=3)
    obs = d.feed(HOT_OBSERVERS)
    for agent, feed_row in zip(HOT_OBSERVERS, obs.feed, strict=True):
        assert row(feed_row) == hot_ranking(d, VOTES, agent)[:3], agent


def test_hot_feed_fills_every_slot_for_an_author_of_several_hot_posts() -> None:
    votes = {0: 15, 5: 10, 2: 5, 7: 3, 9: 2}  # agent 0 wrote posts 0 and 5, the two hottest
    d = hot_world(votes, second_authors=[0, 6, 7, 8, 9], size=3)
    assert d.posts.set_index("post_id").loc[[0, 5], "author_id"].tolist() == [0, 0]
    assert len(row(d.feed([0]).feed[0])) == 3


def test_hot_feed_window_and_own_posts() -> None:
    # window 2 at step 4: only posts of steps 2 and 3; the hottest post (0, step 1) is too old
    d = hot_world(VOTES, size=10, window=2)
    assert d.step == 3
    obs = d.feed([20, 7, 0])
    second = set(range(5, 10))
    assert set(row(obs.feed[0])) == second
    assert set(row(obs.feed[1])) == second - {7}
    assert set(row(obs.feed[2])) == second


def test_random_feed_draws_only_from_the_window() -> None:
    n = 60
    d = Driver(make_scenario(n, feed={"algorithm": "random", "size": 5, "window": 2}))
    for _ in range(4):
        d.act(range(10), CREATE_POST, topic=0)  # 10 posts per step, by agents 0-9
    agents = np.arange(n)
    obs = d.feed(agents)
    pool = set(d.posts[d.posts["step"] >= 3]["post_id"])  # steps 3 and 4
    assert len(pool) == 20
    author = d.posts.set_index("post_id")["author_id"]
    shown: set[int] = set()
    for agent, feed_row in zip(agents, obs.feed, strict=True):
        ids = row(feed_row)
        assert ids and set(ids) <= pool
        assert len(set(ids)) == len(ids)
        assert (author.loc[ids] != agent).all()
        shown |= set(ids)
    assert shown == pool  # 300 draws reach every post of the window
    assert len({tuple(r) for r in obs.feed.tolist()}) > n // 2  # feeds differ between agents


def test_interest_feed_shows_the_agents_topic_ranked_by_popularity() -> None:
    n = 50
    interest = [TOPICS[i % 5] for i in range(n)]
    d = Driver(make_scenario(n, interest=interest,
                             feed={"algorithm": "interest", "size": 2, "window": 24}))
    d.act(range(30), CREATE_POST, topic=[i // 6 for i in range(30)])  # 6 posts per topic
    # 12 more politics posts (ids 30-41), half of them liked once
    d.act(range(30, 42), CREATE_POST, topic=0)
    liked = [30, 32, 34, 36, 38, 40]
    d.act(range(42, 48), LIKE, post_id=liked)
    agents = np.arange(n)
    obs = d.feed(agents)
    posts = d.posts.set_index("post_id")
    for agent, feed_row in zip(agents, obs.feed, strict=True):
        ids = row(feed_row)
        topic = TOPICS[agent % 5]
        assert (posts.loc[ids, "topic"] == topic).all(), agent
        assert (posts.loc[ids, "author_id"] != agent).all()
        if topic == "politics":
            # 2 slots -> 6 candidates per topic: the 6 liked posts outrank 12 unliked ones
            assert set(ids) <= set(liked), agent
        elif not (agent < 30 and agent // 6 == agent % 5):  # own posts are never shown
            assert len(ids) == 2, agent
    assert (obs.topic[obs.feed >= 0] == np.repeat(obs.interest, 2)[(obs.feed >= 0).ravel()]).all()


@pytest.mark.parametrize(("followees", "hot", "expected"), [
    (0.5, 0.5, (2, 2)),
    (0.75, 0.25, (3, 1)),
    (0.6, 0.4, (2, 2)),  # 2.4 / 1.6 slots: the larger remainder gets the spare slot
    (0.2, 0.8, (1, 3)),
    (0.9, 0.1, (4, 0)),
])
def test_mix_feed_shares_slots_by_weight(followees: float, hot: float,
                                         expected: tuple[int, int]) -> None:
    d = Driver(make_scenario(30, edges=[(0, 1)], feed={
        "algorithm": "mix", "size": 4, "mix": {"followees": followees, "hot": hot}}))
    for _ in range(4):
        d.act([1], CREATE_POST, topic=0)  # four posts of the followee, steps 1-4
    d.act(range(10, 20), CREATE_POST, topic=1)  # newer posts by strangers: hotter
    ids = row(d.feed([0]).feed[0])
    authors = d.posts.set_index("post_id").loc[ids, "author_id"]
    assert ((authors == 1).sum(), authors.between(10, 19).sum()) == expected
    newest_of_followee = sorted(d.posts[d.posts["author_id"] == 1]["post_id"], reverse=True)
    assert sorted(authors[authors == 1].index, reverse=True) == newest_of_followee[:expected[0]]


def _drive_rule_agents(algorithm: str, steps: int = 8, n: int = 150):
    """Rule agents on a random follow graph; yields (step, observation) before each apply."""
    rng = np.random.default_rng(5)
    edges = [(a, int(b)) for a in range(n) for b in rng.choice(n, 8, replace=False) if b != a]
    sc = make_scenario(n, edges=edges, opinion=rng.uniform(-1, 1, n).tolist(),
                       interest=[TOPICS[i] for i in rng.integers(0, 5, n)],
                       feed={"algorithm": algorithm, "size": 6, "window": 3})
    d = Driver(sc)
    policy = sc.rule_policy(SocialRuleParams(post_rate=0.3, repost_rate=0.15, quote_rate=0.05,
                                             comment_rate=0.1, like_rate=0.2, follow_rate=0.05,
                                             unfollow_rate=0.05))
    for step in range(1, steps + 1):
        active = rng.permutation(n)[: n // 2]
        ctx = d.ctx(step)
        obs = sc.observe(active, ctx)
        yield d, step, obs
        actions = policy.decide(obs, ctx)
        sc.resolve(actions, ctx)
        records = sc.apply(actions, ctx)
        d.step = step
        if "posts" in records:
            d.posts = pd.concat([d.posts, d._frame(records["posts"], step)], ignore_index=True)


@pytest.mark.parametrize("algorithm", ["random", "followees", "hot", "interest", "mix"])
def test_every_feed_is_clean(algorithm: str) -> None:
    """No own posts, no comments, no repeats, only the window, padding last, columns aligned."""
    shown = own_in_window = 0
    for d, step, obs in _drive_rule_agents(algorithm):
        feed = obs.feed
        assert feed.shape == (len(obs.agents), 6)
        valid = feed >= 0
        # -1 padding only at the end of a row
        assert (valid[:, :-1] | ~valid[:, 1:]).all()
        posts = d.posts.set_index("post_id")
        window_authors = set(posts[posts["step"] >= step - 3]["author_id"])
        own_in_window += len(window_authors & set(obs.agents.tolist()))
        for i, agent in enumerate(obs.agents):
            ids = row(feed[i])
            shown += len(ids)
            assert len(set(ids)) == len(ids)
            seen = posts.loc[ids]
            assert (seen["author_id"] != agent).all()
            assert (seen["kind"] != "comment").all()
            assert (seen["step"] >= step - 3).all()
            k = len(ids)
            assert obs.author[i, :k].tolist() == seen["author_id"].tolist()
            assert [TOPICS[t] for t in obs.topic[i, :k]] == seen["topic"].tolist()
            np.testing.assert_allclose(obs.stance[i, :k], seen["stance"], atol=1e-6)
            assert (obs.author[i, k:] == -1).all() and np.isnan(obs.stance[i, k:]).all()
            if algorithm == "followees" and k:
                assert d.sc.state.follows.has(np.full(k, agent),
                                              seen["author_id"].to_numpy()).all()
            if algorithm == "interest":
                assert (obs.topic[i, :k] == obs.interest[i]).all()
    assert shown > 1000 and own_in_window > 100  # the checks had something to bite on


# -- apply ------------------------------------------------------------------------------------


def reaction_world() -> Driver:
    """Post 0 by agent 1; comment 1 (agent 2) and repost 2 (agent 3) of it; agent 4 liked it."""
    d = Driver(make_scenario(6, edges=[(0, 1)], opinion=[0.5, -0.2, 0.1, 0.3, -0.6, 0.0]))
    d.act([1], CREATE_POST, topic=2, stance=0.4)
    d.act([2, 3, 4], [COMMENT, REPOST, LIKE], post_id=0, stance=[-0.3, NAN, NAN])
    assert d.posts["kind"].tolist() == ["post", "comment", "repost"]
    return d


def _snapshot(d: Driver) -> tuple[Any, ...]:
    sc = d.sc
    a, b = np.meshgrid(np.arange(6), np.arange(6))
    posts = sc.state.posts
    return (posts.n, posts.likes.tolist(), posts.dislikes.tolist(),
            sc.state.follows.has(a.ravel(), b.ravel()).tolist(), sc.agent_state()["opinion"].tolist())


REFUSALS = [
    ("like_unknown_post", 5, LIKE, {"post_id": 99}, "unknown_post"),
    ("repost_negative_id", 5, REPOST, {"post_id": -1}, "unknown_post"),
    ("like_twice", 4, LIKE, {"post_id": 0}, "duplicate_reaction"),
    ("dislike_after_like", 4, DISLIKE, {"post_id": 0}, "duplicate_reaction"),
    ("follow_self", 2, FOLLOW, {"target_id": 2}, "self_follow"),
    ("follow_again", 0, FOLLOW, {"target_id": 1}, "already_following"),
    ("unfollow_stranger", 0, UNFOLLOW, {"target_id": 2}, "not_following"),
    ("follow_unknown_agent", 5, FOLLOW, {"target_id": 6}, "unknown_agent"),
    ("repost_comment", 5, REPOST, {"post_id": 1}, "not_repostable"),
    ("quote_comment", 5, QUOTE, {"post_id": 1, "stance": 0.3}, "not_repostable"),
    ("topic_too_large", 5, CREATE_POST, {"topic": len(TOPICS)}, "bad_topic"),
    ("topic_negative", 5, CREATE_POST, {"topic": -1}, "bad_topic"),
]


@pytest.mark.parametrize(("agent", "code", "args", "reason"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_invalid_action_is_refused_and_changes_nothing(agent: int, code: int,
                                                       args: dict[str, Any], reason: str) -> None:
    d = reaction_world()
    before = _snapshot(d)
    records, batch = d.act([agent], code, **args)
    metrics = d.metrics(batch)
    assert {r: metrics[f"rejected.{r}"] for r in REASONS} == {
        r: float(r == reason) for r in REASONS}
    assert batch.args.accepted.tolist() == [False]
    assert not any(len(next(iter(cols.values()))) for cols in records.values() if cols)
    assert _snapshot(d) == before
    assert metrics["posts_total"] == 3 and metrics["follow_edges"] == 1


def test_mixed_batch_applies_valid_actions_and_refuses_the_rest() -> None:
    d = reaction_world()
    records, batch = d.act(
        range(6), [UNFOLLOW, REPOST, FOLLOW, LIKE, LIKE, QUOTE],
        post_id=[-1, 1, -1, 99, 0, 2], target_id=[1, -1, 1, -1, -1, -1],
        stance=[NAN, NAN, NAN, NAN, NAN, -0.5])
    assert batch.args.accepted.dtype == bool
    assert batch.args.accepted.tolist() == [True, False, True, False, False, True]
    metrics = d.metrics(batch)
    assert {r: metrics[f"rejected.{r}"] for r in REASONS if metrics[f"rejected.{r}"]} == {
        "not_repostable": 1, "unknown_post": 1, "duplicate_reaction": 1}
    assert "likes" not in records
    follows = records["follows"]
    assert list(zip(follows["follower_id"], follows["followee_id"], follows["op"],
                    strict=True)) == [(0, 1, -1), (2, 1, 1)]
    assert records["posts"]["author_id"].tolist() == [5]
    assert d.sc.state.follows.has(np.array([0, 2]), np.array([1, 1])).tolist() == [False, True]
    assert metrics["follow_edges"] == 1 and metrics["posts_total"] == 4


def test_accepted_reactions_and_follows_change_state() -> None:
    d = reaction_world()
    assert d.sc.state.posts.likes[0] == 1
    records, batch = d.act([0, 5, 2], [LIKE, DISLIKE, LIKE], post_id=[0, 0, 2])
    assert batch.args.accepted.all()
    assert records["likes"]["value"].tolist() == [1, -1, 1]
    assert records["likes"]["post_id"].tolist() == [0, 0, 2]
    assert d.sc.state.posts.likes[[0, 2]].tolist() == [2, 1]
    assert d.sc.state.posts.dislikes[[0, 2]].tolist() == [1, 0]
    # reacting again to the same post is refused, whatever the reaction
    _, batch = d.act([0, 5], [DISLIKE, LIKE], post_id=[0, 0])
    assert not batch.args.accepted.any()

    records, batch = d.act([2, 3, 0], [FOLLOW, FOLLOW, UNFOLLOW], target_id=[1, 1, 1])
    assert batch.args.accepted.all()
    assert records["follows"]["op"].tolist() == [1, 1, -1]
    assert d.sc.state.follows.has(np.array([2, 3, 0]), np.array([1, 1, 1])).tolist() == [
        True, True, False]
    assert d.metrics(batch)["follow_edges"] == 2
    _, followees = d.sc.state.follows.followees(np.array([2, 3, 0]))
    assert followees.tolist() == [1, 1]


def test_reposts_quotes_and_comments_keep_parent_root_topic_and_stance() -> None:
    d = reaction_world()
    original = d.post(0)
    assert (original["topic"], original["stance"]) == ("health", pytest.approx(0.4))
    # a repost of the repost (post 2): parent is the repost, root the original (post 3)
    records, _ = d.act([5], REPOST, post_id=2)
    # reposting the repost of the repost, quoting it, commenting the comment (posts 4, 5, 6)
    records, batch = d.act([0, 4, 3], [REPOST, QUOTE, COMMENT], post_id=[3, 3, 1],
                           stance=[NAN, -0.5, 0.2])
    assert batch.args.accepted.all()
    p = d.posts.set_index("post_id")
    assert p.loc[3, ["kind", "parent_id", "root_id"]].tolist() == ["repost", 2, 0]
    assert p.loc[4, ["kind", "parent_id", "root_id"]].tolist() == ["repost", 3, 0]
    assert p.loc[5, ["kind", "parent_id", "root_id"]].tolist() == ["quote", 3, 0]
    assert p.loc[6, ["kind", "parent_id", "root_id"]].tolist() == ["comment", 1, 0]
    assert (p.loc[[2, 3, 4, 5, 6], "topic"] == "health").all()
    # a repost carries its source's stance; a quote or comment its own
    assert p.loc[[2, 3, 4], "stance"].tolist() == pytest.approx([0.4, 0.4, 0.4])
    assert p.loc[[5, 6], "stance"].tolist() == pytest.approx([-0.5, 0.2])
    assert p.loc[[3, 4, 5, 6], "author_id"].tolist() == [5, 0, 4, 3]


def test_new_posts_and_opinions() -> None:
    d = reaction_world()
    records, _ = d.act([0, 3, 5], CREATE_POST, topic=[4, 0, 1], stance=[NAN, -0.7, NAN],
                       opinion=[NAN, 1.7, -0.25])
    rows = records["posts"]
    assert rows["kind"].tolist() == ["post"] * 3 and rows["parent_id"].tolist() == [-1] * 3
    assert rows["root_id"].tolist() == rows["post_id"].tolist() == [3, 4, 5]
    assert rows["topic"].tolist() == ["sports", "politics", "economy"]
    # no stance given: the author's opinion (agent 0: 0.5; agent 5 moved to -0.25 this step)
    assert rows["stance"].tolist() == pytest.approx([0.5, -0.7, -0.25])
    opinion = d.sc.agent_state()["opinion"]
    assert opinion.tolist() == pytest.approx([0.5, -0.2, 0.1, 1.0, -0.6, -0.25])  # 1.7 clipped


# -- cascades ---------------------------------------------------------------------------------


def nx_cascades(posts: pd.DataFrame) -> pd.DataFrame:
    """Reference cascade measures with networkx: the repost/quote tree below each original."""
    tree = nx.DiGraph()
    shared = posts[(posts["kind"] != "comment") & (posts["parent_id"] >= 0)]
    tree.add_edges_from(zip(shared["parent_id"], shared["post_id"], strict=True))
    rows = []
    for root in posts[posts["parent_id"] < 0]["post_id"]:
        if root not in tree or tree.out_degree(root) == 0:
            continue
        depth = nx.single_source_shortest_path_length(tree, root)
        nodes = list(depth)
        rows.append({
            "root_id": root, "scale": len(nodes), "depth": max(depth.values()),
            "max_breadth": max(Counter(depth.values()).values()),
            "structural_virality": nx.average_shortest_path_length(
                tree.subgraph(nodes).to_undirected()),
        })
    return pd.DataFrame(rows, columns=["root_id", "scale", "depth", "max_breadth",
                                       "structural_virality"])


def assert_same_cascades(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.sort_values("root_id").reset_index(drop=True)
    want = want.sort_values("root_id").reset_index(drop=True)
    assert len(want) > 0
    for col in ("root_id", "scale", "depth", "max_breadth"):
        assert got[col].astype(int).tolist() == want[col].astype(int).tolist(), col
    np.testing.assert_allclose(got["structural_virality"], want["structural_virality"],
                               rtol=1e-12)


def random_posts(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Originals, reposts, quotes and comments (comments only below comments), ids in order."""
    parent = np.full(n, -1)
    root = np.arange(n)
    kind = ["post"] * n
    for i in range(1, n):
        if rng.random() < 0.2:
            continue
        p = int(rng.integers(max(0, i - 40), i))  # recent posts get the replies
        parent[i], root[i] = p, root[p]
        kind[i] = "comment" if kind[p] == "comment" else str(
            rng.choice(["repost", "repost", "quote", "comment"]))
    return pd.DataFrame({"post_id": np.arange(n), "parent_id": parent, "root_id": root,
                         "kind": kind})


def test_cascades_of_small_trees() -> None:
    # star: 0 <- 1, 2, 3, 4; chain: 5 <- 6 <- 7 <- 8; 9 has only a comment; 10 nothing
    parent = np.array([-1, 0, 0, 0, 0, -1, 5, 6, 7, -1, 9, -1])
    root = np.array([0, 0, 0, 0, 0, 5, 5, 5, 5, 9, 9, 11])
    kinds = ["post", "repost", "quote", "repost", "repost", "post", "repost", "repost", "quote",
             "post", "comment", "post"]
    frame = cascade_metrics(parent, root, np.array([k != "comment" for k in kinds]))
    assert frame["root_id"].tolist() == [0, 5]
    assert frame["scale"].tolist() == [5, 4]
    assert frame["depth"].tolist() == [1, 3]
    assert frame["max_breadth"].tolist() == [4, 1]
    # star: 4 pairs at distance 1, 6 at distance 2; chain: 3 at 1, 2 at 2, 1 at 3
    np.testing.assert_allclose(frame["structural_virality"], [16 / 10, 10 / 6])


def test_cascades_match_networkx_on_random_forests() -> None:
    rng = np.random.default_rng(3)
    posts = random_posts(rng, 600)
    want = nx_cascades(posts)
    assert want["depth"].max() >= 4 and len(want) >= 20
    # roots whose only replies are comments, and roots without replies, have no row
    originals = set(posts[posts["parent_id"] < 0]["post_id"])
    assert len(originals - set(want["root_id"])) >= 10
    got = cascades(posts.sample(frac=1.0, random_state=1))  # row order does not matter
    assert_same_cascades(got, want)
    assert_same_cascades(cascade_metrics(posts["parent_id"].to_numpy(),
                                         posts["root_id"].to_numpy(),
                                         (posts["kind"] != "comment").to_numpy()), want)


def test_cascades_need_every_post() -> None:
    posts = random_posts(np.random.default_rng(0), 50)
    with pytest.raises(ValueError, match="every post"):
        cascades(posts[posts["post_id"] != 10])


def test_finish_records_the_cascades_of_the_posts_made() -> None:
    d = Driver(make_scenario(20))
    d.act(range(4), CREATE_POST, topic=0)  # 0-3
    d.act([4, 5, 6, 7, 8], [REPOST, REPOST, REPOST, COMMENT, QUOTE],
          post_id=[0, 0, 0, 0, 1])  # 4, 5, 6, comment 7, quote 8
    d.act([9, 10, 11], [REPOST, COMMENT, REPOST], post_id=[4, 7, 8])  # 9, comment 10, 11
    d.act([12], REPOST, post_id=9)  # 12
    rows = d.sc.finish(d.ctx())["cascades"]
    got = pd.DataFrame(rows)
    assert got["root_id"].tolist() == [0, 1]
    assert got["scale"].tolist() == [6, 3] and got["depth"].tolist() == [3, 2]
    assert got["max_breadth"].tolist() == [3, 1]
    assert_same_cascades(got, nx_cascades(d.posts))


def test_run_records_cascades_consistent_with_its_posts(sqlite_url: str) -> None:
    run = run_experiment(experiment(policy={"type": "rule", "params": {
        "repost_rate": 0.3, "quote_rate": 0.05, "like_rate": 0.1}}), sqlite_url)
    posts = run.table("posts")
    recorded = run.table("cascades")
    assert (recorded["step"] == 12).all()
    assert_same_cascades(recorded, nx_cascades(posts))
    assert_same_cascades(cascades(posts), recorded)


# -- bimodality -------------------------------------------------------------------------------


def test_bimodality_coefficient_reference_values() -> None:
    rng = np.random.default_rng(0)
    assert bimodality_coefficient(rng.uniform(-1, 1, 200_000)) == pytest.approx(5 / 9, abs=0.01)
    assert bimodality_coefficient(rng.normal(0, 1, 200_000)) == pytest.approx(1 / 3, abs=0.01)
    camps = np.concatenate([rng.normal(-0.8, 0.05, 5000), rng.normal(0.8, 0.05, 5000)])
    assert bimodality_coefficient(camps) > 0.9
    skewed = rng.exponential(1.0, 50_000)  # one mode, but skewed: (4 + 1) / (6 + 3) = 5/9
    assert bimodality_coefficient(skewed) == pytest.approx(5 / 9, abs=0.05)


@pytest.mark.parametrize("n", [4, 5, 9, 40])
def test_bimodality_coefficient_matches_the_published_formula(n: int) -> None:
    """(g^2 + 1) / (k + 3(n-1)^2 / ((n-2)(n-3))) with pandas' bias-corrected skew and kurtosis."""
    x = np.random.default_rng(n).lognormal(0.0, 0.8, n)
    s = pd.Series(x)
    want = (s.skew() ** 2 + 1) / (s.kurt() + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    assert bimodality_coefficient(x) == pytest.approx(want, rel=1e-9)


def test_bimodality_coefficient_needs_four_values() -> None:
    for n in range(4):
        assert np.isnan(bimodality_coefficient(np.arange(n, dtype=np.float64)))
    assert np.isfinite(bimodality_coefficient(np.arange(4, dtype=np.float64)))


@pytest.mark.parametrize("value", [0.1, 0.3, -0.2])
def test_bimodality_coefficient_of_identical_values_is_undefined(value: float) -> None:
    assert np.isnan(bimodality_coefficient(np.full(1000, value)))


# -- opinion dynamics through the engine ------------------------------------------------------


def dynamics(seed: int, params: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """1,000 agents with uniform opinions, half of them active each step, 30 hourly steps."""
    return experiment(
        seed=seed, steps=30, checkpoint_every=30, activation={"probability": 0.5},
        population={"size": 1000, "attributes": {
            "opinion": {"dist": "uniform", "low": -1, "high": 1},
            "interest": {"dist": "categorical", "values": TOPICS}}},
        recording={"agent_state_every": 30}, policy={"type": "rule", "params": params},
        **changes)


def test_bounded_confidence_lowers_opinion_variance(sqlite_url: str) -> None:
    run = run_experiment(dynamics(3, {"convergence": 0.3, "backfire": 0.0}), sqlite_url)
    m = run.metrics()
    assert m["opinion_var"].iloc[-1] < 0.8 * m["opinion_var"].iloc[0]
    # the step metrics agree with the recorded opinions and follow events
    opinion = run.agent_states("opinion").loc[30].sort_index().to_numpy()
    assert m.loc[30, "opinion_var"] == pytest.approx(opinion.var())
    assert m.loc[30, "polarization"] == pytest.approx(np.mean(np.abs(opinion) >= 0.6))
    assert m.loc[30, "bimodality"] == pytest.approx(pd.Series(opinion).pipe(
        lambda s: (s.skew() ** 2 + 1) / (s.kurt() + 3 * 999**2 / (998 * 997))))
    follows = run.table("follows")
    net = follows.groupby(["follower_id", "followee_id"])["op"].sum()
    assert set(net.unique()) <= {0, 1}
    edges = net[net == 1].reset_index()
    assert len(edges) == m.loc[30, "follow_edges"]
    want = np.corrcoef(opinion[edges["follower_id"]], opinion[edges["followee_id"]])[0, 1]
    assert m.loc[30, "assortativity"] == pytest.approx(want, abs=1e-9)


def test_backfire_polarizes(tmp_path: Path) -> None:
    params = {"convergence": 0.1, "homophily": 0.95, "confidence": 0.4}
    calm = run_experiment(dynamics(3, {**params, "backfire": 0.0}),
                          f"sqlite:///{tmp_path / 'calm.sqlite'}").metrics().iloc[-1]
    hot = run_experiment(dynamics(3, {**params, "backfire": 0.1}),
                         f"sqlite:///{tmp_path / 'hot.sqlite'}").metrics().iloc[-1]
    assert hot["polarization"] > calm["polarization"] + 0.3
    assert hot["bimodality"] > calm["bimodality"] + 0.1
    assert hot["bimodality"] > 5 / 9


def test_homophilous_rewiring_raises_assortativity(sqlite_url: str) -> None:
    # opinions fixed (no convergence, no backfire): only who follows whom changes
    params = {"convergence": 0.0, "backfire": 0.0, "homophily": 0.95, "follow_rate": 0.3,
              "unfollow_rate": 0.3, "post_rate": 0.2, "like_rate": 0.1, "repost_rate": 0.0,
              "quote_rate": 0.0, "comment_rate": 0.0, "dislike_rate": 0.0}
    m = run_experiment(dynamics(3, params), sqlite_url).metrics()
    assert abs(m["assortativity"].iloc[0]) < 0.1
    assert m["assortativity"].iloc[-1] > m["assortativity"].iloc[0] + 0.4
    assert (m["opinion_var"] == m["opinion_var"].iloc[0]).all()
    assert m["exposure_corr"].iloc[-1] > 0.3  # agents now see what they already think


# -- the rule agent ---------------------------------------------------------------------------


def test_rule_agent_decides_the_same_whatever_the_batch() -> None:
    # the observation of step 5 after four steps of rule agents (feeds with every kind of post)
    d, step, obs = list(islice(_drive_rule_agents("mix", steps=5, n=200), 5))[-1]
    ctx = d.ctx(step)
    policy = d.sc.rule_policy(SocialRuleParams(follow_rate=0.2, unfollow_rate=0.1,
                                               dislike_rate=0.1, like_rate=0.15))
    whole = policy.decide(obs, ctx)
    n = len(obs.agents)
    assert len(set(whole.action.tolist())) >= 6  # a varied batch
    assert np.isfinite(whole.args.opinion).all()
    assert (whole.args.opinion != obs.opinion).sum() > n // 4
    halves = [np.arange(n // 2), np.arange(n // 2, n)]
    interleaved = [np.arange(0, n, 2), np.arange(1, n, 2)]
    for parts in (halves, interleaved):
        joined = ActionBatch.concat([policy.decide(obs.take(p), ctx) for p in parts])
        joined = joined.reorder_like(obs.agents)
        np.testing.assert_array_equal(joined.agent, whole.agent)
        np.testing.assert_array_equal(joined.action, whole.action)
        assert isinstance(joined.args, SocialArgs)
        for key, value in whole.args.columns().items():
            np.testing.assert_array_equal(getattr(joined.args, key), value, err_msg=key)


def test_replicas_that_own_blocks_of_agents_together_equal_the_whole() -> None:
    """The sharding contract without Ray: two replicas, each owning one block, hold only their
    agents' follow edges; together they refuse, record, measure (to the last bit) and save
    exactly what one replica of everything does."""
    data = experiment(steps=6)
    whole = Simulation(experiment_from_dict(copy.deepcopy(data)))
    whole._build()
    bounds = blocks(whole.world.n_agents, 2)
    owned = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    # what each Ray shard actor holds, built in this process
    parts = [ShardReplica(copy.deepcopy(data), str(Path.cwd() / "replica.yaml"), lo, hi)
             for lo, hi in owned]
    for sim, (lo, hi) in zip(parts, owned, strict=True):
        src = sim.scenario.state.follows.src[: sim.scenario.state.follows.n_edges]
        assert sim.scenario.state.follows.n_edges and ((src >= lo) & (src < hi)).all()
    assert sum(p.scenario.state.follows.n_edges for p in parts) == whole.scenario.state.follows.n_edges
    refused = 0
    for step in range(1, 7):
        ctx = whole._context(step)
        active = whole.activation.draw(step, ctx.hour)
        obs = whole.scenario.observe(active, ctx)
        acts = whole.policy.decide(obs, ctx)
        whole.scenario.resolve(acts, ctx)
        want = whole.scenario.apply(acts, ctx)
        want_metrics = whole.scenario.metrics(acts, ctx)
        batches = []
        for sim, (lo, hi) in zip(parts, owned, strict=True):
            mine = active[(active >= lo) & (active < hi)]
            batch = sim.policy.decide(sim.scenario.observe(mine, ctx), ctx)
            sim.scenario.resolve(batch, ctx)
            batches.append(batch)
        joined = ActionBatch.concat(batches).reorder_like(active)
        np.testing.assert_array_equal(joined.args.refusal, acts.args.refusal)
        refused += int((joined.args.refusal > 0).sum())
        rows = [sim.scenario.apply(joined, ctx) for sim in parts]
        got = SocialScenario.pool_metrics([sim.scenario.metric_part(joined, ctx) for sim in parts])
        assert list(got) == list(want_metrics)
        for name, value in want_metrics.items():
            assert value == got[name] or (np.isnan(value) and np.isnan(got[name])), name
        assert "posts" not in rows[1]  # shared rows come from the lead only
        for table, cols in want.items():
            for col, values in cols.items():
                joined_col = np.concatenate([np.asarray(r[table][col]) for r in rows
                                             if table in r])
                assert sorted(map(str, joined_col)) == sorted(map(str, values)), (table, col)
    assert refused > 0  # duplicate reactions and follows were refused by their owners
    merged = SocialScenario.merge_states([sim.scenario.state_dict() for sim in parts])
    full = whole.scenario.state_dict()
    assert sorted(merged) == sorted(full)
    for key, value in full.items():
        np.testing.assert_array_equal(merged[key], value, err_msg=key)
