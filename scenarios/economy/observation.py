"""What a household of the macro-economy knows when it decides.

Core objects:
    EconomyObservation: a batch of households' own situations and the economy's last figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator.step import Observation

from .mechanics import TINY


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
    news: tuple[str, ...] = ()  # the central bank's latest announcements, oldest first

    def months_of_wealth(self) -> np.ndarray:
        """Money over the wage income of one step (how long savings last without work)."""
        return self.money / np.maximum(self.wage_offer, TINY)

    def real_wage(self) -> np.ndarray:
        """Wage per efficiency unit in goods: what an hour of work buys."""
        return self.wage_offer / np.maximum(self.skill * self.price_level, TINY)
