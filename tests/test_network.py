"""Tests of the follow-graph generator (populace.simulator.network).

Each random model has one generator, the vectorised numpy one. networkx serves as the reference:
the statistical tests below draw graphs from networkx's own generators with the same parameters
and check that degree distributions, clustering, path lengths and block structure agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from populace.simulator import load_experiment
from populace.simulator.config_errors import ConfigError
from populace.simulator.network import (
    BarabasiAlbertConfig,
    FollowGraph,
    NetworkError,
    build_network,
    parse_network_config,
)
from populace.simulator.network import generators as gen
from populace.simulator.network.graph import finalize_edges, id_dtype

DATA = Path(__file__).parent / "data" / "network"
SEEDS = range(3)  # graphs per model in the comparisons with networkx
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


def undirected_degrees(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Degree of each agent in the undirected view of a follow graph given as mutual-free edges."""
    return np.bincount(np.concatenate([src, dst]), minlength=n)


def undirected(n: int, src: np.ndarray, dst: np.ndarray) -> nx.Graph:
    """The undirected networkx graph over agents ``0..n-1`` with the given edges."""
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    return graph


def degrees(graph: nx.Graph | nx.DiGraph, kind: str = "degree") -> np.ndarray:
    """A networkx graph's degree (or ``in_degree``/``out_degree``) per node, in node order."""
    return np.array([d for _, d in sorted(getattr(graph, kind)())])


def hill_exponent(degree: np.ndarray, kmin: int) -> float:
    """Maximum-likelihood power-law exponent of the degrees >= ``kmin`` (discrete approximation)."""
    tail = degree[degree >= kmin].astype(float)
    return 1.0 + tail.size / float(np.log(tail / (kmin - 0.5)).sum())


def same_distribution(a: np.ndarray, b: np.ndarray) -> bool:
    """Two-sample Kolmogorov-Smirnov test of two integer samples at the 0.1% level.

    The critical distance ``1.95 * sqrt((|a| + |b|) / (|a| |b|))`` is conservative for integer
    data, so a failure means the distributions really differ.
    """
    values = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), values, side="right") / a.size
    cdf_b = np.searchsorted(np.sort(b), values, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max()) < 1.95 * np.sqrt((a.size + b.size) / (a.size * b.size))


# ----------------------------------------------------------------------- shared properties


@pytest.mark.parametrize("name", sorted(RANDOM_GENERATORS))
def test_deterministic_and_canonical(name: str) -> None:
    data = RANDOM_GENERATORS[name]
    a = build(data, 3000, seed=11)
    b = build(data, 3000, seed=11)
    c = build(data, 3000, seed=12)
    assert_canonical(a)
    assert a.num_edges > 3000
    np.testing.assert_array_equal(a.src, b.src)
    np.testing.assert_array_equal(a.dst, b.dst)
    assert a.num_edges != c.num_edges or not np.array_equal(a.dst, c.dst)


def direct(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The edges the generator of ``RANDOM_GENERATORS[name]`` draws, called directly."""
    rng = np.random.default_rng(seed)
    if name == "barabasi_albert":
        return gen.barabasi_albert(n, 3, rng)
    if name == "watts_strogatz":
        return gen.watts_strogatz(n, 6, 0.2, rng)
    if name == "erdos_renyi":
        return gen.erdos_renyi(n, 4.0, rng)
    codes = pd.factorize(groups(n)["group"])[0].astype(np.int64)
    return gen.sbm(codes, 6.0, 0.7, rng)


@pytest.mark.parametrize("n", [500, 20_001])  # the old networkx switch sat at 20,000 agents
@pytest.mark.parametrize("name", sorted(RANDOM_GENERATORS))
def test_one_generator_at_every_size(name: str, n: int) -> None:
    graph = build(RANDOM_GENERATORS[name], n, seed=5)
    src, dst = direct(name, n, seed=5)
    np.testing.assert_array_equal(graph.src, src)
    np.testing.assert_array_equal(graph.dst, dst)


# ------------------------------------------------------------------------ Barabási–Albert


def test_barabasi_albert_newer_follows_older_about_m_each() -> None:
    n, m = 5000, 4
    graph = build({"generator": "barabasi_albert", "m": m}, n)
    assert np.all(graph.src > graph.dst)  # newer agent follows older agent
    out = graph.out_degree()
    # Seed clique: agent j follows all i < j; afterwards exactly m (minus rare repeats).
    np.testing.assert_array_equal(out[: m + 1], np.arange(m + 1))
    assert out[m + 1 :].max() == m
    assert out[m + 1 :].mean() > m - 0.05


def test_barabasi_albert_in_degree_heavy_tail() -> None:
    graph = build({"generator": "barabasi_albert", "m": 5}, 100_000)
    indeg = graph.in_degree()
    assert abs(graph.num_edges / graph.n - 5) < 0.01
    assert indeg.max() > 50 * indeg.mean()
    # Preferential attachment: early agents are the popular ones.
    assert indeg[:100].mean() > 20 * indeg[50_000:].mean()


def test_barabasi_albert_degrees_match_networkx() -> None:
    """Undirected degrees: same mean, same power-law tail as networkx.barabasi_albert_graph."""
    n, m = 20_000, 3
    ours = np.concatenate([undirected_degrees(n, *gen.barabasi_albert(n, m, np.random.default_rng(s)))
                           for s in SEEDS])
    ref = np.concatenate([
        degrees(nx.barabasi_albert_graph(n, m, seed=s, initial_graph=nx.complete_graph(m + 1)))
        for s in SEEDS
    ])
    # networkx adds exactly m edges per agent; repeats dropped here cost well under 1%.
    assert ref.mean() - 0.03 < ours.mean() <= ref.mean()
    assert ours.min() >= 1
    # Tail exponent (theory: 3; ~2.9 at this size); uniform attachment would give far more.
    kmin = 4 * m
    assert abs(hill_exponent(ours, kmin) - hill_exponent(ref, kmin)) < 0.1
    assert 2.6 < hill_exponent(ours, kmin) < 3.2
    for k in (2 * m, 5 * m, 10 * m):  # share of hubs at each degree threshold
        assert abs((ours >= k).mean() / (ref >= k).mean() - 1) < 0.15, k


def test_barabasi_albert_needs_m_below_n() -> None:
    with pytest.raises(NetworkError, match=r"m < n.*m=5, n=5"):
        build({"generator": "barabasi_albert", "m": 5}, 5)


# ------------------------------------------------------------------------- Watts–Strogatz


def test_watts_strogatz_edges_in_both_directions() -> None:
    n, k = 4000, 8
    graph = build({"generator": "watts_strogatz", "k": k, "p": 0.3}, n)
    assert graph.num_edges == n * k
    assert graph.reciprocity() == 1.0
    ring = np.minimum((graph.dst - graph.src) % n, (graph.src - graph.dst) % n) <= k // 2
    assert 0.25 < 1 - ring.mean() < 0.35  # about p of the edges were rewired


def test_watts_strogatz_without_rewiring_is_the_ring_lattice() -> None:
    n = 50
    graph = build({"generator": "watts_strogatz", "k": 4, "p": 0.0}, n)
    np.testing.assert_array_equal(graph.out_degree(), np.full(n, 4))
    assert set(((graph.dst - graph.src) % n).tolist()) == {1, 2, n - 2, n - 1}


@pytest.mark.parametrize(("n", "edges"), [(11, 110), (16, 160)])
def test_watts_strogatz_dense_keeps_edge_count(n: int, edges: int) -> None:
    # n=11: the k=10 lattice is complete, nothing to rewire; n=16: many redraw conflicts.
    graph = build({"generator": "watts_strogatz", "k": 10, "p": 0.9}, n)
    assert_canonical(graph)
    assert graph.num_edges == edges


@pytest.mark.parametrize("p", [0.05, 0.2, 0.6])
def test_watts_strogatz_clustering_paths_and_degrees_match_networkx(p: float) -> None:
    """Clustering, path lengths and degree spread agree with networkx.watts_strogatz_graph."""
    n, k = 2000, 8
    ours = [undirected(n, *gen.watts_strogatz(n, k, p, np.random.default_rng(s))) for s in SEEDS]
    ref = [nx.watts_strogatz_graph(n, k, p, seed=s) for s in SEEDS]
    assert all(g.number_of_edges() == n * k // 2 for g in ours)
    c_ours = np.mean([nx.average_clustering(g) for g in ours])
    c_ref = np.mean([nx.average_clustering(g) for g in ref])
    # Theory: C(p) ~ C(0) (1-p)^3 with C(0) = 3(k-2) / (4(k-1)); rewiring is what lowers it.
    c_theory = 3 * (k - 2) / (4 * (k - 1)) * (1 - p) ** 3
    assert abs(c_ours - c_ref) < 0.015
    assert abs(c_ours - c_theory) < 0.03

    def mean_distance(graph: nx.Graph) -> float:
        # BFS from a fixed sample of sources: exact all-pairs would cost O(n * E).
        lengths = [nx.single_source_shortest_path_length(graph, source) for source in range(0, n, 50)]
        return float(np.mean([d for length in lengths for d in length.values() if d]))

    l_ours = np.mean([mean_distance(g) for g in ours])
    l_ref = np.mean([mean_distance(g) for g in ref])
    assert abs(l_ours / l_ref - 1) < 0.03
    assert l_ours < 0.2 * n / (2 * k)  # small world: far below the ring lattice's ~n / (2k)
    d_ours = np.concatenate([degrees(g) for g in ours])
    d_ref = np.concatenate([degrees(g) for g in ref])
    assert abs(d_ours.std() / d_ref.std() - 1) < 0.08
    assert same_distribution(d_ours, d_ref)


def test_watts_strogatz_validation() -> None:
    with pytest.raises(ValidationError, match="even"):
        parse_network_config({"generator": "watts_strogatz", "k": 5})
    with pytest.raises(NetworkError, match="k < n"):
        build({"generator": "watts_strogatz", "k": 10}, 10)


# --------------------------------------------------------------------------- Erdős–Rényi


def test_erdos_renyi_mean_degree() -> None:
    n = 20_000
    graph = build({"generator": "erdos_renyi", "mean_degree": 5.0}, n)
    assert abs(graph.num_edges / n - 5.0) < 0.05  # sd of the mean is ~0.016
    assert graph.reciprocity() < 0.01


def test_erdos_renyi_saturates_at_complete_digraph() -> None:
    graph = build({"generator": "erdos_renyi", "mean_degree": 50.0}, 20)
    assert graph.num_edges == 20 * 19


@pytest.mark.slow
@pytest.mark.parametrize("mean_degree", [0.5, 6.0, 80.0])  # sparse, typical, dense sampler
def test_erdos_renyi_degrees_match_networkx(mean_degree: float) -> None:
    """Out- and in-degree distributions agree with networkx's directed G(n, p)."""
    n = 3000
    p = mean_degree / (n - 1)
    ours = [gen.erdos_renyi(n, mean_degree, np.random.default_rng(s)) for s in SEEDS]
    ref = [nx.fast_gnp_random_graph(n, p, seed=s, directed=True) for s in SEEDS]
    for kind, column in (("out_degree", 0), ("in_degree", 1)):
        d_ours = np.concatenate([np.bincount(edges[column], minlength=n) for edges in ours])
        d_ref = np.concatenate([degrees(g, kind) for g in ref])
        # Binomial(n-1, p) degrees: mean and variance both ~ mean_degree.
        sd_of_mean = np.sqrt(mean_degree / d_ours.size)
        assert abs(d_ours.mean() - d_ref.mean()) < 6 * sd_of_mean, kind
        assert abs(d_ours.var() / d_ref.var() - 1) < 0.1, kind
        assert same_distribution(d_ours, d_ref), kind
    # Independent pairs: reciprocated edges only by chance, a share p of the edges.
    recip = np.mean([FollowGraph(n, *edges).reciprocity() for edges in ours])
    assert abs(recip - p) < 3 * np.sqrt(p / (mean_degree * n * len(SEEDS))) + 1e-3


# ------------------------------------------------------------------------------------ SBM


@pytest.mark.parametrize("n", [50_000, 5_000])
@pytest.mark.parametrize("homophily", [0.8, 0.3])
def test_sbm_homophily_share(n: int, homophily: float) -> None:
    attributes = groups(n, k=5)
    graph = build({"generator": "sbm", "attribute": "group", "mean_degree": 10,
                   "homophily": homophily}, n, attributes=attributes)
    g = attributes["group"].to_numpy()
    assert abs(np.mean(g[graph.src] == g[graph.dst]) - homophily) < 0.03
    assert abs(graph.num_edges / n - 10) < 0.2


def test_sbm_singleton_group_links_outside_and_missing_values_form_a_group() -> None:
    values = np.array(["a"] * 199 + ["solo"], dtype=object)
    values[:50] = None  # missing values are one more group
    attributes = pd.DataFrame({"group": values})
    graph = build({"generator": "sbm", "attribute": "group", "mean_degree": 5, "homophily": 1.0},
                  200, attributes=attributes)
    solo = graph.src == 199
    assert solo.sum() > 0
    assert np.all(graph.dst[solo] != 199)
    missing = graph.src < 50
    assert np.all(graph.dst[missing] < 50)  # homophily 1: missing-value agents stay together


@pytest.mark.slow
def test_sbm_block_counts_and_degrees_match_networkx() -> None:
    """Edges per (follower group, followee group) agree with networkx.stochastic_block_model."""
    sizes = [400, 800, 1200, 1600]  # unequal groups: out-group targets scale with group size
    n, mean_degree, homophily = sum(sizes), 8.0, 0.7
    codes = np.repeat(np.arange(len(sizes)), sizes)
    # The block probabilities that give each follower homophily * mean_degree expected edges
    # inside its group and the rest spread uniformly over everybody outside it.
    probs = [[homophily * mean_degree / (sizes[a] - 1) if a == b
              else (1 - homophily) * mean_degree / (n - sizes[a]) for b in range(len(sizes))]
             for a in range(len(sizes))]
    ours = np.zeros((len(sizes), len(sizes)))
    ref = np.zeros_like(ours)
    d_ours, d_ref = [], []
    for s in SEEDS:
        src, dst = gen.sbm(codes, mean_degree, homophily, np.random.default_rng(s))
        np.add.at(ours, (codes[src], codes[dst]), 1)
        d_ours.append(np.bincount(src, minlength=n))
        e = np.array(nx.stochastic_block_model(sizes, probs, seed=s, directed=True).edges())
        np.add.at(ref, (codes[e[:, 0]], codes[e[:, 1]]), 1)
        d_ref.append(np.bincount(e[:, 0], minlength=n))
    # Counts are ~Poisson: the difference of two has variance ours + ref.
    z = np.abs(ours - ref) / np.sqrt(ours + ref)
    assert z.max() < 4, np.round(z, 2)
    # Out-degrees: Poisson here, Binomial in networkx; at these sizes the same to a few percent.
    assert same_distribution(np.concatenate(d_ours), np.concatenate(d_ref))


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


def test_mutual_share() -> None:
    n, mutual = 20_000, 0.3
    base = {"generator": "erdos_renyi", "mean_degree": 5.0}
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


@pytest.mark.parametrize("value", ["auto", "networkx", "vectorised", "gpu"])
@pytest.mark.parametrize(
    "data",
    [{"generator": "erdos_renyi", "mean_degree": 2}, {"generator": "edge_list", "path": "e.csv"},
     {"generator": "none"}],
    ids=lambda data: data["generator"],
)
def test_removed_implementation_key_is_explained(data: dict[str, Any], value: str) -> None:
    with pytest.raises(ValidationError, match=r"`implementation` key was removed.*vectorised"):
        parse_network_config({**data, "implementation": value})


def test_removed_implementation_key_in_an_experiment_file(tmp_path: Path) -> None:
    """``populace validate``/``run`` name the network block and say what to do."""
    path = tmp_path / "old.yaml"
    path.write_text(
        "name: old\nsteps: 2\nscenario: {type: social}\npopulation: {size: 50}\n"
        "network:\n  generator: barabasi_albert\n  m: 3\n  implementation: networkx\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    message = str(caught.value)
    assert "1 problem" in message
    assert "old.yaml:5:" in message  # line 5 holds the network block
    assert "network: the `implementation` key was removed" in message
    assert "delete `implementation`" in message
    # Without the key the same file is a valid experiment.
    path.write_text(path.read_text(encoding="utf-8").replace("  implementation: networkx\n", ""),
                    encoding="utf-8")
    assert load_experiment(path).config.network.generator == "barabasi_albert"


def test_config_defaults() -> None:
    cfg = parse_network_config({"generator": "barabasi_albert"})
    assert isinstance(cfg, BarabasiAlbertConfig)
    assert (cfg.m, cfg.mutual) == (5, 0.0)
    assert "implementation" not in type(cfg).model_fields
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
