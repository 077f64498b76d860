"""Interview answers: what a policy or a scenario's report gives for each agent and question,
and the rows of ``interview_answers``.

Core objects:
    Answer: one agent's answer to one question (text, a number on a scale, or a JSON object),
        whether it is valid, and the prompt that produced it.
    reported_answers: rule agents' answers: a state variable mapped onto each scale question.
    answer_records: the rows of ``interview_answers`` for a batch of agents.
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


def reported_answers(values: np.ndarray, low: float, high: float, variable: str,
                     event: InterviewEvent) -> list[list[Answer]]:
    """Rule agents' answers: a scale question gets ``values`` on its scale; a text or JSON
    question gets no answer (``valid`` False: a rule agent has no words), and neither does an
    agent whose value is not a number (e.g. a customer's markup, a guess before the first
    round)."""
    per_question: list[list[Answer]] = []
    for q in event.questions:
        if q.answer == "scale":
            scaled = scale_value(values, low, high, q)
            per_question.append([Answer(value=float(v), source="report",
                                        text=f"{variable}={x:.4g}")
                                 if math.isfinite(x) else Answer(valid=False, source="report")
                                 for v, x in zip(scaled.tolist(), values.tolist(), strict=True)])
        else:
            per_question.append([Answer(valid=False, source="report")] * len(values))
    return [list(row) for row in zip(*per_question, strict=True)]


def answer_records(event: InterviewEvent, name: str, agents: np.ndarray,
                   answers: list[list[Answer]]) -> Records:
    """The ``interview_answers`` rows of ``agents`` (answers per agent, per question)."""
    ids = question_ids(event)
    rows = [(int(agent), qid, a) for agent, per_agent in zip(agents.tolist(), answers, strict=True)
            for qid, a in zip(ids, per_agent, strict=True)]
    return {"interview_answers": {
        "event": [name] * len(rows),
        "question": [r[1] for r in rows],
        "agent_id": np.array([r[0] for r in rows], dtype=np.int64),
        "source": [r[2].source for r in rows],
        "text": [r[2].text for r in rows],
        "value": np.array([np.nan if r[2].value is None else r[2].value for r in rows],
                          dtype=np.float64),
        "answer": [None if r[2].data is None else json.dumps(r[2].data) for r in rows],
        "valid": np.array([r[2].valid for r in rows], dtype=bool),
        "prompt": [r[2].prompt for r in rows],
        "call_hash": [r[2].call for r in rows],
    }}


__all__ = ["Answer", "answer_records", "question_ids", "reported_answers", "scale_value"]
