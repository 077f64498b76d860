"""The phases of one step of the macro-economy, in the order ``EconomyScenario.apply`` runs
them (docs/scenarios/economy.md, "One step", gives the formulas).

Each phase works on whole arrays of the state (``state.py``): it changes the parts of the state
it names in place and returns the flows of the step that later phases, the metrics and the
tables need. The rules they apply (price adjustment, hiring, the tax schedule, the Taylor rule)
are the pure functions of ``mechanics.py``.

Core objects:
    record_decisions: active households' labour choices and consumption shares.
    move_shocks: the AR(1) productivity and demand shocks.
    plan_labour: the labour each firm wants.
    match_jobs, Matching: the labour market: who applies where, who is hired.
    pay_wages: wages from firms to the households they hired.
    produce: output added to inventories.
    sell_goods, gdp: the goods market, and the output it valued.
    set_prices_and_wages: prices and wages follow their market's imbalance; expectations adapt.
    pay_dividends: firms pay out cash above their buffer.
    pay_interest: the central bank pays interest on money (new money).
    tax_and_redistribute: the income tax and its lump-sum redistribution.
    set_policy_rate: the central bank's rate for the next step.
    record_outcomes: what came of each action, for the action trace.
    DecisionTally, StepFlows: the step's decisions and money flows, for metrics and tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from populace.simulator.actions import ActionBatch
from populace.simulator.step import StepContext

from .actions import ACTIONS, DO_NOTHING, WORK, EconomyArgs
from .config import CentralBankConfig, FirmConfig, ShockConfig, TaxConfig
from .mechanics import (
    adjust_to_imbalance,
    annualised_inflation,
    choose_firm,
    demand_shares,
    hire,
    income_tax,
    taylor_rate,
)
from .state import FirmState, HouseholdState, MacroHistory, PublicAccounts


class DecisionTally(NamedTuple):
    """The decisions of a step."""

    counts: np.ndarray
    """Households that took each action (indexed like ``ACTIONS``)."""
    clipped: int
    """Consumption shares outside [0, 1] (or missing) that were clipped (or kept)."""


@dataclass(frozen=True)
class StepFlows:
    """The money flows and labour figures of a step (zero flows at step 0)."""

    consumption: float
    wages_paid: float
    dividends: float
    interest_paid: float
    tax_revenue: float
    transfers: float
    participation: float
    """Households that wanted to work / all households."""
    employed: float
    """Households hired."""


class Matching(NamedTuple):
    """The labour market of a step."""

    applicants: np.ndarray
    """Ids of the households that wanted to work."""
    applied: np.ndarray
    """The firm each applicant applied to."""
    hired: np.ndarray
    """bool, per applicant: whether the firm hired it."""
    supply: np.ndarray
    """(firms,) efficiency units of labour that applied to each firm."""
    labour: np.ndarray
    """(firms,) efficiency units of labour each firm hired."""

    def unemployment(self) -> float:
        """Applicants not hired / applicants (0 when nobody applied)."""
        n = len(self.applicants)
        return float((~self.hired).sum() / n) if n else 0.0


def record_decisions(households: HouseholdState,
                     actions: ActionBatch[EconomyArgs]) -> DecisionTally:
    """Store the labour choice and consumption share of every household that decided
    (``do_nothing`` keeps the previous ones). A share outside [0, 1] is clipped; a missing
    (NaN) one keeps the previous share; both are counted as clipped."""
    codes, agents = actions.action, actions.agent
    counts = np.bincount(codes.astype(np.int64), minlength=len(ACTIONS))
    decided = codes != DO_NOTHING
    who = agents[decided]
    households.work[who] = codes[decided] == WORK
    share = actions.args.consume_share[decided]
    bad = ~np.isfinite(share) | (share < 0) | (share > 1)
    share = np.where(np.isfinite(share), np.clip(share, 0.0, 1.0), households.consume[who])
    households.consume[who] = share
    return DecisionTally(counts, int(bad.sum()))


def move_shocks(shock: np.ndarray, shocks: ShockConfig, eps: np.ndarray) -> np.ndarray:
    """The AR(1) shocks of this step, ``z = persistence x z + sd x eps``.

    Args:
        shock: (2,) last step's productivity and demand shocks, in logs.
        shocks: their persistence and standard deviation.
        eps: (2,) standard normal draws of the step.
    """
    return np.array([
        shocks.productivity.persistence * shock[0] + shocks.productivity.sd * eps[0],
        shocks.demand.persistence * shock[1] + shocks.demand.sd * eps[1]])


def plan_labour(firms: FirmState, firm: FirmConfig, productivity: float) -> None:
    """Set ``firms.labour_demand``: the labour that makes up expected demand and closes part of
    the gap to the inventory target at ``productivity``, as far as each firm's cash pays the
    wages."""
    stock = firms.inventory * (1.0 - firm.inventory_depreciation)
    target = np.maximum(firms.expected + firm.inventory_adjustment * (
        firm.inventory_target * firms.expected - stock), 0.0)
    wanted = target / productivity
    affordable = np.maximum(firms.money, 0.0) / firms.wage
    firms.labour_demand = np.minimum(wanted, affordable)


def match_jobs(households: HouseholdState, firms: FirmState, wage_attraction: float,
               ctx: StepContext) -> Matching:
    """The labour market: every household that wants to work applies, the employed to their
    employer and the others to a firm drawn with probability proportional to
    ``wage ** wage_attraction``; each firm hires incumbents first, then a seeded random queue,
    up to its labour demand. Sets ``households.employer`` (-1: unemployed) and
    ``firms.workers``."""
    k = len(firms)
    applicants = np.flatnonzero(households.work)
    incumbent = households.employer[applicants] >= 0
    applied = households.employer[applicants].copy()
    seekers = applicants[~incumbent]
    applied[~incumbent] = choose_firm(firms.wage, wage_attraction,
                                      ctx.uniform("economy.search", seekers)[:, 0])
    priority = np.where(incumbent, 0.0, 1.0) + ctx.uniform("economy.queue", applicants)[:, 0]
    eff = households.skill[applicants]
    hired = hire(applied, priority, eff, firms.labour_demand)
    households.employer[:] = -1
    households.employer[applicants[hired]] = applied[hired]
    labour = np.bincount(applied[hired], weights=eff[hired], minlength=k)
    supply = np.bincount(applied, weights=eff, minlength=k)
    firms.workers = np.bincount(applied[hired], minlength=k).astype(np.int64)
    return Matching(applicants, applied, hired, supply, labour)


def pay_wages(households: HouseholdState, firms: FirmState,
              jobs: Matching) -> tuple[np.ndarray, np.ndarray]:
    """Firms pay each household they hired its wage x skill.

    Returns:
        Each household's wage income (n,) and each firm's wage bill (firms,).
    """
    worker, employer = jobs.applicants[jobs.hired], jobs.applied[jobs.hired]
    wage_income = np.zeros(len(households))
    wage_income[worker] = firms.wage[employer] * households.skill[worker]
    wage_bill = firms.wage * jobs.labour
    firms.money -= wage_bill
    households.money += wage_income
    return wage_income, wage_bill


def produce(firms: FirmState, depreciation: float, productivity: float,
            labour: np.ndarray) -> np.ndarray:
    """Firms turn the ``labour`` they hired into output at ``productivity``; unsold goods lose
    ``depreciation``. Sets ``firms.output`` and ``firms.inventory``.

    Returns:
        The goods each firm has for sale (a copy of its inventory before the goods market).
    """
    firms.output = productivity * labour
    firms.inventory = firms.inventory * (1.0 - depreciation) + firms.output
    return firms.inventory.copy()


def sell_goods(households: HouseholdState, firms: FirmState, elasticity: float,
               demand_factor: float) -> np.ndarray:
    """The goods market: each household wants to spend its consumption share of its money
    (times ``demand_factor``, the demand shock; never more than its money); spending is shared
    among firms by ``demand_shares``; a firm sells what it holds, and every household gets the
    same fill ratio. Sets ``firms.demand`` and ``firms.sales`` and moves money and goods.

    Returns:
        What each household spent (n,).
    """
    desired = np.minimum(households.consume * households.money * demand_factor,
                         households.money)
    spending = desired.sum()
    shares = demand_shares(firms.price, elasticity)
    firms.demand = shares * spending / firms.price
    firms.sales = np.minimum(firms.demand, firms.inventory)
    fill = np.divide(firms.sales, firms.demand, out=np.ones(len(firms)),
                     where=firms.demand > 0)
    revenue = shares * fill * spending
    spent = desired * float(np.dot(shares, fill))
    households.money -= spent
    firms.money += revenue
    firms.inventory -= firms.sales
    return spent


def gdp(firms: FirmState) -> tuple[float, float]:
    """Real GDP (units produced) and nominal GDP (at the prices goods were sold at) of the
    step; call it before ``set_prices_and_wages``."""
    return float(firms.output.sum()), float(np.dot(firms.price, firms.output))


def set_prices_and_wages(firms: FirmState, firm: FirmConfig, productivity: float,
                         available: np.ndarray, supply: np.ndarray) -> None:
    """Prices follow the imbalance of demand and the goods a firm could sell while keeping its
    target inventory (``available``: what it had for sale); wages follow the imbalance of the
    labour a firm wanted and the labour that applied (``supply``); prices then stay within the
    markup bounds over unit labour cost; expected demand moves toward the step's demand."""
    for_sale = np.maximum(available - firm.inventory_target * firms.expected, 0.0)
    firms.price = adjust_to_imbalance(firms.price, firms.demand, for_sale,
                                      firm.price_adjustment)
    firms.wage = adjust_to_imbalance(firms.wage, firms.labour_demand, supply,
                                     firm.wage_adjustment)
    unit_cost = firms.wage / productivity
    firms.price = np.clip(firms.price, (1.0 + firm.min_markup) * unit_cost,
                          (1.0 + firm.max_markup) * unit_cost)
    firms.expected += firm.expectation_weight * (firms.demand - firms.expected)


def pay_dividends(households: HouseholdState, firms: FirmState, firm: FirmConfig,
                  productivity: float) -> tuple[np.ndarray, np.ndarray]:
    """Firms pay ``dividend_rate`` of their cash above the buffer (``cash_buffer`` steps of the
    wage bill of their expected demand) to households in proportion to their money (equally
    if no household has any).

    Returns:
        Each household's dividend income (n,) and each firm's dividends (firms,).
    """
    buffer = firm.cash_buffer * firms.wage * firms.expected / productivity
    dividends = firm.dividend_rate * np.maximum(firms.money - buffer, 0.0)
    firms.money -= dividends
    held = households.money.sum()
    income = (dividends.sum() * households.money / held if held > 0
              else np.full(len(households), dividends.sum() / len(households)))
    households.money += income
    return income, dividends


def pay_interest(households: HouseholdState, public: PublicAccounts,
                 periods_per_year: float) -> np.ndarray:
    """The central bank pays a step's interest at its annual rate on households' money; it is
    new money, added to ``public.created``.

    Returns:
        Each household's interest income (n,).
    """
    per_step = (1.0 + public.rate) ** (1.0 / periods_per_year) - 1.0
    interest = households.money * per_step
    households.money += interest
    public.created += float(interest.sum())
    return interest


def tax_and_redistribute(households: HouseholdState, public: PublicAccounts, tax: TaxConfig,
                         income: np.ndarray) -> tuple[np.ndarray, float]:
    """Households pay the income tax on the step's ``income`` to the government, which pays
    ``redistribution`` of its balance back in equal lump sums. Sets ``households.income`` to
    the income after tax and transfer.

    Returns:
        Each household's tax (n,) and the total transferred.
    """
    n = len(households)
    paid = income_tax(income, tax.brackets)
    households.money -= paid
    public.government += float(paid.sum())
    transfer = tax.redistribution * public.government
    public.government -= transfer
    households.money += transfer / n
    households.income = income - paid + transfer / n
    return paid, transfer


def set_policy_rate(history: MacroHistory, public: PublicAccounts, bank: CentralBankConfig,
                    periods_per_year: float, unemployment: float) -> None:
    """The central bank's Taylor rule sets ``public.rate`` for the next step from trend
    inflation (the step's price level already in ``history``) and ``unemployment``; the
    history records the new rate as the step's."""
    inflation = annualised_inflation(history.price_level, bank.inflation_window, periods_per_year)
    public.rate = taylor_rate(bank, inflation, unemployment, public.rate)
    history.interest_rate[-1] = public.rate


def record_outcomes(actions: ActionBatch[EconomyArgs], households: HouseholdState,
                    jobs: Matching, spent: np.ndarray) -> None:
    """Fill the outcome columns of the action trace: the firm each household applied to (-1:
    none), whether it is employed, and what it spent."""
    where = np.full(len(households), -1, dtype=np.int64)
    where[jobs.applicants] = jobs.applied
    actions.args.firm = where[actions.agent]
    actions.args.hired = households.employer[actions.agent] >= 0
    actions.args.spent = spent[actions.agent]
