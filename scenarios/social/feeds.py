"""Recommenders: what each active agent's feed shows this step.

Core objects:
    FeedConfig: the ``feed:`` section; it lives with the registry of recommenders that its
        ``algorithm`` is checked against.
    FeedContext: what a recommender sees (the active agents, posts, follow graph, ...).
    register_feed / FEEDS: the recommenders by name; add one with ``@register_feed("name")``.
    build_feed: run the configured recommender and clean the result (no own posts, no repeats).

A recommender returns an (agents x k) matrix of post ids, -1 where it has nothing to show. All of
them work on the whole batch of active agents with numpy, never one agent at a time.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .state import FollowState, PostStore

HOT_EPOCH = 1134028003  # Reddit's hot-score reference time
HOT_SCALE = 45000.0


class FeedConfig(BaseModel):
    """The recommender.

    ``random``: posts drawn at random from the recent window. ``followees``: the newest posts of
    the accounts an agent follows (reverse-chronological). ``hot``: Reddit's hot score,
    sign(s)*log10(max(|s|,1)) + (t - 1134028003)/45000 with s = likes - dislikes and t the post's
    time in epoch seconds. ``interest``: posts on the agent's topic of interest, ranked by recency
    (half-life ``recency_half_life`` steps) and popularity. ``mix``: slots shared among the others
    by the weights in ``mix``.

    The ``mix`` weights must be non-negative and not all zero.
    """

    model_config = ConfigDict(extra="forbid")

    algorithm: str = Field("mix", description="random, followees, hot, interest, mix, or a "
                           "recommender registered with register_feed")
    size: int = Field(10, ge=1, le=200, description="posts per feed refresh")
    window: int = Field(24, ge=1, le=10_000_000, description="only posts of the last N steps "
                        "are recommended (at most 10,000,000)")
    recency_half_life: float = Field(6.0, gt=0, description="steps for interest scores to halve")
    mix: dict[Literal["random", "followees", "hot", "interest"], float] = Field(
        default_factory=lambda: {"followees": 0.5, "interest": 0.3, "hot": 0.1, "random": 0.1},
        description="for `algorithm: mix`: weight of each recommender; the feed's slots are "
        "shared in proportion (largest remainders get the leftover slots)")

    @field_validator("algorithm")
    @classmethod
    def _known_feed(cls, value: str) -> str:
        if value not in FEEDS:
            close = difflib.get_close_matches(value, list(FEEDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown feed {value!r}{hint} (available: {', '.join(FEEDS)})")
        return value

    @model_validator(mode="after")
    def _mix_weights(self) -> Self:
        if any(w < 0 for w in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("feed.mix weights must be non-negative and not all zero")
        if any(not math.isfinite(w) or w > 1e12 for w in self.mix.values()):
            # slots are weight x size / total: huge weights overflow to inf and leave none
            raise ValueError("feed.mix weights are relative: use finite numbers up to 1e12")
        return self


@dataclass
class FeedContext:
    """Inputs of a recommender for one step."""

    agents: np.ndarray
    posts: PostStore
    follows: FollowState
    recent: np.ndarray  # (n_agents, R): newest feedable post ids per author, -1 empty
    feedable: np.ndarray  # ids of posts that may be recommended (not comments), ascending
    interest: np.ndarray  # topic index per agent (all agents)
    n_topics: int
    step: int
    config: FeedConfig
    draw: Callable[[str, int], np.ndarray]  # (purpose, width) -> per-agent uniforms keyed by id
    shared_random: Callable[[str], np.random.Generator]  # purpose -> generator of this step

    def window(self) -> np.ndarray:
        """Recommendable post ids inside the recency window."""
        lo = self.posts.window_start(self.step, self.config.window)
        return self.feedable[np.searchsorted(self.feedable, lo):]

    def first_id(self) -> int:
        """Oldest post id inside the window."""
        return self.posts.window_start(self.step, self.config.window)


Recommender = Callable[[FeedContext, int], np.ndarray]
FEEDS: dict[str, Recommender] = {}


def register_feed(name: str) -> Callable[[Recommender], Recommender]:
    """Register a recommender under ``name`` (usable as ``feed.algorithm`` in YAML)."""
    def wrap(fn: Recommender) -> Recommender:
        FEEDS[name] = fn
        return fn
    return wrap


def _empty(n: int, k: int) -> np.ndarray:
    return np.full((n, k), -1, dtype=np.int64)


@register_feed("random")
def random_feed(ctx: FeedContext, k: int) -> np.ndarray:
    """Posts drawn uniformly from the window."""
    pool = ctx.window()
    n = len(ctx.agents)
    if len(pool) == 0 or k == 0:
        return _empty(n, k)
    idx = (ctx.draw("feed.random", k) * len(pool)).astype(np.int64)
    return pool[np.minimum(idx, len(pool) - 1)]


PADDED_FOLLOWEES = 16  # agents following at most this many accounts take the dense path


@register_feed("followees")
def followees_feed(ctx: FeedContext, k: int) -> np.ndarray:
    """The newest posts of the accounts each agent follows, newest first."""
    n = len(ctx.agents)
    out = _empty(n, k)
    if k == 0 or n == 0:
        return out
    indptr = ctx.follows.indptr
    lens = indptr[ctx.agents + 1] - indptr[ctx.agents]
    dense = lens <= PADDED_FOLLOWEES
    # agents with the same number of followees share one dense matrix (no padding)
    for d in np.unique(lens[dense]).tolist():
        rows = np.flatnonzero(lens == d)
        if d:
            out[rows] = _followees_dense(ctx, rows, int(d), k)
    rows = np.flatnonzero(~dense)
    if len(rows):
        out[rows] = _followees_segmented(ctx, ctx.agents[rows], k)
    return out


def _followees_dense(ctx: FeedContext, rows: np.ndarray, d: int, k: int) -> np.ndarray:
    """Top-k newest followee posts for agents that each follow exactly ``d`` accounts."""
    out = _empty(len(rows), k)
    follows = ctx.follows
    pos = follows.indptr[ctx.agents[rows]][:, None] + np.arange(d)
    followee = follows.keys[pos] % follows.n
    r = ctx.recent.shape[1]
    cand = ctx.recent[followee].reshape(len(rows), d * r)
    cand[cand < ctx.first_id()] = -1
    width = min(k, cand.shape[1])
    if cand.shape[1] > width:
        cand = -np.partition(-cand, width - 1, axis=1)[:, :width]
    out[:, :width] = -np.sort(-cand, axis=1)[:, :width]
    return out


def _followees_segmented(ctx: FeedContext, agents: np.ndarray, k: int) -> np.ndarray:
    """Top-k newest followee posts for agents with many followees: segmented maxima."""
    n = len(agents)
    out = _empty(n, k)
    seg, followees = ctx.follows.followees(agents)
    r = ctx.recent.shape[1]
    cand = ctx.recent[followees].ravel()
    seg = np.repeat(seg, r)
    keep = cand >= ctx.first_id()
    seg, cand = seg[keep], cand[keep]  # seg stays ascending
    if len(cand) == 0:
        return out
    # k passes of a segmented maximum: no sort of all candidates (post ids are unique, so
    # removing the maximum removes exactly one candidate)
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    rows = seg[starts]
    lens = np.diff(np.r_[starts, len(seg)])
    for slot in range(k):
        best = np.maximum.reduceat(cand, starts)
        out[rows, slot] = best
        cand = np.where(cand == np.repeat(best, lens), -1, cand)
    return out


def hot_scores(likes: np.ndarray, dislikes: np.ndarray, created: np.ndarray) -> np.ndarray:
    """Reddit's hot score: sign(s)*log10(max(|s|,1)) + (t - 1134028003)/45000, s = likes - dislikes."""
    s = likes.astype(np.float64) - dislikes
    return np.sign(s) * np.log10(np.maximum(np.abs(s), 1.0)) + (created - HOT_EPOCH) / HOT_SCALE


@register_feed("hot")
def hot_feed(ctx: FeedContext, k: int) -> np.ndarray:
    """The hottest posts of the window (Reddit hot score), in score order, the same for all.

    Twice ``k`` posts are ranked so that authors of top posts, whose own posts are removed
    later, still see ``k`` others.
    """
    pool = ctx.window()
    n = len(ctx.agents)
    if len(pool) == 0 or k == 0:
        return _empty(n, k)
    p = ctx.posts
    score = hot_scores(p.likes[pool], p.dislikes[pool], p.created[pool])
    m = min(len(pool), 2 * k)
    top = np.argpartition(-score, m - 1)[:m] if m < len(pool) else np.arange(len(pool))
    top = top[np.lexsort((-pool[top], -score[top]))]  # score, then newer first
    return np.broadcast_to(pool[top], (n, len(top))).copy()


@register_feed("interest")
def interest_feed(ctx: FeedContext, k: int) -> np.ndarray:
    """Posts on the agent's topic of interest, ranked by recency and popularity, sampled.

    Each topic keeps its 3k best posts by score = 0.5^(age / half-life) * (1 + log(1 + max(likes -
    dislikes, 0))), in random order; each agent sees k consecutive ones from a random start.
    """
    pool = ctx.window()
    n = len(ctx.agents)
    if len(pool) == 0 or k == 0:
        return _empty(n, k)
    p = ctx.posts
    age = ctx.step - p.step[pool]
    score = 0.5 ** (age / ctx.config.recency_half_life) * (
        1.0 + np.log1p(np.maximum(p.likes[pool] - p.dislikes[pool], 0)))
    c = 3 * k  # candidates per topic
    table = np.full((ctx.n_topics, c), -1, dtype=np.int64)
    count = np.zeros(ctx.n_topics, dtype=np.int64)
    topics = p.topic[pool]
    shuffle = ctx.shared_random("feed.interest.order")
    for t in range(ctx.n_topics):
        sel = np.flatnonzero(topics == t)
        if len(sel) == 0:
            continue
        if len(sel) > c:
            sel = sel[np.argpartition(-score[sel], c - 1)[:c]]
        table[t, : len(sel)] = pool[sel[shuffle.permutation(len(sel))]]
        count[t] = len(sel)
    mine = ctx.interest[ctx.agents]
    have = count[mine]
    start_at = (ctx.draw("feed.interest", 1)[:, 0] * np.maximum(have, 1)).astype(np.int64)
    cols = (start_at[:, None] + np.arange(k)) % np.maximum(have, 1)[:, None]
    feed = table[mine[:, None], cols]
    feed[np.arange(k) >= have[:, None]] = -1  # a topic with fewer than k posts
    return feed


@register_feed("mix")
def mix_feed(ctx: FeedContext, k: int) -> np.ndarray:
    """Slots shared among the other recommenders by ``feed.mix`` weights."""
    names = [name for name, w in ctx.config.mix.items() if w > 0]
    weights = np.array([ctx.config.mix[name] for name in names], dtype=np.float64)
    exact = k * weights / weights.sum()
    slots = np.floor(exact).astype(int)
    # largest remainders get the slots rounding left over
    for i in np.argsort(-(exact - slots), kind="stable")[: k - slots.sum()]:
        slots[i] += 1
    parts = [FEEDS[name](ctx, int(s)) for name, s in zip(names, slots, strict=True) if s > 0]
    return np.concatenate(parts, axis=1)


def compact(feed: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Remove the ``drop`` entries of each row, keeping the others' order; pad with -1 at the end."""
    keep = ~drop & (feed >= 0)
    pos = np.cumsum(keep, axis=1) - 1
    out = np.full(feed.shape, -1, dtype=feed.dtype)
    rows = np.broadcast_to(np.arange(feed.shape[0])[:, None], feed.shape)
    out[rows[keep], pos[keep]] = feed[keep]
    return out


def repeats(feed: np.ndarray) -> np.ndarray:
    """Mask of every occurrence of a post after its first in the same row."""
    out = np.zeros(feed.shape, dtype=bool)
    ranked = np.sort(feed, axis=1)
    rows = np.flatnonzero(((ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)).any(axis=1))
    if len(rows):  # only rows that hold a repeat: mark later occurrences in a stable order
        sub = feed[rows]
        order = np.argsort(sub, axis=1, kind="stable")
        ranked = np.take_along_axis(sub, order, axis=1)
        later = np.zeros(sub.shape, dtype=bool)
        later[:, 1:] = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)
        mask = np.zeros(sub.shape, dtype=bool)
        np.put_along_axis(mask, order, later, axis=1)
        out[rows] = mask
    return out


def build_feed(ctx: FeedContext) -> np.ndarray:
    """Run the configured recommender and clean its ranking.

    The agent's own posts and repeats (a post recommended by two sources of a mix) are removed;
    the recommender's order is kept (newest first for followees, by score for hot, ...), and
    each row holds at most ``feed.size`` posts.
    """
    feed = FEEDS[ctx.config.algorithm](ctx, ctx.config.size)
    if feed.size == 0:
        return feed
    valid = feed >= 0
    own = np.zeros_like(valid)
    own[valid] = ctx.posts.author[feed[valid]] == np.broadcast_to(
        ctx.agents[:, None], feed.shape)[valid]
    return compact(feed, own | repeats(feed))[:, : ctx.config.size]
