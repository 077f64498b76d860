"""The steering examples with language-model agents, against the project's HTTP test server:
the herd-effect posts reach the agents' prompts with their votes, the polarization panel
answers in persona, and agents that join mid-run decide with the model and remember."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from populace.simulator import Simulation, load_experiment
from populace.simulator.config import experiment_from_dict
from populace.simulator.llm.prompts import PromptBuilder
from populace.storage import Run

from .conftest import experiment

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "social" / "examples"


def with_llm(name: str, url: str, *, size: int, steps: int) -> dict[str, Any]:
    """An example experiment with its agents on the test server, smaller and shorter."""
    data = load_experiment(EXAMPLES / f"{name}.yaml").to_dict()
    data["population"]["size"] = size
    data["steps"] = steps
    data.pop("checkpoint_every", None)
    data["llm"] = {"backend": "openai", "model": "populace-test", "timeout_s": 5,
                   "max_attempts": 2, "endpoints": [{"base_url": url}]}
    data["policy"] = {"type": "llm"}
    return data


def calls(run: Run) -> Any:
    return run.table("llm_calls")


def test_the_herd_effect_example_shows_the_seeded_votes_to_language_model_agents(
        server, sqlite_url: str) -> None:
    _, url = server
    data = with_llm("herd_effect", url, size=40, steps=3)
    sim = Simulation(experiment_from_dict(data), db_url=sqlite_url)
    run = sim.run()
    assert run.info["status"] == "completed"
    posts = run.table("posts")
    seeded = posts[posts["author_id"] == -1]
    assert len(seeded) == 30 and (seeded["step"] == 1).all()
    text = " ".join(calls(run)["prompt"].astype(str))
    assert "the platform" in text and "1 likes" in text  # the up-voted posts, as agents see them
    decided = run.table("actions")
    assert len(decided) > 0 and decided["step"].min() == 1


def test_the_polarization_panel_answers_in_persona(server, sqlite_url: str) -> None:
    _, url = server
    data = with_llm("polarization_interviews", url, size=60, steps=3)
    for event in data["events"]:
        if event["at"] == 25:
            event["at"] = 2
    run = Simulation(experiment_from_dict(data), db_url=sqlite_url).run()
    answers = run.interviews()
    assert set(answers["event"]) == {"before", "day1", "after"}
    assert (answers["source"] == "llm").all()
    stance = answers[answers["question"] == "stance"]
    assert stance["valid"].all() and stance["value"].between(1, 7).all()
    why = answers[answers["question"] == "why"]
    assert why["valid"].all() and why["text"].str.len().gt(0).all()


def test_agents_that_join_decide_with_the_model_and_remember(server, sqlite_url: str) -> None:
    _, url = server
    data = experiment(steps=4, activation={"probability": 1.0},
                      llm={"backend": "openai", "model": "populace-test", "timeout_s": 5,
                           "max_attempts": 2, "endpoints": [{"base_url": url}]},
                      policy={"type": "llm"})
    data["population"]["size"] = 20
    data["events"] = [{"name": "newcomers", "kind": "join", "at": 2,
                       "profiles": [{"opinion": 0.5, "interest": "health"}] * 3}]
    sim = Simulation(experiment_from_dict(data), db_url=sqlite_url)
    run = sim.run()
    actions = run.table("actions")
    new = actions[actions["agent_id"] >= 20]
    assert sorted(set(new["agent_id"])) == [20, 21, 22] and new["step"].min() == 2
    table = run.table("llm_calls")
    assert set(table[table["step"] >= 2]["agent_id"]) >= {20, 21, 22}
    memory = sim.policy.memory
    assert memory is not None and len(memory.agents) == 23
    assert memory.used[memory.rows(np.array([20, 21, 22]))].any(axis=1).all()


def test_a_system_prompt_follows_a_parameter_change(tmp_path: Path) -> None:
    (tmp_path / "system.j2").write_text("Ratio {{ p }}.")
    (tmp_path / "agent.j2").write_text("Agent.")
    builder = PromptBuilder(None, tmp_path, "agent")
    shared = {"p": 0.5}
    assert builder.system_text(shared) == "Ratio 0.5."
    shared["p"] = 0.9  # the scenario shows the new value after a parameter event
    assert builder.system_text(shared) == "Ratio 0.9."
