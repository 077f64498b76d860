"""What goes to a language model and what comes back, independent of the backend.

Core objects:
    ChatRequest: one decision request: chat messages (or a plain prompt), sampling parameters
        and the JSON schema the answer must follow.
    ChatResponse: the answer text with token counts, latency and how it was obtained.
    Backend: the interface every inference backend implements: ``generate`` a batch.
    BackendError: a backend that cannot serve at all, with the reason.
    LLMStopError: a run stopped because its model did not answer as asked.
    ReplayMissError: a replay met a request the replayed run never made.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class ChatRequest:
    """One request to a model.

    Attributes:
        messages: OpenAI-style chat messages (``[{"role": "system", "content": ...}, ...]``).
            The first message is the shared system part, identical for every agent of a
            scenario so that servers can cache it as a prefix.
        model: model name as the server knows it.
        schema: JSON schema of a valid answer (sent as ``response_format`` / guided decoding).
        temperature, max_tokens, seed, top_p: sampling parameters.
        key: caller's reference (e.g. the agent id) carried back in the response.
    """

    messages: list[dict[str, str]]
    model: str
    schema: dict[str, Any] | None = None
    temperature: float = 0.7
    max_tokens: int = 256
    top_p: float = 1.0
    seed: int | None = None
    key: int = -1
    _hash: str | None = field(default=None, repr=False, compare=False)

    def sampling(self) -> dict[str, Any]:
        """The sampling parameters as a dict (what the cache and replay key on)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens,
                "top_p": self.top_p, "seed": self.seed}

    def prompt_hash(self) -> str:
        """SHA-256 of model, sampling parameters, schema and messages: the cache/replay key.

        Computed once per request (orjson with sorted keys: the same bytes on every machine).
        """
        if self._hash is None:
            blob = orjson.dumps([self.model, self.sampling(), self.schema, self.messages],
                                option=orjson.OPT_SORT_KEYS)
            self._hash = hashlib.sha256(blob).hexdigest()
        return self._hash


@dataclass
class ChatResponse:
    """The answer to one ``ChatRequest``.

    Attributes:
        text: the model's answer ("" when ``error`` is set).
        prompt_tokens, completion_tokens: token counts (the server's, or estimated).
        latency_s: seconds from sending to receiving (0 for cache hits).
        source: "model", "cache" or "replay".
        endpoint: which server answered (for multi-endpoint pools).
        error: why the request failed for good, or None.
        attempts: how many HTTP attempts it took (retries included).
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    source: str = "model"
    endpoint: str = ""
    error: str | None = None
    attempts: int = 1
    key: int = -1
    extra: dict[str, Any] = field(default_factory=dict)


class BackendError(RuntimeError):
    """A backend that cannot serve at all (misconfigured, no endpoint reachable, no GPU)."""


class LLMStopError(BackendError):
    """A run stopped because its model did not answer as asked: no endpoint reachable before
    the first step, too many requests without an answer, or a replay that has no recorded
    answer. The steps committed before are kept and the run can be resumed (``resumable``:
    whether resuming it as it is can help)."""

    resumable = True


class ReplayMissError(LLMStopError):
    """A replay met a request the replayed run never made: resuming would meet it again."""

    resumable = False


class Backend(ABC):
    """An inference backend: answers a whole batch of requests.

    Implementations keep as many requests in flight as the servers allow; a request that fails
    for good comes back as a ``ChatResponse`` with ``error`` set rather than raising, so that one
    bad request never loses the rest of the batch.
    """

    name: str = "backend"

    @abstractmethod
    async def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """Answer ``requests``, in the same order."""

    async def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections and workers."""

    def health(self) -> dict[str, int]:
        """Running totals of what went wrong on the way (they only grow): ``retries``
        (attempts that failed and were tried again) and ``ejections`` (endpoints taken out of
        rotation). Backends without servers have none."""
        return {}
