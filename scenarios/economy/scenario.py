"""The macro-economy scenario: households work and consume, firms produce and set prices and
wages, a central bank follows a Taylor rule, and the government taxes and redistributes.

Core objects:
    EconomyScenario: the ``economy`` scenario (set-up, observation, one step of the markets,
        money accounting, metrics, the Phillips curve and Okun's law).

One step (a month with ``step_duration: 30d``), in ``apply``, each phase a function of
``phases.py``:

1. decisions: active households set their labour choice and consumption share (the others keep
   theirs);
2. shocks: the AR(1) productivity and demand shocks move;
3. labour market: firms plan the labour they want; households that want to work apply
   (incumbents to their employer, job seekers to a firm drawn by wage); firms hire up to their
   labour demand and pay wages;
4. production: hired labour x skill x productivity, added to inventories;
5. goods market: households spend their consumption share of their money (times the demand
   shock); demand is shared among firms by price; firms sell what they hold;
6. prices and wages move with their market's imbalance; firms update their demand expectation;
7. firms pay dividends from cash above their buffer; households earn interest on their money
   (new money); income is taxed and the government redistributes lump-sum;
8. the central bank sets next step's rate; the money identity is checked.

Steering (docs/scenarios.md, "Steering hooks"): households' ``consume_share`` and ``money``
are variables (a change of money is booked as money created, so the identity holds); a
broadcast is a central-bank announcement, optionally setting the rate; taxes, the Taylor
rule, firms' behaviour, the shocks and productivity can change mid-run (a policy shock);
households join with the money of their wealth attribute (or given), booked as money created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from populace.simulator.actions import ActionBatch
from populace.simulator.arrays import pack_strings
from populace.simulator.scenario import Records, Scenario, StepContext, Variable, World

from . import tables as _tables  # noqa: F401  (declares the tables on the shared Base)
from .actions import ACTIONS, EconomyArgs
from .config import CentralBankAnnouncement, EconomyConfig, EconomyJoin, HouseholdRuleParams
from .decisions import EconomyLLM
from .mechanics import TINY, AccountingError, annualised_inflation, correlation, gini, ols_slope
from .observation import EconomyObservation
from .phases import (
    DecisionTally,
    StepFlows,
    gdp,
    match_jobs,
    move_shocks,
    pay_dividends,
    pay_interest,
    pay_wages,
    plan_labour,
    produce,
    record_decisions,
    record_outcomes,
    sell_goods,
    set_policy_rate,
    set_prices_and_wages,
    tax_and_redistribute,
)
from .rules import HouseholdRulePolicy
from .state import FirmState, HouseholdState, MacroHistory, MacroState, PublicAccounts
from .tables import TABLES

log = logging.getLogger("populace.economy")

YEAR = timedelta(days=365.25)
# the accounting tolerance, relative to the money in the economy
MONEY_TOLERANCE = 1e-9
# central-bank announcements kept for language-model households' prompts
NEWS_KEPT = 3


class BookedColumn(np.ndarray):
    """A view of a household array whose item assignments (``column[ids] = values``) also
    hand the positions and their old and new values to ``book``; arrays derived from it
    (slices, arithmetic) are plain and book nothing."""

    _book: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None

    def __new__(cls, base: np.ndarray,
                book: Callable[[np.ndarray, np.ndarray, np.ndarray], None]) -> BookedColumn:
        """A view of ``base`` whose assignments call ``book(ids, old, new)``."""
        column = base.view(cls)
        column._book = book
        return column

    def __array_finalize__(self, obj: Any) -> None:
        self._book = None

    def __setitem__(self, key: Any, value: Any) -> None:
        book = self._book
        if book is None:
            super().__setitem__(key, value)
            return
        ids = np.atleast_1d(np.arange(len(self), dtype=np.int64)[key])
        plain = self.view(np.ndarray)
        old = plain[ids].copy()
        super().__setitem__(key, value)
        book(ids, old, plain[ids].copy())


class EconomyScenario(Scenario[EconomyConfig, EconomyObservation, HouseholdRuleParams,
                               EconomyArgs]):
    """A macro-economy of households (agents), firms, a central bank and a government."""

    name = "economy"
    headline_metrics = (
        "inflation_annualised", "unemployment", "real_gdp", "interest_rate", "gini_wealth",
    )
    examples = Path(__file__).parent / "examples"
    config_model = EconomyConfig
    rule_params_model = HouseholdRuleParams
    actions = ACTIONS
    args_type = EconomyArgs
    tables = TABLES
    action_table = "economy_actions"
    variables: ClassVar[dict[str, Variable]] = {
        "consume_share": Variable(
            "the share of its money a household spends each step; a household that decides "
            "again (every active rule household does) replaces it, so a change holds for "
            "inactive and do_nothing households and is what language-model households are "
            "told they spent", 0.0, 1.0),
        "money": Variable("a household's money; a change is booked as money created (or "
                          "destroyed) by the central bank, like a helicopter drop or a wealth "
                          "levy, so the money identity holds", 0.0),
    }
    broadcast_model = CentralBankAnnouncement
    join_model = EconomyJoin
    # read from the config at every step (apply, observe) or given to the model adapter again
    # by ``reconfigure``: a policy shock from the step of the event on
    reconfigurable: ClassVar[tuple[str, ...]] = ("tax", "central_bank", "firm", "shocks",
                                                 "productivity")
    state: MacroState

    def __init__(self, config: EconomyConfig, world: World) -> None:
        super().__init__(config, world)
        self.n = world.n_agents
        self.k = config.firms
        self.periods_per_year = YEAR / world.clock.step_duration
        # what the last step did, for its metrics and rows (recomputed by every step, so not
        # part of the saved state); at step 0 everyone works and nothing has flowed yet
        self.flows = StepFlows(consumption=0.0, wages_paid=0.0, dividends=0.0,
                               interest_paid=0.0, tax_revenue=0.0, transfers=0.0,
                               participation=1.0, employed=float(self.n))
        self.tally = DecisionTally(np.zeros(len(ACTIONS), dtype=np.int64), 0)
        self._llm: EconomyLLM | None = None

    # -- set-up ---------------------------------------------------------------------------------

    def setup(self) -> Records:
        """Households, firms and the bank at step 0 (deterministic: also run before a resume)."""
        cfg, k = self.config, self.k
        households = self._households(self.world.population.attributes,
                                      self.world.rng.get("economy.setup"))
        eff = np.bincount(households.employer, weights=households.skill, minlength=k)
        output = cfg.productivity * eff
        wage = np.full(k, cfg.initial_wage)
        if cfg.initial_price is not None:
            price = cfg.initial_price
        else:
            price = cfg.initial_consume_share * households.money.sum() / max(output.sum(), TINY)
        firms = FirmState(
            price=np.full(k, float(price) if price > 0 else cfg.initial_wage), wage=wage,
            expected=output.copy(), inventory=cfg.firm.inventory_target * output,
            money=(1.0 + cfg.firm.cash_buffer) * wage * eff,
            workers=np.bincount(households.employer, minlength=k).astype(np.int64),
            labour_demand=eff.copy(), output=np.zeros(k), demand=np.zeros(k),
            sales=np.zeros(k))
        public = PublicAccounts(
            government=0.0, created=0.0,
            initial_money=float(households.money.sum() + firms.money.sum()),
            rate=cfg.central_bank.initial_rate)
        self.state = MacroState(households=households, firms=firms, public=public,
                                shock=np.zeros(2), history=MacroHistory.empty())
        self.state.history.append(firms, cfg.firm.demand_elasticity, rate=public.rate,
                                  real_gdp=float("nan"), nominal_gdp=float("nan"),
                                  unemployment=0.0)
        self.check_money()
        return self._rows(0)

    def _households(self, attrs: pd.DataFrame, rng: np.random.Generator) -> HouseholdState:
        """Households of the population rows ``attrs``: skill and money from their attributes
        (drawn from ``rng`` / ``initial_wealth`` without them), willing to work and employed
        at a firm drawn from ``rng``, consuming the initial share."""
        cfg, n, k = self.config, len(attrs), self.k
        if cfg.skill_attribute in attrs:
            skill = self._attribute(attrs, cfg.skill_attribute, "a skill > 0")
            if (skill <= 0).any():
                raise ValueError(f"population attribute {cfg.skill_attribute!r} must be > 0 "
                                 f"for every household (min {skill.min():g})")
        else:
            sigma = cfg.skill_sigma
            skill = rng.lognormal(-0.5 * sigma**2, sigma, n)
        if cfg.wealth_attribute in attrs:
            money = self._attribute(attrs, cfg.wealth_attribute, "initial money >= 0")
            if (money < 0).any():
                raise ValueError(f"population attribute {cfg.wealth_attribute!r} must be >= 0 "
                                 f"for every household (min {money.min():g})")
        else:
            money = np.full(n, cfg.initial_wealth)
        return HouseholdState(
            skill=skill.astype(np.float64), money=money.astype(np.float64).copy(),
            employer=rng.integers(0, k, n).astype(np.int64), work=np.ones(n, dtype=bool),
            consume=np.full(n, cfg.initial_consume_share), income=np.zeros(n))

    @staticmethod
    def _attribute(attrs: pd.DataFrame, name: str, what: str) -> np.ndarray:
        try:
            arr = attrs[name].to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"population attribute {name!r} must be numeric ({what})") from exc
        if not np.isfinite(arr).all():
            raise ValueError(f"population attribute {name!r} has missing values; give every "
                             f"household {what}")
        return arr

    # -- phases ---------------------------------------------------------------------------------

    def observe(self, agents: np.ndarray, ctx: StepContext) -> EconomyObservation:
        """Each household's money, skill, job and wage offer, and the economy's last figures."""
        hh, firms, last = self.state.households, self.state.firms, self.state.history.last()
        employer = hh.employer[agents]
        employed = employer >= 0
        wage = np.where(employed, firms.wage[np.maximum(employer, 0)], firms.wage.mean())
        return EconomyObservation(
            agents=agents, skill=hh.skill[agents], money=hh.money[agents],
            employed=employed, wage_offer=wage * hh.skill[agents],
            last_income=hh.income[agents], last_consume=hh.consume[agents],
            last_work=hh.work[agents], draw=ctx.uniform("economy.draw", agents)[:, 0],
            price_level=last["price_level"], mean_wage=float(firms.wage.mean()),
            interest_rate=self.state.public.rate, inflation=self.trend_inflation(),
            unemployment=last["unemployment"],
            tax_rate=max(b.rate for b in self.config.tax.brackets), step=ctx.step,
            news=tuple(self.state.news))

    def rule_policy(self, params: HouseholdRuleParams) -> HouseholdRulePolicy:
        """The vectorised rule-based household."""
        return HouseholdRulePolicy(params)

    def apply(self, actions: ActionBatch[EconomyArgs], ctx: StepContext) -> Records:
        """One month of the economy: the phases of ``phases.py`` in the order of the module
        docstring."""
        cfg, firm, state = self.config, self.config.firm, self.state
        hh, firms, public = state.households, state.firms, state.public
        self.tally = record_decisions(hh, actions)
        state.shock = move_shocks(state.shock, cfg.shocks,
                                  ctx.random("economy.shocks").standard_normal(2))
        productivity = cfg.productivity * float(np.exp(state.shock[0]))

        plan_labour(firms, firm, productivity)
        jobs = match_jobs(hh, firms, firm.wage_attraction, ctx)
        wage_income, wage_bill = pay_wages(hh, firms, jobs)
        available = produce(firms, firm.inventory_depreciation, productivity, jobs.labour)
        spent = sell_goods(hh, firms, firm.demand_elasticity, float(np.exp(state.shock[1])))
        real_gdp, nominal_gdp = gdp(firms)
        set_prices_and_wages(firms, firm, productivity, available, jobs.supply)
        dividend_income, dividends = pay_dividends(hh, firms, firm, productivity)
        interest = pay_interest(hh, public, self.periods_per_year)
        tax, transfer = tax_and_redistribute(hh, public, cfg.tax,
                                             wage_income + dividend_income + interest)

        unemployment = jobs.unemployment()
        state.history.append(firms, firm.demand_elasticity, rate=public.rate,
                             real_gdp=real_gdp, nominal_gdp=nominal_gdp,
                             unemployment=unemployment)
        set_policy_rate(state.history, public, cfg.central_bank, self.periods_per_year,
                        unemployment)
        self.flows = StepFlows(
            consumption=float(spent.sum()), wages_paid=float(wage_bill.sum()),
            dividends=float(dividends.sum()), interest_paid=float(interest.sum()),
            tax_revenue=float(tax.sum()), transfers=float(transfer),
            participation=len(jobs.applicants) / self.n, employed=float(jobs.hired.sum()))
        if cfg.check_money:
            self.check_money()
        record_outcomes(actions, hh, jobs, spent)
        return self._rows(ctx.step)

    # -- money -----------------------------------------------------------------------------------

    def money_total(self) -> float:
        """Money held by households, firms and the government."""
        s = self.state
        return float(s.households.money.sum() + s.firms.money.sum() + s.public.government)

    def money_residual(self) -> float:
        """Money held minus money accounted for (initial plus created), relative to the latter."""
        s = self.state
        held = s.households.money.sum() + s.firms.money.sum() + s.public.government
        expected = s.public.initial_money + s.public.created
        return float((held - expected) / max(abs(expected), 1.0))

    def check_money(self) -> None:
        """Raise ``AccountingError`` unless households + firms + government = initial + created."""
        hh, public = self.state.households, self.state.public
        residual = self.money_residual()
        lowest = float(hh.money.min()) if self.n else 0.0
        if not abs(residual) <= MONEY_TOLERANCE or lowest < -1e-6:
            h, f, g = float(hh.money.sum()), float(self.state.firms.money.sum()), public.government
            expected = public.initial_money + public.created
            raise AccountingError(
                f"money is not conserved: households {h:.6f} + firms {f:.6f} + government "
                f"{g:.6f} = {h + f + g:.6f}, but initial money {public.initial_money:.6f} + "
                f"created {public.created:.6f} = {expected:.6f} (relative error "
                f"{residual:.3g}; lowest household balance {lowest:.6f})")

    # -- measures --------------------------------------------------------------------------------

    def trend_inflation(self) -> float:
        """Annualised inflation over the central bank's window (NaN at step 0)."""
        return annualised_inflation(self.state.history.price_level,
                                    self.config.central_bank.inflation_window,
                                    self.periods_per_year)

    def series(self) -> dict[str, np.ndarray]:
        """The per-step histories (index = step) and the growth rates derived from them."""
        return self.state.history.series()

    def metrics(self, actions: ActionBatch[EconomyArgs], ctx: StepContext) -> dict[str, float]:
        """Inflation, unemployment, GDP, wages, the interest rate, wealth and its Gini, taxes."""
        h = {name: values[-1] for name, values in self.series().items()}
        f, s = self.flows, self.state
        money = s.households.money
        ppy = self.periods_per_year
        out = {
            "price_level": h["price_level"],
            "inflation": h["inflation"],
            "inflation_annualised": (1.0 + h["inflation"]) ** ppy - 1.0,
            "inflation_trend": self.trend_inflation(),
            "unemployment": h["unemployment"],
            "participation": f.participation,
            "employed": f.employed,
            "nominal_gdp": h["nominal_gdp"],
            "real_gdp": h["real_gdp"],
            "real_gdp_growth": h["real_gdp_growth"],
            "wage": h["wage"],
            "wage_inflation": h["wage_inflation"],
            "real_wage": h["wage"] / h["price_level"],
            "interest_rate": s.public.rate,
            "mean_wealth": float(money.mean()) if self.n else float("nan"),
            "gini_wealth": gini(money),
            "consumption": f.consumption,
            "tax_revenue": f.tax_revenue,
            "transfers": f.transfers,
            "dividends": f.dividends,
            "interest_paid": f.interest_paid,
            "money_created": s.public.created,
            "money_total": self.money_total(),
            "money_residual": self.money_residual(),
            "inventory": float(s.firms.inventory.sum()),
            "productivity_shock": float(s.shock[0]),
            "demand_shock": float(s.shock[1]),
            "active_households": float(len(actions)),
            "decisions_clipped": float(self.tally.clipped),
        }
        out.update({f"actions.{name}": float(c) for name, c in zip(
            ACTIONS, self.tally.counts if len(actions) else np.zeros(len(ACTIONS)),
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
        h, f, s = self.state.history.last(), self.flows, self.state
        firms = s.firms
        row = {
            "price_level": h["price_level"], "wage": h["wage"],
            "interest_rate": s.public.rate, "unemployment": h["unemployment"],
            "participation": f.participation, "employed": int(f.employed),
            "real_gdp": h["real_gdp"], "nominal_gdp": h["nominal_gdp"],
            "consumption": f.consumption, "wages_paid": f.wages_paid,
            "dividends": f.dividends, "interest_paid": f.interest_paid,
            "tax_revenue": f.tax_revenue, "transfers": f.transfers,
            "inventory": float(firms.inventory.sum()),
            "household_money": float(s.households.money.sum()),
            "firm_money": float(firms.money.sum()),
            "government_money": s.public.government, "money_created": s.public.created,
            "productivity_shock": float(s.shock[0]), "demand_shock": float(s.shock[1]),
        }
        state = {k: [None if isinstance(v, float) and v != v else v] for k, v in row.items()}
        table = {"firm_id": np.arange(self.k, dtype=np.int64), "price": firms.price.copy(),
                 "wage": firms.wage.copy(), "workers": firms.workers.copy(),
                 "labour_demand": firms.labour_demand.copy(), "output": firms.output.copy(),
                 "demand": firms.demand.copy(), "sales": firms.sales.copy(),
                 "inventory": firms.inventory.copy(), "money": firms.money.copy()}
        return {"economy_state": {"step": [step], **state}, "economy_firms": table}

    # -- language-model agents and snapshots ----------------------------------------------------

    def llm_adapter(self) -> EconomyLLM:
        """Language-model households, shown the economy's rules and their own profile (without
        skill and wealth, which the prompt shows as their own figures)."""
        if self._llm is None:  # one adapter, which ``reconfigure`` keeps up to date
            exclude = {self.config.skill_attribute, self.config.wealth_attribute}
            self._llm = EconomyLLM(self.config, self.periods_per_year,
                                   self.world.population.profiles(exclude))
        return self._llm

    def agent_state(self) -> dict[str, np.ndarray]:
        """Each household's money, employer (-1: none), consumption share and labour choice."""
        hh = self.state.households
        return {"money": hh.money.copy(), "employer": hh.employer.astype(np.float64),
                "consume_share": hh.consume.copy(), "work": hh.work.astype(np.float64)}

    # -- steering --------------------------------------------------------------------------------

    def variable(self, name: str) -> np.ndarray:
        """``consume_share`` or ``money`` of every household (a view of the state); assigning
        money books the difference as money created."""
        households = self.state.households
        if name == "consume_share":
            return households.consume
        if name != "money":
            raise KeyError(f"scenario 'economy' has no variable {name!r}")
        public = self.state.public

        def book(ids: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
            public.created += float(new.sum() - old.sum())

        return BookedColumn(households.money, book)

    def broadcast(self, text: str, args: CentralBankAnnouncement, ctx: StepContext) -> Records:
        """A central-bank announcement: kept for language-model households' prompts (the
        latest ``NEWS_KEPT``); with ``rate``, the rate of step ``ctx.step`` on (households
        decide and are paid interest at it; the Taylor rule then starts from it). No rows:
        the ``events`` table holds the announcement."""
        state = self.state
        state.news = [*state.news, text][-NEWS_KEPT:]
        if args.rate is not None:
            state.public.rate = float(args.rate)
        return {}

    def join(self, agents: np.ndarray, args: EconomyJoin, ctx: StepContext) -> Records:
        """Newcomers are households built as at set-up from their population rows (skill and
        money from their attributes, drawn where the population has none; stream
        ``economy.join.<first id>``), with ``args.money`` when given; they start as job seekers unless
        ``args.employed``. Their money enters the economy as money created by the central bank,
        so the money identity holds. No rows: the economy's tables hold aggregates and firms."""
        hh, m = self.state.households, len(agents)
        rows = self.world.population.attributes.iloc[int(agents[0]):int(agents[-1]) + 1]
        # keyed by the first newcomer too: two joins at one boundary draw apart
        new = self._households(rows, ctx.random(f"economy.join.{int(agents[0])}"))
        if args.money is not None:
            new.money = np.full(m, args.money)
        if not args.employed:
            new.employer[:] = -1
        for name in ("skill", "money", "employer", "work", "consume", "income"):
            setattr(hh, name, np.concatenate([getattr(hh, name), getattr(new, name)]))
        self.state.public.created += float(new.money.sum())
        self.state.firms.workers += np.bincount(new.employer[new.employer >= 0],
                                                minlength=self.k)
        self.n = len(hh)
        if self._llm is not None:  # prompts show newcomers' profiles too
            exclude = {self.config.skill_attribute, self.config.wealth_attribute}
            self._llm.profiles = self.world.population.profiles(exclude)
        if self.config.check_money:
            self.check_money()
        return {}

    def reconfigure(self, config: EconomyConfig) -> None:
        """Take the new config, and give it to the model adapter (its prompts show taxes)."""
        super().reconfigure(config)
        if self._llm is not None:
            self._llm.config = config

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a checkpoint (one from before announcements existed has none)."""
        if "news.ends" not in state:
            ends, data = pack_strings([])
            state = {**state, "news.ends": ends, "news.data": data}
        super().load_state_dict(state)
