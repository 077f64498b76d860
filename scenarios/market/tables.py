"""Database tables of the marketplace (declared on the shared ``populace.storage.Base``).

Core objects:
    MarketBusiness, MarketMenuItem: the businesses and their menus (step 0).
    MarketNeed: each customer need, when it appears.
    MarketMessage: inquiries, proposals, payments and text messages, with their arrival time.
    MarketOrder: settled payments.
    MarketAction: the trace of every action (the engine writes it).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from populace.storage import Base, EventMixin


class MarketBusiness(EventMixin, Base):
    """A business: rating, capacity, response latency, manipulative and sponsored flags."""

    __tablename__ = "market_businesses"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    rating: Mapped[float] = mapped_column(Float)
    capacity: Mapped[int] = mapped_column(Integer)
    latency: Mapped[float] = mapped_column(Float)
    manipulative: Mapped[bool] = mapped_column(Boolean)
    sponsored: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str] = mapped_column(Text)


class MarketMenuItem(EventMixin, Base):
    """One item on a business's menu, with its list price (cents) and features."""

    __tablename__ = "market_menu"

    item_id: Mapped[int] = mapped_column(BigInteger)
    business_id: Mapped[int] = mapped_column(BigInteger)
    item_type: Mapped[str] = mapped_column(String(100))
    price: Mapped[int] = mapped_column(BigInteger)
    features: Mapped[str] = mapped_column(Text)  # comma-separated


class MarketNeed(EventMixin, Base):
    """A customer's need: item type, required features, budget and value (cents)."""

    __tablename__ = "market_needs"

    need_id: Mapped[int] = mapped_column(BigInteger)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    item_type: Mapped[str] = mapped_column(String(100))
    features: Mapped[str] = mapped_column(Text)
    budget: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int] = mapped_column(BigInteger)
    optimal_utility: Mapped[int] = mapped_column(BigInteger)  # full-information best choice


class MarketMessage(EventMixin, Base):
    """A message: ``inquiry`` (customer asks a business), ``proposal`` (business offers an item
    at a price), ``payment`` (customer pays a proposal) or ``text``. ``arrival`` is when it
    reaches the receiver, in steps (proposals arrive at step + the business's latency)."""

    __tablename__ = "market_messages"

    kind: Mapped[str] = mapped_column(String(10))
    sender_id: Mapped[int] = mapped_column(BigInteger)
    receiver_id: Mapped[int] = mapped_column(BigInteger)
    need_id: Mapped[int] = mapped_column(BigInteger)
    proposal_id: Mapped[int] = mapped_column(BigInteger)  # -1 unless about a proposal
    item_id: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[int] = mapped_column(BigInteger)
    arrival: Mapped[float] = mapped_column(Float)
    content: Mapped[str | None] = mapped_column(Text, nullable=True)


class MarketOrder(EventMixin, Base):
    """A settled payment: who paid whom for which proposal, and what the customer had seen."""

    __tablename__ = "market_orders"

    need_id: Mapped[int] = mapped_column(BigInteger)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    business_id: Mapped[int] = mapped_column(BigInteger)
    proposal_id: Mapped[int] = mapped_column(BigInteger)
    item_id: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[int] = mapped_column(BigInteger)
    utility: Mapped[int] = mapped_column(BigInteger)  # value x features matched - price
    arrival_rank: Mapped[int] = mapped_column(SmallInteger)  # 0: the first proposal received
    proposals_received: Mapped[int] = mapped_column(SmallInteger)


class MarketAction(EventMixin, Base):
    """One agent's action in a step and whether it took effect."""

    __tablename__ = "market_actions"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(10))
    proposal_id: Mapped[int] = mapped_column(BigInteger)
    target_id: Mapped[int] = mapped_column(BigInteger)
    contacts: Mapped[int] = mapped_column(Integer)
    markup: Mapped[float | None] = mapped_column(Float, nullable=True)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(24), nullable=True)


TABLES = ("market_businesses", "market_menu", "market_needs", "market_messages",
          "market_orders", "market_actions")
