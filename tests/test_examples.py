"""The example experiments shipped with the social scenario validate and run as documented."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from populace.simulator import Simulation, experiment_from_dict, load_experiment
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
from populace.storage import Run

EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "social" / "examples"
YAMLS = sorted(EXAMPLES.glob("*.yaml"))
SMALL_ENOUGH = 20_000  # examples with more agents run here with SCALED_SIZE agents
SCALED_SIZE = 2_000
QUICK_STEPS = {"quickstart": 3}  # examples run shortened here: name -> steps


def test_every_documented_example_is_there() -> None:
    names = {p.stem for p in YAMLS}
    assert {"quickstart", "echo_chamber", "oasis_twitter", "oasis_reddit"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_example_validates_and_explains_itself(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.scenario_cls.name == "social"
    assert exp.config.name == path.stem  # the run (and its database file) is named after it
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "an example opens with comments explaining the experiment"
    if exp.config.population.file is not None:
        assert (EXAMPLES / exp.config.population.file.path).is_file()


def _run(path: Path, directory: Path) -> tuple[Run, dict[str, Any]]:
    """Run an example into a SQLite file, shortened or scaled down where it must be."""
    raw = copy.deepcopy(load_experiment(path).raw)
    if path.stem in QUICK_STEPS:
        raw["steps"] = QUICK_STEPS[path.stem]
    size = raw["population"].get("size")
    if size is not None and size > SMALL_ENOUGH:
        raw["population"]["size"] = SCALED_SIZE
    raw["storage"] = {"url": f"sqlite:///{directory / (path.stem + '.sqlite')}"}
    if raw.get("llm", {}).get("backend", "openai") == "openai" and "llm" in raw:
        # language-model examples talk to the project's test server instead of a real model
        with TestServer(ServerBehaviour(seed=1)) as server:
            for endpoint in raw["llm"]["endpoints"]:
                endpoint["base_url"] = server.url
            exp = experiment_from_dict(raw, source=path)
            return Simulation(exp).run(), raw
    exp = experiment_from_dict(raw, source=path)
    return Simulation(exp).run(), raw


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Run, dict[str, Any]]]:
    """Each example run once for the tests of this module."""
    directory = tmp_path_factory.mktemp("examples")
    return {p.stem: _run(p, directory) for p in YAMLS}


@pytest.mark.parametrize("path", YAMLS, ids=[p.stem for p in YAMLS])
def test_example_runs_to_completion(path: Path, runs: dict[str, tuple[Run, dict[str, Any]]]) -> None:
    run, raw = runs[path.stem]
    assert run.info["status"] == "completed"
    assert run.info["steps_done"] == raw["steps"]
    assert run.steps()["step"].tolist() == list(range(raw["steps"] + 1))
    posts = run.table("posts")
    assert len(posts) > 0
    assert (posts["step"] > 0).any(), "agents posted during the run"
    metrics = run.metrics()
    assert metrics.loc[raw["steps"], "posts_total"] == len(posts)
    assert len(run.table("actions")) > 0


def test_oasis_twitter_brings_its_follow_graph_and_tweets(
        runs: dict[str, tuple[Run, dict[str, Any]]]) -> None:
    run, _ = runs["oasis_twitter"]
    users = pd.read_csv(EXAMPLES / "data" / "oasis_twitter_users.csv")
    follows = run.table("follows")
    initial = follows[follows["step"] == 0]
    assert (initial["op"] == 1).all()
    want = {(i, int(j)) for i, cell in enumerate(users["following_agentid_list"])
            for j in ast.literal_eval(cell)}
    assert len(want) > 10
    assert set(zip(initial["follower_id"], initial["followee_id"], strict=True)) == want
    assert len(initial) == len(want)
    # previous tweets are published at step 0 with their text, by their authors
    posts = run.table("posts")
    seeds = posts[posts["step"] == 0]
    assert seeds["content"].notna().all() and (seeds["kind"] == "post").all()
    tweets = sorted((i, t) for i, cell in enumerate(users["previous_tweets"])
                    for t in ast.literal_eval(cell))
    assert sorted(zip(seeds["author_id"], seeds["content"], strict=True)) == tweets
    assert posts[posts["step"] > 0]["content"].isna().all()
    agents = run.agents()
    assert len(agents) == len(users)
    assert agents["username"].tolist() == users["username"].tolist()
    assert agents["bio"].tolist() == users["description"].tolist()


def test_oasis_reddit_population_and_hot_feed(runs: dict[str, tuple[Run, dict[str, Any]]]) -> None:
    run, raw = runs["oasis_reddit"]
    users = json.loads((EXAMPLES / "data" / "oasis_reddit_users.json").read_text())
    agents = run.agents()
    assert agents["name"].tolist() == [u["realname"] for u in users]
    assert agents["age"].tolist() == [u["age"] for u in users]
    assert raw["scenario"]["feed"]["algorithm"] == "hot"
    assert run.table("follows").empty
    likes = run.table("likes")
    assert set(likes["value"]) == {1, -1}  # votes both ways decide the hot ranking


def test_echo_chamber_shows_what_its_comments_promise(
        runs: dict[str, tuple[Run, dict[str, Any]]]) -> None:
    run, raw = runs["echo_chamber"]
    assert raw["population"]["size"] >= 5000 and raw["steps"] >= 48
    m = run.metrics()
    first, last = m.iloc[1], m.iloc[-1]  # step 1: the first step with feeds
    for name in ("assortativity", "polarization", "bimodality", "opinion_var"):
        assert last[name] > first[name] + 0.05, name
    assert last["bimodality"] > 5 / 9
    exposure = m["exposure_corr"]
    early, late = exposure.loc[2:7].mean(), exposure.iloc[-6:].mean()
    assert late > early + 0.05 and late > 0.1
    opinions = run.agent_states("opinion")
    assert np.isclose(opinions.loc[raw["steps"]].var(ddof=0), last["opinion_var"])
