"""The changing state of the marketplace, as named arrays that checkpoints save.

Core objects:
    MarketState: everything a run changes: businesses, customers' wallets, needs, pending
        inquiries, open proposals, price statistics, counters, running totals and inboxes.
    Businesses, Needs: one row per business / per customer.
    Inquiries, Proposals: growing and shrinking tables (``Rows``): one row per pending
        inquiry / open proposal.
    PriceStats, Counters, Totals, Inboxes: what the metrics and the prompts need.

The operations here are bookkeeping on the state only; the rules of the market (who may
pay, what a search finds) are in ``search`` and ``settlement``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np

from populace.simulator.arrays import pack_strings, unpack_strings
from populace.simulator.state import ArrayState

_INT = np.int64


def _ints(n: int, value: int = 0) -> np.ndarray:
    return np.full(n, value, dtype=_INT)


@dataclass
class Rows(ArrayState):
    """Columns of equal length, one row per record; rows are appended and dropped together."""

    def __len__(self) -> int:
        return len(getattr(self, dataclasses.fields(self)[0].name))

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` is true (or at the positions it lists)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name)[mask])

    def append(self, **columns: np.ndarray) -> None:
        """Add rows given as one array per column (every column, each of the same length)."""
        for f in dataclasses.fields(self):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), columns[f.name]]))

    @classmethod
    def empty(cls) -> Self:
        """A table without rows: float64 columns where the field's metadata says
        ``{"float": True}``, int64 ones otherwise."""
        return cls(**{f.name: np.zeros(0, dtype=np.float64 if f.metadata.get("float")
                                       else _INT) for f in dataclasses.fields(cls)})


@dataclass
class Inquiries(Rows):
    """Inquiries waiting for the business's answer: customer and business indexes, the
    need asked about and the step of the search."""

    cust: np.ndarray
    biz: np.ndarray
    need: np.ndarray
    step: np.ndarray

    def pending(self, n_biz: int) -> np.ndarray:
        """Number of inquiries waiting at each business."""
        return np.bincount(self.biz, minlength=n_biz)


@dataclass
class Proposals(Rows):
    """Open proposals, sorted by id: customer and business indexes, menu row, need, price
    (cents), step made and arrival time (step + the business's latency)."""

    id: np.ndarray
    cust: np.ndarray
    biz: np.ndarray
    row: np.ndarray
    need: np.ndarray
    price: np.ndarray
    step: np.ndarray
    arrival: np.ndarray = field(metadata={"float": True})

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Positions of proposal ``ids`` (call with at least one open proposal); an unknown
        id gets some valid position, so callers compare ``self.id[pos]`` with it."""
        return np.minimum(np.searchsorted(self.id, ids), len(self.id) - 1)

    def arrived(self, step: int, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                               np.ndarray, np.ndarray]:
        """Proposals made before ``step`` to the customers where ``wanted`` (by customer
        index) is true, in the order each customer received them (arrival, then id).

        Returns:
            positions of those proposals, grouped by customer; each one's arrival rank for
            its customer (0: first received); the position in the first array where each
            customer's group starts; and each group's size.
        """
        idx = np.flatnonzero((self.step < step) & wanted[self.cust])
        idx = idx[np.lexsort((self.id[idx], self.arrival[idx], self.cust[idx]))]
        who = self.cust[idx]
        starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
        sizes = np.diff(np.r_[starts, len(who)])
        rank = np.arange(len(idx)) - np.repeat(starts, sizes)
        return idx, rank, starts, sizes


@dataclass
class Needs(ArrayState):
    """Each customer's current need (id -1: none): item type, required features (bit mask),
    budget, value and full-information best utility (cents), the step of its search (-1:
    not searched yet) and how many businesses the search asked."""

    id: np.ndarray
    type: np.ndarray
    feat: np.ndarray
    budget: np.ndarray
    value: np.ndarray
    optimal: np.ndarray
    searched: np.ndarray
    contacted: np.ndarray

    @classmethod
    def none(cls, n_cust: int) -> Needs:
        """No customer has a need."""
        return cls(id=_ints(n_cust, -1), type=_ints(n_cust, -1), feat=_ints(n_cust),
                   budget=_ints(n_cust), value=_ints(n_cust), optimal=_ints(n_cust),
                   searched=_ints(n_cust, -1), contacted=_ints(n_cust))


@dataclass
class Businesses(ArrayState):
    """Each business's markup (set by its answers; ``answered``: set at least once),
    balance and revenue (cents), orders taken and inquiries received in this step and the
    previous one."""

    markup: np.ndarray
    answered: np.ndarray
    balance: np.ndarray
    revenue: np.ndarray
    sold: np.ndarray
    sold_last: np.ndarray
    inquired: np.ndarray
    inquired_last: np.ndarray

    @classmethod
    def opening(cls, n_biz: int) -> Businesses:
        """Businesses before their first answer: list prices, no money, no sales."""
        return cls(markup=np.zeros(n_biz), answered=np.zeros(n_biz, dtype=bool),
                   balance=_ints(n_biz), revenue=_ints(n_biz), sold=_ints(n_biz),
                   sold_last=_ints(n_biz), inquired=_ints(n_biz), inquired_last=_ints(n_biz))

    def new_step(self) -> None:
        """This step's sales and inquiries become the previous step's; start from zero."""
        n = len(self.sold)
        self.sold_last, self.inquired_last = self.sold, self.inquired
        self.sold, self.inquired = _ints(n), _ints(n)


@dataclass
class PriceStats(ArrayState):
    """Count, sum and sum of squares of the prices paid, per item type (price dispersion)."""

    count: np.ndarray
    sum: np.ndarray
    sq: np.ndarray

    def add(self, types: np.ndarray, prices: np.ndarray) -> None:
        """Count payments of ``prices`` (cents) for items of ``types``."""
        np.add.at(self.count, types, 1)
        np.add.at(self.sum, types, prices.astype(np.float64))
        np.add.at(self.sq, types, prices.astype(np.float64) ** 2)


@dataclass
class Packed(ArrayState):
    """Scalars saved together: the ``int`` fields as one int64 array and the ``float`` fields
    as one float64 array, each in declaration order (checkpoints hold two small arrays, not
    one per counter)."""

    def _groups(self) -> tuple[list[str], list[str]]:
        names = [(f.name, f.type in ("float", float)) for f in dataclasses.fields(self)]
        return [n for n, fl in names if not fl], [n for n, fl in names if fl]

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The int fields under ``ints``, the float fields under ``floats``."""
        ints, floats = self._groups()
        out = {}
        if ints:
            out[prefix + "ints"] = np.array([getattr(self, n) for n in ints], dtype=_INT)
        if floats:
            out[prefix + "floats"] = np.array([getattr(self, n) for n in floats],
                                              dtype=np.float64)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        """Restore what ``to_arrays`` gave."""
        ints, floats = self._groups()
        if ints:
            for name, v in zip(ints, arrays[prefix + "ints"].tolist(), strict=True):
                setattr(self, name, int(v))
        if floats:
            for name, v in zip(floats, arrays[prefix + "floats"].tolist(), strict=True):
                setattr(self, name, float(v))


@dataclass
class Counters(Packed):
    """Ids given out, money paid in, and counts the metrics report."""

    n_needs: int = 0  # needs created (the next need's id)
    next_proposal: int = 0  # the next proposal's id
    income_paid: int = 0  # cents of income paid to customers in all
    manip_revenue: int = 0  # cents paid to manipulative businesses
    money_start: int = 0  # cents customers held at the start
    llm_fallbacks: int = 0  # model rankings that fell back to the lexical order


@dataclass
class Totals(Packed):
    """Running totals over closed needs and orders (cents for money). The int fields are in
    alphabetical order, the order checkpoints have always held them in."""

    closed: int = 0  # needs closed (met or abandoned)
    contacted: int = 0  # businesses asked, over the closed needs that were searched
    first: int = 0  # orders that paid the first proposal received
    left: int = 0  # needs abandoned
    met: int = 0  # needs met
    optimal: int = 0  # full-information best utility of the closed needs
    orders: int = 0  # orders settled
    searched_needs: int = 0  # closed needs that were searched
    welfare: int = 0  # utility of the closed needs (0 for abandoned ones)
    chance_first: float = 0.0  # sum over orders of 1 / proposals received (random choice)


AUDIENCES = ("all", "customers", "businesses")
"""Who an announcement of the platform is for (``Inboxes.notices``), by code."""


@dataclass
class Inboxes(ArrayState):
    """The latest ``size`` text messages each agent received, as (sender, text), oldest
    first, and the latest ``size`` announcements of the platform, as (audience code in
    ``AUDIENCES``, text), oldest first. Saved as receiver, sender and text columns, by
    receiver, and as audience and text columns."""

    size: int = field(default=0, metadata={"save": False})
    boxes: dict[int, deque[tuple[int, str]]] = field(default_factory=dict,
                                                     metadata={"save": False})
    notices: list[tuple[int, str]] = field(default_factory=list, metadata={"save": False})

    def deliver(self, receiver: int, sender: int, text: str) -> None:
        """Put a message in ``receiver``'s inbox (the oldest goes when it is full)."""
        if self.size == 0:
            return
        box = self.boxes.setdefault(receiver, deque(maxlen=self.size))
        box.append((sender, text))

    def inbox(self, agent: int) -> list[dict[str, Any]]:
        """The latest text messages ``agent`` received, oldest first."""
        return [{"sender": s, "content": t} for s, t in self.boxes.get(agent, ())]

    def announce(self, audience: str, text: str) -> None:
        """Keep an announcement of the platform for ``audience`` (one of ``AUDIENCES``): one
        entry for all its readers, however many they are (the oldest goes beyond ``size``)."""
        if self.size == 0:
            return
        self.notices = [*self.notices, (AUDIENCES.index(audience), text)][-self.size:]

    def announcements(self, is_business: bool) -> list[str]:
        """The kept announcements a business (or a customer) reads, oldest first."""
        mine = AUDIENCES.index("businesses" if is_business else "customers")
        return [t for a, t in self.notices if a in (0, mine)]

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Receiver, sender and text of every kept message; audience and text of every kept
        announcement."""
        items = [(r, s, t) for r, box in sorted(self.boxes.items()) for s, t in box]
        ends, data = pack_strings(i[2] for i in items)
        n_ends, n_data = pack_strings(t for _, t in self.notices)
        return {prefix + "receiver": np.array([i[0] for i in items], dtype=_INT),
                prefix + "sender": np.array([i[1] for i in items], dtype=_INT),
                prefix + "text.ends": ends, prefix + "text.data": data,
                prefix + "notice.audience": np.array([a for a, _ in self.notices], dtype=_INT),
                prefix + "notice.text.ends": n_ends, prefix + "notice.text.data": n_data}

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        """Restore what ``to_arrays`` gave (a checkpoint from before announcements has
        none)."""
        self.boxes = {}
        texts = unpack_strings(arrays[prefix + "text.ends"], arrays[prefix + "text.data"])
        for r, s, text in zip(arrays[prefix + "receiver"].tolist(),
                              arrays[prefix + "sender"].tolist(), texts, strict=True):
            self.deliver(r, s, text)
        self.notices = []
        if prefix + "notice.audience" in arrays:
            notices = unpack_strings(arrays[prefix + "notice.text.ends"],
                                     arrays[prefix + "notice.text.data"])
            self.notices = list(zip(arrays[prefix + "notice.audience"].tolist(), notices,
                                    strict=True))


@dataclass
class MarketState(ArrayState):
    """Everything a market run changes (indexes of businesses and customers as in the
    ``Catalog``; money in int64 cents)."""

    businesses: Businesses
    wallets: np.ndarray  # each customer's balance
    needs: Needs
    inquiries: Inquiries
    proposals: Proposals
    prices: PriceStats
    counters: Counters
    totals: Totals
    inboxes: Inboxes

    @classmethod
    def opening(cls, n_biz: int, n_cust: int, n_types: int, wallet: int,
                inbox_size: int) -> MarketState:
        """The market before its first need: full wallets of ``wallet`` cents, nothing
        asked, offered or sold."""
        wallets = _ints(n_cust, wallet)
        return cls(businesses=Businesses.opening(n_biz), wallets=wallets,
                   needs=Needs.none(n_cust), inquiries=Inquiries.empty(),
                   proposals=Proposals.empty(),
                   prices=PriceStats(np.zeros(n_types), np.zeros(n_types), np.zeros(n_types)),
                   counters=Counters(money_start=int(wallets.sum())), totals=Totals(),
                   inboxes=Inboxes(size=inbox_size))

    def grow(self, n_biz: int, n_cust: int, wallet: int) -> None:
        """Make room for ``n_biz`` businesses and ``n_cust`` customers that joined (the next
        indexes): businesses as at the opening, customers with ``wallet`` cents and no need.
        The caller books the wallets as money paid in."""
        opening, none = Businesses.opening(n_biz), Needs.none(n_cust)
        for table, new in ((self.businesses, opening), (self.needs, none)):
            for f in dataclasses.fields(table):
                setattr(table, f.name, np.concatenate([getattr(table, f.name),
                                                       getattr(new, f.name)]))
        self.wallets = np.concatenate([self.wallets, _ints(n_cust, wallet)])

    def money(self) -> int:
        """All the money customers and businesses hold, in cents."""
        return int(self.wallets.sum()) + int(self.businesses.balance.sum())

    def close_needs(self, cust: np.ndarray, utility: np.ndarray, met: bool) -> None:
        """End customers' needs, met (``utility``: what each got) or abandoned; count them
        in the totals; their open proposals and pending inquiries go."""
        needs, t = self.needs, self.totals
        t.welfare += int(utility.sum())
        t.optimal += int(needs.optimal[cust].sum())
        t.closed += len(cust)
        if met:
            t.met += len(cust)
        else:
            t.left += len(cust)
        searched = needs.searched[cust] >= 0
        t.searched_needs += int(searched.sum())
        t.contacted += int(needs.contacted[cust][searched].sum())
        gone = needs.id[cust]
        needs.id[cust] = -1
        needs.type[cust] = -1
        if len(self.proposals):
            self.proposals.keep(~np.isin(self.proposals.need, gone))
        if len(self.inquiries):
            self.inquiries.keep(~np.isin(self.inquiries.need, gone))

    def lapse(self, step: int, ttl: int) -> None:
        """Proposals made ``ttl`` steps ago or earlier are no longer payable."""
        live = self.proposals.step > step - ttl
        if not live.all():
            self.proposals.keep(live)
