"""The marketplace scenario: customers search, ask businesses for proposals and pay one.

Core objects:
    MarketScenario: the ``market`` scenario (catalog, needs, search, proposals, settlement,
        metrics).
    MarketObservation: what active customers (their proposals, first arrived first) and
        businesses (their inquiries, sales, markup) perceive.

All money is in integer cents, so that conservation is exact: the engine's step fails with a
clear error if customers' and businesses' balances ever stop adding up to the starting money
plus the income paid.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, TypeAdapter

from populace.simulator.actions import ActionBatch
from populace.simulator.arrays import pack_strings, unpack_strings
from populace.simulator.paths import experiment_path
from populace.simulator.policy import Policy
from populace.simulator.scenario import Observation, Records, Scenario, StepContext, World

from . import tables as _tables  # noqa: F401  (declares the tables on the shared Base)
from .actions import (
    ACTIONS,
    BUSINESS_ACTIONS,
    CUSTOMER_ACTIONS,
    LEAVE,
    MESSAGE,
    PAY,
    RESPOND,
    SEARCH,
)
from .config import MarketConfig, MarketRuleParams
from .decisions import decision_model, decisions_to_actions, memories, memory_query, prompt_context
from .metrics import coefficient_of_variation, gini, hhi
from .tables import TABLES

REJECTIONS = ("wrong_role", "no_need", "unknown_proposal", "not_yours", "price_mismatch",
              "insufficient_funds", "sold_out", "unknown_business", "unknown_customer",
              "nothing_to_answer")
_INT = np.int64


class _Ranking(BaseModel):
    ranking: list[int]


_RANKING: TypeAdapter[_Ranking] = TypeAdapter(_Ranking)


class MarketInvariantError(RuntimeError):
    """Money was created or destroyed, or a proposal was paid twice: a bug, never input."""


@dataclass
class MarketObservation(Observation):
    """Per-agent columns; customer columns are -1/NaN on business rows and vice versa."""

    is_business: np.ndarray  # (n,) bool
    has_need: np.ndarray  # (n,) bool
    searched: np.ndarray  # (n,) bool: asked for proposals for the current need
    waited: np.ndarray  # (n,) steps since the search (-1 if none)
    budget: np.ndarray  # (n,) cents
    value: np.ndarray  # (n,) cents: worth of the need met with every feature
    balance: np.ndarray  # (n,) cents
    proposal_id: np.ndarray  # (n, k) received proposals, first arrived first; -1 padding
    price: np.ndarray  # (n, k) cents
    match: np.ndarray  # (n, k) share of the required features the item has
    rating: np.ndarray  # (n, k)
    manipulative: np.ndarray  # (n, k) bool
    received: np.ndarray  # (n,) proposals received in all (may exceed k)
    markup: np.ndarray  # (n,) a business's current markup
    answered: np.ndarray  # (n,) bool: the business has set a markup (answered once)
    capacity: np.ndarray  # (n,)
    sold: np.ndarray  # (n,) orders in the previous step
    inquiries: np.ndarray  # (n,) inquiries waiting for an answer
    inquired: np.ndarray  # (n,) inquiries received in the previous step


class MarketScenario(Scenario):
    """A two-sided marketplace in the style of Magentic-Marketplace."""

    name: ClassVar[str] = "market"
    config_model = MarketConfig
    rule_params_model = MarketRuleParams
    actions = ACTIONS
    tables = TABLES
    action_table = "market_actions"
    trace_columns = ("proposal_id", "target_id", "contacts", "markup", "accepted", "reason")
    examples = Path(__file__).parent / "examples"
    prompt_dir = Path(__file__).parent / "prompts"

    def __init__(self, config: MarketConfig, world: World) -> None:  # type: ignore[override]
        super().__init__(config, world)
        self.config: MarketConfig = config
        n = world.n_agents
        attrs = world.population.attributes
        if config.role_attribute in attrs:
            roles = attrs[config.role_attribute].astype(str).str.lower().to_numpy()
            bad = sorted(set(roles) - {"business", "customer"})
            if bad:
                raise ValueError(f"population attribute {config.role_attribute!r} must be "
                                 f"business or customer, found {bad[:3]}")
            is_biz = roles == "business"
        else:
            if config.businesses >= n:
                raise ValueError(f"scenario.businesses is {config.businesses} but the population "
                                 f"has only {n} agents: no customers would remain")
            is_biz = np.arange(n) < config.businesses
        self.biz_agent = np.flatnonzero(is_biz).astype(_INT)
        self.cust_agent = np.flatnonzero(~is_biz).astype(_INT)
        if len(self.biz_agent) == 0 or len(self.cust_agent) == 0:
            raise ValueError("the market needs at least one business and one customer")
        self.agent_biz = np.full(n, -1, dtype=_INT)
        self.agent_biz[self.biz_agent] = np.arange(len(self.biz_agent))
        self.agent_cust = np.full(n, -1, dtype=_INT)
        self.agent_cust[self.cust_agent] = np.arange(len(self.cust_agent))
        self.base = int(round(config.base_price * 100))
        if config.ranking == "llm" and world.llm is None:
            raise ValueError("scenario.ranking: llm needs an llm: section (the model that "
                             "ranks search results)")
        self.llm_fallbacks = 0
        self.rejected: dict[str, int] = dict.fromkeys(REJECTIONS, 0)
        self.inboxes: dict[int, deque[tuple[int, str]]] = {}  # agent -> latest text messages

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> Records:
        """Businesses, menus, wallets and the first needs (deterministic: also run on resume)."""
        cfg, world = self.config, self.world
        rng = world.rng.get("market.setup")
        attrs = world.population.attributes
        nb, nc, nt, nf = len(self.biz_agent), len(self.cust_agent), len(cfg.item_types), len(
            cfg.features)

        def column(name: str, agents: np.ndarray, draw: np.ndarray) -> np.ndarray:
            if name in attrs:
                values = attrs[name].to_numpy()[agents].astype(np.float64)
                return np.where(np.isnan(values), draw, values)
            return draw

        self.rating = np.round(column("rating", self.biz_agent, rng.uniform(*cfg.rating, nb)), 1)
        self.latency = column("latency", self.biz_agent, rng.uniform(*cfg.latency, nb))
        self.latency = np.clip(self.latency, 0.0, 0.999)
        self.manipulative = column("manipulative", self.biz_agent,
                                   (rng.random(nb) < cfg.manipulative_share).astype(float)) > 0
        self.sponsored = rng.random(nb) < cfg.sponsored_share
        self.capacity = np.full(nb, cfg.capacity, dtype=_INT)
        # menus: menu_size distinct item types per business, one row each, or a menu file
        types = np.argsort(rng.random((nb, nt)), axis=1)[:, :cfg.menu_size]
        self.menu_biz = np.repeat(np.arange(nb, dtype=_INT), cfg.menu_size)
        self.menu_type = types.ravel().astype(_INT)
        r = len(self.menu_biz)
        self.menu_base = np.maximum(1, np.round(
            self.base * np.exp(rng.normal(0.0, cfg.price_sd, r)))).astype(_INT)
        bits = rng.random((r, nf)) < cfg.feature_prob
        self.menu_feat = (bits * (1 << np.arange(nf, dtype=_INT))).sum(axis=1).astype(_INT)
        if cfg.menu_file is not None:
            self._load_menu(experiment_path(cfg.menu_file, world.base_dir))
            r = len(self.menu_biz)
        self.row_of = np.full((nb, nt), -1, dtype=_INT)
        self.row_of[self.menu_biz, self.menu_type] = np.arange(r)
        self.markup = np.zeros(nb)  # set by each answer (respond); list price until then
        self.answered = np.zeros(nb, dtype=bool)  # has the business set a markup yet
        self.biz_balance = np.zeros(nb, dtype=_INT)
        self.revenue = np.zeros(nb, dtype=_INT)
        self.sold = np.zeros(nb, dtype=_INT)
        self.sold_last = np.zeros(nb, dtype=_INT)
        self.inquired = np.zeros(nb, dtype=_INT)
        self.inquired_last = np.zeros(nb, dtype=_INT)
        # customers
        self.cust_balance = np.full(nc, int(round(cfg.wallet * 100)), dtype=_INT)
        self.money_start = int(self.cust_balance.sum())
        self.income_paid = 0
        self.need_id = np.full(nc, -1, dtype=_INT)
        self.need_type = np.full(nc, -1, dtype=_INT)
        self.need_feat = np.zeros(nc, dtype=_INT)
        self.need_budget = np.zeros(nc, dtype=_INT)
        self.need_value = np.zeros(nc, dtype=_INT)
        self.need_optimal = np.zeros(nc, dtype=_INT)
        self.need_searched = np.full(nc, -1, dtype=_INT)  # step of the last search
        self.need_contacted = np.zeros(nc, dtype=_INT)
        self.n_needs = 0
        self._empty_flows()
        # running totals for the metrics
        self.acc = {k: 0 for k in ("welfare", "optimal", "closed", "met", "left", "orders",
                                   "first", "searched_needs", "contacted")}
        self.acc_inv_k = 0.0
        self.manip_revenue = 0
        self.price_count = np.zeros(nt, dtype=np.float64)
        self.price_sum = np.zeros(nt, dtype=np.float64)
        self.price_sq = np.zeros(nt, dtype=np.float64)
        self.orders_step = 0
        self.revenue_step = 0

        records: Records = {
            "market_businesses": {
                "agent_id": self.biz_agent, "rating": self.rating,
                "capacity": self.capacity, "latency": self.latency,
                "manipulative": self.manipulative, "sponsored": self.sponsored,
                "description": self._descriptions()},
            "market_menu": {
                "item_id": np.arange(r, dtype=_INT), "business_id": self.biz_agent[self.menu_biz],
                "item_type": np.asarray(cfg.item_types, dtype=object)[self.menu_type],
                "price": self.menu_base.copy(), "features": self._feature_names(self.menu_feat)},
        }
        first = world.rng.uniform("market.initial_need", 0, self.cust_agent)[:, 0]
        new_needs = self._new_needs(np.flatnonzero(first < cfg.initial_need_share), 0)
        if new_needs:
            records["market_needs"] = new_needs
        return records

    def _load_menu(self, path: Path) -> None:
        """Menus from a CSV, Parquet or JSON-lines file: columns business_id (a business's
        agent id), item_type, price (currency units) and features (comma-separated)."""
        import pandas as pd

        cfg = self.config
        readers = {".csv": pd.read_csv, ".parquet": pd.read_parquet,
                   ".jsonl": lambda f: pd.read_json(f, lines=True)}
        reader = readers.get(path.suffix.lower())
        if reader is None:
            raise ValueError(f"scenario.menu_file {path.name}: expected .csv, .parquet or .jsonl")
        try:
            frame = reader(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"scenario.menu_file {path}: {exc}") from None
        need = ["business_id", "item_type", "price"]
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ValueError(f"scenario.menu_file {path.name} has no column {missing[0]!r} "
                             f"(columns: {', '.join(map(str, frame.columns))})")

        def fail(i: int, what: str) -> ValueError:
            return ValueError(f"scenario.menu_file {path.name}, row {i + 2}: {what}")

        types = {t: j for j, t in enumerate(cfg.item_types)}
        bit = {f: j for j, f in enumerate(cfg.features)}
        biz, typ, price, feat = [], [], [], []
        seen: set[tuple[int, int]] = set()
        feats = frame["features"] if "features" in frame.columns else [""] * len(frame)
        for i, (agent, item, p, fs) in enumerate(zip(frame["business_id"], frame["item_type"],
                                                    frame["price"], feats, strict=True)):
            agent = int(agent)
            if not 0 <= agent < len(self.agent_biz) or self.agent_biz[agent] < 0:
                raise fail(i, f"business_id {agent} is not a business")
            if item not in types:
                raise fail(i, f"item_type {item!r} is not among scenario.item_types")
            if not (p == p and float(p) > 0):
                raise fail(i, f"price must be a positive number, got {p!r}")
            mask = 0
            for name in (str(fs).split(",") if isinstance(fs, str) and fs else []):
                if name.strip() not in bit:
                    raise fail(i, f"feature {name.strip()!r} is not among scenario.features")
                mask |= 1 << bit[name.strip()]
            key = (int(self.agent_biz[agent]), types[item])
            if key in seen:
                raise fail(i, f"business {agent} lists {item!r} twice")
            seen.add(key)
            biz.append(key[0])
            typ.append(key[1])
            price.append(int(round(float(p) * 100)))
            feat.append(mask)
        self.menu_biz = np.array(biz, dtype=_INT)
        self.menu_type = np.array(typ, dtype=_INT)
        self.menu_base = np.array(price, dtype=_INT)
        self.menu_feat = np.array(feat, dtype=_INT)

    def _empty_flows(self) -> None:
        z = np.zeros(0, dtype=_INT)
        self.inq_cust, self.inq_biz, self.inq_need, self.inq_step = z, z.copy(), z.copy(), z.copy()
        self.prop_id, self.prop_cust, self.prop_biz = z.copy(), z.copy(), z.copy()
        self.prop_row, self.prop_need, self.prop_price, self.prop_step = (
            z.copy(), z.copy(), z.copy(), z.copy())
        self.prop_arrival = np.zeros(0)
        self.next_proposal = 0

    def _descriptions(self) -> list[str]:
        cfg = self.config
        out = []
        for b in range(len(self.biz_agent)):
            rows = np.flatnonzero(self.menu_biz == b)
            items = ", ".join(cfg.item_types[t] for t in self.menu_type[rows])
            out.append(f"Business {self.biz_agent[b]}: {items}; rated {self.rating[b]:.1f}")
        return out

    def _feature_names(self, masks: np.ndarray) -> list[str]:
        names = self.config.features
        return [",".join(f for i, f in enumerate(names) if m >> i & 1) for m in masks.tolist()]

    def posted_price(self, rows: np.ndarray) -> np.ndarray:
        """Current price of menu rows: list price times one plus the business's markup."""
        return np.maximum(1, np.round(self.menu_base[rows] * (1.0 + self.markup[
            self.menu_biz[rows]]))).astype(_INT)

    def _match(self, need_feat: np.ndarray, row_feat: np.ndarray) -> np.ndarray:
        """Share of the required features present (1 for a need without requirements)."""
        need_n = np.bitwise_count(need_feat)
        have = np.bitwise_count(need_feat & row_feat)
        return np.where(need_n > 0, have / np.maximum(need_n, 1), 1.0)

    def _new_needs(self, cust: np.ndarray, step: int) -> dict[str, object] | None:
        """Give customers ``cust`` (indexes) a new need; return its rows."""
        if len(cust) == 0:
            return None
        cfg, rng = self.config, self.world.rng
        agents = self.cust_agent[cust]
        u = rng.uniform("market.need", step, agents, 2 + len(cfg.features))
        ntypes = len(cfg.item_types)
        t = np.minimum((u[:, 0] * ntypes).astype(_INT), ntypes - 1)
        bits = u[:, 2:] < cfg.need_feature_prob
        feat = (bits * (1 << np.arange(len(cfg.features), dtype=_INT))).sum(axis=1).astype(_INT)
        lo, hi = cfg.budget
        budget_mult = lo + (hi - lo) * u[:, 1]
        attrs = self.world.population.attributes
        if "budget" in attrs:
            given = attrs["budget"].to_numpy()[agents].astype(np.float64) * 100
            budget = np.where(np.isnan(given), budget_mult * self.base, given)
        else:
            budget = budget_mult * self.base
        ids = np.arange(self.n_needs, self.n_needs + len(cust), dtype=_INT)
        self.n_needs += len(cust)
        value = int(round(cfg.value_multiple * self.base))
        self.need_id[cust] = ids
        self.need_type[cust] = t
        self.need_feat[cust] = feat
        self.need_budget[cust] = np.round(budget).astype(_INT)
        self.need_value[cust] = value
        self.need_searched[cust] = -1
        self.need_contacted[cust] = 0
        self.need_optimal[cust] = self._optimal(cust)
        return {"need_id": ids, "customer_id": agents,
                "item_type": np.asarray(cfg.item_types, dtype=object)[t],
                "features": self._feature_names(feat), "budget": self.need_budget[cust].copy(),
                "value": self.need_value[cust].copy(),
                "optimal_utility": self.need_optimal[cust].copy()}

    def _by_item_type(self, cust: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]]:
        """For each item type needed by customers ``cust``: their positions in ``cust``, the
        customers, and the menu rows offering the type (types nobody offers are skipped)."""
        for t in np.unique(self.need_type[cust]).tolist():
            sel = np.flatnonzero(self.need_type[cust] == t)
            rows = self.row_of[:, t]
            rows = rows[rows >= 0]
            if len(rows):
                yield sel, cust[sel], rows

    def _optimal(self, cust: np.ndarray) -> np.ndarray:
        """Full-information best utility of each customer's need at current posted prices:
        max over every business offering the item of value x match - price, floored at 0."""
        out = np.zeros(len(cust), dtype=_INT)
        for sel, c, rows in self._by_item_type(cust):
            match = self._match(self.need_feat[c][:, None], self.menu_feat[rows][None, :])
            util = self.need_value[c][:, None] * match - self.posted_price(rows)[None, :]
            out[sel] = np.maximum(0, np.floor(util.max(axis=1))).astype(_INT)
        return out

    # -- phases ---------------------------------------------------------------------------------

    def observe(self, agents: np.ndarray, ctx: StepContext) -> MarketObservation:
        """Customers see the proposals they received (first arrived first); businesses their
        pending inquiries, last step's sales and their markup."""
        n, k = len(agents), self.config.results
        biz = self.agent_biz[agents]
        cust = self.agent_cust[agents]
        is_biz = biz >= 0
        c_ok = cust >= 0
        cs = np.where(c_ok, cust, 0)
        bs = np.where(is_biz, biz, 0)
        has_need = c_ok & (self.need_id[cs] >= 0)
        searched_at = np.where(has_need, self.need_searched[cs], -1)
        obs = MarketObservation(
            agents=agents, is_business=is_biz, has_need=has_need, searched=searched_at >= 0,
            waited=np.where(searched_at >= 0, ctx.step - searched_at, -1),
            budget=np.where(has_need, self.need_budget[cs], -1),
            value=np.where(has_need, self.need_value[cs], -1),
            balance=np.where(c_ok, self.cust_balance[cs], np.where(is_biz, self.biz_balance[bs],
                                                                    0)),
            proposal_id=np.full((n, k), -1, dtype=_INT), price=np.full((n, k), -1, dtype=_INT),
            match=np.full((n, k), np.nan), rating=np.full((n, k), np.nan),
            manipulative=np.zeros((n, k), dtype=bool), received=np.zeros(n, dtype=_INT),
            markup=np.where(is_biz, self.markup[bs], np.nan),
            answered=is_biz & self.answered[bs],
            capacity=np.where(is_biz, self.capacity[bs], -1),
            sold=np.where(is_biz, self.sold_last[bs], -1),
            inquiries=np.where(is_biz, np.bincount(self.inq_biz, minlength=len(self.biz_agent))[
                bs], -1),
            inquired=np.where(is_biz, self.inquired_last[bs], -1))
        # proposals that have arrived (made in an earlier step) for the batch's customers
        pos = np.full(len(self.cust_agent), -1, dtype=_INT)
        pos[cust[c_ok]] = np.flatnonzero(c_ok)
        here = (self.prop_step < ctx.step) & (pos[self.prop_cust] >= 0)
        idx = np.flatnonzero(here)
        if len(idx):
            order = np.lexsort((self.prop_id[idx], self.prop_arrival[idx], self.prop_cust[idx]))
            idx = idx[order]
            who = self.prop_cust[idx]
            starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
            counts = np.diff(np.r_[starts, len(who)])
            rank = np.arange(len(idx)) - np.repeat(starts, counts)
            row = pos[who]
            obs.received[row[starts]] = counts
            keep = rank < k
            i, r, row = idx[keep], rank[keep], row[keep]
            obs.proposal_id[row, r] = self.prop_id[i]
            obs.price[row, r] = self.prop_price[i]
            obs.match[row, r] = self._match(self.need_feat[self.prop_cust[i]],
                                            self.menu_feat[self.prop_row[i]])
            obs.rating[row, r] = self.rating[self.prop_biz[i]]
            obs.manipulative[row, r] = self.manipulative[self.prop_biz[i]]
        return obs

    def rule_policy(self, params: MarketRuleParams) -> Policy:  # type: ignore[override]
        """Rule-based customers and businesses."""
        from .rules import MarketRulePolicy

        return MarketRulePolicy(params, self.base)

    def apply(self, actions: ActionBatch, ctx: StepContext) -> Records:
        """Settle payments, close abandoned needs, run searches, answer inquiries, in batch
        order; refuse invalid actions with a counted reason; check that money adds up."""
        step = ctx.step
        a = actions.args
        codes, agents = actions.action.astype(_INT), actions.agent
        n = len(actions)
        ok = np.ones(n, dtype=bool)
        reason = np.full(n, None, dtype=object)
        self.rejected = dict.fromkeys(REJECTIONS, 0)
        self.sold_last, self.inquired_last = self.sold, self.inquired
        self.sold = np.zeros(len(self.biz_agent), dtype=_INT)
        self.inquired = np.zeros(len(self.biz_agent), dtype=_INT)
        self.orders_step = self.revenue_step = 0

        def refuse(mask: np.ndarray, why: str) -> None:
            mask = mask & ok
            self.rejected[why] += int(mask.sum())
            ok[mask] = False
            reason[mask] = why

        biz = self.agent_biz[agents]
        cust = self.agent_cust[agents]
        refuse((biz >= 0) & ~np.isin(codes, BUSINESS_ACTIONS), "wrong_role")
        refuse((cust >= 0) & ~np.isin(codes, CUSTOMER_ACTIONS), "wrong_role")
        cs = np.where(cust >= 0, cust, 0)
        has_need = (cust >= 0) & (self.need_id[cs] >= 0)
        refuse(np.isin(codes, (PAY, LEAVE, SEARCH)) & ~has_need, "no_need")
        records: Records = {}
        messages: list[dict[str, np.ndarray]] = []

        self._pay(codes == PAY, agents, cs, a, ok, refuse, step, records, messages)
        leave = ok & (codes == LEAVE)
        if leave.any():
            self._close(cs[leave], np.zeros(int(leave.sum()), dtype=_INT), met=False)
        search = ok & (codes == SEARCH)
        if search.any():
            messages.append(self._search(cs[search], a["contacts"][search], ctx))
        message = codes == MESSAGE
        if message.any():
            target = a["target_id"]
            safe = np.clip(target, 0, len(self.agent_biz) - 1)
            in_range = (target >= 0) & (target < len(self.agent_biz))
            refuse(message & (cust >= 0) & ~(in_range & (self.agent_biz[safe] >= 0)),
                   "unknown_business")
            refuse(message & (biz >= 0) & ~(in_range & (self.agent_cust[safe] >= 0)),
                   "unknown_customer")
            sent = ok & message
            if sent.any():
                content = a.get("content")
                texts = (content[sent].tolist() if content is not None
                         else [None] * int(sent.sum()))
                need = np.where(cust[sent] >= 0, self.need_id[cs[sent]], -1)
                for sender, receiver, text in zip(agents[sent].tolist(), target[sent].tolist(),
                                                  texts, strict=True):
                    self._deliver(receiver, sender, text or "")
                messages.append(self._message_rows("text", agents[sent], target[sent], need,
                                                   np.full(int(sent.sum()), float(step)),
                                                   content=texts))
        respond = codes == RESPOND
        if respond.any():
            self._respond(respond, biz, a, ok, refuse, step, messages)
        a["accepted"] = ok
        a["reason"] = reason

        # proposals past their time-to-live lapse
        live = self.prop_step > step - self.config.proposal_ttl
        if not live.all():
            self._keep_proposals(live)
        # new needs, drawn for every customer without one (active or not)
        idle = np.flatnonzero(self.need_id < 0)
        if len(idle):
            u = self.world.rng.uniform("market.need_arrival", step, self.cust_agent[idle])[:, 0]
            rows = self._new_needs(idle[u < self.config.need_rate], step)
            if rows:
                records["market_needs"] = rows
        if self.config.income > 0:
            pay = int(round(self.config.income * 100))
            self.cust_balance += pay
            self.income_paid += pay * len(self.cust_agent)
        if messages:
            records["market_messages"] = {k: np.concatenate([np.asarray(m[k]) for m in messages])
                                          for k in messages[0]}
        self._check_money(step)
        return records

    # -- settlement -------------------------------------------------------------------------------

    def _pay(self, pay: np.ndarray, agents: np.ndarray, cs: np.ndarray, a: dict[str, np.ndarray],
             ok: np.ndarray, refuse, step: int, records: Records,
             messages: list[dict[str, np.ndarray]]) -> None:
        if not pay.any():
            return
        if not len(self.prop_id):
            refuse(pay, "unknown_proposal")
            return
        pid = a["proposal_id"]
        # open proposals are sorted by id; one that has not arrived yet is not known either
        safe = np.minimum(np.searchsorted(self.prop_id, pid), len(self.prop_id) - 1)
        refuse(pay & ((self.prop_id[safe] != pid) | (self.prop_step[safe] >= step)),
               "unknown_proposal")
        refuse(pay & (self.prop_cust[safe] != cs), "not_yours")
        claimed = a["price"]
        refuse(pay & (claimed >= 0) & (claimed != self.prop_price[safe]), "price_mismatch")
        refuse(pay & (self.prop_price[safe] > self.cust_balance[cs]), "insufficient_funds")
        # capacity, first come first served in batch (activation) order
        cand = np.flatnonzero(pay & ok)
        if len(cand) == 0:
            return
        b = self.prop_biz[safe[cand]]
        order = np.argsort(b, kind="stable")
        bo = b[order]
        starts = np.flatnonzero(np.r_[True, bo[1:] != bo[:-1]])
        rank = np.empty(len(cand), dtype=_INT)
        rank[order] = np.arange(len(cand)) - np.repeat(starts, np.diff(np.r_[starts, len(bo)]))
        full = np.zeros(len(ok), dtype=bool)
        full[cand] = rank >= self.capacity[b] - self.sold[b]
        refuse(full, "sold_out")
        done = np.flatnonzero(pay & ok)
        if len(done) == 0:
            return
        p = safe[done]
        c, b, price = cs[done], self.prop_biz[p], self.prop_price[p]
        if len(np.unique(p)) != len(p):
            raise MarketInvariantError(f"step {step}: a proposal would be paid twice")
        self.cust_balance[c] -= price
        np.add.at(self.biz_balance, b, price)
        np.add.at(self.revenue, b, price)
        np.add.at(self.sold, b, 1)
        match = self._match(self.need_feat[c], self.menu_feat[self.prop_row[p]])
        utility = np.floor(self.need_value[c] * match).astype(_INT) - price
        # arrival rank among the proposals the customer had received for this need
        mine = np.flatnonzero((self.prop_step < step) & np.isin(self.prop_cust, c))
        order = np.lexsort((self.prop_id[mine], self.prop_arrival[mine], self.prop_cust[mine]))
        mine = mine[order]
        who = self.prop_cust[mine]
        starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
        sizes = np.diff(np.r_[starts, len(who)])
        place = np.empty(len(self.prop_id), dtype=_INT)
        place[mine] = np.arange(len(mine)) - np.repeat(starts, sizes)
        total = np.zeros(len(self.cust_agent), dtype=_INT)
        total[who[starts]] = sizes
        rank, received = place[p], total[c]
        self.acc["orders"] += len(p)
        self.acc["first"] += int((rank == 0).sum())
        self.acc_inv_k += float(np.sum(1.0 / np.maximum(received, 1)))
        self.manip_revenue += int(price[self.manipulative[b]].sum())
        t = self.need_type[c]
        np.add.at(self.price_count, t, 1)
        np.add.at(self.price_sum, t, price.astype(np.float64))
        np.add.at(self.price_sq, t, price.astype(np.float64) ** 2)
        self.orders_step = len(p)
        self.revenue_step = int(price.sum())
        need = self.need_id[c].copy()
        records["market_orders"] = {
            "need_id": need, "customer_id": agents[done], "business_id": self.biz_agent[b],
            "proposal_id": self.prop_id[p].copy(), "item_id": self.prop_row[p].copy(),
            "price": price.copy(), "utility": utility, "arrival_rank": rank,
            "proposals_received": received}
        messages.append(self._message_rows("payment", agents[done], self.biz_agent[b], need,
                                           np.full(len(p), float(step)),
                                           proposal=self.prop_id[p].copy(),
                                           item=self.prop_row[p].copy(), price=price.copy()))
        self._close(c, utility, met=True)

    def _close(self, cust: np.ndarray, utility: np.ndarray, met: bool) -> None:
        """End customers' needs (met or abandoned); their open proposals and inquiries go."""
        acc = self.acc
        acc["welfare"] += int(utility.sum())
        acc["optimal"] += int(self.need_optimal[cust].sum())
        acc["closed"] += len(cust)
        acc["met" if met else "left"] += len(cust)
        searched = self.need_searched[cust] >= 0
        acc["searched_needs"] += int(searched.sum())
        acc["contacted"] += int(self.need_contacted[cust][searched].sum())
        gone = self.need_id[cust]
        self.need_id[cust] = -1
        self.need_type[cust] = -1
        if len(self.prop_id):
            self._keep_proposals(~np.isin(self.prop_need, gone))
        if len(self.inq_need):
            keep = ~np.isin(self.inq_need, gone)
            self.inq_cust, self.inq_biz, self.inq_need, self.inq_step = (
                self.inq_cust[keep], self.inq_biz[keep], self.inq_need[keep], self.inq_step[keep])

    def _keep_proposals(self, keep: np.ndarray) -> None:
        for name in ("prop_id", "prop_cust", "prop_biz", "prop_row", "prop_need", "prop_price",
                     "prop_step", "prop_arrival"):
            setattr(self, name, getattr(self, name)[keep])

    # -- search and proposals -----------------------------------------------------------------------

    def _search(self, cust: np.ndarray, contacts: np.ndarray, ctx: StepContext
                ) -> dict[str, np.ndarray]:
        """Rank the businesses offering each customer's item; inquire at the first results."""
        cfg = self.config
        k = cfg.results
        want = np.clip(np.where(contacts > 0, contacts, 1), 1, k)
        out_c, out_b = [], []
        for sel, c, rows in self._by_item_type(cust):
            price = self.posted_price(rows).astype(np.float64)
            if cfg.ranking == "random":
                key = ctx.uniform("market.search.random", self.cust_agent[c], len(rows))
            elif cfg.ranking == "rating":
                key = np.broadcast_to(self.rating[self.menu_biz[rows]] * 1e9 - price,
                                      (len(c), len(rows)))
            elif cfg.ranking == "price":
                key = np.broadcast_to(-price, (len(c), len(rows)))
            else:
                match = self._match(self.need_feat[c][:, None], self.menu_feat[rows][None, :])
                key = match * 1e9 - price[None, :]
                if cfg.ranking == "sponsored":
                    key = key + self.sponsored[self.menu_biz[rows]][None, :] * 1e12
            if cfg.ranking == "llm":
                top = self._llm_rank(c, rows, np.argsort(-key, axis=1, kind="stable"), ctx)
            else:
                top = np.argsort(-key, axis=1, kind="stable")[:, :k]
            take = np.arange(top.shape[1])[None, :] < want[sel][:, None]
            out_c.append(np.broadcast_to(c[:, None], top.shape)[take])
            out_b.append(self.menu_biz[rows][top][take])
        ci = np.concatenate(out_c) if out_c else np.zeros(0, dtype=_INT)
        bi = np.concatenate(out_b) if out_b else np.zeros(0, dtype=_INT)
        self.need_searched[cust] = ctx.step
        np.add.at(self.need_contacted, ci, 1)
        np.add.at(self.inquired, bi, 1)
        need = self.need_id[ci]
        self.inq_cust = np.concatenate([self.inq_cust, ci])
        self.inq_biz = np.concatenate([self.inq_biz, bi])
        self.inq_need = np.concatenate([self.inq_need, need])
        self.inq_step = np.concatenate([self.inq_step, np.full(len(ci), ctx.step, dtype=_INT)])
        return self._message_rows("inquiry", self.cust_agent[ci], self.biz_agent[bi], need,
                                  np.full(len(ci), float(ctx.step)))

    def _llm_rank(self, cust: np.ndarray, rows: np.ndarray, lexical: np.ndarray,
                  ctx: StepContext) -> np.ndarray:
        """The first k of each customer's ranking by the model: it orders the best
        ``llm_candidates`` lexical results; unknown or repeated ids are dropped and the
        candidates it leaves out follow in lexical order. A failed or invalid answer falls
        back to the lexical ranking (counted: ``search.llm_fallbacks``)."""
        from .decisions import ranking_question

        cfg = self.config
        k = min(cfg.results, lexical.shape[1])
        cand = lexical[:, :cfg.llm_candidates]
        questions, schemas = [], []
        for i, c in enumerate(cust.tolist()):
            messages, schema = ranking_question(self, c, rows[cand[i]])
            questions.append(messages)
            schemas.append(schema)
        assert self.world.llm is not None
        answers = self.world.llm.ask(questions, _RANKING, keys=self.cust_agent[cust].tolist(),
                                     purpose="market.search", step=ctx.step, schemas=schemas)
        out = lexical[:, :k].copy()
        for i, answer in enumerate(answers):
            biz_of = self.biz_agent[self.menu_biz[rows[cand[i]]]].tolist()
            picked: list[int] = []
            for b in (answer.ranking if answer is not None else []):
                if b in biz_of and biz_of.index(b) not in picked:
                    picked.append(biz_of.index(b))
            if not picked:
                self.llm_fallbacks += 1
                continue
            rest = [j for j in range(cand.shape[1]) if j not in picked]
            out[i] = cand[i][(picked + rest)[:k]]
        return out

    def _respond(self, respond: np.ndarray, biz: np.ndarray, a: dict[str, np.ndarray],
                 ok: np.ndarray, refuse, step: int,
                 messages: list[dict[str, np.ndarray]]) -> None:
        """Businesses answer every pending inquiry with a proposal at their posted price."""
        rows = np.flatnonzero(respond & ok)
        markup = a["markup"][rows]
        b = biz[rows]
        given = np.isfinite(markup)
        self.markup[b[given]] = np.clip(markup[given], -0.99, 10.0)
        self.answered[b[given]] = True
        answering = np.zeros(len(self.biz_agent), dtype=bool)
        answering[b] = True
        pending = np.bincount(self.inq_biz, minlength=len(self.biz_agent))
        nothing = np.zeros(len(ok), dtype=bool)
        nothing[rows] = pending[b] == 0
        refuse(nothing, "nothing_to_answer")
        take = answering[self.inq_biz] if len(self.inq_biz) else np.zeros(0, dtype=bool)
        if not take.any():
            return
        ci, bi, need = self.inq_cust[take], self.inq_biz[take], self.inq_need[take]
        row = self.row_of[bi, self.need_type[ci]]
        price = self.posted_price(row)
        ids = np.arange(self.next_proposal, self.next_proposal + len(ci), dtype=_INT)
        self.next_proposal += len(ci)
        arrival = step + self.latency[bi]
        self.prop_id = np.concatenate([self.prop_id, ids])
        self.prop_cust = np.concatenate([self.prop_cust, ci])
        self.prop_biz = np.concatenate([self.prop_biz, bi])
        self.prop_row = np.concatenate([self.prop_row, row])
        self.prop_need = np.concatenate([self.prop_need, need])
        self.prop_price = np.concatenate([self.prop_price, price])
        self.prop_step = np.concatenate([self.prop_step, np.full(len(ci), step, dtype=_INT)])
        self.prop_arrival = np.concatenate([self.prop_arrival, arrival])
        keep = ~take
        self.inq_cust, self.inq_biz, self.inq_need, self.inq_step = (
            self.inq_cust[keep], self.inq_biz[keep], self.inq_need[keep], self.inq_step[keep])
        messages.append(self._message_rows("proposal", self.biz_agent[bi], self.cust_agent[ci],
                                           need, arrival, proposal=ids, item=row, price=price))

    def _message_rows(self, kind: str, sender: np.ndarray, receiver: np.ndarray,
                      need: np.ndarray, arrival: np.ndarray, *, proposal: np.ndarray | None = None,
                      item: np.ndarray | None = None, price: np.ndarray | None = None,
                      content: list[str | None] | None = None) -> dict[str, np.ndarray]:
        m = len(sender)
        minus = np.full(m, -1, dtype=_INT)
        texts = np.empty(m, dtype=object)
        if content is not None:
            texts[:] = content
        return {"kind": np.full(m, kind, dtype=object), "sender_id": np.asarray(sender, _INT),
                "receiver_id": np.asarray(receiver, _INT), "need_id": np.asarray(need, _INT),
                "proposal_id": minus if proposal is None else proposal,
                "item_id": minus.copy() if item is None else item,
                "price": minus.copy() if price is None else price,
                "arrival": np.asarray(arrival, np.float64), "content": texts}

    def _deliver(self, receiver: int, sender: int, text: str) -> None:
        if self.config.inbox_size == 0:
            return
        box = self.inboxes.setdefault(receiver, deque(maxlen=self.config.inbox_size))
        box.append((sender, text))

    def inbox(self, agent: int) -> list[dict[str, Any]]:
        """The latest text messages ``agent`` received, oldest first."""
        return [{"sender": s, "content": t} for s, t in self.inboxes.get(agent, ())]

    def _check_money(self, step: int) -> None:
        total = int(self.cust_balance.sum()) + int(self.biz_balance.sum())
        expected = self.money_start + self.income_paid
        if total != expected:
            raise MarketInvariantError(
                f"step {step}: money is not conserved: balances add up to {total} cents, "
                f"expected {expected} (start {self.money_start} + income {self.income_paid})")
        if (self.cust_balance < 0).any():
            raise MarketInvariantError(f"step {step}: a customer's balance went negative")

    # -- measures -----------------------------------------------------------------------------------

    def metrics(self, actions: ActionBatch, ctx: StepContext) -> dict[str, float]:
        """Action counts, refusals, orders, welfare against the full-information optimum,
        first-proposal bias, search breadth, concentration, inequality, price dispersion."""
        counts = np.bincount(actions.action.astype(np.int64), minlength=len(ACTIONS))
        out: dict[str, float] = {f"actions.{name}": float(c) for name, c in zip(ACTIONS, counts,
                                                                             strict=True)}
        out.update({f"rejected.{k}": float(v) for k, v in self.rejected.items()})
        acc = self.acc
        nan = float("nan")
        orders = acc["orders"]
        out.update({
            "orders": float(self.orders_step),
            "revenue": self.revenue_step / 100.0,
            "orders_total": float(orders),
            "needs_open": float((self.need_id >= 0).sum()),
            "needs_met": float(acc["met"]),
            "needs_abandoned": float(acc["left"]),
            "proposals_open": float(len(self.prop_id)),
            "welfare": acc["welfare"] / 100.0,
            "welfare_optimal": acc["optimal"] / 100.0,
            "welfare_ratio": acc["welfare"] / acc["optimal"] if acc["optimal"] > 0 else nan,
            "first_proposal_bias": ((acc["first"] - self.acc_inv_k) / orders if orders
                                    else nan),
            "search_breadth": (acc["contacted"] / acc["searched_needs"]
                               if acc["searched_needs"] else nan),
            "hhi": hhi(self.revenue),
            "gini_revenue": gini(self.revenue),
            "price_dispersion": coefficient_of_variation(self.price_count, self.price_sum,
                                                         self.price_sq),
            "manipulative_revenue_share": (self.manip_revenue / int(self.revenue.sum())
                                           if self.revenue.sum() > 0 else nan),
            "mean_markup": float(self.markup.mean()),
            "search.llm_fallbacks": float(self.llm_fallbacks),
            "money": (int(self.cust_balance.sum()) + int(self.biz_balance.sum())) / 100.0,
        })
        return out

    # -- language-model agents ------------------------------------------------------------------

    def decision_model(self) -> type[BaseModel]:
        """One answer of a language-model customer or business."""
        return decision_model()

    def prompt_context(self, obs: MarketObservation  # type: ignore[override]
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Template variables: the rules, and each agent's need and proposals or menu."""
        return prompt_context(self, obs)

    def decisions_to_actions(self, obs: MarketObservation,  # type: ignore[override]
                             decisions: list[BaseModel | None], fallback: str) -> ActionBatch:
        """Validated answers as actions; None entries take ``fallback``."""
        return decisions_to_actions(obs, decisions, fallback)

    def memory_query(self, context: dict[str, Any]) -> str:
        """Memories are retrieved for the current need or the menu."""
        return memory_query(context)

    def memories(self, obs: MarketObservation, contexts: list[dict[str, Any]],  # type: ignore[override]
                 actions: ActionBatch) -> list[tuple[int, str, str, float]]:
        """LLM agents remember what they chose."""
        return memories(obs, contexts, actions)

    def agent_state(self) -> dict[str, np.ndarray]:
        """Each agent's balance (customers and businesses), in currency units."""
        bal = np.zeros(self.world.n_agents)
        bal[self.cust_agent] = self.cust_balance / 100.0
        bal[self.biz_agent] = self.biz_balance / 100.0
        return {"balance": bal}

    # -- checkpoints --------------------------------------------------------------------------------

    _STATE = ("markup", "answered", "biz_balance", "revenue", "sold", "sold_last", "inquired",
              "inquired_last", "cust_balance", "need_id", "need_type", "need_feat",
              "need_budget", "need_value", "need_optimal", "need_searched", "need_contacted",
              "inq_cust", "inq_biz", "inq_need", "inq_step", "prop_id", "prop_cust", "prop_biz",
              "prop_row", "prop_need", "prop_price", "prop_step", "prop_arrival", "price_count",
              "price_sum", "price_sq")
    _COUNTERS = ("n_needs", "next_proposal", "income_paid", "manip_revenue", "money_start",
                 "llm_fallbacks")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Balances, needs, inquiries, open proposals, markups and the running totals."""
        state = {name: getattr(self, name) for name in self._STATE}
        state["counters"] = np.array([getattr(self, c) for c in self._COUNTERS], dtype=_INT)
        state["acc"] = np.array([self.acc[k] for k in sorted(self.acc)], dtype=_INT)
        state["acc_inv_k"] = np.array([self.acc_inv_k])
        items = [(r, s_, t) for r, box in sorted(self.inboxes.items()) for s_, t in box]
        state["inbox_receiver"] = np.array([i[0] for i in items], dtype=_INT)
        state["inbox_sender"] = np.array([i[1] for i in items], dtype=_INT)
        state["inbox_ends"], state["inbox_bytes"] = pack_strings(i[2] for i in items)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned."""
        for name in self._STATE:
            setattr(self, name, state[name].copy())
        for name, value in zip(self._COUNTERS, state["counters"].tolist(), strict=True):
            setattr(self, name, int(value))
        self.acc = dict(zip(sorted(self.acc), state["acc"].tolist(), strict=True))
        self.acc_inv_k = float(state["acc_inv_k"][0])
        self.inboxes = {}
        texts = unpack_strings(state["inbox_ends"], state["inbox_bytes"])
        for r, s_, text in zip(state["inbox_receiver"].tolist(), state["inbox_sender"].tolist(),
                               texts, strict=True):
            self._deliver(r, s_, text)
