"""The transformers backend as one Ray actor that every shard of a Ray run sends its requests to
(``llm.transformers.ray_actor``): one copy of the model, on the GPU that the actor asks Ray for
(``ray_num_gpus``), instead of one per shard.

The actor merges the requests that arrive while it decodes: when a batch ends, every shard's
requests that came in meanwhile form the next batch, so the GPU sees batches as large as the
shards together send (the shards of a step send theirs at about the same time).

Ray is optional: this module does not import it; the runtime passes its ``ray`` module in.

Core objects:
    ModelActor: the actor's class (a ``TransformersBackend`` and the merging of requests).
    RemoteBackend: a shard's backend that sends to the actor.
    start_model_actor: create the actor of a run.
    serve_from_actor / model_actor_name: which actor this process's transformers backend
        sends to (a shard's process is set once, when it starts).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .config import LLMConfig
from .transformers_backend import TransformersBackend
from .types import Backend, BackendError, ChatRequest, ChatResponse

_SERVED_BY: str | None = None


def serve_from_actor(name: str | None) -> None:
    """Send this process's transformers requests to the actor ``name`` (None: load the model
    here). A Ray shard's process serves one run, so this is set once, when the shard starts."""
    global _SERVED_BY
    _SERVED_BY = name


def model_actor_name() -> str | None:
    """The actor this process's transformers requests go to, if any."""
    return _SERVED_BY


class ModelActor:
    """Holds the model; ``generate`` answers a shard's requests, merged with the other
    shards' that arrive while a batch decodes.

    Args:
        llm: the ``llm:`` section as plain data.
        base_dir: the experiment file's folder (a relative model path is resolved there).
    """

    def __init__(self, llm: dict[str, Any], base_dir: str) -> None:
        self.backend = TransformersBackend(LLMConfig.model_validate(llm), Path(base_dir))
        self.waiting: list[tuple[list[ChatRequest], asyncio.Future[Any]]] = []
        self.busy = False

    async def generate(self, requests: list[ChatRequest]
                       ) -> tuple[list[ChatResponse], dict[str, int]]:
        """The answers to ``requests`` and the backend's counters that grew with their batch
        (all of them to the first caller of a merged batch, so that shards' sums are right)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append((requests, future))
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting, []
                merged = [r for requests, _ in batch for r in requests]
                before = self.backend.health()
                try:
                    answers = await self.backend.generate(merged)
                except Exception as exc:  # every caller of the batch gets the error
                    for _, future in batch:
                        future.set_exception(exc)
                    continue
                grown = {k: v - before.get(k, 0) for k, v in self.backend.health().items()}
                grown["actor_batches"] = 1
                start = 0
                for requests, future in batch:
                    future.set_result((answers[start:start + len(requests)], grown))
                    grown = dict.fromkeys(grown, 0)
                    start += len(requests)
        finally:
            self.busy = False

    def stats(self) -> dict[str, int]:
        """The backend's counters (the run's shards count its batches in
        ``llm.actor_batches``)."""
        return self.backend.health()


class RemoteBackend(Backend):
    """A shard's backend: its requests go to the run's ``ModelActor`` (by name)."""

    name = "transformers"

    def __init__(self, ray: Any, actor_name: str) -> None:
        self.actor = ray.get_actor(actor_name)
        self.counts: dict[str, int] = {}

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """Send the requests to the actor and wait for its answers."""
        answers, grown = await self.actor.generate.remote(requests)
        for k, v in grown.items():
            self.counts[k] = self.counts.get(k, 0) + v
        return answers

    def health(self) -> dict[str, int]:
        """The actor's counters that grew with this shard's batches."""
        return dict(self.counts)


def start_model_actor(ray: Any, llm: LLMConfig, base_dir: Path, name: str,
                      timeout_s: float) -> Any:
    """Create the run's model actor ``name`` with ``llm.transformers.ray_num_gpus`` GPUs (no
    CPU reserved, so that it never waits for the shards' CPUs), and wait until the model is
    loaded (a bad model path or a cluster without the GPUs fails here, before any step).

    Raises:
        BackendError: the cluster lacks the GPUs, or the model did not load in ``timeout_s``.
    """
    gpus = llm.transformers.ray_num_gpus
    have = ray.cluster_resources().get("GPU", 0.0)
    if gpus > have:
        raise BackendError(f"llm.transformers.ray_num_gpus is {gpus:g}, but the Ray cluster "
                           f"has {have:g} GPUs (ray_num_gpus: 0 runs the model actor without "
                           f"one)")
    actor = ray.remote(num_gpus=gpus, num_cpus=0, max_restarts=0,
                       max_concurrency=1_000)(ModelActor)
    handle = actor.options(name=name).remote(llm.model_dump(mode="json"), str(base_dir))
    try:
        ray.get(handle.stats.remote(), timeout=timeout_s)
    except Exception as exc:
        ray.kill(handle, no_restart=True)
        cause = getattr(exc, "cause", None) or exc  # the actor's own error, not Ray's wrapper
        raise BackendError(f"the model actor did not start: {cause}") from exc
    return handle


__all__ = ["ModelActor", "RemoteBackend", "model_actor_name", "serve_from_actor",
           "start_model_actor"]
