"""The clinic as a Populace scenario: patients arrive, queue, and are seen by doctors who ask,
examine, order tests and diagnose, one turn per step in every consultation at once.

Each step, every doctor with a consultation to talk in (the earliest it began of those not
waiting for a test result) takes one turn: a rule doctor (``rules``) or a language model
(``decisions``, AgentClinic's protocol on the same action schema). ``apply`` then answers
every turn in batch order: the patient from its case and persona (``persona``: a low-recall
patient leaves symptoms out, a dazed one answers wrongly at times), the measurement from the
case's results (a test's answer comes after its turnaround, and the consultation waits), the
judge on diagnoses (``diagnosis``: string match with synonyms, and a language model where
``judge: llm``); then consultations past the turn limit end as failures, results that came
back reopen their consultations, and the hospital admits the step's arrivals
(``hospital``: triage, specialties, capacity, patience).

Rule doctors know the library's knowledge table (or, with ``textbook_share``, some of its
diagnoses) and, with ``memory: true``, learn from each consultation they end (``memory``:
the correct diagnosis is told afterwards, as MedAgentSim's doctors record past cases), so
that they improve over a run.

Rule patients never decide: patients are agents (their persona and case come from the
population), but only doctors act. With an activation that makes patients inactive (the
examples use ``activation: {by: role, ...}``), they cost nothing per step.

The clinic is not ``Shardable``: on the Ray runtime every replica holds the hospital and
applies the gathered batch, which gives the local runtime's results for the same seed.

Steering: each doctor's confirmation bias is a variable (``confirmation``), so an event can
make a doctor biased mid-run; the turn limit, the queue's patience and the judge can be
reconfigured.

Core objects:
    ClinicScenario: the ``clinic`` scenario.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import TypeAdapter

from populace.simulator import ActionBatch, Records, Scenario, StepContext, World, register_scenario
from populace.simulator.scenario import Variable

from .actions import ACTIONS, ASK, DIAGNOSE, EXAMINE, ORDER_TEST, ClinicArgs
from .cases import Case, result_of
from .config import ClinicConfig, DoctorRuleParams
from .decisions import ClinicLLM, JudgeAnswer, judge_messages
from .diagnosis import diagnosis_matches, rank_of_diagnosis
from .doctor import DoctorParams, keyed_uniform, prior_log, update
from .hospital import (
    IN_CONSULTATION,
    WAITING_TEST,
    CaseFacts,
    HospitalState,
    QueueRules,
    admit,
    arrive,
    case_weights,
    finish,
    specialty_name,
)
from .intake import (
    PERSONA_COLUMNS,
    arrival_steps,
    doctor_specialties,
    patient_cases,
    persona_codes,
    roles,
)
from .knowledge import KnowledgeTable, case_findings
from .memory import DoctorMemory, Knowledge
from .metrics import clinic_metrics, doctor_accuracy
from .observation import ClinicObservation
from .patients import PatientConfidence, PatientReply, confidence_messages, reply_messages
from .persona import (
    LANGUAGE_LEVELS,
    PERSONALITIES,
    RECALL_LEVELS,
    persona_arrays,
    persona_index,
)
from .protocol import (
    NORMAL_READINGS,
    PROBLEMS,
    DoctorTurn,
    examination_reply,
    measurement_reply,
    render_turn,
)
from .rules import RuleDoctorPolicy
from .state import DIAGNOSED, LEFT_UNSEEN, NO_DIAGNOSIS, OPEN, OUTCOMES, Charts, ClinicState
from .tables import TABLES
from .vocabulary import SYMPTOM_VOCABULARY, TEST_VOCABULARY, find_symptoms

_INT = np.int64
JUDGE = TypeAdapter(JudgeAnswer)
REPLY = TypeAdapter(PatientReply)
CONFIDENCE = TypeAdapter(PatientConfidence)
# salts of the keyed draws (doctor.keyed_uniform): one stream per purpose
_PRESENCE, _SENSITIVITY, _MISS, _WRONG, _TEXTBOOK = 11, 13, 17, 19, 23
_HISTORY_TOPICS = (
    (re.compile(r"medic|medicine|drug|pill|tablet", re.I), "medications"),
    (re.compile(r"allerg", re.I), "allergies"),
    (re.compile(r"family|parent|mother|father|sibling", re.I), "family_history"),
    (re.compile(r"smok|alcohol|drink|work|job|travel|live|social|sex", re.I), "social_history"),
    (re.compile(r"past|before|previous|medical history|condition|surgery|operation", re.I),
     "past_medical_history"),
)


@register_scenario
class ClinicScenario(Scenario[ClinicConfig, ClinicObservation, DoctorRuleParams, ClinicArgs]):
    """Patients, doctors, tests and a judge, from one consultation to a busy hospital.

    Attributes:
        library: the case library.
        table: the rule doctors' knowledge (built from the library).
        state: everything the run changes (a ``ClinicState``; checkpoints save it).
    """

    name = "clinic"
    headline_metrics = ("accuracy", "top5_accuracy", "turns_mean", "tests_mean",
                        "tests_unnecessary_mean", "wait_mean", "throughput_per_hour",
                        "utilisation", "confidence_mean", "no_diagnosis")
    config_model = ClinicConfig
    rule_params_model = DoctorRuleParams
    actions = ACTIONS
    args_type = ClinicArgs
    tables = TABLES
    action_table = "clinic_turns"
    examples = Path(__file__).parent / "examples"
    variables: ClassVar[dict[str, Variable]] = {
        "confidence": Variable("a patient's confidence in its doctor, 0 to 1 (its persona's "
                               "starting value, moved by each turn; NaN for doctors)", 0.0, 1.0),
        "confirmation": Variable("a doctor's confirmation bias: the share of the evidence "
                                 "against its leading diagnosis it ignores (0 to 1)", 0.0, 1.0)}
    reconfigurable: ClassVar[tuple[str, ...]] = ("max_turns", "patience_min",
                                                 "fallback_after_min", "judge")
    state: ClinicState

    def __init__(self, config: ClinicConfig, world: World) -> None:
        super().__init__(config, world)
        self.library = config.library(world.base_dir)
        self.table = KnowledgeTable.from_cases(self.library, a=config.knowledge_prior,
                                               b=config.knowledge_prior)
        self._case_arrays()
        # doctors expect the hospital's case mix (the library's shares when no mix is given)
        weights = case_weights(list(self.library), config.mix)
        self.table = dataclasses.replace(self.table, prior=np.bincount(
            self.case_row, weights=weights, minlength=len(self.table.diagnoses)))
        self.step_minutes = world.clock.step_duration.total_seconds() / 60.0
        self.rules = self._rules(config)
        attrs = world.population.attributes
        self.doctor_agent, self.patient_agent = roles(config, attrs, world.n_agents)
        self.agent_doctor = np.full(world.n_agents, -1, dtype=_INT)
        self.agent_doctor[self.doctor_agent] = np.arange(len(self.doctor_agent))
        self.texts = world.llm is not None  # transcripts are kept for language models only
        self._build_state(attrs)
        self._llm: ClinicLLM | None = None

    # -- set-up ----------------------------------------------------------------------------------

    def _case_arrays(self) -> None:
        """Per case: its findings (the truth), its chief complaint's findings, the row of
        its diagnosis, the tests it needs, its facts for the hospital."""
        table, cases = self.table, list(self.library)
        self.case_truth = case_findings(cases, table.findings)
        column = self.finding_index = {f: j for j, f in enumerate(table.findings)}
        self.case_complaint = np.zeros_like(self.case_truth)
        for i, case in enumerate(cases):
            for key in find_symptoms(case.patient.primary_symptom):
                j = column.get(f"symptom:{key}")
                if j is not None and self.case_truth[i, j]:
                    self.case_complaint[i, j] = True
        self.case_row = np.array([table.index_of(c.diagnosis) for c in cases], dtype=_INT)
        self.case_needed = [set(c.decisive_tests()) | set(c.abnormal_tests()) for c in cases]
        self.facts = CaseFacts.from_library(cases)
        self.confirming = np.zeros(table.likelihood.shape, dtype=bool)
        for i, case in enumerate(cases):
            for name in case.decisive_tests():
                j = column.get(f"test:{name}")
                if j is not None:
                    self.confirming[self.case_row[i], j] = True

    def _rules(self, config: ClinicConfig) -> QueueRules:
        return QueueRules(step_minutes=self.step_minutes, turn_minutes=self.step_minutes,
                          fallback_after_min=config.fallback_after_min,
                          patience_min=config.patience_min)

    def _build_state(self, attrs: pd.DataFrame) -> None:
        cfg, patients, rng = self.config, self.patient_agent, self.world.rng
        cases = patient_cases(self.library, cfg, attrs, patients, rng)
        arrival = arrival_steps(cfg, self.world.clock.start, self.step_minutes, patients, rng)
        order = np.lexsort((patients, arrival))  # the hospital's order: arrival
        self.persona_codes = {k: v[order] for k, v in persona_codes(cfg, attrs,
                                                                    patients).items()}
        self.persona = persona_arrays(*(self.persona_codes[k] for k in PERSONA_COLUMNS))
        self.persona_index = persona_index(*(self.persona_codes[k] for k in PERSONA_COLUMNS))
        hospital = HospitalState.create(doctor_specialties(cfg, attrs, self.doctor_agent),
                                       cfg.capacity)
        if "capacity" in attrs:
            cap = attrs["capacity"].to_numpy()[self.doctor_agent]
            hospital.doctors.capacity[:] = np.where(pd.isna(cap), self.config.capacity,
                                                    cap).astype(np.int32)
        arrive(hospital, 0, cases[order], self.facts)
        hospital.patients.arrival[:len(order)] = arrival[order]
        charts = Charts.empty(self.patient_agent[order], len(self.table.diagnoses),
                              len(self.table.findings))
        confirmation = np.zeros(self.world.n_agents)
        confirmation[self.doctor_agent] = self.config.confirmation
        column = self.config.confirmation_attribute
        if column is not None and column in attrs:
            given = pd.to_numeric(attrs[column], errors="coerce").to_numpy()
            mine = given[self.doctor_agent]
            confirmation[self.doctor_agent] = np.clip(
                np.where(np.isnan(mine), self.config.confirmation, mine), 0.0, 1.0)
        remembers = self.config.memory
        memory = DoctorMemory.empty(len(self.doctor_agent) if remembers else 0,
                                    len(self.table.diagnoses),
                                    len(self.table.findings) if remembers else 0)
        confidence = np.full(self.world.n_agents, np.nan)
        confidence[charts.agent] = self.persona["confidence0"]
        self.state = ClinicState(hospital=hospital, charts=charts, confirmation=confirmation,
                                 confidence=confidence, memory=memory)
        known = np.ones((len(self.doctor_agent), len(self.table.diagnoses)), dtype=bool)
        if self.config.textbook_share < 1:
            keys = (self.doctor_agent.astype(np.uint64)[:, None] * np.uint64(1 << 16)
                    + np.arange(known.shape[1], dtype=np.uint64)[None, :])
            known = self._draw(_TEXTBOOK, keys.ravel()).reshape(known.shape) < (
                self.config.textbook_share)
        self.knowledge = Knowledge(self.table, known, self.config.memory_weight,
                                   self.config.knowledge_prior, memory if remembers else None)
        self.index_of = np.full(self.world.n_agents, -1, dtype=_INT)
        self.index_of[charts.agent] = np.arange(len(order))

    def setup(self) -> Records:
        """The library, the patients (case, arrival, triage, persona) and the first
        admissions; deterministic (also run on resume, before the checkpoint is loaded)."""
        cases, h = list(self.library), self.state.hospital
        n = h.n_patients
        records: Records = {
            "clinic_cases": {
                "case_index": np.arange(len(cases), dtype=_INT),
                "case_id": [c.id for c in cases],
                "specialty": [c.specialty for c in cases],
                "diagnosis": [c.diagnosis for c in cases],
                "severity": self.facts.severity.astype(_INT)},
            "clinic_patients": {
                "agent_id": self.state.charts.agent.copy(),
                "case_id": [cases[i].id for i in h.patients.case[:n].tolist()],
                "specialty": [cases[i].specialty for i in h.patients.case[:n].tolist()],
                "arrival": h.patients.arrival[:n].copy(),
                "severity": h.patients.severity[:n].astype(_INT),
                "personality": [PERSONALITIES[i] for i in self.persona_codes["personality"]],
                "language": [LANGUAGE_LEVELS[i] for i in self.persona_codes["language"]],
                "recall": [RECALL_LEVELS[i] for i in self.persona_codes["recall"]],
                "dazed": self.persona_codes["dazed"].astype(bool)},
        }
        ended = self._admit(0)
        if len(ended):
            records["clinic_consultations"] = self._consultation_rows(ended)
        return records

    # -- the phases ------------------------------------------------------------------------------

    def talking(self, step: int) -> np.ndarray:
        """Per doctor (hospital order), the patient (hospital index) it talks with at
        ``step``: of its consultations not waiting for a result, the one begun first; -1:
        none."""
        h = self.state.hospital
        lo, hi = h.first_open, h.n_patients
        p = h.patients
        ready = lo + np.flatnonzero((p.status[lo:hi] == IN_CONSULTATION)
                                    & (self.state.charts.ready_at[lo:hi] <= step))
        out = np.full(h.n_doctors, -1, dtype=_INT)
        if len(ready):
            ready = ready[np.lexsort((ready, p.start[ready], p.doctor[ready]))]
            doctors, first = np.unique(p.doctor[ready], return_index=True)
            out[doctors] = ready[first]
        return out

    def observe(self, agents: np.ndarray, ctx: StepContext) -> ClinicObservation:
        """Each doctor's consultation this step and its chart; nothing for the others."""
        doctor = self.agent_doctor[agents]
        current = self.talking(ctx.step)
        patient = np.where(doctor >= 0, current[np.maximum(doctor, 0)], -1)
        has = patient >= 0
        rows = np.maximum(patient, 0)
        c = self.state.charts
        return ClinicObservation(
            agents=agents, patient=patient,
            patient_agent=np.where(has, c.agent[rows], -1), doctor=doctor,
            turn=np.where(has, c.turns[rows], 0).astype(np.int32),
            log_post=c.log_post[rows] * has[:, None],
            asked=c.asked[rows] & has[:, None], step=ctx.step)

    def rule_policy(self, params: DoctorRuleParams) -> RuleDoctorPolicy:
        """Bayesian rule doctors over the library's knowledge table."""
        return RuleDoctorPolicy(params, self.table, self.config.max_turns, self.confirming,
                                self.knowledge)

    def apply(self, actions: ActionBatch[ClinicArgs], ctx: StepContext) -> Records:
        """Answer every doctor's turn (see the module docstring), end consultations that
        were diagnosed or ran out of turns, reopen those whose results came back, and admit
        the step's arrivals; return the turns' outcomes and the consultations that ended."""
        step, a = ctx.step, actions.args
        n = len(actions)
        a.answer = np.full(n, None, dtype=object)
        a.correct = np.zeros(n, dtype=bool)
        rows, idx = self._valid_turns(actions, step)
        ended: list[np.ndarray] = []
        if len(rows):
            ended.append(self._turns(actions, rows, idx, step))
        h, c = self.state.hospital, self.state.charts
        lo, hi = h.first_open, h.n_patients
        back = lo + np.flatnonzero((h.patients.status[lo:hi] == WAITING_TEST)
                                   & (c.ready_at[lo:hi] <= step + 1))
        h.patients.status[back] = IN_CONSULTATION
        ended.append(self._admit(step))
        done = np.concatenate(ended) if ended else np.zeros(0, _INT)
        return {"clinic_consultations": self._consultation_rows(done)} if len(done) else {}

    def _valid_turns(self, actions: ActionBatch[ClinicArgs], step: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the batch that are a doctor's turn in the consultation it talks in this
        step (others, e.g. a scripted action naming another patient, are ignored), and their
        patients' hospital indices."""
        patient = actions.args.patient
        doctor = self.agent_doctor[actions.agent]
        mine = (doctor >= 0) & (patient >= 0)
        rows = np.flatnonzero(mine)
        idx = self.index_of[patient[rows]]
        current = self.talking(step)
        ok = (idx >= 0) & (current[doctor[rows]] == idx)
        return rows[ok], idx[ok]

    def _draw(self, salt: int, keys: np.ndarray, turn: np.ndarray | None = None) -> np.ndarray:
        """Uniforms fixed by (seed, purpose ``salt``, key, turn): a patient answers the same
        whatever batch, order or replica it is in."""
        if turn is not None:
            keys = (np.asarray(keys).astype(np.uint64) * np.uint64(1 << 16)
                    + np.asarray(turn).astype(np.uint64))
        return keyed_uniform(self.world.rng.seed ^ salt, keys, 0)

    def has_finding(self, idx: np.ndarray, finding: np.ndarray) -> np.ndarray:
        """Whether patients (hospital indices) have findings (table columns): the case has
        it, and this patient presents it (the chief complaint always; another symptom with
        ``symptom_presence``; an abnormal test with ``test_sensitivity``), by draws keyed by
        (seed, patient, finding) so that asking twice gives one answer."""
        case = self.state.hospital.patients.case[idx]
        agent = self.state.charts.agent[idx]
        truth = self.case_truth[case, finding]
        complaint = self.case_complaint[case, finding]
        chance = np.where(self.table.is_test[finding], self.config.test_sensitivity,
                          self.config.symptom_presence)
        draw = self._draw(_PRESENCE, agent.astype(np.uint64) * np.uint64(1 << 20)
                          + finding.astype(np.uint64))
        return truth & (complaint | (draw < chance))

    def patient_says(self, idx: np.ndarray, finding: np.ndarray, keys: np.ndarray,
                     turn: np.ndarray) -> np.ndarray:
        """What rule patients (hospital indices) say when asked about findings: whether they
        have it (``has_finding``), except that a symptom is left out with the persona's
        ``miss_rate`` and answered wrongly with its ``wrong_rate`` (a test reports the truth);
        draws keyed by ``keys`` and ``turn``."""
        answer = self.has_finding(idx, finding)
        miss = self._draw(_MISS, keys, turn) < self.persona["miss_rate"][idx]
        wrong = self._draw(_WRONG, keys, turn) < self.persona["wrong_rate"][idx]
        return np.where(self.table.is_test[finding], answer,
                        np.where(wrong, ~answer, answer & ~miss))

    def _turns(self, actions: ActionBatch[ClinicArgs], rows: np.ndarray, idx: np.ndarray,
               step: int) -> np.ndarray:
        """Answer the valid turns; return the patients whose consultations ended."""
        a, c, table = actions.args, self.state.charts, self.table
        code = actions.action[rows].astype(_INT)
        doctor_agent = actions.agent[rows]
        bias = self.state.confirmation[doctor_agent]
        turn = c.turns[idx].astype(_INT)
        c.turns[idx] += 1
        self._count_problems(a.problems[rows])
        # a rule doctor's questions and tests, batched: answers and its differential
        finding = a.finding[rows]
        rule = (finding >= 0) & ((code == ASK) | (code == ORDER_TEST))
        positive = np.zeros(len(rows), dtype=bool)
        if rule.any():
            i = idx[rule]
            positive[rule] = self.patient_says(i, finding[rule], c.agent[i], turn[rule])
        spoken: dict[int, str] = {}
        if self.config.patients == "llm" and (code == ASK).any():
            spoken = self._llm_replies(a, rows, idx, code, rule, positive, step)
        if rule.any():
            f, i = finding[rule], idx[rule]
            params = DoctorParams(confirmation=bias[rule])
            likelihood = self.knowledge.tables(self.agent_doctor[doctor_agent[rule]])[1]
            c.log_post[i] = update(table, c.log_post[i], f, positive[rule], params, likelihood)
            c.asked[i, f] = True
            c.answers[i, f] = positive[rule]
        # the patient's confidence in its doctor moves with each turn (its persona's terms)
        agent = c.agent[idx]
        moved = (self.state.confidence[agent] + self.persona["confidence_turn"][idx]
                 + self.persona["confidence_test"][idx] * (code == ORDER_TEST)
                 - self.persona["confidence_bias"][idx] * bias)
        self.state.confidence[agent] = np.clip(moved, 0.0, 1.0)
        ended: list[int] = []
        unsure: list[tuple[int, int, Case]] = []  # diagnoses the string rule refused
        cases = self.library
        for k, (row, i) in enumerate(zip(rows.tolist(), idx.tolist(), strict=True)):
            case = cases[int(self.state.hospital.patients.case[i])]
            kind = int(code[k])
            if kind == ASK:
                reply = spoken.get(k) or (
                    ("Yes." if positive[k] else "No.") if rule[k]
                    else self._patient_reply(case, i, a.question[row] or "", turn[k]))
            elif kind == ORDER_TEST:
                reply = self._order(case, i, a.test[row] or "", bool(positive[k]), rule[k],
                                    step)
            elif kind == EXAMINE:
                reply = examination_reply(case, a.system[row])
            elif kind == DIAGNOSE:
                reply = self._diagnose(case, i, a, row, float(bias[k]))
                a.correct[row] = bool(c.correct[i])
                ended.append(i)
                if not c.correct[i] and self.config.judge == "llm" and self.world.llm:
                    unsure.append((row, i, case))
            else:
                reply = None  # a wasted turn
            a.answer[row] = reply
            if self.texts:
                c.transcript[i] += render_turn(_turn_of(a, row, kind), reply) + "\n"
        if unsure:
            self._llm_judge(a, unsure, step)
        # the turn limit: a consultation without a diagnosis after max_turns ends as a failure
        out_of_turns = idx[(c.turns[idx] >= self.config.max_turns) & (c.outcome[idx] == OPEN)]
        c.outcome[out_of_turns] = NO_DIAGNOSIS
        c.bias[out_of_turns] = self.state.confirmation[
            self.doctor_agent[self.state.hospital.patients.doctor[out_of_turns]]]
        done = np.concatenate((np.asarray(ended, dtype=_INT), out_of_turns))
        self._end(done, step)
        return done

    def _llm_replies(self, a: ClinicArgs, rows: np.ndarray, idx: np.ndarray, code: np.ndarray,
                     rule: np.ndarray, positive: np.ndarray, step: int) -> dict[int, str]:
        """Language-model patients answer this step's questions, in one batch; a rule
        doctor takes the reply's yes or no. Returns the replies by position in ``rows``; a
        patient whose reply does not validate answers by rule (counted)."""
        c, counts = self.state.charts, self.state.patient_llm
        asks = np.flatnonzero(code == ASK)
        case = self.state.hospital.patients.case[idx[asks]]
        messages = [reply_messages(self.library[int(k)], int(self.persona_index[i]),
                                   c.transcript[i], a.question[row] or "")
                    for k, i, row in zip(case.tolist(), idx[asks].tolist(),
                                         rows[asks].tolist(), strict=True)]
        answers = self.world.llm.ask(  # type: ignore[union-attr]
            messages, REPLY, keys=c.agent[idx[asks]].tolist(), purpose="clinic.patient",
            step=step)
        counts[0] += len(asks)
        spoken: dict[int, str] = {}
        for k, answer in zip(asks.tolist(), answers, strict=True):
            if answer is None:
                counts[1] += 1
                continue
            spoken[k] = answer.reply
            if rule[k] and answer.yes is not None:
                positive[k] = answer.yes
        return spoken

    def _patient_reply(self, case: Case, i: int, question: str, turn: int) -> str:
        """A rule patient's answer to a free-text question: yes or no for each symptom it
        names (with the patient's recall and confusion), else the part of its history the
        question is about, else its story."""
        keys = [k for k in find_symptoms(question)
                if f"symptom:{k}" in self.finding_index]
        patient = case.patient
        if keys:
            cols = np.array([self.finding_index[f"symptom:{k}"] for k in keys], dtype=_INT)
            idx = np.full(len(cols), i, dtype=_INT)
            # one draw per symptom the question names (the key tells them apart)
            draw_keys = self.state.charts.agent[idx] * 256 + np.arange(len(cols))
            has = self.patient_says(idx, cols, draw_keys, np.full(len(cols), turn, dtype=_INT))
            parts = [f"{'Yes' if h else 'No'}, I have {'' if h else 'not '}had "
                     f"{SYMPTOM_VOCABULARY[k].label}." for k, h in zip(keys, has.tolist(),
                                                                         strict=True)]
            return " ".join(parts)
        for pattern, topic in _HISTORY_TOPICS:
            if pattern.search(question):
                value = getattr(patient, topic)
                text = ", ".join(value) if isinstance(value, list) else value
                return text or "Nothing I know of."
        if turn == 0:
            return f"{patient.history} {patient.primary_symptom} is what bothers me most."
        return f"As I said, {patient.primary_symptom[:1].lower()}{patient.primary_symptom[1:]}."

    def _order(self, case: Case, i: int, test: str, positive: bool, rule: bool,
               step: int) -> str:
        """Carry out a test order: its result (after the turnaround: the consultation waits),
        its cost, and whether the case needs it."""
        c = self.state.charts
        outcome = result_of(case, test)
        info = TEST_VOCABULARY.get(outcome.name or "")
        if not rule and outcome.name is not None:
            col = self.finding_index.get(f"test:{outcome.name}")
            if col is not None:
                positive = bool(self.has_finding(np.array([i]), np.array([col]))[0])
                c.asked[i, col] = True
                c.answers[i, col] = positive
            else:
                positive = outcome.abnormal
        c.tests[i] += 1
        c.needed[i] += outcome.name in self.case_needed[int(self.state.hospital.patients.case[i])]
        c.cost[i] += info.cost if info is not None else 0.0
        wait = info.turnaround_min if info is not None else 0
        c.ready_at[i] = step + max(1, math.ceil(wait / self.step_minutes - 1e-9))
        if c.ready_at[i] > step + 1:
            self.state.hospital.patients.status[i] = WAITING_TEST
        reply = measurement_reply(case, test)
        if outcome.abnormal and not positive:  # this patient's test came back normal
            label = info.label if info is not None else outcome.name
            reply = f"RESULTS: {label}: {NORMAL_READINGS}"
        return reply

    def _diagnose(self, case: Case, i: int, a: ClinicArgs, row: int, bias: float) -> str:
        """Judge a diagnosis; record it on the chart."""
        c = self.state.charts
        text = a.diagnosis[row] or ""
        ranked = [d for d in (a.differential[row] or "").split("; ") if d] or [text]
        correct = diagnosis_matches(text, case)
        rank = rank_of_diagnosis(ranked, case)
        c.correct[i] = correct
        c.rank[i] = rank or 0
        c.outcome[i] = DIAGNOSED
        c.bias[i] = bias
        c.diagnosis[i] = text
        return "correct" if correct else "incorrect"

    def _llm_judge(self, a: ClinicArgs, unsure: list[tuple[int, int, Case]],
                   step: int) -> None:
        """Ask the language model, in one batch, whether each diagnosis the string rule
        refused names the case's diagnosis (AgentClinic's moderator); an accepted one becomes
        correct, an invalid answer counts as no (``judge_llm`` counts both)."""
        c, judge = self.state.charts, self.state.judge_llm
        answers = self.world.llm.ask(  # type: ignore[union-attr]
            [judge_messages(case, c.diagnosis[i]) for _, i, case in unsure], JUDGE,
            keys=[int(c.agent[i]) for _, i, _ in unsure], purpose="clinic.judge", step=step)
        judge[0] += len(unsure)
        for (row, i, _), answer in zip(unsure, answers, strict=True):
            if answer is None:
                judge[2] += 1
            elif answer.same:
                judge[1] += 1
                c.correct[i] = a.correct[row] = True
                a.answer[row] = "correct (language-model judge)"

    def _count_problems(self, problems: np.ndarray) -> None:
        codes = {code: j for j, code in enumerate(PROBLEMS)}
        for text in problems.tolist():
            for code in (text or "").split(","):
                if code in codes:
                    self.state.problems[codes[code]] += 1

    def _end(self, patients: np.ndarray, step: int) -> None:
        """Close ended consultations: the patient's confidence, the doctor's slot."""
        if not len(patients):
            return
        c = self.state.charts
        c.confidence[patients] = self.state.confidence[c.agent[patients]]
        if self.config.patients == "llm":
            self._llm_confidence(patients, step)
        doctors = self.state.hospital.patients.doctor[patients].astype(_INT)
        self.knowledge.remember(doctors, self.case_row[self.state.hospital.patients.case[patients]],
                                c.asked[patients], c.answers[patients])
        finish(self.state.hospital, patients, step,
               talk_min=c.turns[patients] * self.step_minutes)

    def _llm_confidence(self, patients: np.ndarray, step: int) -> None:
        """Language-model patients say how much they trust their doctor (0-10, as a share)
        when their consultation ends; without a valid answer the persona's rule value
        stays (counted)."""
        c, h, counts = self.state.charts, self.state.hospital, self.state.patient_llm
        messages = [confidence_messages(self.library[int(h.patients.case[i])],
                                        int(self.persona_index[i]), c.transcript[i])
                    for i in patients.tolist()]
        answers = self.world.llm.ask(  # type: ignore[union-attr]
            messages, CONFIDENCE, keys=c.agent[patients].tolist(),
            purpose="clinic.confidence", step=step)
        counts[2] += len(patients)
        for i, answer in zip(patients.tolist(), answers, strict=True):
            if answer is None:
                counts[3] += 1
            else:
                c.confidence[i] = self.state.confidence[c.agent[i]] = answer.confidence / 10

    def _admit(self, step: int) -> np.ndarray:
        """Admit the step's arrivals; open charts for new consultations; return the patients
        who left unseen."""
        h, c = self.state.hospital, self.state.charts
        got = admit(h, step, self.rules)
        new = got.patients
        if len(new):
            case = h.patients.case[new]
            complaint = self.case_complaint[case]
            log_prior, likelihood = self.knowledge.tables(got.doctors)
            c.log_post[new] = prior_log(self.table, complaint, log_prior=log_prior,
                                        likelihood=likelihood)
            c.asked[new] = c.answers[new] = complaint
            c.ready_at[new] = step + 1
            if self.texts:
                for i, k in zip(new.tolist(), case.tolist(), strict=True):
                    c.transcript[i] = f"Patient: {self.library[k].patient.primary_symptom}\n"
        c.outcome[got.left] = LEFT_UNSEEN
        return got.left.astype(_INT)

    def _consultation_rows(self, patients: np.ndarray) -> dict[str, Any]:
        h, c, cases = self.state.hospital, self.state.charts, self.library
        p = h.patients
        doctor = p.doctor[patients].astype(_INT)
        seen = doctor >= 0
        case = p.case[patients]
        return {
            "patient_id": c.agent[patients].copy(),
            "doctor_id": np.where(seen, self.doctor_agent[np.maximum(doctor, 0)], -1),
            "case_id": [cases[int(k)].id for k in case.tolist()],
            "specialty": [cases[int(k)].specialty for k in case.tolist()],
            "doctor_specialty": [specialty_name(int(h.doctors.specialty[d])) if d >= 0 else ""
                                 for d in doctor.tolist()],
            "outcome": [OUTCOMES[int(o)] for o in c.outcome[patients].tolist()],
            "arrival": p.arrival[patients].copy(),
            "started": p.start[patients].copy(),
            "waited_min": p.waited[patients].copy(),
            "turns": c.turns[patients].astype(_INT),
            "tests": c.tests[patients].astype(_INT),
            "tests_needed": c.needed[patients].astype(_INT),
            "tests_unnecessary": (c.tests[patients] - c.needed[patients]).astype(_INT),
            "cost": c.cost[patients].copy(),
            "diagnosis": [c.diagnosis[i] or None for i in patients.tolist()],
            "correct_diagnosis": [cases[int(k)].diagnosis for k in case.tolist()],
            "correct": c.correct[patients].copy(),
            "rank": c.rank[patients].astype(_INT),
            "doctor_bias": c.bias[patients].copy(),
            "confidence": c.confidence[patients].copy(),
        }

    def metrics(self, actions: ActionBatch[ClinicArgs], ctx: StepContext) -> dict[str, float]:
        """Accuracy, top-5 accuracy, turns, tests, cost, confidence, failures, the queue
        (see ``metrics.clinic_metrics``)."""
        return clinic_metrics(self.state, ctx.step, self.rules)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore the checkpoint (the patients' order and personas are rebuilt by
        ``__init__`` from the same seed)."""
        self.state.load_arrays(state)

    def agent_state(self) -> dict[str, np.ndarray]:
        """Doctors' confirmation bias and accuracy so far; patients' confidence in their
        doctor once their consultation ended (NaN otherwise)."""
        n = self.world.n_agents
        accuracy = np.full(n, np.nan)
        accuracy[self.doctor_agent] = doctor_accuracy(self.state)
        confidence = np.full(n, np.nan)
        c = self.state.charts
        confidence[c.agent] = c.confidence
        return {"confirmation": self.state.confirmation.copy(), "accuracy": accuracy,
                "confidence": confidence}

    def llm_adapter(self) -> ClinicLLM:
        """Language-model doctors on AgentClinic's protocol."""
        if self._llm is None:
            self._llm = ClinicLLM(self.config, self.library, self.state)
        return self._llm

    def reconfigure(self, config: ClinicConfig) -> None:
        """Take a new turn limit, patience, fallback wait or judge."""
        super().reconfigure(config)
        self.rules = self._rules(config)
        if self._llm is not None:
            self._llm.config = config


def _turn_of(a: ClinicArgs, row: int, kind: int) -> DoctorTurn:
    """The turn of batch row ``row`` as a ``DoctorTurn`` (for its transcript line)."""
    if kind == ASK:
        return DoctorTurn("ask", question=a.question[row] or "")
    if kind == ORDER_TEST:
        test = a.test[row] or ""
        return DoctorTurn("order_test", request=test,
                          test=test if test in TEST_VOCABULARY else None)
    if kind == EXAMINE:
        return DoctorTurn("examine", request=a.system[row] or "", system=a.system[row])
    if kind == DIAGNOSE:
        ranked = tuple(d for d in (a.differential[row] or "").split("; ") if d)
        return DoctorTurn("diagnose", diagnosis=a.diagnosis[row] or "", differential=ranked)
    return DoctorTurn.nothing()


__all__ = ["ClinicScenario"]
