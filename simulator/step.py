"""What the phases of one step see: its context (step, time, random streams) and a batch of
observations.

Core objects:
    StepContext: the step number, simulated time and the seeded random streams.
    Observation: a batch of what active agents perceive, as columns; scenarios subclass it.
    step_context: the context of a step under a clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Self, TypeVar

import numpy as np

from .clock import Clock
from .rng import RngStreams


@dataclass(frozen=True)
class StepContext:
    """What the phases of one step know about it."""

    step: int
    time: datetime
    epoch: float
    hour: int
    rng: RngStreams

    def random(self, purpose: str) -> np.random.Generator:
        """The seeded generator for ``purpose`` in this step (for draws shared by the batch)."""
        return self.rng.get(purpose, self.step)

    def uniform(self, purpose: str, agents: np.ndarray, width: int = 1) -> np.ndarray:
        """Per-agent uniforms keyed by agent id: independent of batching and sharding."""
        return self.rng.uniform(purpose, self.step, agents, width)

    def normal(self, purpose: str, agents: np.ndarray, width: int = 1) -> np.ndarray:
        """Per-agent standard normals keyed by agent id."""
        return self.rng.normal(purpose, self.step, agents, width)


def step_context(clock: Clock, rng: RngStreams, step: int) -> StepContext:
    """The context of ``step`` (the same in the engine and in every Ray shard)."""
    return StepContext(step=step, time=clock.time(step), epoch=clock.epoch(step),
                       hour=clock.hour(step), rng=rng)


@dataclass
class Observation:
    """What a batch of active agents perceive; scenarios subclass it with their own columns.

    Every numpy field whose first dimension equals ``len(agents)`` is per-agent and is sliced by
    ``take``; other fields are shared by the whole batch.
    """

    agents: np.ndarray

    def __len__(self) -> int:
        return len(self.agents)

    def take(self, index: np.ndarray) -> Self:
        """The observation of the agents at ``index`` (positions or boolean mask)."""
        n = len(self.agents)
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
                changes[f.name] = value[index]
        return dataclasses.replace(self, **changes)


ObsT = TypeVar("ObsT", bound=Observation)
"""A scenario's observation type."""
