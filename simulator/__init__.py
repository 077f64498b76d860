"""Populace's engine: experiments, populations, policies, the clock and the runtimes.

Core objects:
    load_experiment: read and validate an experiment YAML file.
    Simulation: run (or resume) an experiment into its database.
    Scenario, Observation, StepContext, World: the interface scenarios implement, with its
        optional pieces LLMAdapter (language-model agents), Shardable (Ray sharding) and
        ArrayState (state declared as named arrays).
    ActionBatch, ActionArgs, column, Policy: decisions of a batch of agents, their typed
        argument columns, and what makes them.
    register_scenario, get_scenario: the scenario registry.
"""

from .actions import ActionArgs, ActionBatch, NoArgs, column
from .config import Experiment, ExperimentConfig, experiment_from_dict, load_experiment
from .config_errors import ConfigError
from .engine import Simulation, StepReport
from .llm_adapter import LLMAdapter, Memory
from .policy import Policy
from .records import Records, chunk_sums
from .registry import available_scenarios, get_scenario, register_scenario
from .scenario import GraphTable, Scenario
from .sharding import Shardable
from .state import ArrayState
from .step import Observation, StepContext
from .world import World

__all__ = [
    "ActionArgs",
    "ActionBatch",
    "ArrayState",
    "LLMAdapter",
    "Memory",
    "NoArgs",
    "Shardable",
    "chunk_sums",
    "column",
    "ConfigError",
    "Experiment",
    "ExperimentConfig",
    "GraphTable",
    "Observation",
    "Policy",
    "Records",
    "Scenario",
    "Simulation",
    "StepContext",
    "StepReport",
    "World",
    "available_scenarios",
    "experiment_from_dict",
    "get_scenario",
    "load_experiment",
    "register_scenario",
]
