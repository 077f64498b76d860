"""The economy scenario's part of the scenario page: its indicators over the steps (from its
metrics) and the newest rows of ``economy_state``."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from populace.webui.queries import RunQueries

from .common import PAGE_SIZE, metric_grid

CHARTS = {
    "Prices": ("price_level", "inflation", "inflation_annualised"),
    "Labour": ("unemployment", "participation", "wage", "real_wage"),
    "Output": ("real_gdp", "nominal_gdp", "real_gdp_growth"),
    "Policy": ("interest_rate",),
}


def render(q: RunQueries) -> None:
    """The economy part of the scenario page."""
    for title, names in CHARTS.items():
        data = q.metrics(list(names))
        st.subheader(title)
        if not data["step"]:
            st.info("No step recorded yet.")
            continue
        metric_grid(pd.DataFrame(data).set_index("step"), per_row=4)
    st.subheader("State")
    rows = q.rows("economy_state", [], limit=PAGE_SIZE)
    if rows["rows"]:
        st.dataframe(pd.DataFrame(rows["rows"], columns=rows["columns"]), hide_index=True)
    else:
        st.info("No state recorded yet.")


__all__ = ["render"]
