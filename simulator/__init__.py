"""Populace's engine: experiments, populations, policies, the clock and the runtimes.

Core objects:
    load_experiment: read and validate an experiment YAML file.
    Simulation: run (or resume) an experiment into its database.
    Scenario, Observation, StepContext, World: the interface scenarios implement.
    ActionBatch, Policy: decisions of a batch of agents, and what makes them.
    register_scenario, get_scenario: the scenario registry.
"""

from .actions import ActionBatch
from .config import Experiment, ExperimentConfig, experiment_from_dict, load_experiment
from .config_errors import ConfigError
from .engine import Simulation, StepReport
from .policy import Policy
from .registry import available_scenarios, get_scenario, register_scenario
from .scenario import Observation, Records, Scenario, StepContext, World

__all__ = [
    "ActionBatch",
    "ConfigError",
    "Experiment",
    "ExperimentConfig",
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
