"""The local runtime: every phase of a step in this process, through the same interface as the
Ray runtime (``populace.simulator.runtime``), so that the engine's step loop does not depend on
where agents decide.

Core objects:
    LocalRuntime: observes, decides and resolves for the active agents of a step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .actions import ActionBatch
from .policy import Policy, check_batch
from .scenario import Scenario
from .sharding import Shardable
from .step import StepContext


class LocalRuntime:
    """The run's scenario and policy in this process.

    Args:
        scenario, policy: the built world's.
        context: the ``StepContext`` of a step.
    """

    def __init__(self, scenario: Scenario[Any, Any, Any, Any], policy: Policy[Any, Any],
                 context: Callable[[int], StepContext]) -> None:
        self.scenario, self.policy, self.context = scenario, policy, context

    def decide(self, active: np.ndarray, step: int
               ) -> tuple[ActionBatch[Any], dict[str, np.ndarray]]:
        """Observe, decide and (for a ``Shardable`` scenario) resolve for the active agents:
        the batch and the scenario's observation summary, in activation order."""
        ctx = self.context(step)
        obs = self.scenario.observe(active, ctx)
        summary = self.scenario.observation_summary(obs)
        actions = self.policy.decide(obs, ctx)
        check_batch(actions, active, self.scenario.actions, self.scenario.name)
        if isinstance(self.scenario, Shardable):
            self.scenario.resolve(actions, ctx)
        return actions, summary

    def close(self) -> None:
        """Nothing to stop: the policy is closed with the engine."""
