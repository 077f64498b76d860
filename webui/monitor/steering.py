"""Steering a running run from the monitor: commands go through the run's control channel
(``populace.storage.control``) exactly as the web service sends them, after the same checks.

Core objects:
    NotRunning: a command for a run that is not running (nothing is sent).
    checked_event / checked_interview: an event or interview validated before it is sent.
    send: queue a command for a running run and wait briefly for the run to take it.
    show_command: a command's status (queued, applied at step N, refused and why).
"""

from __future__ import annotations

from typing import Any

import streamlit as st
import yaml
from pydantic import ValidationError

from populace.simulator.events import parse_event
from populace.storage.control import command_row, send_command, wait_for_command
from populace.webui.queries import RunQueries

from .common import RUNNING

WAIT_S = 3.0
"""How long a button waits for the run to take its command before showing it queued."""


class NotRunning(ValueError):
    """A command for a run that is not running: no writer would ever take it."""


def first_error(err: ValidationError) -> str:
    """The first problem of a validation error, as one line (``loc: message``)."""
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"][1:])  # without the union's label
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])


def checked_event(text: str) -> dict[str, Any]:
    """An event written as YAML (the experiment's ``events:`` schema; ``at`` defaults to the
    run's next step), validated; ``ValueError`` with the reason when it is not one."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"not YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError("an event is a mapping, e.g. kind: broadcast, text: ...")
    try:
        parse_event({"at": 1, **data})  # its form, before it is sent
    except ValidationError as err:
        raise ValueError(first_error(err)) from None
    return data


def checked_interview(data: dict[str, Any]) -> dict[str, Any]:
    """An interview's fields (``questions``, ``agents``, ...), validated."""
    try:
        parse_event({"kind": "interview", "at": 1, **data})
    except ValidationError as err:
        raise ValueError(first_error(err)) from None
    return data


def send(q: RunQueries, command: str, spec: dict[str, Any] | None = None,
         wait_s: float = WAIT_S) -> dict[str, Any]:
    """Queue ``command`` for run ``q`` (refused with ``NotRunning`` unless it is running now)
    and wait up to ``wait_s`` for the run to apply or refuse it; the command's row."""
    fresh = RunQueries(q.db, q.id)  # the status now, not when the page began
    if fresh.info["status"] != RUNNING:
        raise NotRunning(f"run {q.id} is {fresh.info['status']}, not running: commands reach "
                         "a running run only")
    cid = send_command(q.db, q.id, command, spec)
    if wait_s > 0:
        try:
            return wait_for_command(q.db, cid, wait_s)
        except TimeoutError:
            pass
    return command_row(q.db, cid)


def show_command(row: dict[str, Any]) -> None:
    """What became of a command: queued, applied at a step, or refused with the run's reason
    (the reason is shown as text: it may quote what was sent)."""
    what = f"command {row['id']} ({row['command']})"
    if row["status"] == "applied":
        st.success(f"{what}: applied at step {row['applied_step']}")
    elif row["status"] == "refused":
        st.error(f"{what}: refused")
        st.text(str(row.get("error") or "no reason given"))
    else:
        st.info(f"{what}: queued; the run takes it after its current step")


__all__ = ["WAIT_S", "NotRunning", "checked_event", "checked_interview", "first_error", "send",
           "show_command"]
