"""Building the world of a run: one place that the engine and every Ray shard call.

Core objects:
    Built: a built world, its scenario and policy, and the scenario's set-up rows.
    build_world: follow graph, scenario model, scenario and policy from an experiment and its
        population.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clock import Clock
from .config import Experiment
from .llm.service import ScenarioLLM
from .network import build_network
from .policies import build_policy
from .policy import Policy
from .population import Population
from .records import Records
from .rng import RngStreams
from .scenario import Scenario
from .sharding import Shardable
from .world import World


@dataclass
class Built:
    """What ``build_world`` made."""

    world: World
    scenario: Scenario[Any, Any, Any, Any]
    policy: Policy[Any, Any]
    records: Records
    """The scenario's set-up rows (step 0)."""


def build_world(experiment: Experiment, population: Population, clock: Clock,
                rng: RngStreams, *, own: tuple[int, int] | None = None,
                stage: Callable[[str], None] | None = None) -> Built:
    """Follow graph, the scenario's model, the scenario (set up), then the policy.

    Args:
        own: a Ray shard's block of agent ids (``lo, hi``); a ``Shardable`` scenario then
            keeps the private state of those agents only.
        stage: called with the name of each stage as it starts (progress display).
    """
    cfg = experiment.config
    base = experiment.base_dir
    if stage is not None:
        stage("network")
    graph = build_network(cfg.network, population.size, population.attributes,
                          rng.get("network"), base_dir=base,
                          population_edges=population.follow_edges)
    llm = ScenarioLLM(cfg.llm, cfg.seed, base) if cfg.llm is not None else None
    world = World(population, graph, clock, rng, base, llm)
    if stage is not None:
        stage("scenario and policy")
    scenario = experiment.scenario_cls(experiment.scenario_config, world)
    if own is not None and isinstance(scenario, Shardable):
        scenario.own(*own)
    records = scenario.setup()
    # after setup: a policy (an LLM adapter) may hold the state that setup built
    policy = build_policy(cfg.policy, scenario, population.attributes, rng, llm=cfg.llm,
                          base_dir=base, seed=cfg.seed)
    return Built(world, scenario, policy, records)
