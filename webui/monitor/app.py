"""The Streamlit entry script of the monitor (``populace monitor DB`` runs it with
``streamlit run``; the database URL comes in ``POPULACE_MONITOR_DB``).

It draws the sidebar's run picker on every rerun, then the page chosen in the navigation:
runs, the picked run's overview, population, network, agents, its scenario's page and
controls. Each page is a file of this folder that Streamlit runs as a script.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from populace.storage import StorageError
from populace.webui.monitor.common import database, pick_run, show_error
from populace.webui.queries import NotFound, RunQueries

HERE = Path(__file__).resolve().parent
SCENARIO_TITLES = {"social": "Social", "market": "Market", "economy": "Economy",
                   "clinic": "Clinic"}


def scenario_title(run: RunQueries | None) -> str:
    """The scenario page's title: the picked run's scenario (tables for the others)."""
    if run is None:
        return "Scenario"
    name = str(run.info["scenario"])
    return SCENARIO_TITLES.get(name, "Tables")


def main() -> None:
    """Draw the sidebar and run the chosen page."""
    st.set_page_config(page_title="Populace monitor", layout="wide")
    db = database()
    run_id = pick_run(db)
    run: RunQueries | None = None
    if run_id is not None:
        try:
            run = RunQueries(db, run_id)
        except NotFound:
            run = None
    pages = [
        st.Page(HERE / "runs_page.py", title="Runs", url_path="runs", default=True),
        st.Page(HERE / "overview_page.py", title="Overview", url_path="overview"),
        st.Page(HERE / "population_page.py", title="Population", url_path="population"),
        st.Page(HERE / "network_page.py", title="Network", url_path="network"),
        st.Page(HERE / "agents_page.py", title="Agents", url_path="agents"),
        st.Page(HERE / "scenario_page.py", title=scenario_title(run), url_path="scenario"),
        st.Page(HERE / "controls_page.py", title="Controls", url_path="controls"),
    ]
    try:
        st.navigation(pages).run()
    except (NotFound, StorageError) as err:
        # e.g. a table a starting run has not written yet, or a database that went away
        show_error(err)


main()
