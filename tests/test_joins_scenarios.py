"""Agents joining the market, the macro-economy and the beauty contest mid-run (issue 13,
`kind: join`): newcomers get rows in `agents` and `arrivals` and in the scenario's own tables,
act from the step they join, keep the scenario's invariants (money conserved, guesses in
range) and can be selected by later events; a resume after a crash (from a checkpoint before
or after the join) and two Ray shards give the uninterrupted local run."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from populace.scenarios.economy.config import EconomyJoin
from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.config_problems import ConfigError
from populace.simulator.steering import grow_world
from populace.storage import Run

from .helpers import Crash, assert_same_run, crash_after, local_ray, reopen, run_experiment
from .test_beauty import game
from .test_economy import SMALL as ECONOMY
from .test_market import market

AGE = {"dist": "integer", "low": 18, "high": 80}


def results(run: Run) -> dict[tuple[int, str], Any]:
    """Each applied event's result, by (step, name)."""
    events = run.events()
    return {(int(s), n): json.loads(r) for s, n, r in zip(events["step"], events["name"],
                                                          events["result"], strict=True)}


def arrivals(run: Run) -> dict[int, list[int]]:
    """The agents that arrived, by step."""
    frame = run.table("arrivals")
    return {int(s): sorted(g["agent_id"].tolist()) for s, g in frame.groupby("step")}


# -- market ----------------------------------------------------------------------------------

MARKET_JOINS: list[dict[str, Any]] = [
    {"name": "shoppers", "kind": "join", "at": 4, "count": 20, "args": {"wallet": 50}},
    {"name": "shops", "kind": "join", "at": 4, "count": 2,
     "args": {"role": "business", "items": ["pizza", "sushi"]}},
    # later events select the newcomers: the new shops' prices, the new customers' money
    {"name": "hike", "kind": "set", "at": 6, "agents": [220, 221], "variable": "markup",
     "value": 0.9},
    {"name": "topup", "kind": "set", "at": 7, "agents": {"ids": list(range(200, 220))},
     "variable": "balance", "shift": 10},
]


def joined_market(events: list[dict[str, Any]] = MARKET_JOINS, **changes: Any) -> dict:
    """The small market of test_market (its 200 agents with an age) with ``events``."""
    data = market(**changes)
    data["population"] = {"size": 200, "attributes": {"age": AGE}}
    data["events"] = copy.deepcopy(events)
    return data


def test_customers_and_businesses_join_the_market(sqlite_url: str) -> None:
    sim = Simulation(experiment_from_dict(joined_market()), db_url=sqlite_url)
    run = sim.run()
    assert run.info["status"] == "completed" and run.info["n_agents"] == 222
    assert len(run.agents()) == 222 and arrivals(run) == {4: list(range(200, 222))}
    # the new shops have business rows and sell what they were given, from step 4
    biz = run.table("market_businesses")
    new_biz = biz[biz["agent_id"] >= 200]
    assert new_biz["agent_id"].tolist() == [220, 221] and (new_biz["step"] == 4).all()
    menu = run.table("market_menu")
    new_menu = menu[menu["business_id"] >= 200]
    assert sorted(new_menu["item_type"]) == ["pizza", "pizza", "sushi", "sushi"]
    assert new_menu["item_id"].min() == menu[menu["business_id"] < 200]["item_id"].max() + 1
    # new customers arrive with a need (initial_need_share is 1) and search for it
    needs = run.table("market_needs")
    first = needs[(needs["customer_id"] >= 200) & (needs["step"] == 4)]
    assert sorted(first["customer_id"]) == list(range(200, 220))
    actions = run.table("market_actions")
    theirs = actions[actions["agent_id"] >= 200]
    assert theirs["step"].min() == 4
    assert set(theirs[theirs["agent_id"] < 220]["action"]) >= {"search", "pay"}
    assert (theirs[theirs["agent_id"] >= 220]["action"] == "respond").any()
    # money: 190 customers x 100, then 20 wallets of 50 paid in, then 20 top-ups of 10
    money = run.metrics()["money"]
    assert (money.loc[:3] == 19_000).all() and (money.loc[4:6] == 20_000).all()
    assert (money.loc[7:] == 20_200).all()
    done = results(run)
    assert done[(4, "shoppers")] == {"agents": 20, "first_id": 200}
    assert done[(6, "hike")]["agents"] == 2 and done[(7, "topup")]["agents"] == 20
    # the hike set the new shops' markup (a rule shop then moves it by markup_step a step)
    markup = sim.scenario.variable("markup")
    assert (markup[[220, 221]] >= 0.9 - 6 * 0.02).all() and np.nanmax(markup[:200]) < 0.8


def test_customers_join_a_population_without_attributes(sqlite_url: str) -> None:
    data = market(steps=5)  # population: {size: 200}, no attributes
    data["events"] = [{"name": "shoppers", "kind": "join", "at": 3, "count": 5}]
    sim = Simulation(experiment_from_dict(data), db_url=sqlite_url)
    run = sim.run()
    assert sim.world.n_agents == 205 and len(run.table("agents")) == 205
    actions = run.table("market_actions")
    assert actions[actions["step"] == 4]["agent_id"].nunique() > 50  # everyone still acts


def test_the_market_takes_roles_from_the_population_s_role_attribute(sqlite_url: str) -> None:
    data = joined_market([
        {"name": "owners", "kind": "join", "at": 2, "profiles": [{"role": "business"}] * 2},
        {"name": "crowd", "kind": "join", "at": 2, "count": 6}], steps=4)
    data["population"]["attributes"]["role"] = {"dist": "categorical",
                                                "values": {"business": 0.05, "customer": 0.95}}
    sim = Simulation(experiment_from_dict(data), db_url=sqlite_url)
    run = sim.run()
    roles = sim.world.population.attributes["role"].to_numpy()
    new_biz = run.table("market_businesses").query("agent_id >= 200")["agent_id"].tolist()
    assert new_biz[:2] == [200, 201]
    assert new_biz == [a for a in range(200, 208) if roles[a] == "business"]
    cat = sim.scenario.catalog
    np.testing.assert_array_equal(cat.agent_biz >= 0, roles == "business")
    # with a role attribute, a role given for all is refused at validate time, with the way
    # to choose roles
    data["events"] = [{"name": "bad", "kind": "join", "at": 2, "count": 10,
                       "args": {"role": "business"}}]
    with pytest.raises(ConfigError, match=r"events\[0\]\.args: .*'role' attribute.*"
                       r"profiles: \[\{role: business\}\]"):
        experiment_from_dict(data)


def test_market_join_args_are_checked_against_the_market() -> None:
    for args, message in [
        ({"items": ["caviar"]}, "item type 'caviar' is not among scenario.item_types"),
        ({"items": ["pizza", "pizza"]}, "lists an item type twice"),
        ({"role": "customer", "items": ["pizza"]}, "items are what new businesses sell"),
        ({"role": "business", "wallet": 10}, "wallet is new customers' money"),
        ({"wallet": -1}, "wallet: Input should be greater than or equal to 0"),
        ({"size": 3}, "size: Extra inputs are not permitted"),
    ]:
        with pytest.raises(ConfigError, match=r"events\[0\]\.args"):
            experiment_from_dict(joined_market([{"kind": "join", "at": 2, "count": 3,
                                                 "args": args}]))
        with pytest.raises(ConfigError, match=message):
            experiment_from_dict(joined_market([{"kind": "join", "at": 2, "count": 3,
                                                 "args": args}]))


# -- economy ---------------------------------------------------------------------------------

ECONOMY_JOINS: list[dict[str, Any]] = [
    {"name": "wave", "kind": "join", "at": 5, "count": 30},
    {"name": "rich", "kind": "join", "at": 5, "count": 3,
     "args": {"money": 100_000, "employed": True}},
    {"name": "levy", "kind": "set", "at": 8, "agents": [180, 181, 182], "variable": "money",
     "value": 1000},
]


def joined_economy(events: list[dict[str, Any]] = ECONOMY_JOINS, **changes: Any) -> dict:
    """The small economy of test_economy (150 households, 12 steps) with ``events``."""
    data = copy.deepcopy(ECONOMY)
    data.update({"steps": 12, "checkpoint_every": 4, **changes})
    data["events"] = copy.deepcopy(events)
    return data


def test_households_join_the_economy_and_money_stays_accounted(sqlite_url: str) -> None:
    run = run_experiment(joined_economy(), sqlite_url)
    assert run.info["status"] == "completed" and len(run.agents()) == 183
    assert arrivals(run) == {5: list(range(150, 183))}
    actions = run.table("economy_actions")
    theirs = actions[actions["agent_id"] >= 150]
    assert theirs["step"].min() == 5 and theirs["agent_id"].nunique() > 25
    m = run.metrics()
    # the identity is checked after every step (check_money); the residual is also recorded
    assert (m["money_residual"].abs() < 1e-9).all()
    # the rich bring 300,000 created by the central bank; the levy takes most of it back
    jump = m["money_created"].diff()
    assert jump.loc[5] > 300_000 > jump.loc[4] and jump.loc[8] < -100_000
    states = run.table("agent_states")
    money = states[(states["variable"] == "money") & (states["step"] == 10)]
    assert len(money) == 183 and (money["value"] >= 0).all()
    assert results(run)[(8, "levy")]["agents"] == 3


def test_a_newcomer_household_starts_with_its_wealth_attribute_or_the_money_given(
        sqlite_url: str) -> None:
    sim = Simulation(experiment_from_dict(joined_economy([])), db_url=sqlite_url)
    sim.start()
    sim.advance()
    scenario = sim.scenario
    created = scenario.state.public.created
    workers = scenario.state.firms.workers.sum()
    ids = grow_world(scenario.world, [{"skill": 1.5, "wealth": 2500.0},
                                      {"skill": 0.5, "wealth": 700.0}])
    scenario.join(ids, EconomyJoin(), sim._context(2))
    hh = scenario.state.households
    np.testing.assert_array_equal(hh.money[ids], [2500.0, 700.0])
    np.testing.assert_array_equal(hh.skill[ids], [1.5, 0.5])
    np.testing.assert_array_equal(hh.employer[ids], [-1, -1])  # job seekers
    assert scenario.state.public.created == created + 3200.0 and scenario.n == 152
    more = grow_world(scenario.world, [{}, {}])  # attributes drawn by the engine; none here
    with pytest.raises(ValueError, match="'skill' has missing values"):
        scenario.join(more, EconomyJoin(), sim._context(2))
    scenario.world.population.attributes.loc[more, ["skill", "wealth"]] = 1.0
    scenario.join(more, EconomyJoin(money=50.0, employed=True), sim._context(2))
    hh = scenario.state.households
    np.testing.assert_array_equal(hh.money[more], [50.0, 50.0])
    assert (hh.employer[more] >= 0).all() and scenario.state.firms.workers.sum() == workers + 2
    assert abs(scenario.money_residual()) < 1e-12
    sim.close()


# -- beauty contest --------------------------------------------------------------------------

BEAUTY_JOINS: list[dict[str, Any]] = [
    {"name": "wave", "kind": "join", "at": 3, "count": 30},
    {"name": "deep", "kind": "join", "at": 3, "count": 5, "args": {"level": 3}},
    {"name": "reset", "kind": "set", "at": 5, "agents": {"ids": [130, 131, 132, 133, 134]},
     "variable": "reasoning_level", "value": 0},
]


def joined_game(events: list[dict[str, Any]] = BEAUTY_JOINS, **changes: Any) -> dict:
    """The small level-k game of test_beauty (100 players, 6 rounds) with ``events``."""
    data = game(steps=6, size=100)
    data.update({"checkpoint_every": 2, **changes})
    data["events"] = copy.deepcopy(events)
    return data


def test_players_join_the_beauty_contest_with_their_level(sqlite_url: str) -> None:
    run = run_experiment(joined_game(), sqlite_url)
    assert run.info["status"] == "completed" and len(run.agents()) == 135
    assert arrivals(run) == {3: list(range(100, 135))}
    guesses = run.table("beauty_guesses")
    theirs = guesses[guesses["agent_id"] >= 100]
    assert theirs["step"].min() == 3 and theirs["agent_id"].nunique() > 25
    assert theirs["guess"].between(0, 100).all()
    # the wave plays the level of its profile, the deep ones level 3 until the reset
    agents = run.table("agents")
    level = {int(a): json.loads(x)["level"] for a, x in zip(agents["agent_id"],
                                                           agents["attributes"], strict=True)}
    wave = theirs[theirs["agent_id"] < 130]
    assert (wave["level"] == wave["agent_id"].map(level)).all()
    deep = theirs[theirs["agent_id"] >= 130]
    assert set(deep[deep["step"] < 5]["level"]) == {3}
    assert set(deep[deep["step"] >= 5]["level"]) == {0}
    assert len(deep[deep["step"] >= 5])
    rounds = run.table("beauty_rounds").set_index("step")["guesses"]
    assert rounds.loc[4] > rounds.loc[2]  # the newcomers' guesses count in the round


def test_beauty_join_args_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"events\[0\]\.args: level: Input should be less"):
        experiment_from_dict(joined_game([{"kind": "join", "at": 2, "count": 3,
                                           "args": {"level": 51}}]))


# -- resume and the Ray runtime --------------------------------------------------------------

JOINED = {
    "market": lambda: joined_market(steps=9, checkpoint_every=3),
    "economy": lambda: joined_economy(steps=10, checkpoint_every=4),
    "beauty_contest": lambda: joined_game(checkpoint_every=2),
}
# (scenario, step of the crash): the resume starts from the checkpoint before the joins (they
# are applied again as the run goes on) or from one after them (the joined agents are rebuilt
# before the checkpoint's state is loaded)
CRASHES = [("market", 4, 3, 200), ("market", 8, 6, 222), ("economy", 6, 4, 150),
           ("economy", 9, 8, 183), ("beauty_contest", 3, 2, 100),
           ("beauty_contest", 5, 4, 135)]


@pytest.mark.slow  # six runs and resumes: the social one is in the fast lane
@pytest.mark.parametrize(("scenario", "crash", "checkpoint", "agents"), CRASHES)
def test_a_run_resumed_across_a_join_is_the_uninterrupted_run(
        scenario: str, crash: int, checkpoint: int, agents: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    make = JOINED[scenario]
    full = run_experiment(make(), f"sqlite:///{tmp_path / 'full.sqlite'}")
    url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    sim = Simulation(experiment_from_dict(make()), db_url=url)
    crash_after(sim, crash, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    monkeypatch.undo()
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == checkpoint and resumed.world.n_agents == agents
    assert_same_run(full, reopen(url, resumed.run().id))


@pytest.fixture(scope="module")
def one_ray():  # noqa: ANN201
    """One private Ray for the module's Ray tests (starting it takes several seconds)."""
    with local_ray():
        yield


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(JOINED))
def test_a_run_with_joins_on_two_ray_shards_is_the_local_run(scenario: str, tmp_path: Path,
                                                             one_ray: None) -> None:
    make = JOINED[scenario]
    local = run_experiment(make(), f"sqlite:///{tmp_path / 'local.sqlite'}")
    data = make()
    data["runtime"] = {"type": "ray", "shards": 2}
    sharded = run_experiment(data, f"sqlite:///{tmp_path / 'ray.sqlite'}")
    assert len(local.table("arrivals")) > 0
    assert_same_run(local, sharded)



# -- language-model newcomers ----------------------------------------------------------------

def _llm_run(data: dict[str, Any], url: str, server_url: str) -> Run:
    """``data`` with every agent a language-model agent of the test server, run."""
    data["llm"] = {"backend": "openai", "model": "populace-test", "max_attempts": 3,
                   "timeout_s": 5, "endpoints": [{"base_url": server_url,
                                                  "max_in_flight": 16}]}
    data["policy"] = {"type": "llm"}
    return run_experiment(data, url)


LLM_JOINS = {
    "market": lambda: joined_market(
        [{"name": "shoppers", "kind": "join", "at": 2, "count": 3},
         {"name": "shop", "kind": "join", "at": 2, "count": 1, "args": {"role": "business"}}],
        steps=3, population={"size": 30}, scenario={"type": "market", "businesses": 4}),
    "economy": lambda: joined_economy([{"name": "wave", "kind": "join", "at": 2, "count": 4}],
                                      steps=3, population={"size": 20, "attributes": {
                                          **ECONOMY["population"]["attributes"], "age": AGE}}),
    "beauty_contest": lambda: joined_game([{"name": "wave", "kind": "join", "at": 2,
                                            "count": 4}], steps=3, population={
        "size": 20, "attributes": {"age": AGE}}),
}


@pytest.mark.parametrize("scenario", sorted(LLM_JOINS))
def test_language_model_newcomers_are_prompted_as_who_they_are(
        scenario: str, sqlite_url: str, server: tuple[Any, str]) -> None:
    """Newcomers get model calls from their first step, with their profile (the economy and
    the beauty contest show it) or their role in the market."""
    data = LLM_JOINS[scenario]()
    if scenario == "market":  # the small market with an age, as the others have
        data["population"]["attributes"] = {"age": AGE}
    run = _llm_run(data, sqlite_url, server[1])
    assert run.info["status"] == "completed"
    n = data["population"]["size"]
    calls = run.table("llm_calls")
    new = calls[calls["agent_id"] >= n]
    assert len(new) and new["step"].min() == 2
    assert set(new["agent_id"]) <= set(run.table("arrivals")["agent_id"])
    agents = run.table("agents").set_index("agent_id")["attributes"]
    for agent, prompt in zip(new["agent_id"], new["prompt"], strict=True):
        if scenario == "market":
            role = "a business" if agent == n + 3 else "a customer"
            assert f"You are agent {agent}, {role}" in json.loads(prompt)[1]["content"]
        else:
            age = json.loads(agents[agent])["age"]
            assert f"age: {age}" in prompt or f'"age": {age}' in prompt, prompt[:2000]
