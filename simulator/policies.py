"""Building the run's policy from its ``policy:`` section, through a registry of kinds.

Core objects:
    PolicyRequest: what a kind's factory is given to build one part's policy.
    register_policy_kind, policy_kinds: the registry (``rule`` and ``llm`` are built in).
    assign_parts: which part of a mixed policy decides for each agent (seeded).
    build_policy: the run's policy (one kind, or a ``MixedPolicy`` of parts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .llm.config import LLMConfig, LLMParams
from .llm.policy import LLMPolicy
from .policy import MixedPolicy, Policy, PolicyConfig, PolicyPart
from .rng import RngStreams
from .scenario import Scenario


@dataclass(frozen=True)
class PolicyRequest:
    """What a policy kind's factory is given for one part of the ``policy:`` section."""

    index: int
    """The part's position in ``policy.parts`` (0 for a single kind)."""
    params: dict[str, Any]
    """The part's raw ``params`` (the factory validates them)."""
    scenario: Scenario[Any, Any, Any, Any]
    agents: np.ndarray
    """The agents this part decides for."""
    llm: LLMConfig | None
    base_dir: Path
    seed: int


PolicyFactory = Callable[[PolicyRequest], Policy[Any, Any]]
_KINDS: dict[str, PolicyFactory] = {}


def register_policy_kind(name: str, factory: PolicyFactory) -> None:
    """Make ``policy.type: name`` (or a part's ``type``) build its policy with ``factory``."""
    _KINDS[name] = factory


def policy_kinds() -> list[str]:
    """The registered kinds."""
    return sorted(_KINDS)


def rule_policy(req: PolicyRequest) -> Policy[Any, Any]:
    """The scenario's own vectorised rule policy with its validated params."""
    scenario = req.scenario
    return scenario.rule_policy(scenario.rule_params_model.model_validate(req.params))


def llm_policy(req: PolicyRequest) -> Policy[Any, Any]:
    """Language-model agents through the scenario's ``LLMAdapter``."""
    if req.llm is None:
        raise ValueError(f"policy part {req.index} is of type llm, but the experiment has no "
                         "`llm:` section (backend, model, endpoints)")
    adapter = req.scenario.llm_adapter()
    if adapter is None:
        raise ValueError(f"scenario {req.scenario.name!r} has no language-model agents")
    return LLMPolicy(adapter, req.scenario.actions, req.llm,
                     LLMParams.model_validate(req.params), base_dir=req.base_dir,
                     seed=req.seed, agents=req.agents)


register_policy_kind("rule", rule_policy)
register_policy_kind("llm", llm_policy)


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


def build_policy(config: PolicyConfig, scenario: Scenario[Any, Any, Any, Any],
                 attributes: pd.DataFrame, rng: RngStreams, *, llm: LLMConfig | None = None,
                 base_dir: Path = Path("."), seed: int = 0) -> Policy[Any, Any]:
    """The run's policy: one kind, or a ``MixedPolicy`` of the parts (each agent taken by the
    first part that selects it)."""
    parts = config.part_list()
    assignment = assign_parts(parts, attributes, rng)
    policies: list[Policy[Any, Any]] = []
    for i, part in enumerate(parts):
        factory = _KINDS.get(part.type)
        if factory is None:
            raise ValueError(f"policy part {i}: no policy kind {part.type!r} "
                             f"(kinds: {', '.join(policy_kinds())})")
        policies.append(factory(PolicyRequest(i, part.params, scenario,
                                              np.flatnonzero(assignment == i), llm, base_dir,
                                              seed)))
    unassigned = int((assignment < 0).sum())
    if unassigned:
        raise ValueError(
            f"{unassigned} agents match no part of the mixed policy; end `policy.parts` with a "
            "part that has no `select`, so that it takes everyone left")
    if len(policies) == 1 and (assignment == 0).all():
        return policies[0]
    return MixedPolicy(policies, assignment, partial(assign_parts, parts, rng=rng))
