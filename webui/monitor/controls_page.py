"""The Controls page: pause, resume and stop the picked run, and send it an intervention (an
event written as YAML), showing what became of each command (queued, applied at a step, or
refused with the run's reason). Disabled, with the reason, when the run is not running."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from populace.storage.control import command_row
from populace.webui.monitor.common import (
    REFRESH_S,
    current_run,
    is_running,
    run_caption,
    show_error,
)
from populace.webui.monitor.steering import checked_event, send, show_command
from populace.webui.queries import RunQueries, parse_condition

EXAMPLE = """kind: broadcast
text: The council votes on the tax tonight.
args: {topic: politics, stance: 0.8}
"""
SHOWN_COMMANDS = 20


def paused(q: RunQueries) -> bool:
    """Whether the newest pause, resume or stop the run applied was a pause (a paused run
    keeps its ``running`` status: its writer waits between steps; a stop ends a pause, and a
    resumed process starts unpaused)."""
    if "control_commands" not in q.tables():
        return False
    applied = q.rows("control_commands", [parse_condition("status=applied")], limit=200)["rows"]
    for row in applied:
        if row["command"] in ("pause", "resume", "stop"):
            return bool(row["command"] == "pause")
    return False


def buttons(q: RunQueries, running: bool) -> None:
    """Pause, resume and stop; a command's status after it is sent."""
    key = f"controls_last_{q.id}"
    cols = st.columns(3)
    pressed = None
    for col, command in zip(cols, ("pause", "resume", "stop"), strict=True):
        if col.button(command.capitalize(), key=f"controls_{command}", disabled=not running,
                      width="stretch"):
            pressed = command
    if pressed is not None:
        try:
            st.session_state[key] = int(send(q, pressed)["id"])
        except ValueError as err:
            show_error(err)
    if key in st.session_state:
        show_command(command_row(q.db, st.session_state[key]))


def intervention(q: RunQueries, running: bool) -> None:
    """An event as YAML (the experiment's ``events:`` schema), checked, then sent."""
    st.subheader("Intervention")
    key = f"controls_event_{q.id}"
    with st.form("controls_intervention"):
        text = st.text_area("Event (YAML; `at` defaults to the run's next step)", value=EXAMPLE,
                            height=160, key="controls_event_text")
        sent = st.form_submit_button("Send", disabled=not running)
    if sent:
        try:
            st.session_state[key] = int(send(q, "intervene", {"event": checked_event(text)})["id"])
        except ValueError as err:
            show_error(err)
            return
    if key in st.session_state:
        show_command(command_row(q.db, st.session_state[key]))


def history(q: RunQueries) -> None:
    """The run's newest commands and what became of them."""
    st.subheader("Commands")
    if "control_commands" not in q.tables():
        st.info("No command has been sent to this database yet.")
        return
    rows = q.rows("control_commands", [], limit=SHOWN_COMMANDS)["rows"]
    if not rows:
        st.info("No command has been sent to this run.")
        return
    frame = pd.DataFrame(rows)
    frame["spec"] = [s if isinstance(s, str) else json.dumps(s) for s in frame["spec"]]
    shown = ["id", "command", "status", "applied_step", "error", "spec", "created_at"]
    st.dataframe(frame[[c for c in shown if c in frame]], hide_index=True)


def render() -> None:
    """Draw the page; while the run runs, its state and commands are re-read every few
    seconds."""
    q = current_run()
    st.title("Controls")
    run_caption(q)
    running = is_running(q)
    banner = st.empty()  # filled after the buttons: a command sent now shows at once
    buttons(q, running)
    now = RunQueries(q.db, q.id)
    if not is_running(now):
        banner.info(f"Run {q.id} is {now.info['status']}, not running: pause, resume, stop "
                    "and interventions reach a running run only (`populace resume` continues "
                    "a stopped or crashed run).")
    elif paused(now):
        banner.warning(f"Run {q.id} is paused: it waits between steps until resumed or "
                       "stopped.")
    intervention(q, running)

    @st.fragment(run_every=REFRESH_S if running else None)
    def live() -> None:
        history(RunQueries(q.db, q.id))

    live()


if __name__ == "__main__":
    render()
