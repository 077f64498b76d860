"""Tests of the follow-graph generator (populace.simulator.network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from populace.simulator.network import (
    NETWORKX_MAX_NODES,
    BarabasiAlbertConfig,
    FollowGraph,
    NetworkError,
    build_network,
    parse_network_config,
)
from populace.simulator.network.build import use_networkx
from populace.simulator.network.graph import finalize_edges, id_dtype

DATA = Path(__file__).parent / "data" / "network"
IMPLEMENTATIONS = ["networkx", "vectorised"]
RANDOM_GENERATORS: dict[str, dict[str, Any]] = {
    "barabasi_albert": {"generator": "barabasi_albert", "m": 3},
    "watts_strogatz": {"generator": "watts_strogatz", "k": 6, "p": 0.2},
    "erdos_renyi": {"generator": "erdos_renyi", "mean_degree": 4.0},
    "sbm": {"generator": "sbm", "attribute": "group", "mean_degree": 6.0, "homophily": 0.7},
}


def groups(n: int, k: int = 4, seed: int = 0) -> pd.DataFrame:
    """Population attributes with a categorical ``group`` column of ``k`` values."""
    labels = np.array([f"g{i}" for i in range(k)])
    return pd.DataFrame({"group": labels[np.random.default_rng(seed).integers(0, k, n)]})


def build(data: dict[str, Any], n: int, seed: int = 0, **kwargs: Any) -> FollowGraph:
    attributes = kwargs.pop("attributes", None)
    if attributes is None:
        attributes = groups(n)
    return build_network(
        parse_network_config(data), n, attributes, np.random.default_rng(seed), **kwargs
    )


def assert_canonical(graph: FollowGraph) -> None:
    """No self loops, no duplicates, sorted by (src, dst), ids in range, expected dtype."""
    assert graph.src.dtype == graph.dst.dtype == np.int32
    assert np.all(graph.src != graph.dst)
    keys = graph.src.astype(np.int64) * graph.n + graph.dst
    assert np.all(np.diff(keys) > 0)  # strictly increasing: sorted and duplicate-free
    if graph.num_edges:
        assert graph.src.min() >= 0 and graph.dst.min() >= 0
        assert max(graph.src.max(), graph.dst.max()) < graph.n


# ----------------------------------------------------------------------- shared properties


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", sorted(RANDOM_GENERATORS))
def test_deterministic_and_canonical(name: str, implementation: str) -> None:
    data = {**RANDOM_GENERATORS[name], "implementation": implementation}
    a = build(data, 3000, seed=11)
    b = build(data, 3000, seed=11)
    c = build(data, 3000, seed=12)
    assert_canonical(a)
    assert a.num_edges > 3000
    np.testing.assert_array_equal(a.src, b.src)
    np.testing.assert_array_equal(a.dst, b.dst)
    assert a.num_edges != c.num_edges or not np.array_equal(a.dst, c.dst)


@pytest.mark.parametrize("name", sorted(RANDOM_GENERATORS))
def test_auto_picks_networkx_for_small_and_numpy_for_large(name: str) -> None:
    cfg = parse_network_config(RANDOM_GENERATORS[name])
    assert use_networkx(cfg, NETWORKX_MAX_NODES)
    assert not use_networkx(cfg, NETWORKX_MAX_NODES + 1)
    small = {**RANDOM_GENERATORS[name]}
    auto = build(small, 500, seed=3)
    forced = build({**small, "implementation": "networkx"}, 500, seed=3)
    np.testing.assert_array_equal(auto.dst, forced.dst)


def test_auto_large_matches_vectorised() -> None:
    n = NETWORKX_MAX_NODES + 1
    data = {"generator": "erdos_renyi", "mean_degree": 2.0}
    auto = build(data, n, seed=5)
    forced = build({**data, "implementation": "vectorised"}, n, seed=5)
    np.testing.assert_array_equal(auto.src, forced.src)
    np.testing.assert_array_equal(auto.dst, forced.dst)


# ------------------------------------------------------------------------ Barabási–Albert


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_barabasi_albert_newer_follows_older_about_m_each(implementation: str) -> None:
    n, m = 5000, 4
    graph = build({"generator": "barabasi_albert", "m": m, "implementation": implementation}, n)
    assert np.all(graph.src > graph.dst)  # newer agent follows older agent
    out = graph.out_degree()
    # Seed clique: agent j follows all i < j; afterwards exactly m (minus rare repeats).
    np.testing.assert_array_equal(out[: m + 1], np.arange(m + 1))
    assert out[m + 1 :].max() == m
    assert out[m + 1 :].mean() > m - 0.05


def test_barabasi_albert_in_degree_heavy_tail() -> None:
    graph = build(
        {"generator": "barabasi_albert", "m": 5, "implementation": "vectorised"}, 100_000
    )
    indeg = graph.in_degree()
    assert abs(graph.num_edges / graph.n - 5) < 0.01
    assert indeg.max() > 50 * indeg.mean()
    # Preferential attachment: early agents are the popular ones.
    assert indeg[:100].mean() > 20 * indeg[50_000:].mean()


def test_barabasi_albert_needs_m_below_n() -> None:
    with pytest.raises(NetworkError, match=r"m < n.*m=5, n=5"):
        build({"generator": "barabasi_albert", "m": 5}, 5)


# ------------------------------------------------------------------------- Watts–Strogatz


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_watts_strogatz_edges_in_both_directions(implementation: str) -> None:
    n, k = 4000, 8
    graph = build({"generator": "watts_strogatz", "k": k, "p": 0.3,
                   "implementation": implementation}, n)
    assert graph.num_edges == n * k
    assert graph.reciprocity() == 1.0
    ring = np.minimum((graph.dst - graph.src) % n, (graph.src - graph.dst) % n) <= k // 2
    assert 0.25 < 1 - ring.mean() < 0.35  # about p of the edges were rewired


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_watts_strogatz_without_rewiring_is_the_ring_lattice(implementation: str) -> None:
    n = 50
    graph = build({"generator": "watts_strogatz", "k": 4, "p": 0.0,
                   "implementation": implementation}, n)
    np.testing.assert_array_equal(graph.out_degree(), np.full(n, 4))
    assert set(((graph.dst - graph.src) % n).tolist()) == {1, 2, n - 2, n - 1}


@pytest.mark.parametrize(("n", "edges"), [(11, 110), (16, 160)])
def test_watts_strogatz_dense_vectorised_keeps_edge_count(n: int, edges: int) -> None:
    # n=11: the k=10 lattice is complete, nothing to rewire; n=16: many redraw conflicts.
    graph = build({"generator": "watts_strogatz", "k": 10, "p": 0.9,
                   "implementation": "vectorised"}, n)
    assert_canonical(graph)
    assert graph.num_edges == edges


def test_watts_strogatz_validation() -> None:
    with pytest.raises(ValidationError, match="even"):
        parse_network_config({"generator": "watts_strogatz", "k": 5})
    with pytest.raises(NetworkError, match="k < n"):
        build({"generator": "watts_strogatz", "k": 10}, 10)


# --------------------------------------------------------------------------- Erdős–Rényi


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_erdos_renyi_mean_degree(implementation: str) -> None:
    n = 20_000
    graph = build({"generator": "erdos_renyi", "mean_degree": 5.0,
                   "implementation": implementation}, n)
    assert abs(graph.num_edges / n - 5.0) < 0.05  # sd of the mean is ~0.016
    assert graph.reciprocity() < 0.01


def test_erdos_renyi_saturates_at_complete_digraph() -> None:
    graph = build({"generator": "erdos_renyi", "mean_degree": 50.0,
                   "implementation": "vectorised"}, 20)
    assert graph.num_edges == 20 * 19


# ------------------------------------------------------------------------------------ SBM


@pytest.mark.parametrize(("implementation", "n"), [("vectorised", 50_000), ("networkx", 10_000)])
@pytest.mark.parametrize("homophily", [0.8, 0.3])
def test_sbm_homophily_share(implementation: str, n: int, homophily: float) -> None:
    attributes = groups(n, k=5)
    graph = build({"generator": "sbm", "attribute": "group", "mean_degree": 10,
                   "homophily": homophily, "implementation": implementation}, n,
                  attributes=attributes)
    g = attributes["group"].to_numpy()
    assert abs(np.mean(g[graph.src] == g[graph.dst]) - homophily) < 0.03
    assert abs(graph.num_edges / n - 10) < 0.2


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_sbm_singleton_group_links_outside_and_missing_values_form_a_group(
    implementation: str,
) -> None:
    values = np.array(["a"] * 199 + ["solo"], dtype=object)
    values[:50] = None  # missing values are one more group
    attributes = pd.DataFrame({"group": values})
    graph = build({"generator": "sbm", "attribute": "group", "mean_degree": 5, "homophily": 1.0,
                   "implementation": implementation}, 200, attributes=attributes)
    solo = graph.src == 199
    assert solo.sum() > 0
    assert np.all(graph.dst[solo] != 199)
    missing = graph.src < 50
    assert np.all(graph.dst[missing] < 50)  # homophily 1: missing-value agents stay together


def test_sbm_unknown_attribute() -> None:
    with pytest.raises(NetworkError, match=r"no attribute 'party'.*available: group"):
        build({"generator": "sbm", "attribute": "party"}, 100)


# ------------------------------------------------------------------------------ edge list


def user_population(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{10 + i}" for i in range(n)], "age": range(n)})


def test_edge_list_maps_user_ids() -> None:
    cfg = {"generator": "edge_list", "path": "follows_user_id.csv", "source": "follower",
           "target": "followee", "ids": "user_id"}
    graph = build(cfg, 6, attributes=user_population(), base_dir=DATA)
    # u13->u10 repeated and u14->u14 self loop are dropped.
    assert list(zip(graph.src.tolist(), graph.dst.tolist(), strict=True)) == [
        (0, 1), (0, 2), (1, 0), (2, 3), (3, 0)
    ]


def test_edge_list_integer_user_ids_parquet(tmp_path: Path) -> None:
    pd.DataFrame({"a": [105, 101, 101], "b": [101, 103, 105]}).to_parquet(tmp_path / "e.parquet")
    attributes = pd.DataFrame({"uid": [101, 103, 105]})
    cfg = {"generator": "edge_list", "path": "e.parquet", "source": "a", "target": "b",
           "ids": "uid"}
    graph = build(cfg, 3, attributes=attributes, base_dir=tmp_path)
    assert graph.src.tolist() == [0, 0, 2] and graph.dst.tolist() == [1, 2, 0]


def test_edge_list_string_ids_keep_leading_zeros_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("source,target\n007,010\n010,007\n")
    (tmp_path / "empty.csv").write_text("source,target\n")
    attributes = pd.DataFrame({"handle": ["010", "007", "7"]})
    graph = build({"generator": "edge_list", "path": "e.csv", "ids": "handle"}, 3,
                  attributes=attributes, base_dir=tmp_path)
    assert graph.src.tolist() == [0, 1] and graph.dst.tolist() == [1, 0]
    empty = build({"generator": "edge_list", "path": "empty.csv"}, 3, base_dir=tmp_path)
    assert empty.num_edges == 0


def test_edge_list_index_tsv_with_mutual_absolute_path() -> None:
    cfg = {"generator": "edge_list", "path": str(DATA / "follows_index.tsv"), "mutual": 1.0}
    graph = build(cfg, 5, base_dir=Path("/nonexistent"))
    assert graph.num_edges == 8 and graph.reciprocity() == 1.0


def test_edge_list_explicit_format(tmp_path: Path) -> None:
    (tmp_path / "edges.txt").write_text("source,target\n0,1\n1,0\n")
    with pytest.raises(NetworkError, match=r"edges\.txt.*set `format:`"):
        build({"generator": "edge_list", "path": "edges.txt"}, 2, base_dir=tmp_path)
    graph = build({"generator": "edge_list", "path": "edges.txt", "format": "csv"}, 2,
                  base_dir=tmp_path)
    assert graph.num_edges == 2


@pytest.mark.parametrize(
    ("cfg", "n", "pattern"),
    [
        ({"path": "missing.csv"}, 6, r"missing\.csv not found"),
        ({"path": "follows_user_id.csv"}, 6,
         r"follows_user_id\.csv has no column 'source', 'target' \(available: follower, "
         r"followee, since\)"),
        ({"path": "follows_index.tsv"}, 4,
         r"follows_index\.tsv: 1 value\(s\) in column 'source' are outside the agent index "
         r"range 0\.\.3 \(e\.g\. 4\)"),
        ({"path": "follows_user_id.csv", "source": "follower", "target": "followee"}, 6,
         r"follows_user_id\.csv: column 'follower' holds non-integer ids \(e\.g\. 'u10'.*"
         r"set `ids:`"),
        ({"path": "follows_user_id.csv", "source": "follower", "target": "followee",
          "ids": "user_id"}, 4,
         r"follows_user_id\.csv: 1 value\(s\) in column 'follower' match no agent's "
         r"'user_id' \(e\.g\. 'u14'\)"),
        ({"path": "follows_user_id.csv", "source": "follower", "target": "followee",
          "ids": "handle"}, 6,
         r"`ids: handle` is not a population attribute \(available: user_id, age\)"),
        ({"path": "follows_user_id.csv", "source": "follower", "target": "followee",
          "ids": "age"}, 6, None),
    ],
)
def test_edge_list_errors(cfg: dict[str, Any], n: int, pattern: str | None) -> None:
    attributes = user_population(n)
    if pattern is None:  # a non-unique attribute cannot identify agents
        attributes["age"] = [1, 1, 2, 3, 4, 5]
        pattern = r"attribute 'age' is not unique \(1 repeated value\(s\), e\.g\. 1\)"
    with pytest.raises(NetworkError, match=pattern):
        build({"generator": "edge_list", **cfg}, n, attributes=attributes, base_dir=DATA)


# ------------------------------------------------------------------- from_population / none


def test_from_population() -> None:
    edges = (np.array([2, 0, 0, 1, 1]), np.array([0, 1, 1, 1, 2]))
    graph = build({"generator": "from_population"}, 3, population_edges=edges)
    assert graph.src.tolist() == [0, 1, 2] and graph.dst.tolist() == [1, 2, 0]


def test_from_population_errors() -> None:
    with pytest.raises(NetworkError, match="from_population: the population file brought no"):
        build({"generator": "from_population"}, 3)
    with pytest.raises(NetworkError, match="all empty"):
        build({"generator": "from_population"}, 3,
              population_edges=(np.array([], int), np.array([], int)))
    with pytest.raises(NetworkError, match=r"1 target id\(s\) outside .*0\.\.2 \(e\.g\. \[7\]\)"):
        build({"generator": "from_population"}, 3, population_edges=(np.array([0]), np.array([7])))


def test_none_and_empty_population() -> None:
    graph = build({"generator": "none"}, 10)
    assert graph.num_edges == 0 and graph.out_degree().tolist() == [0] * 10
    assert build({"generator": "barabasi_albert"}, 0).num_edges == 0


# --------------------------------------------------------------------------------- mutual


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mutual_share(implementation: str) -> None:
    n, mutual = 20_000, 0.3
    base = {"generator": "erdos_renyi", "mean_degree": 5.0, "implementation": implementation}
    plain = build(base, n, seed=9)
    graph = build({**base, "mutual": mutual}, n, seed=9)
    keys = graph.src.astype(np.int64) * n + graph.dst
    # The generator draws first, so the plain edges are all present ...
    assert np.isin(plain.src.astype(np.int64) * n + plain.dst, keys).all()
    # ... and about `mutual` of them got their reverse edge.
    reverse = plain.dst.astype(np.int64) * n + plain.src
    assert abs(np.isin(reverse, keys).mean() - mutual) < 0.02
    assert abs(graph.reciprocity() - 2 * mutual / (1 + mutual)) < 0.02


def test_mutual_out_of_range_and_unknown_keys_rejected() -> None:
    with pytest.raises(ValidationError):
        parse_network_config({"generator": "none", "mutual": 1.5})
    with pytest.raises(ValidationError, match="extra"):
        parse_network_config({"generator": "barabasi_albert", "k": 3})
    with pytest.raises(ValidationError, match="generator"):
        parse_network_config({"generator": "small_world"})
    with pytest.raises(ValidationError, match="implementation"):
        parse_network_config({"generator": "erdos_renyi", "mean_degree": 2, "implementation": "gpu"})


def test_config_defaults() -> None:
    cfg = parse_network_config({"generator": "barabasi_albert"})
    assert isinstance(cfg, BarabasiAlbertConfig)
    assert (cfg.m, cfg.mutual, cfg.implementation) == (5, 0.0, "auto")
    sbm = parse_network_config({"generator": "sbm", "attribute": "party"})
    assert (sbm.mean_degree, sbm.homophily) == (10.0, 0.8)


# -------------------------------------------------------------------------- graph object


def test_to_csr_and_networkx_consistent() -> None:
    graph = build({"generator": "erdos_renyi", "mean_degree": 3.0}, 400, seed=2)
    indptr, indices = graph.to_csr()
    assert indptr.dtype == np.int64 and indptr.shape == (401,)
    np.testing.assert_array_equal(np.diff(indptr), graph.out_degree())
    np.testing.assert_array_equal(np.repeat(np.arange(400), np.diff(indptr)), graph.src)
    np.testing.assert_array_equal(indices, graph.dst)
    nxg = graph.to_networkx()
    assert nxg.number_of_nodes() == 400 and nxg.number_of_edges() == graph.num_edges
    assert sorted(nxg.successors(7)) == indices[indptr[7] : indptr[8]].tolist()
    np.testing.assert_array_equal(
        [d for _, d in sorted(nxg.in_degree())], graph.in_degree()
    )


def test_finalize_edges_and_dtype() -> None:
    src, dst = finalize_edges(4, np.array([3, 1, 1, 2, 0]), np.array([0, 2, 2, 2, 3]))
    assert src.tolist() == [0, 1, 3] and dst.tolist() == [3, 2, 0]
    assert id_dtype(2**31 - 1) == np.int32 and id_dtype(2**31) == np.int64
    with pytest.raises(NetworkError, match="equal length"):
        FollowGraph(3, np.array([0, 1]), np.array([1]))
