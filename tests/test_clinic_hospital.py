"""The clinic's hospital mechanics: arrivals, triage, the priority queue, matching doctors,
consultations that wait for results, measures and checkpoints."""

from __future__ import annotations

import io
import math
import time

import numpy as np
import pytest

from populace.scenarios.clinic.cases import default_library
from populace.scenarios.clinic.hospital import (
    DONE,
    ED_HOURLY,
    GENERAL,
    IN_CONSULTATION,
    LEFT,
    WAITING,
    WAITING_TEST,
    ArrivalModel,
    CaseFacts,
    HospitalState,
    QueueRules,
    admit,
    advance,
    arrival_counts,
    arrivals_for,
    arrive,
    case_weights,
    finish,
    metrics,
    queue,
    result_wait_minutes,
    run_check,
    schedule,
    specialty_code,
    triage,
    triage_levels,
    utilisation,
)
from populace.scenarios.clinic.vocabulary import TEST_VOCABULARY
from populace.simulator.rng import RngStreams

CARDIO, NEURO, PULM = (specialty_code(s) for s in ("cardiology", "neurology", "pulmonology"))


def facts(specialty: list[int], severity: list[int]) -> CaseFacts:
    """Hand-made cases: case i has specialty[i] and severity[i]."""
    return CaseFacts(specialty=np.array(specialty, np.int16),
                     severity=np.array(severity, np.int8))


def step_once(state: HospitalState, step: int, cases: list[int], case_facts: CaseFacts,
              rules: QueueRules, turns: int = 1, test_min: float = 0.0):
    """One hospital step with given arrivals; every consultation gets the same plan."""
    advance(state, step)
    arrive(state, step, np.array(cases, np.int64), case_facts)
    admission = admit(state, step, rules)
    n = len(admission.patients)
    schedule(state, admission.patients, np.full(n, turns), np.full(n, test_min), rules)
    assert run_check(state) == []
    return admission


def simulate(state: HospitalState, steps: range, model: ArrivalModel, case_facts: CaseFacts,
             rules: QueueRules, seed: int) -> None:
    """Steps of a hospital with drawn arrivals and drawn consultation plans, each step's
    numbers from its own stream (as ``ctx.random`` gives them in a run)."""
    streams = RngStreams(seed)
    for s in steps:
        advance(state, s)
        arrive(state, s, arrivals_for(s, model, streams.get("clinic.arrivals", s)), case_facts)
        admission = admit(state, s, rules)
        rng = streams.get("clinic.plan", s)
        n = len(admission.patients)
        schedule(state, admission.patients, rng.integers(3, 15, n),
                 rng.choice([0.0, 0.0, 15.0, 60.0, 90.0], n), rules)


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f")
        for k in a)


# --- arrivals -------------------------------------------------------------------------------

def test_arrivals_per_hour_follow_the_profile() -> None:
    library = default_library()
    model = ArrivalModel.from_library(library, daily_total=10_000, step_minutes=5)
    days = 200
    steps = np.arange(days * 288)
    counts = arrival_counts(steps, model, np.random.default_rng(7))
    observed = np.bincount(model.hour_of(steps), weights=counts, minlength=24)
    share = np.asarray(ED_HOURLY) / sum(ED_HOURLY)
    expected = days * 10_000 * share
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    print(f"chi-square over 24 hours (23 df): {chi2:.1f}")
    assert chi2 < 60  # p ~ 1e-4 at 23 degrees of freedom
    assert np.abs(observed / expected - 1).max() < 0.03
    assert abs(counts.sum() / days / 10_000 - 1) < 0.005


def test_expected_arrivals_integrate_the_rate_across_hours() -> None:
    hourly = np.zeros(24)
    hourly[0] = 1.0  # every patient between 00:00 and 01:00
    model = ArrivalModel(daily_total=600, hourly=hourly, case_p=np.ones(3), step_minutes=9,
                         start_minute=23 * 60 + 30)
    per_step = model.expected(np.arange(160))  # 160 steps of 9 minutes: one day
    assert per_step.sum() == pytest.approx(600)
    # step 3 runs 23:57-00:06: 6 minutes of the 10-a-minute hour
    assert per_step[3] == pytest.approx(60)
    assert per_step[4] == pytest.approx(90)
    assert per_step[0] == 0


def test_specialty_mix_and_determinism() -> None:
    library = default_library()
    mix = {"cardiology": 3.0, "neurology": 1.0}
    model = ArrivalModel.from_library(library, daily_total=2_000_000, mix=mix, step_minutes=5)
    first = arrivals_for(130, model, np.random.default_rng(3))
    again = arrivals_for(130, model, np.random.default_rng(3))
    other = arrivals_for(130, model, np.random.default_rng(4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    names = np.array([c.specialty for c in library])[first]
    assert set(names) == {"cardiology", "neurology"}
    assert (names == "cardiology").mean() == pytest.approx(0.75, abs=0.01)
    uniform = case_weights(library)
    assert np.allclose(uniform, 1 / len(library))
    with pytest.raises(ValueError, match="no case of surgery"):
        case_weights(library, {"surgery": 1.0})
    with pytest.raises(ValueError, match="24 non-negative"):
        ArrivalModel(daily_total=10, hourly=np.ones(23), case_p=np.ones(2))


def test_a_run_is_the_same_for_a_seed() -> None:
    library = default_library()
    case_facts = CaseFacts.from_library(library)
    model = ArrivalModel.from_library(library, daily_total=3000)
    rules = QueueRules()
    runs = []
    for seed in (11, 11, 12):
        state = HospitalState.create(["general"] * 8 + ["cardiology", "neurology"], 2)
        simulate(state, range(100), model, case_facts, rules, seed)
        runs.append(state.to_arrays())
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


# --- triage ---------------------------------------------------------------------------------

def test_triage_levels() -> None:
    nan = np.nan
    level = triage(
        oxygen_saturation_pct=np.array([85, 91, 98, 98, 98, 98, nan, 98]),
        systolic_bp_mmhg=np.array([120, 120, 120, 185, 120, 120, nan, 120]),
        heart_rate_bpm=np.array([80, 80, 80, 80, 80, 80, nan, 155]),
        respiratory_rate_per_min=np.array([16, 16, 16, 16, 16, 16, nan, 16]),
        temperature_c=np.array([37, 37, 37, 37, 39.6, 37, nan, 37]),
        resources=np.array([0, 0, 2, 0, 0, 1, 0, 0]))
    assert level.tolist() == [1, 2, 3, 2, 2, 4, 5, 1]
    library = default_library()
    levels = dict(zip(library.ids, triage_levels(library).tolist(), strict=True))
    assert levels["pulm-02"] == 1  # SpO2 86 %
    assert levels["card-05"] == 2  # heart rate 132
    assert levels["card-07"] == 2  # normal vitals, but syncope on exertion: high risk
    assert levels["neuro-02"] == 2 and levels["card-01"] == 2  # stroke, STEMI: high risk
    assert levels["gi-03"] == 4  # appendicitis: normal-ish vitals, one decisive test
    level = triage(oxygen_saturation_pct=np.array([98, 98]), systolic_bp_mmhg=np.array([120, 120]),
                   heart_rate_bpm=np.array([80, 80]), respiratory_rate_per_min=np.array([16, 16]),
                   temperature_c=np.array([37, 37]), resources=np.array([0, 0]),
                   high_risk=np.array([True, False]))
    assert level.tolist() == [2, 5]
    assert set(levels.values()) <= {1, 2, 3, 4, 5}


def test_waits_for_results_use_the_vocabulary_turnaround() -> None:
    ecg, troponin = (TEST_VOCABULARY[t].turnaround_min for t in ("ecg", "troponin"))
    cbc = TEST_VOCABULARY["cbc"].turnaround_min
    waits = result_wait_minutes([[["EKG"], ["troponin"]], [["troponin", "cbc"]], [],
                                 [["a test nobody knows"]]])
    assert waits.tolist() == [ecg + troponin, max(troponin, cbc), 0.0, 0.0]


# --- the queue and the doctors --------------------------------------------------------------

def test_an_immediate_patient_is_seen_before_earlier_less_urgent_ones() -> None:
    rules = QueueRules(step_minutes=5, turn_minutes=5)
    cases = facts([GENERAL, GENERAL], [4, 1])  # case 0: severity 4, case 1: severity 1
    state = HospitalState.create(["general"])
    first = step_once(state, 0, [0], cases, rules, turns=4)  # busy until step 4
    assert first.patients.tolist() == [0]
    for step, case in ((1, 0), (2, 0), (3, 1)):
        assert len(step_once(state, step, [case], cases, rules, turns=4).patients) == 0
    assert queue(state, 3).tolist() == [3, 1, 2]
    assert step_once(state, 4, [], cases, rules, turns=4).patients.tolist() == [3]
    assert step_once(state, 8, [], cases, rules, turns=4).patients.tolist() == [1]
    assert step_once(state, 12, [], cases, rules, turns=4).patients.tolist() == [2]


def test_specialists_first_then_general_doctors() -> None:
    rules = QueueRules()
    cases = facts([CARDIO, NEURO, PULM], [3, 3, 3])
    state = HospitalState.create(["cardiology", "general", "neurology"])
    seen = step_once(state, 0, [2, 1, 0, 0], cases, rules, turns=50)
    # patient 2 (cardiology) -> the cardiologist, 1 (neurology) -> the neurologist; 0
    # (pulmonology: no specialist) and 3 (cardiology: its specialist taken) compete for the
    # general doctor, and 0 comes first in the queue
    assert dict(zip(seen.patients.tolist(), seen.doctors.tolist(), strict=True)) == {
        0: 1, 1: 2, 2: 0}
    assert state.patients.status[3] == WAITING


def test_any_doctor_after_the_wait_limit() -> None:
    rules = QueueRules(step_minutes=5, fallback_after_min=60)
    cases = facts([CARDIO, NEURO, CARDIO], [3, 4, 1])
    state = HospitalState.create(["cardiology", "neurology"])
    step_once(state, 0, [0], cases, rules, turns=1000)  # the cardiologist is taken for long
    assert step_once(state, 1, [0], cases, rules).patients.tolist() == []
    for step in range(2, 14):  # at step 13 patient 1 has waited 60 min: not more than 60
        assert len(step_once(state, step, [], cases, rules).patients) == 0, step
    seen = step_once(state, 14, [], cases, rules)  # 65 min: the neurologist takes it
    assert seen.patients.tolist() == [1] and seen.doctors.tolist() == [1]
    assert state.patients.waited[1] == 65


def test_a_specialist_sees_its_own_specialty_before_overdue_others() -> None:
    rules = QueueRules(step_minutes=5, fallback_after_min=60)
    cases = facts([CARDIO, NEURO], [3, 4])
    state = HospitalState.create(["cardiology", "neurology"])
    step_once(state, 0, [0, 1], cases, rules, turns=1000)  # both specialists taken
    step_once(state, 1, [0], cases, rules)  # patient 2, cardiology, waits
    finish(state, np.array([1]), 20)  # the neurologist is free; patient 2 waited 95 min
    seen = step_once(state, 20, [1], cases, rules)  # patient 3, neurology, less urgent
    assert seen.patients.tolist() == [3] and seen.doctors.tolist() == [1]
    finish(state, np.array([3]), 21)
    seen = step_once(state, 21, [], cases, rules)
    assert seen.patients.tolist() == [2] and seen.doctors.tolist() == [1]


@pytest.mark.parametrize("immediate_any_doctor", [True, False])
def test_an_immediate_patient_may_see_any_doctor_at_once(immediate_any_doctor: bool) -> None:
    rules = QueueRules(fallback_after_min=60, immediate_any_doctor=immediate_any_doctor)
    cases = facts([CARDIO, CARDIO], [3, 1])
    state = HospitalState.create(["cardiology", "neurology"])
    step_once(state, 0, [0], cases, rules, turns=1000)
    seen = step_once(state, 1, [1], cases, rules)  # severity 1, its specialist taken
    assert seen.doctors.tolist() == ([1] if immediate_any_doctor else [])


def reference_admission(state: HospitalState, step: int, rules: QueueRules) -> dict[int, int]:
    """The documented three rounds, one patient at a time: patient -> doctor."""
    p, d = state.patients, state.doctors
    busy = d.busy.copy()
    taken: dict[int, int] = {}
    for round_ in (1, 2, 3):
        for patient in queue(state, step).tolist():
            waited = (step - p.arrival[patient]) * rules.step_minutes
            if patient in taken or (round_ == 1 and p.specialty[patient] == GENERAL):
                continue
            if round_ == 1:
                doctors = np.flatnonzero(d.specialty == p.specialty[patient])
            elif round_ == 2:
                doctors = np.flatnonzero(d.specialty == GENERAL)
            elif waited > rules.fallback_after_min or p.severity[patient] == 1:
                doctors = np.arange(len(busy))
            else:
                continue
            free = [int(x) for x in doctors if busy[x] < d.capacity[x]]
            if free:
                doctor = min(free, key=lambda x: (busy[x], x))
                taken[patient] = doctor
                busy[doctor] += 1
    return taken


@pytest.mark.parametrize("seed", range(30))
def test_batched_admission_is_the_rounds_one_patient_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rules = QueueRules(step_minutes=5, fallback_after_min=30, patience_min=math.inf)
    names = ["general", "cardiology", "neurology", "pulmonology"]
    doctors = list(rng.choice(names, rng.integers(1, 9)))
    state = HospitalState.create(doctors, rng.integers(1, 4, len(doctors)))
    state.doctors.busy = rng.integers(0, state.doctors.capacity + 1).astype(np.int32)
    cases = facts([GENERAL, CARDIO, NEURO, PULM, CARDIO], [5, 4, 3, 2, 1])
    n = int(rng.integers(0, 40))
    for arrival in np.sort(rng.integers(0, 20, n)):
        arrive(state, int(arrival), rng.integers(0, 5, 1), cases)
    expected = reference_admission(state, 20, rules)
    seen = admit(state, 20, rules)
    assert dict(zip(seen.patients.tolist(), seen.doctors.tolist(), strict=True)) == expected
    assert (state.doctors.busy <= state.doctors.capacity).all()


def test_capacity_is_never_exceeded() -> None:
    library = default_library()
    case_facts = CaseFacts.from_library(library)
    model = ArrivalModel.from_library(library, daily_total=6000)
    rules = QueueRules(patience_min=120)
    specialties = ["general"] * 4 + sorted(library.specialties())
    state = HospitalState.create(specialties, [1, 2, 3] * (len(specialties) // 3)
                                 + [1] * (len(specialties) % 3))
    streams = RngStreams(5)
    for s in range(288):
        advance(state, s)
        arrive(state, s, arrivals_for(s, model, streams.get("a", s)), case_facts)
        admission = admit(state, s, rules)
        assert run_check(state) == []
        assert (state.doctors.busy <= state.doctors.capacity).all()
        n = len(admission.patients)
        rng = streams.get("p", s)
        schedule(state, admission.patients, rng.integers(2, 20, n), rng.choice([0, 60], n),
                 rules)
    m = metrics(state, 287, rules)
    assert m["left"] > 0 and m["done"] > 0 and m["queue"] > 0
    assert (state.doctors.busy == state.doctors.capacity).sum() > 0


def test_patients_leave_after_their_patience() -> None:
    rules = QueueRules(step_minutes=5, patience_min=30)
    cases = facts([GENERAL], [3])
    state = HospitalState.create(["general"])
    step_once(state, 0, [0, 0], cases, rules, turns=100)
    for step in range(1, 7):  # 30 minutes waited at step 6: still there
        assert len(step_once(state, step, [], cases, rules).left) == 0
    gone = step_once(state, 7, [], cases, rules)
    assert gone.left.tolist() == [1]
    assert state.patients.status[1] == LEFT and state.patients.waited[1] == 35
    m = metrics(state, 7, rules)
    assert m["left"] == 1 and m["queue"] == 0 and m["left_share"] == 0.5


# --- consultations, measures ----------------------------------------------------------------

def test_measures_of_a_tiny_day_by_hand() -> None:
    # one general doctor, capacity 1, 5-minute steps and turns
    rules = QueueRules(step_minutes=5, turn_minutes=5, patience_min=math.inf)
    cases = facts([GENERAL, GENERAL], [3, 4])
    state = HospitalState.create(["general"])
    # step 0: A (severity 3) and B (severity 4) arrive; A is seen: 2 turns (10 min), then
    # 5 min waiting for a result: waiting from step 2, done at step 3
    seen = step_once(state, 0, [1, 0], cases, rules, turns=2, test_min=5)
    assert seen.patients.tolist() == [1]
    step_once(state, 1, [], cases, rules)
    step_once(state, 2, [], cases, rules)
    p = state.patients
    assert p.status[1] == WAITING_TEST and p.status[0] == WAITING
    m = metrics(state, 2, rules)
    assert (m["queue"], m["waiting_test"], m["in_consultation"]) == (1, 1, 0)
    # step 3: A is done, B is seen after 15 minutes: 1 turn, done at step 4
    seen = step_once(state, 3, [], cases, rules, turns=1)
    assert seen.patients.tolist() == [0] and p.status[1] == DONE and p.end[1] == 3
    # step 4: B is done, C arrives and is seen at once: 2 turns, done at step 6
    step_once(state, 4, [0], cases, rules, turns=2)
    assert p.status[0] == DONE and p.status[2] == IN_CONSULTATION
    advance(state, 5)
    advance(state, 6)
    m = metrics(state, 6, rules)
    assert m["done"] == 3 and m["seen"] == 3 and m["arrived"] == 3
    assert (m["wait_mean"], m["wait_median"]) == (5.0, 0.0)
    assert m["wait_p90"] == pytest.approx(12.0)  # [0, 0, 15] at the 90th percentile
    assert m["throughput_per_hour"] == pytest.approx(6.0)  # 3 in 30 minutes
    assert m["utilisation"] == pytest.approx(25 / 30)  # talk 10 + 5 + 10 of 30 minutes
    assert m["occupancy"] == pytest.approx(1.0)  # held 15 + 5 + 10 of 30
    assert utilisation(state, 6, rules).tolist() == pytest.approx([25 / 30])
    assert state.doctors.done.tolist() == [3]
    assert state.first_open == 3 and run_check(state) == []


def test_a_doctor_with_room_sees_others_while_results_are_awaited() -> None:
    rules = QueueRules(step_minutes=5, turn_minutes=5)
    cases = facts([GENERAL], [3])
    state = HospitalState.create(["general"], capacity=2)
    step_once(state, 0, [0], cases, rules, turns=1, test_min=60)  # waits from step 1 to 13
    seen = step_once(state, 1, [0], cases, rules, turns=1)
    assert seen.patients.tolist() == [1]
    assert state.patients.status[0] == WAITING_TEST and state.doctors.busy[0] == 2
    advance(state, 2)  # patient 1 is done
    m = metrics(state, 2, rules)
    assert m["utilisation"] == pytest.approx(5 / 20)  # patient 1's talk is over: 5 of 2 x 10


def test_finish_by_the_caller_and_refusals() -> None:
    rules = QueueRules()
    cases = facts([GENERAL], [3])
    state = HospitalState.create(["general"], capacity=2)
    arrive(state, 0, np.array([0, 0, 0]), cases)
    seen = admit(state, 0, rules)  # not scheduled: the caller ends them
    finish(state, seen.patients[:1], 4, talk_min=np.array([12.0]))
    assert state.doctors.busy_min.tolist() == [12.0] and state.doctors.busy[0] == 1
    with pytest.raises(ValueError, match="in consultation"):
        finish(state, np.array([2]), 4)  # still waiting
    with pytest.raises(ValueError, match="in consultation"):
        schedule(state, np.array([0]), np.array([1]), np.array([0.0]), rules)  # done
    assert run_check(state) == []


# --- checkpoints and speed ------------------------------------------------------------------

def test_checkpoint_round_trip_continues_identically() -> None:
    library = default_library()
    case_facts = CaseFacts.from_library(library)
    model = ArrivalModel.from_library(library, daily_total=8000)
    rules = QueueRules(patience_min=90)
    doctors = ["general"] * 10 + ["cardiology", "pulmonology", "emergency"]
    state = HospitalState.create(doctors, 2)
    simulate(state, range(150), model, case_facts, rules, seed=21)
    buffer = io.BytesIO()
    np.savez(buffer, **state.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        restored = HospitalState.create(["general"])
        restored.load_arrays(dict(saved))
    assert same(restored.to_arrays(), state.to_arrays())
    assert isinstance(restored.n_patients, int) and restored.n_patients == state.n_patients
    simulate(state, range(150, 300), model, case_facts, rules, seed=21)
    simulate(restored, range(150, 300), model, case_facts, rules, seed=21)
    assert same(restored.to_arrays(), state.to_arrays())
    assert metrics(restored, 299, rules).keys() == metrics(state, 299, rules).keys()


def test_a_day_of_10000_patients_is_fast() -> None:
    library = default_library()
    case_facts = CaseFacts.from_library(library)
    model = ArrivalModel.from_library(library, daily_total=10_000, step_minutes=5)
    rules = QueueRules(step_minutes=5)
    doctors = ["general"] * 50 + [s for s in library.specialties() for _ in range(6)]
    state = HospitalState.create(doctors, 3)
    streams = RngStreams(1)
    arrivals = [arrivals_for(s, model, streams.get("a", s)) for s in range(288)]
    plans = [streams.get("p", s) for s in range(288)]
    began = time.perf_counter()
    for s in range(288):
        advance(state, s)
        arrive(state, s, arrivals[s], case_facts)
        admission = admit(state, s, rules)
        n = len(admission.patients)
        schedule(state, admission.patients, plans[s].integers(3, 15, n),
                 plans[s].choice([0.0, 15.0, 60.0], n), rules)
    seconds = time.perf_counter() - began
    m = metrics(state, 288, rules)
    print(f"a day of {state.n_patients} patients, {len(doctors)} doctors: queue operations "
          f"{seconds:.3f} s; wait mean {m['wait_mean']:.1f} min, utilisation "
          f"{m['utilisation']:.2f}, occupancy {m['occupancy']:.2f}, left {m['left']:.0f}")
    assert 9000 < state.n_patients < 11000
    assert run_check(state) == []
    assert seconds < 10  # a guard against pathological slowness, not a benchmark
