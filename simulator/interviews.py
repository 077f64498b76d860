"""Interview answers: what a policy or a scenario's report gives for each agent and question,
and the rows of ``interview_answers``.

Core objects:
    Answer: one agent's answer to one question (text, a number on a scale, or a JSON object),
        whether it is valid, and the prompt that produced it.
    Report: rule agents' answers: a state variable, mapped onto each scale question.
    answer_records: the rows of ``interview_answers`` for a batch of agents, built in bulk.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .events import InterviewEvent, Question
from .records import Records


@dataclass(frozen=True)
class Answer:
    """One agent's answer to one question."""

    text: str | None = None
    value: float | None = None
    data: Any = None
    """A ``json`` answer's object."""
    valid: bool = True
    prompt: str | None = None
    source: str = "llm"
    """``llm`` (the agent's model answered) or ``report`` (the scenario's state variable)."""
    call: str | None = None
    """The model call that answered (its ``llm_calls.prompt_hash``)."""


def question_ids(event: InterviewEvent) -> list[str]:
    """The name of each question in the answers table."""
    return [q.id or f"q{i}" for i, q in enumerate(event.questions)]


def scale_value(values: np.ndarray, low: float, high: float, question: Question) -> np.ndarray:
    """Variable values in ``low..high`` mapped linearly onto the question's integer scale."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError("a variable reported on a scale needs finite bounds")
    share = (np.clip(values, low, high) - low) / (high - low)
    return np.rint(question.low + share * (question.high - question.low))


@dataclass(frozen=True)
class Report:
    """What rule agents answer with: a state variable's values (aligned with the agents that
    report) and its bounds."""

    variable: str
    values: np.ndarray
    low: float
    high: float


def answer_records(event: InterviewEvent, name: str, agents: np.ndarray,
                   given: list[list[Answer] | None], report: Report | None) -> Records:
    """The ``interview_answers`` rows of ``agents``, agent by agent, question by question:
    the policy's answers where it ``given`` them, the ``report`` elsewhere, built column-wise
    (a million rule agents answer without a Python object each). A report answers scale
    questions with the variable mapped onto the scale; a rule agent has no words for a text
    or JSON question, nor a number where its value is not one (``valid`` False)."""
    n, questions = len(agents), event.questions
    k = len(questions)
    value = np.full((n, k), np.nan)
    valid = np.zeros((n, k), dtype=bool)
    text = np.full((n, k), None, dtype=object)
    data = np.full((n, k), None, dtype=object)
    prompt = np.full((n, k), None, dtype=object)
    call = np.full((n, k), None, dtype=object)
    source = np.full((n, k), "report", dtype=object)
    spoken = np.array([a is not None for a in given], dtype=bool)
    reporting = np.flatnonzero(~spoken)
    if report is not None and len(reporting):
        raw = np.asarray(report.values, dtype=np.float64)
        finite = np.isfinite(raw)
        shown = np.empty(len(raw), dtype=object)  # the value behind each answer, as text
        shown[:] = [f"{report.variable}={x:.4g}" for x in raw.tolist()]
        for j, q in enumerate(questions):
            if q.answer != "scale":
                continue
            value[reporting, j] = np.where(finite, scale_value(raw, report.low, report.high, q),
                                           np.nan)
            valid[reporting, j] = finite
            text[reporting, j] = np.where(finite, shown, None)
    for i in np.flatnonzero(spoken).tolist():  # the policy's agents: language models, few
        for j, a in enumerate(given[i]):  # type: ignore[arg-type]
            value[i, j] = np.nan if a.value is None else a.value
            valid[i, j], text[i, j], prompt[i, j], call[i, j] = a.valid, a.text, a.prompt, a.call
            data[i, j] = None if a.data is None else json.dumps(a.data)
            source[i, j] = a.source
    return {"interview_answers": {
        "event": [name] * (n * k),
        "question": question_ids(event) * n,
        "agent_id": np.repeat(np.asarray(agents, dtype=np.int64), k),
        "source": source.ravel().tolist(),
        "text": text.ravel().tolist(),
        "value": value.ravel(),
        "answer": data.ravel().tolist(),
        "valid": valid.ravel(),
        "prompt": prompt.ravel().tolist(),
        "call_hash": call.ravel().tolist(),
    }}


__all__ = ["Answer", "Report", "answer_records", "question_ids", "scale_value"]
