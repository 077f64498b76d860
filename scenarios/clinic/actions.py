"""The clinic's actions and their argument columns: one schema for rule and language-model
doctors (``protocol.DOCTOR_ACTIONS``), so that both leave the same trace.

Core objects:
    ACTIONS, DO_NOTHING, ASK, EXAMINE, ORDER_TEST, DIAGNOSE: the action names and codes.
    ClinicArgs: a batch's columns: the consultation's patient, the doctor's move (question,
        test, examination system, diagnosis and differential, the knowledge-table finding a
        rule doctor chose) and what ``apply`` filled in (the answer, and for a diagnosis
        whether the judge accepted it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator import ActionArgs, column

from .protocol import DOCTOR_ACTIONS

# "do_nothing" is first: the engine's default LLM fallback, and what idle agents (patients,
# doctors without a consultation to talk in) do; left out of the action table unless
# recording.do_nothing is true.
ACTIONS = DOCTOR_ACTIONS
DO_NOTHING, ASK, EXAMINE, ORDER_TEST, DIAGNOSE = range(len(ACTIONS))


@dataclass
class ClinicArgs(ActionArgs):
    """Argument and outcome columns of a step's doctor turns."""

    patient: np.ndarray = column(np.int64, -1, trace=True,
                                 doc="the patient (agent id) of the consultation; -1: none")
    finding: np.ndarray = column(np.int64, -1,
                                 doc="a rule doctor's question or test as a column of its "
                                     "knowledge table; -1: a language model's move")
    question: np.ndarray = column(object, None, trace=True, doc="ask: the question")
    test: np.ndarray = column(object, None, trace=True,
                              doc="order_test: the canonical test name, or the request as "
                                  "written when the vocabulary does not know it")
    system: np.ndarray = column(object, None, trace=True,
                                doc="examine: the body system ('all': the whole examination)")
    diagnosis: np.ndarray = column(object, None, trace=True, doc="diagnose: the diagnosis")
    differential: np.ndarray = column(object, None, trace=True,
                                      doc="diagnose: the ranked differential, '; '-separated")
    problems: np.ndarray = column(object, None, trace=True,
                                  doc="protocol problems of a language model's answer, "
                                      "comma-separated (protocol.PROBLEMS)")
    answer: np.ndarray = column(object, None, trace=True,
                                doc="outcome: the patient's or the measurement's reply, or "
                                    "the judge's verdict")
    correct: np.ndarray = column(bool, False, trace=True,
                                 doc="outcome: diagnose: the judge accepted the diagnosis")
