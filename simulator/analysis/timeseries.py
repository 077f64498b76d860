"""Metric time series across seeds and conditions: a mean line and a confidence band each.

Core objects:
    plot_metric: one metric of a tidy run table (``compare_runs``, ``open_sweep``) over steps,
        one line per condition (the mean across its runs) with a band for the confidence
        interval of that mean, computed by ``summarize``.
    plot_metrics: several metrics, one panel each, in one figure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .figures import condition_labels, new_axes, new_grid
from .runs import run_keys
from .stats import summarize

CONDITION = "condition"


def conditions_of(frame: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    """The columns naming a condition: ``by``, else ``label`` (``compare_runs``), else the
    sweep's parameters (``open_sweep``), else none (every run pooled)."""
    if by is not None:
        keys = [by] if isinstance(by, str) else list(by)
    elif "label" in frame.columns:
        keys = ["label"]
    else:
        keys = list(frame.attrs.get("parameters", []))
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))} in the frame (it has "
                         f"{', '.join(map(str, frame.columns))})")
    return keys


def _ordered_conditions(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    """Condition labels, sorted by the values of ``keys`` (numbers as numbers), else in the
    order they first appear."""
    combos = frame[keys].drop_duplicates() if keys else frame.iloc[:1, :0]
    if keys:
        with contextlib.suppress(TypeError):  # mixed types in a column: keep the frame's order
            combos = combos.sort_values(keys)
    return list(dict.fromkeys(condition_labels(combos, keys)))


def plot_metric(frame: pd.DataFrame, metric: str, *, by: str | Sequence[str] | None = None,
                ax: Axes | None = None, confidence: float = 0.95, runs: bool = False,
                title: str | None = None) -> Axes:
    """Plot ``metric`` over steps: per condition, the mean across its runs and a band for the
    Student-t confidence interval of the mean.

    Args:
        frame: one row per run and step (``compare_runs`` or ``open_sweep``).
        metric: the metric column.
        by: the columns naming a condition (default: ``label``, else the sweep's parameters).
        ax: axes to draw on (default: a new figure's).
        confidence: the level of the bands (a condition with one run gets no band).
        runs: also draw each run, thin and faint, in its condition's colour.
        title: the axes' title (default: the metric's name).

    Returns:
        The axes: one line per condition (``ax.lines``; the per-run lines follow them when
        ``runs``) and one band per condition with at least two runs (``ax.collections``).
        Save it with ``save_figure(ax, "fig.png")``.

    Raises:
        ValueError: no such metric or condition column (named), or no values to plot.
    """
    if metric not in frame.columns:
        known = frame.attrs.get("metrics") or [c for c in frame.columns if c != "step"]
        raise ValueError(f"no metric {metric!r} in the frame (it has {', '.join(known)})")
    keys = conditions_of(frame, by)
    ids = run_keys(frame)
    data = frame[list(dict.fromkeys([*keys, *ids, "step", metric]))].dropna(subset=[metric])
    if data.empty:
        raise ValueError(f"metric {metric!r} has no values to plot")
    data = data.assign(**{CONDITION: condition_labels(data, keys)})
    summary = summarize(data, [CONDITION, "step"], metric, confidence)
    ax = new_axes(ax)
    order = _ordered_conditions(data, keys)
    for i, name in enumerate(order):
        color = f"C{i % 10}"
        rows = summary[summary[CONDITION] == name].sort_values("step")
        n_runs = data.loc[data[CONDITION] == name, ids].drop_duplicates().shape[0]
        ax.plot(rows["step"], rows["mean"], color=color, linewidth=1.8,
                label=f"{name} (n={n_runs})" if keys else f"n={n_runs}")
        if (rows["n"] > 1).any():
            ax.fill_between(rows["step"].to_numpy(), rows["ci_low"].to_numpy(dtype=float),
                            rows["ci_high"].to_numpy(dtype=float), color=color, alpha=0.2,
                            linewidth=0)
    if runs:  # after the means, so that ax.lines[:conditions] are the means
        for i, name in enumerate(order):
            mine = data[data[CONDITION] == name]
            for _, one in mine.groupby(ids, sort=False, observed=True):
                ax.plot(one["step"], one[metric], color=f"C{i % 10}", alpha=0.3,
                        linewidth=0.7)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title if title is not None else metric)
    if len(order) > 1 or keys:
        ax.legend(fontsize="small", title=f"mean, {confidence:.0%} CI", title_fontsize="small")
    return ax


def plot_metrics(frame: pd.DataFrame, metrics: Sequence[str], *,
                 by: str | Sequence[str] | None = None, ncols: int = 2,
                 confidence: float = 0.95, runs: bool = False) -> Figure:
    """``plot_metric`` for each of ``metrics``, one panel each, rows of ``ncols`` panels; the
    legend is drawn on the first panel only.

    Returns:
        The figure (``fig.axes``: one axes per metric, in order).
    """
    if not metrics:
        raise ValueError("plot_metrics needs at least one metric")
    fig, axes = new_grid(len(metrics), ncols)
    for i, (metric, ax) in enumerate(zip(metrics, axes, strict=True)):
        plot_metric(frame, metric, by=by, ax=ax, confidence=confidence, runs=runs)
        if i and ax.get_legend() is not None:
            ax.get_legend().remove()
    return fig

