"""The ``runtime:`` section of an experiment: where the agents' phases run.

Core objects:
    RuntimeConfig: ``local`` (this process) or ``ray`` (shards on a Ray cluster, see
        ``runtime.RayRuntime``), with the Ray settings.
    MAX_SHARDS: the most shards a run may have.

A module of its own so that the experiment's configuration does not import the Ray runtime.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .config_errors import Marks, validate

#: Most shards a Ray run may have (each is an actor holding one block of agents).
MAX_SHARDS = 1024


class RuntimeConfig(BaseModel):
    """``runtime:``: where agents observe and decide.

    ``local`` runs everything in this process. ``ray`` splits the agents into ``shards`` Ray
    actors (see docs/ray.md); ``address`` is ``auto`` (a cluster started with ``ray start``),
    ``ray://host:10001`` (Ray Client) or ``host:6379``; unset starts a private Ray on this
    machine with ``num_cpus``.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster to join (auto, ray://host:port, "
                                "host:port); unset: start Ray on this machine")
    shards: int = Field(2, ge=1, le=MAX_SHARDS, description="Ray actors the agents are split "
                        "into (at most 1024)")
    num_cpus: int | None = Field(None, ge=1, le=100_000, description="CPUs of the private Ray "
                                 "(default: all of this machine's)")
    shard_gpus: float = Field(0.0, ge=0, le=1024, description="GPUs each shard asks Ray for, "
                              "so that a shard running the transformers backend sees one (1: a "
                              "GPU per shard; 0.5: two shards share one). Ray hides GPUs from "
                              "actors that ask for none; llm.transformers.ray_actor is the "
                              "other way: one model for all shards")
    # Timeouts end up in socket and asyncio calls, which overflow on huge or infinite values.
    connect_timeout_s: float = Field(30.0, gt=0, le=86_400, description="how long to wait for "
                                     "the cluster (at most a day)")
    call_timeout_s: float = Field(600.0, gt=0, le=604_800, description="longest a shard may "
                                  "take for one call before the run stops with an error (at "
                                  "most a week)")

    def updated(self, changes: dict[str, Any], source: str | None = None) -> RuntimeConfig:
        """A copy with ``changes`` applied and validated (command-line overrides).

        Args:
            changes: new values by key, e.g. ``{"shards": 4}``.
            source: where the changes come from, shown in the error (e.g. ``"command line"``).

        Raises:
            ConfigError: a change is out of range or unknown, named as ``runtime.KEY``.
        """
        return validate(RuntimeConfig, {**self.model_dump(), **changes}, Marks.empty(),
                        source=source, loc_prefix=("runtime",))


__all__ = ["MAX_SHARDS", "RuntimeConfig"]
