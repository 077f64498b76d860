"""The fixed side of the marketplace: who is a business or a customer, and what each business
offers.

Core objects:
    Catalog: roles, business traits (rating, latency, manipulative and sponsored flags,
        capacity) and menus (item type, list price, features of each menu row). Drawn once
        from ``world.rng`` and the population; a run never changes it, so checkpoints leave it
        out and a resumed run draws it again.
    build_catalog: the catalog of a market configuration and world.
    match: share of a need's required features that an item has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from populace.simulator.paths import experiment_path
from populace.simulator.records import Records
from populace.simulator.world import World

from .config import MarketConfig

_INT = np.int64


def match(need_feat: np.ndarray, row_feat: np.ndarray) -> np.ndarray:
    """Share of the required features (bit masks) present; 1 for a need without requirements."""
    need_n = np.bitwise_count(need_feat)
    have = np.bitwise_count(need_feat & row_feat)
    return np.where(need_n > 0, have / np.maximum(need_n, 1), 1.0)


@dataclass
class Catalog:
    """Roles, businesses and menus (indexes: ``b`` a business, ``c`` a customer, a menu row).

    Attributes:
        biz_agent, cust_agent: agent id of each business / customer.
        agent_biz, agent_cust: business / customer index of each agent (-1: the other role).
        rating, latency, manipulative, sponsored, capacity: per business.
        menu_biz, menu_type, menu_base, menu_feat: per menu row: its business, item type, list
            price (cents) and features (bit mask over ``features``).
        row_of: (businesses, item types) -> menu row, -1 where the business lacks the type.
        base: the expected list price, in cents.
        item_types, features: their names.
    """

    biz_agent: np.ndarray
    cust_agent: np.ndarray
    agent_biz: np.ndarray
    agent_cust: np.ndarray
    rating: np.ndarray
    latency: np.ndarray
    manipulative: np.ndarray
    sponsored: np.ndarray
    capacity: np.ndarray
    menu_biz: np.ndarray
    menu_type: np.ndarray
    menu_base: np.ndarray
    menu_feat: np.ndarray
    row_of: np.ndarray
    base: int
    item_types: list[str]
    features: list[str]

    @property
    def n_biz(self) -> int:
        """Number of businesses."""
        return len(self.biz_agent)

    @property
    def n_cust(self) -> int:
        """Number of customers."""
        return len(self.cust_agent)

    def posted_price(self, rows: np.ndarray, markup: np.ndarray) -> np.ndarray:
        """Current price of menu ``rows`` (cents): list price times one plus the business's
        ``markup`` (one per business), at least one cent."""
        return np.maximum(1, np.round(self.menu_base[rows] * (1.0 + markup[
            self.menu_biz[rows]]))).astype(_INT)

    def feature_names(self, masks: np.ndarray) -> list[str]:
        """Each feature bit mask as comma-separated feature names."""
        names = self.features
        return [",".join(f for i, f in enumerate(names) if m >> i & 1) for m in masks.tolist()]

    def records(self, businesses: np.ndarray | None = None) -> Records:
        """The ``market_businesses`` and ``market_menu`` rows of ``businesses`` (indexes;
        default: every business, the rows of step 0)."""
        biz = np.arange(self.n_biz) if businesses is None else np.asarray(businesses, _INT)
        menu = np.flatnonzero(np.isin(self.menu_biz, biz))
        descriptions = []
        for b in biz.tolist():
            rows = menu[self.menu_biz[menu] == b]
            items = ", ".join(self.item_types[t] for t in self.menu_type[rows])
            descriptions.append(f"Business {self.biz_agent[b]}: {items}; "
                                f"rated {self.rating[b]:.1f}")
        return {
            "market_businesses": {
                "agent_id": self.biz_agent[biz], "rating": self.rating[biz],
                "capacity": self.capacity[biz], "latency": self.latency[biz],
                "manipulative": self.manipulative[biz], "sponsored": self.sponsored[biz],
                "description": descriptions},
            "market_menu": {
                "item_id": menu.astype(_INT),
                "business_id": self.biz_agent[self.menu_biz[menu]],
                "item_type": np.asarray(self.item_types, dtype=object)[self.menu_type[menu]],
                "price": self.menu_base[menu].copy(),
                "features": self.feature_names(self.menu_feat[menu])},
        }

    def add(self, config: MarketConfig, attrs: pd.DataFrame, agents: np.ndarray,
            is_biz: np.ndarray, rng: np.random.Generator,
            types: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Take ``agents`` that joined (the next ids; ``is_biz``: which are businesses):
        businesses and customers get the next indexes, and new businesses traits and menus
        as at set-up (``draw_businesses``: population columns, else draws from ``rng``; the
        item ``types`` given, else ``menu_size`` drawn). Returns the new business indexes
        and the new customer indexes."""
        new_biz, new_cust = agents[is_biz], agents[~is_biz]
        b = np.arange(self.n_biz, self.n_biz + len(new_biz), dtype=_INT)
        c = np.arange(self.n_cust, self.n_cust + len(new_cust), dtype=_INT)
        agent_biz = np.full(len(agents), -1, dtype=_INT)
        agent_biz[is_biz] = b
        agent_cust = np.full(len(agents), -1, dtype=_INT)
        agent_cust[~is_biz] = c
        self.agent_biz = np.concatenate([self.agent_biz, agent_biz])
        self.agent_cust = np.concatenate([self.agent_cust, agent_cust])
        self.cust_agent = np.concatenate([self.cust_agent, new_cust.astype(_INT)])
        if len(new_biz):
            drawn = draw_businesses(config, attrs, new_biz, rng, types)
            first_row = len(self.menu_biz)
            self.biz_agent = np.concatenate([self.biz_agent, new_biz.astype(_INT)])
            for name in ("rating", "latency", "manipulative", "sponsored", "menu_type",
                         "menu_base", "menu_feat"):
                setattr(self, name, np.concatenate([getattr(self, name), drawn[name]]))
            self.menu_biz = np.concatenate([self.menu_biz, drawn["menu_biz"] + b[0]])
            self.capacity = np.concatenate([self.capacity,
                                            np.full(len(b), config.capacity, dtype=_INT)])
            row_of = np.full((len(b), self.row_of.shape[1]), -1, dtype=_INT)
            row_of[drawn["menu_biz"], drawn["menu_type"]] = np.arange(
                first_row, len(self.menu_biz))
            self.row_of = np.concatenate([self.row_of, row_of])
        return b, c


def role_values(config: MarketConfig, column: pd.Series) -> np.ndarray:
    """Whether each value of a role attribute says business (ValueError for values that are
    neither business nor customer)."""
    roles = column.astype(str).str.lower().to_numpy()
    bad = sorted(set(roles) - {"business", "customer"})
    if bad:
        raise ValueError(f"population attribute {config.role_attribute!r} must be "
                         f"business or customer, found {bad[:3]}")
    return roles == "business"


def _roles(config: MarketConfig, world: World) -> np.ndarray:
    """Whether each agent is a business: the role attribute, or the first ``businesses`` ids."""
    n = world.n_agents
    attrs = world.population.attributes
    if config.role_attribute in attrs:
        return role_values(config, attrs[config.role_attribute])
    if config.businesses >= n:
        raise ValueError(f"scenario.businesses is {config.businesses} but the population "
                         f"has only {n} agents: no customers would remain")
    return np.arange(n) < config.businesses


def draw_businesses(config: MarketConfig, attrs: pd.DataFrame, biz_agent: np.ndarray,
                    rng: np.random.Generator, types: list[int] | None = None
                    ) -> dict[str, np.ndarray]:
    """Traits and menus of the businesses ``biz_agent`` (agent ids, rows of ``attrs``):
    rating, latency and manipulative flag from population columns of their names where they
    have a value, else drawn from ``rng`` with the sponsored flag; menus of the item
    ``types`` given (indexes), else of ``menu_size`` distinct types drawn, with drawn list
    prices and features. ``menu_biz`` counts businesses from 0 in ``biz_agent``'s order."""
    nb, nt, nf = len(biz_agent), len(config.item_types), len(config.features)
    base = int(round(config.base_price * 100))

    def trait(name: str, draw: np.ndarray) -> np.ndarray:
        # a population column of the trait's name wins where it has a value
        if name in attrs:
            values = attrs[name].to_numpy()[biz_agent].astype(np.float64)
            return np.where(np.isnan(values), draw, values)
        return draw

    # the draws come in this order whatever the population holds, so the numbers are stable
    rating = np.round(trait("rating", rng.uniform(*config.rating, nb)), 1)
    latency = np.clip(trait("latency", rng.uniform(*config.latency, nb)), 0.0, 0.999)
    manipulative = trait("manipulative",
                         (rng.random(nb) < config.manipulative_share).astype(float)) > 0
    sponsored = rng.random(nb) < config.sponsored_share
    # menus: menu_size distinct item types per business (or the types given), one row each
    if types is None:
        chosen = np.argsort(rng.random((nb, nt)), axis=1)[:, :config.menu_size]
    else:
        chosen = np.tile(np.asarray(types, dtype=_INT), (nb, 1))
    menu_biz = np.repeat(np.arange(nb, dtype=_INT), chosen.shape[1])
    menu_type = chosen.ravel().astype(_INT)
    r = len(menu_biz)
    menu_base = np.maximum(1, np.round(base * np.exp(rng.normal(0.0, config.price_sd, r)))
                           ).astype(_INT)
    bits = rng.random((r, nf)) < config.feature_prob
    menu_feat = (bits * (1 << np.arange(nf, dtype=_INT))).sum(axis=1).astype(_INT)
    return {"rating": rating, "latency": latency, "manipulative": manipulative,
            "sponsored": sponsored, "menu_biz": menu_biz, "menu_type": menu_type,
            "menu_base": menu_base, "menu_feat": menu_feat}


def build_catalog(config: MarketConfig, world: World) -> Catalog:
    """Roles from the population, business traits from population columns of their names or
    drawn (stream ``market.setup``), and menus drawn or read from ``menu_file``."""
    is_biz = _roles(config, world)
    n = world.n_agents
    biz_agent = np.flatnonzero(is_biz).astype(_INT)
    cust_agent = np.flatnonzero(~is_biz).astype(_INT)
    if len(biz_agent) == 0 or len(cust_agent) == 0:
        raise ValueError("the market needs at least one business and one customer")
    agent_biz = np.full(n, -1, dtype=_INT)
    agent_biz[biz_agent] = np.arange(len(biz_agent))
    agent_cust = np.full(n, -1, dtype=_INT)
    agent_cust[cust_agent] = np.arange(len(cust_agent))
    base = int(round(config.base_price * 100))

    drawn = draw_businesses(config, world.population.attributes, biz_agent,
                            world.rng.get("market.setup"))
    rating, latency = drawn["rating"], drawn["latency"]
    manipulative, sponsored = drawn["manipulative"], drawn["sponsored"]
    menu_biz, menu_type = drawn["menu_biz"], drawn["menu_type"]
    menu_base, menu_feat = drawn["menu_base"], drawn["menu_feat"]
    nb, nt = len(biz_agent), len(config.item_types)
    if config.menu_file is not None:
        menu_biz, menu_type, menu_base, menu_feat = load_menu(
            experiment_path(config.menu_file, world.base_dir), config, agent_biz)
    row_of = np.full((nb, nt), -1, dtype=_INT)
    row_of[menu_biz, menu_type] = np.arange(len(menu_biz))
    return Catalog(
        biz_agent=biz_agent, cust_agent=cust_agent, agent_biz=agent_biz, agent_cust=agent_cust,
        rating=rating, latency=latency, manipulative=manipulative, sponsored=sponsored,
        capacity=np.full(nb, config.capacity, dtype=_INT), menu_biz=menu_biz,
        menu_type=menu_type, menu_base=menu_base, menu_feat=menu_feat, row_of=row_of,
        base=base, item_types=list(config.item_types), features=list(config.features))


_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": pd.read_csv, ".parquet": pd.read_parquet,
    ".jsonl": lambda f: pd.read_json(f, lines=True)}


def load_menu(path: Path, config: MarketConfig, agent_biz: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Menus from a CSV, Parquet or JSON-lines file: columns business_id (a business's agent
    id), item_type, price (currency units) and features (comma-separated). Returns each row's
    business index, item type, list price (cents) and feature mask; a bad row is named in a
    ValueError."""
    reader = _READERS.get(path.suffix.lower())
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

    types = {t: j for j, t in enumerate(config.item_types)}
    bit = {f: j for j, f in enumerate(config.features)}
    biz, typ, price, feat = [], [], [], []
    seen: set[tuple[int, int]] = set()
    feats = frame["features"] if "features" in frame.columns else [""] * len(frame)
    for i, (agent, item, p, fs) in enumerate(zip(frame["business_id"], frame["item_type"],
                                                frame["price"], feats, strict=True)):
        agent = int(agent)
        if not 0 <= agent < len(agent_biz) or agent_biz[agent] < 0:
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
        key = (int(agent_biz[agent]), types[item])
        if key in seen:
            raise fail(i, f"business {agent} lists {item!r} twice")
        seen.add(key)
        biz.append(key[0])
        typ.append(key[1])
        price.append(int(round(float(p) * 100)))
        feat.append(mask)
    return (np.array(biz, dtype=_INT), np.array(typ, dtype=_INT), np.array(price, dtype=_INT),
            np.array(feat, dtype=_INT))
