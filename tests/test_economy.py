"""The macro-economy scenario: money accounting, market rules, the Taylor rule, determinism,
resume, the Phillips curve and Okun's law on the shipped example, language-model households,
and configuration errors."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from populace.scenarios.economy import (
    AccountingError,
    CentralBankConfig,
    EconomyConfig,
    EconomyScenario,
    HouseholdRuleParams,
    TaxBracket,
)
from populace.scenarios.economy.mechanics import (
    adjust_to_imbalance,
    gini,
    hire,
    income_tax,
    taylor_rate,
)
from populace.simulator import Simulation, experiment_from_dict, load_experiment, register_scenario
from populace.simulator.clock import Clock
from populace.simulator.config_errors import ConfigError
from populace.simulator.population import Population
from populace.simulator.rng import RngStreams
from populace.simulator.scenario import StepContext, World
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

from .helpers import Crash, assert_same_run, content_tables, crash_after, reopen, run_experiment

# the scenario is installed through its entry point; registering it here as well keeps these
# tests independent of how the package was installed
register_scenario(EconomyScenario)

MACRO = Path(__file__).resolve().parents[1] / "scenarios" / "economy" / "examples" / "macro.yaml"

SMALL: dict[str, Any] = {
    "name": "economy_small",
    "seed": 5,
    "steps": 30,
    "step_duration": "30d",
    "scenario": {"type": "economy", "firms": 4,
                 "shocks": {"demand": {"persistence": 0.8, "sd": 0.05}},
                 "tax": {"brackets": [{"above": 0, "rate": 0.1}, {"above": 1500, "rate": 0.3}]}},
    "population": {"size": 150, "attributes": {
        "skill": {"dist": "lognormal", "mean": -0.1, "sigma": 0.4},
        "wealth": {"dist": "lognormal", "mean": 8.0, "sigma": 0.7}}},
    "activation": {"probability": 0.7},
    "policy": {"type": "rule", "params": {}},
    "recording": {"agent_state_every": 10},
    "checkpoint_every": 10,
}


def small(**changes: Any) -> dict[str, Any]:
    """A copy of the small economy with top-level keys replaced."""
    data = copy.deepcopy(SMALL)
    data.update(changes)
    return data


# -- whole runs ---------------------------------------------------------------------------------


def test_money_is_conserved_every_step_and_metrics_are_complete(sqlite_url: str) -> None:
    run = run_experiment(small(), sqlite_url)
    assert run.info["status"] == "completed"
    state = run.table("economy_state").set_index("step").sort_index()
    assert state.index.tolist() == list(range(31))
    held = state["household_money"] + state["firm_money"] + state["government_money"]
    initial = held.iloc[0]
    assert state["money_created"].iloc[0] == 0
    np.testing.assert_allclose(held, initial + state["money_created"], rtol=1e-10)
    assert (state["money_created"].diff().iloc[1:] > 0).all()  # positive rates: new money
    metrics = run.metrics()
    assert metrics["money_residual"].abs().max() < 1e-9
    for name in ("inflation", "inflation_annualised", "unemployment", "nominal_gdp", "real_gdp",
                 "wage_inflation", "interest_rate", "mean_wealth", "gini_wealth", "tax_revenue"):
        assert metrics[name].iloc[1:].notna().all(), name
    assert metrics["unemployment"].between(0, 1).all()
    assert metrics["gini_wealth"].between(0, 1).all()
    assert (metrics["tax_revenue"].iloc[1:] > 0).all()
    # the per-step flows in the state table agree with the metrics
    np.testing.assert_allclose(state["tax_revenue"].iloc[1:], metrics["tax_revenue"].iloc[1:])
    # the action trace: one row per active household that decided, with outcomes
    actions = run.table("economy_actions")
    assert set(actions["action"]) <= {"work", "not_work"}
    assert actions["consume_share"].between(0, 1).all()
    workers = actions[actions["action"] == "work"]
    assert (workers["firm"] >= 0).all() and (actions.loc[actions["action"] == "not_work",
                                                         "firm"] == -1).all()
    assert not actions.loc[actions["action"] == "not_work", "hired"].astype(bool).any()
    firms = run.table("economy_firms")
    assert len(firms) == 4 * 31
    assert (firms["price"] > 0).all() and (firms["wage"] > 0).all()
    hired = firms.groupby("step")["workers"].sum()
    np.testing.assert_array_equal(hired.loc[1:].to_numpy(), state["employed"].iloc[1:])
    laws = run.table("economy_laws")
    assert laws["law"].tolist() == ["phillips", "okun"]
    money = run.agent_states("money")
    np.testing.assert_allclose(money.loc[30].mean(), metrics.loc[30, "mean_wealth"])


def test_same_seed_same_database_other_seed_differs(tmp_path: Path) -> None:
    a = run_experiment(small(steps=12), f"sqlite:///{tmp_path / 'a.sqlite'}")
    b = run_experiment(small(steps=12), f"sqlite:///{tmp_path / 'b.sqlite'}")
    assert_same_run(a, b)
    c = run_experiment(small(steps=12, seed=6), f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert not content_tables(a)["economy_state"].equals(content_tables(c)["economy_state"])


def test_decisions_do_not_depend_on_how_the_batch_is_split(tmp_path: Path) -> None:
    one = run_experiment(small(steps=8), f"sqlite:///{tmp_path / 'one.sqlite'}")
    mixed = small(steps=8, policy={"type": "mixed", "parts": [
        {"select": {"fraction": 0.4}, "type": "rule", "params": {}}, {"type": "rule"}]})
    two = run_experiment(mixed, f"sqlite:///{tmp_path / 'two.sqlite'}")
    pd.testing.assert_frame_equal(content_tables(one)["economy_state"],
                                  content_tables(two)["economy_state"])
    pd.testing.assert_frame_equal(content_tables(one)["economy_actions"],
                                  content_tables(two)["economy_actions"])


def test_resume_after_crash_matches_uninterrupted_run(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = small(steps=25)
    full = run_experiment(data, f"sqlite:///{tmp_path / 'full.sqlite'}")
    url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, 16, monkeypatch)  # checkpoint at 10: steps 11-16 are redone
    with pytest.raises(Crash):
        sim.run()
    assert reopen(url, sim.run_id).info["status"] == "failed"
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 10
    run = resumed.run()
    assert run.info["status"] == "completed"
    assert_same_run(full, run)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_example_shows_a_phillips_curve_and_okuns_law(seed: int, tmp_path: Path) -> None:
    exp = load_experiment(MACRO)
    assert exp.config.name == "macro" and MACRO.read_text().startswith("#")
    assert exp.config.population.size == 1000 and exp.config.steps == 240
    raw = copy.deepcopy(exp.raw)
    raw.update(seed=seed, recording={"actions": False})
    run = Simulation(experiment_from_dict(raw, source=MACRO),
                     db_url=f"sqlite:///{tmp_path / 'macro.sqlite'}").run()
    laws = run.table("economy_laws").set_index("law")
    assert laws.loc["phillips", "correlation"] < -0.3
    assert laws.loc["okun", "correlation"] < -0.2
    assert laws.loc["phillips", "n"] == 240 - 24
    m = run.metrics().iloc[25:]
    assert 0 < m["unemployment"].mean() < 0.2 and m["participation"].mean() > 0.5
    assert m["real_gdp"].min() > 0.3 * m["real_gdp"].max()  # cycles, not a collapse


# -- the rules, unit by unit --------------------------------------------------------------------


def test_prices_rise_with_excess_demand_and_fall_with_excess_supply() -> None:
    price = np.array([10.0, 10.0, 10.0, 10.0])
    demand = np.array([120.0, 80.0, 100.0, 0.0])
    supply = np.array([100.0, 100.0, 100.0, 0.0])
    new = adjust_to_imbalance(price, demand, supply, 0.1)
    assert new[0] > 10 and new[1] < 10 and new[2] == 10 and new[3] == 10
    np.testing.assert_allclose(new[:2], [10 * (1 + 0.1 * 20 / 120), 10 * (1 - 0.1 * 20 / 100)])
    # bounded by the rate, whatever the imbalance
    assert adjust_to_imbalance(np.array([1.0]), np.array([1e9]), np.array([1.0]), 0.1)[0] <= 1.1


def test_scenario_raises_prices_of_a_firm_whose_goods_are_short() -> None:
    scenario = hand_built(n=40, firms=2)
    firms = scenario.state.firms
    firms.inventory[:] = [0.0, 1e6]  # firm 0 sells out, firm 1 is full of goods
    scenario.config.firm.max_markup = 10.0  # let the imbalance, not the cost bounds, decide
    before = firms.price.copy()
    step(scenario, 1)
    assert firms.price[0] > before[0] and firms.price[1] < before[1]


def test_taylor_rule_raises_the_rate_when_inflation_is_above_target() -> None:
    bank = CentralBankConfig(smoothing=0.0, natural_rate=0.01, inflation_target=0.02)
    at_target = taylor_rate(bank, 0.02, bank.natural_unemployment, 0.03)
    assert at_target == pytest.approx(0.03)
    assert taylor_rate(bank, 0.06, bank.natural_unemployment, 0.03) > at_target
    assert taylor_rate(bank, 0.06, 0.10, 0.03) < taylor_rate(bank, 0.06, 0.02, 0.03)
    assert taylor_rate(bank, -0.2, 0.5, 0.03) == bank.floor  # the zero lower bound
    smooth = CentralBankConfig(smoothing=0.5)
    assert taylor_rate(smooth, 0.10, 0.02, 0.01) < taylor_rate(bank, 0.10, 0.02, 0.01)


def test_income_tax_brackets_hiring_and_gini() -> None:
    brackets = [TaxBracket(above=0, rate=0.1), TaxBracket(above=1000, rate=0.3)]
    np.testing.assert_allclose(income_tax(np.array([-5.0, 500.0, 2000.0]), brackets),
                               [0.0, 50.0, 100.0 + 300.0])
    firm = np.array([0, 0, 0, 1, 1])
    priority = np.array([1.5, 0.2, 1.1, 0.3, 0.4])
    eff = np.array([1.0, 1.0, 1.0, 2.0, 2.0])
    # firm 0 wants 2 units: the two lowest keys (rows 1 and 2); firm 1 wants 3: only row 3 fits
    assert hire(firm, priority, eff, np.array([2.0, 3.0])).tolist() == [False, True, True,
                                                                          True, False]
    assert gini(np.ones(10)) == pytest.approx(0.0)
    assert gini(np.r_[np.zeros(99), 1.0]) == pytest.approx(0.99)


def test_broken_accounting_is_a_clear_error() -> None:
    scenario = hand_built(n=20, firms=2)
    step(scenario, 1)
    scenario.state.households.money[3] += 1.0  # money from nowhere
    with pytest.raises(AccountingError, match="money is not conserved: households"):
        scenario.check_money()


def test_state_dict_round_trip_continues_identically() -> None:
    a = hand_built(n=30, firms=3)
    for t in range(1, 4):
        step(a, t)
    state = {k: v.copy() for k, v in a.state_dict().items()}
    b = hand_built(n=30, firms=3)
    b.load_state_dict(state)
    for t in range(4, 7):
        step(a, t)
        step(b, t)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key], err_msg=key)


# -- language-model households ------------------------------------------------------------------


def test_llm_households_decide_through_the_test_server(sqlite_url: str) -> None:
    with TestServer(ServerBehaviour(seed=2)) as server:
        data = small(steps=3, llm={
            "backend": "openai", "model": "populace-test", "max_attempts": 3, "timeout_s": 5,
            "endpoints": [{"base_url": server.url, "max_in_flight": 16}]},
            policy={"type": "mixed", "parts": [
                {"select": {"fraction": 0.3}, "type": "llm"}, {"type": "rule"}]})
        run = run_experiment(data, sqlite_url)
    assert run.info["status"] == "completed"
    calls = run.table("llm_calls")
    assert len(calls) > 0 and calls["valid"].astype(bool).all()
    assert (run.metrics()["llm.fallbacks"].fillna(0) == 0).all()
    prompt = calls["prompt"].iloc[0]
    assert "consume_share" in prompt and "You are household" in prompt
    actions = run.table("economy_actions")
    llm_rows = actions[actions["agent_id"].isin(set(calls["agent_id"]))]
    assert len(llm_rows) == len(calls)  # every answer became a work / not_work decision
    assert llm_rows["propensity"].between(0, 1).all()
    assert llm_rows["consume_share"].between(0, 1).all()
    assert run.metrics()["money_residual"].abs().max() < 1e-9


def test_llm_households_fall_back_to_keeping_their_choices(sqlite_url: str) -> None:
    with TestServer(ServerBehaviour(seed=2, invalid_json_rate=1.0)) as server:
        data = small(steps=2, llm={
            "backend": "openai", "model": "populace-test", "timeout_s": 5,
            "endpoints": [{"base_url": server.url}]},
            policy={"type": "mixed", "parts": [
                {"select": {"fraction": 0.2}, "type": "llm", "params": {"repair": False}},
                {"type": "rule"}]})
        run = run_experiment(data, sqlite_url)
    assert run.info["status"] == "completed"
    m = run.metrics()
    assert m["llm.fallbacks"].sum() == m["llm.requests"].sum() > 0
    assert m["actions.do_nothing"].sum() == m["llm.fallbacks"].sum()


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(("scenario", "message"), [
    ({"firms": 0}, "scenario.firms"),
    ({"firm": {"min_markup": 0.5, "max_markup": 0.2}}, "min_markup"),
    ({"tax": {"brackets": [{"above": 0, "rate": 0.1}, {"above": 0, "rate": 0.2}]}},
     "thresholds must increase"),
    ({"tax": {"brackets": [{"above": 100, "rate": 0.1}]}}, "must start at above: 0"),
    ({"central_bank": {"floor": 0.2, "ceiling": 0.1}}, "below its ceiling"),
    ({"central_bank": {"natral_rate": 0.02}}, "natral_rate"),
    ({"shocks": {"demand": {"persistence": 1.0}}}, "persistence"),
])
def test_bad_config_is_a_clear_config_error(scenario: dict[str, Any], message: str) -> None:
    data = small()
    data["scenario"] = {"type": "economy", **scenario}
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(data)


def test_bad_rule_params_and_population_are_explained(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="rate_sensitivty"):
        experiment_from_dict(small(policy={"type": "rule", "params": {"rate_sensitivty": 1}}))
    data = small()
    data["population"]["attributes"]["skill"] = {"dist": "uniform", "low": -1, "high": 0}
    with pytest.raises(ValueError, match="'skill' must be > 0"):
        run_experiment(data, sqlite_url)


def test_defaults_without_skill_or_wealth_attributes(sqlite_url: str) -> None:
    data = small(steps=3)
    data["population"] = {"size": 50, "attributes": {
        "age": {"dist": "integer", "low": 20, "high": 60}}}
    run = run_experiment(data, sqlite_url)
    assert run.info["status"] == "completed"
    state = run.table("economy_state").set_index("step")
    assert state.loc[0, "household_money"] == pytest.approx(50 * EconomyConfig().initial_wealth)


# -- helpers --------------------------------------------------------------------------------------


def hand_built(n: int, firms: int, seed: int = 3) -> EconomyScenario:
    """An economy of ``n`` households built without the engine (monthly steps)."""
    population = Population(pd.DataFrame({"skill": np.linspace(0.5, 1.5, n)},
                                         index=pd.RangeIndex(n)))
    world = World(population, None, Clock(datetime(2025, 1, 1), timedelta(days=30)),
                  RngStreams(seed), Path("."))
    scenario = EconomyScenario(EconomyConfig(firms=firms), world)
    scenario.setup()
    return scenario


def step(scenario: EconomyScenario, t: int) -> None:
    """One step with every household active and deciding by the default rule policy."""
    world = scenario.world
    ctx = StepContext(step=t, time=world.clock.time(t), epoch=world.clock.epoch(t),
                      hour=world.clock.hour(t), rng=world.rng)
    agents = np.arange(scenario.n, dtype=np.int64)
    obs = scenario.observe(agents, ctx)
    actions = scenario.rule_policy(HouseholdRuleParams()).decide(obs, ctx)
    scenario.apply(actions, ctx)
