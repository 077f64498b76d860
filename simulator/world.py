"""What a scenario is built from.

Core objects:
    World: the population, the follow graph, the clock, the random streams, the experiment's
        folder and the model the scenario itself may ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    @property
    def n_agents(self) -> int:
        """Number of agents in the population."""
        return self.population.size
