"""The interface between the engine and a scenario (social network, market, clinic, ...).

Core objects:
    Scenario: the abstract base a scenario implements; generic over its config, observation,
        rule-parameter and action-argument types, so that no override narrows a signature.
    World, StepContext, Observation, Records: what a scenario is built from, what a step's
        phases know, what agents perceive, and rows for the database (re-exported here from
        ``world``, ``step`` and ``records``, so that a scenario imports its contract from one
        module).

The phases of one step are activate -> observe -> decide -> apply -> record -> metrics ->
(checkpoint). ``observe`` and a policy's ``decide`` work on any subset of the active agents,
so a runtime may split them into shards; ``apply`` sees the whole batch and resolves conflicts.

Optional capabilities are separate pieces: language-model agents through an ``LLMAdapter``
(``llm_adapter``), sharding through the ``Shardable`` mixin, and state declared once as an
``ArrayState`` (the default ``state_dict``/``load_state_dict`` save and restore it).
docs/scenarios.md explains how to write one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel

from .actions import ActionArgs, ActionBatch, ArgsT
from .llm_adapter import LLMAdapter
from .policy import Policy
from .records import AGENT_CHUNK, Records, chunk_sums, joined_records, merge_records
from .sharding import Shardable
from .state import ArrayState
from .step import Observation, ObsT, StepContext
from .world import World

ConfigT = TypeVar("ConfigT", bound=BaseModel)
"""A scenario's config model (its ``scenario:`` section)."""
ParamsT = TypeVar("ParamsT", bound=BaseModel)
"""A scenario's rule-parameter model (``policy.params`` of its rule policy)."""


@dataclass(frozen=True)
class Variable:
    """A per-agent state variable that events may set (``kind: set``), filters may read
    (``where``) and rule agents report in interviews; values are kept within ``low..high``."""

    doc: str
    low: float = -math.inf
    high: float = math.inf


@dataclass(frozen=True)
class GraphTable:
    """Where a scenario records its network, for viewers (the web monitor's network page):
    rows of ``table`` are edges ``source -> target``; with ``op``, a row adds (+1) or removes
    (-1) an edge and the graph at a step is the edges whose ops sum above zero."""

    table: str
    source: str
    target: str
    op: str | None = None


class Scenario(ABC, Generic[ConfigT, ObsT, ParamsT, ArgsT]):
    """Base class of every scenario.

    Class attributes a scenario sets:
        name: the ``scenario.type`` that selects it in YAML.
        config_model: pydantic model of its ``scenario:`` section (without ``type``).
        rule_params_model: pydantic model of ``policy.params`` for its rule-based policy.
        actions: action names; an ``ActionBatch.action`` code indexes this tuple.
        args_type: its ``ActionArgs`` dataclass (the argument columns of every batch); the
            columns declared with ``trace=True`` are written to ``action_table``.
        tables: names of the tables it writes (declared on ``populace.storage.Base``; each has
            ``run_id`` and ``step`` columns so resume can cut them back). Table names are
            global in a database, so a scenario never reuses another's.
        action_table: the table (one of ``tables``) that receives the trace of actions: the
            engine writes ``agent_id``, ``action`` (name) and the traced argument columns
            (``apply`` may fill outcome columns, e.g. ``accepted``).
        examples: folder of its example experiment YAML files.
        graph: the table of its network (e.g. follows), if it has one (see ``GraphTable``).
        headline_metrics: the metrics (names ``metrics`` returns) that sum a run up, most
            telling first: ``populace run`` prints their final values, sweeps and monitors
            show them first. Empty: the first few metrics by name.

    Steering (events, interventions, interviews; see ``populace.simulator.events``), each
    optional:
        variables: per-agent state variables events may set and interviews report, with the
            array behind each given by ``variable``.
        broadcast_model: pydantic model of a broadcast's arguments; ``broadcast`` publishes it.
        reconfigurable: dotted paths of the config that may change mid-run; ``reconfigure``
            takes the changed config.
        join_model: pydantic model of the arguments for agents that join mid-run (``kind:
            join``); ``join`` grows the state for them. None: agents cannot join.
    """

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    rule_params_model: ClassVar[type[BaseModel]]
    actions: ClassVar[tuple[str, ...]]
    args_type: ClassVar[type[ActionArgs]]
    tables: ClassVar[tuple[str, ...]] = ()
    action_table: ClassVar[str]
    examples: ClassVar[Path | None] = None
    graph: ClassVar[GraphTable | None] = None
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    variables: ClassVar[dict[str, Variable]] = {}
    broadcast_model: ClassVar[type[BaseModel] | None] = None
    reconfigurable: ClassVar[tuple[str, ...]] = ()
    join_model: ClassVar[type[BaseModel] | None] = None

    state: ArrayState
    """The scenario's state, when declared as an ``ArrayState`` (then ``state_dict`` and
    ``load_state_dict`` need no code)."""

    def __init__(self, config: ConfigT, world: World) -> None:
        self.config = config
        self.world = world
        if isinstance(self, Shardable):  # one replica owns every agent, unless a Ray shard's
            self.own(0, world.n_agents)  # replica is given its block (``own`` again)

    @classmethod
    def trace_columns(cls) -> tuple[str, ...]:
        """The argument columns written to ``action_table``."""
        return cls.args_type.traced()

    # -- the core --------------------------------------------------------------------------------

    @abstractmethod
    def setup(self) -> Records:
        """Build the initial state; return the rows that describe it (written as step 0)."""

    @abstractmethod
    def observe(self, agents: np.ndarray, ctx: StepContext) -> ObsT:
        """What each of ``agents`` perceives this step (e.g. its feed). It must leave the
        scenario's state unchanged: a runtime may observe for agents in several shards."""

    @abstractmethod
    def rule_policy(self, params: ParamsT) -> Policy[ObsT, ArgsT]:
        """The scenario's vectorised rule-based policy with validated ``params``."""

    @abstractmethod
    def apply(self, actions: ActionBatch[ArgsT], ctx: StepContext) -> Records:
        """Apply a step's actions in batch order, resolving conflicts; return the rows to record."""

    @abstractmethod
    def metrics(self, actions: ActionBatch[ArgsT], ctx: StepContext) -> dict[str, float]:
        """Metrics of the state after this step's actions."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue the run after this step, as named arrays (default: the
        declared ``state``)."""
        return self.state.to_arrays()

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned (default: into the declared ``state``)."""
        self.state.load_arrays(state)

    # -- optional hooks --------------------------------------------------------------------------

    def observation_summary(self, obs: ObsT) -> dict[str, np.ndarray]:
        """Per-agent values (aligned with ``obs.agents``) that the scenario's metrics need from
        what agents observed, e.g. the mean stance of each feed. On the Ray runtime agents
        observe in shards; the engine gathers these columns in activation order and hands them
        to ``observed``."""
        return {}

    def observed(self, agents: np.ndarray, summary: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Receive the step's ``observation_summary`` columns for every active agent."""

    def agent_state(self) -> dict[str, np.ndarray]:
        """Per-agent variables to snapshot into ``agent_states`` (name -> array over all
        agents, or over a shard's own agents for a ``Shardable`` scenario)."""
        return {}

    def finish(self, ctx: StepContext) -> Records:
        """End-of-run analysis rows (e.g. cascades), written with the last step."""
        return {}

    def llm_adapter(self) -> LLMAdapter[ObsT, ArgsT] | None:
        """What language-model agents need from this scenario (None: rule agents only)."""
        return None

    # -- steering (see ``populace.simulator.events``) --------------------------------------------

    def variable(self, name: str) -> np.ndarray:
        """The writable array of one of ``variables`` over every agent, the same in every
        replica (default: the ``state`` field of that name). Events change it in place."""
        return getattr(self.state, name)

    def broadcast(self, text: str, args: BaseModel, ctx: StepContext) -> Records:
        """Publish a message from a system account (``args``: a ``broadcast_model``); return
        the rows it adds. Called on every replica, like ``apply``."""
        raise NotImplementedError(f"scenario {self.name!r} has no broadcasts")

    def join(self, agents: np.ndarray, args: BaseModel, ctx: StepContext) -> Records:
        """Grow the state for ``agents`` (the next ids, contiguous), whose attributes are
        already in ``world.population.attributes`` (``args``: a ``join_model``); return the
        rows that describe them (e.g. their follow edges). Called on every replica, like
        ``apply``; a ``Shardable`` replica whose block was extended owns them. To refuse
        them, raise ``ValueError`` before changing anything: the world is then restored and
        a live join refused."""
        raise NotImplementedError(f"scenario {self.name!r} does not let agents join")

    def reconfigure(self, config: ConfigT) -> None:
        """Take a config in which only ``reconfigurable`` parameters changed (default: keep
        it; a scenario that built objects from the old one rebuilds them)."""
        self.config = config


__all__ = ["AGENT_CHUNK", "ActionArgs", "ActionBatch", "ArgsT", "ArrayState", "ConfigT", "LLMAdapter",
           "ObsT", "Observation", "ParamsT", "Policy", "Records", "Scenario", "StepContext", "Variable",
           "World",
           "chunk_sums", "joined_records", "merge_records"]
