"""Columnar state of the social network, declared as ``ArrayState`` so that checkpoints save and
restore it without code of the scenario's own.

Core objects:
    SocialState: the whole state: opinions, posts, their texts, the feed indexes (shared by every
        replica) and the follow graph and reactions (private: a replica keeps its own agents').
    PostStore: every post as growable numpy columns indexed by post id (ids are chronological).
    PostTexts: the texts of the posts that have one (seed posts, language-model posts).
    FeedIndex: each author's newest posts and the recommendable posts, for the recommenders.
    FollowState: the directed follow graph as sorted edge keys plus a CSR index, updated in bulk.
    LikeSet: which (agent, post) pairs have been liked or disliked, to refuse repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from populace.simulator.arrays import sorted_unique
from populace.simulator.state import ArrayState

KINDS = ("post", "repost", "quote", "comment")
POST, REPOST, QUOTE, COMMENT = range(4)
RECENT = 4  # newest posts remembered per author, for followee feeds


class PostStore(ArrayState):
    """Posts as columns; ``n`` posts are stored, ids ``0..n-1`` in creation order.

    The columns are buffers that grow by doubling, so appending a step's posts is not a copy of
    every post; ``to_arrays`` and ``load_arrays`` are therefore its own: they save the first
    ``n`` entries of each column (keys ``author``, ``step``, ...) and ``step_start``.
    """

    COLUMNS: dict[str, type] = {
        "author": np.int64, "step": np.int32, "kind": np.int8, "parent": np.int64,
        "root": np.int64, "topic": np.int16, "stance": np.float32, "likes": np.int32,
        "dislikes": np.int32, "shares": np.int32, "comments": np.int32, "created": np.float64,
    }

    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self.cols = {k: np.zeros(capacity, dtype=t) for k, t in self.COLUMNS.items()}
        # first post id of each step, so a time window is a contiguous id range
        self.step_start = np.zeros(1, dtype=np.int64)

    def __getattr__(self, name: str) -> np.ndarray:
        cols = self.__dict__.get("cols")
        if cols is not None and name in cols:
            return cols[name][: self.n]
        raise AttributeError(name)

    def append(self, **values: np.ndarray) -> np.ndarray:
        """Add posts given as equal-length columns; return their new ids."""
        m = len(values["author"])
        need = self.n + m
        cap = len(self.cols["author"])
        if need > cap:
            new_cap = max(need, 2 * cap)
            for k, col in self.cols.items():
                grown = np.zeros(new_cap, dtype=col.dtype)
                grown[: self.n] = col[: self.n]
                self.cols[k] = grown
        ids = np.arange(self.n, need, dtype=np.int64)
        for k, col in self.cols.items():
            col[self.n:need] = values.get(k, 0)
        self.n = need
        return ids

    def mark_step(self, step: int) -> None:
        """Record that posts from now on belong to ``step`` (for time windows)."""
        if len(self.step_start) <= step:
            grown = np.full(step + 1, self.n, dtype=np.int64)
            grown[: len(self.step_start)] = self.step_start
            self.step_start = grown
        self.step_start[step] = self.n

    def window_start(self, step: int, window: int) -> int:
        """First post id created at or after ``step - window``."""
        first = max(0, step - window)
        return int(self.step_start[min(first, len(self.step_start) - 1)])

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Columns trimmed to the stored posts, plus the step index."""
        state = {f"{prefix}{k}": v[: self.n].copy() for k, v in self.cols.items()}
        state[f"{prefix}step_start"] = self.step_start.copy()
        return state

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        """Restore what ``to_arrays`` returned."""
        self.n = len(arrays[f"{prefix}author"])
        cap = max(1024, 2 * self.n)
        for k, t in self.COLUMNS.items():
            col = np.zeros(cap, dtype=t)
            col[: self.n] = arrays[f"{prefix}{k}"]
            self.cols[k] = col
        self.step_start = arrays[f"{prefix}step_start"].astype(np.int64)


@dataclass
class PostTexts(ArrayState):
    """The texts of the posts that have one, by ascending post id (posts get ids in creation
    order, so appending keeps them sorted)."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    text: list[str] = field(default_factory=list)

    def add(self, ids: np.ndarray, texts: Sequence[str | None]) -> None:
        """Keep the texts of new posts ``ids``; None entries (posts without text) are skipped."""
        rows = [i for i, t in enumerate(texts) if t is not None]
        if rows:
            self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)[rows]])
            self.text.extend(t for t in texts if t is not None)

    def lookup(self, posts: np.ndarray) -> list[str | None]:
        """The text of each of ``posts`` (None for a post without one)."""
        posts = np.asarray(posts, dtype=np.int64).ravel()
        if len(self.ids) == 0:
            return [None] * len(posts)
        pos = np.minimum(np.searchsorted(self.ids, posts), len(self.ids) - 1)
        found = self.ids[pos] == posts
        return [self.text[p] if f else None for p, f in zip(pos.tolist(), found.tolist(),
                                                             strict=True)]


@dataclass
class FeedIndex(ArrayState):
    """What the recommenders look posts up by.

    Attributes:
        recent: (n_agents, RECENT) the newest recommendable post ids of each author, ascending,
            -1 where it has fewer.
        feedable: ids of the posts that may be recommended (not comments), ascending.
    """

    recent: np.ndarray
    feedable: np.ndarray

    @classmethod
    def empty(cls, n_agents: int) -> FeedIndex:
        """The index of a network without posts."""
        return cls(np.full((n_agents, RECENT), -1, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def add(self, ids: np.ndarray, authors: np.ndarray, kind: np.ndarray) -> None:
        """Index new posts ``ids`` (ascending) of ``authors``, of the given kinds."""
        feedable = kind != COMMENT
        self.feedable = np.concatenate([self.feedable, ids[feedable]])
        # each author's newest posts (one author acts once per step, but seed posts may bring
        # several per author: keep the newest RECENT); the system account (-1) has none
        by_agent = feedable & (authors >= 0)
        fa = authors[by_agent]
        order = np.argsort(fa, kind="stable")
        fa_sorted, fid_sorted = fa[order], ids[by_agent][order]
        for _ in range(RECENT):
            if len(fa_sorted) == 0:
                break
            last = np.r_[fa_sorted[1:] != fa_sorted[:-1], True]
            who, pid = fa_sorted[last], fid_sorted[last]
            self.recent[who] = np.concatenate([self.recent[who, 1:], pid[:, None]], axis=1)
            fa_sorted, fid_sorted = fa_sorted[~last], fid_sorted[~last]
        # several posts of one author arrive newest-first above: keep each row ascending
        touched = sorted_unique(fa)
        self.recent[touched] = np.sort(self.recent[touched], axis=1)


@dataclass
class FollowState(ArrayState):
    """The follow graph: sorted edge keys ``src * n + dst`` with a CSR index over followers.

    Only ``keys`` is saved; ``indptr`` is kept up to date by bulk updates and rebuilt after a
    restore, and the ``src`` and ``dst`` columns are derived on demand (metrics need them, the
    step's hot path does not).
    """

    n: int = field(metadata={"save": False})
    """Number of agents."""
    keys: np.ndarray
    indptr: np.ndarray = field(init=False, repr=False, metadata={"save": False})
    _src: np.ndarray | None = field(default=None, init=False, repr=False,
                                    metadata={"save": False})
    _dst: np.ndarray | None = field(default=None, init=False, repr=False,
                                    metadata={"save": False})

    def __post_init__(self) -> None:
        self.reindex()

    @classmethod
    def from_edges(cls, n: int, src: np.ndarray, dst: np.ndarray) -> FollowState:
        """The graph of ``n`` agents with the edges "``src`` follows ``dst``"."""
        return cls(n, sorted_unique(src.astype(np.int64) * n + dst.astype(np.int64)))

    def reindex(self) -> None:
        """Rebuild the CSR index from ``keys``."""
        self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.keys // self.n, minlength=self.n), out=self.indptr[1:])
        self._src = self._dst = None

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        """Restore the edge keys and rebuild the index over them."""
        super().load_arrays(arrays, prefix)
        self.reindex()

    @property
    def src(self) -> np.ndarray:
        """Follower of each edge, aligned with ``keys``."""
        if self._src is None:
            self._src = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))
        return self._src

    @property
    def dst(self) -> np.ndarray:
        """Followee of each edge, aligned with ``keys``."""
        if self._dst is None:
            self._dst = self.keys % self.n
        return self._dst

    @property
    def n_edges(self) -> int:
        """Number of follow edges."""
        return len(self.keys)

    def has(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Whether each ``src`` follows the matching ``dst`` (element-wise)."""
        return sorted_member(self.keys, np.asarray(src, dtype=np.int64) * self.n
                             + np.asarray(dst, dtype=np.int64))

    def followees(self, agents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Followees of ``agents`` as (position in ``agents``, followee id), grouped by agent."""
        starts = self.indptr[agents]
        lens = self.indptr[agents + 1] - starts
        seg = np.repeat(np.arange(len(agents)), lens)
        offsets = np.arange(len(seg)) - np.repeat(np.cumsum(lens) - lens, lens)
        return seg, self.keys[np.repeat(starts, lens) + offsets] % self.n

    def update(self, add_src: np.ndarray, add_dst: np.ndarray, del_src: np.ndarray,
               del_dst: np.ndarray) -> None:
        """Add absent edges and remove present ones, in bulk."""
        if len(add_src) == 0 and len(del_src) == 0:
            return
        n = self.n
        delta = np.zeros(n, dtype=np.int64)
        if len(del_src):
            gone = sorted_unique(del_src.astype(np.int64) * n + del_dst)
            gone = gone[sorted_member(self.keys, gone)]
            np.subtract.at(delta, gone // n, 1)
            self.keys = np.delete(self.keys, np.searchsorted(self.keys, gone))
        if len(add_src):
            new = sorted_unique(add_src.astype(np.int64) * n + add_dst)
            new = new[~sorted_member(self.keys, new)]
            np.add.at(delta, new // n, 1)
            self.keys = np.insert(self.keys, np.searchsorted(self.keys, new), new)
        self.indptr[1:] += np.cumsum(delta)
        self._src = self._dst = None


def sorted_member(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Whether each of ``queries`` is in ``sorted_keys``.

    Large query batches are sorted first: a binary search over ascending needles walks memory
    in order and is several times faster than one over random needles.
    """
    queries = np.asarray(queries, dtype=np.int64)
    shape = queries.shape
    flat = queries.ravel()
    if len(sorted_keys) == 0 or len(flat) == 0:
        return np.zeros(shape, dtype=bool)
    if len(flat) > 4096:
        order = np.argsort(flat)
        pos = np.searchsorted(sorted_keys, flat[order])
        found = np.empty(len(flat), dtype=bool)
        found[order] = sorted_keys[np.minimum(pos, len(sorted_keys) - 1)] == flat[order]
    else:
        pos = np.searchsorted(sorted_keys, flat)
        found = sorted_keys[np.minimum(pos, len(sorted_keys) - 1)] == flat
    return found.reshape(shape)


@dataclass
class LikeSet(ArrayState):
    """The (agent, post) pairs already reacted to, as sorted keys ``post * n + agent``.

    Keys fit int64 while posts x agents < 9.2e18 (e.g. 10^9 posts among 10^9 agents).
    """

    n: int = field(metadata={"save": False})
    """Number of agents (at least 1)."""
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def empty(cls, n_agents: int) -> LikeSet:
        """No reactions among ``n_agents`` agents."""
        return cls(max(int(n_agents), 1))

    def contains(self, agents: np.ndarray, posts: np.ndarray) -> np.ndarray:
        """Whether each pair was reacted to before."""
        return sorted_member(self.keys, np.asarray(posts, dtype=np.int64) * self.n + agents)

    def add(self, agents: np.ndarray, posts: np.ndarray) -> None:
        """Record new pairs (absent and distinct)."""
        if len(agents):
            new = np.sort(np.asarray(posts, dtype=np.int64) * self.n + agents)
            self.keys = np.insert(self.keys, np.searchsorted(self.keys, new), new)


@dataclass
class SocialState(ArrayState):
    """Everything of the social network that changes during a run.

    Shared state (opinions, posts, texts, feed indexes) is whole on every replica; ``follows``
    and ``likes`` are private: a replica keeps the edges and reactions of its own agents.
    """

    opinion: np.ndarray
    """(n_agents,) each agent's opinion in [-1, 1]."""
    posts: PostStore
    content: PostTexts
    feed: FeedIndex
    follows: FollowState
    likes: LikeSet

    FOLLOW_KEYS = "follows.keys"
    """Key of the follow edges in ``to_arrays`` (blocks of followers, ascending)."""
    LIKE_KEYS = "likes.keys"
    """Key of the reactions in ``to_arrays`` (sorted by post)."""

    @classmethod
    def empty(cls, opinion: np.ndarray) -> SocialState:
        """A network without posts, follows or reactions, with these opinions."""
        n = len(opinion)
        return cls(opinion, PostStore(), PostTexts(), FeedIndex.empty(n),
                   FollowState.from_edges(n, np.zeros(0, np.int64), np.zeros(0, np.int64)),
                   LikeSet.empty(n))
