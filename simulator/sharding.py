"""The optional piece of a scenario that keeps per-agent state in the Ray shard owning each
agent (see "Sharding" in docs/scenarios.md and ``populace.simulator.runtime``).

Core objects:
    Shardable: the mixin a scenario inherits to be split across shards instead of being
        replicated whole on every shard.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Generic

import numpy as np

from .actions import ActionBatch, ArgsT
from .step import StepContext


class Shardable(Generic[ArgsT]):
    """Sharding hooks. A replica owns agents ``lo..hi-1``: it keeps their private state only
    (shared state stays whole on every replica), decides for them, checks their actions
    (``resolve``) and measures their part of the metrics (``metric_part``); the engine pools
    the parts (``pool_metrics``, ``merge_states``). On the local runtime one replica owns
    every agent.
    """

    lo: int = 0
    hi: int = 0
    tail: bool = True
    """Whether agents that join mid-run become this replica's (the last Ray shard's; the
    local runtime's only replica): its block then grows to take them."""

    @property
    def lead(self) -> bool:
        """Whether this replica records shared state (always, on the local runtime)."""
        return self.lo == 0

    def own(self, lo: int, hi: int) -> None:
        """This replica decides for agents ``lo..hi-1``; called right after construction,
        before ``setup`` or ``load_state_dict``."""
        self.lo, self.hi = lo, hi

    def resolve(self, actions: ActionBatch[ArgsT], ctx: StepContext) -> None:  # noqa: B027
        """Check the actions of this replica's agents against their private state before the
        step's batch is gathered (on the replica that decided, right after ``decide``),
        filling the batch's outcome columns (e.g. which actions are refused); ``apply`` takes
        them as given. Default: nothing."""

    @abstractmethod
    def metric_part(self, actions: ActionBatch[ArgsT], ctx: StepContext) -> dict[str, Any]:
        """This replica's share of the step's metrics: ``chunk_sums`` over its own agents and,
        on the lead replica, the metrics of shared state."""

    @classmethod
    @abstractmethod
    def pool_metrics(cls, parts: list[dict[str, Any]]) -> dict[str, float]:
        """The step's metrics from every replica's ``metric_part``, in shard order."""

    @classmethod
    @abstractmethod
    def merge_states(cls, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The run's state from every replica's ``state_dict`` in shard order: what one replica
        owning every agent would return."""
