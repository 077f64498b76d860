"""The marketplace scenario: settlement invariants, refusals, search, metrics, experiments."""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import yaml

from populace.scenarios.market import (
    MarketInvariantError,
    MarketScenario,
    coefficient_of_variation,
    gini,
    hhi,
)
from populace.scenarios.market.actions import (
    DO_NOTHING,
    LEAVE,
    MESSAGE,
    PAY,
    RESPOND,
    SEARCH,
    MarketArgs,
    action_batch,
)
from populace.scenarios.market.catalog import match
from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.config_errors import ConfigError

from .helpers import Crash, assert_same_run, crash_after, reopen, run_experiment

EXAMPLES = Path(MarketScenario.examples)


def market(**changes) -> dict:
    """A small market: 10 businesses, 190 customers, 12 steps."""
    data = {
        "name": "market_test", "seed": 5, "steps": 12, "step_duration": "1h",
        "start_time": "2025-03-01T08:00:00",
        "scenario": {"type": "market", "businesses": 10, "capacity": 4, "need_rate": 0.2,
                     "wallet": 100},
        "population": {"size": 200},
        "activation": {"probability": 0.7},
        "policy": {"type": "rule", "params": {"contacts": 3, "wait_for": 2, "patience": 3}},
        "recording": {"agent_state_every": 6},
        "metrics": {"every": 1},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def started(data: dict, url: str) -> Simulation:
    sim = Simulation(experiment_from_dict(data), db_url=url)
    sim.start()
    return sim


def test_settlement_conserves_money_and_pays_each_proposal_once(sqlite_url: str) -> None:
    run = run_experiment(market(steps=24), sqlite_url)
    m = run.metrics()
    assert (m["money"] == 190 * 100).all()  # no income: customers' wallets are all the money
    orders = run.table("market_orders")
    assert len(orders) == m["orders_total"].iloc[-1] == m["orders"].sum() > 50
    assert orders["proposal_id"].is_unique
    assert orders["need_id"].is_unique  # a need is met at most once
    # every order pays exactly the price its proposal offered, to the business that made it
    msgs = run.table("market_messages")
    proposals = msgs[msgs["kind"] == "proposal"].set_index("proposal_id")
    paid = proposals.loc[orders["proposal_id"]]
    assert (paid["price"].to_numpy() == orders["price"].to_numpy()).all()
    assert (paid["sender_id"].to_numpy() == orders["business_id"].to_numpy()).all()
    assert (paid["receiver_id"].to_numpy() == orders["customer_id"].to_numpy()).all()
    # payments are only of proposals that had arrived before the step of payment
    assert (paid["arrival"].to_numpy() < orders["step"].to_numpy()).all()
    # per-step capacity holds
    per = orders.groupby(["step", "business_id"]).size()
    assert per.max() <= 4
    # balances: each customer's final balance is the wallet minus what it paid
    states = run.table("agent_states")
    states = states[states["variable"] == "balance"]
    last = states[states["step"] == states["step"].max()].set_index("agent_id")["value"]
    spent = orders.groupby("customer_id")["price"].sum() / 100.0
    customers = last.index[last.index >= 10]
    expected = 100.0 - spent.reindex(customers, fill_value=0.0)
    np.testing.assert_allclose(last.loc[customers].to_numpy(), expected.to_numpy())
    assert 0 < m["welfare_ratio"].iloc[-1] <= 1.0


def test_invalid_actions_are_refused_with_a_reason_and_move_no_money(sqlite_url) -> None:
    sim = started(market(steps=3), sqlite_url)
    sc = sim.scenario
    cat, state = sc.catalog, sc.state
    for _ in range(2):  # a search and an answer: customers hold proposals now
        sim.advance()
    sim.flush()
    props = state.proposals
    assert len(props.id) > 0
    ctx = sim._context(3)
    p = 0
    owner = int(cat.cust_agent[props.cust[p]])
    other = int(next(a for a in cat.cust_agent
                     if a != owner and state.needs.id[cat.agent_cust[a]] >= 0))
    pid, price = int(props.id[p]), int(props.price[p])
    business = int(cat.biz_agent[0])
    batch = action_batch(
        np.array([other, owner, business, owner, other, business, owner]),
        np.array([PAY, PAY, PAY, MESSAGE, RESPOND, MESSAGE, PAY]),
        MarketArgs(proposal_id=np.array([pid, 10**9, pid, -1, -1, -1, pid]),
                   price=np.array([-1, -1, -1, -1, -1, -1, price + 1]),
                   target_id=np.array([-1, -1, -1, 5000, -1, business, -1])))
    money = (state.wallets.copy(), state.businesses.balance.copy())
    sc.apply(batch, ctx)
    assert batch.args.reason.tolist() == [
        "not_yours", "unknown_proposal", "wrong_role", "unknown_business", "wrong_role",
        "unknown_customer", "price_mismatch"]
    assert not batch.args.accepted.any()
    np.testing.assert_array_equal(state.wallets, money[0])
    np.testing.assert_array_equal(state.businesses.balance, money[1])
    assert sc.outcome.rejected["wrong_role"] == 2 and sc.outcome.rejected["not_yours"] == 1
    # a payment above the balance is refused too (the owner gives money away, conserving it)
    c_owner, c_other = cat.agent_cust[owner], cat.agent_cust[other]
    state.wallets[c_other] += state.wallets[c_owner] - (price - 1)
    state.wallets[c_owner] = price - 1
    again = action_batch(np.array([owner]), np.array([PAY]), MarketArgs(proposal_id=np.array([pid])))
    sc.apply(again, sim._context(4))
    assert again.args.reason.tolist() == ["insufficient_funds"]
    # money that appears from nowhere stops the step with a clear error
    state.wallets[c_owner] += 1
    with pytest.raises(MarketInvariantError, match="money is not conserved"):
        sc.apply(action_batch(np.array([owner]), np.array([DO_NOTHING])), sim._context(5))


def test_capacity_goes_to_the_first_payers_in_activation_order(sqlite_url) -> None:
    sim = started(market(steps=3, scenario={"capacity": 1, "businesses": 1},
                         population={"size": 40}), sqlite_url)
    sc = sim.scenario
    cat, props = sc.catalog, sc.state.proposals
    for _ in range(2):
        sim.advance()
    sim.flush()
    holders = cat.cust_agent[np.unique(props.cust)]
    assert len(holders) >= 3
    pids = [int(props.id[np.flatnonzero(props.cust == cat.agent_cust[a])[0]]) for a in holders]
    batch = action_batch(holders, np.full(len(holders), PAY),
                         MarketArgs(proposal_id=np.array(pids)))
    sc.apply(batch, sim._context(3))
    assert batch.args.accepted.tolist() == [True] + [False] * (len(holders) - 1)
    assert set(batch.args.reason[1:]) == {"sold_out"}


def _one_search(ranking: str, sponsored: float = 0.0) -> tuple[MarketScenario, np.ndarray]:
    sim = started(market(scenario={"ranking": ranking, "results": 10, "sponsored_share":
                                   sponsored, "businesses": 10, "menu_size": 6},
                         population={"size": 30}), "sqlite://")
    sc = sim.scenario
    c = np.array([0])
    sc.search.run(c, np.array([10]), sim._context(1))
    inq = sc.state.inquiries
    return sc, inq.biz[inq.cust == 0]


def test_search_rankings_order_businesses_as_documented() -> None:
    sc, found = _one_search("price")
    t = sc.state.needs.type[0]
    prices = sc.posted_price(sc.catalog.row_of[found, t])
    assert len(found) == 10 and (np.diff(prices) >= 0).all()
    sc, found = _one_search("rating")
    assert (np.diff(sc.catalog.rating[found]) <= 0).all()
    sc, found = _one_search("lexical")
    cat, needs = sc.catalog, sc.state.needs
    t = needs.type[0]
    fit = match(np.full(len(found), needs.feat[0]), cat.menu_feat[cat.row_of[found, t]])
    assert (np.diff(fit) <= 0).all()
    sc, found = _one_search("sponsored", sponsored=0.3)
    flags = sc.catalog.sponsored[found]
    assert flags.any() and not (np.diff(flags.astype(int)) > 0).any()  # sponsored ones first


def test_market_measures() -> None:
    assert hhi(np.array([1, 1, 1, 1])) == pytest.approx(0.25)
    assert hhi(np.array([5, 0, 0])) == pytest.approx(1.0)
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    values = np.array([10.0, 20.0, 30.0])
    cv = values.std() / values.mean()
    got = coefficient_of_variation(np.array([3, 1]), np.array([60.0, 5.0]),
                                   np.array([(values ** 2).sum(), 25.0]))
    assert got == pytest.approx(cv)


def test_same_seed_same_database_and_resume_matches(tmp_path, monkeypatch) -> None:
    data = market(steps=10, checkpoint_every=3)
    a = run_experiment(data, f"sqlite:///{tmp_path / 'a.db'}")
    b = run_experiment(deepcopy(data), f"sqlite:///{tmp_path / 'b.db'}")
    assert_same_run(a, b)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    sim = Simulation(experiment_from_dict(deepcopy(data)), db_url=url)
    crash_after(sim, 8, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 6
    assert_same_run(a, reopen(url, resumed.run().id))


@pytest.mark.slow
def test_first_proposal_takers_reward_fast_businesses(sqlite_url: str) -> None:
    data = yaml.safe_load((EXAMPLES / "first_proposal_bias.yaml").read_text())
    data["steps"] = 36
    first = run_experiment(deepcopy(data), sqlite_url)
    data["policy"]["params"]["consider"] = 0
    data["name"] = "compare_all"
    compare = run_experiment(data, sqlite_url)

    def fast_share(run) -> float:
        orders = run.table("market_orders")
        agents = run.agents()
        speed = orders["business_id"].map(agents["speed"])
        return float(orders.loc[speed == "fast", "price"].sum() / orders["price"].sum())

    m1, m0 = first.metrics().iloc[-1], compare.metrics().iloc[-1]
    assert m1["first_proposal_bias"] > 0.3
    assert abs(m0["first_proposal_bias"]) < 0.15
    assert fast_share(first) > fast_share(compare) > 0.5
    assert m1["welfare_ratio"] < m0["welfare_ratio"]


def test_examples_validate_and_bad_market_config_is_explained() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if data["scenario"]["type"] == "market":
            experiment_from_dict(data)
    with pytest.raises(ConfigError, match="ranking"):
        experiment_from_dict(market(scenario={"ranking": "best"}))
    with pytest.raises(ConfigError, match="menu_size 9"):
        experiment_from_dict(market(scenario={"menu_size": 9}))
    # known from population.size: refused at validation, before any run
    with pytest.raises(ConfigError, match="200 businesses leave no customer among the 200"):
        experiment_from_dict(market(scenario={"businesses": 200}))


def test_leave_search_and_wait_codes_round_trip() -> None:
    sim = started(market(steps=2), "sqlite://")
    sc = sim.scenario
    cat, state = sc.catalog, sc.state
    cust = int(cat.cust_agent[np.flatnonzero(state.needs.id >= 0)[0]])
    c = cat.agent_cust[cust]
    idle_biz = int(cat.biz_agent[0])
    batch = action_batch(np.array([cust, idle_biz]), np.array([SEARCH, DO_NOTHING]),
                         MarketArgs(contacts=np.array([2, -1])))
    sc.apply(batch, sim._context(1))
    assert batch.args.accepted.all()
    assert (state.inquiries.cust == c).sum() == 2
    leave = action_batch(np.array([cust]), np.array([LEAVE]))
    sc.apply(leave, sim._context(2))
    assert state.needs.id[c] == -1 or state.needs.searched[c] == -1
    assert (state.inquiries.cust == c).sum() == 0  # its inquiries went with the need


def test_state_restores_in_place_with_inboxes_and_counters() -> None:
    sim = started(market(steps=3, scenario={"inbox_size": 2}), "sqlite://")
    sc = sim.scenario
    cat = sc.catalog
    cust, biz = int(cat.cust_agent[0]), int(cat.biz_agent[0])
    texts = np.array(["hello", "é ünïcode", "third"], dtype=object)
    sc.apply(action_batch(np.full(3, cust), np.full(3, MESSAGE),
                          MarketArgs(target_id=np.full(3, biz), content=texts)), sim._context(1))
    kept = [{"sender": cust, "content": "é ünïcode"}, {"sender": cust, "content": "third"}]
    assert sc.state.inboxes.inbox(biz) == kept  # the oldest went: the inbox holds two
    saved = sc.state_dict()
    fresh = MarketScenario(sc.config, sc.world)
    adapter = fresh.llm_adapter()  # made before setup, as the engine does
    fresh.setup()
    fresh.load_state_dict(saved)
    restored = fresh.state_dict()
    assert saved.keys() == restored.keys()
    assert all(np.array_equal(saved[k], restored[k]) for k in saved)
    assert fresh.state.counters == sc.state.counters and fresh.state.totals == sc.state.totals
    # the adapter sees the restored state: it was changed in place
    _, contexts = adapter.prompt_context(fresh.observe(np.array([biz]), sim._context(2)))
    assert contexts[0]["messages"] == kept


def test_llm_customers_trade_through_a_real_server_and_bad_answers_are_refused(
        sqlite_url: str) -> None:
    from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

    data = yaml.safe_load((EXAMPLES / "manipulation.yaml").read_text())
    data["steps"] = 6
    data["population"]["size"] = 120
    with TestServer(ServerBehaviour(seed=2, invalid_json_rate=0.05)) as srv:
        data["llm"]["endpoints"] = [{"base_url": srv.url, "max_in_flight": 16}]
        run = run_experiment(data, sqlite_url)
    assert run.info["status"] == "completed"
    m = run.metrics()
    calls = run.table("llm_calls")
    decisions = calls[calls["kind"] == "decision"]
    assert len(decisions) == m["llm.requests"].sum() - m["llm.repairs"].sum() > 50
    assert m["llm.invalid"].sum() > 0 and m["llm.repairs"].sum() > 0
    # the server answers at random within the schema: customers try business actions and
    # proposals that do not exist; the platform refuses them and money stays where it was
    assert m["rejected.wrong_role"].sum() > 0
    assert m["rejected.unknown_proposal"].sum() + m["rejected.no_need"].sum() > 0
    assert (m["money"] == m["money"].iloc[0]).all()
    prompt = json.loads(decisions["prompt"].iloc[-1])
    assert "a customer" in prompt[1]["content"] and "Populace Market" in prompt[0]["content"]
    actions = run.table("market_actions")
    llm_agents = set(decisions["agent_id"])
    mine = actions[actions["agent_id"].isin(llm_agents)]
    assert set(mine["action"]) - {"do_nothing"}
    refused = mine[~mine["accepted"].astype(bool)]
    assert refused["reason"].notna().all()


def test_llm_ranked_search_orders_the_model_s_choice_first(sqlite_url: str) -> None:
    from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

    data = market(steps=4, scenario={"ranking": "llm", "results": 4, "llm_candidates": 6,
                                     "manipulative_share": 0.3})
    with TestServer(ServerBehaviour(seed=9, invalid_json_rate=0.2)) as srv:
        data["llm"] = {"backend": "openai", "model": "populace-test", "max_attempts": 2,
                       "timeout_s": 5, "endpoints": [{"base_url": srv.url}]}
        run = run_experiment(data, sqlite_url)
    m = run.metrics()
    calls = run.table("llm_calls")
    ranked = calls[calls["kind"] == "scenario"]
    searches = m["actions.search"].sum()
    assert len(ranked) == m["llm.scenario.requests"].sum() == searches > 0
    # invalid answers fall back to the lexical order, counted
    invalid = int((~ranked["valid"].astype(bool)).sum())
    assert invalid > 0 and m["search.llm_fallbacks"].iloc[-1] == invalid
    # a valid answer's first choice is the first business asked for a proposal
    inquiries = run.table("market_messages")
    inquiries = inquiries[inquiries["kind"] == "inquiry"]
    checked = 0
    for row in ranked[ranked["valid"].astype(bool)].itertuples():
        first = json.loads(row.response)["ranking"][0]
        asked = inquiries[(inquiries["sender_id"] == row.agent_id) & (inquiries["step"] == row.step)]
        assert asked["receiver_id"].iloc[0] == first
        checked += 1
    assert checked > 0
    prompt = json.loads(ranked["prompt"].iloc[0])[1]["content"]
    assert "Candidates:" in prompt and "business" in prompt
    with pytest.raises(ConfigError, match="ranking: llm needs an llm: section"):
        experiment_from_dict(market(scenario={"ranking": "llm"}))  # refused at validation


def test_menus_can_come_from_a_file_and_bad_rows_are_named(tmp_path, sqlite_url) -> None:
    from populace.simulator import load_experiment

    menu = tmp_path / "menus.csv"
    menu.write_text("business_id,item_type,price,features\n"
                    "0,pizza,12.50,\"vegan,delivery\"\n0,sushi,30,\n1,pizza,9.99,spicy\n")
    data = market(steps=3, scenario={"businesses": 2, "menu_file": "menus.csv"},
                  population={"size": 60})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    run = Simulation(load_experiment(path), db_url=sqlite_url).run()
    items = run.table("market_menu").sort_values("item_id")
    assert items[["business_id", "item_type", "price", "features"]].values.tolist() == [
        [0, "pizza", 1250, "vegan,delivery"], [0, "sushi", 3000, ""], [1, "pizza", 999, "spicy"]]
    needs = run.table("market_needs")
    proposals = run.table("market_messages").query("kind == 'proposal'")
    offered = {"pizza", "sushi"}
    asked = needs.set_index("need_id").loc[proposals["need_id"], "item_type"]
    assert set(asked) <= offered  # only items on a menu are ever proposed
    for row, message in [("7,pizza,1,", "business_id 7 is not a business"),
                         ("0,caviar,1,", "item_type 'caviar' is not among"),
                         ("0,pizza,1,telepathy", "feature 'telepathy' is not among"),
                         ("0,pizza,-2,", "price must be a positive number"),
                         ("0,sushi,3,", "business 0 lists 'sushi' twice")]:
        menu.write_text("business_id,item_type,price,features\n0,sushi,30,\n" + row + "\n")
        with pytest.raises(ValueError, match=r"menus.csv, row 3: " + message):
            Simulation(load_experiment(path), db_url="sqlite://").start()


def test_llm_businesses_set_prices_and_their_proposals_follow(sqlite_url: str) -> None:
    from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

    data = yaml.safe_load((EXAMPLES / "manipulation.yaml").read_text())
    data["steps"] = 8
    data["population"]["size"] = 150
    data["activation"] = {"probability": 1.0}
    data["policy"]["parts"][0]["select"] = {"where": {"role": "business"}}
    with TestServer(ServerBehaviour(seed=4)) as srv:
        data["llm"]["endpoints"] = [{"base_url": srv.url, "max_in_flight": 16}]
        run = run_experiment(data, sqlite_url)
    actions = run.table("market_actions")
    businesses = set(run.table("market_businesses")["agent_id"])
    answered = actions[actions["agent_id"].isin(businesses) & (actions["action"] == "respond")
                       & actions["accepted"].astype(bool)]
    assert len(answered) > 0
    # each accepted answer's markup sets the price of the proposals it made that step
    menu = run.table("market_menu").set_index("item_id")
    msgs = run.table("market_messages")
    proposals = msgs[msgs["kind"] == "proposal"]
    checked = 0
    for a in answered.itertuples():
        made = proposals[(proposals["sender_id"] == a.agent_id) & (proposals["step"] == a.step)]
        for p in made.itertuples():
            list_price = menu.loc[p.item_id, "price"]
            assert p.price == max(1, round(list_price * (1 + a.markup)))
            checked += 1
    assert checked > 0
