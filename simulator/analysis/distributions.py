"""Distributions of agents' attributes and state variables at chosen steps.

Core objects:
    agent_values: one row per agent (and snapshot step) with the value of an attribute
        (``run.agents()``) or of a recorded state variable (``run.agent_states(name)``).
    plot_distribution: histograms (numbers) or bars of shares (categories) of those values,
        one per step or per group of agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from populace.storage import Run, StorageError

from .figures import new_axes

Source = Literal["auto", "state", "attribute"]


def agent_values(run: Run, name: str, steps: int | Sequence[int] | Literal["last"] | None = None,
                 *, by: str | None = None, source: Source = "auto") -> pd.DataFrame:
    """The values of one attribute or state variable over the agents, at chosen steps.

    Args:
        run: the run.
        name: a state variable the run snapshotted (``recording.agent_state_every``, e.g.
            ``opinion``), or an agent attribute (e.g. ``age``).
        steps: for a state variable, the snapshot steps to take (default: all of them;
            ``"last"``: the last one). Attributes do not change during a run: they come as
            step 0 and take no ``steps``.
        by: an attribute to add as a column, to compare groups of agents (e.g. ``camp``).
        source: ``"state"`` or ``"attribute"`` to choose where ``name`` is read; ``"auto"``
            takes the state variable when the run recorded one of that name (an initial
            ``opinion`` attribute and the ``opinion`` that changes share a name), else the
            attribute.

    Returns:
        Columns ``step``, ``agent_id``, ``value`` (and ``by``), one row per agent with a value
        at each step; ``frame.attrs["name"]`` and ``frame.attrs["source"]`` say what it holds.

    Raises:
        ValueError: ``name`` is neither (the message lists what the run has), a step that is
            not a snapshot step (the snapshot steps are listed), or ``steps`` for an attribute.
    """
    if source not in ("auto", "state", "attribute"):
        raise ValueError(f"source must be 'auto', 'state' or 'attribute', not {source!r}")
    agents: pd.DataFrame | None = None
    table: pd.DataFrame | None = None
    problem = ""
    if source in ("auto", "state"):
        try:
            table = run.agent_states(name)
        except StorageError as exc:
            problem = str(exc)
            if source == "state":
                raise ValueError(problem) from None
    if table is not None:
        frame = _snapshots(table, name, steps)
        kind = "state"
    else:
        agents = run.agents()
        if name not in agents.columns:
            raise ValueError(f"run {run.id} has no agent attribute {name!r} (attributes: "
                             f"{', '.join(map(str, agents.columns)) or 'none'})"
                             + (f"; and {problem}" if problem else ""))
        if steps is not None:
            raise ValueError(f"{name!r} is an agent attribute, which does not change during a "
                             "run: leave steps out (steps choose snapshots of state variables)"
                             + (f"; as a state variable: {problem}" if problem else ""))
        column = agents[name]
        frame = pd.DataFrame({"step": np.zeros(len(column), dtype=np.int64),
                              "agent_id": column.index.to_numpy(), "value": column.to_numpy()})
        frame = frame[column.notna().to_numpy()].reset_index(drop=True)
        kind = "attribute"
    if by is not None:
        agents = run.agents() if agents is None else agents
        if by not in agents.columns:
            raise ValueError(f"run {run.id} has no agent attribute {by!r} to group by "
                             f"(attributes: {', '.join(map(str, agents.columns))})")
        frame[by] = agents[by].reindex(frame["agent_id"].to_numpy()).to_numpy()
    frame.attrs.update(name=name, source=kind)
    return frame


def _snapshots(table: pd.DataFrame, name: str,
               steps: int | Sequence[int] | Literal["last"] | None) -> pd.DataFrame:
    """A (step x agent) snapshot table as long rows of the chosen steps."""
    recorded = [int(s) for s in table.index]
    if steps is None:
        chosen = recorded
    elif steps == "last":
        chosen = recorded[-1:]
    else:
        chosen = [int(steps)] if isinstance(steps, int | np.integer) else [int(s) for s in steps]
        absent = [s for s in chosen if s not in recorded]
        if absent:
            raise ValueError(f"{name!r} was not snapshotted at step "
                             f"{', '.join(map(str, absent))} (snapshot steps: "
                             f"{', '.join(map(str, recorded))})")
    sub = table.loc[chosen]
    values = sub.to_numpy(dtype=float)
    frame = pd.DataFrame({
        "step": np.repeat(np.asarray(chosen, dtype=np.int64), values.shape[1]),
        "agent_id": np.tile(sub.columns.to_numpy(dtype=np.int64), len(chosen)),
        "value": values.ravel(),
    })
    # an agent that had not joined yet at a step has no value there
    return frame[~np.isnan(frame["value"].to_numpy())].reset_index(drop=True)


def plot_distribution(values: pd.DataFrame, *, by: str | None = None, ax: Axes | None = None,
                      bins: int = 30, title: str | None = None) -> Axes:
    """The distribution of ``agent_values``, one histogram (or set of bars) per group.

    Args:
        values: ``agent_values``' frame (columns ``value`` and ``step``, maybe a group column).
        by: the column that splits the agents into groups (default: ``step`` when the frame
            holds several steps, else one group).
        ax: axes to draw on (default: a new figure's).
        bins: the number of histogram bins, shared by every group (numeric values).
        title: the axes' title (default: the value's name).

    Returns:
        The axes. Numbers: one outlined density histogram per group (``ax.patches``, one
        each). Categories (text, booleans): grouped bars of the share of agents in each
        category (``ax.patches``, one per group and category).
    """
    if values.empty:
        raise ValueError("no values to plot")
    if by is None and values["step"].nunique() > 1:
        by = "step"
    if by is not None and by not in values.columns:
        raise ValueError(f"no column {by!r} in the values (they have "
                         f"{', '.join(map(str, values.columns))})")
    name = values.attrs.get("name", "value")
    groups = ([(None, values)] if by is None
              else list(values.groupby(by, sort=True, dropna=False)))
    ax = new_axes(ax)
    numeric = (pd.api.types.is_numeric_dtype(values["value"])
               and not pd.api.types.is_bool_dtype(values["value"]))
    if numeric:
        data = values["value"].to_numpy(dtype=float)
        edges = np.histogram_bin_edges(data[np.isfinite(data)], bins=bins)
        for i, (key, rows) in enumerate(groups):
            ax.hist(rows["value"].to_numpy(dtype=float), bins=edges, density=True,
                    histtype="step", linewidth=1.6, color=f"C{i % 10}",
                    label=None if key is None else f"{by} {key}")
        ax.set_ylabel("density")
    else:
        categories = sorted(values["value"].astype(str).unique())
        x = np.arange(len(categories))
        width = 0.8 / len(groups)
        for i, (key, rows) in enumerate(groups):
            share = rows["value"].astype(str).value_counts(normalize=True)
            ax.bar(x - 0.4 + width * (i + 0.5), share.reindex(categories, fill_value=0.0),
                   width=width, color=f"C{i % 10}",
                   label=None if key is None else f"{by} {key}")
        ax.set_xticks(x, categories)
        ax.set_ylabel("share of agents")
    ax.set_xlabel(name)
    ax.set_title(title if title is not None else name)
    if by is not None:
        ax.legend(fontsize="small")
    return ax
