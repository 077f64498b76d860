"""The state of the macro-economy, declared as named arrays (saved and restored by
``ArrayState``).

Core objects:
    MacroState: everything that changes during a run: households, firms, the public accounts,
        the two shocks, the per-step history and the central bank's latest announcements.
    HouseholdState: one entry per household (agent).
    FirmState: one entry per firm.
    PublicAccounts: the government's balance, the central bank's rate and the money ledger.
    MacroHistory: the aggregates of every step so far (index = step), which observations, the
        central bank and the end-of-run laws read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from populace.simulator.state import ArrayState

from .mechanics import demand_shares, growth


@dataclass
class HouseholdState(ArrayState):
    """The households, one entry per agent id."""

    skill: np.ndarray = field(metadata={"save": False})
    """Efficiency units of labour supplied when working; fixed by ``setup``, so not saved."""
    money: np.ndarray
    employer: np.ndarray
    """int64: the firm the household works at, -1 if none."""
    work: np.ndarray
    """bool: its current labour choice."""
    consume: np.ndarray
    """Its current consumption share."""
    income: np.ndarray
    """Its income of the last step, after tax and transfer."""

    def __len__(self) -> int:
        return len(self.money)


@dataclass
class FirmState(ArrayState):
    """The firms, one entry per firm. Prices and wages are those posted at the end of the last
    step; ``labour_demand``, ``output``, ``demand`` and ``sales`` are the last step's."""

    price: np.ndarray
    wage: np.ndarray
    """Wage per efficiency unit of labour."""
    expected: np.ndarray
    """Adaptive expectation of demand, in units of goods."""
    inventory: np.ndarray
    money: np.ndarray
    workers: np.ndarray
    """int64: households employed."""
    labour_demand: np.ndarray
    """Efficiency units of labour wanted."""
    output: np.ndarray
    demand: np.ndarray
    """Units households wanted to buy."""
    sales: np.ndarray
    """Units sold."""

    def __len__(self) -> int:
        return len(self.price)


@dataclass
class PublicAccounts(ArrayState):
    """The government's balance, the central bank's rate, and the ledger that checks that money
    is conserved (households + firms + government = initial + created)."""

    government: float
    created: float
    """Money created by the central bank (interest paid) since step 0."""
    initial_money: float
    rate: float
    """The annual interest rate paid on money in the next step."""

    # The four are saved as one array, as the scenario's checkpoints have always held them.
    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The four numbers as one array ``scalars``."""
        return {prefix + "scalars": np.array([self.government, self.created,
                                              self.initial_money, self.rate])}

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        """Restore what ``to_arrays`` gave."""
        self.government, self.created, self.initial_money, self.rate = (
            float(x) for x in arrays[prefix + "scalars"])


@dataclass
class MacroHistory(ArrayState):
    """The economy's aggregates after every step so far (index = step; step 0 is the start)."""

    price_level: np.ndarray
    """Demand-weighted mean of posted prices."""
    wage: np.ndarray
    """Mean posted wage per efficiency unit."""
    unemployment: np.ndarray
    real_gdp: np.ndarray
    """NaN at step 0."""
    nominal_gdp: np.ndarray
    interest_rate: np.ndarray
    """The rate set at the end of the step."""

    @classmethod
    def empty(cls) -> MacroHistory:
        """A history of no steps."""
        return cls(**{f.name: np.zeros(0) for f in dataclasses.fields(cls)})

    def append(self, firms: FirmState, elasticity: float, *, rate: float, real_gdp: float,
               nominal_gdp: float, unemployment: float) -> None:
        """Add the aggregates of a step, the price level weighting firms' prices by the demand
        shares of ``elasticity``."""
        values = {"price_level": float(np.dot(demand_shares(firms.price, elasticity),
                                              firms.price)),
                  "wage": float(firms.wage.mean()), "unemployment": unemployment,
                  "real_gdp": real_gdp, "nominal_gdp": nominal_gdp, "interest_rate": rate}
        for name, value in values.items():
            setattr(self, name, np.append(getattr(self, name), value))

    def last(self) -> dict[str, float]:
        """The aggregates of the last step."""
        return {f.name: float(getattr(self, f.name)[-1]) for f in dataclasses.fields(self)}

    def series(self) -> dict[str, np.ndarray]:
        """The histories (copies) and the growth rates derived from them: ``inflation``,
        ``wage_inflation``, ``real_gdp_growth`` (per step) and ``unemployment_change``."""
        h = {name: np.array(value, dtype=np.float64) for name, value in self.to_arrays().items()}
        h["inflation"] = growth(h["price_level"])
        h["wage_inflation"] = growth(h["wage"])
        h["real_gdp_growth"] = growth(h["real_gdp"])
        h["unemployment_change"] = np.r_[np.nan, np.diff(h["unemployment"])]
        return h


@dataclass
class MacroState(ArrayState):
    """The whole economy."""

    households: HouseholdState
    firms: FirmState
    public: PublicAccounts
    shock: np.ndarray
    """(2,) the AR(1) productivity and demand shocks, in logs."""
    history: MacroHistory
    news: list[str] = field(default_factory=list)
    """The latest central-bank announcements (broadcasts), oldest first."""
