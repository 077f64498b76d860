"""Random follow-graph generators: one vectorised numpy generator per model.

Core functions (all return canonical ``(src, dst)`` arrays, see :func:`.graph.finalize_edges`;
edge ``i`` means ``src[i]`` follows ``dst[i]``):

* :func:`barabasi_albert` -- preferential attachment from a seed clique of ``m + 1`` agents;
  the newer agent follows the older one.
* :func:`watts_strogatz` -- rewired ring lattice; every undirected edge becomes two follow
  edges (``n * k`` in total).
* :func:`erdos_renyi` -- directed G(n, p).
* :func:`sbm` -- homophilous stochastic block model over group codes ``0..B-1``.

Every generator draws all its randomness from the numpy ``rng`` it is given, so the same seed
gives the same graph at every population size; none loops over agents in Python, so they
handle millions of agents. There is deliberately no networkx twin: a second implementation
would draw a different graph from the same seed (tests/test_network.py compares these graphs
with networkx's generators statistically instead).
"""

from __future__ import annotations

import numpy as np

from .graph import NetworkError, finalize_edges, first_occurrences, id_dtype, sorted_unique

__all__ = ["barabasi_albert", "erdos_renyi", "sbm", "watts_strogatz"]

Edges = tuple[np.ndarray, np.ndarray]


def _empty(n: int) -> Edges:
    dtype = id_dtype(n)
    return np.empty(0, dtype), np.empty(0, dtype)


# --------------------------------------------------------------------------- Barabási–Albert


def _check_ba(n: int, m: int) -> None:
    if not 1 <= m < n:
        raise NetworkError(
            f"barabasi_albert needs 1 <= m < n (number of agents), got m={m}, n={n}; "
            f"lower `m` or use a larger population"
        )


def barabasi_albert(n: int, m: int, rng: np.random.Generator) -> Edges:
    """Barabási–Albert graph in O(E) numpy work (Batagelj–Brandes endpoint-list trick).

    Conceptually all edges are laid out in one endpoint list: edge ``e`` owns slot ``2e`` (its
    newer endpoint) and slot ``2e + 1`` (its older endpoint). The seed clique on agents ``0..m``
    comes first; then agent ``t`` adds ``m`` edges whose older endpoint copies a slot drawn
    uniformly from all slots of earlier agents' edges -- a node appears there once per incident
    edge, which is exactly preferential attachment. All draws happen at once; a draw that lands
    on a not-yet-known older-endpoint slot is resolved by pointer jumping (follow that slot's own
    draw, vectorised over all unresolved edges, until every pointer reaches a known slot; chains
    shrink geometrically, so ~log2(E) rounds on a shrinking subset).

    Unlike :func:`networkx.barabasi_albert_graph` the ``m`` targets of one agent are drawn with
    replacement; repeats are dropped, so a few (mostly early-arriving) agents follow slightly
    fewer than ``m`` accounts. Direction: newer agent follows older agent; in the seed clique
    agent ``j`` follows all ``i < j``.

    Args:
        n: Number of agents.
        m: Edges added per new agent (``1 <= m < n``).
        rng: Random generator.

    Returns:
        Canonical ``(src, dst)``.
    """
    _check_ba(n, m)
    s = m + 1  # seed clique size
    older, newer = np.triu_indices(s, k=1)
    seed_src = newer.astype(np.int64)
    seed_dst = older.astype(np.int64)
    c = seed_src.size  # number of seed edges

    k = (n - s) * m  # number of edges added after the seed
    local = np.arange(k, dtype=np.int64)
    node = s + local // m  # arriving agent of each new edge
    first_edge = c + (node - s) * m  # global index of that agent's first edge
    draw = rng.integers(0, 2 * first_edge)  # slot among all endpoints of earlier edges
    del first_edge

    target = np.empty(k, dtype=np.int64)
    active = local
    pos = draw
    while active.size:
        edge = pos >> 1
        odd = (pos & 1).astype(bool)
        is_new = edge >= c
        pending = odd & is_new  # older endpoint of a later edge: not known yet
        done = ~pending
        d_edge, d_odd, d_new = edge[done], odd[done], is_new[done]
        resolved = np.empty(d_edge.size, dtype=np.int64)
        # Newer endpoint of a generated edge: that edge's arriving agent.
        resolved[d_new] = s + (d_edge[d_new] - c) // m
        seed_e = d_edge[~d_new]
        resolved[~d_new] = np.where(d_odd[~d_new], seed_dst[seed_e], seed_src[seed_e])
        target[active[done]] = resolved
        # Pointer jump: an unknown slot takes the value its own edge drew.
        active = active[pending]
        pos = draw[edge[pending] - c]

    src = np.concatenate([seed_src, node])
    dst = np.concatenate([seed_dst, target])
    return finalize_edges(n, src, dst)


# ---------------------------------------------------------------------------- Watts–Strogatz


def _check_ws(n: int, k: int) -> None:
    if k >= n:
        raise NetworkError(
            f"watts_strogatz needs k < n (number of agents), got k={k}, n={n}; lower `k`"
        )


def _both_directions(n: int, a: np.ndarray, b: np.ndarray) -> Edges:
    return finalize_edges(n, np.concatenate([a, b]), np.concatenate([b, a]), assume_unique=True)


def _sorted_member(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Vectorised membership of ``keys`` in the sorted array ``sorted_keys``."""
    if sorted_keys.size == 0:
        return np.zeros(keys.size, dtype=bool)
    pos = np.searchsorted(sorted_keys, keys).clip(max=sorted_keys.size - 1)
    return sorted_keys[pos] == keys


def watts_strogatz(
    n: int, k: int, p: float, rng: np.random.Generator, max_rounds: int = 64
) -> Edges:
    """Watts–Strogatz graph in numpy: ring lattice plus independent rewiring.

    Lattice edges ``{u, u + j mod n}`` for ``j = 1..k/2`` are rewired with probability ``p`` to
    ``{u, w}`` with ``w`` uniform among the other agents. A rewired edge that would duplicate an
    existing edge is redrawn (rounds over the shrinking set of conflicts); after ``max_rounds``
    (only reachable in nearly complete graphs, ``k`` close to ``n``) it falls back to its
    lattice edge when that is free, otherwise it is dropped. Each undirected edge becomes two
    follow edges.

    Args:
        n: Number of agents.
        k: Even number of lattice neighbours (``k < n``).
        p: Rewiring probability per lattice edge.
        rng: Random generator.
        max_rounds: Redraw rounds before giving up on a conflicting rewired edge.

    Returns:
        Canonical ``(src, dst)`` with ``n * k`` edges in all but degenerate dense cases.
    """
    if n == 0 or k == 0:
        return _empty(n)
    _check_ws(n, k)
    half = k // 2
    nn = np.int64(n)
    u = np.tile(np.arange(n, dtype=np.int64), half)
    v = (u + np.repeat(np.arange(1, half + 1, dtype=np.int64), n)) % nn
    rewire = rng.random(u.size) < p
    if k == n - 1:
        rewire[:] = False  # complete lattice: nowhere to rewire to (networkx skips these too)

    def key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.minimum(a, b) * nn + np.maximum(a, b)

    # k < n keeps the lattice keys distinct, so the kept lattice edges form a valid base set.
    fixed = np.sort(key(u[~rewire], v[~rewire]))
    pending = np.flatnonzero(rewire)
    accepted: list[np.ndarray] = []  # keys of successfully rewired edges, per round
    for _ in range(max_rounds):
        if pending.size == 0:
            break
        w = rng.integers(0, n - 1, size=pending.size)
        w += w >= u[pending]  # uniform over agents other than u
        v[pending] = w
        keys = key(u[pending], w)
        taken = np.sort(np.concatenate(accepted)) if accepted else keys[:0]
        # First occurrence among this round's draws wins; later repeats are redrawn.
        ok = first_occurrences(keys) & ~_sorted_member(fixed, keys) & ~_sorted_member(taken, keys)
        accepted.append(keys[ok])
        pending = pending[~ok]
    if pending.size:
        # Degenerate dense case: restore the original lattice edge where it is still free.
        lattice_v = (u[pending] + 1 + pending // n) % nn
        keys = key(u[pending], lattice_v)
        taken = np.sort(np.concatenate(accepted)) if accepted else keys[:0]
        free = ~_sorted_member(fixed, keys) & ~_sorted_member(taken, keys)
        v[pending[free]] = lattice_v[free]
        keep = np.ones(u.size, dtype=bool)
        keep[pending[~free]] = False
        u, v = u[keep], v[keep]
    return _both_directions(n, u, v)


# ------------------------------------------------------------------------------- Erdős–Rényi


def _er_probability(n: int, mean_degree: float) -> float:
    # mean_degree >= n - 1 saturates at the complete digraph.
    return min(1.0, mean_degree / (n - 1))


def erdos_renyi(n: int, mean_degree: float, rng: np.random.Generator) -> Edges:
    """Directed G(n, p) in numpy, exact in distribution.

    Draws the edge count ``M ~ Binomial(n(n-1), p)`` and then ``M`` distinct ordered pairs
    uniformly: pair index ``i`` in ``[0, n(n-1))`` maps to ``src = i // (n-1)`` and
    ``dst = r + (r >= src)`` with ``r = i % (n-1)``, which skips self loops and preserves the
    ``(src, dst)`` order, so sorted unique indices are already canonical. Duplicate draws are
    topped up by redrawing; dense cases use sampling without replacement directly.

    Args:
        n: Number of agents.
        mean_degree: Expected out-degree (capped at ``n - 1``).
        rng: Random generator.

    Returns:
        Canonical ``(src, dst)``.
    """
    if n < 2 or mean_degree <= 0:
        return _empty(n)
    total = n * (n - 1)
    count = int(rng.binomial(total, _er_probability(n, mean_degree)))
    if count * 50 >= total:
        # Dense: numpy's exact sampler costs O(total) here, which is O(count).
        idx = np.sort(rng.choice(total, size=count, replace=False, shuffle=False))
    else:
        idx = sorted_unique(rng.integers(0, total, size=count))
        while idx.size < count:  # sparse: a handful of collisions to top up
            extra = sorted_unique(rng.integers(0, total, size=count - idx.size))
            extra = extra[~_sorted_member(idx, extra)]
            idx = np.insert(idx, np.searchsorted(idx, extra), extra)
    src, r = np.divmod(idx.astype(np.int64, copy=False), np.int64(n - 1))
    dst = r + (r >= src)
    dtype = id_dtype(n)
    return src.astype(dtype), dst.astype(dtype)


# ------------------------------------------------------------------- stochastic block model


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(order, starts, sizes)``: agents sorted by group and each group's slice."""
    order = np.argsort(codes, kind="stable").astype(np.int64)
    sizes = np.bincount(codes).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return order, starts, sizes


def sbm(
    codes: np.ndarray, mean_degree: float, homophily: float, rng: np.random.Generator
) -> Edges:
    """Homophilous SBM in numpy.

    Every agent draws its out-degree from ``Poisson(mean_degree)``; each of its edges is
    in-group with probability ``homophily`` and then targets a uniform other member of its own
    group, else a uniform agent outside it (index arithmetic on the group-sorted agent order
    excludes the agent itself / its group without rejection). Agents alone in their group only
    link outside; when everybody shares one group all edges are in-group. Repeated targets are
    dropped.

    Args:
        codes: Group code ``0..B-1`` per agent (length ``n``).
        mean_degree: Expected out-degree.
        homophily: Probability that an edge stays inside the follower's group.
        rng: Random generator.

    Returns:
        Canonical ``(src, dst)``.
    """
    n = codes.size
    if n < 2 or mean_degree <= 0:
        return _empty(n)
    order, starts, sizes = _groups(codes)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)

    degree = rng.poisson(mean_degree, size=n)
    src = np.repeat(np.arange(n, dtype=np.int64), degree)
    group = codes[src]
    gsize = sizes[group]
    inside = rng.random(src.size) < homophily
    inside = np.where(gsize == 1, False, np.where(gsize == n, True, inside))
    r = rng.integers(0, np.where(inside, gsize - 1, n - gsize))
    gstart = starts[group]
    # In-group: slot within the group's slice, skipping the follower's own slot.
    pos_in = gstart + r
    pos_in += pos_in >= rank[src]
    # Out-group: slot in the order with the group's slice cut out.
    pos_out = r + (r >= gstart) * gsize
    dst = order[np.where(inside, pos_in, pos_out)]
    return finalize_edges(n, src, dst)
