"""The two-sided marketplace scenario (Magentic-Marketplace style): customers with needs search,
ask businesses for proposals and pay one; the platform settles payments in integer cents.

Core objects:
    MarketScenario: the scenario class (registered as ``market``).
    MarketConfig, MarketRuleParams: its configuration.
    MarketObservation: what its agents perceive.
    MarketInvariantError: raised when money would be created or destroyed (a bug).
    hhi, gini, coefficient_of_variation: the market measures.
"""

from .config import MarketConfig, MarketRuleParams
from .metrics import coefficient_of_variation, gini, hhi
from .observation import MarketObservation
from .scenario import MarketScenario
from .settlement import MarketInvariantError

__all__ = [
    "MarketConfig",
    "MarketInvariantError",
    "MarketObservation",
    "MarketRuleParams",
    "MarketScenario",
    "coefficient_of_variation",
    "gini",
    "hhi",
]
