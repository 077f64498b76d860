"""What every page of the monitor shares: the run database (from ``POPULACE_MONITOR_DB``), the
run picked in the sidebar, and small display helpers.

Core objects:
    database: the run database the monitor was started on (cached across reruns).
    pick_run: the sidebar's run picker (the entry script draws it on every rerun).
    current_run: the ``RunQueries`` of the picked run, or a message and a stop.
"""

from __future__ import annotations

import os
import re

import pandas as pd
import streamlit as st

from populace.storage import Database, StorageError, list_runs
from populace.webui.queries import NotFound, RunQueries

DB_ENV = "POPULACE_MONITOR_DB"
"""The environment variable holding the database URL (``populace monitor`` sets it)."""
RUN_ENV = "POPULACE_MONITOR_RUN"
"""The environment variable holding the run to show first (``populace monitor --run``)."""
RUN_KEY = "run_id"
"""The session-state key of the picked run."""
RUNNING = "running"
REFRESH_S = 2.0
"""How often the live parts of a page re-read a running run."""
PAGE_SIZE = 50
CHARTS_PER_ROW = 2
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


@st.cache_resource(show_spinner=False)
def open_database(url: str) -> Database:
    """The database at ``url``, opened once for every session and rerun (opening checks its
    schema)."""
    return Database(url, create=False)


def database() -> Database:
    """The run database named by ``POPULACE_MONITOR_DB``; a message and a stop without one."""
    url = os.environ.get(DB_ENV)
    if not url:
        st.error(f"No run database: start the monitor with `populace monitor DB` (or set "
                 f"{DB_ENV} to a database URL).")
        st.stop()
    try:
        return open_database(url)
    except StorageError as err:
        show_error(err)
        st.stop()


def run_label(runs: pd.DataFrame, run_id: int) -> str:
    """``3 · quickstart (running)``: a run as the picker shows it (plain text)."""
    row = runs.loc[runs["id"] == run_id].iloc[0]
    return f"{run_id} · {row['name']} ({row['status']})"


def default_run(runs: pd.DataFrame) -> int | None:
    """The run shown first: ``POPULACE_MONITOR_RUN`` if it is there, else the newest."""
    if runs.empty:
        return None
    ids = [int(i) for i in runs["id"]]
    wanted = os.environ.get(RUN_ENV, "")
    if wanted.isdigit() and int(wanted) in ids:
        return int(wanted)
    if wanted:  # a run name: its newest run
        named = runs.loc[runs["name"] == wanted, "id"]
        if not named.empty:
            return int(named.iloc[-1])
    return ids[-1]


def pick_run(db: Database) -> int | None:
    """The sidebar's run picker; the picked run's id (None when the database has no runs)."""
    runs = list_runs(db)
    if runs.empty:
        st.sidebar.info("This database holds no runs yet.")
        return None
    ids = [int(i) for i in runs["id"]]
    if st.session_state.get(RUN_KEY) not in ids:
        st.session_state[RUN_KEY] = default_run(runs)
    chosen = st.sidebar.selectbox("Run", ids, key=RUN_KEY,
                                  format_func=lambda i: run_label(runs, i))
    return int(chosen) if chosen is not None else None


def current_run() -> RunQueries:
    """The reads of the picked run; a message and a stop when there is none."""
    db = database()
    run_id = st.session_state.get(RUN_KEY)
    if run_id is None:
        run_id = default_run(list_runs(db))
    if run_id is None:
        st.info(f"{db.shown_url} holds no runs yet: start one with `populace run EXP.yaml "
                f"--db {db.shown_url}`.")
        st.stop()
    try:
        return RunQueries(db, int(run_id))
    except NotFound as err:
        show_error(err)
        st.stop()


def run_caption(q: RunQueries) -> None:
    """One plain line naming the run (its name is the experiment's, shown as text)."""
    info = q.info
    st.text(f"run {q.id} · {info['name']} · {info['scenario']} · {info['status']} · step "
            f"{info['steps_done']} of {info['steps_planned']} · {info['n_agents']} agents")


def is_running(q: RunQueries) -> bool:
    """Whether the run's writer is running it now."""
    return bool(q.info["status"] == RUNNING)


def escaped(text: str) -> str:
    """Text for an element that renders Markdown (an alert), shown as written: every Markdown
    and HTML character escaped with a backslash."""
    return _MARKUP.sub(r"\\\1", text)


def show_error(err: Exception | str) -> None:
    """An error message (which may quote what a user typed) in a red box, as written."""
    st.error(escaped(str(err)))


def metric_grid(frame: pd.DataFrame, per_row: int = CHARTS_PER_ROW, height: int = 220
                ) -> None:
    """One small line chart per column of ``frame`` (indexed by step): metrics have their own
    scales (a count beside a share would flatten the share)."""
    names = list(frame.columns)
    for row in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, names[row:row + per_row], strict=False):
            with col:
                st.text(name)
                st.line_chart(frame[[name]], height=height)


def conditions_from(text: str) -> list[str]:
    """The non-empty lines of a conditions box, one condition each."""
    return [line.strip() for line in text.splitlines() if line.strip()]


__all__ = ["DB_ENV", "PAGE_SIZE", "REFRESH_S", "RUNNING", "RUN_ENV", "RUN_KEY", "conditions_from",
           "current_run", "database", "default_run", "escaped", "is_running", "open_database", "pick_run",
           "run_caption", "run_label", "show_error"]
