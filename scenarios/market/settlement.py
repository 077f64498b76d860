"""Settlement: which actions the platform accepts, proposals, payments and the invariants that
keep money exact.

Core objects:
    MarketInvariantError: money was created or destroyed, or a proposal paid twice.
    REJECTIONS: the reasons an action is refused (counted as ``rejected.<reason>``).
    Outcome: a step's verdicts (accepted, reason) and its orders and revenue.
    Settlement: refuses impossible actions, settles payments, answers inquiries with
        proposals, delivers text messages, pays income and checks that money adds up.

All money is in integer cents, so conservation is exact: the step fails with a clear error if
customers' and businesses' balances ever stop adding up to the starting money plus the income
paid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from populace.simulator.records import Records

from .actions import BUSINESS_ACTIONS, CUSTOMER_ACTIONS, LEAVE, PAY, SEARCH, MarketArgs
from .catalog import Catalog, match
from .config import MarketConfig
from .messages import Messages, message_rows
from .state import MarketState

_INT = np.int64

REJECTIONS = ("wrong_role", "no_need", "unknown_proposal", "not_yours", "price_mismatch",
              "insufficient_funds", "sold_out", "unknown_business", "unknown_customer",
              "nothing_to_answer")


class MarketInvariantError(RuntimeError):
    """Money was created or destroyed, or a proposal was paid twice: a bug, never input."""


@dataclass
class Outcome:
    """What a step's batch did.

    Attributes:
        ok: per action, whether it took effect (so far: refusals clear it).
        reason: per action, why it was refused (None: accepted).
        rejected: refusals counted by reason.
        orders, revenue: payments settled in the step, and their sum in cents.
    """

    ok: np.ndarray
    reason: np.ndarray
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECTIONS, 0))
    orders: int = 0
    revenue: int = 0

    @classmethod
    def of(cls, n: int) -> Outcome:
        """A batch of ``n`` actions, all accepted until refused."""
        return cls(np.ones(n, dtype=bool), np.full(n, None, dtype=object))

    def refuse(self, mask: np.ndarray, why: str) -> None:
        """Refuse the actions of ``mask`` not refused yet, for ``why`` (one of REJECTIONS)."""
        mask = mask & self.ok
        self.rejected[why] += int(mask.sum())
        self.ok[mask] = False
        self.reason[mask] = why


class Settlement:
    """The platform's side of a step: verdicts, payments, proposals, messages and money.

    Args:
        config: the market's configuration.
        catalog: roles, businesses and menus.
        state: the market's state, changed in place.
    """

    def __init__(self, config: MarketConfig, catalog: Catalog, state: MarketState) -> None:
        self.config, self.catalog, self.state = config, catalog, state

    def check_roles(self, out: Outcome, codes: np.ndarray, biz: np.ndarray,
                    cust: np.ndarray) -> np.ndarray:
        """Refuse actions of the other role (``wrong_role``) and a customer's pay, leave or
        search without a need (``no_need``); ``biz`` / ``cust``: each actor's business or
        customer index (-1: not one). Returns customer indexes with 0 for businesses (safe
        to index with; mask with ``cust >= 0``)."""
        out.refuse((biz >= 0) & ~np.isin(codes, BUSINESS_ACTIONS), "wrong_role")
        out.refuse((cust >= 0) & ~np.isin(codes, CUSTOMER_ACTIONS), "wrong_role")
        cs = np.where(cust >= 0, cust, 0)
        has_need = (cust >= 0) & (self.state.needs.id[cs] >= 0)
        out.refuse(np.isin(codes, (PAY, LEAVE, SEARCH)) & ~has_need, "no_need")
        return cs

    def pay(self, out: Outcome, pay: np.ndarray, agents: np.ndarray, cs: np.ndarray,
            args: MarketArgs, step: int) -> tuple[Records, Messages | None]:
        """Settle the payments of ``pay`` (a mask over the batch; ``cs``: customer indexes),
        refusing unknown, foreign, mispriced and unaffordable proposals and, first come first
        served in batch order, those beyond a business's capacity. Returns the
        ``market_orders`` rows and the payments' message rows."""
        state, cat = self.state, self.catalog
        props, biz = state.proposals, state.businesses
        if not pay.any():
            return {}, None
        if not len(props):
            out.refuse(pay, "unknown_proposal")
            return {}, None
        pid = args.proposal_id
        # open proposals are sorted by id; one that has not arrived yet is not known either
        safe = props.find(pid)
        out.refuse(pay & ((props.id[safe] != pid) | (props.step[safe] >= step)),
                   "unknown_proposal")
        out.refuse(pay & (props.cust[safe] != cs), "not_yours")
        claimed = args.price
        out.refuse(pay & (claimed >= 0) & (claimed != props.price[safe]), "price_mismatch")
        out.refuse(pay & (props.price[safe] > state.wallets[cs]), "insufficient_funds")
        # capacity, first come first served in batch (activation) order
        cand = np.flatnonzero(pay & out.ok)
        if len(cand) == 0:
            return {}, None
        b = props.biz[safe[cand]]
        order = np.argsort(b, kind="stable")
        bo = b[order]
        starts = np.flatnonzero(np.r_[True, bo[1:] != bo[:-1]])
        rank = np.empty(len(cand), dtype=_INT)
        rank[order] = np.arange(len(cand)) - np.repeat(starts, np.diff(np.r_[starts, len(bo)]))
        full = np.zeros(len(out.ok), dtype=bool)
        full[cand] = rank >= cat.capacity[b] - biz.sold[b]
        out.refuse(full, "sold_out")
        done = np.flatnonzero(pay & out.ok)
        if len(done) == 0:
            return {}, None
        p = safe[done]
        c, b, price = cs[done], props.biz[p], props.price[p]
        if len(np.unique(p)) != len(p):
            raise MarketInvariantError(f"step {step}: a proposal would be paid twice")
        state.wallets[c] -= price
        np.add.at(biz.balance, b, price)
        np.add.at(biz.revenue, b, price)
        np.add.at(biz.sold, b, 1)
        needs = state.needs
        utility = np.floor(needs.value[c] * match(needs.feat[c], cat.menu_feat[props.row[p]])
                           ).astype(_INT) - price
        # arrival rank among the proposals the customer had received for this need
        paying = np.zeros(cat.n_cust, dtype=bool)
        paying[c] = True
        mine, place_of, starts, sizes = props.arrived(step, paying)
        place = np.empty(len(props), dtype=_INT)
        place[mine] = place_of
        total = np.zeros(cat.n_cust, dtype=_INT)
        total[props.cust[mine][starts]] = sizes
        rank, received = place[p], total[c]
        t = state.totals
        t.orders += len(p)
        t.first += int((rank == 0).sum())
        t.chance_first += float(np.sum(1.0 / np.maximum(received, 1)))
        state.counters.manip_revenue += int(price[cat.manipulative[b]].sum())
        state.prices.add(needs.type[c], price)
        out.orders = len(p)
        out.revenue = int(price.sum())
        need = needs.id[c].copy()
        orders = {
            "need_id": need, "customer_id": agents[done], "business_id": cat.biz_agent[b],
            "proposal_id": props.id[p].copy(), "item_id": props.row[p].copy(),
            "price": price.copy(), "utility": utility, "arrival_rank": rank,
            "proposals_received": received}
        paid = message_rows("payment", agents[done], cat.biz_agent[b], need,
                            np.full(len(p), float(step)), proposal=props.id[p].copy(),
                            item=props.row[p].copy(), price=price.copy())
        state.close_needs(c, utility, met=True)
        return {"market_orders": orders}, paid

    def respond(self, out: Outcome, respond: np.ndarray, biz: np.ndarray, args: MarketArgs,
                step: int) -> Messages | None:
        """Businesses of ``respond`` (a mask over the batch; ``biz``: business indexes) set
        their markup, when they give one, and answer every pending inquiry with a proposal
        at their posted price, arriving after their latency; one with nothing to answer is
        refused (``nothing_to_answer``). Returns the proposals' message rows."""
        state, cat = self.state, self.catalog
        inq, businesses = state.inquiries, state.businesses
        rows = np.flatnonzero(respond & out.ok)
        markup = args.markup[rows]
        b = biz[rows]
        given = np.isfinite(markup)
        businesses.markup[b[given]] = np.clip(markup[given], -0.99, 10.0)
        businesses.answered[b[given]] = True
        answering = np.zeros(cat.n_biz, dtype=bool)
        answering[b] = True
        nothing = np.zeros(len(out.ok), dtype=bool)
        nothing[rows] = inq.pending(cat.n_biz)[b] == 0
        out.refuse(nothing, "nothing_to_answer")
        take = answering[inq.biz] if len(inq) else np.zeros(0, dtype=bool)
        if not take.any():
            return None
        ci, bi, need = inq.cust[take], inq.biz[take], inq.need[take]
        row = cat.row_of[bi, state.needs.type[ci]]
        price = cat.posted_price(row, businesses.markup)
        counters = state.counters
        ids = np.arange(counters.next_proposal, counters.next_proposal + len(ci), dtype=_INT)
        counters.next_proposal += len(ci)
        arrival = step + cat.latency[bi]
        state.proposals.append(id=ids, cust=ci, biz=bi, row=row, need=need, price=price,
                               step=np.full(len(ci), step, dtype=_INT), arrival=arrival)
        inq.keep(~take)
        return message_rows("proposal", cat.biz_agent[bi], cat.cust_agent[ci], need, arrival,
                            proposal=ids, item=row, price=price)

    def send(self, out: Outcome, message: np.ndarray, agents: np.ndarray, biz: np.ndarray,
             cust: np.ndarray, cs: np.ndarray, args: MarketArgs, step: int) -> Messages | None:
        """Deliver the text messages of ``message`` (a mask over the batch): customers write
        to businesses and businesses to customers, others are refused (``unknown_business``,
        ``unknown_customer``). Returns their message rows."""
        cat, state = self.catalog, self.state
        target = args.target_id
        safe = np.clip(target, 0, len(cat.agent_biz) - 1)
        in_range = (target >= 0) & (target < len(cat.agent_biz))
        out.refuse(message & (cust >= 0) & ~(in_range & (cat.agent_biz[safe] >= 0)),
                   "unknown_business")
        out.refuse(message & (biz >= 0) & ~(in_range & (cat.agent_cust[safe] >= 0)),
                   "unknown_customer")
        sent = out.ok & message
        if not sent.any():
            return None
        texts = args.content[sent].tolist()
        need = np.where(cust[sent] >= 0, state.needs.id[cs[sent]], -1)
        for sender, receiver, text in zip(agents[sent].tolist(), target[sent].tolist(), texts,
                                          strict=True):
            state.inboxes.deliver(receiver, sender, text or "")
        return message_rows("text", agents[sent], target[sent], need,
                            np.full(int(sent.sum()), float(step)), content=texts)

    def pay_income(self) -> None:
        """Every customer receives the step's ``income``."""
        if self.config.income > 0:
            pay = int(round(self.config.income * 100))
            self.state.wallets += pay
            self.state.counters.income_paid += pay * self.catalog.n_cust

    def check_money(self, step: int) -> None:
        """Raise MarketInvariantError unless balances add up to the starting money plus the
        income paid and no customer's balance is negative."""
        state = self.state
        total = state.money()
        expected = state.counters.money_start + state.counters.income_paid
        if total != expected:
            raise MarketInvariantError(
                f"step {step}: money is not conserved: balances add up to {total} cents, "
                f"expected {expected} (start {state.counters.money_start} + income "
                f"{state.counters.income_paid})")
        if (state.wallets < 0).any():
            raise MarketInvariantError(f"step {step}: a customer's balance went negative")
