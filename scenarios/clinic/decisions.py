"""Language-model doctors: AgentClinic's protocol on the clinic's action schema, and the
language-model judge.

A doctor with a consultation this step is shown the case's objective, the patient's age and
sex, the turns left and the transcript so far, and answers either with a structured decision
(``protocol.DoctorDecision``, ``llm_protocol: structured``, the default: servers that
constrain output get its JSON schema) or in AgentClinic's free text (``llm_protocol:
agentclinic``: a question, ``REQUEST TEST: <name>``, ``REQUEST EXAM: <system>`` or
``DIAGNOSIS READY: <diagnosis>``, parsed by ``protocol.parse_doctor_text``, which counts
answers that mix protocols). Both become the same ``DoctorTurn`` and the same actions as a
rule doctor's.

A doctor without a consultation this step (idle, or its patients wait for results) is still
prompted, as every active agent is; its answer is ignored and it does nothing. The examples
keep language-model hospitals small for that reason.

Core objects:
    FreeTextAnswer: the answer model of ``llm_protocol: agentclinic`` (one text field).
    ClinicLLM: the scenario's ``LLMAdapter``.
    JudgeAnswer, judge_messages: the language-model judge's question and answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from populace.simulator import ActionBatch, LLMAdapter

from .actions import ACTIONS, DO_NOTHING, ClinicArgs
from .cases import Case, CaseLibrary
from .config import ClinicConfig
from .observation import ClinicObservation
from .protocol import MAX_REASONING, DoctorDecision, DoctorTurn, parse_doctor_text
from .state import ClinicState
from .vocabulary import EXAM_SYSTEMS, TEST_VOCABULARY

PROMPTS = Path(__file__).resolve().parent / "prompts"
MAX_ANSWER = 2000


class FreeTextAnswer(BaseModel):
    """An AgentClinic-style answer: the doctor's line of dialogue."""

    text: str = Field(max_length=MAX_ANSWER, description="your next line: a question for the "
                      "patient, REQUEST TEST: <test>, REQUEST EXAM: <system>, or DIAGNOSIS "
                      "READY: <diagnosis>")


class JudgeAnswer(BaseModel):
    """The judge's verdict."""

    reasoning: str = Field("", max_length=MAX_REASONING)
    same: bool = Field(description="true when the doctor's diagnosis names the same disease "
                       "as the correct one")


def judge_messages(case: Case, diagnosis: str) -> list[dict[str, str]]:
    """The question to the language-model judge (AgentClinic's moderator)."""
    names = "; ".join([case.diagnosis, *case.synonyms])
    return [{"role": "system", "content": "You are a medical examiner. You decide whether a "
             "doctor's diagnosis names the same disease as the correct diagnosis. Differences "
             "of wording, abbreviations and added detail that does not change the disease do "
             "not matter; a different, broader or narrower disease does. Answer with JSON: "
             '{"reasoning": "<one sentence>", "same": true or false}.'},
            {"role": "user", "content": f"Correct diagnosis (and accepted names): {names}\n"
             f"Doctor's diagnosis: {diagnosis}"}]


def _turn(decision: Any) -> DoctorTurn:
    if isinstance(decision, FreeTextAnswer):
        return parse_doctor_text(decision.text)
    return decision.to_turn()


class ClinicLLM(LLMAdapter[ClinicObservation, ClinicArgs]):
    """Prompts show the protocol, the tests and examinations on offer, the case's objective,
    the patient's age and sex, the turns left and the transcript."""

    prompt_dir = PROMPTS

    def __init__(self, config: ClinicConfig, library: CaseLibrary, state: ClinicState) -> None:
        self.config = config
        self.library = library
        self.state = state  # the scenario's, changed in place (a resume loads into it)

    def decision_model(self) -> type[BaseModel]:
        """``DoctorDecision`` (structured) or ``FreeTextAnswer`` (AgentClinic's text)."""
        return FreeTextAnswer if self.config.llm_protocol == "agentclinic" else DoctorDecision

    def prompt_context(self, obs: ClinicObservation
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Shared: the protocol, turn limit, tests and systems; per doctor: its patient's
        case objective, demographics and transcript, or that it has no patient now."""
        shared = {"protocol": self.config.llm_protocol, "max_turns": self.config.max_turns,
                  "tests": ", ".join(t.label for t in TEST_VOCABULARY.values()),
                  "systems": ", ".join(s.replace("_", " ") for s in EXAM_SYSTEMS)}
        charts, patients = self.state.charts, self.state.hospital.patients
        contexts: list[dict[str, Any]] = []
        for p, turn in zip(obs.patient.tolist(), obs.turn.tolist(), strict=True):
            if p < 0:
                contexts.append({"idle": True})
                continue
            case = self.library[int(patients.case[p])]
            d = case.patient.demographics
            who = " ".join(str(x) for x in (f"{d.age}-year-old" if d.age is not None else "",
                                            d.sex or "", "patient") if x)
            contexts.append({"idle": False, "objective": case.objective, "who": who,
                             "turn": turn + 1, "turns_left": self.config.max_turns - turn,
                             "transcript": charts.transcript[p].strip()})
        return shared, contexts

    def decisions_to_actions(self, obs: ClinicObservation, decisions: list[Any],
                             fallback: str) -> ActionBatch[ClinicArgs]:
        """Each valid decision as the turn it names; no valid answer: the fallback, which
        must be ``do_nothing`` (a wasted turn: the consultation's turn still counts)."""
        if fallback != ACTIONS[DO_NOTHING]:
            raise ValueError(f"the clinic's language-model fallback must be do_nothing (a "
                             f"wasted turn), not {fallback!r}")
        n = len(obs.agents)
        code = np.full(n, DO_NOTHING, dtype=np.int16)
        cols = {name: np.full(n, None, dtype=object) for name in (
            "question", "test", "system", "diagnosis", "differential", "problems")}
        for row, (p, decision) in enumerate(zip(obs.patient.tolist(), decisions, strict=True)):
            if p < 0 or decision is None:
                continue
            turn = _turn(decision)
            code[row] = turn.code
            cols["question"][row] = turn.question or None
            cols["test"][row] = (turn.test or turn.request or None
                                 if turn.action == "order_test" else None)
            cols["system"][row] = turn.system if turn.action == "examine" else None
            if turn.action == "diagnose":
                cols["diagnosis"][row] = turn.diagnosis
                cols["differential"][row] = "; ".join(turn.differential)
            cols["problems"][row] = ",".join(turn.problems) or None
        return ActionBatch(obs.agents, code, ClinicArgs(patient=obs.patient_agent.copy(), **cols))
