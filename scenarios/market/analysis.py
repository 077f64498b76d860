"""Welfare and concentration of a market run, over time and per need.

Core objects:
    welfare: the welfare the run's metrics already record each step (welfare, the
        full-information optimum, their ratio, and the loss between them), in one table.
    need_outcomes: one row per customer need: met (by whom, at what price and utility),
        abandoned or still open, and the welfare it lost against the optimum.
    concentration: per step, the HHI and the top-k share of sales (revenue or orders) per
        seller, from the settled orders, cumulative or step by step.
    plot_concentration: the HHI and top-k shares over steps.

Money is in currency units (cents / 100), as in the metrics. Needs the ``analysis`` extra
(matplotlib, scipy); the scenario itself does not import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from populace.simulator.analysis import new_axes
from populace.storage import Run

WELFARE_METRICS = ("welfare", "welfare_optimal", "welfare_ratio", "needs_met",
                   "needs_abandoned", "orders_total")
CELLS_PER_BLOCK = 2_000_000
"""Steps x sellers held at once by ``concentration`` (16 MB of float64)."""


def welfare(run: Run) -> pd.DataFrame:
    """The run's welfare per step, as its metrics recorded it (nothing is recomputed).

    Returns:
        Indexed by step: ``welfare`` (cumulative value minus price over the needs that ended;
        0 for an abandoned one), ``welfare_optimal`` (the full-information optimum over the
        same needs), ``welfare_ratio``, ``welfare_loss`` (optimum minus welfare),
        ``needs_met``, ``needs_abandoned`` and ``orders_total``.

    Raises:
        ValueError: the run recorded no welfare metrics (not a market run).
    """
    metrics = run.metrics()
    missing = [m for m in WELFARE_METRICS if m not in metrics.columns]
    if missing:
        raise ValueError(f"run {run.id} ({run.info['scenario']}) recorded no "
                         f"{', '.join(missing)}: welfare needs a market run")
    out = metrics[list(WELFARE_METRICS)].copy()
    out.insert(3, "welfare_loss", out["welfare_optimal"] - out["welfare"])
    return out


def need_outcomes(run: Run) -> pd.DataFrame:
    """Every customer need of the run and what became of it.

    Returns:
        One row per need: ``need_id``, ``customer_id``, ``step`` (when it appeared),
        ``item_type``, ``value``, ``budget``, ``optimal_utility`` (the full-information best),
        ``status`` (``met``, ``abandoned`` (the customer left), ``open`` (at the run's end), or
        ``unmet`` when the run did not record its actions, so that abandoned and open cannot be
        told apart), then for met needs ``business_id``, ``price``, ``utility``,
        ``arrival_rank`` (0: the first proposal received) and ``proposals_received``, and
        ``welfare_loss`` (optimal utility minus utility; the whole optimum for an abandoned
        need; NaN while open). Summed over met and abandoned needs, ``utility`` and
        ``optimal_utility`` give the last step's ``welfare`` and ``welfare_optimal``.
    """
    needs = run.table("market_needs")
    orders = run.table("market_orders")
    cents = ["value", "budget", "optimal_utility"]
    out = needs[["need_id", "customer_id", "step", "item_type", *cents]].copy()
    out[cents] = out[cents] / 100.0
    paid = orders[["need_id", "business_id", "price", "utility", "arrival_rank",
                   "proposals_received"]].copy()
    paid[["price", "utility"]] = paid[["price", "utility"]] / 100.0
    out = out.merge(paid, on="need_id", how="left", validate="one_to_one")
    met = out["business_id"].notna().to_numpy()
    status = np.where(met, "met", "open").astype(object)
    if "market_actions" in run.tables():
        acts = run.table("market_actions")
        left = acts[(acts["action"] == "leave") & acts["accepted"].astype(bool)]
        # needs appear after a step's actions: a leave at step s ends the customer's newest
        # need from an earlier step
        ended = pd.merge_asof(
            left[["step", "agent_id"]].rename(columns={"agent_id": "customer_id"})
            .sort_values("step"),
            out[["step", "customer_id", "need_id"]].sort_values("step"),
            on="step", by="customer_id", allow_exact_matches=False, direction="backward")
        status[out["need_id"].isin(ended["need_id"].dropna()).to_numpy() & ~met] = "abandoned"
    else:
        status[~met] = "unmet"
    out["status"] = status
    for col in ("business_id", "arrival_rank", "proposals_received"):
        out[col] = out[col].astype("Int64")
    out["welfare_loss"] = np.where(met, out["optimal_utility"] - out["utility"],
                                   np.where(status == "abandoned", out["optimal_utility"],
                                            np.nan))
    order = ["need_id", "customer_id", "step", "item_type", "value", "budget",
             "optimal_utility", "status", "business_id", "price", "utility", "arrival_rank",
             "proposals_received", "welfare_loss"]
    return out[order].sort_values("need_id").reset_index(drop=True)


def concentration(source: Run | pd.DataFrame, *, by: Literal["revenue", "orders"] = "revenue",
                  top: Sequence[int] = (1, 3), cumulative: bool = True,
                  steps: int | None = None) -> pd.DataFrame:
    """How concentrated sales are among sellers, step by step.

    Args:
        source: a run (its ``market_orders`` are read), or orders with columns ``step``,
            ``business_id`` and ``price`` (cents).
        by: ``"revenue"`` (sum of prices) or ``"orders"`` (their number).
        top: the k of the top-k shares.
        cumulative: shares of everything sold up to each step (as the ``hhi`` metric, whose
            value this reproduces from the orders); False: of what was sold in that step.
        steps: the last step (default: the run's last step, or the orders' last step).

    Returns:
        One row per step from 0: ``step``, ``total`` (revenue in currency units, or orders),
        ``sellers`` (with sales), ``hhi`` (sum of squared shares: 1/sellers when equal, 1 for
        a monopoly), ``top1_share``, ``top3_share``, ... (NaN where nothing was sold); and
        ``run_id`` when ``source`` is a run.

    Raises:
        ValueError: a missing column, an unknown ``by``, or a k below 1.
    """
    if by not in ("revenue", "orders"):
        raise ValueError(f"by must be 'revenue' or 'orders', not {by!r}")
    if any(int(k) < 1 for k in top):
        raise ValueError(f"top-k shares need k >= 1, not {list(top)}")
    orders = source.table("market_orders") if isinstance(source, Run) else source
    missing = [c for c in ("step", "business_id", "price") if c not in orders.columns]
    if missing:
        raise ValueError(f"the orders have no column {', '.join(map(repr, missing))}")
    if steps is None:
        steps = (int(source.info["steps_done"]) if isinstance(source, Run)
                 else int(orders["step"].max()) if len(orders) else 0)
    orders = orders[orders["step"] <= steps]
    sellers, seller = np.unique(orders["business_id"].to_numpy(np.int64), return_inverse=True)
    amount = (orders["price"].to_numpy(dtype=float) / 100.0 if by == "revenue"
              else np.ones(len(orders)))
    at = orders["step"].to_numpy(np.int64)
    n_steps, width = steps + 1, max(1, len(sellers))
    block_rows = max(1, CELLS_PER_BLOCK // width)
    ks = [int(k) for k in top]
    parts = []
    carry = np.zeros(width)
    # a dense steps x sellers block at a time: each step's shares need every seller's total
    for start in range(0, n_steps, block_rows):
        stop = min(n_steps, start + block_rows)
        block = np.zeros((stop - start, width))
        mine = (at >= start) & (at < stop)
        np.add.at(block, (at[mine] - start, seller[mine]), amount[mine])
        if cumulative:
            block = np.cumsum(block, axis=0) + carry
            carry = block[-1].copy()
        total = block.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = block / total[:, None]
            part = {"step": np.arange(start, stop), "total": total,
                    "sellers": (block > 0).sum(axis=1), "hhi": (share * share).sum(axis=1)}
            ranked = -np.sort(-share, axis=1)
            for k in ks:
                part[f"top{k}_share"] = ranked[:, :k].sum(axis=1)
        empty = total <= 0
        for name in ("hhi", *(f"top{k}_share" for k in ks)):
            part[name][empty] = np.nan
        parts.append(pd.DataFrame(part))
    out = pd.concat(parts, ignore_index=True)
    if isinstance(source, Run):
        out.insert(0, "run_id", source.id)
    return out


def plot_concentration(frame: pd.DataFrame, *, ax: Axes | None = None,
                       title: str | None = None) -> Axes:
    """The HHI and the top-k shares of ``concentration``'s frame over steps, on one axes
    (all are between 0 and 1).

    Returns:
        The axes: one line for the HHI, then one per top-k share.
    """
    shares = [c for c in frame.columns if c.startswith("top") and c.endswith("_share")]
    ax = new_axes(ax)
    ax.plot(frame["step"], frame["hhi"], color="k", linewidth=1.8, label="HHI")
    for i, col in enumerate(shares):
        k = col[len("top"):-len("_share")]
        ax.plot(frame["step"], frame[col], color=f"C{i % 10}", linewidth=1.2,
                label=f"share of the top {k} seller{'s' if k != '1' else ''}")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("share of sales")
    ax.set_title(title if title is not None else "concentration of sales")
    ax.legend(fontsize="small")
    return ax
