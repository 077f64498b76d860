"""Steering the market, the macro-economy and the beauty contest (issue 13): a `set` event over
a filter, a parameter change, a scripted action and a broadcast take effect at their step in
each scenario; a rule agent's interview reports the scenario's first variable on a scale; a
resume after a crash and the Ray runtime give the run without them; the market's price-shock
example shows what its comments say."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from populace.scenarios.market import MarketScenario
from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.config_problems import ConfigError
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
from populace.storage import Run

from .helpers import Crash, assert_same_run, crash_after, local_ray, reopen, run_experiment
from .test_beauty import game
from .test_economy import SMALL as ECONOMY
from .test_market import market

SCALE = {"text": "Where do you stand?", "answer": "scale", "low": 1, "high": 7}
PRICE_SHOCK = Path(MarketScenario.examples) / "price_shock.yaml"


def results(run: Run) -> dict[tuple[int, str], Any]:
    """Each applied event's result, by (step, name)."""
    events = run.events()
    return {(int(s), n): json.loads(r) for s, n, r in zip(events["step"], events["name"],
                                                          events["result"], strict=True)}


def on_scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` in ``low..high`` on the 1-7 scale, as rule agents report them."""
    return np.rint(1 + (np.clip(values, low, high) - low) / (high - low) * 6)


def started(data: dict[str, Any], url: str) -> Simulation:
    sim = Simulation(experiment_from_dict(data), db_url=url)
    sim.start()
    return sim


# -- market ----------------------------------------------------------------------------------

MARKET_EVENTS: list[dict[str, Any]] = [
    {"name": "notice", "kind": "broadcast", "at": 3, "text": "Free delivery this weekend.",
     "args": {"to": "customers"}},
    {"name": "hike", "kind": "set", "at": 4, "agents": [0, 1, 2, 3, 4], "variable": "markup",
     "value": 0.9},
    {"name": "stimulus", "kind": "set", "at": 5, "agents": {"where": {"balance": {"<": 90}}},
     "variable": "balance", "shift": 50},
    {"name": "scarce", "kind": "parameter", "at": 6, "changes": {"capacity": 1,
                                                                 "ranking": "price"}},
    {"name": "cut", "kind": "action", "at": 8, "agents": [5, 6], "action": "respond",
     "args": {"markup": -0.5}},
]


def steered_market(events: list[dict[str, Any]] = MARKET_EVENTS, **changes: Any) -> dict:
    """The small market of test_market (rule businesses may price up to 1.5 over list) with
    ``events``."""
    data = market(**changes)
    data["policy"]["params"]["max_markup"] = 1.5
    data["events"] = copy.deepcopy(events)
    return data


def test_market_events_take_effect_at_their_step(sqlite_url: str) -> None:
    sim = started(steered_market(), sqlite_url)
    run = sim.run()
    assert run.info["status"] == "completed"
    done = results(run)
    metrics = run.metrics()
    messages = run.table("market_messages")
    menu = run.table("market_menu").set_index("item_id")["price"]
    proposals = messages[messages["kind"] == "proposal"].copy()
    proposals["markup"] = proposals["price"] / menu[proposals["item_id"]].to_numpy() - 1

    # the broadcast: one row from the platform, kept for the customers' prompts
    news = messages[messages["kind"] == "broadcast"]
    assert news[["step", "sender_id", "receiver_id", "content"]].values.tolist() == [
        [3, -1, -1, "Free delivery this weekend."]]
    assert done[(3, "notice")] == {"rows": {"market_messages": 1}}
    inboxes = sim.scenario.state.inboxes
    assert inboxes.announcements(False) == ["Free delivery this weekend."]
    assert inboxes.announcements(True) == []

    # the price shock: businesses 0-4 offer at 0.9 over list from step 4 (the rule moves on
    # from there by at most markup_step a step), the others stay near the opening markup
    assert done[(4, "hike")]["agents"] == 5 and done[(4, "hike")]["mean_after"] == pytest.approx(0.9)
    hiked = proposals["sender_id"].isin(range(5))
    before = proposals[proposals["step"] < 4]
    assert before["markup"].max() < 0.3
    after = proposals[hiked & (proposals["step"] == 4)]
    assert len(after) > 0
    assert after["markup"].between(0.88 - 1e-3, 0.92 + 1e-3).all()
    assert (proposals[~hiked & (proposals["step"] == 4)]["markup"] < 0.3).all()
    assert metrics.loc[4, "mean_markup"] - metrics.loc[3, "mean_markup"] > 5 * 0.6 / 10

    # the stimulus: 50 more for every agent holding less than 90 (poorer customers, businesses
    # that sold little), booked as money paid in: money stays conserved
    stimulus = done[(5, "stimulus")]
    assert stimulus["agents"] > 0
    assert stimulus["mean_after"] - stimulus["mean_before"] == pytest.approx(50)
    assert metrics.loc[5, "money"] - metrics.loc[4, "money"] == pytest.approx(
        50 * stimulus["agents"])

    # the parameter change: capacity 1 from step 6 on (4 before)
    orders = run.table("market_orders").groupby(["step", "business_id"]).size()
    by_step = orders.groupby(level="step").max()
    assert by_step[by_step.index < 6].max() > 1
    assert by_step[by_step.index >= 6].max() == 1
    assert sim.scenario.catalog.capacity.tolist() == [1] * 10
    assert done[(6, "scarce")] == {"changed": ["capacity", "ranking"]}

    # the scripted action: businesses 5 and 6 answer at -0.5 instead of deciding
    actions = run.table("market_actions")
    cut = actions[(actions["step"] == 8) & actions["agent_id"].isin([5, 6])]
    assert cut[["agent_id", "action", "markup"]].values.tolist() == [[5, "respond", -0.5],
                                                                    [6, "respond", -0.5]]
    offered = proposals[(proposals["step"] == 8) & proposals["sender_id"].isin([5, 6])]
    assert len(offered) > 0
    assert offered["markup"].to_numpy() == pytest.approx(-0.5, abs=0.01)


def test_a_market_interview_reports_businesses_markups_on_the_scale(sqlite_url: str) -> None:
    poll = {"name": "poll", "kind": "interview", "at": "end", "agents": list(range(10)),
            "questions": [SCALE]}
    sim = started(steered_market([poll], steps=6), sqlite_url)
    run = sim.run()
    answers = run.interviews().sort_values("agent_id")
    markup = sim.scenario.variable("markup")[:10]
    spec = MarketScenario.variables["markup"]
    assert list(MarketScenario.variables)[0] == "markup"
    np.testing.assert_array_equal(answers["value"].to_numpy(),
                                  on_scale(markup, spec.low, spec.high))
    assert (answers["source"] == "report").all() and answers["valid"].all()


def test_market_steering_refuses_what_it_cannot_do(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="cannot change 'wallet'"):
        experiment_from_dict(steered_market([{"kind": "parameter", "at": 2,
                                              "changes": {"wallet": 10}}]))
    with pytest.raises(ConfigError, match="args: to: Input should be 'all'"):
        experiment_from_dict(steered_market([{"kind": "broadcast", "at": 2, "text": "hi",
                                              "args": {"to": "everyone"}}]))
    with pytest.raises(ConfigError, match=r"events\[0\]\.args: items: Value error, item type "
                       "'caviar' is not among scenario.item_types"):
        experiment_from_dict(steered_market([{"kind": "join", "at": 2, "count": 3,
                                              "args": {"items": ["caviar"]}}]))
    # a live change the market refuses when applying it: refused, and the run goes on
    sim = started(steered_market([], steps=3), sqlite_url)
    sim.intervene({"kind": "parameter", "changes": {"ranking": "llm"}}, name="llm_search")
    sim.advance()
    commands = reopen(sqlite_url, sim.run_id).commands()
    assert commands["status"].tolist() == ["refused"]
    assert "ranking: llm needs an llm: section" in commands["error"].iloc[0]
    assert sim.scenario.config.ranking != "llm"


def test_the_price_shock_example_shows_what_its_comments_say(sqlite_url: str) -> None:
    data = yaml.safe_load(PRICE_SHOCK.read_text(encoding="utf-8"))
    run = Simulation(experiment_from_dict(data, source=PRICE_SHOCK), db_url=sqlite_url).run()
    assert run.info["status"] == "completed"
    done = results(run)
    assert done[(13, "hike")]["agents"] == 15 and done[(13, "hike")]["mean_after"] == pytest.approx(0.8)
    assert done[(25, "rank_by_price")] == {"changed": ["ranking"]}
    markup = run.metrics()["mean_markup"]
    assert markup[13] - markup[12] > 0.25 and markup[36] < markup[13]
    orders = run.table("market_orders")
    period = pd.cut(orders["step"], [0, 12, 24, 36], labels=["before", "shock", "by_price"])
    share = (orders["business_id"] % 2 == 0).groupby(period, observed=True).mean()
    assert share["before"] > 0.5 > share["shock"] and share["shock"] > share["by_price"]


def llm_section(url: str) -> dict[str, Any]:
    return {"backend": "openai", "model": "populace-test", "max_tokens": 120,
            "endpoints": [{"base_url": url, "max_in_flight": 16}]}


def user_prompts(run: Run) -> pd.DataFrame:
    """The decision calls' agent, step and user message."""
    calls = run.table("llm_calls")
    calls = calls[calls["kind"] == "decision"].copy()
    calls["user"] = [json.loads(p)[-1]["content"] for p in calls["prompt"]]
    return calls[["agent_id", "step", "user"]]


def test_language_model_agents_see_the_price_shock_and_the_platform_s_notice(
        sqlite_url: str) -> None:
    """The price-shock example with language-model customers and businesses (the project's
    test server answers): the treated businesses are told their new markup at step 13, and
    customers, not businesses, read an announcement of the platform from then on."""
    data = yaml.safe_load(PRICE_SHOCK.read_text(encoding="utf-8"))
    data.update(steps=14, activation={"probability": 0.3}, policy={
        "type": "llm", "params": {"fallback": "do_nothing"}})
    data["population"]["size"] = 100
    data["events"] = [e for e in data["events"] if e["name"] == "hike"] + [
        {"name": "notice", "kind": "broadcast", "at": 13, "text": "Prices change today.",
         "args": {"to": "customers"}}]
    with TestServer(ServerBehaviour(seed=5)) as srv:
        data["llm"] = llm_section(srv.url)
        run = run_experiment(data, sqlite_url)
    assert run.info["status"] == "completed"
    prompts = user_prompts(run)
    at13 = prompts[prompts["step"] == 13]
    treated = at13[at13["agent_id"].isin(range(0, 30, 2))]
    assert len(treated) > 0 and treated["user"].str.contains("Current markup: +0.80", regex=False).all()
    noticed = prompts["user"].str.contains("Announcements from the platform:\n- Prices change "
                                           "today.", regex=False)
    customer = prompts["agent_id"] >= 30
    assert noticed[customer & (prompts["step"] == 13)].all()
    assert not noticed[~customer | (prompts["step"] < 13)].any()


# -- economy ---------------------------------------------------------------------------------

ECONOMY_EVENTS: list[dict[str, Any]] = [
    {"name": "helicopter", "kind": "set", "at": 10, "agents": {"where": {"wealth": {"<": 2000}}},
     "variable": "money", "shift": 1000},
    {"name": "hike", "kind": "broadcast", "at": 12, "text": "The bank raises its rate to 25%.",
     "args": {"rate": 0.25}},
    {"name": "flat_tax", "kind": "parameter", "at": 15,
     "changes": {"tax.brackets": [{"above": 0, "rate": 0.5}]}},
    {"name": "strike", "kind": "action", "at": 16, "agents": [1, 2, 3], "action": "not_work",
     "args": {"propensity": 0.0, "consume_share": 0.9}},
    {"name": "thrift", "kind": "set", "at": 20, "variable": "consume_share", "value": 0.05},
]


def steered_economy(events: list[dict[str, Any]] = ECONOMY_EVENTS, **changes: Any) -> dict:
    """The small economy of test_economy with ``events``."""
    data = copy.deepcopy(ECONOMY)
    data.update(changes)
    data["events"] = copy.deepcopy(events)
    return data


def test_economy_events_take_effect_at_their_step(sqlite_url: str) -> None:
    sim = started(steered_economy(), sqlite_url)
    run = sim.run()
    assert run.info["status"] == "completed"  # the money identity held every step
    done = results(run)
    m = run.metrics()

    # money given to the poorer households is booked as money created
    poor = int((run.agents()["wealth"] < 2000).sum())
    assert 0 < done[(10, "helicopter")]["agents"] == poor
    created = m.loc[10, "money_created"] - m.loc[9, "money_created"] - m.loc[10, "interest_paid"]
    assert created == pytest.approx(1000 * poor)
    assert abs(m["money_residual"]).max() < 1e-9

    # the central bank's announcement sets the rate of step 12; the Taylor rule smooths from
    # it: against the same run without the announcement, the rate after step 12 jumps
    quiet = run_experiment(steered_economy(ECONOMY_EVENTS[:1], steps=12),
                           sqlite_url.replace("run.", "quiet."))
    q = quiet.metrics()
    assert m.loc[:11, "interest_rate"].tolist() == q.loc[:11, "interest_rate"].tolist()
    assert m.loc[12, "interest_rate"] >= 0.7 * 0.25 > q.loc[12, "interest_rate"] + 0.03
    assert sim.scenario.state.news == ["The bank raises its rate to 25%."]
    obs = sim.scenario.observe(np.array([0]), sim._context(31))
    assert obs.news == ("The bank raises its rate to 25%.",)

    # a flat 50% tax from step 15 on: revenue per unit of income jumps
    rate = m["tax_revenue"] / (m["nominal_gdp"] + m["interest_paid"])
    assert rate[15] > 1.5 * rate[14]

    # the scripted strike: households 1-3 stay home and state a 90% consumption share
    acts = run.table("economy_actions")
    strike = acts[(acts["step"] == 16) & acts["agent_id"].isin([1, 2, 3])]
    assert strike[["agent_id", "action", "consume_share", "hired"]].values.tolist() == [
        [1, "not_work", 0.9, False], [2, "not_work", 0.9, False], [3, "not_work", 0.9, False]]

    # thrift at 20: households that did not decide at 20 keep it; deciders replace it
    share = run.agent_states("consume_share").loc[20]
    decided = acts[acts["step"] == 20].set_index("agent_id")["consume_share"]
    idle = share.index.difference(decided.index)
    assert len(idle) > 0 and (share[idle] == 0.05).all()
    assert (share[decided.index] == decided).all() and (decided != 0.05).all()


def test_an_economy_interview_reports_consumption_shares_on_the_scale(sqlite_url: str) -> None:
    poll = {"name": "poll", "kind": "interview", "at": "end", "questions": [SCALE]}
    sim = started(steered_economy([poll], steps=5), sqlite_url)
    run = sim.run()
    answers = run.interviews().sort_values("agent_id")
    assert len(answers) == 150
    np.testing.assert_array_equal(answers["value"].to_numpy(),
                                  on_scale(sim.scenario.state.households.consume, 0, 1))


def test_language_model_households_read_the_central_bank_s_announcements(
        sqlite_url: str) -> None:
    data = steered_economy([{"name": "guidance", "kind": "broadcast", "at": 3,
                             "text": "Rates stay low for a long time."}], steps=4)
    data["population"]["size"] = 40
    data["policy"] = {"type": "llm", "params": {"fallback": "do_nothing"}}
    with TestServer(ServerBehaviour(seed=6)) as srv:
        data["llm"] = llm_section(srv.url)
        run = run_experiment(data, sqlite_url)
    prompts = user_prompts(run)
    told = prompts["user"].str.contains("The central bank announced:\n- Rates stay low for a "
                                        "long time.", regex=False)
    assert told[prompts["step"] >= 3].all() and len(prompts[prompts["step"] >= 3]) > 0
    assert not told[prompts["step"] < 3].any()


def test_an_announced_rate_outside_the_bank_s_bounds_is_refused() -> None:
    with pytest.raises(ConfigError, match="outside central_bank.floor..ceiling"):
        experiment_from_dict(steered_economy([{"kind": "broadcast", "at": 2, "text": "x",
                                               "args": {"rate": 0.5}}]))


# -- beauty contest --------------------------------------------------------------------------

BEAUTY_EVENTS: list[dict[str, Any]] = [
    {"name": "deeper", "kind": "set", "at": 3, "agents": {"where": {"reasoning_level": 0}},
     "variable": "reasoning_level", "shift": 1.6},
    {"name": "half", "kind": "parameter", "at": 4, "changes": {"p": 0.5}},
    {"name": "shills", "kind": "action", "at": 5, "agents": [0, 1], "action": "guess",
     "args": {"guess": 100.0}},
    {"name": "anchor", "kind": "set", "at": 6, "agents": {"where": {"reasoning_level": 3}},
     "variable": "last_guess", "value": 100},
    {"name": "poll", "kind": "interview", "at": 6, "agents": {"where": {"reasoning_level": 3}},
     "questions": [SCALE]},
]


def steered_game(events: list[dict[str, Any]] = BEAUTY_EVENTS, **changes: Any) -> dict:
    """The small level-k game of test_beauty with ``events``."""
    data = game(steps=7)
    data.update(changes)
    data["events"] = copy.deepcopy(events)
    return data


def test_beauty_events_take_effect_at_their_step(sqlite_url: str) -> None:
    sim = started(steered_game(), sqlite_url)
    run = sim.run()
    done = results(run)
    level = run.agents()["level"]
    guesses = run.table("beauty_guesses").set_index(["step", "agent_id"])
    rounds = run.table("beauty_rounds").set_index("step")

    # level-0 players reason two levels deep from step 3 (1.6 rounds to 2)
    zeros = level[level == 0].index
    assert done[(3, "deeper")]["agents"] == len(zeros) > 0
    assert (sim.scenario.variable("reasoning_level")[zeros] == 2).all()
    at = guesses.loc[3].loc[zeros]
    assert (at["level"] == 2).all()
    assert at["guess"].to_numpy() == pytest.approx((2 / 3) ** 2 * 50)
    assert guesses.loc[2].loc[zeros]["level"].eq(0).all()

    # p is a half from round 4 on, for the target and for the level-k rule
    assert rounds.loc[3, "target"] == pytest.approx(2 / 3 * rounds.loc[3, "mean"])
    assert rounds.loc[4, "target"] == pytest.approx(0.5 * rounds.loc[4, "mean"])
    ones = level[level == 1].index
    assert guesses.loc[4].loc[ones]["guess"].to_numpy() == pytest.approx(25.0)

    # two scripted guesses of 100 in round 5
    shills = guesses.loc[5].loc[[0, 1]]
    assert shills["guess"].tolist() == [100.0, 100.0]

    # last guesses set to 100 before the poll of step 6: the level-3 players report 7
    threes = level[level == 3].index
    answers = run.interviews()
    assert len(answers) == len(threes) > 0
    assert (answers["value"] == 7).all()
    assert done[(6, "anchor")]["mean_after"] == pytest.approx(100)


def test_a_beauty_interview_reports_last_guesses_on_the_scale(sqlite_url: str) -> None:
    poll = {"name": "poll", "kind": "interview", "at": "end", "questions": [SCALE]}
    sim = started(steered_game([poll], steps=3), sqlite_url)
    run = sim.run()
    answers = run.interviews().sort_values("agent_id")
    np.testing.assert_array_equal(answers["value"].to_numpy(),
                                  on_scale(sim.scenario.state.last_guess, 0, 100))


def test_the_beauty_contest_takes_no_broadcast() -> None:
    with pytest.raises(ConfigError, match="has no broadcasts"):
        experiment_from_dict(steered_game([{"kind": "broadcast", "at": 2, "text": "Guess 0!"}]))


# -- resume and the Ray runtime --------------------------------------------------------------

STEERED = {
    "market": lambda: steered_market(steps=10, checkpoint_every=3),
    "economy": lambda: steered_economy(steps=22, checkpoint_every=7),
    "beauty_contest": lambda: steered_game(checkpoint_every=4),
}
# a crash after this step resumes from a checkpoint that holds some of the events' effects,
# and redoes steps with others
CRASH_AFTER = {"market": 8, "economy": 20, "beauty_contest": 5}


@pytest.mark.slow  # the social one (test_steering.py) is in the fast lane
@pytest.mark.parametrize("scenario", sorted(STEERED))
def test_a_steered_run_resumed_after_a_crash_is_the_uninterrupted_run(
        scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables changed, announcements kept and parameters changed before the checkpoint
    survive it (levels, notices and news are saved; parameter changes are applied again)."""
    make = STEERED[scenario]
    full = run_experiment(make(), f"sqlite:///{tmp_path / 'full.sqlite'}")
    url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    data = make()
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, CRASH_AFTER[scenario], monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step < CRASH_AFTER[scenario]
    assert_same_run(full, reopen(url, resumed.run().id))


@pytest.fixture(scope="module")
def one_ray():  # noqa: ANN201
    """One private Ray for the module's Ray tests (starting it takes several seconds)."""
    with local_ray():
        yield


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(STEERED))
def test_a_steered_run_on_two_ray_shards_is_the_local_run(scenario: str, tmp_path: Path,
                                                          one_ray: None) -> None:
    make = STEERED[scenario]
    local = run_experiment(make(), f"sqlite:///{tmp_path / 'local.sqlite'}")
    data = make()
    data["runtime"] = {"type": "ray", "shards": 2}
    sharded = run_experiment(data, f"sqlite:///{tmp_path / 'ray.sqlite'}")
    assert len(local.events()) == len(data["events"])
    assert_same_run(local, sharded)
