"""Entry point that turns a :data:`~.config.NetworkConfig` into a :class:`~.graph.FollowGraph`.

Core function: :func:`build_network`. It runs the model's vectorised generator (the same one at
every population size), adds reverse edges for ``mutual`` and validates edges supplied from
outside (files, population).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import generators as gen
from .config import (
    BarabasiAlbertConfig,
    EdgeListConfig,
    ErdosRenyiConfig,
    FromPopulationConfig,
    NetworkConfig,
    NoNetworkConfig,
    SBMConfig,
    WattsStrogatzConfig,
)
from .edge_list import load_edge_list
from .graph import FollowGraph, NetworkError, add_mutual_edges, finalize_edges

__all__ = ["build_network", "group_codes"]

Edges = tuple[np.ndarray, np.ndarray]


def group_codes(attributes: pd.DataFrame, attribute: str, n: int) -> np.ndarray:
    """Encode a categorical population attribute as group codes ``0..B-1`` (missing = a group).

    Args:
        attributes: Population attributes, one row per agent.
        attribute: Column to group by.
        n: Number of agents.

    Returns:
        int64 codes of length ``n``.

    Raises:
        NetworkError: The attribute is missing or the row count differs from ``n``.
    """
    if attribute not in attributes.columns:
        raise NetworkError(
            f"sbm: population has no attribute {attribute!r} "
            f"(available: {', '.join(map(str, attributes.columns)) or 'none'}); "
            f"set `attribute:` to a categorical population column"
        )
    if len(attributes) != n:
        raise NetworkError(
            f"sbm: population attributes have {len(attributes)} rows but there are {n} agents"
        )
    codes, _ = pd.factorize(attributes[attribute], use_na_sentinel=False)
    return codes.astype(np.int64)


def _check_external(n: int, src: np.ndarray, dst: np.ndarray, what: str) -> Edges:
    src = np.asarray(src)
    dst = np.asarray(dst)
    if src.shape != dst.shape or src.ndim != 1:
        raise NetworkError(f"{what}: source and target arrays differ in shape")
    if src.size and not (
        np.issubdtype(src.dtype, np.integer) and np.issubdtype(dst.dtype, np.integer)
    ):
        raise NetworkError(f"{what}: edge ids must be integers, got {src.dtype}/{dst.dtype}")
    for name, arr in (("source", src), ("target", dst)):
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            raise NetworkError(
                f"{what}: {int(bad.sum())} {name} id(s) outside the agent index range "
                f"0..{n - 1} (e.g. {arr[bad][:5].tolist()})"
            )
    return src.astype(np.int64), dst.astype(np.int64)


def build_network(
    cfg: NetworkConfig,
    n: int,
    attributes: pd.DataFrame,
    rng: np.random.Generator,
    base_dir: Path = Path("."),
    population_edges: tuple[np.ndarray, np.ndarray] | None = None,
) -> FollowGraph:
    """Build the follow graph of ``n`` agents described by ``cfg``.

    Same config, ``n``, attributes and rng state give identical arrays. Random draws happen in a
    fixed order: the generator first, then (if ``mutual > 0``) one uniform per edge.

    Args:
        cfg: Validated network config (see :func:`~.config.parse_network_config`).
        n: Number of agents; ids are ``0..n-1`` in population row order.
        attributes: Population attributes, one row per agent (used by ``sbm`` and by
            ``edge_list`` with ``ids: <attribute>``).
        rng: Random generator; consumed by random generators and by ``mutual``.
        base_dir: Directory that relative ``edge_list`` paths are resolved against.
        population_edges: ``(src, dst)`` agent indices that the population file brought
            (e.g. OASIS following lists); required by ``from_population``.

    Returns:
        The canonical follow graph (no self loops or duplicates, sorted by ``(src, dst)``).

    Raises:
        NetworkError: Parameters that do not fit ``n``, bad files, unknown attributes or ids,
            or missing population edges.
    """
    if n < 0:
        raise NetworkError(f"number of agents must be >= 0, got {n}")
    src, dst = _generate(cfg, n, attributes, rng, Path(base_dir), population_edges)
    src, dst = add_mutual_edges(n, src, dst, cfg.mutual, rng)
    return FollowGraph(n, src, dst)


def _generate(
    cfg: NetworkConfig,
    n: int,
    attributes: pd.DataFrame,
    rng: np.random.Generator,
    base_dir: Path,
    population_edges: tuple[np.ndarray, np.ndarray] | None,
) -> Edges:
    if isinstance(cfg, NoNetworkConfig):
        return finalize_edges(n, np.empty(0, np.int64), np.empty(0, np.int64))
    if isinstance(cfg, FromPopulationConfig):
        if population_edges is None:
            raise NetworkError(
                "from_population: the population file brought no follow edges (e.g. an OASIS "
                "'following_list' column); use a population with following lists or another "
                "generator such as barabasi_albert or edge_list"
            )
        src, dst = _check_external(n, *population_edges, what="from_population")
        if src.size == 0:
            raise NetworkError(
                "from_population: the population's follow lists are all empty; "
                "use another generator or `generator: none`"
            )
        return finalize_edges(n, src, dst)
    if isinstance(cfg, EdgeListConfig):
        src, dst = load_edge_list(cfg, n, attributes, base_dir)
        return finalize_edges(n, src, dst)
    if n == 0:
        return finalize_edges(0, np.empty(0, np.int64), np.empty(0, np.int64))
    if isinstance(cfg, BarabasiAlbertConfig):
        return gen.barabasi_albert(n, cfg.m, rng)
    if isinstance(cfg, WattsStrogatzConfig):
        return gen.watts_strogatz(n, cfg.k, cfg.p, rng)
    if isinstance(cfg, ErdosRenyiConfig):
        return gen.erdos_renyi(n, cfg.mean_degree, rng)
    if isinstance(cfg, SBMConfig):
        codes = group_codes(attributes, cfg.attribute, n)
        return gen.sbm(codes, cfg.mean_degree, cfg.homophily, rng)
    raise NetworkError(f"unsupported network config {type(cfg).__name__}")
