"""Policies: who decides, and how, for a batch of agents.

Core objects:
    Policy: ``decide(observation, ctx) -> ActionBatch`` for a whole batch at once.
    PolicyConfig: the ``policy:`` section: one kind for everyone, or ``mixed`` parts.
    MixedPolicy: gives each agent one of several policies (chosen by attribute or at random,
        seeded) and runs each policy on its own sub-batch.

Kinds: ``rule`` (the scenario's vectorised heuristics) and ``llm`` (a language model through the
backends of ``populace.simulator.llm``); every kind takes the same batch and returns the same
``ActionBatch``. ``populace.simulator.policies`` builds the run's policy through a registry of
kinds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .actions import ActionBatch, ArgsT
from .events import InterviewEvent
from .interviews import Answer
from .records import Records, joined_records
from .step import ObsT, StepContext

if TYPE_CHECKING:
    import pandas as pd

    from populace.storage import Database

PolicyKind = Literal["rule", "llm"]
Scalar = str | int | float | bool


class Policy(ABC, Generic[ObsT, ArgsT]):
    """Decides the actions of a batch of agents.

    Besides ``decide``, a policy may connect to the run's database when the run starts
    (``attach``), hand rows and metrics to the engine after each step (``drain_records``,
    ``step_metrics``: a language-model policy records its calls and their cost), and release
    resources at the end (``close``).
    """

    waits_on_io: bool = False
    """True for a policy that spends its decide waiting on servers (language models): a mixed
    policy runs it in a worker thread while its other parts compute."""

    @abstractmethod
    def decide(self, obs: ObsT, ctx: StepContext) -> ActionBatch[ArgsT]:
        """Return one action per agent of ``obs``, in the same order."""

    def attach(self, db: Database, run_id: int) -> None:  # noqa: B027  (optional hook)
        """Connect to the run's database (called once the run exists)."""

    def drain_records(self) -> Records:
        """Rows this policy produced since the last call, to write with the step."""
        return {}

    def step_metrics(self) -> dict[str, float]:
        """Metrics of this policy for the step just decided."""
        return {}

    def export_measurements(self) -> dict[str, Any]:
        """The step's raw measurements, picklable, then forgotten by the policy.

        ``pool_measurements`` turns those of several parts (a mixed policy) or shards (the Ray
        runtime) into one set of metrics. Default: the step metrics themselves, which add up;
        a kind with metrics that do not add up (percentiles, shares) exports what they are
        computed from.
        """
        return {"metrics": self.step_metrics()}

    @classmethod
    def pool_measurements(cls, exports: Sequence[dict[str, Any]]) -> dict[str, float]:
        """One set of metrics from several ``export_measurements`` of this kind."""
        out: dict[str, float] = {}
        for export in exports:
            for name, value in export["metrics"].items():
                out[name] = out.get(name, 0.0) + value if name in out else value
        return out

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections, threads and event loops."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """What the policy must carry across a resume (e.g. agent memories), as arrays."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:  # noqa: B027
        """Restore what ``state_dict`` returned."""

    def join(self, agents: np.ndarray, attributes: pd.DataFrame, ctx: StepContext) -> None:  # noqa: B027
        """Take ``agents`` that joined the run (their rows are in ``attributes``); default:
        nothing (a policy without per-agent state decides for any agent)."""

    def interview(self, obs: ObsT, event: InterviewEvent, ctx: StepContext
                  ) -> list[list[Answer] | None]:
        """Each agent of ``obs``'s answers to ``event``'s questions, or None for an agent this
        policy gives no words to (its answers are then the scenario's report of its state).
        Default: None for every agent (rule agents)."""
        return [None] * len(obs)


class Selection(BaseModel):
    """Which agents a part of a mixed policy takes.

    ``where`` keeps agents whose attributes equal the given values (a list means any of them);
    ``fraction`` then takes that share of the remaining matching agents at random (seeded).
    Leave both out to take every agent not taken by an earlier part.
    """

    model_config = ConfigDict(extra="forbid")

    where: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="keep agents whose attribute equals the value (a "
        "list: any of the values)")
    fraction: float | None = Field(
        default=None, ge=0.0, le=1.0, description="then keep each matching agent with this "
        "probability (seeded), i.e. about this share of them")


class PolicyPart(BaseModel):
    """One part of a mixed policy: a selection of agents and the policy they follow."""

    model_config = ConfigDict(extra="forbid")

    select: Selection = Field(default_factory=Selection, description="which agents follow "
                              "this part. Empty: every agent not taken by an earlier part")
    type: PolicyKind = Field("rule", description="policy kind of this part (only `rule` exists "
                             "so far)")
    params: dict[str, Any] = Field(default_factory=dict, description="parameters of the "
                                   "scenario's rule policy for these agents")


class PolicyConfig(BaseModel):
    """The ``policy:`` section.

    ``type: rule`` with ``params`` for the scenario's rule policy, ``type: llm`` with ``params``
    for a language-model policy (the backend is the top-level ``llm:`` section), or ``type: mixed`` with
    ``parts``: agents take the first part whose selection matches them, in order.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["rule", "llm", "mixed"] = Field(
        "rule", description="`rule`: the scenario's rule policy for every agent; `mixed`: "
        "agents split among `parts`")
    params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of the scenario's rule policy, checked by "
        "the scenario's `policy.params` model (see the scenario sections below)")
    parts: list[PolicyPart] = Field(
        default_factory=list, description="for `type: mixed` only: agents take the first part "
        "whose `select` matches them, in order")

    @model_validator(mode="after")
    def _parts_for_mixed(self) -> Self:
        if self.type == "mixed" and not self.parts:
            raise ValueError("a mixed policy needs `parts`")
        if self.type != "mixed" and self.parts:
            raise ValueError("`parts` is only for `type: mixed`")
        if self.type == "mixed" and self.params:
            # Nothing reads them, so they would only be stored unchecked in the run row.
            raise ValueError("a mixed policy has no `params` of its own: give them in each of "
                             "its `parts`")
        return self

    def part_list(self) -> list[PolicyPart]:
        """The policy as a list of parts (a single part for non-mixed kinds)."""
        if self.type == "mixed":
            return self.parts
        return [PolicyPart(type=self.type, params=self.params)]


class MixedPolicy(Policy[ObsT, ArgsT]):
    """Runs several policies, each on the agents assigned to it.

    Args:
        policies: one policy per part.
        assignment: for every agent in the population, the index of its part (-1: none).
        assign: the assignment of a whole population (for agents that join: the parts'
            selections applied to them as if they had been there from the start).
    """

    def __init__(self, policies: list[Policy[ObsT, ArgsT]], assignment: np.ndarray,
                 assign: Callable[[pd.DataFrame], np.ndarray] | None = None) -> None:
        self.policies = policies
        self.assignment = assignment
        self.assign = assign
        self._pool: ThreadPoolExecutor | None = None

    def join(self, agents: np.ndarray, attributes: pd.DataFrame, ctx: StepContext) -> None:
        """Newcomers take the first part that selects them; each part takes its own."""
        if self.assign is None:
            raise ValueError("this mixed policy cannot take agents that join: it was built "
                             "without its parts' selections")
        part = self.assign(attributes)[agents]
        if (part < 0).any():
            raise ValueError(f"{int((part < 0).sum())} agents that join match no part of the "
                             "mixed policy")
        self.assignment = np.concatenate([self.assignment, part.astype(self.assignment.dtype)])
        for i, policy in enumerate(self.policies):
            if (part == i).any():
                policy.join(agents[part == i], attributes, ctx)

    def attach(self, db: Database, run_id: int) -> None:
        """Attach every part."""
        for policy in self.policies:
            policy.attach(db, run_id)

    def drain_records(self) -> Records:
        """Rows of every part, table by table."""
        return joined_records([policy.drain_records() for policy in self.policies])

    def step_metrics(self) -> dict[str, float]:
        """Metrics of every part; parts of one kind share names and are pooled by their kind."""
        return self.pool_measurements([self.export_measurements()])

    def export_measurements(self) -> dict[str, Any]:
        """Each part's measurements, with its kind."""
        return {"parts": [(type(p), p.export_measurements()) for p in self.policies]}

    @classmethod
    def pool_measurements(cls, exports: Sequence[dict[str, Any]]) -> dict[str, float]:
        """Parts of one kind are pooled together, across exports (shards) too."""
        kinds: dict[type[Policy], list[dict[str, Any]]] = {}
        for export in exports:
            for kind, measured in export["parts"]:
                kinds.setdefault(kind, []).append(measured)
        out: dict[str, float] = {}
        for kind, measured in kinds.items():
            out.update(kind.pool_measurements(measured))
        return out

    def close(self) -> None:
        """Close every part (and the worker thread of the parts that wait on servers)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for policy in self.policies:
            policy.close()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every part's state, prefixed by its index."""
        return {f"{i}.{k}": v for i, p in enumerate(self.policies)
                for k, v in p.state_dict().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Hand each part its own entries."""
        for i, policy in enumerate(self.policies):
            prefix = f"{i}."
            policy.load_state_dict({k.removeprefix(prefix): v for k, v in state.items()
                                    if k.startswith(prefix)})

    def interview(self, obs: ObsT, event: InterviewEvent, ctx: StepContext
                  ) -> list[list[Answer] | None]:
        """Each part answers for its own agents."""
        parts = self.assignment[obs.agents]
        out: list[list[Answer] | None] = [None] * len(obs)
        for i, policy in enumerate(self.policies):
            rows = np.flatnonzero(parts == i)
            if len(rows):
                for row, answers in zip(rows.tolist(), policy.interview(obs.take(rows), event,
                                                                        ctx), strict=True):
                    out[row] = answers
        return out

    def decide(self, obs: ObsT, ctx: StepContext) -> ActionBatch[ArgsT]:
        """Split the batch by part, decide each sub-batch, and restore activation order.

        Parts that mostly wait on servers (``waits_on_io``, e.g. language-model agents) decide
        in a worker thread while the others compute, so a step takes about the longer of the
        two rather than their sum. Each part decides only for its own agents and reads the
        scenario without changing it, so the result is the same as one after the other.
        """
        parts = self.assignment[obs.agents]
        jobs = [(i, policy, obs.take(np.flatnonzero(parts == i)))
                for i, policy in enumerate(self.policies) if (parts == i).any()]
        waiting = [j for j in jobs if j[1].waits_on_io]
        results: dict[int, ActionBatch[ArgsT]] = {}
        if waiting and len(jobs) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(self.policies),
                                                thread_name_prefix="populace-policy")
            futures = {i: self._pool.submit(policy.decide, sub, ctx)
                       for i, policy, sub in waiting}
            for i, policy, sub in jobs:
                if not policy.waits_on_io:
                    results[i] = policy.decide(sub, ctx)
            results.update({i: f.result() for i, f in futures.items()})
        else:
            results = {i: policy.decide(sub, ctx) for i, policy, sub in jobs}
        batches = [results[i] for i, _, _ in jobs]
        return ActionBatch.concat(batches).reorder_like(obs.agents)


def check_batch(actions: ActionBatch[Any], active: np.ndarray, names: Sequence[str],
                scenario: str) -> None:
    """A policy must answer every active agent once, in order, with one of the scenario's
    ``names`` of actions; raises ValueError otherwise."""
    bad = (actions.action < 0) | (actions.action >= len(names))
    if bad.any():
        raise ValueError(
            f"the policy returned unknown action codes {sorted(set(actions.action[bad].tolist()))[:5]} "
            f"(scenario {scenario!r} has {len(names)} actions: {', '.join(names)})")
    if len(actions) != len(active) or not np.array_equal(actions.agent, active):
        raise ValueError("the policy must return one action per active agent, in the "
                         "order of the observation")
