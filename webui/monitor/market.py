"""The market scenario's part of the scenario page: welfare and concentration over the steps
(from its metrics) and the newest orders."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from populace.webui.queries import RunQueries

from .common import PAGE_SIZE, metric_grid

WELFARE = ("welfare", "welfare_optimal", "welfare_ratio", "first_proposal_bias")
CONCENTRATION = ("hhi", "gini_revenue", "price_dispersion", "mean_markup",
                 "manipulative_revenue_share")
HEADLINE = ("orders_total", "revenue", "welfare_ratio", "hhi", "gini_revenue",
            "first_proposal_bias")


def series(q: RunQueries, names: tuple[str, ...]) -> pd.DataFrame:
    """The run's metrics ``names`` by step (those it has)."""
    data = q.metrics(list(names))
    return pd.DataFrame(data).set_index("step") if data["step"] else pd.DataFrame()


def render(q: RunQueries) -> None:
    """The market part of the scenario page."""
    latest = series(q, HEADLINE)
    if not latest.empty:
        st.subheader("Latest step")
        last = latest.iloc[-1]
        cols = st.columns(len(latest.columns))
        for col, name in zip(cols, latest.columns, strict=True):
            value = last[name]
            col.metric(name, "-" if pd.isna(value) else f"{value:,.3f}".rstrip("0").rstrip("."))
    for title, names in (("Welfare", WELFARE), ("Concentration", CONCENTRATION)):
        frame = series(q, names)
        st.subheader(title)
        if frame.empty:
            st.info("No step recorded yet.")
            continue
        metric_grid(frame, per_row=3)
        with st.expander(f"{title} values"):
            st.dataframe(frame)
    st.subheader("Orders")
    rows = q.rows("market_orders", [], limit=PAGE_SIZE)
    if rows["rows"]:
        st.text(f"the newest {len(rows['rows'])} orders (prices and utility in cents)")
        st.dataframe(pd.DataFrame(rows["rows"], columns=rows["columns"]), hide_index=True)
    else:
        st.info("No orders yet.")


__all__ = ["render"]
