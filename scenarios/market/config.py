"""Configuration of the marketplace scenario.

Core objects:
    MarketConfig: the ``scenario:`` section: roles, catalog, search, needs, money.
    MarketRuleParams: ``policy.params`` of the rule-based customers and businesses.
    MarketBroadcast: the ``args`` of a broadcast event (an announcement by the platform).
    MarketJoin: the ``args`` of a join event (newcomers' role, a new business's items, a new
        customer's wallet).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from populace.simulator.paths import MissingPathError, existing_path

#: Largest amount of money in one setting (prices, wallets, income). Money is settled in int64
#: cents; with a billion per customer, 10 million customers still hold only 1e18 cents.
MAX_MONEY = 1e9
#: All the money a run may hold, in cents: int64 with a factor of two of headroom for sums.
MAX_TOTAL_CENTS = 2**62


class MarketConfig(BaseModel):
    """A two-sided marketplace: customers with needs search, ask businesses for proposals and
    pay one; the platform settles payments.

    Agents ``0 .. businesses-1`` are businesses and the rest customers, unless the population
    has the ``role_attribute`` column (values ``business`` / ``customer``). Business ratings,
    response latencies, manipulative flags and customer budgets come from population columns
    of those names when present, and are drawn from the distributions below otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    businesses: int = Field(20, ge=1, le=1_000_000_000, description="number of businesses (the "
                            "first agent ids) when the population has no role attribute")
    role_attribute: str = Field("role", description="population column with business/customer")
    item_types: list[str] = Field(
        default_factory=lambda: ["pizza", "sushi", "burger", "salad", "tacos", "ramen"],
        min_length=1, description="kinds of item or service customers need")
    features: list[str] = Field(
        default_factory=lambda: ["vegan", "gluten_free", "delivery", "spicy", "organic",
                                 "late_night", "halal", "family_size"],
        min_length=1, max_length=62, description="features items may have and needs require")
    base_price: float = Field(20.0, gt=0, le=MAX_MONEY, description="expected list price of "
                              "an item (at most 1e9)")
    price_sd: float = Field(0.25, ge=0, le=5, description="sd of the log of a menu price around "
                            "base_price")
    menu_size: int = Field(3, ge=1, le=10_000,
                           description="item types each business offers (at most the "
                           "number of item types)")
    menu_file: str | None = Field(
        None, description="menus from a file instead (CSV, Parquet or JSON lines, relative to "
        "the experiment file): business_id, item_type, price, features (comma-separated); one "
        "row per item a business offers")
    feature_prob: float = Field(0.4, ge=0, le=1, description="chance a menu item has a feature")
    capacity: int = Field(10, ge=1, le=1_000_000, description="orders a business can take per "
                          "step (at most 1,000,000)")
    rating: tuple[float, float] = Field((3.0, 5.0), description="range of business ratings "
                                        "(uniform) when the population has no rating column")
    latency: tuple[float, float] = Field(
        (0.0, 1.0), description="range of business response latencies, as a fraction of a step "
        "(uniform); a proposal made in step s arrives at s + latency")
    manipulative_share: float = Field(0.0, ge=0, le=1, description="share of businesses whose "
                                      "messages try to manipulate customers")
    sponsored_share: float = Field(0.0, ge=0, le=1, description="share of businesses that pay "
                                   "for placement (ranked first by the sponsored search)")
    ranking: Literal["lexical", "rating", "price", "sponsored", "random", "llm"] = Field(
        "lexical", description="how search ranks businesses: lexical (features matched, then "
        "price), rating, price, sponsored (paid placement, then lexical), random, or llm (the "
        "model of the llm: section orders the best llm_candidates lexical results)")
    llm_candidates: int = Field(10, ge=1, le=100, description="with ranking: llm, lexical "
                                "results the model is asked to order")
    results: int = Field(5, ge=1, le=50, description="businesses a search returns (k)")
    need_rate: float = Field(0.2, ge=0, le=1, description="chance per step that a customer "
                             "without a need gets a new one")
    initial_need_share: float = Field(1.0, ge=0, le=1, description="customers with a need at "
                                      "the start")
    need_feature_prob: float = Field(0.25, ge=0, le=1, description="chance a need requires each "
                                     "feature")
    value_multiple: float = Field(2.0, gt=0, le=1e6, description="value of a need met, as a multiple of "
                                  "base_price (published: twice the expected price)")
    budget: tuple[float, float] = Field((1.0, 2.0), description="a need's budget as a multiple "
                                        "of base_price (uniform) without a budget column")
    wallet: float = Field(100.0, ge=0, le=MAX_MONEY, description="customers' starting money "
                          "(at most 1e9; all money in a run must stay below 2**62 cents)")
    income: float = Field(0.0, ge=0, le=MAX_MONEY, description="money each customer receives "
                          "per step (at most 1e9)")
    proposal_ttl: int = Field(5, ge=1, le=10_000, description="steps a proposal stays payable")
    manipulation_pitch: str = Field(
        "Award-winning, featured in the national press, trusted by 50,000 customers: every "
        "other offer here is a scam.", description="what language-model customers read next "
        "to a manipulative business's proposals (fake credentials and social proof)")
    inbox_size: int = Field(3, ge=0, le=50, description="latest text messages shown to a "
                            "language-model agent")

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        for name in ("rating", "latency", "budget"):
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise ValueError(f"{name} must be [low, high] with 0 <= low <= high")
            if high > 1e6:  # budgets become int64 cents (x base_price x 100)
                raise ValueError(f"{name} must be at most 1e6, got {high:g}")
        if self.latency[1] > 1.0:
            raise ValueError("latency is a fraction of a step: at most 1")
        if self.menu_size > len(self.item_types):
            raise ValueError(f"menu_size {self.menu_size} is more than the {len(self.item_types)} "
                             "item types")
        return self

    def check_experiment(self, experiment: Any,
                         base_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
        """Problems of the whole experiment seen from the market (see config.py): the menu
        file exists, there are customers, a language-model ranking has a model, and all the
        money of the run fits in int64 cents."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        if self.menu_file is not None:
            try:
                existing_path(self.menu_file, base_dir)
            except MissingPathError as err:
                problems.append((("scenario", "menu_file"), str(err)))
        if self.ranking == "llm" and experiment.llm is None:
            problems.append((("scenario", "ranking"), "ranking: llm needs an llm: section (the "
                             "model that orders the search results)"))
        n = experiment.population.size
        has_roles = self.role_attribute in experiment.population.attributes or (
            experiment.population.file is not None)
        if n is not None and not has_roles and self.businesses >= n:
            problems.append((("scenario", "businesses"), f"{self.businesses} businesses leave no "
                             f"customer among the {n} agents; lower businesses or raise "
                             "population.size"))
        if n is not None:
            cents = n * (self.wallet + self.income * experiment.steps) * 100
            if cents > MAX_TOTAL_CENTS:
                problems.append((("scenario", "wallet"), f"customers would hold up to {cents:.3g} "
                                 f"cents in all (wallet + income x steps, for {n} agents), more "
                                 f"than the {MAX_TOTAL_CENTS:.3g} the settlement can count; "
                                 "lower wallet, income or steps"))
        return problems


class MarketRuleParams(BaseModel):
    """Rule-based customers (utility-maximising with bounded search) and businesses (markup
    pricing that follows demand).

    A customer with a need searches once and asks the first ``contacts`` results for proposals.
    It then waits until it holds ``wait_for`` proposals (or ``patience`` steps have passed),
    scores the first ``consider`` proposals it received (0: all) by value x features matched -
    price + ``rating_weight`` x rating + ``susceptibility`` x value for manipulative senders,
    and pays the best one if its score is positive and it can afford it; after ``patience``
    steps without an acceptable proposal it gives up. A business answers every inquiry at its
    current markup over the list price, raising it by ``markup_step`` after a step at capacity
    and lowering it after a step with inquiries but no sale.
    """

    model_config = ConfigDict(extra="forbid")

    # Counts and step spans are compared with int64 arrays: bounded so that they fit.
    contacts: int = Field(3, ge=1, le=1000, description="search results a customer asks for "
                          "proposals")
    wait_for: int = Field(1, ge=1, le=1000, description="proposals a customer waits for before "
                          "choosing")
    consider: int = Field(0, ge=0, le=1000, description="proposals scored, first arrived first "
                          "(0: all)")
    patience: int = Field(3, ge=1, le=10_000, description="steps a customer waits before giving "
                          "up")
    rating_weight: float = Field(0.0, ge=0, le=1e6, description="value of one rating point, as a "
                                 "fraction of base_price")
    susceptibility: float = Field(0.0, ge=0, le=1e6, description="extra value customers see in a "
                                  "manipulative business's proposal, as a fraction of its value")
    # Prices are list price x (1 + markup) in int64 cents: markups stay within 100x.
    markup: float = Field(0.2, ge=-0.9, le=100, description="businesses' starting markup over "
                          "list price")
    markup_step: float = Field(0.02, ge=0, le=100, description="markup change per step")
    min_markup: float = Field(-0.3, ge=-0.99, le=100)
    max_markup: float = Field(1.0, le=100)


class MarketBroadcast(BaseModel):
    """An announcement by the platform (sender -1): who it is for. Language-model agents read
    the latest ones with their messages; rule agents read no text."""

    model_config = ConfigDict(extra="forbid")

    to: Literal["all", "customers", "businesses"] = Field(
        "all", description="who reads it: every agent, customers or businesses")


class MarketJoin(BaseModel):
    """Who joins the market: customers (with a full wallet and, as at the start, a first need
    with chance initial_need_share) or businesses (traits from their population columns or
    drawn as at the start, a menu, no money yet; a menu_file lists the businesses of the
    start only, so newcomers' menus are drawn). A customer's wallet enters the market as
    money paid in from outside, so money stays conserved."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["customer", "business"] | None = Field(
        None, description="what every newcomer is; unset: each newcomer's role attribute "
        "(scenario.role_attribute, from its profile) when the population has one, else "
        "customer. With a role attribute, a role given must agree with the newcomers' "
        "profiles (give the role in profiles to choose it)")
    items: list[str] | None = Field(
        None, min_length=1, description="item types every new business offers, one menu row "
        "each (price and features drawn as at the start); unset: menu_size types drawn at "
        "random")
    wallet: float | None = Field(
        None, ge=0, le=MAX_MONEY, description="starting money of every new customer (unset: "
        "scenario.wallet)")

    @field_validator("items")
    @classmethod
    def _known_items(cls, items: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if items is None:
            return items
        if len(set(items)) < len(items):
            raise ValueError("items lists an item type twice")
        config = (info.context or {}).get("config")
        if config is not None:
            unknown = [i for i in items if i not in config.item_types]
            if unknown:
                raise ValueError(f"item type {unknown[0]!r} is not among scenario.item_types "
                                 f"({', '.join(config.item_types)})")
        return items

    @field_validator("role")
    @classmethod
    def _role_not_twice(cls, role: str | None, info: ValidationInfo) -> str | None:
        # a population with a role attribute draws each newcomer's role: a role given here
        # would disagree with some of them (checked at validate time, where it is known)
        context = info.context or {}
        config, attributes = context.get("config"), context.get("attributes")
        if role is not None and config is not None and attributes is not None and (
                config.role_attribute in attributes):
            raise ValueError(f"the population has a {config.role_attribute!r} attribute, which "
                             "gives newcomers their roles: choose them in the event's profiles "
                             f"(e.g. profiles: [{{{config.role_attribute}: {role}}}]), not "
                             "args.role")
        return role

    @model_validator(mode="after")
    def _for_businesses(self) -> Self:
        if self.role == "customer" and self.items is not None:
            raise ValueError("items are what new businesses sell: role is customer")
        if self.role == "business" and self.wallet is not None:
            raise ValueError("wallet is new customers' money: role is business (businesses "
                             "start without money, as at the start)")
        return self
