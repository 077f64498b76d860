"""Several runs as one tidy table, and their metrics summarised with confidence intervals.

Core objects:
    compare_runs: the per-step metrics of several runs (or of conditions, each a list of
        replicate runs) as one DataFrame with ``label``, run and ``step`` columns.
    summarize_metrics: mean, sd and a Student-t interval of metrics across the runs of each
        condition, at each run's last step, at one step, or at every step.
    summarize_sweep: the same for the tidy table of a sweep (``populace.storage.open_sweep``),
        grouped by its parameter columns.

Both tables have one row per run and step; ``frame.attrs["metrics"]`` names the metric columns
(and, for a sweep, ``frame.attrs["parameters"]`` the parameter columns).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from populace.storage import Run

from .stats import summarize

StepChoice = int | Literal["last"] | None
"""Which steps a summary takes: ``"last"`` (each run's last step), a step number, or None
(every step, which then becomes a grouping column)."""

RUN_COLUMNS = ("label", "run_id", "run", "seed", "database")
"""The identifying columns ``compare_runs`` puts before ``step``."""
SWEEP_COLUMNS = ("run_id", "run", "status", "point", "seed")
"""The identifying columns of a sweep's tidy table (``open_sweep``), before its parameters."""


def compare_runs(runs: Run | Sequence[Run] | Mapping[str, Run | Iterable[Run]],
                 metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-step metrics of several runs as one tidy DataFrame.

    Args:
        runs: runs to compare, each its own condition (labelled ``"name (run id)"``), or a
            mapping ``label -> run`` or ``label -> runs`` (replicates of one condition, e.g.
            seeds; their spread becomes the confidence band of ``plot_metric``).
        metrics: the metric columns to keep (default: every metric any run recorded).

    Returns:
        One row per run and recorded step: ``label``, ``run_id``, ``run`` (name), ``seed``,
        ``database`` (its URL, password hidden: runs of several databases may share an id),
        ``step``, then one column per metric (NaN where a run lacks it).
        ``frame.attrs["metrics"]`` lists the metric columns.

    Raises:
        ValueError: no runs, or a metric in ``metrics`` that no run recorded (the message
            lists the ones they did).
    """
    pairs = _labelled(runs)
    if not pairs:
        raise ValueError("compare_runs needs at least one run")
    parts = []
    for label, run in pairs:
        wide = run.metrics().reset_index()
        ids = pd.DataFrame({"label": label, "run_id": run.id, "run": run.info["name"],
                            "seed": run.info["seed"], "database": run.db.shown_url},
                           index=wide.index)
        parts.append(pd.concat([ids, wide], axis=1))
    frame = pd.concat(parts, ignore_index=True, sort=False)
    recorded = [c for c in frame.columns if c not in (*RUN_COLUMNS, "step")]
    if metrics is not None:
        missing = [m for m in metrics if m not in recorded]
        if missing:
            raise ValueError(f"no run recorded {', '.join(map(repr, missing))} (they recorded: "
                             f"{', '.join(sorted(recorded)) or 'no metrics'})")
        recorded = list(metrics)
    frame = frame[[*RUN_COLUMNS, "step", *recorded]]
    frame["step"] = frame["step"].astype("int64")
    # the same database URL on every row of a run: a category stores it once per database
    frame["database"] = frame["database"].astype("category")
    frame.attrs["metrics"] = list(recorded)
    return frame


def _labelled(runs: Run | Sequence[Run] | Mapping[str, Run | Iterable[Run]]
              ) -> list[tuple[str, Run]]:
    """(label, run) pairs from the forms ``compare_runs`` accepts."""
    if isinstance(runs, Run):
        runs = [runs]
    if isinstance(runs, Mapping):
        pairs = []
        for label, value in runs.items():
            members = [value] if isinstance(value, Run) else list(value)
            if not members:
                raise ValueError(f"condition {label!r} has no runs")
            pairs += [(str(label), run) for run in members]
        return pairs
    return [(f"{run.info['name']} (run {run.id})", run) for run in runs]


def summarize_metrics(frame: pd.DataFrame, by: str | Sequence[str] = "label",
                      metrics: Sequence[str] | None = None, step: StepChoice = "last",
                      confidence: float = 0.95) -> pd.DataFrame:
    """Metrics summarised across the runs of each condition, with confidence intervals.

    Args:
        frame: one row per run and step (``compare_runs``, ``open_sweep``).
        by: the columns that name a condition (``label`` for ``compare_runs``; the parameter
            columns for a sweep); [] pools every run.
        metrics: the metrics to summarise (default ``frame.attrs["metrics"]``, else every
            numeric column that is not an identifier).
        step: ``"last"``: each run's last recorded step; an int: that step; None: every step
            (``step`` is then a grouping column, for curves with error bands).
        confidence: the level of the interval.

    Returns:
        ``summarize``'s long table: the ``by`` columns (and ``step`` when ``step`` is None),
        ``metric``, ``n`` (runs with a value), ``mean``, ``std``, ``sem``, ``ci_low``,
        ``ci_high`` (NaN when n < 2).

    Raises:
        ValueError: a missing column, a step no run recorded, or no metric to summarise.
    """
    keys = [by] if isinstance(by, str) else list(by)
    names = list(metrics) if metrics is not None else metric_columns(frame, keys)
    if not names:
        raise ValueError("no metric columns to summarise: pass metrics=[...]")
    missing = [c for c in [*keys, "step"] if c not in frame.columns]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))} in the frame (it has "
                         f"{', '.join(map(str, frame.columns))})")
    rows = select_step(frame, step)
    rows = _hashable(rows, keys)
    return summarize(rows, [*keys, "step"] if step is None else keys, names, confidence)


def summarize_sweep(frame: pd.DataFrame, metrics: Sequence[str] | None = None,
                    step: StepChoice = "last", confidence: float = 0.95, *,
                    by: Sequence[str] | None = None) -> pd.DataFrame:
    """A sweep's metrics summarised over seeds, per parameter combination.

    Args:
        frame: the sweep's tidy table (``populace.storage.open_sweep``): one row per run and
            step, with ``run_id``, ``step``, the parameter columns (named in
            ``frame.attrs["parameters"]``) and the metric columns (``frame.attrs["metrics"]``).
        metrics: the metrics to summarise (default: all of ``frame.attrs["metrics"]``).
        step: ``"last"`` (each run's last step), a step number, or None (every step).
        confidence: the level of the interval.
        by: the grouping columns, when not the frame's parameters (e.g. one parameter only, to
            pool over the others).

    Returns:
        One row per parameter combination (and step, for ``step=None``) and metric: the
        parameter columns, ``metric``, ``n`` (seeds with a value), ``mean``, ``std``, ``sem``,
        ``ci_low``, ``ci_high``.

    Raises:
        ValueError: the frame names no parameters and ``by`` is not given, or as
            ``summarize_metrics``.
    """
    if by is None:
        if "parameters" not in frame.attrs:
            raise ValueError("the frame has no attrs['parameters']: pass the table of "
                             "populace.storage.open_sweep, or by=[parameter columns]")
        by = list(frame.attrs["parameters"])
    return summarize_metrics(frame, by, metrics, step, confidence)


def metric_columns(frame: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """The metric columns of a tidy run table: ``attrs["metrics"]``, else its numeric columns
    other than identifiers, parameters, ``step`` and ``exclude``."""
    if "metrics" in frame.attrs:
        return [m for m in frame.attrs["metrics"] if m in frame.columns]
    skip = {*RUN_COLUMNS, *SWEEP_COLUMNS, "step", *frame.attrs.get("parameters", ()), *exclude}
    return [c for c in frame.columns
            if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]


def run_keys(frame: pd.DataFrame) -> list[str]:
    """The columns that tell one run from another: ``run_id``, with ``database`` where runs
    may come from several databases (``compare_runs``)."""
    keys = [c for c in ("database", "run_id") if c in frame.columns]
    if "run_id" not in keys:
        raise ValueError("the frame has no run_id column: give one row per run and step "
                         "(compare_runs or open_sweep)")
    return keys


def select_step(frame: pd.DataFrame, step: StepChoice) -> pd.DataFrame:
    """The rows of ``step``: every row (None), each run's last step (``"last"``), or the
    rows of one step (ValueError naming the recorded steps when there are none)."""
    if step is None:
        return frame
    if step == "last":
        if frame.empty:
            return frame
        last = frame.groupby(run_keys(frame), sort=False, observed=True)["step"].transform("max")
        return frame[frame["step"] == last]
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"step must be 'last', a step number or None, not {step!r}")
    rows = frame[frame["step"] == step]
    if rows.empty:
        steps = frame["step"]
        span = f"steps {steps.min()} to {steps.max()}" if len(steps) else "no steps"
        raise ValueError(f"no run recorded metrics at step {step} (the frame has {span})")
    return rows


def _hashable(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``frame`` with list or dict values of the grouping columns as JSON text (a swept
    parameter may be a list, e.g. ``scenario.topics``; pandas cannot group by lists)."""
    bad = [k for k in keys if frame[k].dtype == object
           and frame[k].map(lambda v: isinstance(v, list | dict)).any()]
    if not bad:
        return frame
    frame = frame.copy()
    for key in bad:
        frame[key] = frame[key].map(_as_text)
    return frame


def _as_text(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value
