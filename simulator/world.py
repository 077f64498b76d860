"""What a scenario is built from.

Core objects:
    World: the population, the follow graph, the clock, the random streams, the experiment's
        folder, the model the scenario itself may ask, and which agents are still present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .clock import Clock
from .llm.service import ScenarioLLM
from .network import FollowGraph
from .population import Population
from .rng import RngStreams


@dataclass
class World:
    """Everything a scenario is constructed from."""

    population: Population
    graph: FollowGraph | None
    clock: Clock
    rng: RngStreams
    base_dir: Path
    llm: ScenarioLLM | None = None
    """A model the scenario itself may ask (``ScenarioLLM.ask``), when the experiment has an
    ``llm:`` section; calls are recorded and counted like agents' calls."""
    present: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """Whether each agent is still in the run (``kind: leave`` events clear it): an agent that
    left is never activated or selected again."""

    def __post_init__(self) -> None:
        if len(self.present) != self.population.size:
            self.present = np.ones(self.population.size, dtype=bool)

    @property
    def n_agents(self) -> int:
        """Number of agents in the population."""
        return self.population.size
