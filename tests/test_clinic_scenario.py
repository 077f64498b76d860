"""The clinic as a scenario: consultations run turn by turn through the engine into the
database, every answer comes from the case, the judge scores each diagnosis, the hospital
queues and admits, runs are deterministic and resumable, the Ray runtime records the local
runtime's rows, language-model doctors speak AgentClinic's protocol (against the project's
test server), and bad input is refused or counted."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from populace.scenarios.clinic.cases import default_library
from populace.scenarios.clinic.diagnosis import diagnosis_matches
from populace.scenarios.clinic.vocabulary import TEST_VOCABULARY
from populace.simulator import ConfigError, Simulation, experiment_from_dict, load_experiment
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

from .helpers import (
    Crash,
    assert_ray_matches_local,
    assert_same_run,
    content_tables,
    crash_after,
    reopen,
    run_experiment,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "clinic" / "examples"
LIBRARY = {case.id: case for case in default_library()}


def clinic(steps: int = 60, doctors: int = 4, patients: int = 40, **scenario: Any
           ) -> dict[str, Any]:
    """A small clinic of rule doctors; every patient there at the start."""
    return {
        "name": "clinic", "seed": 5, "steps": steps, "step_duration": "5m",
        "start_time": "2025-01-06 08:00",
        "scenario": {"type": "clinic", "doctors": doctors, "capacity": 3, "arrival": "start",
                     "patience_min": 100000, **scenario},
        "population": {"size": doctors + patients, "attributes": {
            "recall": {"dist": "categorical", "values": {"high": 0.6, "low": 0.4}},
            "dazed": {"dist": "categorical", "values": {"clear": 0.8, "dazed": 0.2}}}},
        "policy": {"type": "rule"},
        "checkpoint_every": 10,
    }


def run(data: dict[str, Any], tmp_path: Path, name: str = "run") -> Any:
    return run_experiment(data, f"sqlite:///{tmp_path / (name + '.sqlite')}")


def test_consultations_answer_from_the_case_and_the_judge_scores_them(tmp_path: Path) -> None:
    r = run(clinic(steps=120), tmp_path)
    done = r.table("clinic_consultations")
    turns = r.table("clinic_turns")
    patients = r.table("clinic_patients").set_index("agent_id")
    assert len(patients) == 40 and len(done) > 20
    assert done.patient_id.is_unique and (done.outcome == "diagnosed").all()
    assert (done.turns >= 1).all() and (done.turns <= 20).all()
    assert (done.tests_needed <= done.tests).all()
    assert ((done.tests_needed + done.tests_unnecessary) == done.tests).all()
    for row in done.itertuples():
        case = LIBRARY[row.case_id]
        assert patients.loc[row.patient_id, "case_id"] == row.case_id
        assert row.correct == diagnosis_matches(row.diagnosis, case)
        assert row.correct_diagnosis == case.diagnosis
    assert 0.5 < done.correct.mean() <= 1.0
    # each consultation's turns are in the trace, in order, with the doctor who saw it
    for row in done.itertuples():
        mine = turns[turns.patient == row.patient_id]
        assert len(mine) == row.turns and mine.step.is_monotonic_increasing
        assert (mine.agent_id == row.doctor_id).all() and mine.action.iloc[-1] == "diagnose"
        assert (mine.action == "order_test").sum() == row.tests
    asks = turns[turns.action == "ask"]
    assert asks.answer.isin(["Yes.", "No."]).all() and asks.question.str.startswith(
        "Have you had").all()
    tests = turns[turns.action == "order_test"]
    assert tests.test.isin(list(TEST_VOCABULARY)).all()
    assert tests.answer.str.startswith("RESULTS: ").all()
    # a test result comes after its turnaround: the consultation's next turn waits for it
    for row in tests.itertuples():
        later = turns[(turns.patient == row.patient) & (turns.step > row.step)]
        if len(later):
            wait = TEST_VOCABULARY[row.test].turnaround_min
            assert later.step.min() - row.step >= max(1, int(np.ceil(wait / 5 - 1e-9)))
    m = r.metrics()
    last = m.iloc[-1]
    assert last["consultations"] == len(done)
    assert last["accuracy"] == pytest.approx(done.correct.mean())
    assert last["tests_mean"] == pytest.approx(done.tests.mean())
    assert 0 < last["confidence_mean"] < 1 and last["no_diagnosis"] == 0
    assert last["top5_accuracy"] >= last["accuracy"]


def test_a_doctor_talks_once_per_turn_within_its_capacity(tmp_path: Path) -> None:
    r = run(clinic(steps=30, doctors=2, patients=20), tmp_path)
    turns = r.table("clinic_turns")
    assert not turns.duplicated(["step", "agent_id"]).any()  # one consultation per turn
    open_ = r.metrics()[["in_consultation", "waiting_test"]].sum(axis=1)
    assert (open_ <= 2 * 3).all() and open_.max() == 6  # 2 doctors x capacity 3, all used
    patients_of = turns.groupby("agent_id").patient.nunique()
    assert (patients_of >= 3).all()


@pytest.mark.slow
def test_patients_arrive_over_the_day_and_the_impatient_leave(tmp_path: Path) -> None:
    data = clinic(steps=288, doctors=3, patients=300, arrival="poisson", patience_min=240)
    data["start_time"] = "2025-01-06 00:00"
    r = run(data, tmp_path)
    patients = r.table("clinic_patients")
    hour = (patients.arrival * 5 // 60).to_numpy()
    assert hour.min() >= 0 and hour.max() <= 23
    # the emergency department profile: the late morning is busier than before dawn
    assert (hour == 11).sum() > 2 * (hour == 4).sum()
    done = r.table("clinic_consultations")
    left = done[done.outcome == "left"]
    assert len(left) > 0 and (left.doctor_id == -1).all() and (left.waited_min > 240).all()
    assert r.metrics().iloc[-1]["left_unseen"] == len(left)


@pytest.mark.slow
def test_the_queue_is_triaged_most_urgent_first(tmp_path: Path) -> None:
    r = run(clinic(steps=200, doctors=2, patients=60), tmp_path)
    seen = r.table("clinic_consultations").merge(
        r.table("clinic_patients")[["agent_id", "severity"]], left_on="patient_id",
        right_on="agent_id")
    # everyone came at once: no patient began before a more urgent one
    started = seen.groupby("severity").started.agg(["min", "max"])
    assert len(started) > 1
    for level in started.index[:-1]:
        assert started.loc[level, "max"] <= started.loc[started.index > level, "min"].min()


def test_same_seed_same_run_other_seed_another(tmp_path: Path) -> None:
    data = clinic(steps=40)
    a, b = run(data, tmp_path, "a"), run(data, tmp_path, "b")
    assert_same_run(a, b)
    other = copy.deepcopy(data)
    other["seed"] = 6
    c = run(other, tmp_path, "c")
    assert not content_tables(a)["clinic_turns"].equals(content_tables(c)["clinic_turns"])


def test_resume_after_a_crash_gives_the_uninterrupted_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # doctors who learned half the textbook and remember: their memory is in the checkpoint
    data = clinic(steps=30, arrival="poisson", arrival_hours=2, memory=True,
                  textbook_share=0.5)
    full = run(data, tmp_path, "full")
    url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, 25, monkeypatch)  # checkpoint at 20: steps 21-25 are redone
    with pytest.raises(Crash):
        sim.run()
    assert reopen(url, sim.run_id).info["status"] == "failed"
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 20
    assert_same_run(full, resumed.run())


@pytest.mark.slow
def test_confirmation_bias_lowers_accuracy(tmp_path: Path) -> None:
    data = clinic(steps=150, doctors=30, patients=400)
    data["scenario"]["capacity"] = 6
    accuracy = {}
    for bias in (0.0, 0.9):
        data["scenario"]["confirmation"] = bias
        done = run(data, tmp_path, f"bias{bias}").table("clinic_consultations")
        assert len(done) > 300 and (done.doctor_bias == bias).all()
        accuracy[bias] = done.correct.mean()
    assert accuracy[0.9] < accuracy[0.0] - 0.05


@pytest.mark.slow
def test_doctors_with_memory_learn_over_the_run(tmp_path: Path) -> None:
    raw = copy.deepcopy(load_experiment(EXAMPLES / "memory.yaml").raw)
    quarters = {}
    for memory in (False, True):
        raw["scenario"]["memory"] = memory
        done = run(raw, tmp_path, f"memory{memory}").table("clinic_consultations")
        done = done.sort_values(["step", "patient_id"])
        quarter = len(done) // 4
        quarters[memory] = [done.correct.iloc[i * quarter:(i + 1) * quarter].mean()
                            for i in range(4)]
    learned, control = quarters[True], quarters[False]
    # figures of this seed: without memory 0.56 0.54 0.55 0.44, with memory 0.53 .. 0.84
    assert learned[3] > learned[0] + 0.15 and learned[3] > control[3] + 0.2
    assert control[3] < control[0] + 0.05  # without memory, no learning curve


def test_an_event_makes_a_doctor_biased_mid_run(tmp_path: Path) -> None:
    data = clinic(steps=40, doctors=2, patients=30)
    data["events"] = [{"at": 20, "kind": "set", "variable": "confirmation", "value": 0.8,
                       "agents": [1]}]
    r = run(data, tmp_path)
    done = r.table("clinic_consultations")
    of_1 = done[done.doctor_id == 1]
    assert (of_1[of_1.step < 20].doctor_bias == 0).all()
    assert (of_1[of_1.step > 20].doctor_bias == 0.8).all() and (of_1.step > 20).any()
    assert (done[done.doctor_id == 0].doctor_bias == 0).all()


@pytest.mark.slow
def test_ray_runtime_records_the_local_runtime_s_rows(tmp_path: Path) -> None:
    data = clinic(steps=40, doctors=4, patients=60, arrival="poisson", arrival_hours=2,
                  memory=True, textbook_share=0.7)
    assert_ray_matches_local(data, tmp_path, ["clinic_consultations", "clinic_turns"])


def _llm_run(protocol: str, tmp_path: Path) -> Any:
    """The language-model doctors' example, shortened, against the project's test server."""
    raw = copy.deepcopy(load_experiment(EXAMPLES / "llm_doctors.yaml").raw)
    raw["scenario"]["llm_protocol"] = protocol
    raw["steps"] = 30
    raw["llm"]["model"] = "populace-test"
    raw["llm"]["max_fallback_share"] = 1.0
    raw["population"]["file"] = str(EXAMPLES / "data" / "doctors.csv")
    with TestServer(ServerBehaviour(seed=1)) as server:
        raw["llm"]["endpoints"][0]["base_url"] = server.url
        return run(raw, tmp_path)


def test_llm_doctors_that_never_diagnose_fail_at_the_turn_limit(tmp_path: Path) -> None:
    r = _llm_run("agentclinic", tmp_path)
    done = r.table("clinic_consultations")
    turns = r.table("clinic_turns")
    # the test server's free text is prose without tags: every turn is a question
    assert len(done) > 0 and (done.outcome == "no_diagnosis").all() and not done.correct.any()
    assert (done.turns == 12).all() and (turns.action == "ask").all()
    assert r.metrics().iloc[-1]["no_diagnosis"] == len(done)
    calls = r.table("llm_calls")
    prompt = json.loads(calls[calls.kind == "decision"].prompt.iloc[-1])
    assert "REQUEST TEST" in prompt[0]["content"]
    with_patient = [json.loads(p)[1]["content"] for p in calls.prompt]
    assert any("The consultation so far:\nPatient: " in p for p in with_patient)


def test_structured_llm_doctors_share_the_rule_doctors_actions(tmp_path: Path) -> None:
    r = _llm_run("structured", tmp_path)
    turns = r.table("clinic_turns")
    assert {"ask", "examine", "order_test", "diagnose"} <= set(turns.action)
    tests = turns[turns.action == "order_test"]
    # the server's tests are nonsense: answered as normal readings and counted as unknown
    assert tests.answer.str.endswith("NORMAL READINGS").all()
    assert tests.problems.str.contains("unknown_test").all()
    m = r.metrics().iloc[-1]
    assert m["problems.unknown_test"] == len(tests)
    diagnosed = turns[turns.action == "diagnose"]
    calls = r.table("llm_calls")
    judged = calls[calls.kind == "scenario"]
    # the judge model is asked about every diagnosis the string rule refused
    assert m["judge_llm.asked"] == len(judged) == len(diagnosed) > 0
    assert m["judge_llm.accepted"] == diagnosed.answer.str.contains("language-model").sum()


def test_language_model_patients_answer_in_their_persona(tmp_path: Path) -> None:
    data = clinic(steps=40, doctors=2, patients=6)
    data["scenario"]["patients"] = "llm"
    data["population"]["attributes"]["personality"] = {
        "dist": "categorical", "values": {"distrustful": 1.0}}
    data["llm"] = {"backend": "openai", "model": "populace-test", "max_fallback_share": 1.0}
    with TestServer(ServerBehaviour(seed=2)) as server:
        data["llm"]["endpoints"] = [{"base_url": server.url}]
        r = run(data, tmp_path)
    turns = r.table("clinic_turns")
    asks = turns[turns.action == "ask"]
    calls = r.table("llm_calls")
    replies = calls[calls.prompt.str.contains("Answer the doctor's question")]
    m = r.metrics().iloc[-1]
    assert m["patient_llm.replies"] == len(asks) == len(replies) > 0
    # the model's words are the answer (the test server's are arbitrary), unless invalid
    valid = len(asks) - m["patient_llm.replies_invalid"]
    assert (~asks.answer.isin(["Yes.", "No."])).sum() >= valid > 0
    done = r.table("clinic_consultations")
    patients = r.table("clinic_patients").set_index("agent_id")
    for prompt, agent in zip(replies.prompt, replies.agent_id, strict=True):
        system = json.loads(prompt)[0]["content"]
        case = LIBRARY[patients.loc[agent, "case_id"]]
        assert "You distrust doctors" in system and case.patient.history in system
        assert case.diagnosis not in system  # the patient never knows its diagnosis
    asked = calls[calls.prompt.str.contains("How much do you trust")]
    assert m["patient_llm.confidences"] == len(asked) == len(done) > 0
    assert done.confidence.between(0, 1).all()


def test_patients_report_their_confidence_in_an_interview(tmp_path: Path) -> None:
    data = clinic(steps=30, doctors=2, patients=10)
    data["events"] = [{"name": "poll", "kind": "interview", "at": 30,
                       "agents": list(range(2, 12)), "report": "confidence",
                       "questions": [{"id": "trust", "text": "How much do you trust your "
                                      "doctor, 0 to 10?", "answer": "scale", "low": 0,
                                      "high": 10}]}]
    r = run(data, tmp_path)
    answers = r.table("interview_answers")
    assert len(answers) == 10 and (answers.source == "report").all()
    done = r.table("clinic_consultations").set_index("patient_id")
    for row in answers.itertuples():
        if row.agent_id in done.index:  # its confidence when its consultation ended
            assert row.value == round(10 * done.loc[row.agent_id, "confidence"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "populace.simulator.cli", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_broken_case_file_is_refused_naming_the_case_and_field(tmp_path: Path) -> None:
    case = json.loads((Path(__file__).resolve().parents[1] / "scenarios" / "clinic" / "cases"
                       / "cardiology" / "card-01.json").read_text())
    case["examination"]["vital_signs"]["heart_rate_bpm"] = "fast"
    (tmp_path / "cases.json").write_text(json.dumps([case]))
    data = clinic()
    data["scenario"]["cases"] = "cases.json"
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(data))
    result = _cli("validate", str(path))
    assert result.returncode == 2, result.stderr
    assert "card-01" in result.stderr and "heart_rate_bpm" in result.stderr
    data["scenario"]["cases"] = "missing.json"
    path.write_text(json.dumps(data))
    assert _cli("validate", str(path)).returncode == 2


@pytest.mark.parametrize(("change", "message"), [
    ({"doctors": 44}, "doctors leave no patient"),
    ({"specialists": {"cardiology": 9}}, "9 specialists but only 4 doctors"),
    ({"mix": {"dermatology": 1.0}}, "dermatology"),
    ({"judge": "llm"}, "judge: llm needs an llm"),
    ({"persona_defaults": {"recall": "perfect"}}, "perfect"),
])
def test_bad_scenario_settings_are_validation_errors(change: dict[str, Any], message: str
                                                     ) -> None:
    data = clinic()
    data["scenario"].update(change)
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(data)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_validate(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.scenario_cls.name == "clinic"
    assert path.read_text(encoding="utf-8").startswith("#")


@pytest.mark.slow
def test_quickstart_runs_as_documented(tmp_path: Path) -> None:
    r = run(copy.deepcopy(load_experiment(EXAMPLES / "quickstart.yaml").raw), tmp_path)
    done = r.table("clinic_consultations")
    assert len(done) == 8 and (done.outcome == "diagnosed").all()
    assert r.info["status"] == "completed"


def test_patients_get_the_case_their_profile_names(tmp_path: Path) -> None:
    data = clinic(steps=2, doctors=1, patients=4)
    data["population"]["attributes"]["case"] = {
        "dist": "categorical", "values": {"card-01": 0.5, "neuro-02": 0.5}}
    patients = run(data, tmp_path).table("clinic_patients")
    assert set(patients.case_id) == {"card-01", "neuro-02"}
    data["population"]["attributes"]["case"] = {"dist": "categorical",
                                                "values": {"no-such-case": 1.0}}
    with pytest.raises(ConfigError, match="no case 'no-such-case'"):
        experiment_from_dict(data)


def test_a_persona_level_nobody_knows_is_refused(tmp_path: Path) -> None:
    data = clinic(steps=2, doctors=1, patients=4)
    data["population"]["attributes"]["recall"] = {"dist": "categorical",
                                                  "values": {"photographic": 1.0}}
    with pytest.raises(ValueError, match="'recall'.*photographic"):
        run(data, tmp_path)
