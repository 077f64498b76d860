"""The local runtime: every phase of a step in this process, through the same interface as the
Ray runtime (``populace.simulator.runtime``), so that the engine's step loop does not depend on
where agents decide.

Core objects:
    LocalRuntime: observes, decides and resolves for the active agents of a step; applies the
        events of a step boundary and answers interviews.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .actions import ActionBatch
from .policy import Policy, check_batch
from .records import Records, merge_records
from .scenario import Scenario
from .sharding import Shardable
from .steering import Boundary, answer_interview, apply_boundary
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

    def decide(self, active: np.ndarray, step: int, scripted: ActionBatch[Any] | None = None
               ) -> tuple[ActionBatch[Any], dict[str, np.ndarray]]:
        """Observe, decide and (for a ``Shardable`` scenario) resolve for the active agents:
        the batch and the scenario's observation summary, in activation order.

        ``scripted`` actions (of action events) come first in the batch, and the agents they
        name do not decide for themselves this step."""
        return decide_with_script(self.scenario, self.policy, active, self.context(step),
                                  scripted)

    def steer(self, events: list[tuple[str, Any]], step: int) -> Boundary:
        """Apply the events of the boundary before ``step``."""
        return apply_boundary(self.scenario, self.policy, events, self.context(step))

    def interview(self, agents: np.ndarray, name: str, event: Any, step: int) -> Records:
        """``agents``' answers to an interview at the boundary before ``step`` (with the
        rows of the model calls it made)."""
        records = answer_interview(self.scenario, self.policy, agents, name, event,
                                   self.context(step))
        merge_records(records, self.policy.drain_records())
        return records

    def close(self) -> None:
        """Nothing to stop: the policy is closed with the engine."""


def decide_with_script(scenario: Scenario[Any, Any, Any, Any], policy: Policy[Any, Any],
                       active: np.ndarray, ctx: StepContext, scripted: ActionBatch[Any] | None
                       ) -> tuple[ActionBatch[Any], dict[str, np.ndarray]]:
    """Observe for ``active``; the policy decides for those ``scripted`` does not name; the
    batch is the scripted actions then the decisions (checked, and resolved for a
    ``Shardable`` scenario). The summary is aligned with ``active``."""
    obs = scenario.observe(active, ctx)
    summary = scenario.observation_summary(obs)
    if scripted is not None and len(scripted):
        own = ~np.isin(active, scripted.agent)
        if own.any():
            decided = policy.decide(obs.take(np.flatnonzero(own)), ctx)
            check_batch(decided, active[own], scenario.actions, scenario.name)
            actions = ActionBatch.concat([scripted, decided])
        else:
            actions = scripted
    else:
        actions = policy.decide(obs, ctx)
        check_batch(actions, active, scenario.actions, scenario.name)
    if isinstance(scenario, Shardable):
        scenario.resolve(actions, ctx)
    return actions, summary
