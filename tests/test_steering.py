"""Steering a run (issue 13): events of the experiment YAML applied at the right step, agent
filters, interviews that leave the run's course alone, live interventions from Python that a
resume and a replay apply again, and malformed events refused at validate time."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.config_problems import ConfigError
from populace.simulator.steering import SteeringError
from populace.storage.control import command_row, send_command

from .conftest import experiment
from .helpers import Crash, content_tables, crash_after, reopen, run_experiment


def steered(events: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    """The small social experiment with an age attribute, and ``events``."""
    data = experiment(**changes)
    data["population"]["attributes"]["age"] = {"dist": "integer", "low": 18, "high": 80}
    data["events"] = copy.deepcopy(events)
    return data


EVENTS: list[dict[str, Any]] = [
    {"name": "news", "kind": "broadcast", "at": 2, "text": "The council votes on the tax.",
     "args": {"topic": "politics", "stance": 0.8, "likes": 3}},
    {"name": "seventeen", "kind": "action", "at": 3, "agents": 17, "action": "create_post",
     "args": {"topic": 1, "stance": -0.5, "content": "I disagree."}},
    {"name": "likers", "kind": "action", "at": 4, "agents": [1, 2, 3, 4, 5], "action": "like",
     "args": {"post_id": 0}},
    {"name": "elders", "kind": "set", "at": 5, "every": 3, "agents": {"where": {"age": {">=": 60}}},
     "variable": "opinion", "value": 0.9},
    {"name": "hot", "kind": "parameter", "at": 6, "changes": {"feed.algorithm": "hot"}},
    {"name": "retire", "kind": "leave", "at": 4, "agents": {"where": {"age": {">=": 75}}}},
    {"name": "poll", "kind": "interview", "at": 3, "every": 4, "agents": {"sample": 25},
     "questions": [{"id": "stance", "text": "Where do you stand?", "answer": "scale",
                    "low": 1, "high": 7}]},
    {"name": "exit_poll", "kind": "interview", "at": "end", "agents": {"where": {"age": {"<": 30}}},
     "questions": [{"text": "Where do you stand?", "answer": "scale", "low": 1, "high": 7},
                   "And why?"]},
]


def test_each_kind_of_event_happens_at_its_step(sqlite_url: str) -> None:
    run = run_experiment(steered(EVENTS), sqlite_url)
    assert run.info["status"] == "completed"
    events = run.events()
    applied = list(zip(events["step"], events["name"], strict=True))
    assert applied == [(2, "news"), (3, "seventeen"), (3, "poll"), (4, "likers"), (4, "retire"),
                       (5, "elders"),
                       (6, "hot"), (7, "poll"), (8, "elders"), (11, "elders"), (11, "poll"),
                       (12, "exit_poll")]
    assert set(events["source"]) == {"yaml"}
    result = {(s, n): json.loads(r) for s, n, r in zip(events["step"], events["name"],
                                                       events["result"], strict=True)}

    posts = run.table("posts")
    news = posts[posts["author_id"] == -1]
    assert news[["step", "topic", "content"]].values.tolist() == [
        [2, "politics", "The council votes on the tax."]]
    assert news["stance"].tolist() == pytest.approx([0.8])  # stored as float32
    assert result[(2, "news")] == {"rows": {"posts": 1}}

    actions = run.table("actions")
    seventeen = actions[(actions["step"] == 3) & (actions["agent_id"] == 17)]
    assert seventeen["action"].tolist() == ["create_post"]
    by_17 = posts[(posts["author_id"] == 17) & (posts["step"] == 3)]
    assert by_17[["topic", "stance", "content"]].values.tolist() == [["economy", -0.5,
                                                                      "I disagree."]]
    likes = run.table("likes")
    scripted = actions[(actions["step"] == 4) & actions["agent_id"].isin([1, 2, 3, 4, 5])]
    assert scripted[["agent_id", "action", "post_id"]].values.tolist() == [
        [a, "like", 0] for a in (1, 2, 3, 4, 5)]
    liked = likes[(likes["step"] == 4) & (likes["post_id"] == 0)]["agent_id"]
    assert {1, 2, 3, 4, 5} <= set(liked)

    agents = run.agents()
    elders = int(((agents["age"] >= 60) & (agents["age"] < 75)).sum())  # the others left at 4
    for step in (5, 8, 11):
        assert result[(step, "elders")]["agents"] == elders
        assert result[(step, "elders")]["mean_after"] == pytest.approx(0.9)
    assert result[(6, "hot")] == {"changed": ["feed.algorithm"]}
    assert json.loads(events["spec"].iloc[0])["text"] == "The council votes on the tax."

    # those who left: recorded, never active again, never asked
    retired = np.flatnonzero(agents["age"] >= 75)
    assert len(retired) > 0 and result[(4, "retire")] == {"agents": len(retired)}
    departures = run.table("departures")
    assert departures["step"].eq(4).all() and sorted(departures["agent_id"]) == list(retired)
    assert not actions[(actions["step"] >= 4) & actions["agent_id"].isin(retired)].size
    assert actions[(actions["step"] < 4) & actions["agent_id"].isin(retired)].size
    answers = run.interviews()
    assert not answers[(answers["step"] > 4) & answers["agent_id"].isin(retired)].size
    assert answers.groupby("step").size().to_dict() == {3: 25, 7: 25, 11: 25,
                                                         12: 2 * int((agents["age"] < 30).sum())}
    polls = answers[answers["event"] == "poll"]
    assert set(polls["question"]) == {"stance"} and polls["valid"].all()
    assert polls["value"].between(1, 7).all() and (polls["source"] == "report").all()
    exit_poll = answers[answers["event"] == "exit_poll"]
    # a rule agent has a number for the scale and no words for the open question
    assert exit_poll[exit_poll["question"] == "q0"]["valid"].all()
    assert not exit_poll[exit_poll["question"] == "q1"]["valid"].any()


def test_a_reported_opinion_is_the_agent_s_state_on_the_scale(sqlite_url: str) -> None:
    events = [{"name": "all", "kind": "interview", "at": "end",
               "questions": [{"text": "?", "answer": "scale", "low": 1, "high": 7}]}]
    run = run_experiment(steered(events, steps=3), sqlite_url)
    answers = run.interviews().sort_values("agent_id")
    sim = Simulation(experiment_from_dict(steered([], steps=3)))
    sim.run()
    opinion = sim.scenario.state.opinion
    expected = np.rint(1 + (opinion + 1) / 2 * 6)
    np.testing.assert_array_equal(answers["value"].to_numpy(), expected)
    assert len(answers) == 300


def test_interviews_do_not_change_the_course_of_a_run(tmp_path) -> None:
    polls = [e for e in EVENTS if e["kind"] == "interview"]
    plain = run_experiment(steered([]), f"sqlite:///{tmp_path / 'plain.sqlite'}")
    asked = run_experiment(steered(polls), f"sqlite:///{tmp_path / 'asked.sqlite'}")
    a, b = content_tables(plain), content_tables(asked)
    assert set(b) - set(a) == {"events", "interview_answers"}
    for name in a:
        if name != "runs":
            pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_events_change_the_course_and_a_set_event_moves_exactly_its_agents(tmp_path) -> None:
    event = {"name": "young", "kind": "set", "at": 2, "variable": "opinion", "shift": -0.25,
             "agents": {"where": {"age": {"<": 40}, "interest": ["politics", "economy"]}}}
    sim = Simulation(experiment_from_dict(steered([event])), db_url=f"sqlite:///{tmp_path / 'a.db'}")
    sim.start()
    sim.advance()
    before = sim.scenario.state.opinion.copy()
    captured: dict[str, np.ndarray] = {}
    decide = sim.runtime.decide

    def spy(active, step, scripted=None):  # noqa: ANN001, ANN202
        captured["opinion"] = sim.scenario.state.opinion.copy()
        return decide(active, step, scripted)

    sim.runtime.decide = spy  # type: ignore[method-assign]
    sim.advance()
    attrs = sim.world.population.attributes
    chosen = ((attrs["age"] < 40) & attrs["interest"].isin(["politics", "economy"])).to_numpy()
    assert 0 < chosen.sum() < len(chosen)
    expected = np.where(chosen, np.clip(before - 0.25, -1, 1), before)
    np.testing.assert_array_equal(captured["opinion"], expected)  # in place before decisions
    sim.close()


def test_selectors_pick_by_ids_filters_and_a_seeded_sample(tmp_path) -> None:
    sim = Simulation(experiment_from_dict(steered([])), db_url=f"sqlite:///{tmp_path / 'a.db'}")
    sim.start()
    attrs = sim.world.population.attributes
    ask = sim.interview
    assert list(ask("?", agents=[5, 3, 3])["agent_id"]) == [3, 5]
    old = ask("?", agents={"where": {"age": {">=": 50, "<": 60}}})
    assert list(old["agent_id"]) == list(np.flatnonzero((attrs["age"] >= 50) & (attrs["age"] < 60)))
    extreme = ask("?", agents={"where": {"opinion": {">": 0.5}}})
    assert list(extreme["agent_id"]) == list(np.flatnonzero(sim.scenario.state.opinion > 0.5))
    not_politics = ask("?", agents={"where": {"interest": {"not_in": ["politics"]}}})
    assert list(not_politics["agent_id"]) == list(np.flatnonzero(attrs["interest"] != "politics"))
    sample = ask("?", agents={"sample": 40, "where": {"age": {">=": 30}}}, name="s")
    assert len(sample) == 40 and (attrs["age"].to_numpy()[sample["agent_id"]] >= 30).all()
    again = ask("?", agents={"sample": 40, "where": {"age": {">=": 30}}}, name="s")
    assert list(again["agent_id"]) == list(sample["agent_id"])  # seeded by name and step
    other = ask("?", agents={"sample": 40, "where": {"age": {">=": 30}}}, name="t")
    assert list(other["agent_id"]) != list(sample["agent_id"])
    assert len(ask("?", agents={"fraction": 0.1})) == 30
    with pytest.raises(SteeringError, match="no population attribute or scenario variable 'height'"):
        ask("?", agents={"where": {"height": 1}})
    with pytest.raises(SteeringError, match="no agent 300"):
        ask("?", agents=[300])
    with pytest.raises(SteeringError, match="^variable: Field required"):
        sim.intervene({"kind": "set", "value": 1})
    with pytest.raises(SteeringError, match=r"^questions\.0\.high: Input should be a valid integer"):
        ask({"text": "?", "answer": "scale", "high": "many"})
    sim.close()


def test_python_interventions_are_replayed_and_survive_a_crash(tmp_path, monkeypatch) -> None:
    data = steered([])
    url = f"sqlite:///{tmp_path / 'live.db'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    sim.start()
    sim.advance()
    sim.advance()
    # applied at step 3 and again at 6, 9, 12; a later one still pending at the crash
    sim.intervene({"kind": "set", "variable": "opinion", "scale": 0.5, "every": 3,
                   "agents": {"where": {"interest": "health"}}}, name="calm")
    sim.intervene({"kind": "broadcast", "at": 8, "text": "Stay calm.", "args": {"likes": 2}})
    answers = sim.interview(["How calm are you?"], agents={"sample": 5})
    assert len(answers) == 5 and not answers["valid"].any()  # no words from rule agents
    crash_after(sim, 6, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    monkeypatch.undo()
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 4
    done = resumed.run()
    assert done.info["status"] == "completed"
    events = done.events()
    assert list(zip(events["step"], events["name"], events["source"], strict=True)) == [
        (3, "interview3_1", "python"), (3, "calm", "python"), (6, "calm", "python"),
        (8, "python2", "python"), (9, "calm", "python"), (12, "calm", "python")]
    commands = done.commands()
    assert (commands["status"] == "applied").all()

    # the same run again, with the live events scheduled from the first one's log
    replay = Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'again.db'}")
    assert replay.replay_events(url, sim.run_id) == 3
    again = replay.run()
    a, b = content_tables(done), content_tables(again)
    assert set(a) - set(b) == {"control_commands"}
    for name in b:
        frame_a, frame_b = a[name], b[name]
        if name == "events":
            frame_a, frame_b = frame_a.drop(columns="command_id"), frame_b.drop(columns="command_id")
        pd.testing.assert_frame_equal(frame_a, frame_b, obj=name)


def test_a_queued_command_is_applied_at_the_next_step_and_a_bad_one_refused(sqlite_url) -> None:
    sim = Simulation(experiment_from_dict(steered([])), db_url=sqlite_url)
    sim.start()
    sim.advance()
    good = send_command(sim.db, sim.run_id, "intervene", {"event": {
        "kind": "set", "variable": "opinion", "value": 0.0, "agents": [7]}})
    bad = send_command(sim.db, sim.run_id, "intervene", {"event": {
        "kind": "set", "variable": "mood", "value": 0.0}})
    unknown = send_command(sim.db, sim.run_id, "interview", {"event": {
        "questions": ["?"], "agents": {"where": {"height": 2}}}})
    sim.advance()
    sim.flush()  # the mark lands with the step's rows
    assert command_row(sim.db, good)["status"] == "applied"
    assert command_row(sim.db, good)["applied_step"] == 2
    refused = command_row(sim.db, bad)
    assert refused["status"] == "refused" and "no variable 'mood'" in refused["error"]
    assert "height" in command_row(sim.db, unknown)["error"]
    events = reopen(sqlite_url, sim.run_id).events()
    assert events[["step", "source"]].values.tolist() == [[2, "control"]]
    pause = send_command(sim.db, sim.run_id, "stop")
    with pytest.raises(Exception, match="stopped by a control command after step 2"):
        sim.run()
    assert command_row(sim.db, pause)["status"] == "applied"
    assert reopen(sqlite_url, sim.run_id).info["status"] == "stopped"


@pytest.mark.parametrize(("event", "where", "message"), [
    ({"kind": "action", "at": 2, "agents": 999, "action": "like"}, "events[0].agents.ids[0]",
     "no agent 999"),
    ({"kind": "action", "at": 2, "agents": 1, "action": "shout"}, "events[0].action", "no action 'shout'"),
    ({"kind": "action", "at": 2, "agents": 1, "action": "like", "args": {"colour": 1}}, "events[0].args.colour",
     "no argument 'colour'"),
    ({"kind": "set", "at": 2, "variable": "mood", "value": 1}, "events[0].variable",
     "no variable 'mood'"),
    ({"kind": "set", "at": 2, "variable": "opinion"}, "events[0]", "one of"),
    ({"kind": "set", "at": 2, "variable": "opinion", "value": 1,
      "agents": {"where": {"height": 3}}}, "events[0].agents.where.height", "'height'"),
    ({"kind": "set", "at": 2, "variable": "opinion", "value": 1,
      "agents": {"where": {"age": {"~": 3}}}}, "events[0]", "~"),
    ({"kind": "set", "at": 0, "variable": "opinion", "value": 1}, "events[0].at", ""),
    ({"kind": "set", "at": 40, "variable": "opinion", "value": 1}, "events[0].at",
     "after the run's last step"),
    ({"kind": "broadcast", "at": 2, "text": "hi", "args": {"topic": "gardening"}},
     "events[0].args", "'gardening' is not among scenario.topics"),
    ({"kind": "parameter", "at": 2, "changes": {"topics": ["a"]}}, "events[0].changes.topics",
     "cannot change 'topics' during a run"),
    ({"kind": "parameter", "at": 2, "changes": {"feed.algorithm": "bogus"}}, "events[0].changes",
     "bogus"),
    ({"kind": "broadcast", "at": "end", "text": "hi"}, "events[0].at", "only an interview"),
    ({"kind": "join", "at": 2, "count": 3, "profiles": [{"height": 2}]}, "events[0].profiles[0].height", "no population attribute"),
    ({"kind": "interview", "at": 2, "questions": [{"id": "a", "text": "?"},
                                                  {"id": "a", "text": "!"}]}, "events[0]",
     "the id 'a' is given to several questions"),
    ({"kind": "interview", "at": 2, "questions": [{"text": "?", "answer": "json",
                                                   "schema": {"type": "thing"}}]},
     "events[0].questions[0]", "not a valid JSON schema"),
    ({"kind": "interview", "at": 2, "questions": [{"text": "?", "answer": "scale", "low": 5,
                                                   "high": 2}]}, "events[0].questions", "high > low"),
])
def test_a_malformed_event_is_refused_at_validate_time_naming_its_field(
        event: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        experiment_from_dict(steered([event]))
    text = str(err.value)
    assert where in text and message in text, text


def test_a_resume_keeps_who_left_and_the_parameters_changed_before_its_checkpoint(
        tmp_path, monkeypatch) -> None:
    events = [{"name": "quit", "kind": "leave", "at": 2, "agents": {"fraction": 0.3}},
              {"name": "hot", "kind": "parameter", "at": 3, "changes": {"feed.algorithm": "hot"}},
              {"name": "late", "kind": "leave", "at": 6, "agents": {"where": {"age": {"<": 25}}}}]
    full = run_experiment(steered(events), f"sqlite:///{tmp_path / 'full.db'}")
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    sim = Simulation(experiment_from_dict(steered(events)), db_url=url)
    crash_after(sim, 7, monkeypatch)  # the checkpoint is at 4: `late` is applied again
    with pytest.raises(Crash):
        sim.run()
    monkeypatch.undo()
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 4 and (~resumed.world.present).sum() == 90
    assert resumed.scenario.config.feed.algorithm == "hot"
    done = resumed.run()
    a, b = content_tables(full), content_tables(done)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)
    left = done.table("departures")
    assert left.groupby("step").size().to_dict() == {
        2: 90, 6: int((done.agents().drop(index=left[left.step == 2].agent_id)["age"] < 25).sum())}


JOINS: list[dict[str, Any]] = [
    {"name": "wave", "kind": "join", "at": 3, "count": 50, "args": {"follows": 3}},
    {"name": "vip", "kind": "join", "at": 6, "profiles": [{"age": 30, "opinion": 0.9}],
     "args": {"follows": 10}},
    {"name": "vip_posts", "kind": "action", "at": 7, "agents": 350, "action": "create_post",
     "args": {"topic": 0, "stance": 0.9}},
    {"name": "quit", "kind": "leave", "at": 8, "agents": [310, 311]},
    {"name": "ask", "kind": "interview", "at": "end", "agents": [0, 349, 350],
     "questions": [{"text": "?", "answer": "scale", "low": 1, "high": 7}]},
]


def test_agents_that_join_get_ids_profiles_edges_and_rows_in_every_table(sqlite_url) -> None:
    run = run_experiment(steered(JOINS), sqlite_url)
    assert run.info["status"] == "completed"
    agents = run.agents()
    assert list(agents.index) == list(range(351)) and run.info["n_agents"] == 351
    vip = agents.loc[350]
    assert vip["age"] == 30 and vip["opinion"] == 0.9 and vip["interest"] in SMALL_TOPICS
    assert agents["age"].dtype == np.int64 and agents.loc[300:349, "age"].between(18, 80).all()
    assert run.table("arrivals").groupby("step")["agent_id"].agg(list).to_dict() == {
        3: list(range(300, 350)), 6: [350]}
    follows = run.table("follows")
    joined = follows[follows["follower_id"] >= 300]
    at_join = joined[joined["step"].isin([3, 6])]
    assert at_join.groupby("follower_id").size().to_dict() == {
        **dict.fromkeys(range(300, 350), 3), 350: 10}
    # followees were present before: the wave's among the first 300, the vip's among 350
    assert (at_join["followee_id"] < np.where(at_join["follower_id"] < 350, 300, 350)).all()
    actions = run.table("actions")
    newcomers = actions[actions["agent_id"] >= 300]
    assert newcomers["step"].min() == 3 and len(newcomers) > 50  # they act like the others
    assert actions[(actions["step"] == 7) & (actions["agent_id"] == 350)]["action"].tolist() == [
        "create_post"]
    assert not actions[(actions["step"] >= 8) & actions["agent_id"].isin([310, 311])].size
    opinions = run.agent_states("opinion")
    assert opinions.shape[1] == 351 and opinions.loc[4, 300:349].notna().all()
    assert opinions.loc[4, 350:].isna().all()  # not there yet at step 4
    answers = run.interviews().set_index("agent_id")["value"]
    assert answers[350] == 7  # its given opinion, 0.9, on the 1-7 scale (unless it moved)
    steps = run.steps()
    assert steps.set_index("step").loc[3, "n_active"] > 0


SMALL_TOPICS = ["politics", "economy", "health", "technology", "sports"]


def test_a_resume_rebuilds_the_agents_that_joined_before_its_checkpoint(tmp_path,
                                                                       monkeypatch) -> None:
    full = run_experiment(steered(JOINS), f"sqlite:///{tmp_path / 'full.db'}")
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    sim = Simulation(experiment_from_dict(steered(JOINS)), db_url=url)
    crash_after(sim, 7, monkeypatch)  # checkpoint at 4: `wave` is before it, `vip` after
    with pytest.raises(Crash):
        sim.run()
    monkeypatch.undo()
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 4 and resumed.world.n_agents == 350
    cut = reopen(url, sim.run_id)
    assert len(cut.agents()) == 350 and cut.info["n_agents"] == 350  # the vip was cut back
    done = resumed.run()
    a, b = content_tables(full), content_tables(done)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


def test_newcomers_take_the_part_of_a_mixed_policy_that_selects_them(sqlite_url) -> None:
    data = steered([{"name": "wave", "kind": "join", "at": 2, "count": 40},
                    {"name": "old", "kind": "join", "at": 2, "profiles": [{"age": 70}] * 3}])
    data["population"]["attributes"]["band"] = {"dist": "categorical",
                                                "values": {"a": 0.5, "b": 0.5}}
    data["policy"] = {"type": "mixed", "parts": [
        {"select": {"where": {"band": "a"}}, "params": {"post_rate": 0.6, "like_rate": 0.0}},
        {"params": {"post_rate": 0.0}}]}
    sim = Simulation(experiment_from_dict(data), db_url=sqlite_url)
    sim.run()
    attrs = sim.world.population.attributes
    assert len(attrs) == 343
    part = sim.policy.assignment
    np.testing.assert_array_equal(part, np.where(attrs["band"] == "a", 0, 1))
    actions = reopen(sqlite_url, sim.run_id).table("actions")
    new_b = actions[(actions["agent_id"] >= 300) & (attrs["band"].to_numpy()[
        actions["agent_id"]] == "b")]
    assert len(new_b) and not (new_b["action"] == "create_post").any()


def test_integer_categories_keep_their_type_through_the_stored_config() -> None:
    """A Ray shard and a resume rebuild the experiment from its JSON: categories given as a
    mapping with integer keys must stay integers, or ``where: {grade: 1}`` selects nobody."""
    data = steered([{"name": "ones", "kind": "set", "at": 2, "variable": "opinion", "value": 0,
                     "agents": {"where": {"grade": 1}}}])
    data["population"]["attributes"]["grade"] = {"dist": "categorical",
                                                 "values": {1: 0.5, 2: 0.5}}
    first = experiment_from_dict(data)
    again = experiment_from_dict(json.loads(json.dumps(first.to_dict())))
    sims = [Simulation(e) for e in (first, again)]
    for sim in sims:
        sim.start()
    frames = [sim.world.population.attributes for sim in sims]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert frames[1]["grade"].isin([1, 2]).all()
    for sim in sims:
        sim.advance()
        sim.advance()
    results = [json.loads(reopen_events(sim)["result"].iloc[0]) for sim in sims]
    assert results[0] == results[1] and results[0]["agents"] > 100
    for sim in sims:
        sim.close()


def reopen_events(sim: Simulation) -> pd.DataFrame:
    sim.flush()
    return reopen(sim.db_url, sim.run_id).events()


def test_live_events_replay_exactly_however_they_are_named(tmp_path) -> None:
    """Two Python events under one name, and an interview asked between steps before the
    experiment's own event of that step, come back alike in a replay (and in its order)."""
    data = steered([{"name": "convert", "kind": "set", "at": 2, "variable": "opinion",
                     "value": 0.9}])
    url = f"sqlite:///{tmp_path / 'live.db'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    sim.start()
    sim.advance()
    asked = sim.interview({"text": "?", "answer": "scale", "low": 1, "high": 7},
                          agents=[0, 1, 2])
    assert (asked["value"] != 7).any()  # asked before `convert` set every opinion to 0.9
    sim.intervene({"kind": "set", "variable": "opinion", "shift": -0.5, "agents": [4]},
                  name="push")
    sim.advance()
    sim.intervene({"kind": "set", "variable": "opinion", "shift": -0.5, "agents": [5]},
                  name="push")
    done = sim.run()
    replay = Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'r.db'}")
    assert replay.replay_events(url, sim.run_id) == 3
    again = replay.run()
    order = [(s, n) for s, n in zip(done.events()["step"], done.events()["name"], strict=True)]
    assert order == [(2, "interview2_1"), (2, "convert"), (2, "push"), (3, "push")]
    assert [(s, n) for s, n in zip(again.events()["step"], again.events()["name"],
                                   strict=True)] == order
    a, b = content_tables(done), content_tables(again)
    for name in b:
        frame_a, frame_b = a[name], b[name]
        if name == "events":
            frame_a, frame_b = frame_a.drop(columns="command_id"), frame_b.drop(columns="command_id")
        pd.testing.assert_frame_equal(frame_a, frame_b, obj=name)


def test_a_live_event_the_run_cannot_apply_is_refused_and_the_run_goes_on(sqlite_url) -> None:
    sim = Simulation(experiment_from_dict(steered([])), db_url=sqlite_url)
    sim.start()
    sim.advance()
    bad = send_command(sim.db, sim.run_id, "intervene", {"event": {
        "kind": "set", "variable": "opinion", "value": 0, "agents": {"where": {"age": {
            ">=": "old"}}}}})
    typed = send_command(sim.db, sim.run_id, "intervene", {"event": {
        "kind": "action", "agents": [1, 2], "action": "like", "args": {"post_id": [1]}}})
    late: list[int] = []

    def after(report) -> None:  # noqa: ANN001  (a command that comes during the last step)
        if report.step == sim.config.steps:
            late.append(send_command(sim.db, sim.run_id, "interview", {"event": {
                "questions": ["?"], "agents": [1]}}))

    run = sim.run(progress=after)
    assert run.info["status"] == "completed"
    assert "cannot compare" in command_row(sim.db, bad)["error"]
    assert "args.post_id: a list gives one value per agent" in command_row(sim.db, typed)["error"]
    leftover = command_row(sim.db, late[0])
    assert leftover["status"] == "refused" and "the run ended at step 12" in leftover["error"]
    assert run.events().empty


def test_two_joins_at_one_step_draw_their_follows_apart(sqlite_url) -> None:
    joins = [{"name": name, "kind": "join", "at": 2, "count": 5, "args": {"follows": 3}}
             for name in ("a", "b")]
    run = run_experiment(steered(joins, steps=2), sqlite_url)
    follows = run.table("follows")
    new = follows[(follows["step"] == 2) & (follows["follower_id"] >= 300)]
    per = new.groupby("follower_id")["followee_id"].agg(sorted).to_dict()
    assert sorted(per) == list(range(300, 310)) and all(len(f) == 3 for f in per.values())
    offsets = [np.subtract(per[i + 5], per[i]) for i in range(300, 305)]
    assert not all((np.abs(o) <= 10).all() for o in offsets)  # not the first join's, shifted


def test_a_live_join_the_scenario_refuses_leaves_the_world_as_it_was(sqlite_url) -> None:
    sim = Simulation(experiment_from_dict(steered([])), db_url=sqlite_url)
    sim.start()
    sim.advance()
    sim.intervene({"kind": "join", "profiles": [{"opinion": "very high"}]}, name="odd")
    sim.intervene({"kind": "join", "count": 2}, name="fine")
    run = sim.run()
    assert run.info["status"] == "completed" and sim.world.n_agents == 302
    commands = run.commands().set_index("id")["status"]
    assert commands.tolist() == ["refused", "applied"]
    assert "could not convert string to float" in run.commands()["error"].iloc[0]
    assert run.table("arrivals")["agent_id"].tolist() == [300, 301]
