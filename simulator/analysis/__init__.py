"""From runs to figures with error bars: tidy tables, summaries with confidence intervals,
and plots saved to files.

Core objects:
    compare_runs: the per-step metrics of several runs, or of conditions of replicate runs, as
        one tidy DataFrame (``label``, run, ``seed``, ``step``, one column per metric).
    summarize: mean, sd, sem and a Student-t confidence interval per group of a tidy frame.
    summarize_metrics, summarize_sweep: those summaries for runs compared by label, and for a
        sweep's tidy table (``populace.storage.open_sweep``) by its parameters.
    plot_metric, plot_metrics: metric time series, a mean line and a confidence band per
        condition.
    agent_values, plot_distribution: attributes and state variables of the agents at chosen
        steps, and their histograms.
    network_snapshot, plot_network: a sampled subgraph of the run's network at a step, coloured
        by an attribute or state variable.
    save_figure: write a figure as PNG, SVG or PDF.

Plots draw on ``matplotlib.figure.Figure`` objects and never call pyplot: no display is needed
and nothing is shown; each returns its axes or figure. Scenario packages add their own
helpers in their ``analysis`` modules (cascades, market welfare and concentration).

Needs the ``analysis`` extra (matplotlib and scipy): ``pip install 'populace[analysis]'``.
"""

from __future__ import annotations

try:
    import matplotlib  # noqa: F401
    import scipy  # noqa: F401
except ImportError as exc:  # a clear way out instead of a bare "No module named"
    raise ImportError(
        f"populace.simulator.analysis needs matplotlib and scipy ({exc.name} is missing): "
        "pip install 'populace[analysis]'") from exc

from .distributions import agent_values, plot_distribution
from .figures import new_axes, new_grid, save_figure
from .network import network_snapshot, plot_network
from .runs import compare_runs, summarize_metrics, summarize_sweep
from .stats import summarize
from .timeseries import plot_metric, plot_metrics

__all__ = [
    "agent_values",
    "compare_runs",
    "network_snapshot",
    "new_axes",
    "new_grid",
    "plot_distribution",
    "plot_metric",
    "plot_metrics",
    "plot_network",
    "save_figure",
    "summarize",
    "summarize_metrics",
    "summarize_sweep",
]
