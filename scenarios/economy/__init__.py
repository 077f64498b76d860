"""The macro-economy scenario (EconAgent style): households decide each month whether to work
and what share of their money to spend; firms produce, set prices from the imbalance of demand
and supply and wages from the labour market; a central bank sets the interest rate by a Taylor
rule; income taxes are redistributed; AR(1) shocks drive business cycles. Money is conserved and
checked every step; the run ends with the Phillips curve and Okun's law.

Core objects:
    EconomyScenario: the scenario class (registered as ``economy``).
    EconomyObservation: what a household knows when it decides.
    EconomyConfig, HouseholdRuleParams: its configuration and rule-policy parameters.
    HouseholdDecision: the answer of a language-model household.
    AccountingError: raised when the money identity breaks.
"""

from .config import (
    AR1Config,
    CentralBankConfig,
    EconomyConfig,
    FirmConfig,
    HouseholdRuleParams,
    ShockConfig,
    TaxBracket,
    TaxConfig,
)
from .decisions import HouseholdDecision
from .mechanics import AccountingError
from .observation import EconomyObservation
from .scenario import EconomyScenario

__all__ = [
    "AR1Config",
    "AccountingError",
    "CentralBankConfig",
    "EconomyConfig",
    "EconomyObservation",
    "EconomyScenario",
    "FirmConfig",
    "HouseholdDecision",
    "HouseholdRuleParams",
    "ShockConfig",
    "TaxBracket",
    "TaxConfig",
]
