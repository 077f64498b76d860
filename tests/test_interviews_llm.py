"""Interviews answered in persona by language-model agents (issue 13), against the project's
HTTP test server: structured answers in range with their prompt and model call, an interview
that leaves the run's course and the agents' memories alone unless remembered, invalid answers
recorded as such, mixed populations, and interviews from Python between steps."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.events import parse_event
from populace.simulator.llm.answers import parse_decision
from populace.simulator.llm.interview import reply_model, reply_schema
from populace.simulator.llm.policy import LLMPolicy
from populace.simulator.testing.schema_samples import conforms, sample_instance
from populace.storage import Run

from .conftest import experiment

N_AGENTS = 40
STANCE = {"id": "stance", "text": "Where do you stand on the issue, all things considered?",
          "answer": "scale", "low": 1, "high": 7}
WHY = {"id": "why", "text": "What shaped your view the most?", "max_chars": 60}
TRUST = {"id": "trust", "text": "How much do you trust the platform?", "answer": "json",
         "schema": {"type": "object", "additionalProperties": False, "required": ["trust"],
                    "properties": {"trust": {"$ref": "#/$defs/Level"}},
                    "$defs": {"Level": {"type": "integer", "minimum": 0, "maximum": 10}}}}
INTERVIEW_PHRASE = "You are being interviewed"  # in the system message of every interview


def poll(at: int = 2, sample: int = 8, remember: bool = False,
         questions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An interview event of a sample of agents."""
    return {"name": "poll", "kind": "interview", "at": at, "agents": {"sample": sample},
            "remember": remember, "questions": copy.deepcopy(questions or [STANCE, WHY])}


def llm_experiment(url: str, events: list[dict[str, Any]] | None = None, *,
                   policy: dict[str, Any] | None = None, steps: int = 4) -> dict[str, Any]:
    """The small social experiment, every agent on the language model unless ``policy``
    says otherwise, with an occupation in the agents' profiles."""
    data = experiment(steps=steps, activation={"probability": 0.5},
                      llm={"backend": "openai", "model": "populace-test", "timeout_s": 5,
                           "max_attempts": 2, "endpoints": [{"base_url": url}]},
                      policy=policy or {"type": "llm"})
    data["population"] = copy.deepcopy(data["population"])
    data["population"]["size"] = N_AGENTS
    data["population"]["attributes"]["occupation"] = {
        "dist": "categorical", "values": ["nurse", "farmer", "teacher", "baker"]}
    data["events"] = copy.deepcopy(events or [])
    return data


def run(data: dict[str, Any], url: str) -> Run:
    return Simulation(experiment_from_dict(data), db_url=url).run()


def test_llm_agents_answer_in_persona_with_their_prompt_and_model_call(server,
                                                                        sqlite_url: str) -> None:
    _, url = server
    result = run(llm_experiment(url, [poll(questions=[STANCE, WHY, TRUST])]), sqlite_url)
    assert result.info["status"] == "completed"
    answers = result.interviews()
    assert len(answers) == 8 * 3 and set(answers["step"]) == {2}
    assert (answers["source"] == "llm").all() and answers["valid"].astype(bool).all()
    stance = answers[answers["question"] == "stance"]
    assert stance["value"].between(1, 7).all() and (stance["value"] % 1 == 0).all()
    assert stance["text"].isna().all()
    why = answers[answers["question"] == "why"]
    assert why["text"].str.len().between(1, 60).all() and why["value"].isna().all()
    trust = [json.loads(a) for a in answers.loc[answers["question"] == "trust", "answer"]]
    assert all(set(t) == {"trust"} and 0 <= t["trust"] <= 10 for t in trust)
    # the prompt: the agent's own profile and situation, and every question with its form
    occupation = result.agents()["occupation"]
    for agent, prompt in zip(answers["agent_id"], answers["prompt"], strict=True):
        assert INTERVIEW_PHRASE in prompt
        assert f"You are user {agent} of Populace Social." in prompt
        assert f"- occupation: {occupation[agent]}" in prompt
        assert STANCE["text"] in prompt and "whole number from 1 to 7" in prompt
        assert WHY["text"] in prompt and "at most 60 characters" in prompt
        assert TRUST["text"] in prompt and '"$ref": "#/$defs/Level"' in prompt
        assert "Your feed" not in prompt  # the person is asked, not shown the step's screen
    # the model calls: kind interview, joined to the answers by step and agent
    calls = result.table("llm_calls")
    asked = calls[calls["kind"] == "interview"]
    assert sorted(asked["agent_id"]) == sorted(set(answers["agent_id"]))
    joined = stance.merge(asked, on=["step", "agent_id"], suffixes=("", "_call"))
    assert len(joined) == 8 and joined["valid_call"].astype(bool).all()
    # exactly: each answer names the call that gave it
    exact = stance.merge(calls, left_on="call_hash", right_on="prompt_hash",
                         suffixes=("", "_call"))
    assert len(exact) == 8 and (exact["agent_id"] == exact["agent_id_call"]).all()
    for _, row in joined.iterrows():
        reply = json.loads(row["response"])
        assert reply["stance"] == row["value"]
        messages = json.loads(row["prompt_call"])
        assert f"{messages[0]['content']}\n\n{messages[1]['content']}" == row["prompt"]
    metrics = result.metrics()
    assert metrics.loc[2, "llm.interviews"] == 8 and metrics.loc[2, "llm.interview_invalid"] == 0
    assert metrics["llm.interviews"].dropna().index.tolist() == [2]
    assert metrics["llm.requests"].sum() == len(calls)


def _course(run_: Run) -> dict[str, pd.DataFrame]:
    """What the agents did and saw, sorted: actions, posts, likes, follows, memories, agent
    states, and their decision calls."""
    out = {}
    for name in ("actions", "posts", "likes", "follows", "memories", "agent_states"):
        frame = run_.table(name)
        out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    calls = run_.table("llm_calls")
    calls = calls.loc[calls["kind"].isin(["decision", "repair"]),
                      ["step", "agent_id", "kind", "prompt_hash", "response", "valid"]]
    out["decisions"] = calls.sort_values(list(calls.columns)).reset_index(drop=True)
    return out


def test_an_interview_not_remembered_leaves_the_course_alone_and_reruns_alike(
        server, tmp_path) -> None:
    _, url = server
    # few memories in each prompt: a retrieval that left a trace would change later prompts
    policy = {"type": "llm", "params": {"memory": {"retrieve": 2}}}
    events = [poll(at=5, sample=30)]
    plain = run(llm_experiment(url, policy=policy, steps=7),
                f"sqlite:///{tmp_path / 'plain.sqlite'}")
    asked = run(llm_experiment(url, events, policy=policy, steps=7),
                f"sqlite:///{tmp_path / 'asked.sqlite'}")
    again = run(llm_experiment(url, events, policy=policy, steps=7),
                f"sqlite:///{tmp_path / 'again.sqlite'}")
    a, b = _course(plain), _course(asked)
    assert len(a["memories"]) > 0 and len(a["decisions"]) > 0
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    assert not asked.interviews().empty and plain.interviews().empty
    # a re-run asks the same requests (same seeds) and records the same answers
    first, second = asked.interviews(), again.interviews()
    pd.testing.assert_frame_equal(first, second)
    calls = [r.table("llm_calls") for r in (asked, again)]
    hashes = [c.loc[c["kind"] == "interview", "prompt_hash"].tolist() for c in calls]
    assert hashes[0] == hashes[1] and len(hashes[0]) == 30


def test_remembered_interviews_enter_memory_and_later_prompts(server, sqlite_url: str) -> None:
    _, url = server
    result = run(llm_experiment(url, [poll(at=2, sample=10, remember=True)]), sqlite_url)
    answers = result.interviews()
    memories = result.table("memories")
    told = memories[memories["text"].str.startswith("An interviewer asked me:")]
    # one memory per question and agent, formed at the interview's step
    assert len(told) == 2 * 10 and set(told["step"]) == {2} and set(told["kind"]) == {"message"}
    assert set(told["agent_id"]) == set(answers["agent_id"])
    for _, row in answers[answers["question"] == "stance"].iterrows():
        own = told[told["agent_id"] == row["agent_id"]]["text"].tolist()
        assert any(f"I answered: {int(row['value'])} on a scale from 1 to 7" in t for t in own)
    calls = result.table("llm_calls")
    later = calls[(calls["kind"] == "decision") & (calls["step"] >= 2)]
    assert later["prompt"].str.contains("An interviewer asked me").any()


def _memory_bytes(policy: LLMPolicy) -> dict[str, bytes]:
    return {k: v.dtype.str.encode() + v.tobytes() for k, v in policy.state_dict().items()}


def test_python_interviews_between_steps_and_the_memory_they_leave(server,
                                                                   sqlite_url: str) -> None:
    _, url = server
    sim = Simulation(experiment_from_dict(llm_experiment(url)), db_url=sqlite_url)
    sim.start()
    sim.advance()
    sim.advance()
    policy = sim.policy
    assert isinstance(policy, LLMPolicy) and policy.memory is not None
    assert policy.memory.used.any()  # agents remember the steps so far
    before = _memory_bytes(policy)
    df = sim.interview("How are you?", agents=[0, 1])
    assert df["agent_id"].tolist() == [0, 1] and (df["source"] == "llm").all()
    assert df["valid"].all() and df["text"].str.len().gt(0).all()
    assert df["prompt"].str.contains("How are you?").all()
    assert _memory_bytes(policy) == before  # not remembered: byte for byte as it was
    told = sim.interview(["What do you think of the platform?"], agents=[0, 1], remember=True,
                         name="told")
    assert told["valid"].all()
    after = _memory_bytes(policy)
    assert after != before
    texts = policy.memory.text[policy.memory.rows(np.array([0, 1]))]
    assert sum("What do you think of the platform?" in str(t) for t in texts.ravel()) == 2
    result = sim.run()
    assert result.info["status"] == "completed"
    recorded = result.interviews()
    assert recorded["step"].unique().tolist() == [3]  # recorded with the next step
    assert recorded["event"].tolist() == ["interview3_1", "interview3_1", "told", "told"]
    calls = result.table("llm_calls")
    asked = calls[calls["kind"] == "interview"]
    assert list(zip(asked["step"], asked["agent_id"], strict=True)) == [(3, 0), (3, 1)] * 2


def test_answers_that_stay_invalid_are_recorded_invalid_and_the_run_goes_on(
        server, sqlite_url: str) -> None:
    srv, url = server
    srv.behaviour.garbage_if = INTERVIEW_PHRASE  # every interview request, repairs included
    result = run(llm_experiment(url, [poll(at=2, sample=6)]), sqlite_url)
    assert result.info["status"] == "completed" and result.steps()["step"].max() == 4
    answers = result.interviews()
    assert len(answers) == 12 and (answers["source"] == "llm").all()
    assert not answers["valid"].astype(bool).any()
    assert answers["text"].isna().all() and answers["value"].isna().all()
    assert answers["prompt"].str.contains(STANCE["text"]).all()
    calls = result.table("llm_calls")
    asked, repairs = calls[calls["kind"] == "interview"], calls[calls["kind"] == "iv_repair"]
    assert len(asked) == len(repairs) == 6 and srv.stats["garbage"] == 12
    assert not asked["valid"].astype(bool).any() and asked["error"].notna().all()
    assert not repairs["valid"].astype(bool).any()
    metrics = result.metrics()
    assert metrics.loc[2, "llm.interview_invalid"] == 6
    assert metrics.loc[2, "llm.interview_repairs"] == 6
    assert metrics.loc[2, "llm.interview_repaired"] == 0
    # the decisions were unaffected: none fell back
    assert (metrics["llm.fallbacks"].fillna(0) == 0).all()


def test_a_mixed_population_answers_by_its_parts(server, sqlite_url: str) -> None:
    _, url = server
    policy = {"type": "mixed", "parts": [{"select": {"fraction": 0.5}, "type": "llm"},
                                         {"type": "rule"}]}
    event = {"name": "all", "kind": "interview", "at": 3, "questions": [STANCE, WHY]}
    sim = Simulation(experiment_from_dict(llm_experiment(url, [event], policy=policy)),
                     db_url=sqlite_url)
    result = sim.run()
    llm_agents = set(np.flatnonzero(sim.policy.assignment == 0).tolist())  # type: ignore[attr-defined]
    assert 0 < len(llm_agents) < N_AGENTS
    answers = result.interviews()
    assert len(answers) == 2 * N_AGENTS
    by_llm = answers["agent_id"].isin(llm_agents)
    assert (answers.loc[by_llm, "source"] == "llm").all()
    assert answers.loc[by_llm, "valid"].astype(bool).all()
    rule = answers[~by_llm]
    assert (rule["source"] == "report").all()
    # a rule agent reports its opinion on the scale, and has no words
    assert rule.loc[rule["question"] == "stance", "value"].between(1, 7).all()
    assert not rule.loc[rule["question"] == "why", "valid"].astype(bool).any()
    calls = result.table("llm_calls")
    assert set(calls.loc[calls["kind"] == "interview", "agent_id"]) == llm_agents


@pytest.mark.parametrize("questions, message", [
    ([{"id": "a", "text": "?"}, {"id": "a", "text": "?!"}], "the id 'a' is given to several"),
    ([{"id": "j", "text": "?", "answer": "json", "schema": {"type": "thing"}}],
     "not a valid JSON schema"),
])
def test_an_interview_the_model_cannot_be_asked_is_refused(server, sqlite_url: str,
                                                           questions, message) -> None:
    _, url = server
    sim = Simulation(experiment_from_dict(llm_experiment(url)), db_url=sqlite_url)
    sim.start()
    with pytest.raises(ValueError, match=message):
        sim.interview(questions, agents=[0])
    sim.close()


def test_the_reply_model_keeps_answers_in_their_form() -> None:
    event = parse_event(poll(questions=[STANCE, WHY, TRUST]))
    reply = reply_model(event)

    def judge(answer: dict[str, Any]) -> tuple[Any, str | None]:
        return parse_decision(json.dumps(answer), reply)

    good, problem = judge({"stance": 7, "why": "  " + "x" * 100, "trust": {"trust": 0}})
    assert problem is None and good is not None
    assert good.a1 == "x" * 60  # cut at max_chars (after the blanks around it)
    for bad, where in [({"stance": 8, "why": "a", "trust": {"trust": 1}}, "stance"),
                       ({"stance": 0, "why": "a", "trust": {"trust": 1}}, "stance"),
                       ({"stance": 4, "why": " ", "trust": {"trust": 1}}, "why"),
                       ({"stance": 4, "why": "a", "trust": {"trust": 11}}, "trust"),
                       ({"stance": 4, "why": "a", "trust": {"level": 1}}, "trust"),
                       ({"stance": 4, "why": "a"}, "trust"),
                       ({"stance": 4, "why": "a", "trust": {"trust": 1}, "more": 1}, "more")]:
        answer, problem = judge(bad)
        assert answer is None and problem is not None and where in problem, (bad, problem)
    # the schema sent: the question's own definitions moved to the root, so a server that
    # follows it gives answers the model accepts
    schema = reply_schema(reply, event)
    assert schema["properties"]["trust"]["properties"]["trust"] == {"$ref": "#/$defs/a2__Level"}
    assert schema["required"] == ["stance", "why", "trust"]
    assert schema["additionalProperties"] is False
    assert conforms(schema, {"stance": 3, "why": "a", "trust": {"trust": 4}})
    assert not conforms(schema, {"stance": 3, "why": "a", "trust": {"trust": 40}})
    rng = random.Random(5)
    for _ in range(20):
        answer, problem = judge(sample_instance(schema, rng))
        assert problem is None, problem


def test_a_replay_gives_the_same_interview_answers_without_a_server(server, tmp_path) -> None:
    srv, url = server
    db = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    original = run(llm_experiment(url, [poll(at=2, sample=10, remember=True)]), db)
    srv.stop_thread()  # no server from here on
    data = llm_experiment(url, [poll(at=2, sample=10, remember=True)])
    data["llm"] = {"backend": "replay", "replay": original.id}
    replayed = run(data, db)
    assert replayed.info["status"] == "completed"
    a, b = original.interviews(), replayed.interviews()
    assert len(a) == 20 and a["valid"].astype(bool).all()
    pd.testing.assert_frame_equal(a, b)
    for name, frame in _course(original).items():
        pd.testing.assert_frame_equal(frame, _course(replayed)[name], obj=name)
