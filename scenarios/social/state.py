"""Columnar state of the social network.

Core objects:
    PostStore: every post as growable numpy columns indexed by post id (ids are chronological).
    FollowState: the directed follow graph as sorted edge keys plus a CSR index, updated in bulk.
    LikeSet: which (agent, post) pairs have been liked or disliked, to refuse repeats.
"""

from __future__ import annotations

import numpy as np

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
        src, dst: initial edges ("src follows dst"), without duplicates or self loops.
    """

    def __init__(self, n: int, src: np.ndarray, dst: np.ndarray) -> None:
        self.n = n
        self.keys = np.unique(src.astype(np.int64) * n + dst.astype(np.int64))
        self._reindex()

    def _reindex(self) -> None:
        self.src = self.keys // self.n
        self.dst = self.keys - self.src * self.n
        counts = np.bincount(self.src, minlength=self.n)
        self.indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])

    @property
    def n_edges(self) -> int:
        """Number of follow edges."""
        return len(self.keys)

    def has(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Whether each ``src`` follows the matching ``dst`` (element-wise)."""
        if len(self.keys) == 0:
            return np.zeros(np.shape(src), dtype=bool)
        k = np.asarray(src, dtype=np.int64) * self.n + np.asarray(dst, dtype=np.int64)
        pos = np.searchsorted(self.keys, k)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == k

    def followees(self, agents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Followees of ``agents`` as (position in ``agents``, followee id), grouped by agent."""
        starts = self.indptr[agents]
        lens = self.indptr[agents + 1] - starts
        seg = np.repeat(np.arange(len(agents)), lens)
        offsets = np.arange(len(seg)) - np.repeat(np.cumsum(lens) - lens, lens)
        return seg, self.dst[np.repeat(starts, lens) + offsets]

    def update(self, add_src: np.ndarray, add_dst: np.ndarray, del_src: np.ndarray,
               del_dst: np.ndarray) -> None:
        """Add and remove edges in bulk (callers pass only edges that are absent / present)."""
        if len(add_src) == 0 and len(del_src) == 0:
            return
        keys = self.keys
        if len(del_src):
            gone = np.unique(del_src.astype(np.int64) * self.n + del_dst)
            pos = np.minimum(np.searchsorted(keys, gone), max(len(keys) - 1, 0))
            present = keys[pos] == gone if len(keys) else np.zeros(len(gone), dtype=bool)
            keys = np.delete(keys, pos[present])
        if len(add_src):
            new = np.unique(add_src.astype(np.int64) * self.n + add_dst)
            keys = np.insert(keys, np.searchsorted(keys, new), new)
        self.keys = keys
        self._reindex()


class LikeSet:
    """The (agent, post) pairs already reacted to, as sorted keys ``agent * span + post``."""

    SPAN = 1 << 40  # post ids stay below 2**40

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)

    def contains(self, agents: np.ndarray, posts: np.ndarray) -> np.ndarray:
        """Whether each pair was reacted to before."""
        if len(self.keys) == 0:
            return np.zeros(len(agents), dtype=bool)
        k = agents.astype(np.int64) * self.SPAN + posts
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return self.keys[pos] == k

    def add(self, agents: np.ndarray, posts: np.ndarray) -> None:
        """Record new pairs (absent and distinct)."""
        if len(agents):
            new = np.sort(agents.astype(np.int64) * self.SPAN + posts)
            self.keys = np.insert(self.keys, np.searchsorted(self.keys, new), new)
