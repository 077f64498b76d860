"""Who acts in a step.

Core objects:
    ActivationConfig: a probability per step, or a 24-hour activity profile (optionally per
        attribute group), optionally scaled per agent by a numeric attribute.
    Activation: draws the active agents of a step, in a seeded random activation order.
"""

from __future__ import annotations

from typing import Annotated, Self

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .rng import RngStreams

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
HourlyProfile = Annotated[list[Probability], Field(min_length=24, max_length=24)]


class ActivationConfig(BaseModel):
    """When agents act.

    Give either ``probability`` (the same chance every step) or ``hourly`` (24 probabilities, by
    hour of the simulated day). With ``by``, ``groups`` gives a 24-hour profile per value of that
    attribute (agents of other values use ``hourly``). ``scale_by`` names a numeric attribute that
    multiplies each agent's probability (clipped to 1).
    """

    model_config = ConfigDict(extra="forbid")

    probability: Probability | None = Field(
        None, description="chance that each agent acts in a step, the same every step. When "
        "neither `probability`, `hourly` nor `groups` is given it is 1 (everyone acts)")
    hourly: HourlyProfile | None = Field(
        None, description="chance that an agent acts, for each hour 0-23 of the simulated day")
    by: str | None = Field(None, description="attribute whose value picks an agent's profile "
                           "in `groups`")
    groups: dict[str, HourlyProfile] = Field(
        default_factory=dict, description="a 24-hour profile per value of the `by` attribute "
        "(values compared as text). Agents with another value use `hourly` (never active if it "
        "is unset)")
    scale_by: str | None = Field(None, description="numeric attribute that multiplies each "
                                 "agent's probability (the product is clipped to [0, 1])")

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if self.probability is not None and (self.hourly is not None or self.groups):
            raise ValueError("give either probability or an hourly profile, not both")
        if self.probability is None and self.hourly is None and not self.groups:
            self.probability = 1.0
        if self.groups and self.by is None:
            raise ValueError("groups needs `by`: the attribute whose values name the groups")
        if self.by is not None and not self.groups:
            raise ValueError("`by` needs `groups`: a 24-hour profile per attribute value")
        return self


class Activation:
    """Draws each step's active agents and their activation order.

    Args:
        config: the activation section of the experiment.
        attributes: the population's attributes (for ``by`` and ``scale_by``).
        rng: the run's random streams.
    """

    def __init__(self, config: ActivationConfig, attributes: pd.DataFrame, rng: RngStreams) -> None:
        self.config = config
        self.rng = rng
        self.n = len(attributes)
        self.scale: np.ndarray | None = None
        if config.scale_by is not None:
            if config.scale_by not in attributes:
                raise ValueError(f"activation.scale_by: no population attribute {config.scale_by!r}")
            self.scale = attributes[config.scale_by].to_numpy(dtype=np.float64)
        # table[g, h]: probability of group g at hour h; group index per agent
        self.group: np.ndarray | None = None
        self.table: np.ndarray | None = None
        if config.probability is None:
            base = config.hourly if config.hourly is not None else [0.0] * 24
            rows = [base]
            group = np.zeros(self.n, dtype=np.int32)
            if config.by is not None:
                if config.by not in attributes:
                    raise ValueError(f"activation.by: no population attribute {config.by!r}")
                values = attributes[config.by].astype(str).to_numpy()
                for i, (name, profile) in enumerate(config.groups.items(), start=1):
                    rows.append(profile)
                    group[values == name] = i
            self.group = group
            self.table = np.asarray(rows, dtype=np.float64)

    def probabilities(self, hour: int) -> np.ndarray | float:
        """Each agent's activation probability at ``hour`` (a scalar when uniform)."""
        if self.table is None:
            p: np.ndarray | float = float(self.config.probability or 0.0)
        else:
            p = self.table[:, hour][self.group]
        if self.scale is not None:
            p = np.clip(p * self.scale, 0.0, 1.0)
        return p

    def draw(self, step: int, hour: int) -> np.ndarray:
        """Active agent ids of ``step`` in activation order (a seeded random permutation)."""
        gen = self.rng.get("activation", step)
        u = gen.random(self.n)
        order_key = gen.random(self.n)
        active = np.flatnonzero(u < self.probabilities(hour))
        return active[np.argsort(order_key[active], kind="stable")]
