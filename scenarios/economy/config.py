"""Configuration of the macro-economy scenario.

Core objects:
    EconomyConfig: the ``scenario:`` section (firms, initial state, markets, central bank, taxes,
        shocks, and the population attributes it reads).
    FirmConfig: how firms plan production, set prices and wages, and pay dividends.
    CentralBankConfig: the Taylor rule.
    TaxConfig, TaxBracket: the income tax and its lump-sum redistribution.
    ShockConfig, AR1Config: seeded AR(1) productivity and demand shocks.
    HouseholdRuleParams: ``policy.params`` of the rule-based household.
    CentralBankAnnouncement: the ``args`` of a broadcast event (the central bank speaks).
    EconomyJoin: the ``args`` of a join event (newcomers' money and job).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class FirmConfig(BaseModel):
    """Firms: production planning, price and wage setting, dividends.

    Each firm plans to produce ``E + inventory_adjustment x (inventory_target x E - I)`` units
    (``E`` its expected demand, ``I`` its inventory), hiring the labour this takes at the
    current productivity as far as its cash pays the wages. After the goods market its price
    moves by ``price_adjustment x (D - S) / max(D, S)``, with ``D`` the units demanded and ``S``
    the units it could sell while keeping its target inventory, and its wage by
    ``wage_adjustment x (Ld - Ls) / max(Ld, Ls)`` (labour it wanted and labour that applied, in
    efficiency units). The price then stays within ``[1 + min_markup, 1 + max_markup]`` times
    its unit labour cost (wage over productivity), which ties prices and wages together.
    """

    model_config = ConfigDict(extra="forbid")

    price_adjustment: float = Field(0.1, ge=0, le=1, description="rate at which a price "
                                    "follows the imbalance of demand and supply")
    wage_adjustment: float = Field(0.05, ge=0, le=1, description="rate at which a wage follows "
                                   "the imbalance of labour demand and supply")
    min_markup: float = Field(0.0, ge=-0.5, le=10, description="a price never falls below "
                              "unit labour cost (wage / productivity) x (1 + min_markup)")
    max_markup: float = Field(0.5, ge=0, le=10, description="a price never rises above unit "
                              "labour cost x (1 + max_markup)")
    demand_elasticity: float = Field(3.0, ge=0, description="households' demand is shared "
                                     "among firms in proportion to price ** -demand_elasticity")
    wage_attraction: float = Field(3.0, ge=0, description="job seekers apply to a firm with "
                                   "probability proportional to its wage ** wage_attraction")
    expectation_weight: float = Field(0.5, gt=0, le=1, description="weight of the latest demand "
                                      "in a firm's adaptive demand expectation")
    inventory_target: float = Field(0.1, ge=0, le=2, description="inventory a firm wants to "
                                    "hold, as a share of expected demand")
    inventory_adjustment: float = Field(0.5, gt=0, le=1, description="share of the gap between "
                                        "target and actual inventory a firm closes per step")
    inventory_depreciation: float = Field(0.05, ge=0, le=1, description="share of unsold "
                                          "goods lost each step")
    cash_buffer: float = Field(2.0, ge=0, description="steps of wage bill a firm keeps as "
                               "cash; it pays out dividends only above this")
    dividend_rate: float = Field(0.5, ge=0, le=1, description="share of cash above the buffer "
                                 "paid each step as dividends (to households, in proportion to "
                                 "their wealth)")

    @model_validator(mode="after")
    def _markups(self) -> Self:
        if self.min_markup > self.max_markup:
            raise ValueError(f"firm.min_markup ({self.min_markup:g}) must not exceed "
                             f"firm.max_markup ({self.max_markup:g})")
        return self


class CentralBankConfig(BaseModel):
    """The central bank's Taylor rule, applied at the end of every step for the next one:

    ``r = natural_rate + inflation_target + inflation_weight x (pi - inflation_target) +
    unemployment_weight x (natural_unemployment - u)``, then ``r = smoothing x r_prev + (1 -
    smoothing) x r``, within [``floor``, ``ceiling``]; ``pi`` is the annualised inflation of the
    last ``inflation_window`` steps and ``u`` the unemployment rate. Rates are annual;
    households earn ``(1 + r) ** (1 / steps per year) - 1`` on their money each step, paid with
    new money, so money grows with the rate: an ``inflation_weight`` above about 1 (the Taylor
    principle of models where interest is not new money) makes inflation run away here.
    """

    model_config = ConfigDict(extra="forbid")

    natural_rate: float = Field(0.0, ge=-0.1, le=0.5, description="rate above "
                                "inflation_target at target inflation and natural unemployment "
                                "(annual; interest is new money, so about 0 keeps prices on "
                                "target)")
    inflation_target: float = Field(0.02, ge=-0.1, le=0.5, description="annual inflation the "
                                    "bank aims at")
    inflation_weight: float = Field(0.5, ge=0, le=10, description="rise of the rate per unit "
                                    "of inflation above target")
    unemployment_weight: float = Field(0.5, ge=0, le=10, description="response to unemployment "
                                       "below its natural rate")
    natural_unemployment: float = Field(0.02, ge=0, lt=1, description="unemployment rate the "
                                        "bank treats as normal")
    floor: float = Field(0.0, ge=-0.1, le=0.5, description="lowest rate (the zero lower bound)")
    ceiling: float = Field(0.3, gt=0, le=1, description="highest rate")
    smoothing: float = Field(0.7, ge=0, lt=1, description="weight of the previous rate "
                             "(interest-rate smoothing)")
    inflation_window: int = Field(12, ge=1, le=120, description="steps over which inflation is "
                                  "measured for the rule")
    initial_rate: float = Field(0.03, ge=-0.1, le=1, description="annual rate of the first step")

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.floor >= self.ceiling:
            raise ValueError(f"central_bank.floor ({self.floor:g}) must be below its ceiling "
                             f"({self.ceiling:g})")
        return self


class TaxBracket(BaseModel):
    """One bracket of the income tax: ``rate`` on the part of a step's income above ``above``
    (up to the next bracket)."""

    model_config = ConfigDict(extra="forbid")

    above: float = Field(ge=0, description="income per step where this bracket starts")
    rate: float = Field(ge=0, le=1, description="marginal tax rate in the bracket")


class TaxConfig(BaseModel):
    """Income tax on each household's income of a step (wages, dividends and interest), with
    marginal ``brackets`` (one bracket from 0 is a flat tax). The government pays out the share
    ``redistribution`` of its balance each step, in equal lump sums to every household."""

    model_config = ConfigDict(extra="forbid")

    brackets: list[TaxBracket] = Field(
        default_factory=lambda: [TaxBracket(above=0.0, rate=0.2)], min_length=1,
        description="marginal brackets, the first starting at 0, thresholds increasing")
    redistribution: float = Field(1.0, ge=0, le=1, description="share of the government's "
                                  "balance redistributed each step")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        above = [b.above for b in self.brackets]
        if above[0] != 0:
            raise ValueError(f"tax.brackets must start at above: 0 (the first starts at "
                             f"{above[0]:g})")
        if any(b <= a for a, b in zip(above, above[1:], strict=False)):
            raise ValueError(f"tax.brackets thresholds must increase, got {above}")
        return self


class AR1Config(BaseModel):
    """An AR(1) process in logs: ``z_t = persistence x z_(t-1) + sd x e_t``, ``e_t ~ N(0, 1)``
    drawn from the run's seed; the shock multiplies by ``exp(z_t)``."""

    model_config = ConfigDict(extra="forbid")

    persistence: float = Field(0.9, ge=0, lt=1, description="autocorrelation per step")
    sd: float = Field(0.0, ge=0, le=1, description="standard deviation of the innovation "
                      "(0: no shock)")


class ShockConfig(BaseModel):
    """Aggregate shocks, the source of business cycles."""

    model_config = ConfigDict(extra="forbid")

    productivity: AR1Config = Field(
        default_factory=lambda: AR1Config(persistence=0.9, sd=0.005),
        description="multiplies the output of each unit of labour")
    demand: AR1Config = Field(
        default_factory=lambda: AR1Config(persistence=0.9, sd=0.03),
        description="multiplies what households want to spend (a confidence shock)")


class EconomyConfig(BaseModel):
    """A monthly macro-economy in the style of EconAgent: households work and consume, ``firms``
    produce and set prices and wages, a central bank sets the interest rate by a Taylor rule,
    and income taxes are redistributed. Money is conserved and checked every step."""

    model_config = ConfigDict(extra="forbid")

    firms: int = Field(10, ge=1, le=10_000, description="number of firms (not agents: the "
                       "scenario runs them)")
    skill_attribute: str = Field(
        "skill", description="population attribute with each household's productivity (> 0, "
        "efficiency units of labour per step); when absent, log-normal with mean 1 and "
        "`skill_sigma`")
    skill_sigma: float = Field(0.5, ge=0, le=3, description="sigma of log skill when the "
                               "population has no skill attribute")
    wealth_attribute: str = Field(
        "wealth", description="population attribute with each household's initial money "
        "(>= 0); when absent every household starts with `initial_wealth`")
    # Money and prices are floats multiplied together every step: 1e9 keeps every product
    # (wage x hours x households, price x output) far from float overflow.
    initial_wealth: float = Field(4000.0, ge=0, le=1e9, description="initial money of a household "
                                  "when the population has no wealth attribute")
    productivity: float = Field(1.0, gt=0, le=1e6,
                                description="units of goods one efficiency unit of "
                                "labour produces per step (before shocks)")
    initial_wage: float = Field(1000.0, gt=0, le=1e9,
                                description="initial wage per efficiency unit "
                                "and step, at every firm")
    initial_price: float | None = Field(
        None, gt=0, le=1e9,
        description="initial price of a unit of goods; unset: the price at which "
        "initial spending buys the initial output")
    initial_consume_share: float = Field(0.3, gt=0, le=1, description="share of money a "
                                         "household spends until it first decides")
    firm: FirmConfig = Field(default_factory=FirmConfig, description="firm behaviour")
    central_bank: CentralBankConfig = Field(default_factory=CentralBankConfig,
                                            description="the Taylor rule")
    tax: TaxConfig = Field(default_factory=TaxConfig, description="income tax and "
                           "redistribution")
    shocks: ShockConfig = Field(default_factory=ShockConfig, description="aggregate AR(1) "
                                "shocks")
    burn_in: int = Field(24, ge=0, le=10_000_000,
                         description="first steps left out of the Phillips-curve and "
                         "Okun's-law correlations (the economy settles from its initial state)")
    check_money: bool = Field(True, description="verify after every step that money is "
                              "conserved (an error stops the run when it is not)")


class HouseholdRuleParams(BaseModel):
    """The rule-based household.

    Labour: a household works with probability ``sigmoid(x)``, ``x = work_bias +
    labour_elasticity x ln(real wage / reservation_wage) - wealth_effect x ln(1 + months of
    wealth) + taste_sd x taste``, where the real wage is its wage per efficiency unit over the
    price level, months of wealth its money over its monthly wage, and taste a standard normal
    fixed per household. Consumption: the share of money spent is ``base_consumption -
    rate_sensitivity x r + low_wealth_boost / (1 + months of wealth) + consumption_noise x e``,
    clipped to [``min_consumption``, 1], with ``r`` the annual interest rate and ``e`` a fresh
    standard normal per household and step.
    """

    model_config = ConfigDict(extra="forbid")

    reservation_wage: float = Field(0.6, gt=0, description="real wage (goods per efficiency "
                                    "unit) at which a household with no savings and average "
                                    "taste is indifferent, before work_bias")
    work_bias: float = Field(2.5, description="log-odds of working at the reservation wage")
    labour_elasticity: float = Field(1.5, ge=0, description="response of the log-odds of "
                                     "working to the log real wage")
    wealth_effect: float = Field(0.2, ge=0, description="fall in the log-odds of working per "
                                 "unit of ln(1 + months of wealth)")
    taste_sd: float = Field(1.0, ge=0, description="spread of households' fixed taste for work")
    base_consumption: float = Field(0.35, ge=0, le=1, description="share of money spent at "
                                    "zero interest and high wealth")
    rate_sensitivity: float = Field(2.0, ge=0, description="fall in the consumption share per "
                                    "unit of annual interest rate")
    low_wealth_boost: float = Field(0.3, ge=0, le=1, description="extra share spent by "
                                    "households with little wealth (divided by 1 + months)")
    consumption_noise: float = Field(0.03, ge=0, le=1, description="sd of per-step noise in "
                                     "the consumption share")
    min_consumption: float = Field(0.05, ge=0, le=1, description="lowest consumption share")


class CentralBankAnnouncement(BaseModel):
    """A central-bank announcement: its words reach language-model households (the latest
    few are in their prompts); with ``rate`` the bank also sets the annual interest rate of
    the next step itself (a policy-rate shock), after which its Taylor rule moves on from it
    (with its smoothing)."""

    model_config = ConfigDict(extra="forbid")

    rate: float | None = Field(None, ge=-0.1, le=1, description="annual interest rate set "
                               "from this step on, within central_bank.floor..ceiling "
                               "(unset: words only)")

    @field_validator("rate")
    @classmethod
    def _within_bounds(cls, rate: float | None, info: ValidationInfo) -> float | None:
        config = (info.context or {}).get("config")
        if rate is not None and config is not None:
            bank = config.central_bank
            if not bank.floor <= rate <= bank.ceiling:
                raise ValueError(f"rate {rate:g} is outside central_bank.floor..ceiling "
                                 f"({bank.floor:g}..{bank.ceiling:g})")
        return rate


class EconomyJoin(BaseModel):
    """What households that join mid-run start with. Their skill comes from the population's
    skill attribute (or is drawn with ``skill_sigma``), they work and consume the initial
    share until they first decide; the money they bring is created by the central bank (like
    a change of the ``money`` variable), so the money identity holds."""

    model_config = ConfigDict(extra="forbid")

    money: float | None = Field(
        None, ge=0, le=1e9, description="starting money of every newcomer; unset: its wealth "
        "attribute (scenario.wealth_attribute, from its profile, given or drawn from the "
        "population's distribution), or initial_wealth when the population has none")
    employed: bool = Field(
        False, description="start employed at a firm drawn at random (seeded), as every "
        "household does at step 0; false: start as job seekers, who apply to a firm drawn by "
        "wage in their first labour market")
