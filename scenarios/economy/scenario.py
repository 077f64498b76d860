"""The macro-economy scenario: households work and consume, firms produce and set prices and
wages, a central bank follows a Taylor rule, and the government taxes and redistributes.

Core objects:
    EconomyScenario: the ``economy`` scenario (state, observation, one step of the markets,
        money accounting, metrics, the Phillips curve and Okun's law).
    EconomyObservation: what each active household knows when it decides.

One step (a month with ``step_duration: 30d``), in ``apply``:

1. decisions: active households set their labour choice and consumption share (the others keep
   theirs);
2. shocks: the AR(1) productivity and demand shocks move;
3. labour market: households that want to work apply (incumbents to their employer, job seekers
   to a firm drawn by wage); firms hire up to their labour demand and pay wages;
4. production: hired labour x skill x productivity, added to inventories;
5. goods market: households spend their consumption share of their money (times the demand
   shock); demand is shared among firms by price; firms sell what they hold;
6. prices and wages move with their market's imbalance; firms update their demand expectation;
7. firms pay dividends from cash above their buffer; households earn interest on their money
   (new money); income is taxed and the government redistributes lump-sum;
8. the central bank sets next step's rate; the money identity is checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from populace.simulator.actions import ActionBatch
from populace.simulator.policy import Policy
from populace.simulator.scenario import Observation, Records, Scenario, StepContext, World

from . import tables as _tables  # noqa: F401  (declares the tables on the shared Base)
from .actions import ACTIONS, DO_NOTHING, WORK
from .config import EconomyConfig, HouseholdRuleParams
from .decisions import (
    HouseholdDecision,
    decisions_to_actions,
    memories,
    memory_query,
    prompt_context,
)
from .mechanics import (
    AccountingError,
    adjust_to_imbalance,
    choose_firm,
    correlation,
    gini,
    hire,
    income_tax,
    ols_slope,
    taylor_rate,
)
from .rules import HouseholdRulePolicy
from .tables import TABLES

log = logging.getLogger("populace.economy")

YEAR = timedelta(days=365.25)
TINY = 1e-12
# per-step aggregates kept for the whole run (what observations, the bank and finish() need)
HISTORY = ("price_level", "wage", "unemployment", "real_gdp", "nominal_gdp", "interest_rate")
# the accounting tolerance, relative to the money in the economy
MONEY_TOLERANCE = 1e-9


@dataclass
class EconomyObservation(Observation):
    """What each active household knows: its own situation and the economy's last figures."""

    skill: np.ndarray  # (n,) efficiency units of labour it supplies when working
    money: np.ndarray  # (n,) its money
    employed: np.ndarray  # (n,) bool: it worked last step
    wage_offer: np.ndarray  # (n,) wage income per step if it works (employer's or mean wage)
    last_income: np.ndarray  # (n,) its income of the last step after tax
    last_consume: np.ndarray  # (n,) its current consumption share
    last_work: np.ndarray  # (n,) bool: its current labour choice
    draw: np.ndarray  # (n,) a uniform that turns a stated propensity into a choice
    price_level: float  # price of goods (demand-weighted mean of firms' prices)
    mean_wage: float  # mean posted wage per efficiency unit
    interest_rate: float  # annual rate paid on money this step
    inflation: float  # annualised inflation over the central bank's window
    unemployment: float  # last step's unemployment rate
    tax_rate: float  # the top marginal income tax rate
    step: int

    def months_of_wealth(self) -> np.ndarray:
        """Money over the wage income of one step (how long savings last without work)."""
        return self.money / np.maximum(self.wage_offer, TINY)

    def real_wage(self) -> np.ndarray:
        """Wage per efficiency unit in goods: what an hour of work buys."""
        return self.wage_offer / np.maximum(self.skill * self.price_level, TINY)


class EconomyScenario(Scenario):
    """A macro-economy of households (agents), firms, a central bank and a government."""

    name: ClassVar[str] = "economy"
    config_model = EconomyConfig
    rule_params_model = HouseholdRuleParams
    actions = ACTIONS
    tables = TABLES
    action_table = "economy_actions"
    trace_columns = ("propensity", "consume_share", "firm", "hired", "spent")
    prompt_dir = Path(__file__).parent / "prompts"

    def __init__(self, config: EconomyConfig, world: World) -> None:  # type: ignore[override]
        super().__init__(config, world)
        self.config: EconomyConfig = config
        self.n = world.n_agents
        self.k = config.firms
        self.periods_per_year = YEAR / world.clock.step_duration
        self._profiles: list[dict[str, Any]] | None = None
        self.flows: dict[str, float] = {}
        self.decision_counts = np.zeros(len(ACTIONS), dtype=np.int64)
        self.clipped = 0

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> Records:
        """Households, firms and the bank at step 0 (deterministic: also run before a resume)."""
        cfg, n, k = self.config, self.n, self.k
        attrs = self.world.population.attributes
        rng = self.world.rng.get("economy.setup")
        if cfg.skill_attribute in attrs:
            skill = self._attribute(cfg.skill_attribute, "a skill > 0")
            if (skill <= 0).any():
                raise ValueError(f"population attribute {cfg.skill_attribute!r} must be > 0 "
                                 f"for every household (min {skill.min():g})")
        else:
            sigma = cfg.skill_sigma
            skill = rng.lognormal(-0.5 * sigma**2, sigma, n)
        if cfg.wealth_attribute in attrs:
            money = self._attribute(cfg.wealth_attribute, "initial money >= 0")
            if (money < 0).any():
                raise ValueError(f"population attribute {cfg.wealth_attribute!r} must be >= 0 "
                                 f"for every household (min {money.min():g})")
        else:
            money = np.full(n, cfg.initial_wealth)
        self.skill = skill.astype(np.float64)
        self.money = money.astype(np.float64).copy()
        # everyone starts willing to work and employed at a random firm
        self.employer = rng.integers(0, k, n).astype(np.int64)
        self.work = np.ones(n, dtype=bool)
        self.consume = np.full(n, cfg.initial_consume_share)
        self.income = np.zeros(n)
        eff = np.bincount(self.employer, weights=self.skill, minlength=k)
        output = cfg.productivity * eff
        self.wage = np.full(k, cfg.initial_wage)
        if cfg.initial_price is not None:
            price = cfg.initial_price
        else:
            price = cfg.initial_consume_share * self.money.sum() / max(output.sum(), TINY)
        self.price = np.full(k, float(price) if price > 0 else cfg.initial_wage)
        self.expected = output.copy()
        self.inventory = cfg.firm.inventory_target * output
        self.firm_money = (1.0 + cfg.firm.cash_buffer) * self.wage * eff
        self.workers = np.bincount(self.employer, minlength=k).astype(np.int64)
        self.labour_demand = eff.copy()
        self.output = np.zeros(k)
        self.demand = np.zeros(k)
        self.sales = np.zeros(k)
        self.government = 0.0
        self.created = 0.0
        self.initial_money = float(self.money.sum() + self.firm_money.sum())
        self.rate = cfg.central_bank.initial_rate
        self.shock = np.zeros(2)  # productivity, demand (logs)
        self.hist = {name: [] for name in HISTORY}
        self._record_history(real_gdp=float("nan"), nominal_gdp=float("nan"), unemployment=0.0)
        self.flows = dict.fromkeys(("consumption", "wages_paid", "dividends", "interest_paid",
                                    "tax_revenue", "transfers"), 0.0)
        self.flows["participation"] = 1.0
        self.flows["employed"] = float(n)
        self.decision_counts = np.zeros(len(ACTIONS), dtype=np.int64)
        self.clipped = 0
        self.check_money()
        return self._rows(0)

    def _attribute(self, name: str, what: str) -> np.ndarray:
        values = self.world.population.attributes[name]
        try:
            arr = values.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"population attribute {name!r} must be numeric ({what})") from exc
        if not np.isfinite(arr).all():
            raise ValueError(f"population attribute {name!r} has missing values; give every "
                             f"household {what}")
        return arr

    # -- phases ---------------------------------------------------------------------------------

    def observe(self, agents: np.ndarray, ctx: StepContext) -> EconomyObservation:
        """Each household's money, skill, job and wage offer, and the economy's last figures."""
        employer = self.employer[agents]
        employed = employer >= 0
        wage = np.where(employed, self.wage[np.maximum(employer, 0)], self.wage.mean())
        return EconomyObservation(
            agents=agents, skill=self.skill[agents], money=self.money[agents],
            employed=employed, wage_offer=wage * self.skill[agents],
            last_income=self.income[agents], last_consume=self.consume[agents],
            last_work=self.work[agents], draw=ctx.uniform("economy.draw", agents)[:, 0],
            price_level=self.hist["price_level"][-1], mean_wage=float(self.wage.mean()),
            interest_rate=self.rate, inflation=self.trend_inflation(),
            unemployment=self.hist["unemployment"][-1],
            tax_rate=max(b.rate for b in self.config.tax.brackets), step=ctx.step)

    def rule_policy(self, params: HouseholdRuleParams) -> Policy:  # type: ignore[override]
        """The vectorised rule-based household."""
        return HouseholdRulePolicy(params)

    def apply(self, actions: ActionBatch, ctx: StepContext) -> Records:
        """One month of the economy (see the module docstring for the order)."""
        cfg, firm = self.config, self.config.firm
        self._decide(actions)

        # shocks
        eps = ctx.random("economy.shocks").standard_normal(2)
        s = cfg.shocks
        self.shock = np.array([
            s.productivity.persistence * self.shock[0] + s.productivity.sd * eps[0],
            s.demand.persistence * self.shock[1] + s.demand.sd * eps[1]])
        productivity = cfg.productivity * float(np.exp(self.shock[0]))

        # labour market: firms want the labour that makes up expected demand and the inventory
        # target, as far as their cash pays the wages
        stock = self.inventory * (1.0 - firm.inventory_depreciation)
        target = np.maximum(self.expected + firm.inventory_adjustment * (
            firm.inventory_target * self.expected - stock), 0.0)
        wanted = target / productivity
        affordable = np.maximum(self.firm_money, 0.0) / self.wage
        self.labour_demand = np.minimum(wanted, affordable)
        applicants = np.flatnonzero(self.work)
        incumbent = self.employer[applicants] >= 0
        applied = self.employer[applicants].copy()
        seekers = applicants[~incumbent]
        applied[~incumbent] = choose_firm(self.wage, firm.wage_attraction,
                                          ctx.uniform("economy.search", seekers)[:, 0])
        priority = np.where(incumbent, 0.0, 1.0) + ctx.uniform("economy.queue", applicants)[:, 0]
        eff = self.skill[applicants]
        hired = hire(applied, priority, eff, self.labour_demand)
        self.employer[:] = -1
        self.employer[applicants[hired]] = applied[hired]
        labour = np.bincount(applied[hired], weights=eff[hired], minlength=self.k)
        supply = np.bincount(applied, weights=eff, minlength=self.k)
        self.workers = np.bincount(applied[hired], minlength=self.k).astype(np.int64)
        wage_income = np.zeros(self.n)
        wage_income[applicants[hired]] = self.wage[applied[hired]] * eff[hired]
        wage_bill = self.wage * labour
        self.firm_money -= wage_bill
        self.money += wage_income

        # production
        self.output = productivity * labour
        self.inventory = self.inventory * (1.0 - firm.inventory_depreciation) + self.output
        available = self.inventory.copy()

        # goods market: demand shared among firms by price; the same fill ratio for everyone
        desired = np.minimum(self.consume * self.money * float(np.exp(self.shock[1])),
                             self.money)
        spending = desired.sum()
        shares = self._demand_shares(self.price)
        self.demand = shares * spending / self.price
        self.sales = np.minimum(self.demand, self.inventory)
        fill = np.divide(self.sales, self.demand, out=np.ones(self.k), where=self.demand > 0)
        revenue = shares * fill * spending
        spent = desired * float(np.dot(shares, fill))
        self.money -= spent
        self.firm_money += revenue
        self.inventory -= self.sales
        real_gdp = float(self.output.sum())
        nominal_gdp = float(np.dot(self.price, self.output))

        # prices and wages follow their market's imbalance; expectations adapt
        for_sale = np.maximum(available - firm.inventory_target * self.expected, 0.0)
        self.price = adjust_to_imbalance(self.price, self.demand, for_sale,
                                         firm.price_adjustment)
        self.wage = adjust_to_imbalance(self.wage, self.labour_demand, supply,
                                        firm.wage_adjustment)
        unit_cost = self.wage / productivity
        self.price = np.clip(self.price, (1.0 + firm.min_markup) * unit_cost,
                             (1.0 + firm.max_markup) * unit_cost)
        self.expected += firm.expectation_weight * (self.demand - self.expected)

        # dividends from cash above the buffer, to households in proportion to their wealth
        buffer = firm.cash_buffer * self.wage * self.expected / productivity
        dividends = firm.dividend_rate * np.maximum(self.firm_money - buffer, 0.0)
        self.firm_money -= dividends
        held = self.money.sum()
        dividend_income = (dividends.sum() * self.money / held if held > 0
                           else np.full(self.n, dividends.sum() / self.n))
        self.money += dividend_income

        # interest on money: new money, created by the central bank
        per_step = (1.0 + self.rate) ** (1.0 / self.periods_per_year) - 1.0
        interest = self.money * per_step
        self.money += interest
        self.created += float(interest.sum())

        # income tax, and lump-sum redistribution of the government's balance
        income = wage_income + dividend_income + interest
        tax = income_tax(income, cfg.tax.brackets)
        self.money -= tax
        self.government += float(tax.sum())
        transfer = cfg.tax.redistribution * self.government
        self.government -= transfer
        self.money += transfer / self.n
        self.income = income - tax + transfer / self.n

        # statistics and the central bank
        n_applicants = len(applicants)
        unemployment = float((~hired).sum() / n_applicants) if n_applicants else 0.0
        self.flows = {"consumption": float(spent.sum()), "wages_paid": float(wage_bill.sum()),
                      "dividends": float(dividends.sum()), "interest_paid": float(interest.sum()),
                      "tax_revenue": float(tax.sum()), "transfers": float(transfer),
                      "participation": n_applicants / self.n, "employed": float(hired.sum())}
        self._record_history(real_gdp=real_gdp, nominal_gdp=nominal_gdp,
                             unemployment=unemployment)
        self.rate = taylor_rate(cfg.central_bank, self.trend_inflation(), unemployment,
                                self.rate)
        self.hist["interest_rate"][-1] = self.rate
        if cfg.check_money:
            self.check_money()

        # outcome columns of the action trace
        a = actions.args
        where = np.full(self.n, -1, dtype=np.int64)
        where[applicants] = applied
        a["firm"] = where[actions.agent]
        a["hired"] = self.employer[actions.agent] >= 0
        a["spent"] = spent[actions.agent]
        return self._rows(ctx.step)

    def _decide(self, actions: ActionBatch) -> None:
        """Store the batch's choices; do_nothing keeps the previous ones."""
        codes, agents = actions.action, actions.agent
        self.decision_counts = np.bincount(codes.astype(np.int64), minlength=len(ACTIONS))
        decided = codes != DO_NOTHING
        who = agents[decided]
        self.work[who] = codes[decided] == WORK
        share = actions.args["consume_share"][decided]
        bad = ~np.isfinite(share) | (share < 0) | (share > 1)
        self.clipped = int(bad.sum())
        share = np.where(np.isfinite(share), np.clip(share, 0.0, 1.0), self.consume[who])
        self.consume[who] = share

    def _demand_shares(self, price: np.ndarray) -> np.ndarray:
        weight = np.power(price / price.min(), -self.config.firm.demand_elasticity)
        return weight / weight.sum()

    def _record_history(self, *, real_gdp: float, nominal_gdp: float,
                        unemployment: float) -> None:
        h = self.hist
        h["price_level"].append(float(np.dot(self._demand_shares(self.price), self.price)))
        h["wage"].append(float(self.wage.mean()))
        h["unemployment"].append(unemployment)
        h["real_gdp"].append(real_gdp)
        h["nominal_gdp"].append(nominal_gdp)
        h["interest_rate"].append(self.rate)

    # -- money -----------------------------------------------------------------------------------

    def money_residual(self) -> float:
        """Money held minus money accounted for (initial plus created), relative to the latter."""
        held = self.money.sum() + self.firm_money.sum() + self.government
        expected = self.initial_money + self.created
        return float((held - expected) / max(abs(expected), 1.0))

    def check_money(self) -> None:
        """Raise ``AccountingError`` unless households + firms + government = initial + created."""
        residual = self.money_residual()
        lowest = float(self.money.min()) if self.n else 0.0
        if not abs(residual) <= MONEY_TOLERANCE or lowest < -1e-6:
            h, f, g = float(self.money.sum()), float(self.firm_money.sum()), self.government
            raise AccountingError(
                f"money is not conserved: households {h:.6f} + firms {f:.6f} + government "
                f"{g:.6f} = {h + f + g:.6f}, but initial money {self.initial_money:.6f} + created "
                f"{self.created:.6f} = {self.initial_money + self.created:.6f} (relative error "
                f"{residual:.3g}; lowest household balance {lowest:.6f})")

    # -- measures --------------------------------------------------------------------------------

    def trend_inflation(self) -> float:
        """Annualised inflation over the central bank's window (NaN at step 0)."""
        prices = self.hist["price_level"]
        window = min(self.config.central_bank.inflation_window, len(prices) - 1)
        if window < 1:
            return float("nan")
        try:
            return float((prices[-1] / prices[-1 - window]) ** (self.periods_per_year / window)
                         - 1.0)
        except OverflowError:  # prices that explode (degenerate settings): the bank's ceiling
            return float("inf")

    def series(self) -> dict[str, np.ndarray]:
        """The per-step histories (index = step) and the growth rates derived from them."""
        h = {name: np.asarray(values, dtype=np.float64) for name, values in self.hist.items()}

        def growth(x: np.ndarray) -> np.ndarray:
            out = np.full(len(x), np.nan)
            prev, cur = x[:-1], x[1:]
            ok = np.isfinite(prev) & (prev > 0)
            out[1:][ok] = cur[ok] / prev[ok] - 1.0
            return out

        h["inflation"] = growth(h["price_level"])
        h["wage_inflation"] = growth(h["wage"])
        h["real_gdp_growth"] = growth(h["real_gdp"])
        h["unemployment_change"] = np.r_[np.nan, np.diff(h["unemployment"])]
        return h

    def metrics(self, actions: ActionBatch, ctx: StepContext) -> dict[str, float]:
        """Inflation, unemployment, GDP, wages, the interest rate, wealth and its Gini, taxes."""
        h = {name: values[-1] for name, values in self.series().items()}
        f = self.flows
        ppy = self.periods_per_year
        out = {
            "price_level": h["price_level"],
            "inflation": h["inflation"],
            "inflation_annualised": (1.0 + h["inflation"]) ** ppy - 1.0,
            "inflation_trend": self.trend_inflation(),
            "unemployment": h["unemployment"],
            "participation": f["participation"],
            "employed": f["employed"],
            "nominal_gdp": h["nominal_gdp"],
            "real_gdp": h["real_gdp"],
            "real_gdp_growth": h["real_gdp_growth"],
            "wage": h["wage"],
            "wage_inflation": h["wage_inflation"],
            "real_wage": h["wage"] / h["price_level"],
            "interest_rate": self.rate,
            "mean_wealth": float(self.money.mean()) if self.n else float("nan"),
            "gini_wealth": gini(self.money),
            "consumption": f["consumption"],
            "tax_revenue": f["tax_revenue"],
            "transfers": f["transfers"],
            "dividends": f["dividends"],
            "interest_paid": f["interest_paid"],
            "money_created": self.created,
            "money_total": float(self.money.sum() + self.firm_money.sum() + self.government),
            "money_residual": self.money_residual(),
            "inventory": float(self.inventory.sum()),
            "productivity_shock": float(self.shock[0]),
            "demand_shock": float(self.shock[1]),
            "active_households": float(len(actions)),
            "decisions_clipped": float(self.clipped),
        }
        out.update({f"actions.{name}": float(c) for name, c in zip(
            ACTIONS, self.decision_counts if len(actions) else np.zeros(len(ACTIONS)),
            strict=True)})
        return out

    def laws(self) -> dict[str, tuple[float, float, int]]:
        """Phillips curve and Okun's law over the steps after the burn-in: (corr, slope, n)."""
        h = self.series()
        keep = np.arange(len(h["unemployment"])) > self.config.burn_in
        pairs = {"phillips": (h["unemployment"], h["wage_inflation"]),
                 "okun": (h["unemployment_change"], h["real_gdp_growth"])}
        out = {}
        for law, (x, y) in pairs.items():
            x, y = x[keep], y[keep]
            n = int((np.isfinite(x) & np.isfinite(y)).sum())
            out[law] = (correlation(x, y), ols_slope(x, y), n)
        return out

    def finish(self, ctx: StepContext) -> Records:
        """The Phillips curve and Okun's law of the run, one row each."""
        laws = self.laws()
        names = {"phillips": ("unemployment", "wage_inflation"),
                 "okun": ("unemployment_change", "real_gdp_growth")}
        rows = [(law, *names[law], *laws[law]) for law in ("phillips", "okun")]
        return {"economy_laws": {
            "law": [r[0] for r in rows], "x": [r[1] for r in rows], "y": [r[2] for r in rows],
            "correlation": [None if r[3] != r[3] else r[3] for r in rows],
            "slope": [None if r[4] != r[4] else r[4] for r in rows],
            "n": [r[5] for r in rows],
            "first_step": [self.config.burn_in + 1] * len(rows)}}

    def _rows(self, step: int) -> Records:
        h = {name: values[-1] for name, values in self.hist.items()}
        f = self.flows
        state = {
            "price_level": [h["price_level"]], "wage": [h["wage"]],
            "interest_rate": [self.rate], "unemployment": [h["unemployment"]],
            "participation": [f["participation"]], "employed": [int(f["employed"])],
            "real_gdp": [h["real_gdp"]], "nominal_gdp": [h["nominal_gdp"]],
            "consumption": [f["consumption"]], "wages_paid": [f["wages_paid"]],
            "dividends": [f["dividends"]], "interest_paid": [f["interest_paid"]],
            "tax_revenue": [f["tax_revenue"]], "transfers": [f["transfers"]],
            "inventory": [float(self.inventory.sum())],
            "household_money": [float(self.money.sum())],
            "firm_money": [float(self.firm_money.sum())],
            "government_money": [self.government], "money_created": [self.created],
            "productivity_shock": [float(self.shock[0])], "demand_shock": [float(self.shock[1])],
        }
        state = {k: [None if isinstance(v[0], float) and v[0] != v[0] else v[0]]
                 for k, v in state.items()}
        firms = {"firm_id": np.arange(self.k, dtype=np.int64), "price": self.price.copy(),
                 "wage": self.wage.copy(), "workers": self.workers.copy(),
                 "labour_demand": self.labour_demand.copy(), "output": self.output.copy(),
                 "demand": self.demand.copy(), "sales": self.sales.copy(),
                 "inventory": self.inventory.copy(), "money": self.firm_money.copy()}
        return {"economy_state": {"step": [step], **state}, "economy_firms": firms}

    # -- language-model agents ------------------------------------------------------------------

    def decision_model(self) -> type[BaseModel]:
        """One answer of a language-model household: a work propensity and a consumption share."""
        return HouseholdDecision

    def prompt_context(self, obs: EconomyObservation  # type: ignore[override]
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Template variables: the economy's rules, and each household's situation."""
        return prompt_context(self, obs)

    def decisions_to_actions(self, obs: EconomyObservation,  # type: ignore[override]
                             decisions: list[BaseModel | None], fallback: str) -> ActionBatch:
        """Validated answers as actions; None entries take ``fallback``."""
        return decisions_to_actions(obs, decisions, fallback)

    def memory_query(self, context: dict[str, Any]) -> str:
        """Memories are retrieved for the household's job, prices and savings."""
        return memory_query(context)

    def memories(self, obs: EconomyObservation, contexts: list[dict[str, Any]],  # type: ignore[override]
                 actions: ActionBatch) -> list[tuple[int, str, str, float]]:
        """LLM households remember the month's prices and wages and what they chose."""
        return memories(obs, contexts, actions)

    def profiles(self) -> list[dict[str, Any]]:
        """Each household's attributes as a dict (built once, on first use by a prompt)."""
        if self._profiles is None:
            self._profiles = self.world.population.profiles(
                {self.config.skill_attribute, self.config.wealth_attribute})
        return self._profiles

    # -- snapshots and checkpoints ----------------------------------------------------------------

    def agent_state(self) -> dict[str, np.ndarray]:
        """Each household's money, employer (-1: none), consumption share and labour choice."""
        return {"money": self.money.copy(), "employer": self.employer.astype(np.float64),
                "consume_share": self.consume.copy(), "work": self.work.astype(np.float64)}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Households, firms, the bank, the government, shocks and the per-step histories."""
        state = {
            "money": self.money, "employer": self.employer, "work": self.work,
            "consume": self.consume, "income": self.income,
            "price": self.price, "wage": self.wage, "expected": self.expected,
            "inventory": self.inventory, "firm_money": self.firm_money,
            "workers": self.workers, "labour_demand": self.labour_demand,
            "output": self.output, "demand": self.demand, "sales": self.sales,
            "shock": self.shock,
            "scalars": np.array([self.government, self.created, self.initial_money, self.rate]),
        }
        state.update({f"hist.{name}": np.asarray(v, dtype=np.float64)
                      for name, v in self.hist.items()})
        return {k: np.array(v, copy=True) for k, v in state.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned."""
        for name in ("money", "consume", "income", "price", "wage", "expected", "inventory",
                     "firm_money", "labour_demand", "output", "demand", "sales", "shock"):
            setattr(self, name, state[name].astype(np.float64).copy())
        self.employer = state["employer"].astype(np.int64).copy()
        self.workers = state["workers"].astype(np.int64).copy()
        self.work = state["work"].astype(bool).copy()
        self.government, self.created, self.initial_money, self.rate = (
            float(x) for x in state["scalars"])
        self.hist = {name: state[f"hist.{name}"].astype(np.float64).tolist() for name in HISTORY}
