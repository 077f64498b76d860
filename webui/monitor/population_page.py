"""The Population page: the distribution of any agent attribute (computed in the database)
and a search of agents by conditions on their attributes (``age>=30``), a page at a time."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from populace.webui.monitor import reads
from populace.webui.monitor.common import (
    PAGE_SIZE,
    conditions_from,
    current_run,
    run_caption,
    show_error,
)
from populace.webui.queries import NotFound, RunQueries


def histogram_frame(h: dict) -> pd.DataFrame:
    """A histogram from ``RunQueries.histogram`` as a table: bins (from, to) or values, with
    how many agents fall in each."""
    if h["kind"] == "numeric":
        edges = h["edges"]
        return pd.DataFrame({"from": edges[:-1], "to": edges[1:], "agents": h["counts"]})
    return pd.DataFrame({"value": [str(v) for v in h["values"]], "agents": h["counts"]})


def distribution(q: RunQueries, names: list[str]) -> None:
    """An attribute picker, its histogram as a chart and as a table."""
    st.subheader("Distribution")
    name = st.selectbox("Attribute", names, key=f"population_attribute_{q.id}")
    bins = st.slider("Bins (numeric attributes)", 2, 100, 20, key="population_bins")
    h = q.histogram(str(name), bins)
    frame = histogram_frame(h)
    if frame.empty:
        st.info(f"No agent has a value of {name}.")
        return
    if h["kind"] == "numeric":
        chart = alt.Chart(frame).mark_bar().encode(
            # each bin a bar from its lower to its upper edge, up from zero
            x=alt.X("from:Q", title=str(name)), x2="to:Q", y=alt.Y("agents:Q"),
            y2=alt.datum(0), tooltip=["from", "to", "agents"])
    else:
        chart = alt.Chart(frame).mark_bar().encode(
            x=alt.X("value:N", sort="-y", title=str(name)), y="agents:Q",
            tooltip=["value", "agents"])
    st.altair_chart(chart, width="stretch")
    st.dataframe(frame, hide_index=True)


def agent_page_frame(page: dict) -> pd.DataFrame:
    """A page of ``RunQueries.agents`` as a table: the id, then one column per attribute."""
    return pd.DataFrame([{"agent_id": a["agent_id"], **a["attributes"]} for a in page["agents"]])


def search(q: RunQueries) -> None:
    """Agents meeting every condition (one a line), a page at a time."""
    st.subheader("Find agents")
    text = st.text_area("Conditions, one a line (e.g. age>=30, job=nurse)",
                        key="population_where")
    page_no = st.number_input("Page", min_value=1, value=1, step=1, key="population_page")
    try:
        page = reads.agents(q, conditions_from(text), (int(page_no) - 1) * PAGE_SIZE,
                            PAGE_SIZE)
    except (ValueError, NotFound) as err:
        show_error(err)
        return
    pages = max(1, math.ceil(page["total"] / PAGE_SIZE))
    st.text(f"{page['total']} agents match · page {int(page_no)} of {pages}")
    if page["agents"]:
        st.dataframe(agent_page_frame(page), hide_index=True)


def render() -> None:
    """Draw the page."""
    q = current_run()
    st.title("Population")
    run_caption(q)
    names = q.attribute_names()
    if not names:
        st.info(f"Run {q.id} has no agents recorded yet.")
        return
    distribution(q, names)
    search(q)


if __name__ == "__main__":
    render()
