"""The Runs page: every run of the database with its status, scenario, progress and size."""

from __future__ import annotations

import streamlit as st

from populace.storage import list_runs
from populace.webui.monitor.common import database

COLUMNS = ["id", "name", "scenario", "status", "progress", "steps_done", "steps_planned",
           "n_agents", "writer", "wall_s", "created_at", "updated_at"]


def render() -> None:
    """Draw the page."""
    st.title("Runs")
    db = database()
    st.text(db.shown_url)
    runs = list_runs(db)
    if runs.empty:
        st.info(f"{db.shown_url} holds no runs yet: start one with `populace run EXP.yaml "
                f"--db {db.shown_url}`.")
        return
    runs["progress"] = [done / planned if planned else 0.0
                        for done, planned in zip(runs["steps_done"], runs["steps_planned"],
                                                 strict=True)]
    st.dataframe(runs[COLUMNS], hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0,
                                                    format="percent")})
    st.caption("Pick a run in the sidebar to see it on the other pages.")


if __name__ == "__main__":
    render()
