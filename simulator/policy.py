"""Policies: who decides, and how, for a batch of agents.

Core objects:
    Policy: ``decide(observation, ctx) -> ActionBatch`` for a whole batch at once.
    PolicyConfig: the ``policy:`` section: one kind for everyone, or ``mixed`` parts.
    MixedPolicy: gives each agent one of several policies (chosen by attribute or at random,
        seeded) and runs each policy on its own sub-batch.
    build_policy: make the run's policy from its config and scenario.

Kinds: ``rule`` (the scenario's vectorised heuristics). Language-model policies plug in here as
another kind; every kind takes the same batch and returns the same ``ActionBatch``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .actions import ActionBatch

if TYPE_CHECKING:
    from .rng import RngStreams
    from .scenario import Observation, Scenario, StepContext

PolicyKind = Literal["rule"]
Scalar = str | int | float | bool


class Policy(ABC):
    """Decides the actions of a batch of agents."""

    @abstractmethod
    def decide(self, obs: Observation, ctx: StepContext) -> ActionBatch:
        """Return one action per agent of ``obs``, in the same order."""


class Selection(BaseModel):
    """Which agents a part of a mixed policy takes.

    ``where`` keeps agents whose attributes equal the given values (a list means any of them);
    ``fraction`` then takes that share of the remaining matching agents at random (seeded).
    Leave both out to take every agent not taken by an earlier part.
    """

    model_config = ConfigDict(extra="forbid")

    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    fraction: float | None = Field(default=None, ge=0.0, le=1.0)


class PolicyPart(BaseModel):
    """One part of a mixed policy: a selection of agents and the policy they follow."""

    model_config = ConfigDict(extra="forbid")

    select: Selection = Field(default_factory=Selection)
    type: PolicyKind = "rule"
    params: dict[str, Any] = Field(default_factory=dict)


class PolicyConfig(BaseModel):
    """The ``policy:`` section.

    ``type: rule`` with ``params`` for the scenario's rule policy, or ``type: mixed`` with
    ``parts``: agents take the first part whose selection matches them, in order.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["rule", "mixed"] = "rule"
    params: dict[str, Any] = Field(default_factory=dict)
    parts: list[PolicyPart] = Field(default_factory=list)

    @model_validator(mode="after")
    def _parts_for_mixed(self) -> Self:
        if self.type == "mixed" and not self.parts:
            raise ValueError("a mixed policy needs `parts`")
        if self.type != "mixed" and self.parts:
            raise ValueError("`parts` is only for `type: mixed`")
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

    def decide(self, obs: Observation, ctx: StepContext) -> ActionBatch:
        """Split the batch by part, decide each sub-batch, and restore activation order."""
        parts = self.assignment[obs.agents]
        batches = [
            policy.decide(obs.take(np.flatnonzero(parts == i)), ctx)
            for i, policy in enumerate(self.policies)
            if (parts == i).any()
        ]
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
                 rng: RngStreams) -> tuple[Policy, np.ndarray]:
    """The run's policy and, per agent, the index of the policy part that decides for it."""
    parts = config.part_list()
    policies = [scenario.rule_policy(scenario.rule_params_model.model_validate(p.params))
                for p in parts]
    assignment = assign_parts(parts, attributes, rng)
    unassigned = int((assignment < 0).sum())
    if unassigned:
        raise ValueError(
            f"{unassigned} agents match no part of the mixed policy; end `policy.parts` with a "
            "part that has no `select`, so that it takes everyone left")
    if len(policies) == 1 and (assignment == 0).all():
        return policies[0], assignment
    return MixedPolicy(policies, assignment), assignment
