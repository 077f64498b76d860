"""The hospital's queueing mechanics, batched: arrivals, triage, the priority queue, doctors with
specialties and capacities, consultations that wait for test results, patients who leave, and
the measures of it all. Pure functions over numpy arrays; the scenario that drives them (and
the doctors who decide inside consultations) comes elsewhere.

Core objects:
    ArrivalModel: Poisson arrivals with an hourly profile and a daily total, each patient a
        case of the library drawn from a specialty mix; ``arrivals_for`` draws one step's
        patients, ``arrival_counts`` the counts of many steps.
    triage, triage_levels: the severity level (1 = immediate .. 5 = non-urgent) from vital
        signs, a high-risk chief complaint and the tests a case needs (an illustrative
        ESI-like rule, see ``triage``).
    CaseFacts: what the hospital needs of each case of a library (specialty, severity).
    QueueRules: the clock (minutes per step and per turn), the wait after which a patient
        may see any doctor, and the patience after which a waiting patient leaves.
    HospitalState: the ``ArrayState`` of patients (``PatientArrays``) and doctors
        (``DoctorArrays``): what a checkpoint saves and restores exactly.
    arrive, advance, admit, schedule, finish: one step's queue operations.
    metrics, utilisation: queue length, waiting times, throughput, utilisation, patients
        who left.

The clock: step ``s`` is minute ``s * step_minutes`` since the start, and a step's operations
happen at that minute. Times are resolved to the step: the patients ``arrivals_for(s)`` draws
arrive during the step's minutes and join the queue at step ``s``, so waiting times are
multiples of the step. One step of the hospital, in order:

1. ``advance(state, s)``: consultations whose talk is over start waiting for their test
   results; consultations that reach their planned end are finished (their doctors freed).
2. ``arrive(state, s, cases, facts)``: the step's new patients join the queue.
3. ``admit(state, s, rules)``: patients who have waited longer than their patience leave;
   free doctors take patients from the queue.
4. ``schedule(state, admitted, turns, test_min, rules)``: the plan of each new consultation
   (its turns and its minutes of waiting for test results), known once its doctor has run it.

Consultations and doctors' time. A consultation holds one of its doctor's ``capacity`` slots
from its start to its end. It lasts its talk (``turns * turn_minutes``) plus its waits for
test results (``result_wait_minutes``: each test's ``turnaround_min``), talk first, then the
waits (where in the consultation the waits fall changes only the status seen between steps,
not when it ends nor its doctor's time). While a patient waits for a result, the slot stays
held (the consultation is open on the doctor's list), but the doctor is not talking: a doctor
with capacity 1 waits with the patient, one with capacity 2 or more sees other patients with
the other slots. Hence two measures: ``utilisation``, the minutes of talk over the slot-minutes
available (capacity x minutes elapsed), and ``occupancy``, the minutes slots are held over the
same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from populace.simulator import ArrayState

from .cases import Case
from .vocabulary import (
    SPECIALTIES,
    TEST_VOCABULARY,
    find_symptoms,
    implied_symptoms,
    normalise_test,
)

# --- specialties ----------------------------------------------------------------------------

GENERAL = -1
"""The specialty code of a general doctor (and of no specialty)."""

GENERAL_NAME = "general"


def specialty_code(name: str) -> int:
    """The code of a specialty: its index in ``vocabulary.SPECIALTIES``; ``GENERAL`` (-1) for
    ``"general"``."""
    if name == GENERAL_NAME:
        return GENERAL
    try:
        return SPECIALTIES.index(name)
    except ValueError:
        raise ValueError(f"unknown specialty {name!r}; one of {GENERAL_NAME}, "
                         f"{', '.join(SPECIALTIES)}") from None


def specialty_name(code: int) -> str:
    """The name of a specialty code (``"general"`` for ``GENERAL``)."""
    return GENERAL_NAME if code == GENERAL else SPECIALTIES[code]


# --- arrivals -------------------------------------------------------------------------------

ED_HOURLY: tuple[float, ...] = (
    2.6, 2.1, 1.8, 1.6, 1.5, 1.6, 2.2, 3.2, 4.6, 5.6, 6.1, 6.2,
    6.0, 5.9, 5.7, 5.6, 5.5, 5.5, 5.4, 5.1, 4.6, 4.0, 3.4, 2.8,
)
"""An illustrative emergency-department day: relative arrival rates of hours 0..23 (quiet
before dawn, a late-morning peak, busy into the evening). Not measured data."""

MINUTES_PER_DAY = 1440


@dataclass(frozen=True, eq=False)
class ArrivalModel:
    """Patients arriving as a Poisson process whose rate follows an hourly profile.

    The rate in hour ``h`` of every day is ``daily_total * hourly[h] / 60`` patients a minute
    (``hourly`` normalised to sum 1), so a day brings ``daily_total`` patients on average; the
    number arriving in a step is Poisson with the rate's integral over the step's minutes,
    exact for steps that straddle hours. Each patient's case is drawn independently with
    ``case_p``.

    Attributes:
        daily_total: mean patients per day.
        hourly: (24,) shares of the day's patients per hour, summing to 1.
        case_p: (cases,) the probability of each case of the library.
        step_minutes: minutes per step.
        start_minute: the minute of the day at which step 0 begins (0: midnight).
    """

    daily_total: float
    hourly: np.ndarray
    case_p: np.ndarray
    step_minutes: float = 5.0
    start_minute: float = 0.0

    def __post_init__(self) -> None:
        hourly = np.asarray(self.hourly, dtype=np.float64)
        if hourly.shape != (24,) or (hourly < 0).any() or not hourly.sum() > 0:
            raise ValueError("hourly: 24 non-negative relative rates, not all zero")
        case_p = np.asarray(self.case_p, dtype=np.float64)
        if case_p.ndim != 1 or not len(case_p) or (case_p < 0).any() or not case_p.sum() > 0:
            raise ValueError("case_p: one non-negative weight per case, not all zero")
        if not self.daily_total >= 0 or not self.step_minutes > 0:
            raise ValueError("daily_total must be >= 0 and step_minutes > 0")
        object.__setattr__(self, "hourly", hourly / hourly.sum())
        object.__setattr__(self, "case_p", case_p / case_p.sum())

    @classmethod
    def from_library(cls, cases: Sequence[Case], *, daily_total: float,
                     hourly: Sequence[float] = ED_HOURLY,
                     mix: Mapping[str, float] | None = None, step_minutes: float = 5.0,
                     start_minute: float = 0.0) -> ArrivalModel:
        """Arrivals over a case library, cases drawn by ``case_weights(cases, mix)``."""
        return cls(daily_total=daily_total, hourly=np.asarray(hourly, dtype=np.float64),
                   case_p=case_weights(cases, mix), step_minutes=step_minutes,
                   start_minute=start_minute)

    def _cumulative(self, minute: np.ndarray) -> np.ndarray:
        """Expected arrivals from minute 0 of day 0 to ``minute``."""
        day, within = np.divmod(minute, MINUTES_PER_DAY)
        hour = np.minimum((within // 60).astype(np.int64), 23)
        before = np.concatenate(([0.0], np.cumsum(self.hourly)))[hour]
        share = before + self.hourly[hour] * (within - 60.0 * hour) / 60.0
        return self.daily_total * (day + share)

    def expected(self, steps: int | np.ndarray) -> np.ndarray:
        """The expected number of arrivals in each of ``steps``."""
        s = np.asarray(steps, dtype=np.float64)
        t0 = self.start_minute + s * self.step_minutes
        return self._cumulative(t0 + self.step_minutes) - self._cumulative(t0)

    def hour_of(self, steps: int | np.ndarray) -> np.ndarray:
        """The hour of the day (0..23) in which each step begins."""
        minute = self.start_minute + np.asarray(steps, dtype=np.float64) * self.step_minutes
        return (np.mod(minute, MINUTES_PER_DAY) // 60).astype(np.int64)


def case_weights(cases: Sequence[Case], mix: Mapping[str, float] | None = None) -> np.ndarray:
    """The probability of each case when patients come in a specialty mix.

    Args:
        cases: the library.
        mix: relative weight per specialty (specialties left out get none); a specialty's
            weight is shared equally by its cases. None: every case equally likely (the
            library's own mix).

    Returns:
        (cases,) probabilities summing to 1.

    Raises:
        ValueError: a specialty of ``mix`` that no case has, a negative weight, or no weight.
    """
    specialty = [c.specialty for c in cases]
    if mix is None:
        return np.full(len(specialty), 1.0 / len(specialty))
    counts: dict[str, int] = {}
    for name in specialty:
        counts[name] = counts.get(name, 0) + 1
    unknown = sorted(set(mix) - set(counts))
    if unknown:
        raise ValueError(f"mix: no case of {', '.join(unknown)} in the library (it has "
                         f"{', '.join(counts)})")
    if any(w < 0 for w in mix.values()) or not sum(mix.values()) > 0:
        raise ValueError("mix: weights must be non-negative, and not all zero")
    weights = np.array([mix.get(name, 0.0) / counts[name] for name in specialty])
    return weights / weights.sum()


def arrival_counts(steps: int | np.ndarray, model: ArrivalModel,
                   rng: np.random.Generator) -> np.ndarray:
    """The number of patients arriving in each of ``steps`` (Poisson, one draw per step)."""
    return rng.poisson(model.expected(steps))


def arrivals_for(step: int, model: ArrivalModel, rng: np.random.Generator) -> np.ndarray:
    """The patients arriving in ``step``: one case index each (their number is Poisson).

    Deterministic for a generator's seed: in a run, pass the step's own stream
    (``ctx.random("clinic.arrivals")``) so that a resumed run draws the same patients.
    """
    n = int(rng.poisson(float(model.expected(step))))
    return rng.choice(len(model.case_p), size=n, p=model.case_p).astype(np.int64)


# --- triage ---------------------------------------------------------------------------------

IMMEDIATE, EMERGENT, URGENT, LESS_URGENT, NON_URGENT = 1, 2, 3, 4, 5
"""Severity levels, ESI-like: 1 is seen first."""

VITALS = ("temperature_c", "heart_rate_bpm", "respiratory_rate_per_min", "systolic_bp_mmhg",
          "oxygen_saturation_pct")
"""The vital signs triage reads (``case.examination.vital_signs`` fields)."""


HIGH_RISK_COMPLAINTS = frozenset({
    "chest_pain", "one_sided_weakness", "speech_difficulty", "sudden_severe_headache",
    "syncope", "seizure", "vomiting_blood", "confusion", "vision_loss", "scrotal_pain",
    "neck_stiffness"})
"""Chief complaints that make a patient emergent (ESI's "high-risk situation": possible
acute coronary syndrome or dissection, stroke, subarachnoid haemorrhage, syncope, seizure,
haematemesis, new confusion, sudden visual loss, testicular torsion, meningism), whatever its
vital signs. Specific keys count through the general ones they imply (pleuritic chest pain
is chest pain)."""


def triage(*, temperature_c: np.ndarray, heart_rate_bpm: np.ndarray,
           respiratory_rate_per_min: np.ndarray, systolic_bp_mmhg: np.ndarray,
           oxygen_saturation_pct: np.ndarray, resources: np.ndarray,
           high_risk: np.ndarray | None = None) -> np.ndarray:
    """Severity levels from vital signs and expected resources, batched (NaN: not measured,
    which never raises the level).

    The rule is ESI-shaped and its thresholds are illustrative, not clinical guidance:

    - 1, immediate (a life-threatening vital sign): SpO2 < 88 %, systolic BP < 80 mmHg,
      heart rate < 40 or > 150 /min, respiratory rate < 8 or > 35 /min, temperature < 32 or
      >= 41 degrees C.
    - 2, emergent (a danger-zone vital sign): SpO2 < 92 %, systolic BP < 90 or >= 180 mmHg,
      heart rate < 50 or > 120 /min, respiratory rate > 26 /min, temperature < 35 or
      >= 39.5 degrees C; or a high-risk situation (``high_risk``).
    - otherwise by the resources (tests) the patient is expected to need, as ESI does:
      3 (urgent) for two or more, 4 (less urgent) for one, 5 (non-urgent) for none.

    Args:
        temperature_c, heart_rate_bpm, respiratory_rate_per_min, systolic_bp_mmhg,
            oxygen_saturation_pct: one value per patient (NaN where unknown).
        resources: the number of tests each patient is expected to need.
        high_risk: whether each patient is in a high-risk situation (ESI level 2 whatever
            its vital signs; None: nobody).

    Returns:
        int8 levels, 1..5.
    """
    t, hr, rr, sbp, spo2 = (np.asarray(v, dtype=np.float64) for v in (
        temperature_c, heart_rate_bpm, respiratory_rate_per_min, systolic_bp_mmhg,
        oxygen_saturation_pct))
    with np.errstate(invalid="ignore"):
        immediate = ((spo2 < 88) | (sbp < 80) | (hr < 40) | (hr > 150) | (rr < 8) | (rr > 35)
                     | (t < 32) | (t >= 41))
        emergent = ((spo2 < 92) | (sbp < 90) | (sbp >= 180) | (hr < 50) | (hr > 120)
                    | (rr > 26) | (t < 35) | (t >= 39.5))
    if high_risk is not None:
        emergent = emergent | np.asarray(high_risk, dtype=bool)
    resources = np.asarray(resources)
    by_resources = np.where(resources >= 2, URGENT,
                            np.where(resources == 1, LESS_URGENT, NON_URGENT))
    level = np.where(immediate, IMMEDIATE, np.where(emergent, EMERGENT, by_resources))
    return level.astype(np.int8)


def expected_resources(case: Case) -> int:
    """The tests a case's patient is expected to need: its decisive tests, or, for an imported
    case that marks none, its abnormal tests."""
    return len(case.decisive_tests()) or len(case.abnormal_tests())


def high_risk(case: Case) -> bool:
    """Whether the case's chief complaint is a high-risk situation: it names a symptom of
    ``HIGH_RISK_COMPLAINTS`` (or one that implies it) that the case has."""
    named = set(find_symptoms(case.patient.primary_symptom)) & set(case.symptom_keys)
    return bool((named | implied_symptoms(named)) & HIGH_RISK_COMPLAINTS)


def triage_levels(cases: Sequence[Case]) -> np.ndarray:
    """Each case's severity level by ``triage`` from its vital signs, its chief complaint
    (``high_risk``) and ``expected_resources`` (the library has no severity field of its
    own)."""
    vitals = {name: np.array([_value(getattr(c.examination.vital_signs, name)) for c in cases])
              for name in VITALS}
    resources = np.array([expected_resources(c) for c in cases], dtype=np.int64)
    risk = np.array([high_risk(c) for c in cases], dtype=bool)
    return triage(**vitals, resources=resources, high_risk=risk)


def _value(x: float | None) -> float:
    return np.nan if x is None else float(x)


@dataclass(frozen=True, eq=False)
class CaseFacts:
    """What the hospital needs of each case of a library, by case index.

    Attributes:
        specialty: (cases,) specialty codes (``specialty_code``).
        severity: (cases,) triage levels (``triage_levels``).
    """

    specialty: np.ndarray
    severity: np.ndarray

    @classmethod
    def from_library(cls, cases: Sequence[Case]) -> CaseFacts:
        """The facts of every case of ``cases``."""
        return cls(specialty=np.array([specialty_code(c.specialty) for c in cases],
                                      dtype=np.int16),
                   severity=triage_levels(cases))


# --- tests' turnaround ----------------------------------------------------------------------

def turnaround_minutes(test: str) -> float:
    """Minutes from ordering ``test`` (free text) to its result: the vocabulary's
    ``turnaround_min``; 0 for a test the vocabulary does not know (answered at once)."""
    name = normalise_test(test)
    return 0.0 if name is None else float(TEST_VOCABULARY[name].turnaround_min)


def result_wait_minutes(ordered: Iterable[Iterable[Iterable[str]]]) -> np.ndarray:
    """Per consultation, the minutes it waits for test results.

    Args:
        ordered: per consultation, its orders in sequence, each order the tests requested
            together (the rule doctor orders one test a turn: ``[["ecg"], ["troponin"]]``).
            Tests of one order run in parallel (the order waits for the slowest); orders wait
            one after another.

    Returns:
        float64 minutes, one per consultation.
    """
    return np.array([sum(max((turnaround_minutes(t) for t in order), default=0.0)
                         for order in orders) for orders in ordered], dtype=np.float64)


# --- rules and state ------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueRules:
    """How the hospital runs.

    Attributes:
        step_minutes: minutes per step (the clock's resolution).
        turn_minutes: minutes a consultation turn (a question or an order) lasts.
        fallback_after_min: a patient who has waited more than this may see a doctor of any
            specialty when neither a doctor of its own specialty nor a general one is free.
        immediate_any_doctor: severity-1 patients may see any doctor at once (no fallback
            wait), still after their own specialty's and the general doctors.
        patience_min: a patient still waiting (not yet seen) after more than this leaves
            without being seen; ``math.inf``: nobody leaves.
    """

    step_minutes: float = 5.0
    turn_minutes: float = 2.0
    fallback_after_min: float = 60.0
    immediate_any_doctor: bool = True
    patience_min: float = 360.0

    def __post_init__(self) -> None:
        if not (self.step_minutes > 0 and self.turn_minutes >= 0
                and self.fallback_after_min >= 0 and self.patience_min >= 0):
            raise ValueError("step_minutes must be > 0 and the other minutes >= 0")


WAITING, IN_CONSULTATION, WAITING_TEST, DONE, LEFT = range(5)
"""Patient statuses (``PatientArrays.status``)."""

STATUS_NAMES = ("waiting", "in_consultation", "waiting_test", "done", "left")


def _column(dtype: Any, fill: Any) -> Any:
    """A per-entity array field that grows with ``fill``."""
    return field(default_factory=lambda: np.zeros(0, dtype=dtype), metadata={"fill": fill})


@dataclass
class PatientArrays(ArrayState):
    """Per-patient arrays, patient id = position. They have room for more patients than have
    come: only the first ``HospitalState.n_patients`` entries are patients. Steps are -1 and
    minutes NaN until they happen."""

    arrival: np.ndarray = _column(np.int64, -1)
    """Step of arrival."""
    case: np.ndarray = _column(np.int64, -1)
    """Index of the case in the library."""
    specialty: np.ndarray = _column(np.int16, GENERAL)
    """The case's specialty code."""
    severity: np.ndarray = _column(np.int8, NON_URGENT)
    """Triage level, 1 (immediate) .. 5."""
    status: np.ndarray = _column(np.int8, WAITING)
    """``WAITING``, ``IN_CONSULTATION``, ``WAITING_TEST``, ``DONE`` or ``LEFT``."""
    doctor: np.ndarray = _column(np.int32, -1)
    """The doctor seeing the patient (-1: none yet)."""
    start: np.ndarray = _column(np.int64, -1)
    """Step the consultation began."""
    test_from: np.ndarray = _column(np.int64, -1)
    """Step the planned talk ends and the wait for test results begins."""
    due: np.ndarray = _column(np.int64, -1)
    """Step the planned consultation ends (-1: not planned; ``finish`` ends it)."""
    end: np.ndarray = _column(np.int64, -1)
    """Step the consultation ended, or the patient left."""
    waited: np.ndarray = _column(np.float64, np.nan)
    """Minutes waited before being seen (or before leaving)."""
    talk_min: np.ndarray = _column(np.float64, 0.0)
    """Planned minutes of talk (turns x turn minutes)."""
    test_min: np.ndarray = _column(np.float64, 0.0)
    """Planned minutes of waiting for test results."""


@dataclass
class DoctorArrays(ArrayState):
    """Per-doctor arrays, doctor id = position."""

    specialty: np.ndarray = _column(np.int16, GENERAL)
    """Specialty code (``GENERAL``: a general doctor)."""
    capacity: np.ndarray = _column(np.int32, 1)
    """Concurrent consultations at most."""
    busy: np.ndarray = _column(np.int32, 0)
    """Consultations open now (slots held)."""
    done: np.ndarray = _column(np.int64, 0)
    """Consultations finished."""
    busy_min: np.ndarray = _column(np.float64, 0.0)
    """Minutes of talk in finished consultations."""
    held_steps: np.ndarray = _column(np.int64, 0)
    """Steps slots were held by finished consultations (talk and waits for results)."""


@dataclass
class HospitalState(ArrayState):
    """The hospital: its patients, its doctors, how many patients have come, and the first
    patient who may still be waiting or in consultation (the queue operations look no
    earlier). ``to_arrays`` / ``load_arrays`` save and restore all of it."""

    patients: PatientArrays = field(default_factory=PatientArrays)
    doctors: DoctorArrays = field(default_factory=DoctorArrays)
    n_patients: int = 0
    first_open: int = 0

    @classmethod
    def create(cls, doctors: Sequence[str], capacity: int | Sequence[int] = 1) -> HospitalState:
        """A hospital with no patients yet.

        Args:
            doctors: each doctor's specialty name (a ``vocabulary.SPECIALTIES`` name, or
                ``"general"``).
            capacity: concurrent consultations per doctor (one for all, or one each).
        """
        codes = np.array([specialty_code(s) for s in doctors], dtype=np.int16)
        cap = np.broadcast_to(np.asarray(capacity, dtype=np.int32), codes.shape).copy()
        if (cap < 1).any():
            raise ValueError("capacity: at least 1 consultation per doctor")
        n = len(codes)
        staff = DoctorArrays(specialty=codes, capacity=cap, busy=np.zeros(n, np.int32),
                             done=np.zeros(n, np.int64), busy_min=np.zeros(n),
                             held_steps=np.zeros(n, np.int64))
        return cls(doctors=staff)

    @property
    def n_doctors(self) -> int:
        """The number of doctors."""
        return len(self.doctors.specialty)

    def patient_table(self) -> dict[str, np.ndarray]:
        """Copies of the per-patient arrays, trimmed to the patients who have come."""
        n = self.n_patients
        return {f.name: getattr(self.patients, f.name)[:n].copy()
                for f in fields(self.patients)}


def _grow(patients: PatientArrays, size: int) -> None:
    """Make room for ``size`` patients (doubling, so that arrivals cost amortised O(1))."""
    room = len(patients.arrival)
    if size <= room:
        return
    new = max(size, 2 * room, 256)
    for f in fields(patients):
        old = getattr(patients, f.name)
        grown = np.full(new, f.metadata["fill"], dtype=old.dtype)
        grown[:room] = old
        setattr(patients, f.name, grown)


def _window(state: HospitalState) -> tuple[int, int]:
    return state.first_open, state.n_patients


def _settle(state: HospitalState) -> None:
    """Move ``first_open`` past patients who are done or gone."""
    lo, hi = _window(state)
    closed = state.patients.status[lo:hi] >= DONE
    open_ = np.flatnonzero(~closed)
    state.first_open = lo + int(open_[0]) if len(open_) else hi


# --- a step's operations --------------------------------------------------------------------

def arrive(state: HospitalState, step: int, cases: np.ndarray, facts: CaseFacts) -> np.ndarray:
    """Add patients of ``cases`` (case indices) arriving at ``step`` to the queue.

    Returns:
        Their patient ids.
    """
    cases = np.asarray(cases, dtype=np.int64)
    lo = state.n_patients
    hi = lo + len(cases)
    _grow(state.patients, hi)
    p = state.patients
    p.arrival[lo:hi] = step
    p.case[lo:hi] = cases
    p.specialty[lo:hi] = facts.specialty[cases]
    p.severity[lo:hi] = facts.severity[cases]
    p.status[lo:hi] = WAITING
    state.n_patients = hi
    return np.arange(lo, hi, dtype=np.int64)


class Admission(NamedTuple):
    """What one admission round did."""

    patients: np.ndarray
    """The patients who began a consultation, in queue order."""
    doctors: np.ndarray
    """Their doctors."""
    left: np.ndarray
    """The patients who left without being seen."""


def queue(state: HospitalState, step: int) -> np.ndarray:
    """The patients waiting at ``step`` in priority order: by severity (1 first), then
    arrival, then id."""
    lo, hi = _window(state)
    p = state.patients
    waiting = lo + np.flatnonzero((p.status[lo:hi] == WAITING) & (p.arrival[lo:hi] <= step))
    return waiting[np.lexsort((waiting, p.arrival[waiting], p.severity[waiting]))]


def admit(state: HospitalState, step: int, rules: QueueRules) -> Admission:
    """Let impatient patients leave, then fill the doctors' free slots from the queue.

    Patients who have waited more than ``rules.patience_min`` leave first. Then three rounds,
    each taking patients in queue order (``queue``: severity, then arrival) and giving each
    doctor's free slots to them least-loaded doctor first (fewest open consultations, then
    lowest id):

    1. each patient to a doctor of its case's specialty (a case of none skips this);
    2. those still waiting to a general doctor;
    3. those still waiting who have waited more than ``rules.fallback_after_min`` (and, with
       ``rules.immediate_any_doctor``, severity-1 patients at once) to any doctor with a free
       slot.

    A specialist's slots thus go to its own specialty first and to others only when they are
    left over in round 3. Patients whose waiting time is 0 (they arrived at ``step``) may be
    seen at once.

    Returns:
        ``Admission(patients, doctors, left)``.
    """
    p, d = state.patients, state.doctors
    order = queue(state, step)
    waited = (step - p.arrival[order]) * rules.step_minutes
    gone = waited > rules.patience_min
    left = order[gone]
    p.status[left] = LEFT
    p.end[left] = step
    p.waited[left] = waited[gone]
    order, waited = order[~gone], waited[~gone]

    taken = np.full(len(order), -1, dtype=np.int64)
    specialist = d.specialty >= 0
    rounds = (
        (np.ones(len(order), bool), specialist, True),
        (np.ones(len(order), bool), ~specialist, False),
        ((waited > rules.fallback_after_min)
         | (rules.immediate_any_doctor & (p.severity[order] == IMMEDIATE)),
         np.ones(len(specialist), bool), False),
    )
    for eligible, doctors, by_specialty in rounds:
        todo = np.flatnonzero((taken < 0) & eligible)
        free = np.where(doctors, d.capacity - d.busy, 0)
        if not len(todo) or not free.any():
            continue
        slots = _slots(d.busy, free)
        if by_specialty:
            got = _pair(p.specialty[order[todo]].astype(np.int64),
                        d.specialty[slots].astype(np.int64), len(SPECIALTIES))
        else:
            got = np.where(np.arange(len(todo)) < len(slots), np.arange(len(todo)), -1)
        hit = got >= 0
        chosen = slots[got[hit]]
        taken[todo[hit]] = chosen
        d.busy += np.bincount(chosen, minlength=len(d.busy)).astype(d.busy.dtype)

    seen = taken >= 0
    patients, doctors = order[seen], taken[seen]
    p.status[patients] = IN_CONSULTATION
    p.doctor[patients] = doctors
    p.start[patients] = step
    p.waited[patients] = waited[seen]
    if len(left):
        _settle(state)
    return Admission(patients, doctors, left)


def _slots(busy: np.ndarray, free: np.ndarray) -> np.ndarray:
    """One entry per free slot, its doctor, in fill order: by the load it would add (a
    doctor's open consultations plus the slots already handed out), then doctor id."""
    doctor = np.repeat(np.arange(len(free)), free)
    first = np.repeat(np.cumsum(free) - free, free)
    load = busy[doctor] + (np.arange(len(doctor)) - first)
    return doctor[np.lexsort((doctor, load))]


def _rank_in_group(group: np.ndarray, n_groups: int) -> np.ndarray:
    """Each entry's rank among the entries of its group, in their order."""
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - starts[group[order]]
    return rank


def _pair(patient_group: np.ndarray, slot_group: np.ndarray, n_groups: int) -> np.ndarray:
    """For patients and slots in fill order, the r-th patient of each group gets the r-th slot
    of that group: each patient's slot index, or -1. Patients of a negative group get none."""
    out = np.full(len(patient_group), -1, dtype=np.int64)
    ok = patient_group >= 0
    group = patient_group[ok]
    rank = _rank_in_group(group, n_groups)
    slot_order = np.argsort(slot_group, kind="stable")
    counts = np.bincount(slot_group, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    hit = rank < counts[group]
    got = np.full(len(group), -1, dtype=np.int64)
    got[hit] = slot_order[starts[group[hit]] + rank[hit]]
    out[ok] = got
    return out


def schedule(state: HospitalState, patients: np.ndarray, turns: np.ndarray,
             test_min: np.ndarray, rules: QueueRules) -> None:
    """Plan consultations that have begun: their talk, then their waits for test results.

    A consultation that began at step ``start`` waits for its results from step
    ``start + ceil(talk / step)`` and ends at ``start + ceil((talk + waits) / step)`` (at
    least one step after it began), where ``talk = turns * rules.turn_minutes``.

    Args:
        patients: patients in consultation (as ``admit`` returned them).
        turns: each consultation's turns.
        test_min: each consultation's minutes of waiting for results
            (``result_wait_minutes``).

    Raises:
        ValueError: a patient who is not in consultation, or a negative duration.
    """
    patients = np.asarray(patients, dtype=np.int64)
    p = state.patients
    if (p.status[patients] != IN_CONSULTATION).any():
        raise ValueError("schedule: every patient must be in consultation")
    talk = np.broadcast_to(np.asarray(turns, dtype=np.float64) * rules.turn_minutes,
                           patients.shape)
    wait = np.broadcast_to(np.asarray(test_min, dtype=np.float64), patients.shape)
    if (talk < 0).any() or (wait < 0).any():
        raise ValueError("schedule: turns and test minutes must be >= 0")
    start = p.start[patients]
    p.talk_min[patients] = talk
    p.test_min[patients] = wait
    p.test_from[patients] = np.where(wait > 0, start + _steps(talk, rules), -1)
    p.due[patients] = start + np.maximum(_steps(talk + wait, rules), 1)


def _steps(minutes: np.ndarray, rules: QueueRules) -> np.ndarray:
    """Whole steps that ``minutes`` take (rounded up; float noise below 1e-9 ignored)."""
    return np.ceil(minutes / rules.step_minutes - 1e-9).astype(np.int64)


def advance(state: HospitalState, step: int) -> np.ndarray:
    """Move planned consultations on to ``step``: those whose talk is over wait for their test
    results; those that reach their planned end are finished.

    Returns:
        The patients finished, by id.
    """
    lo, hi = _window(state)
    p = state.patients
    status, due = p.status[lo:hi], p.due[lo:hi]
    planned = (status == IN_CONSULTATION) | (status == WAITING_TEST)
    ending = planned & (due >= 0) & (due <= step)
    testing = ((status == IN_CONSULTATION) & (p.test_from[lo:hi] >= 0)
               & (p.test_from[lo:hi] <= step) & ~ending)
    status[testing] = WAITING_TEST
    finished = lo + np.flatnonzero(ending)
    finish(state, finished, step)
    return finished


def finish(state: HospitalState, patients: np.ndarray, step: int,
           talk_min: np.ndarray | None = None) -> None:
    """End the consultations of ``patients`` at ``step``: they are done and their doctors'
    slots free.

    Their doctors are credited with the steps the slot was held and with the minutes of
    talk: ``talk_min`` when given (a consultation its caller ran and ends itself), else the
    talk ``schedule`` planned (0 for a consultation never scheduled).

    Raises:
        ValueError: a patient who is not in consultation or waiting for a test result, or
            listed twice.
    """
    patients = np.asarray(patients, dtype=np.int64)
    if not len(patients):
        return
    p, d = state.patients, state.doctors
    status = p.status[patients]
    if ((status != IN_CONSULTATION) & (status != WAITING_TEST)).any():
        raise ValueError("finish: every patient must be in consultation or waiting for a test")
    if len(np.unique(patients)) != len(patients):
        raise ValueError("finish: a patient is listed twice")
    if talk_min is not None:
        p.talk_min[patients] = talk_min
    doctor = p.doctor[patients]
    n = len(d.busy)
    p.status[patients] = DONE
    p.end[patients] = step
    d.busy -= np.bincount(doctor, minlength=n).astype(d.busy.dtype)
    d.done += np.bincount(doctor, minlength=n)
    d.busy_min += np.bincount(doctor, weights=p.talk_min[patients], minlength=n)
    d.held_steps += np.bincount(doctor, weights=step - p.start[patients],
                                minlength=n).astype(np.int64)
    _settle(state)


# --- measures -------------------------------------------------------------------------------

def utilisation(state: HospitalState, step: int, rules: QueueRules) -> np.ndarray:
    """Per doctor, minutes of talk over the slot-minutes available up to ``step``
    (``capacity * step * step_minutes``); NaN at step 0. Talk is counted when a consultation
    ends."""
    available = state.doctors.capacity * (step * rules.step_minutes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(available > 0, state.doctors.busy_min / np.maximum(available, 1e-300),
                        np.nan)


def metrics(state: HospitalState, step: int, rules: QueueRules) -> dict[str, float]:
    """The hospital's measures after ``step``'s operations.

    Returns:
        ``queue`` (patients waiting), ``in_consultation``, ``waiting_test``, ``arrived``,
        ``seen`` (consultations begun), ``done``, ``left`` (left without being seen),
        ``left_share`` (of patients who are no longer waiting), ``wait_mean``,
        ``wait_median``, ``wait_p90`` (minutes from arrival to consultation, over patients
        seen), ``throughput_per_hour`` (consultations finished per hour elapsed),
        ``utilisation`` (talk minutes over available slot-minutes, every doctor together) and
        ``occupancy`` (minutes slots were held, open consultations included, over the
        same). NaN where undefined.
    """
    n = state.n_patients
    p, d = state.patients, state.doctors
    status = p.status[:n]
    counts = np.bincount(status, minlength=len(STATUS_NAMES))
    arrived = p.arrival[:n] <= step
    queue_length = int(((status == WAITING) & arrived).sum())
    seen = p.start[:n] >= 0
    waits = p.waited[:n][seen]
    elapsed = step * rules.step_minutes
    slot_minutes = float(d.capacity.sum()) * elapsed
    lo, hi = _window(state)
    open_ = (p.status[lo:hi] == IN_CONSULTATION) | (p.status[lo:hi] == WAITING_TEST)
    held_steps = int(d.held_steps.sum()) + int((step - p.start[lo:hi][open_]).sum())
    nan = float("nan")
    resolved = int(seen.sum() + counts[LEFT])
    return {
        "queue": float(queue_length),
        "in_consultation": float(counts[IN_CONSULTATION]),
        "waiting_test": float(counts[WAITING_TEST]),
        "arrived": float(arrived.sum()),
        "seen": float(seen.sum()),
        "done": float(counts[DONE]),
        "left": float(counts[LEFT]),
        "left_share": counts[LEFT] / resolved if resolved else nan,
        "wait_mean": float(waits.mean()) if len(waits) else nan,
        "wait_median": float(np.median(waits)) if len(waits) else nan,
        "wait_p90": float(np.percentile(waits, 90)) if len(waits) else nan,
        "throughput_per_hour": counts[DONE] / (elapsed / 60) if elapsed > 0 else nan,
        "utilisation": float(d.busy_min.sum()) / slot_minutes if slot_minutes > 0 else nan,
        "occupancy": (held_steps * rules.step_minutes / slot_minutes
                      if slot_minutes > 0 else nan),
    }


def run_check(state: HospitalState) -> list[str]:
    """Invariants the operations keep (empty when they hold): no doctor over capacity, each
    doctor's open consultations counted right, and ``first_open`` before every open patient.
    For tests and debugging."""
    problems = []
    n = state.n_patients
    p, d = state.patients, state.doctors
    status = p.status[:n]
    open_ = (status == IN_CONSULTATION) | (status == WAITING_TEST)
    held = np.bincount(p.doctor[:n][open_], minlength=len(d.busy))
    if (held != d.busy).any():
        problems.append("busy counts differ from the open consultations")
    if (d.busy > d.capacity).any() or (d.busy < 0).any():
        problems.append("a doctor over capacity (or below 0)")
    if (status[:state.first_open] < DONE).any():
        problems.append("first_open is past an open patient")
    return problems
