"""Database tables of the macro-economy scenario (declared on the shared ``populace.storage.Base``).

Core objects:
    EconomyState: the aggregate state after each step (one row per step; step 0 is the start).
    EconomyFirm: each firm's price, wage, workers, output, sales, inventory and cash per step.
    EconomyAction: every household decision (the engine writes it from the action batch).
    EconomyLaw: the Phillips curve and Okun's law measured over the run (written at the end).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from populace.storage import Base, EventMixin, RunStepMixin


class EconomyState(RunStepMixin, Base):
    """The economy after a step. Money columns are balances at the end of the step; flows
    (GDP, consumption, taxes, transfers, interest, dividends, wages) are those of the step."""

    __tablename__ = "economy_state"

    price_level: Mapped[float] = mapped_column(Float)
    wage: Mapped[float] = mapped_column(Float)  # mean posted wage per efficiency unit
    interest_rate: Mapped[float] = mapped_column(Float)  # annual rate set for the next step
    unemployment: Mapped[float] = mapped_column(Float)
    participation: Mapped[float] = mapped_column(Float)
    employed: Mapped[int] = mapped_column(Integer)
    real_gdp: Mapped[float | None] = mapped_column(Float, nullable=True)  # NULL at step 0
    nominal_gdp: Mapped[float | None] = mapped_column(Float, nullable=True)
    consumption: Mapped[float] = mapped_column(Float)
    wages_paid: Mapped[float] = mapped_column(Float)
    dividends: Mapped[float] = mapped_column(Float)
    interest_paid: Mapped[float] = mapped_column(Float)
    tax_revenue: Mapped[float] = mapped_column(Float)
    transfers: Mapped[float] = mapped_column(Float)
    inventory: Mapped[float] = mapped_column(Float)
    household_money: Mapped[float] = mapped_column(Float)
    firm_money: Mapped[float] = mapped_column(Float)
    government_money: Mapped[float] = mapped_column(Float)
    money_created: Mapped[float] = mapped_column(Float)  # cumulative interest since step 0
    productivity_shock: Mapped[float] = mapped_column(Float)  # z of the AR(1), in logs
    demand_shock: Mapped[float] = mapped_column(Float)


class EconomyFirm(EventMixin, Base):
    """One firm in one step: prices and wages posted at the end of the step, flows of the step."""

    __tablename__ = "economy_firms"

    firm_id: Mapped[int] = mapped_column(Integer)
    price: Mapped[float] = mapped_column(Float)
    wage: Mapped[float] = mapped_column(Float)
    workers: Mapped[int] = mapped_column(Integer)
    labour_demand: Mapped[float] = mapped_column(Float)  # efficiency units wanted
    output: Mapped[float] = mapped_column(Float)
    demand: Mapped[float] = mapped_column(Float)  # units households wanted to buy
    sales: Mapped[float] = mapped_column(Float)  # units sold
    inventory: Mapped[float] = mapped_column(Float)
    money: Mapped[float] = mapped_column(Float)


class EconomyAction(EventMixin, Base):
    """A household's decision in a step, and what came of it."""

    __tablename__ = "economy_actions"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(20))
    propensity: Mapped[float | None] = mapped_column(Float, nullable=True)  # stated, 0-1
    consume_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    firm: Mapped[int] = mapped_column(Integer)  # firm applied to, -1 if none
    hired: Mapped[bool] = mapped_column(Boolean)
    spent: Mapped[float] = mapped_column(Float)  # money spent on goods this step


class EconomyLaw(EventMixin, Base):
    """A macroeconomic regularity measured over the run: the correlation (and OLS slope of
    ``y`` on ``x``) between two series over the steps after the burn-in."""

    __tablename__ = "economy_laws"

    law: Mapped[str] = mapped_column(String(20))  # phillips | okun
    x: Mapped[str] = mapped_column(String(40))
    y: Mapped[str] = mapped_column(String(40))
    correlation: Mapped[float | None] = mapped_column(Float, nullable=True)
    slope: Mapped[float | None] = mapped_column(Float, nullable=True)
    n: Mapped[int] = mapped_column(Integer)
    first_step: Mapped[int] = mapped_column(Integer)


TABLES = ("economy_state", "economy_firms", "economy_actions", "economy_laws")
