"""Policies: who decides, and how, for a batch of agents.

Core objects:
    Policy: ``decide(observation, ctx) -> ActionBatch`` for a whole batch at once.
    PolicyConfig: the ``policy:`` section: one kind for everyone, or ``mixed`` parts.
    MixedPolicy: gives each agent one of several policies (chosen by attribute or at random,
        seeded) and runs each policy on its own sub-batch.
    build_policy: make the run's policy from its config and scenario.

Kinds: ``rule`` (the scenario's vectorised heuristics) and ``llm`` (a language model through the
backends of ``populace.simulator.llm``); every kind takes the same batch and returns the same
``ActionBatch``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .actions import ActionBatch
from .scenario import joined_records

if TYPE_CHECKING:
    from populace.storage import Database

    from .llm.config import LLMConfig
    from .rng import RngStreams
    from .scenario import Observation, Records, Scenario, StepContext

PolicyKind = Literal["rule", "llm"]
Scalar = str | int | float | bool


class Policy(ABC):
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
    def decide(self, obs: Observation, ctx: StepContext) -> ActionBatch:
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


class MixedPolicy(Policy):
    """Runs several policies, each on the agents assigned to it.

    Args:
        policies: one policy per part.
        assignment: for every agent in the population, the index of its part (-1: none).
    """

    def __init__(self, policies: list[Policy], assignment: np.ndarray) -> None:
        self.policies = policies
        self.assignment = assignment
        self._pool: ThreadPoolExecutor | None = None

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

    def decide(self, obs: Observation, ctx: StepContext) -> ActionBatch:
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
        results: dict[int, ActionBatch] = {}
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


def assign_parts(parts: list[PolicyPart], attributes: pd.DataFrame, rng: RngStreams) -> np.ndarray:
    """For each agent, the index of the first part that selects it (-1 if none)."""
    n = len(attributes)
    assignment = np.full(n, -1, dtype=np.int16)
    for i, part in enumerate(parts):
        match = assignment < 0
        for attr, wanted in part.select.where.items():
            if attr not in attributes:
                raise ValueError(
                    f"policy.parts[{i}].select.where: no population attribute {attr!r} "
                    f"(attributes: {', '.join(map(str, attributes.columns))})"
                )
            values = wanted if isinstance(wanted, list) else [wanted]
            match &= attributes[attr].isin(values).to_numpy()
        if part.select.fraction is not None:
            u = rng.get(f"policy.part.{i}").random(n)
            match &= u < part.select.fraction
        assignment[match] = i
    return assignment


def build_policy(config: PolicyConfig, scenario: Scenario, attributes: pd.DataFrame,
                 rng: RngStreams, *, llm: LLMConfig | None = None, base_dir: Path = Path("."),
                 seed: int = 0) -> tuple[Policy, np.ndarray]:
    """The run's policy and, per agent, the index of the policy part that decides for it."""
    parts = config.part_list()
    assignment = assign_parts(parts, attributes, rng)
    policies: list[Policy] = []
    for i, part in enumerate(parts):
        if part.type == "llm":
            from .llm.config import LLMParams
            from .llm.policy import LLMPolicy

            if llm is None:
                raise ValueError(f"policy part {i} is of type llm, but the experiment has no "
                                 "`llm:` section (backend, model, endpoints)")
            policies.append(LLMPolicy(scenario, llm, LLMParams.model_validate(part.params),
                                      base_dir=base_dir, seed=seed,
                                      agents=np.flatnonzero(assignment == i)))
        else:
            policies.append(scenario.rule_policy(
                scenario.rule_params_model.model_validate(part.params)))
    unassigned = int((assignment < 0).sum())
    if unassigned:
        raise ValueError(
            f"{unassigned} agents match no part of the mixed policy; end `policy.parts` with a "
            "part that has no `select`, so that it takes everyone left")
    if len(policies) == 1 and (assignment == 0).all():
        return policies[0], assignment
    return MixedPolicy(policies, assignment), assignment
