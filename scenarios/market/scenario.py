"""The marketplace scenario: customers search, ask businesses for proposals and pay one.

Core objects:
    MarketScenario: the ``market`` scenario, which wires the pieces of the market into the
        phases of a step: the catalog (``catalog``), the state (``state``), needs
        (``needs``), search (``search``), settlement (``settlement``), what agents see
        (``observation``), the rule policy (``rules``), language-model agents
        (``decisions``) and the metrics (``metrics``).

The market is not ``Shardable``: on the Ray runtime every replica holds the whole market and
applies every action, and every replica applies the events of a step boundary.

Steering (docs/scenarios.md, "Steering hooks"): the variables ``markup`` (businesses' prices)
and ``balance`` (everyone's money), assembled by agent id in ``steering``; broadcasts are
announcements by the platform; the search, the needs, capacity and proposal lifetime can be
reconfigured mid-run; customers and businesses can join (``join``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from populace.simulator.actions import ActionBatch
from populace.simulator.records import Records
from populace.simulator.scenario import GraphTable, Scenario, Variable
from populace.simulator.step import StepContext
from populace.simulator.world import World

from .actions import ACTIONS, LEAVE, MESSAGE, PAY, RESPOND, SEARCH, MarketArgs
from .catalog import build_catalog, role_values
from .config import MAX_TOTAL_CENTS, MarketBroadcast, MarketConfig, MarketJoin, MarketRuleParams
from .decisions import MarketLLM
from .messages import Messages, join_messages, message_rows
from .metrics import market_metrics
from .needs import arriving_needs, draw_needs
from .observation import MarketObservation, observe
from .rules import MarketRulePolicy
from .search import Search
from .settlement import MarketInvariantError, Outcome, Settlement
from .state import MarketState
from .steering import COLUMNS, VARIABLES
from .tables import TABLES

_INT = np.int64


class MarketScenario(Scenario[MarketConfig, MarketObservation, MarketRuleParams, MarketArgs]):
    """A two-sided marketplace in the style of Magentic-Marketplace.

    Attributes:
        catalog: roles, businesses and menus (fixed for the run).
        state: everything the run changes (a ``MarketState``; checkpoints save it).
        outcome: what the last applied batch did (its refusals, orders and revenue).
    """

    name = "market"
    headline_metrics = (
        "welfare_ratio", "first_proposal_bias", "hhi", "orders_total", "needs_met",
        "needs_abandoned", "mean_markup", "price_dispersion",
    )
    config_model = MarketConfig
    rule_params_model = MarketRuleParams
    actions = ACTIONS
    args_type = MarketArgs
    tables = TABLES
    action_table = "market_actions"
    # who bought from whom: customers -> businesses, one edge per order
    graph = GraphTable("market_orders", "customer_id", "business_id")
    examples = Path(__file__).parent / "examples"
    variables: ClassVar[dict[str, Variable]] = VARIABLES
    broadcast_model = MarketBroadcast
    join_model = MarketJoin
    # each is read from the config where it is used (searches, new needs, settlement, prompts)
    # or rebuilt by ``reconfigure`` (capacity); the catalog's draws and the money settings
    # (checked against int64 cents for the whole run at validate time) stay fixed
    reconfigurable: ClassVar[tuple[str, ...]] = (
        "ranking", "results", "llm_candidates", "capacity", "need_rate", "need_feature_prob",
        "budget", "value_multiple", "proposal_ttl", "manipulation_pitch")
    state: MarketState

    def __init__(self, config: MarketConfig, world: World) -> None:
        super().__init__(config, world)
        self.catalog = build_catalog(config, world)
        if config.ranking == "llm" and world.llm is None:
            raise ValueError("scenario.ranking: llm needs an llm: section (the model that "
                             "ranks search results)")
        # The state exists from here on and is only ever changed in place (setup draws the
        # first needs into it, a resume loads into it): the LLM adapter and the phases below
        # hold this object.
        cat = self.catalog
        self.state = MarketState.opening(cat.n_biz, cat.n_cust, len(config.item_types),
                                         int(round(config.wallet * 100)), config.inbox_size)
        self.search = Search(config, cat, self.state, world)
        self.settlement = Settlement(config, cat, self.state)
        self.outcome = Outcome.of(0)
        self._llm: MarketLLM | None = None

    def setup(self) -> Records:
        """Businesses, menus and the first needs (deterministic: also run on resume)."""
        records = self.catalog.records()
        first = self.world.rng.uniform("market.initial_need", 0, self.catalog.cust_agent)[:, 0]
        needs = draw_needs(self.config, self.catalog, self.state, self.world,
                           np.flatnonzero(first < self.config.initial_need_share), 0)
        if needs:
            records["market_needs"] = needs
        return records

    def posted_price(self, rows: np.ndarray) -> np.ndarray:
        """Current price of menu rows (cents): list price times one plus the markup."""
        return self.catalog.posted_price(rows, self.state.businesses.markup)

    def observe(self, agents: np.ndarray, ctx: StepContext) -> MarketObservation:
        """Customers see the proposals they received (first arrived first); businesses their
        pending inquiries, last step's sales and their markup."""
        return observe(self.catalog, self.state, agents, ctx.step, self.config.results)

    def rule_policy(self, params: MarketRuleParams) -> MarketRulePolicy:
        """Rule-based customers and businesses."""
        return MarketRulePolicy(params, self.catalog.base)

    def apply(self, actions: ActionBatch[MarketArgs], ctx: StepContext) -> Records:
        """Settle payments, close abandoned needs, run searches, deliver messages, answer
        inquiries, in batch order; refuse invalid actions with a counted reason (the
        ``accepted`` and ``reason`` columns); then lapse old proposals, draw new needs, pay
        income and check that money adds up."""
        step, a = ctx.step, actions.args
        codes, agents = actions.action.astype(_INT), actions.agent
        state, settle = self.state, self.settlement
        state.businesses.new_step()
        out = self.outcome = Outcome.of(len(actions))
        biz = self.catalog.agent_biz[agents]
        cust = self.catalog.agent_cust[agents]
        cs = settle.check_roles(out, codes, biz, cust)
        messages: list[Messages | None] = []

        records, paid = settle.pay(out, codes == PAY, agents, cs, a, step)
        messages.append(paid)
        leave = out.ok & (codes == LEAVE)
        if leave.any():
            state.close_needs(cs[leave], np.zeros(int(leave.sum()), dtype=_INT), met=False)
        search = out.ok & (codes == SEARCH)
        if search.any():
            messages.append(self.search.run(cs[search], a.contacts[search], ctx))
        message = codes == MESSAGE
        if message.any():
            messages.append(settle.send(out, message, agents, biz, cust, cs, a, step))
        respond = codes == RESPOND
        if respond.any():
            messages.append(settle.respond(out, respond, biz, a, step))
        a.accepted = out.ok
        a.reason = out.reason

        state.lapse(step, self.config.proposal_ttl)
        # new needs, drawn for every customer without one (active or not)
        needs = draw_needs(self.config, self.catalog, state, self.world,
                           arriving_needs(self.config, self.catalog, state, self.world, step),
                           step)
        if needs:
            records["market_needs"] = needs
        settle.pay_income()
        sent = [m for m in messages if m is not None]
        if sent:
            records["market_messages"] = join_messages(sent)
        settle.check_money(step)
        return records

    def metrics(self, actions: ActionBatch[MarketArgs], ctx: StepContext) -> dict[str, float]:
        """Action counts, refusals, orders, welfare against the full-information optimum,
        first-proposal bias, search breadth, concentration, inequality, price dispersion."""
        return market_metrics(self.state, actions.action, self.outcome)

    def agent_state(self) -> dict[str, np.ndarray]:
        """Each agent's balance (customers and businesses), in currency units."""
        bal = np.zeros(self.world.n_agents)
        bal[self.catalog.cust_agent] = self.state.wallets / 100.0
        bal[self.catalog.biz_agent] = self.state.businesses.balance / 100.0
        return {"balance": bal}

    def llm_adapter(self) -> MarketLLM:
        """Language-model customers and businesses (one adapter, which ``reconfigure``
        keeps up to date)."""
        if self._llm is None:
            self._llm = MarketLLM(self.config, self.catalog, self.state)
        return self._llm

    # -- steering --------------------------------------------------------------------------------

    def variable(self, name: str) -> np.ndarray:
        """``markup`` or ``balance`` over every agent id; assigning to it changes the market
        (see ``steering``)."""
        return COLUMNS[name](self.catalog, self.state)

    def broadcast(self, text: str, args: MarketBroadcast, ctx: StepContext) -> Records:
        """An announcement by the platform: kept once for its audience (language-model
        agents read it with their messages from step ``ctx.step`` on), and one
        ``market_messages`` row of kind ``broadcast`` from sender -1 to receiver -1 (its
        audience is in the event's spec)."""
        self.state.inboxes.announce(args.to, text)
        minus = np.full(1, -1, dtype=np.int64)
        # arrival: it is there before step ``ctx.step`` is decided, as a message of the
        # previous step would be
        return {"market_messages": message_rows("broadcast", minus, minus, minus,
                                                np.full(1, float(ctx.step - 1)),
                                                content=[text])}

    def join(self, agents: np.ndarray, args: MarketJoin, ctx: StepContext) -> Records:
        """Newcomers become customers or businesses (``MarketJoin``): the catalog takes them
        (new businesses' traits and menus as at set-up, stream ``market.join.<first id>``), the state
        grows for them, a new customer's wallet is booked as money paid in, and a customer
        gets a first need as at set-up. Returns the new businesses' ``market_businesses`` and
        ``market_menu`` rows and the new needs' ``market_needs`` rows."""
        cfg, cat, state = self.config, self.catalog, self.state
        attrs = self.world.population.attributes
        is_biz = self._newcomer_roles(attrs.iloc[int(agents[0]):int(agents[-1]) + 1], args)
        wallet = int(round((cfg.wallet if args.wallet is None else args.wallet) * 100))
        paid_in = wallet * int((~is_biz).sum())
        if state.money() + paid_in > MAX_TOTAL_CENTS:
            raise ValueError(f"wallets of {paid_in / 100:.3g} more would take the market's "
                             f"money past the {MAX_TOTAL_CENTS:.3g} cents the settlement can "
                             "count")
        types = None if args.items is None else [cfg.item_types.index(t) for t in args.items]
        # keyed by the first newcomer too: two joins at one boundary draw apart
        rng = ctx.random(f"market.join.{int(agents[0])}")
        biz, cust = cat.add(cfg, attrs, agents, is_biz, rng, types)
        state.grow(len(biz), len(cust), wallet)
        state.counters.income_paid += paid_in
        records = cat.records(biz) if len(biz) else {}
        first = self.world.rng.uniform("market.initial_need", ctx.step, cat.cust_agent[cust])
        needs = draw_needs(cfg, cat, state, self.world,
                           cust[first[:, 0] < cfg.initial_need_share], ctx.step)
        if needs:
            records["market_needs"] = needs
        return records

    def _newcomer_roles(self, rows: pd.DataFrame, args: MarketJoin) -> np.ndarray:
        """Whether each newcomer (its population row) is a business: its role attribute (a
        missing value takes ``args.role``), else ``args.role`` (default customer)."""
        column = self.config.role_attribute
        given = args.role == "business"
        if column not in rows:
            return np.full(len(rows), given)
        is_biz = role_values(self.config, rows[column].fillna(args.role or "customer"))
        if args.role is not None and (is_biz != given).any():
            raise ValueError(f"join args.role is {args.role!r}, but the population attribute "
                             f"{column!r} of {int((is_biz != given).sum())} newcomers says "
                             "otherwise; choose newcomers' roles in the event's profiles "
                             f"(e.g. profiles: [{{{column}: {args.role}}}])")
        return is_biz

    def reconfigure(self, config: MarketConfig) -> None:
        """Take the new config everywhere it was handed out (search, settlement, the model
        adapter) and rebuild the businesses' capacity from it."""
        if config.ranking == "llm" and self.world.llm is None:
            raise ValueError("scenario.ranking: llm needs an llm: section (the model that "
                             "ranks search results)")
        super().reconfigure(config)
        self.search.config = self.settlement.config = config
        if self._llm is not None:
            self._llm.config = config
        self.catalog.capacity[:] = config.capacity


__all__ = ["MarketInvariantError", "MarketObservation", "MarketScenario"]
