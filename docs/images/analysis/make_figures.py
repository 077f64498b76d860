"""Make the figures of docs/analysis.md: echo chambers against their control over seeds, and
the market quick start's concentration of sales.

    .venv/bin/python docs/images/analysis/make_figures.py    # about half a minute

The runs go to a temporary SQLite file; the figures to this folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from populace.scenarios.market.analysis import concentration, plot_concentration
from populace.scenarios.social.analysis import cascade_stats, plot_cascades
from populace.simulator import Simulation, get_scenario, load_experiment
from populace.simulator.analysis import (
    agent_values,
    compare_runs,
    network_snapshot,
    plot_distribution,
    plot_metrics,
    plot_network,
    save_figure,
)

HERE = Path(__file__).resolve().parent
SEEDS = (1, 2, 3)
SIZE = {"population.size": 2000}
CONTROL = {"policy.params.backfire": 0, "scenario.feed.algorithm": "random"}


def main() -> None:
    echo_file = get_scenario("social").examples / "echo_chamber.yaml"
    market_file = get_scenario("market").examples / "quickstart.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'runs.sqlite'}"
        conditions = {"echo chamber": {}, "control": CONTROL}
        runs = {label: [Simulation(load_experiment(echo_file, overrides={
            **SIZE, **changes, "seed": seed}), db_url=url).run() for seed in SEEDS]
            for label, changes in conditions.items()}

        frame = compare_runs(runs)
        fig = plot_metrics(frame, ["polarization", "bimodality", "assortativity",
                                   "exposure_corr"], runs=True)
        save_figure(fig, HERE / "echo-vs-control.png")

        echo = runs["echo chamber"][0]
        ax = plot_distribution(agent_values(echo, "opinion", [0, 48]), bins=40,
                               title="opinions, echo chamber (seed 1)")
        save_figure(ax, HERE / "opinions.png")

        snapshot = network_snapshot(echo, step=48, max_nodes=600, color="opinion")
        save_figure(plot_network(snapshot, vmin=-1, vmax=1), HERE / "network.png")

        ax = None
        for label, members in runs.items():
            ax = plot_cascades(cascade_stats(members[0]), ax=ax, label=label)
        save_figure(ax, HERE / "cascades.png")

        market = Simulation(load_experiment(market_file), db_url=url).run()
        ax = plot_concentration(concentration(market, top=(1, 3, 5)),
                                title="market quick start: concentration of revenue")
        save_figure(ax, HERE / "market-concentration.png")


if __name__ == "__main__":
    main()
