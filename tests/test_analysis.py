"""The analysis helpers: summaries with confidence intervals against hand computations, the
sweep summary on a hand-made tidy table, plots that write files with the expected lines and
bands, attribute distributions and network snapshots of real runs, cascade statistics of a
hand-built repost tree, and market welfare and concentration against known values and against
what the runs' own metrics recorded.

The runs are real example experiments (echo chambers and the market quick start), shrunk to a
few hundred agents and 12 steps, run once per module into a temporary SQLite file.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from populace.scenarios.market import analysis as market_analysis
from populace.scenarios.market.analysis import (
    concentration,
    need_outcomes,
    plot_concentration,
    welfare,
)
from populace.scenarios.social.analysis import (
    cascade_distribution,
    cascade_stats,
    plot_cascades,
)
from populace.simulator import Simulation, load_experiment
from populace.simulator.analysis import (
    agent_values,
    compare_runs,
    network_snapshot,
    plot_distribution,
    plot_metric,
    plot_metrics,
    plot_network,
    save_figure,
    summarize,
    summarize_metrics,
    summarize_sweep,
)
from populace.storage import Run

ROOT = Path(__file__).resolve().parents[1]
ECHO = ROOT / "scenarios" / "social" / "examples" / "echo_chamber.yaml"
MARKET = ROOT / "scenarios" / "market" / "examples" / "quickstart.yaml"
SMALL_SOCIAL = {"population.size": 300, "steps": 12, "recording.agent_state_every": 4,
                "checkpoint_every": 12}
CONTROL = {"policy.params.backfire": 0, "scenario.feed.algorithm": "random"}
T_975_3 = 3.182446305284263  # Student t quantile 0.975 with 3 degrees of freedom (tables)
PNG = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def social_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Run]]:
    """Echo chamber and its control, two seeds each, in one database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('social') / 'social.sqlite'}"
    out: dict[str, list[Run]] = {"echo": [], "control": []}
    for label, extra in (("echo", {}), ("control", CONTROL)):
        for seed in (1, 2):
            exp = load_experiment(ECHO, overrides={**SMALL_SOCIAL, **extra, "seed": seed})
            out[label].append(Simulation(exp, db_url=url).run())
    return out


@pytest.fixture(scope="module")
def market_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    url = f"sqlite:///{tmp_path_factory.mktemp('market') / 'market.sqlite'}"
    exp = load_experiment(MARKET, overrides={"population.size": 200, "steps": 12,
                                             "scenario.businesses": 10})
    return Simulation(exp, db_url=url).run()


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5000, path


# --------------------------------------------------------------------------- summaries


def test_summarize_gives_the_student_t_interval_of_a_hand_computation() -> None:
    frame = pd.DataFrame({"g": ["a"] * 4 + ["b"], "x": [1.0, 2.0, 3.0, 4.0, 7.0]})
    out = summarize(frame, "g", "x").set_index("g")
    a = out.loc["a"]
    std = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # sample sd of 1..4
    sem = std / 2
    assert (a["n"], a["mean"]) == (4, 2.5)
    assert a["std"] == pytest.approx(std) and a["sem"] == pytest.approx(sem)
    assert a["ci_low"] == pytest.approx(2.5 - T_975_3 * sem)
    assert a["ci_high"] == pytest.approx(2.5 + T_975_3 * sem)
    # one replicate: a mean, but no interval
    b = out.loc["b"]
    assert b["n"] == 1 and b["mean"] == 7 and math.isnan(b["ci_low"]) and math.isnan(b["std"])
    # a wider level gives a wider interval; NaNs are not replicates
    frame.loc[len(frame)] = ["a", np.nan]
    wide = summarize(frame, "g", "x", confidence=0.99).set_index("g").loc["a"]
    assert wide["n"] == 4 and wide["ci_high"] - wide["ci_low"] > a["ci_high"] - a["ci_low"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        summarize(frame, "g", "x", confidence=95)
    with pytest.raises(ValueError, match="no column 'y'"):
        summarize(frame, "g", "y")


def sweep_frame() -> pd.DataFrame:
    """A sweep's tidy table by hand: backfire 0 and 0.1 x seeds 1-3, steps 0-2; the run of
    (backfire 0.1, seed 3) is still going and has committed steps 0 and 1 only."""
    rows = []
    run_id = 0
    for point, backfire in enumerate((0.0, 0.1)):
        for seed in (1, 2, 3):
            run_id += 1
            last = 1 if (backfire, seed) == (0.1, 3) else 2
            for step in range(last + 1):
                rows.append({"run_id": run_id, "run": f"sweep-{point}-{seed}",
                             "status": "running" if last == 1 else "completed",
                             "point": point, "seed": seed, "policy.params.backfire": backfire,
                             "step": step,
                             "polarization": 10 * point + seed + step,
                             "opinion_var": float(seed)})
    frame = pd.DataFrame(rows)
    frame.attrs.update(parameters=["policy.params.backfire"],
                       metrics=["polarization", "opinion_var"])
    return frame


def test_summarize_sweep_groups_by_the_parameters_at_each_runs_last_step() -> None:
    frame = sweep_frame()
    out = summarize_sweep(frame).set_index(["policy.params.backfire", "metric"])
    # backfire 0: last steps (2) give 1+2, 2+2, 3+2
    zero = out.loc[(0.0, "polarization")]
    assert (zero["n"], zero["mean"]) == (3, 4.0)
    assert zero["ci_high"] - zero["mean"] == pytest.approx(
        4.303 * 1.0 / math.sqrt(3), rel=1e-3)  # t(0.975, 2) = 4.303, sd 1
    # backfire 0.1: seeds 1 and 2 end at step 2 (13, 14), seed 3 at step 1 (14)
    tenth = out.loc[(0.1, "polarization")]
    assert (tenth["n"], tenth["mean"]) == (3, pytest.approx(41 / 3))
    assert out.loc[(0.1, "opinion_var"), "mean"] == 2.0
    # one step, and every step (step becomes a grouping column)
    at1 = summarize_sweep(frame, ["polarization"], step=1).set_index("policy.params.backfire")
    assert at1.loc[0.0, "mean"] == 3.0 and at1.loc[0.1, "mean"] == 13.0
    every = summarize_sweep(frame, ["polarization"], step=None)
    assert len(every) == 6 and every.set_index(["policy.params.backfire", "step"]).loc[
        (0.1, 2), "n"] == 2
    # pooling over the parameter, and the errors
    pooled = summarize_sweep(frame, ["opinion_var"], by=[])
    assert pooled["n"].tolist() == [6] and pooled["mean"].tolist() == [2.0]
    with pytest.raises(ValueError, match="no run recorded metrics at step 7"):
        summarize_sweep(frame, step=7)
    bare = frame.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match="open_sweep"):
        summarize_sweep(bare)


def test_summarize_sweep_groups_list_valued_parameters() -> None:
    frame = sweep_frame()
    frame["scenario.topics"] = [["a", "b"] if p == 0 else ["c"] for p in frame["point"]]
    frame.attrs["parameters"] = ["policy.params.backfire", "scenario.topics"]
    out = summarize_sweep(frame, ["opinion_var"])
    assert sorted(out["scenario.topics"]) == ['["a", "b"]', '["c"]']


def test_compare_runs_gives_one_tidy_table_labelled_by_condition(
        social_runs: dict[str, list[Run]]) -> None:
    frame = compare_runs(social_runs)
    assert list(frame.columns[:6]) == ["label", "run_id", "run", "seed", "database", "step"]
    assert "polarization" in frame.attrs["metrics"]
    assert frame.groupby("label")["run_id"].nunique().to_dict() == {"control": 2, "echo": 2}
    assert len(frame) == 4 * 13  # steps 0..12 of four runs
    # the last-step summary is the mean and t interval of the runs' own last values
    out = summarize_metrics(frame, metrics=["polarization"]).set_index("label")
    last = [r.metrics()["polarization"].iloc[-1] for r in social_runs["echo"]]
    half = 12.706204736 * np.std(last, ddof=1) / math.sqrt(2)  # t(0.975, 1)
    assert out.loc["echo", "mean"] == pytest.approx(np.mean(last))
    assert out.loc["echo", "ci_high"] == pytest.approx(np.mean(last) + half)
    # a plain list: each run its own condition; a metric that does not exist is named
    single = compare_runs(social_runs["echo"], metrics=["opinion_var"])
    assert single["label"].nunique() == 2 and single.attrs["metrics"] == ["opinion_var"]
    with pytest.raises(ValueError, match="no run recorded 'welfare'"):
        compare_runs(social_runs["echo"], metrics=["welfare"])


# --------------------------------------------------------------------------- plots


def test_plot_metric_draws_a_mean_line_and_a_band_per_condition(
        social_runs: dict[str, list[Run]], tmp_path: Path) -> None:
    frame = compare_runs(social_runs)
    ax = plot_metric(frame, "polarization")
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["control (n=2)", "echo (n=2)"]
    # the band is the summary's interval, the line its mean
    summary = summarize_metrics(frame, metrics=["polarization"], step=None)
    echo = summary[summary["label"] == "echo"].sort_values("step")
    np.testing.assert_allclose(ax.lines[1].get_ydata(), echo["mean"])
    band = ax.collections[1].get_paths()[0].vertices
    assert band[:, 1].max() == pytest.approx(echo["ci_high"].max())
    assert_png(save_figure(ax, tmp_path / "figures" / "polarization.png"))
    # every run drawn too; one run per condition: lines but no bands
    assert len(plot_metric(frame, "polarization", runs=True).lines) == 2 + 4
    one = compare_runs({"echo": social_runs["echo"][0], "control": social_runs["control"][0]})
    ax = plot_metric(one, "polarization")
    assert len(ax.lines) == 2 and len(ax.collections) == 0
    with pytest.raises(ValueError, match="no metric 'nope'"):
        plot_metric(frame, "nope")


def test_plot_metric_takes_a_sweep_table_by_its_parameters(tmp_path: Path) -> None:
    ax = plot_metric(sweep_frame(), "polarization")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["backfire=0.0 (n=3)", "backfire=0.1 (n=3)"]
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    fig = plot_metrics(sweep_frame(), ["polarization", "opinion_var", "polarization"], ncols=2)
    visible = [a for a in fig.axes if a.get_visible()]
    assert len(visible) == 3 and sum(a.get_legend() is not None for a in visible) == 1
    for name in ("grid.svg", "grid.pdf"):
        path = save_figure(fig, tmp_path / name)
        assert path.stat().st_size > 1000
    assert (tmp_path / "grid.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        save_figure(fig, tmp_path / "grid.jpg")


def test_agent_values_reads_snapshots_and_attributes(social_runs: dict[str, list[Run]],
                                                     tmp_path: Path) -> None:
    run = social_runs["echo"][0]
    states = run.agent_states("opinion")
    values = agent_values(run, "opinion", [0, 12], by="camp")
    assert values.attrs == {"name": "opinion", "source": "state"}
    assert sorted(values["step"].unique()) == [0, 12] and len(values) == 2 * 300
    at12 = values[values["step"] == 12].set_index("agent_id")["value"]
    pd.testing.assert_series_equal(at12, states.loc[12].rename("value"), check_names=False,
                                   check_index_type=False)
    assert set(values["camp"]) == {"left", "right"}
    assert agent_values(run, "opinion", "last")["step"].unique().tolist() == [12]
    # the initial opinion attribute, when asked for, and a plain attribute
    initial = agent_values(run, "opinion", source="attribute")
    assert initial.attrs["source"] == "attribute" and (initial["step"] == 0).all()
    np.testing.assert_allclose(initial["value"], run.agents()["opinion"])
    interest = agent_values(run, "interest")
    with pytest.raises(ValueError, match="snapshot steps: 0, 4, 8, 12"):
        agent_values(run, "opinion", [5])
    with pytest.raises(ValueError, match="no agent attribute 'wealth'"):
        agent_values(run, "wealth")
    with pytest.raises(ValueError, match="leave steps out"):
        agent_values(run, "interest", [4])
    ax = plot_distribution(values)  # one histogram per step
    assert len(ax.patches) == 2
    ax = plot_distribution(values[values["step"] == 12], by="camp")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["camp left", "camp right"]
    ax = plot_distribution(interest)  # categories: one bar each
    assert len(ax.patches) == interest["value"].nunique()
    assert_png(save_figure(ax, tmp_path / "interest.png"))


def test_network_snapshot_is_the_follow_graph_at_a_step(social_runs: dict[str, list[Run]],
                                                        tmp_path: Path) -> None:
    run = social_runs["echo"][0]
    graph = network_snapshot(run, step=8, max_nodes=120, color="opinion", seed=3)
    assert graph.number_of_nodes() == 120 and graph.graph["sampled"]
    assert graph.graph["value_step"] == 8
    # the edges among the chosen agents are the follows whose ops sum to 1 by step 8
    follows = run.table("follows")
    ops = follows[follows["step"] <= 8].groupby(["follower_id", "followee_id"])["op"].sum()
    live = ops[ops > 0].reset_index()
    nodes = set(graph.nodes)
    inside = live[live["follower_id"].isin(nodes) & live["followee_id"].isin(nodes)]
    assert set(graph.edges) == set(zip(inside["follower_id"], inside["followee_id"],
                                       strict=True))
    assert (follows["op"] < 0).any() and (ops == 0).any()  # some follows were undone
    opinions = run.agent_states("opinion").loc[8]
    values = nx.get_node_attributes(graph, "value")
    assert all(values[n] == pytest.approx(opinions[n]) for n in nodes)
    # one agent's neighbourhood, coloured by a category
    around = network_snapshot(run, seeds=[5], hops=1, color="camp")
    assert 5 in around and set(around.nodes) - {5} == (
        set(nx.all_neighbors(around, 5)))
    ax = plot_network(around)
    assert ax.get_legend() is not None and len(ax.collections) == 2  # edges, nodes
    assert_png(save_figure(plot_network(graph), tmp_path / "network.png"))
    with pytest.raises(ValueError, match="steps 0 to 12"):
        network_snapshot(run, step=13)
    with pytest.raises(ValueError, match="no agent attribute or recorded state variable"):
        network_snapshot(run, color="wealth")


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The echo chamber's starting network, 400 agents with about 230 links each: a snapshot
    of a few dozen agents must choose among hundreds of neighbours."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dense') / 'dense.sqlite'}"
    exp = load_experiment(ECHO, overrides={"population.size": 400, "steps": 1,
                                           "network.mean_degree": 150, "checkpoint_every": 1})
    return Simulation(exp, db_url=url).run()


def test_network_snapshot_chooses_neighbours_at_random_among_all(dense_run: Run) -> None:
    follows = dense_run.table("follows")
    ops = follows.groupby(["follower_id", "followee_id"])["op"].sum()
    live = ops[ops > 0].reset_index()
    n = int(dense_run.info["n_agents"])
    seeds = list(range(n - 20, n))  # the last ids: their followers' edges sort before theirs
    touching = live["follower_id"].isin(seeds) | live["followee_id"].isin(seeds)
    linked = set(live.loc[touching, "follower_id"]) | set(live.loc[touching, "followee_id"])
    linked -= set(seeds)
    assert touching.sum() > 4000 and len(linked) > 300  # hundreds of candidates for 5 places
    chosen = []
    for seed in range(20):
        graph = network_snapshot(dense_run, seeds=seeds, max_nodes=25, seed=seed)
        new = set(graph.nodes) - set(seeds)
        assert len(new) == 5 and new <= linked and graph.graph["sampled"]
        chosen += sorted(new)
    again = network_snapshot(dense_run, seeds=seeds, max_nodes=25, seed=19)
    assert set(again.nodes) == set(graph.nodes)  # the seed decides
    # a uniform choice among all the candidates: about half above their median id (the
    # first edges in id order, what a LIMIT with ORDER BY keeps, had followers of low ids only)
    median = np.median(sorted(linked))
    above = sum(c > median for c in chosen)
    assert 30 <= above <= 70, above
    assert len(set(chosen)) >= 80  # and not the same few each time


def test_the_package_says_how_to_install_what_it_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("populace.simulator.analysis")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'populace\[analysis\]'"):
        importlib.import_module("populace.simulator.analysis")


# --------------------------------------------------------------------------- cascades


def hand_posts() -> pd.DataFrame:
    """Root 0 with reposts 1, 2 (of 0), 3 (of 1), 4 (of 3) and a comment 5 on it; root 6
    alone; root 7 reposted once (8), by the author of 7; a comment is never in a tree."""
    return pd.DataFrame({
        "post_id": range(9),
        "author_id": [10, 11, 12, 11, 13, 14, 15, 16, 16],
        "kind": ["post", "repost", "quote", "repost", "repost", "comment", "post", "post",
                 "repost"],
        "parent_id": [-1, 0, 0, 1, 3, 0, -1, -1, 7],
        "root_id": [0, 0, 0, 0, 0, 0, 6, 7, 7],
        "step": [1, 2, 2, 3, 4, 4, 4, 5, 6],
        "topic": ["politics"] * 9,
    })


def test_cascade_stats_of_a_hand_built_tree() -> None:
    stats = cascade_stats(hand_posts(), singletons=True).set_index("root_id")
    # tree 0-1, 0-2, 1-3, 3-4: distances of the 10 pairs sum to 20
    big = stats.loc[0]
    assert (big["size"], big["users"], big["depth"], big["max_breadth"]) == (5, 4, 3, 2)
    assert big["structural_virality"] == pytest.approx(20 / 10)
    assert (stats.loc[7, "size"], stats.loc[7, "users"]) == (2, 1)
    assert stats.loc[7, "structural_virality"] == 1.0
    alone = stats.loc[6]
    assert (alone["size"], alone["depth"], alone["max_breadth"]) == (1, 0, 1)
    assert math.isnan(alone["structural_virality"])
    assert list(cascade_stats(hand_posts())["root_id"]) == [0, 7]  # size >= 2, largest first
    # as the tree stood at step 3: 0-1, 0-2, 1-3 (pairs: 1+1+2+2+1+3 = 10 over 6)
    early = cascade_stats(hand_posts(), step=3).set_index("root_id").loc[0]
    assert (early["size"], early["depth"]) == (4, 2)
    assert early["structural_virality"] == pytest.approx(10 / 6)
    # whole cascades keep their measures when the ids are not 0..n-1
    only7 = cascade_stats(hand_posts()[hand_posts()["root_id"] == 7])
    assert only7["structural_virality"].tolist() == [1.0]
    with pytest.raises(ValueError, match="parent that is not in the posts"):
        cascade_stats(hand_posts().drop(index=1))
    # no parents recorded (reposts name only the original): sizes, but no tree measures
    flat = cascade_stats(hand_posts().drop(columns="parent_id")).set_index("root_id")
    assert flat.loc[0, "size"] == 5 and flat[["depth", "structural_virality"]].isna().all().all()


def test_structural_virality_is_the_wiener_index_of_random_trees() -> None:
    rng = np.random.default_rng(0)
    n = 60
    parent = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
    posts = pd.DataFrame({"post_id": range(n), "author_id": rng.integers(0, 20, n),
                          "kind": ["post"] + ["repost"] * (n - 1), "parent_id": parent,
                          "root_id": 0})
    tree = nx.Graph([(i, int(p)) for i, p in enumerate(parent) if p >= 0])
    expected = nx.wiener_index(tree) / (n * (n - 1) / 2)
    stats = cascade_stats(posts)
    assert stats["structural_virality"].iloc[0] == pytest.approx(expected)
    assert stats["depth"].iloc[0] == max(nx.shortest_path_length(tree, 0).values())


def test_cascade_stats_of_a_run_match_its_cascades_table(social_runs: dict[str, list[Run]],
                                                         tmp_path: Path) -> None:
    run = social_runs["echo"][0]
    stats = cascade_stats(run)
    table = run.table("cascades").sort_values(["scale", "root_id"], ascending=[False, True])
    assert len(stats) == len(table) > 0
    np.testing.assert_allclose(
        stats[["size", "depth", "max_breadth", "structural_virality"]].to_numpy(float),
        table[["scale", "depth", "max_breadth", "structural_virality"]].to_numpy(float))
    assert (stats["users"] <= stats["size"]).all()
    dist = cascade_distribution(stats)
    assert dist["count"].sum() == len(stats) and dist["ccdf"].iloc[0] == 1.0
    assert dist["ccdf"].is_monotonic_decreasing
    ax = plot_cascades(stats, label="seed 1")
    plot_cascades(cascade_stats(social_runs["echo"][1]), ax=ax, label="seed 2")
    assert len(ax.lines) == 2 and ax.get_xscale() == "log"
    assert_png(save_figure(ax, tmp_path / "cascades.png"))


# --------------------------------------------------------------------------- market


def test_concentration_of_known_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    # step 1: sellers 7, 8, 9 sell 50, 30, 20; step 2: seller 8 sells 100; step 3: nothing
    orders = pd.DataFrame({"step": [1, 1, 1, 2], "business_id": [7, 8, 9, 8],
                           "price": [5000, 3000, 2000, 10000]})
    out = concentration(orders, top=(1, 2), steps=3).set_index("step")
    assert math.isnan(out.loc[0, "hhi"]) and out.loc[0, "total"] == 0
    assert out.loc[1, "hhi"] == pytest.approx(0.5**2 + 0.3**2 + 0.2**2)
    assert (out.loc[1, "top1_share"], out.loc[1, "top2_share"]) == (
        pytest.approx(0.5), pytest.approx(0.8))
    # cumulative: 50, 130, 20 of 200
    assert out.loc[2, "hhi"] == pytest.approx(0.25**2 + 0.65**2 + 0.1**2)
    assert out.loc[3, "hhi"] == out.loc[2, "hhi"] and out.loc[3, "total"] == 200.0
    assert out.loc[2, "sellers"] == 3
    per_step = concentration(orders, cumulative=False, steps=3).set_index("step")
    assert per_step.loc[2, "hhi"] == 1.0 and math.isnan(per_step.loc[3, "hhi"])
    by_orders = concentration(orders, by="orders", steps=3).set_index("step")
    assert by_orders.loc[2, "hhi"] == pytest.approx(0.25**2 + 0.5**2 + 0.25**2)
    # blocks of steps give the same table as one block
    monkeypatch.setattr(market_analysis, "CELLS_PER_BLOCK", 3)
    pd.testing.assert_frame_equal(concentration(orders, top=(1, 2), steps=3).set_index("step"),
                                  out)
    with pytest.raises(ValueError, match="k >= 1"):
        concentration(orders, top=(0,))


def test_market_welfare_and_concentration_agree_with_the_runs_metrics(
        market_run: Run, social_runs: dict[str, list[Run]], tmp_path: Path) -> None:
    metrics = market_run.metrics()
    table = welfare(market_run)
    assert table["welfare_ratio"].iloc[-1] == metrics["welfare_ratio"].iloc[-1]
    np.testing.assert_allclose(table["welfare_loss"],
                               metrics["welfare_optimal"] - metrics["welfare"])
    needs = need_outcomes(market_run)
    assert needs["need_id"].is_unique
    counts = needs["status"].value_counts()
    assert counts["met"] == metrics["needs_met"].iloc[-1]
    assert counts["abandoned"] == metrics["needs_abandoned"].iloc[-1]
    ended = needs[needs["status"] != "open"]
    assert ended["utility"].fillna(0).sum() == pytest.approx(metrics["welfare"].iloc[-1])
    assert ended["optimal_utility"].sum() == pytest.approx(metrics["welfare_optimal"].iloc[-1])
    assert ended["welfare_loss"].sum() == pytest.approx(table["welfare_loss"].iloc[-1])
    # the cumulative revenue HHI is the run's own hhi metric, step by step
    conc = concentration(market_run).set_index("step")
    np.testing.assert_allclose(conc["hhi"].reindex(metrics.index), metrics["hhi"])
    assert (conc["top1_share"].dropna() <= conc["top3_share"].dropna()).all()
    # the market's network: customers -> sellers they paid, weighted by orders
    orders = market_run.table("market_orders")
    graph = network_snapshot(market_run, seeds=range(10))  # the 10 sellers
    pairs = orders.groupby(["customer_id", "business_id"]).size()
    assert {(a, b): w for a, b, w in graph.edges(data="weight")} == pairs.to_dict()
    ax = plot_concentration(conc.reset_index())
    assert len(ax.lines) == 3
    assert_png(save_figure(ax, tmp_path / "concentration.png"))
    with pytest.raises(ValueError, match="welfare needs a market run"):
        welfare(social_runs["echo"][0])
