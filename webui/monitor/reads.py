"""Reads that scan a whole population, kept for a while: a page reruns on every click, and
an agent search of a million-agent run can take a second. (Histograms are kept by
``RunQueries.histogram`` itself, for every reader.)

Core objects:
    agents: ``RunQueries.agents``, kept per run, conditions and page.

A run's agents change only when agents join or leave, between steps: what is kept is keyed by
the run's agent count and steps done, so a running run's is read again after each step.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from populace.webui.queries import RunQueries, parse_condition

from .common import open_database

KEEP_S = 600
"""How long a read is kept."""


def _version(q: RunQueries) -> tuple[int, int]:
    return int(q.info["n_agents"] or 0), int(q.info["steps_done"] or 0)


@st.cache_data(ttl=KEEP_S, max_entries=256, show_spinner=False)
def _agents(url: str, run_id: int, version: tuple[int, int], conditions: tuple[str, ...],
            offset: int, limit: int) -> dict[str, Any]:
    queries = RunQueries(open_database(url), run_id)
    return queries.agents([parse_condition(c) for c in conditions], offset, limit)


def agents(q: RunQueries, conditions: list[str], offset: int, limit: int) -> dict[str, Any]:
    """A page of the agents meeting every condition (``ValueError`` for a malformed one,
    ``NotFound`` for an unknown attribute)."""
    return _agents(q.db.url, q.id, _version(q), tuple(conditions), offset, limit)


__all__ = ["KEEP_S", "agents"]
