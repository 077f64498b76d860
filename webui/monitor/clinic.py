"""The clinic scenario's part of the scenario page: diagnostic accuracy, the queue, waiting
times and utilisation over the steps (from its metrics), accuracy per specialty at the latest
step, and the newest consultations and doctor turns (questions, tests, diagnoses and answers
shown as written)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from populace.webui.queries import Condition, RunQueries, parse_condition

from .common import CHARTS_PER_ROW, PAGE_SIZE

HEADLINE = ("consultations", "accuracy", "top5_accuracy", "turns_mean", "tests_mean",
            "wait_mean", "utilisation", "left_unseen")
CHARTS = {
    "Diagnostic accuracy (share of consultations)": ("accuracy", "top5_accuracy"),
    "Queue (patients)": ("queue", "in_consultation", "waiting_test"),
    "Waiting time (minutes from arrival to consultation)": ("wait_mean", "wait_p90"),
    "Utilisation (share of doctor time)": ("utilisation", "occupancy"),
}
"""One chart per entry: the metrics of one chart share a unit."""
SPECIALTY_PREFIX = "accuracy."
"""Per-specialty accuracy metrics are named ``accuracy.<specialty>``."""
OUTCOMES = ["all", "diagnosed", "no_diagnosis", "left"]
ACTIONS = ["all", "ask", "examine", "order_test", "diagnose"]
CONSULTATION_COLUMNS = ["step", "patient_id", "doctor_id", "case_id", "outcome", "waited_min",
                        "turns", "tests", "correct", "diagnosis", "correct_diagnosis",
                        "specialty"]
"""The short columns first, so that a narrow window shows them beside the diagnoses."""
TURN_COLUMNS = ["step", "agent_id", "patient", "action", "question", "test", "system",
                "answer", "diagnosis", "correct", "differential"]


def series(q: RunQueries, names: tuple[str, ...]) -> pd.DataFrame:
    """The run's metrics ``names`` by step (those it has)."""
    data = q.metrics(list(names))
    return pd.DataFrame(data).set_index("step") if data["step"] else pd.DataFrame()


def shown(value: float) -> str:
    """A metric's value as a headline shows it: ``5,820``, ``0.917``, ``-`` for none."""
    return "-" if pd.isna(value) else f"{value:,.3f}".rstrip("0").rstrip(".")


def specialty_accuracy(q: RunQueries) -> tuple[int | None, pd.DataFrame]:
    """The latest step and, at that step, each specialty's accuracy (``accuracy.<specialty>``
    metrics), one row per specialty by name; (None, empty) before the first step."""
    since = max(int(q.info["steps_done"] or 0) - 1, 0)
    data = q.metrics(None, since)
    if not data["step"]:
        return None, pd.DataFrame(columns=["specialty", "accuracy"])
    frame = pd.DataFrame(data).set_index("step")
    last = frame.iloc[-1]
    names = sorted(n for n in frame.columns if n.startswith(SPECIALTY_PREFIX))
    rows = [(n.removeprefix(SPECIALTY_PREFIX), last[n]) for n in names]
    return int(frame.index[-1]), pd.DataFrame(rows, columns=["specialty", "accuracy"])


def headline(q: RunQueries) -> None:
    """The latest step's headline metrics."""
    latest = series(q, HEADLINE)
    if latest.empty:
        return
    st.subheader("Latest step")
    last = latest.iloc[-1]
    names = [n for n in HEADLINE if n in latest.columns]
    cols = st.columns(len(names))
    for col, name in zip(cols, names, strict=True):
        col.metric(name, shown(last[name]))


def charts(q: RunQueries) -> None:
    """Accuracy, the queue, waits and utilisation over the steps, one chart each."""
    st.subheader("Over the steps")
    frame = series(q, tuple(n for names in CHARTS.values() for n in names))
    if frame.empty:
        st.info("No step recorded yet.")
        return
    drawn = [(title, [n for n in names if n in frame.columns])
             for title, names in CHARTS.items()]
    drawn = [(title, names) for title, names in drawn if names]
    frame = frame[[n for _, names in drawn for n in names]]  # in the charts' order
    for row in range(0, len(drawn), CHARTS_PER_ROW):
        cols = st.columns(CHARTS_PER_ROW)
        for col, (title, names) in zip(cols, drawn[row:row + CHARTS_PER_ROW], strict=False):
            with col:
                st.text(title)
                st.line_chart(frame[names], height=240)
    with st.expander("Values by step"):
        st.dataframe(frame)


def specialties(q: RunQueries) -> None:
    """A bar of each specialty's accuracy at the latest step."""
    st.subheader("Accuracy by specialty")
    step, frame = specialty_accuracy(q)
    if step is None or frame.empty:
        st.info("No consultation has ended yet.")
        return
    st.text(f"at step {step}: the share of each specialty's ended consultations diagnosed "
            f"correctly")
    st.bar_chart(frame, x="specialty", y="accuracy", horizontal=True,
                 height=max(160, 28 * len(frame)))
    with st.expander("Accuracy by specialty values"):
        st.dataframe(frame, hide_index=True)


def page_of(q: RunQueries, table: str, conditions: list[Condition], columns: list[str]
            ) -> pd.DataFrame:
    """The newest rows of ``table`` meeting ``conditions``, in ``columns`` (those it has)."""
    rows = q.rows(table, conditions, limit=PAGE_SIZE)
    frame = pd.DataFrame(rows["rows"], columns=rows["columns"])
    return frame[[c for c in columns if c in frame.columns]]


def filters(q: RunQueries, label: str, choices: list[str], column: str,
            doctor_column: str) -> list[Condition]:
    """A row of two filters, one of ``choices`` for ``column`` ("all": any) and a doctor for
    ``doctor_column`` (empty: every doctor), as conditions on the table's rows."""
    cols = st.columns(2)
    chosen = str(cols[0].selectbox(label, choices, key=f"clinic_{column}"))
    doctor = cols[1].number_input("Doctor (empty: every doctor)", min_value=0, value=None,
                                  step=1, key=f"clinic_{column}_doctor_{q.id}")
    conditions = [] if chosen == "all" else [parse_condition(f"{column}={chosen}")]
    if doctor is not None:
        conditions.append(parse_condition(f"{doctor_column}={int(doctor)}"))
    return conditions


def consultations(q: RunQueries) -> None:
    """The newest consultations that ended (or patients who left unseen)."""
    st.subheader("Consultations")
    conditions = filters(q, "Outcome", OUTCOMES, "outcome", "doctor_id")
    frame = page_of(q, "clinic_consultations", conditions, CONSULTATION_COLUMNS)
    if frame.empty:
        st.info("No consultation has ended yet." if not conditions
                else "No such consultations.")
        return
    st.text(f"the newest {len(frame)} consultations (waits in minutes; doctor -1: the patient "
            f"left unseen)")
    st.dataframe(frame, hide_index=True)


def turns(q: RunQueries) -> None:
    """The newest doctor turns: each question, examination, test or diagnosis and its
    answer."""
    st.subheader("Doctor turns")
    conditions = filters(q, "Action", ACTIONS, "action", "agent_id")
    frame = page_of(q, "clinic_turns", conditions, TURN_COLUMNS)
    if frame.empty:
        st.info("No doctor turn yet." if not conditions else "No such turns.")
        return
    st.text(f"the newest {len(frame)} turns")
    st.dataframe(frame, hide_index=True)


def render(q: RunQueries) -> None:
    """The clinic part of the scenario page."""
    headline(q)
    charts(q)
    specialties(q)
    consultations(q)
    turns(q)


__all__ = ["render", "specialty_accuracy"]
