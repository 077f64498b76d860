"""Measures of opinion dynamics, echo chambers and information cascades.

Core objects:
    bimodality_coefficient: (g^2 + 1) / (k + 3(n-1)^2 / ((n-2)(n-3))), sample skewness g and
        excess kurtosis k (bias-corrected); above 5/9 suggests two camps.
    attitude_assortativity: Pearson correlation of opinions across follow edges.
    cascade_metrics: scale, depth, max breadth and structural virality of every repost tree.
    cascades: the same for a ``posts`` DataFrame loaded from a run (on demand, in notebooks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from populace.simulator.arrays import sorted_unique


def bimodality_coefficient(x: np.ndarray) -> float:
    """Sarle's bimodality coefficient with bias-corrected skewness and excess kurtosis."""
    n = len(x)
    if n < 4 or np.ptp(x) == 0:  # fewer than 4 values, or consensus: no shape to speak of
        return float("nan")
    d = x - x.mean()
    d2 = d * d
    m2 = d2.mean()
    if m2 <= 0:
        return float("nan")
    g1 = float((d2 * d).sum()) / n / m2**1.5
    g2 = float((d2 * d2).sum()) / n / m2**2 - 3.0
    skew = g1 * np.sqrt(n * (n - 1)) / (n - 2)
    kurt = ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))
    return float((skew**2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side has no variance or fewer than 2 pairs."""
    if len(a) < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def assortativity_sums(opinion: np.ndarray, indptr: np.ndarray, dst: np.ndarray,
                       lo: int = 0, hi: int | None = None) -> dict[str, np.ndarray]:
    """Per follower ``lo..hi-1``, the sums over its follow edges that the attitude
    assortativity is computed from (``assortativity_from_sums``).

    ``indptr`` is the CSR index over followers and ``dst`` the followee of each edge; edges of
    followers outside ``lo..hi-1`` may be absent (a shard holds its own agents' edges). The only
    pass over all edges is one gather of followee opinions.
    """
    hi = len(opinion) if hi is None else hi
    deg = np.diff(indptr[lo:hi + 1]).astype(np.float64)
    start = int(indptr[lo])
    b = opinion[dst[start:int(indptr[hi])]]
    sum_b = np.zeros(hi - lo)
    sum_bb = np.zeros(hi - lo)
    has = deg > 0  # reduceat needs non-empty segments
    if has.any():
        starts = indptr[lo:hi][has] - start
        sum_b[has] = np.add.reduceat(b, starts)
        sum_bb[has] = np.add.reduceat(b * b, starts)
    a = opinion[lo:hi]
    # elementwise products and sums, not np.dot: BLAS threads spin after a call and take the
    # CPU from the next phase (measured 2-4x slower steps on 2 cores)
    return {"a": a * deg, "aa": a * a * deg, "b": sum_b, "bb": sum_bb, "ab": a * sum_b}


def assortativity_from_sums(m: int, sums: dict[str, float]) -> float:
    """Pearson correlation of follower and followee opinions over ``m`` edges, from the
    totals of ``assortativity_sums``; NaN with fewer than 2 edges or no variance."""
    if m < 2:
        return float("nan")
    mean_a, mean_b = sums["a"] / m, sums["b"] / m
    cov = sums["ab"] / m - mean_a * mean_b
    var_a = sums["aa"] / m - mean_a**2
    var_b = sums["bb"] / m - mean_b**2
    den = np.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else 0.0
    return float(cov / den) if den > 0 else float("nan")


def attitude_assortativity(opinion: np.ndarray, indptr: np.ndarray, dst: np.ndarray) -> float:
    """Correlation between the opinions of followers and the accounts they follow."""
    sums = {k: float(v.sum()) for k, v in assortativity_sums(opinion, indptr, dst).items()}
    return assortativity_from_sums(len(dst), sums)


def cascade_metrics(parent: np.ndarray, root: np.ndarray, in_cascade: np.ndarray) -> pd.DataFrame:
    """Repost-cascade measures for every root with at least one repost or quote.

    Args:
        parent: parent post id of each post (-1 for originals); ids are positions, and a
            parent always precedes its child.
        root: cascade root id of each post.
        in_cascade: which posts belong to cascades (originals, reposts and quotes; not comments).

    Returns:
        One row per cascade: ``root_id``, ``scale`` (posts in the tree, root included), ``depth``
        (longest chain), ``max_breadth`` (most posts at one depth) and ``structural_virality``
        (mean shortest-path distance over all pairs of posts in the tree).
    """
    n = len(parent)
    member = in_cascade & ((parent < 0) | in_cascade[np.maximum(parent, 0)])
    child = np.flatnonzero(member & (parent >= 0))
    roots_with_children = sorted_unique(root[child])
    if len(roots_with_children) == 0:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in
                             ("root_id", "scale", "depth", "max_breadth")}).assign(
            structural_virality=pd.Series(dtype="float64"))
    depth = np.full(n, -1, dtype=np.int64)
    depth[roots_with_children] = 0
    # resolve depths level by level: a child's depth is its parent's plus one
    pending = child
    while len(pending):
        ready = depth[parent[pending]] >= 0
        if not ready.any():
            break
        done = pending[ready]
        depth[done] = depth[parent[done]] + 1
        pending = pending[~ready]
    nodes = np.concatenate([roots_with_children, child[depth[child] > 0]])
    cid = np.searchsorted(roots_with_children, root[nodes])
    scale = np.bincount(cid, minlength=len(roots_with_children))
    max_depth = np.zeros(len(roots_with_children), dtype=np.int64)
    np.maximum.at(max_depth, cid, depth[nodes])
    levels = int(depth[nodes].max()) + 1
    breadth = np.bincount(cid * levels + depth[nodes], minlength=len(roots_with_children) * levels)
    max_breadth = breadth.reshape(-1, levels).max(axis=1)
    # Wiener index of a tree: sum over edges of size(subtree) * (n - size(subtree))
    size = np.zeros(n, dtype=np.int64)
    size[nodes] = 1
    kids = child[depth[child] > 0]
    for d in range(levels - 1, 0, -1):
        at = kids[depth[kids] == d]
        np.add.at(size, parent[at], size[at])
    kid_cid = np.searchsorted(roots_with_children, root[kids])
    wiener = np.bincount(kid_cid, weights=size[kids] * (scale[kid_cid] - size[kids]),
                         minlength=len(roots_with_children))
    virality = wiener / (scale * (scale - 1) / 2.0)
    return pd.DataFrame({"root_id": roots_with_children, "scale": scale, "depth": max_depth,
                         "max_breadth": max_breadth, "structural_virality": virality})


def cascades(posts: pd.DataFrame) -> pd.DataFrame:
    """Cascade measures from a run's ``posts`` table (``run.table("posts")``)."""
    posts = posts.sort_values("post_id")
    ids = posts["post_id"].to_numpy()
    if len(ids) and not np.array_equal(ids, np.arange(len(ids))):
        raise ValueError("posts must hold every post of the run (ids 0..n-1)")
    return cascade_metrics(posts["parent_id"].to_numpy(), posts["root_id"].to_numpy(),
                           (posts["kind"] != "comment").to_numpy())
