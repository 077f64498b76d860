"""The Agents page (agent explorer): find an agent by id or by conditions, then its profile,
its newest actions, memories, exchanges with the model and interview answers; and an
interview box that asks a running run's agent questions and shows the answers when the run
has put them."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from populace.storage.control import command_row
from populace.webui.monitor import reads
from populace.webui.monitor.common import (
    PAGE_SIZE,
    REFRESH_S,
    conditions_from,
    current_run,
    is_running,
    run_caption,
    show_error,
)
from populace.webui.monitor.steering import checked_interview, send, show_command
from populace.webui.queries import NotFound, RunQueries

SHOWN_CALLS = 20  # the newest model exchanges shown in full
ANSWERS = {"free text": {"answer": "text"}, "scale 1-7": {"answer": "scale", "low": 1, "high": 7}}


def prompt_text(prompt: str | None) -> str:
    """A recorded prompt (JSON of chat messages) as plain text: each message's role, then its
    content; the raw text when it is not such JSON."""
    if not prompt:
        return "(prompt not recorded)"
    try:
        messages = json.loads(prompt)
    except ValueError:
        return prompt
    if not isinstance(messages, list):
        return json.dumps(messages, indent=2, ensure_ascii=False)
    parts = []
    for m in messages:
        if isinstance(m, dict):
            parts.append(f"[{m.get('role', '?')}]\n{m.get('content', '')}")
        else:
            parts.append(str(m))
    return "\n\n".join(parts)


def choose_agent(q: RunQueries) -> int | None:
    """The agent to show: the id typed, else one of the agents meeting the conditions."""
    n_agents = int(q.info["n_agents"] or 0)
    cols = st.columns([1, 2])
    typed = cols[0].number_input("Agent id", min_value=0, max_value=max(n_agents - 1, 0),
                                 value=None, step=1, key=f"agents_id_{q.id}")
    text = cols[1].text_area("Or find agents: conditions, one a line (e.g. age>=30)",
                             key=f"agents_where_{q.id}", height=80)
    if typed is not None:
        return int(typed)
    lines = conditions_from(text)
    if not lines:
        st.info("Type an agent id, or conditions to find agents.")
        return None
    try:
        page = reads.agents(q, lines, 0, PAGE_SIZE)
    except (ValueError, NotFound) as err:
        show_error(err)
        return None
    if not page["agents"]:
        st.info("No agent meets these conditions.")
        return None
    ids = [a["agent_id"] for a in page["agents"]]
    st.text(f"{page['total']} agents match; the first {len(ids)} by id:")
    return int(st.selectbox("Agent", ids, key=f"agents_pick_{q.id}"))


def profile(record: dict[str, Any]) -> None:
    """The agent's attributes as a table (values as text)."""
    attrs = record["attributes"]
    st.dataframe(pd.DataFrame({"attribute": list(attrs), "value": [str(v) for v in
                                                                   attrs.values()]}),
                 hide_index=True)


def exchanges(calls: list[dict[str, Any]]) -> None:
    """The newest model exchanges: prompt and response as literal text."""
    if not calls:
        st.info("No model exchanges: this agent did not ask a language model.")
        return
    for c in calls[:SHOWN_CALLS]:
        valid = "valid" if c.get("valid") else "invalid"
        with st.expander(f"step {c.get('step')} · {c.get('kind')} · {valid}"):
            st.text(f"model {c.get('model')} · {c.get('source')} · {c.get('prompt_tokens')} + "
                    f"{c.get('completion_tokens')} tokens · {c.get('latency_s') or 0:.2f} s")
            st.code(prompt_text(c.get("prompt")), language=None, wrap_lines=True)
            st.code(str(c.get("response") or ""), language=None, wrap_lines=True)
            if c.get("error"):
                st.text(f"error: {c['error']}")
    if len(calls) > SHOWN_CALLS:
        st.text(f"... and {len(calls) - SHOWN_CALLS} older exchanges")


def table_or_note(rows: list[dict[str, Any]], note: str) -> None:
    """Rows as a table, or a note when there are none."""
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.info(note)


def interview_box(q: RunQueries, agent_id: int) -> None:
    """Questions for this agent, sent to the running run; the answers once it has put them."""
    st.subheader("Interview")
    running = is_running(q)
    if not running:
        st.info(f"Run {q.id} is {q.info['status']}, not running: interviews reach a running "
                "run only.")
    key = f"interviews_{q.id}"
    with st.form(f"interview_{q.id}_{agent_id}"):
        questions = st.text_area("Questions, one a line", key=f"interview_q_{q.id}")
        form = st.selectbox("Answer", list(ANSWERS), key=f"interview_form_{q.id}")
        remember = st.checkbox("The exchange enters the agent's memory (language-model agents)",
                               key=f"interview_remember_{q.id}")
        sent = st.form_submit_button("Ask", disabled=not running)
    if sent:
        data = {"agents": [agent_id], "remember": bool(remember),
                "questions": [{"text": line, **ANSWERS[str(form)]}
                              for line in conditions_from(questions)]}
        try:
            row = send(q, "interview", {"event": checked_interview(data)})
        except ValueError as err:
            show_error(err)
        else:
            st.session_state.setdefault(key, []).append(int(row["id"]))
    answers(q, list(st.session_state.get(key, [])))


def answers(q: RunQueries, sent: list[int]) -> None:
    """The interviews sent from this session (newest first): status, then the answers."""
    if not sent:
        return
    rows = {cid: command_row(q.db, cid) for cid in sent}
    waiting = any(r["status"] == "queued" for r in rows.values())

    @st.fragment(run_every=REFRESH_S if waiting else None)
    def show() -> None:
        for cid in reversed(sent):
            row = command_row(q.db, cid)
            show_command(row)
            if row["status"] == "applied":
                table_or_note(q.answers(cid), "No answers were recorded.")

    show()


def render() -> None:
    """Draw the page."""
    q = current_run()
    st.title("Agents")
    run_caption(q)
    agent_id = choose_agent(q)
    if agent_id is None:
        return
    try:
        record = q.agent(agent_id)
    except NotFound as err:
        show_error(err)
        return
    st.subheader(f"Agent {agent_id}")
    profile(record)
    tabs = st.tabs([f"Actions ({len(record['actions'])})", f"Memories "
                    f"({len(record['memories'])})", f"Model exchanges ({len(record['llm_calls'])})",
                    f"Interview answers ({len(record['interviews'])})"])
    with tabs[0]:
        table_or_note(record["actions"], "No actions recorded.")
    with tabs[1]:
        table_or_note(record["memories"], "No memories: this agent does not remember "
                      "(rule-based, or memory off).")
    with tabs[2]:
        exchanges(record["llm_calls"])
    with tabs[3]:
        table_or_note(record["interviews"], "Not interviewed.")
    interview_box(q, agent_id)


if __name__ == "__main__":
    render()
