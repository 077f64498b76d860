"""The Overview page of the picked run: progress, metric charts and the language model's use
and health (re-read every few seconds while the run is running), and the action mix."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from populace.simulator import get_scenario
from populace.webui.monitor.common import (
    REFRESH_S,
    current_run,
    is_running,
    metric_grid,
    run_caption,
)
from populace.webui.queries import RunQueries


def metric_names(q: RunQueries) -> list[str]:
    """The names of the run's metrics, from its newest step only (not the whole series)."""
    done = int(q.info["steps_done"] or 0)
    newest = q.metrics(None, since=max(done - 1, 0))
    return sorted(k for k in newest if k != "step")


def default_metrics(names: list[str], scenario: str) -> list[str]:
    """Up to three metrics to chart before the user picks: the scenario's headline metrics
    first (``Scenario.headline_metrics``; none for a scenario not installed here)."""
    try:
        headline = get_scenario(scenario).headline_metrics
    except KeyError:
        headline = ()
    chosen = [n for n in headline if n in names]
    chosen += [n for n in names if not n.startswith("llm.") and n not in chosen]
    return chosen[:3]


def progress(q: RunQueries) -> None:
    """Status, steps and agents, and a progress bar."""
    info = q.info
    done, planned = int(info["steps_done"] or 0), int(info["steps_planned"] or 0)
    cols = st.columns(4)
    cols[0].metric("Status", str(info["status"]))
    cols[1].metric("Steps", f"{done}/{planned}")
    cols[2].metric("Agents", int(info["n_agents"] or 0))
    cols[3].metric("Wall time (s)", f"{float(info.get('wall_s') or 0):.1f}")
    st.progress(min(done / planned, 1.0) if planned else 0.0)


def charts(q: RunQueries, chosen: list[str]) -> None:
    """The chosen metrics over the steps, as a line chart and a table."""
    if not chosen:
        st.info("Pick metrics to chart.")
        return
    series = q.metrics(chosen)
    if not series["step"]:
        st.info("No step has been recorded yet.")
        return
    frame = pd.DataFrame(series).set_index("step")
    metric_grid(frame[[n for n in chosen if n in frame]])
    with st.expander("Values"):
        st.dataframe(frame)


def action_mix(q: RunQueries) -> None:
    """How many times each action was taken, counted by the database (when the page is
    drawn, not every few seconds)."""
    st.subheader("Action mix")
    mix = q.action_mix()
    if not mix:
        st.info("No actions recorded yet.")
        return
    total = sum(mix.values())
    frame = pd.DataFrame({"action": list(mix), "count": list(mix.values()),
                          "share": [n / total for n in mix.values()]})
    st.bar_chart(frame, x="action", y="count")
    st.dataframe(frame, hide_index=True, column_config={
        "share": st.column_config.NumberColumn(format="percent")})


def _rate(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.3f} s"


def llm_health(q: RunQueries) -> None:
    """Requests, tokens, cost, the invalid-answer, fallback, cache and error rates, latency."""
    st.subheader("Language model")
    h = q.llm_health()
    if not h["requests"] and not h["decisions"]:
        st.info("No language-model requests: the run's agents follow rules.")
        return
    top = st.columns(5)
    top[0].metric("Requests", f"{h['requests']:.0f}")
    top[1].metric("Decisions", f"{h['decisions']:.0f}")
    top[2].metric("Prompt tokens", f"{h['prompt_tokens']:.0f}")
    top[3].metric("Completion tokens", f"{h['completion_tokens']:.0f}")
    top[4].metric("Cost", f"${h['cost']:.4f}")
    low = st.columns(6)
    low[0].metric("Invalid answers", _rate(h["invalid_rate"]))
    low[1].metric("Fallbacks", _rate(h["fallback_rate"]))
    low[2].metric("Cache hits", _rate(h["cache_rate"]))
    low[3].metric("Errors", _rate(h["error_rate"]))
    low[4].metric("Latency p50", _seconds(h["latency_p50"]))
    low[5].metric("Latency p95", _seconds(h["latency_p95"]))


def render() -> None:
    """Draw the page; its live part (all but the action mix) re-reads the run every few
    seconds while it runs."""
    q = current_run()
    st.title("Overview")

    @st.fragment(run_every=REFRESH_S if is_running(q) else None)
    def live() -> None:
        fresh = RunQueries(q.db, q.id)  # the run's status and progress now
        run_caption(fresh)
        names = metric_names(fresh)
        chosen = st.multiselect("Metrics", names, default=default_metrics(names, str(fresh.info["scenario"])),
                                key=f"overview_metrics_{q.id}")
        progress(fresh)
        charts(fresh, chosen)
        llm_health(fresh)

    live()
    # not live: counting a large run's actions scans its whole action table
    action_mix(q)


if __name__ == "__main__":
    render()
