"""The follow graph container and the numpy edge helpers every generator shares.

Core objects:

* :class:`FollowGraph` -- a directed edge list (``src`` follows ``dst``) over agents ``0..n-1``,
  free of self loops and duplicate pairs and sorted by ``(src, dst)``.
* :class:`NetworkError` -- the one error type of this package; its messages name the file or
  attribute at fault and say what to change.
* :func:`finalize_edges` -- turns raw endpoint arrays into the canonical form (drop self loops,
  deduplicate, sort) by encoding each pair as the int64 key ``src * n + dst``.
* :func:`add_mutual_edges` -- adds the reverse of each edge with a given probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from populace.simulator.arrays import first_occurrences, sorted_unique

__all__ = [
    "FollowGraph",
    "NetworkError",
    "add_mutual_edges",
    "finalize_edges",
    "first_occurrences",
    "id_dtype",
    "sorted_unique",
]


class NetworkError(ValueError):
    """A follow network cannot be built from the given configuration or data."""


def id_dtype(n: int) -> np.dtype:
    """Return the agent-id dtype used for ``n`` agents: int32, or int64 when ``n >= 2**31``."""
    return np.dtype(np.int64) if n >= 2**31 else np.dtype(np.int32)


def finalize_edges(
    n: int, src: np.ndarray, dst: np.ndarray, *, assume_unique: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Canonicalise raw edges: drop self loops and duplicates, sort by ``(src, dst)``.

    Args:
        n: Number of agents; every id must lie in ``[0, n)`` (not checked here).
        src: Follower ids (any integer dtype).
        dst: Followee ids, same length as ``src``.
        assume_unique: Skip deduplication when the caller guarantees distinct, loop-free pairs
            (a plain sort is cheaper than deduplication).

    Returns:
        ``(src, dst)`` in the dtype given by :func:`id_dtype`.
    """
    dtype = id_dtype(n)
    if n == 0:
        return np.empty(0, dtype), np.empty(0, dtype)
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if not assume_unique:
        keep = src != dst
        if not keep.all():
            src, dst = src[keep], dst[keep]
    # One int64 key per pair makes dedup + lexicographic sort a single 1-D operation
    # (valid while n * n < 2**63, i.e. n < ~3e9 agents).
    keys = src * np.int64(n) + dst
    keys = np.sort(keys) if assume_unique else sorted_unique(keys)
    follower, followee = np.divmod(keys, np.int64(n))
    return follower.astype(dtype), followee.astype(dtype)


def add_mutual_edges(
    n: int, src: np.ndarray, dst: np.ndarray, mutual: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Give each edge its reverse edge with probability ``mutual`` and re-canonicalise.

    One uniform draw is consumed per input edge (in edge order) whenever ``mutual > 0``, so the
    result is a deterministic function of the rng state.

    Args:
        n: Number of agents.
        src: Canonical follower ids.
        dst: Canonical followee ids.
        mutual: Probability in ``[0, 1]`` that ``dst`` follows ``src`` back.
        rng: Random generator.

    Returns:
        Canonical ``(src, dst)`` including the added reverse edges.
    """
    if mutual <= 0 or src.size == 0:
        return src, dst
    back = rng.random(src.size) < mutual
    return finalize_edges(n, np.concatenate([src, dst[back]]), np.concatenate([dst, src[back]]))


@dataclass
class FollowGraph:
    """Directed follow graph over agents ``0..n-1``: edge ``i`` means ``src[i]`` follows ``dst[i]``.

    Invariants (established by :func:`finalize_edges`, which every generator uses): no self loops,
    no duplicate ``(src, dst)`` pairs, edges sorted by ``(src, dst)``, ids of dtype int32 (int64
    when ``n >= 2**31``).

    Attributes:
        n: Number of agents (nodes), including agents without any edge.
        src: Follower ids.
        dst: Followee ids.
    """

    n: int
    src: np.ndarray
    dst: np.ndarray

    def __post_init__(self) -> None:
        if self.src.shape != self.dst.shape or self.src.ndim != 1:
            raise NetworkError(
                f"FollowGraph needs 1-D src/dst arrays of equal length, got shapes "
                f"{self.src.shape} and {self.dst.shape}"
            )

    @classmethod
    def from_edges(cls, n: int, src: np.ndarray, dst: np.ndarray) -> FollowGraph:
        """Build a graph from arbitrary edges, dropping self loops/duplicates and sorting.

        Args:
            n: Number of agents.
            src: Follower ids in ``[0, n)``.
            dst: Followee ids in ``[0, n)``.

        Returns:
            The canonical graph.
        """
        return cls(n, *finalize_edges(n, src, dst))

    @classmethod
    def empty(cls, n: int) -> FollowGraph:
        """Return a graph of ``n`` agents without edges."""
        dtype = id_dtype(n)
        return cls(n, np.empty(0, dtype), np.empty(0, dtype))

    @property
    def num_edges(self) -> int:
        """Number of follow edges."""
        return int(self.src.size)

    def out_degree(self) -> np.ndarray:
        """Return the number of accounts each agent follows (int64, length ``n``)."""
        return np.bincount(self.src, minlength=self.n).astype(np.int64, copy=False)

    def in_degree(self) -> np.ndarray:
        """Return the number of followers of each agent (int64, length ``n``)."""
        return np.bincount(self.dst, minlength=self.n).astype(np.int64, copy=False)

    def to_csr(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the followees of every agent in compressed sparse row form.

        Returns:
            ``(indptr, indices)``: ``indptr`` is int64 of length ``n + 1`` and the followees of
            agent ``i`` are ``indices[indptr[i]:indptr[i + 1]]`` (ascending). Because edges are
            sorted by ``src``, ``indices`` is simply ``dst``.
        """
        indptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(self.out_degree(), out=indptr[1:])
        return indptr, self.dst

    def reciprocity(self) -> float:
        """Return the share of edges whose reverse edge also exists (0.0 for an empty graph)."""
        if self.src.size == 0:
            return 0.0
        n = np.int64(self.n)
        keys = self.src.astype(np.int64) * n + self.dst
        reverse = self.dst.astype(np.int64) * n + self.src
        # keys is sorted (canonical order), so membership is a binary search.
        pos = np.searchsorted(keys, reverse).clip(max=keys.size - 1)
        return float(np.mean(keys[pos] == reverse))

    def to_networkx(self) -> nx.DiGraph:
        """Return a :class:`networkx.DiGraph` with nodes ``0..n-1`` (meant for small graphs)."""
        graph = nx.DiGraph()
        graph.add_nodes_from(range(self.n))
        graph.add_edges_from(zip(self.src.tolist(), self.dst.tolist(), strict=True))
        return graph
