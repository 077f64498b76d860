"""The interface between the engine and a scenario (social network, market, clinic, ...).

Core objects:
    Scenario: the abstract base a scenario implements; the engine calls only these methods.
    World: what a scenario is built from (population, follow graph, clock, random streams).
    StepContext: what a step's phases know (step number, simulated time, random streams).
    Observation: a batch of what active agents perceive, as columns.
    Records: rows for the database, per table, as columns.

The phases of one step are activate -> observe -> decide -> apply -> record -> metrics ->
(checkpoint). ``observe`` and a policy's ``decide`` work on any subset of the active agents,
so a runtime may split them into shards; ``apply`` sees the whole batch and resolves conflicts.
A scenario that declares ``shardable`` keeps per-agent state in the shards that own the agents
(``own``, ``resolve``, ``metric_part``/``pool_metrics``, ``merge_states``).
docs/scenarios.md explains how to write one.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from .actions import ActionBatch
from .clock import Clock
from .rng import RngStreams

if TYPE_CHECKING:
    from .llm.service import ScenarioLLM
    from .network import FollowGraph
    from .policy import Policy
    from .population import Population

Records = dict[str, dict[str, Any]]
"""Table name -> column name -> numpy array or list; each table's columns share one length."""


def merge_records(records: Records, more: Records) -> None:
    """Add ``more``'s rows to ``records``, appending to the tables both have (numpy columns
    stay numpy)."""
    for table, cols in more.items():
        if table not in records:
            records[table] = dict(cols)
            continue
        mine = records[table]
        for name, values in cols.items():
            have = mine[name]
            if isinstance(have, np.ndarray) and isinstance(values, np.ndarray):
                mine[name] = np.concatenate([have, values])
            else:
                mine[name] = list(have) + list(values)


def joined_records(parts: list[Records]) -> Records:
    """The rows of several parts (mixed-policy parts, Ray shards) in order, table by table."""
    records: Records = {}
    for part in parts:
        merge_records(records, part)
    return records


AGENT_CHUNK = 64
"""Agents per chunk of ``chunk_sums``. Ray shards' blocks of agent ids start at multiples of it,
so a metric summed over chunks is the same, to the last bit, on any number of shards."""


def chunk_sums(values: np.ndarray, lo: int = 0) -> np.ndarray:
    """Sums of a per-agent quantity over chunks of ``AGENT_CHUNK`` agent ids.

    ``values`` holds agents ``lo, lo + 1, ...`` (a replica's own agents; ``lo`` a multiple of
    ``AGENT_CHUNK``). The chunk sums of every replica, concatenated in shard order and summed,
    give the same float as the local runtime's: floating-point addition is not associative,
    so a metric that summed each shard's agents and then added the shards would change with
    the number of shards.
    """
    if lo % AGENT_CHUNK:
        raise ValueError(f"chunk_sums: lo={lo} is not a multiple of {AGENT_CHUNK}")
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.zeros(0)
    return np.add.reduceat(values, np.arange(0, len(values), AGENT_CHUNK))


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


@dataclass
class Observation:
    """What a batch of active agents perceive; scenarios subclass it with their own columns.

    Every numpy field whose first dimension equals ``len(agents)`` is per-agent and is sliced by
    ``take``; other fields are shared by the whole batch.
    """

    agents: np.ndarray

    def __len__(self) -> int:
        return len(self.agents)

    def take(self, index: np.ndarray) -> Observation:
        """The observation of the agents at ``index`` (positions or boolean mask)."""
        n = len(self.agents)
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == n:
                changes[f.name] = value[index]
        return dataclasses.replace(self, **changes)


class Scenario(ABC):
    """Base class of every scenario.

    Class attributes a scenario sets:
        name: the ``scenario.type`` that selects it in YAML.
        config_model: pydantic model of its ``scenario:`` section (without ``type``).
        rule_params_model: pydantic model of ``policy.params`` for its rule-based policy.
        actions: action names; an ``ActionBatch.action`` code indexes this tuple.
        tables: names of the tables it writes (declared on ``populace.storage.Base``; each has
            ``run_id`` and ``step`` columns so resume can cut them back). Table names are
            global in a database, so a scenario never reuses another's.
        action_table: the table (one of ``tables``) that receives the trace of actions: the
            engine writes ``agent_id``, ``action`` (name) and the ``trace_columns`` of
            ``ActionBatch.args`` (``apply`` may add outcome columns there, e.g. ``accepted``).
        examples: folder of its example experiment YAML files.
    """

    name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    rule_params_model: ClassVar[type[BaseModel]]
    actions: ClassVar[tuple[str, ...]]
    tables: ClassVar[tuple[str, ...]] = ()
    action_table: ClassVar[str]
    trace_columns: ClassVar[tuple[str, ...]] = ()
    examples: ClassVar[Path | None] = None

    shardable: ClassVar[bool] = False
    """Whether a Ray shard's replica of this scenario keeps private per-agent state for its own
    agents only (see "Sharding" in docs/scenarios.md). False: every replica holds the whole
    state and applies every action; the lead replica's rows, metrics and state are the run's."""

    def __init__(self, config: BaseModel, world: World) -> None:
        self.config = config
        self.world = world
        self.lo, self.hi = 0, world.n_agents

    @property
    def lead(self) -> bool:
        """Whether this replica records shared state (always, on the local runtime)."""
        return self.lo == 0

    @abstractmethod
    def setup(self) -> Records:
        """Build the initial state; return the rows that describe it (written as step 0)."""

    @abstractmethod
    def observe(self, agents: np.ndarray, ctx: StepContext) -> Observation:
        """What each of ``agents`` perceives this step (e.g. its feed)."""

    def observation_summary(self, obs: Observation) -> dict[str, np.ndarray]:
        """Per-agent values (aligned with ``obs.agents``) that the scenario's metrics need from
        what agents observed, e.g. the mean stance of each feed. On the Ray runtime agents
        observe in shards; the engine gathers these columns in activation order and hands them
        to ``observed``. ``observe`` itself must leave the scenario's state unchanged."""
        return {}

    def observed(self, agents: np.ndarray, summary: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Receive the step's ``observation_summary`` columns for every active agent."""

    @abstractmethod
    def rule_policy(self, params: BaseModel) -> Policy:
        """The scenario's vectorised rule-based policy with validated ``params``."""

    @abstractmethod
    def apply(self, actions: ActionBatch, ctx: StepContext) -> Records:
        """Apply a step's actions in batch order, resolving conflicts; return the rows to record."""

    @abstractmethod
    def metrics(self, actions: ActionBatch, ctx: StepContext) -> dict[str, float]:
        """Metrics of the state after this step's actions."""

    # -- language-model agents (optional: a scenario without them runs rule policies only) -------

    prompt_dir: ClassVar[Path | None] = None
    """Folder of the scenario's default Jinja2 prompt templates: ``system.j2`` (the part shared
    by every agent, sent first so servers cache it) and ``agent.j2`` (one agent's profile and
    observation); ``<role>.system.j2`` / ``<role>.agent.j2`` override them for a role."""

    def decision_model(self) -> type[BaseModel] | None:
        """The pydantic model of one decision a language model returns (None: no LLM agents)."""
        return None

    def prompt_context(self, obs: Observation) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Template variables: those shared by the batch, and one dict per agent of ``obs``."""
        raise NotImplementedError(f"scenario {self.name!r} has no language-model agents")

    def decisions_to_actions(self, obs: Observation, decisions: list[BaseModel | None],
                             fallback: str) -> ActionBatch:
        """Turn validated decisions (None: use the ``fallback`` action) into an ActionBatch."""
        raise NotImplementedError(f"scenario {self.name!r} has no language-model agents")

    def memory_query(self, context: dict[str, Any]) -> str:
        """The text an agent's memories are retrieved for (default: none, no retrieval)."""
        return ""

    def memories(self, obs: Observation, contexts: list[dict[str, Any]],
                 actions: ActionBatch) -> list[tuple[int, str, str, float]]:
        """What LLM agents remember of this step: ``(row in obs, kind, text, importance 0-10)``.

        ``kind`` is one of observation, action, message. Default: nothing.
        """
        return []

    def agent_state(self) -> dict[str, np.ndarray]:
        """Per-agent state variables to snapshot (name -> array over all agents)."""
        return {}

    def finish(self, ctx: StepContext) -> Records:
        """End-of-run analysis rows (e.g. cascades), written with the last step."""
        return {}

    @abstractmethod
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue the run after this step, as named arrays."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned (a shardable replica keeps its own part)."""

    # -- sharding (optional: see docs/scenarios.md) ------------------------------------------

    def own(self, lo: int, hi: int) -> None:
        """This replica (a Ray shard's) decides for agents ``lo..hi-1``; called right after
        construction, before ``setup`` or ``load_state_dict``. A shardable scenario keeps the
        private state of those agents only; shared state stays whole on every replica."""
        self.lo, self.hi = lo, hi

    def resolve(self, actions: ActionBatch, ctx: StepContext) -> None:  # noqa: B027
        """Check the actions of this replica's agents against their private state before the
        step's batch is gathered (called on the replica that decided, right after ``decide``),
        filling the batch's outcome columns (e.g. which actions are refused); ``apply`` takes
        them as given. Default: nothing, ``apply`` checks everything."""

    def metric_part(self, actions: ActionBatch, ctx: StepContext) -> dict[str, Any]:
        """A shardable scenario's share of the step's metrics on this replica: ``chunk_sums``
        over its own agents and, on the lead replica, the metrics of shared state."""
        raise NotImplementedError(f"scenario {self.name!r} is not shardable")

    @classmethod
    def pool_metrics(cls, parts: list[dict[str, Any]]) -> dict[str, float]:
        """The step's metrics from every replica's ``metric_part``, in shard order."""
        raise NotImplementedError(f"scenario {cls.name!r} is not shardable")

    @classmethod
    def merge_states(cls, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The run's state from every replica's ``state_dict`` in shard order: what the local
        runtime's ``state_dict`` returns. Default: the lead's (a replicated scenario)."""
        return parts[0]
