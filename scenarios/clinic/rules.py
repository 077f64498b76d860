"""The rule doctor as the clinic's rule policy: each doctor with a consultation to talk in
asks the most informative question, orders the most informative test (net of its cost) or
diagnoses (``doctor.choose``), all consultations of the step in one batch.

Core objects:
    RuleDoctorPolicy: the scenario's rule policy; agents without a consultation this step
        (patients, idle doctors, doctors whose patients wait for results) do nothing.
"""

from __future__ import annotations

import numpy as np

from populace.simulator import ActionBatch, Policy, StepContext

from .actions import ASK, DIAGNOSE, DO_NOTHING, ORDER_TEST, ClinicArgs
from .config import DoctorRuleParams
from .doctor import DIAGNOSE as CHOOSE_DIAGNOSE
from .doctor import DoctorParams, choose, differential
from .knowledge import KnowledgeTable
from .memory import Knowledge
from .observation import ClinicObservation
from .protocol import MAX_DIFFERENTIAL
from .vocabulary import SYMPTOM_VOCABULARY

SYMPTOM, TEST = "symptom:", "test:"


def question_text(finding: str) -> str:
    """The question a rule doctor asks about a symptom finding (``symptom:KEY``)."""
    return f"Have you had {SYMPTOM_VOCABULARY[finding.removeprefix(SYMPTOM)].label}?"


class RuleDoctorPolicy(Policy[ClinicObservation, ClinicArgs]):
    """Bayesian rule doctors (``doctor``) over one knowledge table.

    Args:
        params: the rule's parameters.
        table: the doctors' knowledge.
        max_turns: the consultation's turn limit; the doctor diagnoses at its last turn at the
            latest.
        confirming: (diagnoses, findings) the tests that confirm each diagnosis.
        knowledge: each doctor's own tables (textbook share, memory), read at each decision
            (the scenario's, updated as doctors learn); None: the shared table.
    """

    def __init__(self, params: DoctorRuleParams, table: KnowledgeTable, max_turns: int,
                 confirming: np.ndarray | None = None,
                 knowledge: Knowledge | None = None) -> None:
        self.params = params
        self.table = table
        self.knowledge = knowledge
        self.max_turns = max_turns
        # bits a test must tell more for each hour its result takes
        self.penalty = params.hour_weight * table.turnaround_min / 60.0
        # (diagnoses, findings): the tests that confirm each diagnosis (its cases' decisive
        # tests), ordered before committing to it when ``params.confirm`` is on
        self.confirming = (confirming if confirming is not None and params.confirm
                           else np.zeros(table.likelihood.shape, dtype=bool))
        self.doctor = DoctorParams(confidence=params.confidence, max_turns=max_turns - 1,
                                   cost_weight=params.cost_weight, min_gain=params.min_gain)

    def decide(self, obs: ClinicObservation, ctx: StepContext) -> ActionBatch[ClinicArgs]:
        """One move per doctor with a consultation; ``do_nothing`` for everyone else."""
        n = len(obs.agents)
        code = np.full(n, DO_NOTHING, dtype=np.int16)
        args = ClinicArgs(patient=obs.patient_agent.copy())
        rows = np.flatnonzero(obs.patient >= 0)
        if not len(rows):
            return ActionBatch(obs.agents, code, args)
        table = self.table
        likelihood = (None if self.knowledge is None
                      else self.knowledge.tables(obs.doctor[rows])[1])
        pick = choose(table, obs.log_post[rows], obs.asked[rows],
                      obs.turn[rows].astype(np.int64), self.doctor, self.penalty, likelihood)
        finding = np.full(n, -1, dtype=np.int64)
        question = np.full(n, None, dtype=object)
        test = np.full(n, None, dtype=object)
        diagnosis = np.full(n, None, dtype=object)
        ranked = np.full(n, None, dtype=object)
        pick = self._confirm_first(pick, obs.log_post[rows], obs.asked[rows], obs.turn[rows])
        diagnose = pick == CHOOSE_DIAGNOSE
        top = differential(obs.log_post[rows[diagnose]], MAX_DIFFERENTIAL)
        for row, names in zip(rows[diagnose].tolist(), top.tolist(), strict=True):
            code[row] = DIAGNOSE
            diagnosis[row] = table.diagnoses[names[0]]
            ranked[row] = "; ".join(table.diagnoses[i] for i in names)
        for row, col in zip(rows[~diagnose].tolist(), pick[~diagnose].tolist(), strict=True):
            finding[row] = col
            name = table.findings[col]
            if table.is_test[col]:
                code[row] = ORDER_TEST
                test[row] = name.removeprefix(TEST)
            else:
                code[row] = ASK
                question[row] = question_text(name)
        args.finding, args.question, args.test = finding, question, test
        args.diagnosis, args.differential = diagnosis, ranked
        return ActionBatch(obs.agents, code, args)

    def _confirm_first(self, pick: np.ndarray, log_post: np.ndarray, asked: np.ndarray,
                       turn: np.ndarray) -> np.ndarray:
        """Where the doctor would diagnose before its last turn, but has ordered none of the
        tests that confirm its leading diagnosis, order the cheapest of them instead (cost
        and turnaround weighed as in ``choose``; a doctor confirms before committing; ties:
        the first in the table)."""
        want = (pick == CHOOSE_DIAGNOSE) & (turn < self.max_turns - 1)
        if not want.any():
            return pick
        lead = log_post[want].argmax(axis=1)
        tests = self.confirming[lead]
        todo = tests & ~asked[want]
        need = tests.any(axis=1) & ~(tests & asked[want]).any(axis=1) & todo.any(axis=1)
        price = self.params.cost_weight * self.table.cost + self.penalty
        cost = np.where(todo, price[None, :], np.inf)
        out = pick.copy()
        rows = np.flatnonzero(want)[need]
        out[rows] = cost[need].argmin(axis=1)
        return out
