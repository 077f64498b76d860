"""Pydantic configuration of the follow-graph generator.

Core objects:

* :data:`NetworkConfig` -- a discriminated union on the key ``generator``; one model per
  generator (:class:`BarabasiAlbertConfig`, :class:`WattsStrogatzConfig`,
  :class:`ErdosRenyiConfig`, :class:`SBMConfig`, :class:`EdgeListConfig`,
  :class:`FromPopulationConfig`, :class:`NoNetworkConfig`).
* :func:`parse_network_config` -- validates a plain mapping (e.g. the ``network:`` block of an
  experiment YAML) into the matching model.

Every model forbids unknown keys and shares one optional field, ``mutual`` (probability that
each edge also gets its reverse edge). The former ``implementation`` key (networkx or numpy) is
rejected with an explanation: every random graph now comes from the one vectorised generator of
its model, so a seed draws the same graph at every population size.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

__all__ = [
    "BarabasiAlbertConfig",
    "EdgeListConfig",
    "ErdosRenyiConfig",
    "FromPopulationConfig",
    "NetworkConfig",
    "NoNetworkConfig",
    "SBMConfig",
    "WattsStrogatzConfig",
    "parse_network_config",
]

#: Message for experiments that still set the removed ``implementation`` key.
REMOVED_IMPLEMENTATION = (
    "the `implementation` key was removed: every graph is now drawn by the vectorised numpy "
    "generator of its model (the networkx twins drew a different graph from the same seed "
    "below 20,000 agents); delete `implementation` from the network block"
)


class _NetworkBase(BaseModel):
    """Fields shared by every generator."""

    model_config = ConfigDict(extra="forbid")

    mutual: float = Field(
        0.0, ge=0.0, le=1.0, description="Probability that each edge also gets its reverse edge."
    )

    @model_validator(mode="before")
    @classmethod
    def _implementation_removed(cls, data: Any) -> Any:
        # Named explicitly rather than left to extra="forbid", whose "unknown key" message would
        # not tell an old experiment why its key stopped working.
        if isinstance(data, Mapping) and "implementation" in data:
            raise ValueError(REMOVED_IMPLEMENTATION)
        return data


class BarabasiAlbertConfig(_NetworkBase):
    """Preferential attachment: each new agent follows ``m`` earlier agents.

    Early agents accumulate followers, giving a heavy-tailed in-degree.
    """

    generator: Literal["barabasi_albert"]
    m: int = Field(5, ge=1, description="Accounts each newly arriving agent follows.")


class WattsStrogatzConfig(_NetworkBase):
    """Small world: ring lattice of ``k`` neighbours, each lattice edge rewired with prob. ``p``.

    Edges are mutual (both directions), so the graph has ``n * k`` follow edges.
    """

    generator: Literal["watts_strogatz"]
    k: int = Field(10, ge=0, description="Lattice neighbours per agent (even).")
    p: float = Field(0.1, ge=0.0, le=1.0, description="Rewiring probability per lattice edge.")

    @field_validator("k")
    @classmethod
    def _k_even(cls, k: int) -> int:
        if k % 2:
            raise ValueError(f"k must be even (k/2 neighbours on each side of the ring), got {k}")
        return k


class ErdosRenyiConfig(_NetworkBase):
    """Directed G(n, p) with ``p = mean_degree / (n - 1)``."""

    generator: Literal["erdos_renyi"]
    mean_degree: float = Field(ge=0.0, description="Expected out-degree (= in-degree).")


class SBMConfig(_NetworkBase):
    """Homophilous stochastic block model over a categorical population attribute.

    Each agent follows ``Poisson(mean_degree)`` accounts; a share ``homophily`` of them is drawn
    uniformly from the agent's own group and the rest uniformly from everybody else.
    """

    generator: Literal["sbm"]
    attribute: str = Field(min_length=1, description="Population column defining the groups.")
    mean_degree: float = Field(10.0, ge=0.0, description="Expected out-degree.")
    homophily: float = Field(0.8, ge=0.0, le=1.0, description="Share of edges inside own group.")


class EdgeListConfig(_NetworkBase):
    """Read follow edges from a CSV/TSV/Parquet file (one row per ``source`` follows ``target``)."""

    generator: Literal["edge_list"]
    path: Path = Field(description="Edge file, relative to the experiment's base directory.")
    format: Literal["auto", "csv", "tsv", "parquet"] = Field(
        "auto", description="auto: from the suffix (.csv, .tsv/.tab, .parquet/.pq; .gz allowed)."
    )
    source: str = Field("source", min_length=1, description="Column of follower ids.")
    target: str = Field("target", min_length=1, description="Column of followee ids.")
    ids: str = Field(
        "index",
        min_length=1,
        description="'index' (agent ids 0..N-1) or the population attribute the file's ids use.",
    )


class FromPopulationConfig(_NetworkBase):
    """Use the follow edges that came with the population file (e.g. OASIS following lists)."""

    generator: Literal["from_population"]


class NoNetworkConfig(_NetworkBase):
    """No follow edges at all."""

    generator: Literal["none"]


NetworkConfig = Annotated[
    BarabasiAlbertConfig
    | WattsStrogatzConfig
    | ErdosRenyiConfig
    | SBMConfig
    | EdgeListConfig
    | FromPopulationConfig
    | NoNetworkConfig,
    Field(discriminator="generator"),
]
"""Any generator config, selected by its ``generator`` key."""

_ADAPTER: TypeAdapter[NetworkConfig] = TypeAdapter(NetworkConfig)


def parse_network_config(data: Any) -> NetworkConfig:
    """Validate a mapping (e.g. a YAML ``network:`` block) into the matching config model.

    Args:
        data: Mapping with a ``generator`` key, or an already-built config model.

    Returns:
        The validated config.

    Raises:
        pydantic.ValidationError: Unknown generator, unknown keys or out-of-range values.
    """
    return _ADAPTER.validate_python(data)
