"""The benchmark's social opinion model written the idiomatic Mesa 3 way (the baseline).

This is the model of Populace's ``social`` scenario with the rule policy, as a Mesa user would
write it: one ``User(mesa.Agent)`` object per account with a ``step()`` method, an
``OpinionModel(mesa.Model)`` that calls ``self.agents.shuffle_do("step")`` every step, and a
``mesa.DataCollector`` with model reporters.

The model:
    * a follow graph from networkx's Barabasi-Albert generator (``m`` = 5): of each edge, the
      newer account follows the older one;
    * each step every agent is visited in random order and is active with probability
      ``activation`` (0.1);
    * an active agent reads its feed: the ``FEED_SIZE`` newest posts of the accounts it follows
      (each account keeps its ``RECENT`` newest posts in a list), within the last ``WINDOW``
      steps;
    * it updates its opinion by bounded confidence: it moves by ``convergence`` toward the mean
      stance of the feed posts within ``confidence`` of its opinion;
    * it then posts with probability ``post_rate`` (stance = opinion + N(0, ``stance_noise``),
      clipped to [-1, 1]; topic = its interest with probability ``topic_focus``), or likes a
      post with probability ``like_rate``, or follows a post's author with probability
      ``follow_rate`` (else does nothing). Likes and follows go to an agreeable post (stance
      within ``confidence``) with probability ``homophily``, else to any post of the feed; a
      duplicate like, or a follow with no candidate, does nothing.

The rates and thresholds are the defaults of Populace's ``SocialRuleParams`` (copied into this
module's ``SocialRuleParams`` so that the Mesa process imports nothing of Populace). Reposts, quotes,
comments, dislikes and unfollows of the Populace scenario are left out (their share of actions
does nothing here), which makes the baseline's step a little cheaper than Populace's, not dearer.

Core objects:
    Post: one post (id, author, stance, topic, step, likes).
    User: the agent.
    OpinionModel: the model (graph, agents, DataCollector).
    run_mesa: build and time the model for the benchmark.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import mesa
import networkx as nx
import numpy as np

TOPICS = ("politics", "economy", "health", "technology", "sports")
RECENT = 4  # newest posts kept per account (as Populace's followee feed does)
FEED_SIZE = 10  # posts per feed (Populace's feed.size default)
WINDOW = 24  # only posts of the last WINDOW steps are shown (Populace's feed.window default)

_post_id = attrgetter("id")


@dataclass(frozen=True)
class SocialRuleParams:
    """The rule parameters the baseline uses: the defaults of Populace's ``SocialRuleParams``.

    (Kept here rather than imported so that the Mesa process loads none of Populace; a test
    checks that the defaults agree.)
    """

    post_rate: float = 0.2
    like_rate: float = 0.3
    follow_rate: float = 0.05
    confidence: float = 0.4
    convergence: float = 0.1
    homophily: float = 0.8
    stance_noise: float = 0.1
    topic_focus: float = 0.7


@dataclass(slots=True)
class Post:
    """A post: its stance is the opinion it expresses, in [-1, 1]."""

    id: int
    author: User
    stance: float
    topic: int
    step: int
    likes: int = 0


class User(mesa.Agent):
    """An account: an opinion, a topic of interest, whom it follows, and its newest posts."""

    def __init__(self, model: OpinionModel, opinion: float, interest: int) -> None:
        super().__init__(model)
        self.opinion = float(opinion)
        self.interest = int(interest)
        self.following: set[User] = set()
        self.posts: list[Post] = []  # newest last, at most RECENT
        self.liked: set[int] = set()

    def feed(self) -> list[Post]:
        """The newest posts of the accounts this user follows, newest first."""
        horizon = self.model.steps - WINDOW
        candidates = [post for user in self.following for post in user.posts
                      if post.step > horizon]
        return heapq.nlargest(FEED_SIZE, candidates, key=_post_id)

    def step(self) -> None:
        model = self.model
        rnd = model.random
        if rnd.random() >= model.activation:
            return
        model.n_active += 1
        p = model.params
        feed = self.feed()
        opinion = self.opinion
        agreeable = [post for post in feed if abs(post.stance - opinion) < p.confidence]
        # bounded confidence: move toward the mean stance of the agreeable posts
        if agreeable:
            mean = sum(post.stance for post in agreeable) / len(agreeable)
            self.opinion = min(1.0, max(-1.0, opinion + p.convergence * (mean - opinion)))
        u = rnd.random()
        if u < p.post_rate:
            self.post()
        elif u < p.post_rate + p.like_rate:
            post = self.pick(feed, agreeable)
            if post is not None and post.id not in self.liked:
                self.liked.add(post.id)
                post.likes += 1
        elif u < p.post_rate + p.like_rate + p.follow_rate:
            pool = agreeable if rnd.random() < p.homophily else feed
            authors = [post.author for post in pool
                       if post.author is not self and post.author not in self.following]
            if authors:
                self.following.add(rnd.choice(authors))

    def pick(self, feed: list[Post], agreeable: list[Post]) -> Post | None:
        """A post to engage with: an agreeable one with probability ``homophily``."""
        rnd = self.model.random
        pool = agreeable if rnd.random() < self.model.params.homophily else feed
        return rnd.choice(pool) if pool else None

    def post(self) -> None:
        model = self.model
        rnd = model.random
        p = model.params
        stance = min(1.0, max(-1.0, self.opinion + rnd.gauss(0.0, p.stance_noise)))
        topic = self.interest if rnd.random() < p.topic_focus else rnd.randrange(len(TOPICS))
        post = Post(len(model.posts), self, stance, topic, model.steps)
        model.posts.append(post)
        self.posts.append(post)
        if len(self.posts) > RECENT:
            del self.posts[0]


class OpinionModel(mesa.Model):
    """Bounded-confidence opinion dynamics on a follow graph with posts and feeds.

    Args:
        n: number of users.
        seed: seeds the model's random generators (graph, opinions, activation, choices).
        m: Barabasi-Albert edges per new user (accounts it follows).
        activation: probability that a user acts in a step.
        params: rule parameters (default: ``SocialRuleParams()``, Populace's defaults).
    """

    def __init__(self, n: int = 1000, seed: int | None = None, m: int = 5,
                 activation: float = 0.1, params: SocialRuleParams | None = None) -> None:
        super().__init__(seed=seed)
        self.activation = activation
        self.params = params if params is not None else SocialRuleParams()
        self.posts: list[Post] = []
        self.n_active = 0  # active users in the current step
        opinions = self.rng.uniform(-1.0, 1.0, n)
        interests = self.rng.integers(0, len(TOPICS), n)
        users = list(User.create_agents(self, n, opinion=opinions, interest=interests))
        graph = nx.barabasi_albert_graph(n, m, seed=int(self.rng.integers(2**31)))
        for a, b in graph.edges():
            follower, followee = (a, b) if a > b else (b, a)  # the newer account follows
            users[follower].following.add(users[followee])
        self.datacollector = mesa.DataCollector(model_reporters={
            "opinion_mean": lambda m: float(np.mean(m.agents.get("opinion"))),
            "opinion_var": lambda m: float(np.var(m.agents.get("opinion"))),
            "posts": lambda m: len(m.posts),
        })
        self.datacollector.collect(self)

    def step(self) -> None:
        self.n_active = 0
        self.agents.shuffle_do("step")
        self.datacollector.collect(self)


def run_mesa(n: int, steps: int, seed: int = 0, activation: float = 0.1) -> dict[str, Any]:
    """Build the model and time each step.

    Returns ``setup_s`` (graph and agents), ``step_s`` (seconds of each step, DataCollector
    included), ``cpu_s`` (CPU seconds of each step), ``n_active`` (active users of each step) and the opinion variance at the start
    and the end.
    """
    t0 = time.perf_counter()
    model = OpinionModel(n, seed=seed, activation=activation)
    setup_s = time.perf_counter() - t0
    step_s: list[float] = []
    cpu_s: list[float] = []
    n_active: list[int] = []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        model.step()
        step_s.append(time.perf_counter() - t)
        cpu_s.append(time.process_time() - c)
        n_active.append(model.n_active)
    frame = model.datacollector.get_model_vars_dataframe()
    return {
        "setup_s": setup_s,
        "step_s": step_s,
        "cpu_s": cpu_s,
        "n_active": n_active,
        "opinion_var_start": float(frame["opinion_var"].iloc[0]),
        "opinion_var_end": float(frame["opinion_var"].iloc[-1]),
        "opinion_mean_end": float(frame["opinion_mean"].iloc[-1]),
        "posts": len(model.posts),
    }
