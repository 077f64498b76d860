"""A snapshot of a run's network: a sampled subgraph of the scenario's graph table at a step,
drawn with its agents coloured by an attribute or a state variable.

Core objects:
    network_snapshot: a ``networkx.DiGraph`` of at most ``max_nodes`` agents (seed agents and
        their neighbours) with the edges among them as they stood at a step; each node's
        ``value`` is the chosen attribute or variable.
    plot_network: draw such a graph (edges as one line collection, nodes as one scatter).

The scenario declares where its network is recorded (``Scenario.graph``, a ``GraphTable``:
e.g. follow and unfollow events, or orders between customers and sellers). The queries ask
the database for the few edges they need, aggregated there: a run of a million agents is
never loaded whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import sqlalchemy as sa
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D

from populace.storage import Run
from populace.storage.loaders import agents_frame

from ..registry import get_scenario
from ..scenario import GraphTable
from .figures import new_axes

MAX_NODES = 5000
"""Most nodes a snapshot holds: more cannot be drawn legibly (nor laid out in seconds)."""
HASH_PRIME = 2_147_483_647
"""The modulus (2**31 - 1) of the seeded hash that orders candidate neighbours in the database:
products of two numbers below it fit the 64-bit integers of SQLite and PostgreSQL."""


def network_snapshot(run: Run, step: int | None = None, *, max_nodes: int = 500,
                     seeds: Sequence[int] | None = None, hops: int = 1,
                     color: str | None = None, seed: int = 0) -> nx.DiGraph:
    """A sampled subgraph of the run's network as it stood at the end of ``step``.

    Sampling: ``seeds`` (default: a seeded random sample of ``max_nodes // 10`` agents), then
    ``hops`` rounds adding the agents linked to the last ones added (once ``max_nodes`` would
    be passed, a seeded random choice among all of them, made in the database: see
    ``_neighbours``), then every edge among the chosen agents.

    Args:
        run: the run (its scenario must record a network: ``Scenario.graph``).
        step: the step (default: the run's last committed step).
        max_nodes: the most agents in the snapshot (at most 5,000).
        seeds: the agents to start from (e.g. one agent, to see its neighbourhood).
        hops: how many rounds of neighbours to add.
        color: an agent attribute, or a state variable the run snapshotted, to store on each
            node as ``value`` (a variable's value at its last snapshot at or before ``step``).
        seed: the seed of the random choices.

    Returns:
        A directed graph: nodes are agent ids (with ``value`` when ``color`` is given), edges
        ``source -> target`` with ``weight`` (the rows of the edge, or for a table of follow
        and unfollow events the sum of their ops, always positive). ``graph.graph`` holds
        ``run_id``, ``step``, ``color``, ``value_step`` (the snapshot the values come from, for a
        state variable), ``n_agents``, ``table`` and ``sampled`` (whether agents were left out).

    Raises:
        ValueError: the scenario records no network, a step outside the run, or an unknown
            ``color`` (the message lists the attributes and variables).
    """
    spec = get_scenario(str(run.info["scenario"])).graph
    if spec is None:
        raise ValueError(f"run {run.id}'s scenario ({run.info['scenario']}) records no network")
    done = int(run.info["steps_done"])
    step = done if step is None else int(step)
    if not 0 <= step <= done:
        raise ValueError(f"run {run.id} has steps 0 to {done}, not {step}")
    n_agents = int(run.info["n_agents"])
    max_nodes = max(1, min(int(max_nodes), MAX_NODES))
    rng = np.random.default_rng(seed)
    if seeds is None:
        start = np.sort(rng.choice(n_agents, size=min(n_agents, max(1, max_nodes // 10)),
                                   replace=False))
    else:
        start = np.unique(np.asarray(seeds, dtype=np.int64))[:max_nodes]
    nodes = start
    frontier = start
    sampled = seeds is None and len(start) < n_agents
    for _ in range(max(0, hops)):
        room = max_nodes - len(nodes)
        if not len(frontier) or room <= 0:
            break
        # every neighbour of the frontier in a seeded random order, the first few only: enough
        # to fill the room once those already chosen are left out, and one more to tell
        # whether any was left out
        found = _neighbours(run, spec, step, frontier, rng.integers(1, HASH_PRIME, size=3),
                            limit=room + len(nodes) + 1)
        new = found[~np.isin(found, nodes)]
        if len(new) > room:
            sampled = True
            new = new[:room]
        new = np.sort(new)
        nodes = np.union1d(nodes, new)
        frontier = new
    edges = _edges(run, spec, step, nodes)
    graph = nx.DiGraph(run_id=run.id, step=step, color=color, value_step=None,
                       n_agents=n_agents, table=spec.table, sampled=bool(sampled))
    graph.add_nodes_from(nodes.tolist())
    graph.add_weighted_edges_from(zip(edges["source"].tolist(), edges["target"].tolist(),
                                      edges["weight"].tolist(), strict=True))
    if color is not None:
        values, value_step = _values(run, color, step, nodes)
        nx.set_node_attributes(graph, values, "value")
        graph.graph["value_step"] = value_step
    return graph


def _edge_query(run: Run, spec: GraphTable, step: int, nodes: np.ndarray, *,
                any_end: bool) -> sa.Select[Any]:
    """The edges as of ``step`` with one end (``any_end``) or both ends in ``nodes``,
    aggregated in the database: ``source``, ``target``, ``weight``."""
    t = run.db.table(spec.table)
    src, dst = t.c[spec.source], t.c[spec.target]
    ids = [int(x) for x in nodes]
    inside = [src.in_(ids), dst.in_(ids)]
    weight = sa.func.sum(t.c[spec.op]) if spec.op else sa.func.count()
    return (sa.select(src.label("source"), dst.label("target"), weight.label("weight"))
            .where(t.c.run_id == run.id, t.c.step <= step,
                   sa.or_(*inside) if any_end else sa.and_(*inside))
            .group_by(src, dst).having(weight > 0))


def _edges(run: Run, spec: GraphTable, step: int, nodes: np.ndarray) -> pd.DataFrame:
    """The edges among ``nodes`` as of ``step`` (see ``_edge_query``)."""
    stmt = _edge_query(run, spec, step, nodes, any_end=False)
    with run.db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["source", "target", "weight"])


def _neighbours(run: Run, spec: GraphTable, step: int, frontier: np.ndarray,
                salt: np.ndarray, *, limit: int) -> np.ndarray:
    """The first ``limit`` agents linked to ``frontier`` (the frontier's own agents among
    them) as of ``step``, in an order that ``salt`` (three integers below ``HASH_PRIME``)
    chooses at random.

    The database orders all of them and sends ``limit`` ids: a hub followed by a million
    agents costs one sort there, not a million rows here. The order is a hash of the agent
    id, ``(((a * id + b) mod P)**2 + c) mod P``: deterministic for a salt on SQLite and
    PostgreSQL alike (neither has a seeded random()), and the square breaks the regular
    pattern an affine hash alone would give ids in a row; ties go to the lower id.
    """
    pairs = _edge_query(run, spec, step, frontier, any_end=True).subquery()
    ends = sa.union(sa.select(pairs.c.source.label("agent")),
                    sa.select(pairs.c.target.label("agent"))).subquery()
    a, b, c = (sa.literal(int(x), sa.BigInteger) for x in salt)
    mixed = (sa.cast(ends.c.agent, sa.BigInteger) * a + b) % HASH_PRIME
    key = (mixed * mixed + c) % HASH_PRIME
    stmt = sa.select(ends.c.agent).order_by(key, ends.c.agent).limit(limit)
    with run.db.engine.connect() as conn:
        return np.asarray(conn.execute(stmt).scalars().all(), dtype=np.int64)


def _values(run: Run, name: str, step: int, nodes: np.ndarray) -> tuple[dict[int, Any],
                                                                         int | None]:
    """``name`` of each agent of ``nodes``: a snapshotted state variable at its last snapshot
    at or before ``step`` (and that snapshot's step), else an attribute (and None)."""
    ids = [int(x) for x in nodes]
    db = run.db
    if "agent_states" in db.table_names():
        t = db.table("agent_states")
        mine = sa.and_(t.c.run_id == run.id, t.c.variable == name)
        with db.engine.connect() as conn:
            at = conn.execute(sa.select(sa.func.max(t.c.step)).where(mine, t.c.step <= step)
                              ).scalar()
            recorded = at is not None or conn.execute(
                sa.select(t.c.step).where(mine).limit(1)).first() is not None
            if recorded:
                if at is None:
                    raise ValueError(f"{name!r} has no snapshot at or before step {step}")
                rows = conn.execute(sa.select(t.c.agent_id, t.c.value).where(
                    mine, t.c.step == at, t.c.agent_id.in_(ids))).all()
                return {int(a): float(v) for a, v in rows}, int(at)
    t = db.table("agents")
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(t.c.agent_id, t.c.attributes).where(
            t.c.run_id == run.id, t.c.agent_id.in_(ids))).all()
    attrs = agents_frame([r[0] for r in rows], [r[1] for r in rows])
    if name not in attrs.columns:
        raise ValueError(f"run {run.id} has no agent attribute or recorded state variable "
                         f"{name!r} (attributes: {', '.join(map(str, attrs.columns))})")
    column = attrs[name]
    return {int(a): v for a, v in zip(column.index, column.to_numpy(), strict=True)
            if not pd.isna(v)}, None


def plot_network(graph: nx.DiGraph, *, ax: Axes | None = None,
                 layout: str | dict[Any, Any] = "spring", cmap: str = "coolwarm",
                 vmin: float | None = None, vmax: float | None = None, seed: int = 0,
                 title: str | None = None) -> Axes:
    """Draw a snapshot (``network_snapshot``): nodes sized by in-degree within the snapshot
    and coloured by their ``value`` (a colour scale with a colour bar for numbers, one colour
    per category with a legend otherwise; grey without a value), edges as faint lines.

    Args:
        graph: the snapshot.
        ax: axes to draw on (default: a new square figure's).
        layout: ``"spring"`` (force-directed), ``"kamada_kawai"``, ``"circular"``,
            ``"random"``, or positions ``{node: (x, y)}``.
        cmap: the colour map for numeric values.
        vmin, vmax: the values at the ends of the colour scale (default: the smallest and
            largest shown; e.g. -1 and 1 for opinions, to keep 0 in the middle).
        seed: the seed of the spring and random layouts.
        title: the axes' title (default: run, step, and how many agents are shown).

    Returns:
        The axes: ``ax.collections`` holds the edges (a ``LineCollection``) then the nodes.
    """
    ax = new_axes(ax, figsize=(6.4, 6.0))
    nodes = list(graph.nodes)
    pos = _layout(graph, layout, seed)
    xy = np.asarray([pos[n] for n in nodes], dtype=float).reshape(-1, 2)
    index = {n: i for i, n in enumerate(nodes)}
    if graph.number_of_edges():
        ends = np.asarray([(index[a], index[b]) for a, b in graph.edges], dtype=np.int64)
        ax.add_collection(LineCollection(np.stack([xy[ends[:, 0]], xy[ends[:, 1]]], axis=1),
                                         colors="0.45", linewidths=0.4, alpha=0.25, zorder=1))
    indeg = np.asarray([d for _, d in graph.in_degree(nodes)], dtype=float)
    sizes = 8 + 60 * np.sqrt(indeg / indeg.max()) if len(indeg) and indeg.max() > 0 else 12
    values = pd.Series([graph.nodes[n].get("value") for n in nodes], dtype=object)
    has = values.notna().to_numpy()
    color = graph.graph.get("color")
    if has.any() and pd.api.types.is_number(values[has].iloc[0]) and not isinstance(
            values[has].iloc[0], bool):
        if (~has).any():
            ax.scatter(xy[~has, 0], xy[~has, 1], s=_pick(sizes, ~has), c="0.7", zorder=2,
                       linewidths=0)
        points = ax.scatter(xy[has, 0], xy[has, 1], s=_pick(sizes, has),
                            c=values[has].to_numpy(dtype=float), cmap=cmap, vmin=vmin,
                            vmax=vmax, zorder=3, linewidths=0)
        ax.figure.colorbar(points, ax=ax, shrink=0.7, label=color)
    elif has.any():
        categories = sorted(values[has].astype(str).unique())
        palette = {c: f"C{i % 10}" for i, c in enumerate(categories)}
        colours = [palette[str(v)] if ok else "0.7" for v, ok in zip(values, has, strict=True)]
        ax.scatter(xy[:, 0], xy[:, 1], s=sizes, c=colours, zorder=2, linewidths=0)
        ax.legend(handles=[Line2D([], [], marker="o", linestyle="", color=palette[c], label=c)
                           for c in categories], title=color, fontsize="small")
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=sizes, c="C0", zorder=2, linewidths=0)
    ax.set_axis_off()
    ax.autoscale_view()
    if title is None:
        g = graph.graph
        title = (f"run {g.get('run_id')}, step {g.get('step')}: {len(nodes):,} of "
                 f"{g.get('n_agents', len(nodes)):,} agents, {graph.number_of_edges():,} edges")
    ax.set_title(title, fontsize="medium")
    return ax


def _pick(sizes: np.ndarray | int, mask: np.ndarray) -> np.ndarray | int:
    return sizes[mask] if isinstance(sizes, np.ndarray) else sizes


def _layout(graph: nx.DiGraph, layout: str | dict[Any, Any], seed: int) -> dict[Any, Any]:
    """Node positions by name of a networkx layout, or as given."""
    if isinstance(layout, dict):
        missing = [n for n in graph.nodes if n not in layout]
        if missing:
            raise ValueError(f"the layout has no position for {len(missing)} nodes "
                             f"(e.g. {missing[:3]})")
        return layout
    if not graph.number_of_nodes():
        return {}
    undirected = graph.to_undirected(as_view=True)
    if layout == "spring":
        return nx.spring_layout(undirected, seed=seed)
    if layout == "kamada_kawai":
        return nx.kamada_kawai_layout(undirected)
    if layout == "circular":
        return nx.circular_layout(undirected)
    if layout == "random":
        return nx.random_layout(undirected, seed=seed)
    raise ValueError(f"unknown layout {layout!r} (spring, kamada_kawai, circular, random, or "
                     "a dict of positions)")
