"""Summaries across replicate runs: the mean of a value with a confidence interval.

Core objects:
    summarize: group a tidy DataFrame (one row per run and step, say) and give, per group and
        value column, the number of replicates, the mean, the standard deviation and a Student-t
        confidence interval of the mean.

Sweep summaries and the plots of ``populace.simulator.analysis`` both use it, so a figure's
error bars and a table's intervals are computed one way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def summarize(frame: pd.DataFrame, by: str | Sequence[str], values: str | Sequence[str],
              confidence: float = 0.95) -> pd.DataFrame:
    """Per group of ``by``, the replicates of each column of ``values`` summarised.

    Args:
        frame: one row per replicate observation (e.g. per run at a step).
        by: the grouping columns (e.g. the swept parameters, and ``step``).
        values: the value columns to summarise (e.g. metric names).
        confidence: the confidence level of the interval (0.95: a 95% interval).

    Returns:
        One row per group and value: the ``by`` columns, ``metric`` (the value column), ``n``
        (replicates that have a value), ``mean``, ``std`` (sample standard deviation), ``sem``,
        ``ci_low`` and ``ci_high`` (the mean ± t(confidence, n-1) · sem; NaN when n < 2, where
        no interval can be given).

    Raises:
        ValueError: ``confidence`` is not between 0 and 1, or a column is missing (named).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), not {confidence}")
    keys = [by] if isinstance(by, str) else list(by)
    names = [values] if isinstance(values, str) else list(values)
    missing = [c for c in [*keys, *names] if c not in frame.columns]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))} in the frame (it has "
                         f"{', '.join(map(str, frame.columns))})")
    long = frame.melt(id_vars=keys, value_vars=names, var_name="metric", value_name="value")
    long = long.dropna(subset=["value"])
    grouped = long.groupby([*keys, "metric"], sort=True, dropna=False)["value"]
    out = grouped.agg(n="count", mean="mean", std="std").reset_index()
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        sem = out["std"].to_numpy(dtype=float) / np.sqrt(n)
        half = stats.t.ppf(0.5 + confidence / 2, np.where(n > 1, n - 1, np.nan)) * sem
    out["sem"] = sem
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out
