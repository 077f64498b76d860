"""The rule-based household, vectorised over a batch.

Core objects:
    HouseholdRulePolicy: labour supply that rises with the real wage relative to a reservation
        wage and falls with wealth; a consumption share that falls with the interest rate and
        rises when wealth is low. See ``HouseholdRuleParams`` for the formulas.
"""

from __future__ import annotations

import numpy as np

from populace.simulator.actions import ActionBatch
from populace.simulator.policy import Policy
from populace.simulator.step import StepContext

from .actions import NOT_WORK, WORK, EconomyArgs
from .config import HouseholdRuleParams
from .observation import EconomyObservation


class HouseholdRulePolicy(Policy[EconomyObservation, EconomyArgs]):
    """Rule-based households.

    Args:
        params: validated rule parameters.
    """

    def __init__(self, params: HouseholdRuleParams) -> None:
        self.params = params

    def decide(self, obs: EconomyObservation, ctx: StepContext) -> ActionBatch[EconomyArgs]:
        """A labour choice and a consumption share for every household of ``obs``."""
        p = self.params
        agents = obs.agents
        months = obs.months_of_wealth()
        real_wage = obs.real_wage()
        # a taste for work fixed per household (drawn for step 0, keyed by agent id), and
        # fresh draws per step: decisions do not depend on who else is in the batch
        taste = ctx.rng.normal("economy.rules.taste", 0, agents)[:, 0]
        x = (p.work_bias + p.labour_elasticity * np.log(real_wage / p.reservation_wage)
             - p.wealth_effect * np.log1p(months) + p.taste_sd * taste)
        propensity = 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))
        work = ctx.uniform("economy.rules.work", agents)[:, 0] < propensity
        noise = ctx.normal("economy.rules.consume", agents)[:, 0]
        share = (p.base_consumption - p.rate_sensitivity * obs.interest_rate
                 + p.low_wealth_boost / (1.0 + months) + p.consumption_noise * noise)
        share = np.clip(share, p.min_consumption, 1.0)
        codes = np.where(work, WORK, NOT_WORK).astype(np.int16)
        return ActionBatch(agents, codes, EconomyArgs(propensity=propensity, consume_share=share))
