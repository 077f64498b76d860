"""What a clinic run changes, as arrays that checkpoints save: the hospital's queue
(``hospital.HospitalState``) and each patient's consultation chart.

Core objects:
    Charts: per patient (in the hospital's order, which is arrival order): the rule
        differential (log-posterior over the knowledge table's diagnoses), the findings asked
        or ordered, the counts of the consultation (turns, tests, cost), when a test result
        is due, the diagnosis and its verdict, and the transcript language-model doctors read.
    ClinicState: the hospital, the charts, every agent's confirmation bias, patients'
        confidence, the doctors' memory and the counts of protocol problems.

Outcome codes of a consultation (``Charts.outcome``): ``OPEN`` (not ended), ``DIAGNOSED``,
``NO_DIAGNOSIS`` (the turn limit came first: a failure) and ``LEFT`` (left unseen).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from populace.simulator import ArrayState

from .hospital import HospitalState
from .memory import DoctorMemory
from .protocol import PROBLEMS

OPEN, DIAGNOSED, NO_DIAGNOSIS, LEFT_UNSEEN = range(4)
OUTCOMES = ("open", "diagnosed", "no_diagnosis", "left")


@dataclass
class Charts(ArrayState):
    """Per-patient consultation charts (row = the patient's index in the hospital)."""

    agent: np.ndarray
    """(P,) the patient's agent id."""
    log_post: np.ndarray
    """(P, diagnoses) the rule differential: log-posterior over the knowledge table."""
    asked: np.ndarray
    """(P, findings) questions asked and tests ordered (the chief complaint's findings too)."""
    answers: np.ndarray
    """(P, findings) which of them came back positive."""
    turns: np.ndarray
    """(P,) doctor turns taken."""
    tests: np.ndarray
    """(P,) tests ordered."""
    needed: np.ndarray
    """(P,) tests ordered that the case needs (its decisive or abnormal tests)."""
    cost: np.ndarray
    """(P,) cost of the tests ordered."""
    ready_at: np.ndarray
    """(P,) the step from which the consultation can go on (a test result is due)."""
    outcome: np.ndarray
    """(P,) ``OPEN``, ``DIAGNOSED``, ``NO_DIAGNOSIS`` or ``LEFT_UNSEEN``."""
    correct: np.ndarray
    """(P,) the judge accepted the diagnosis."""
    rank: np.ndarray
    """(P,) rank of the correct diagnosis in the differential (1 = first; 0: not in it)."""
    bias: np.ndarray
    """(P,) the doctor's confirmation bias when the consultation ended."""
    confidence: np.ndarray
    """(P,) the patient's confidence in the doctor when it ended (NaN before)."""
    diagnosis: list[str]
    """The diagnosis given ('' before)."""
    transcript: list[str]
    """The consultation so far, as AgentClinic-style dialogue lines."""

    @classmethod
    def empty(cls, agents: np.ndarray, diagnoses: int, findings: int) -> Charts:
        """Blank charts for patients ``agents`` (in hospital order)."""
        n = len(agents)
        return cls(agent=np.asarray(agents, dtype=np.int64),
                   log_post=np.zeros((n, diagnoses)), asked=np.zeros((n, findings), bool),
                   answers=np.zeros((n, findings), bool),
                   turns=np.zeros(n, np.int32), tests=np.zeros(n, np.int32),
                   needed=np.zeros(n, np.int32), cost=np.zeros(n),
                   ready_at=np.zeros(n, np.int64),
                   outcome=np.zeros(n, np.int8), correct=np.zeros(n, bool),
                   rank=np.zeros(n, np.int8), bias=np.zeros(n),
                   confidence=np.full(n, np.nan), diagnosis=[""] * n, transcript=[""] * n)


@dataclass
class ClinicState(ArrayState):
    """Everything a clinic run changes (see the module docstring)."""

    hospital: HospitalState
    charts: Charts
    confirmation: np.ndarray
    """(agents,) each agent's confirmation bias (doctors'; 0 for patients)."""
    confidence: np.ndarray
    """(agents,) each patient's confidence in its doctor now (NaN for doctors)."""
    memory: DoctorMemory
    """What rule doctors remember (empty arrays without ``memory: true``)."""
    problems: np.ndarray = field(default_factory=lambda: np.zeros(len(PROBLEMS), np.int64))
    """Protocol problems of language-model answers, counted per ``PROBLEMS`` code."""
    judge_llm: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    """The language-model judge: [asked, accepted, no valid answer]."""
    patient_llm: np.ndarray = field(default_factory=lambda: np.zeros(4, np.int64))
    """Language-model patients: [replies asked, replies without a valid answer, confidences
    asked, confidences without a valid answer]."""
