"""The scenario page: the picked run's scenario's own view (social: posts and cascades;
market: welfare, concentration and orders; economy: indicators; clinic: accuracy, the queue,
waits, consultations and doctor turns), then a browser of any of its tables."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from populace.webui.monitor import clinic, economy, market, social
from populace.webui.monitor.common import current_run, run_caption
from populace.webui.monitor.tables import browse
from populace.webui.queries import RunQueries

VIEWS: dict[str, tuple[str, Callable[[RunQueries], None]]] = {
    "social": ("Social network", social.render),
    "market": ("Marketplace", market.render),
    "economy": ("Economy", economy.render),
    "clinic": ("Clinic", clinic.render),
}


def render() -> None:
    """Draw the page."""
    q = current_run()
    name = str(q.info["scenario"])
    st.title(VIEWS[name][0] if name in VIEWS else f"Scenario: {name}")
    run_caption(q)
    if name in VIEWS:
        VIEWS[name][1](q)
    else:
        st.info(f"The {name} scenario has no page of its own: its tables are below.")
    st.subheader("Tables")
    browse(q)


if __name__ == "__main__":
    render()
