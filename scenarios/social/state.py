"""Columnar state of the social network.

Core objects:
    PostStore: every post as growable numpy columns indexed by post id (ids are chronological).
    FollowState: the directed follow graph as sorted edge keys plus a CSR index, updated in bulk.
    LikeSet: which (agent, post) pairs have been liked or disliked, to refuse repeats.
"""

from __future__ import annotations

import numpy as np

from populace.simulator.arrays import sorted_unique

KINDS = ("post", "repost", "quote", "comment")
POST, REPOST, QUOTE, COMMENT = range(4)


class PostStore:
    """Posts as columns; ``n`` posts are stored, ids ``0..n-1`` in creation order."""

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

    def state_dict(self) -> dict[str, np.ndarray]:
        """Columns trimmed to the stored posts, plus the step index."""
        state = {f"posts.{k}": v[: self.n].copy() for k, v in self.cols.items()}
        state["posts.step_start"] = self.step_start.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned."""
        self.n = len(state["posts.author"])
        cap = max(1024, 2 * self.n)
        for k, t in self.COLUMNS.items():
            col = np.zeros(cap, dtype=t)
            col[: self.n] = state[f"posts.{k}"]
            self.cols[k] = col
        self.step_start = state["posts.step_start"].astype(np.int64)


class FollowState:
    """The follow graph: sorted edge keys ``src * n + dst`` with a CSR index over followers.

    Args:
        n: number of agents.
        src, dst: initial edges ("src follows dst").

    Only ``keys`` and ``indptr`` are kept up to date by bulk updates; the ``src`` and ``dst``
    columns are derived on demand (metrics need them, the step's hot path does not).
    """

    def __init__(self, n: int, src: np.ndarray, dst: np.ndarray) -> None:
        self.n = n
        self.keys = sorted_unique(src.astype(np.int64) * n + dst.astype(np.int64))
        self._reindex()

    def _reindex(self) -> None:
        self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.keys // self.n, minlength=self.n), out=self.indptr[1:])
        self._src: np.ndarray | None = None
        self._dst: np.ndarray | None = None

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


class LikeSet:
    """The (agent, post) pairs already reacted to, as sorted keys ``post * n_agents + agent``.

    Keys fit int64 while posts x agents < 9.2e18 (e.g. 10^9 posts among 10^9 agents).
    """

    def __init__(self, n_agents: int) -> None:
        self.n = max(int(n_agents), 1)
        self.keys = np.zeros(0, dtype=np.int64)

    def contains(self, agents: np.ndarray, posts: np.ndarray) -> np.ndarray:
        """Whether each pair was reacted to before."""
        return sorted_member(self.keys, np.asarray(posts, dtype=np.int64) * self.n + agents)

    def add(self, agents: np.ndarray, posts: np.ndarray) -> None:
        """Record new pairs (absent and distinct)."""
        if len(agents):
            new = np.sort(np.asarray(posts, dtype=np.int64) * self.n + agents)
            self.keys = np.insert(self.keys, np.searchsorted(self.keys, new), new)
