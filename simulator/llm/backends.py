"""Choosing a backend, and the backends that need no network: replay and the response cache.

Core objects:
    make_backend: the backend an ``llm:`` section asks for.
    ReplayBackend: answers from the calls a recorded run made (same prompt, same answer).
    ResponseCache: stored answers by request hash, shared by the runs of a database.
    VLLMBackend: an in-process ``vllm.LLM`` engine fed a whole step as one batch (GPU only).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from populace.storage import Database, database_url, find_run

from .config import LLMConfig
from .tables import LLMCacheEntry, LLMCall
from .types import Backend, BackendError, ChatRequest, ChatResponse


def make_backend(llm: LLMConfig, db: Database, seed: int, base_dir: Path | None = None) -> Backend:
    """The backend ``llm.backend`` names, connected to ``db`` where it needs the database.

    ``base_dir`` (the experiment file's folder) locates ``llm.chat_template``.
    """
    if llm.backend == "openai":
        from .chat_formats import make_renderer
        from .openai_backend import EndpointConfig, OpenAIBackend, RetryPolicy

        render = None
        if llm.api == "completions":
            template = None
            if llm.chat_template is not None:
                template = (base_dir or Path(".")) / llm.chat_template
            try:
                render = make_renderer(llm.chat_format, template)
            except ValueError as exc:
                raise BackendError(str(exc)) from None

        endpoints = [EndpointConfig(base_url=e.base_url, max_in_flight=e.max_in_flight,
                                    rate_limit_rps=e.rate_limit_rps, api_key_env=e.api_key_env)
                     for e in llm.endpoints]
        retry = RetryPolicy(max_attempts=llm.max_attempts, timeout_s=llm.timeout_s)
        return OpenAIBackend(endpoints, retry=retry, use_response_format=llm.structured_output,
                             seed=seed, api=llm.api, prompts_per_request=llm.prompts_per_request,
                             render=render)
    if llm.backend == "replay":
        source = Database(database_url(llm.replay_db), create=False) if llm.replay_db else db
        return ReplayBackend(source, llm.replay)
    return VLLMBackend(llm)


class ReplayBackend(Backend):
    """Answers each request with what the recorded run answered to the same request.

    Identical requests are answered in the order the recorded run received them.

    Args:
        db: the database holding the recorded run.
        run: its id or name.
    """

    name = "replay"

    def __init__(self, db: Database, run: str | int | None) -> None:
        info = find_run(db, run)
        self.run_id = int(info["id"])
        t = LLMCall.__table__
        stmt = (sa.select(t.c.prompt_hash, t.c.response, t.c.prompt_tokens,
                          t.c.completion_tokens, t.c.error)
                .where(t.c.run_id == self.run_id).order_by(t.c.id))
        self.answers: dict[str, deque[Any]] = defaultdict(deque)
        with db.engine.connect() as conn:
            for row in conn.execute(stmt):
                self.answers[row.prompt_hash].append(row)
        if not self.answers:
            raise BackendError(f"run {self.run_id} ({info['name']}) recorded no model calls to "
                               "replay")

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """Recorded answers; a request the run never made comes back with an error."""
        out = []
        for r in requests:
            queue = self.answers.get(r.prompt_hash())
            if not queue:
                out.append(ChatResponse("", source="replay", key=r.key, error=(
                    f"run {self.run_id} has no recorded answer for this request (the experiment "
                    "or the prompts changed since it was recorded)")))
                continue
            row = queue.popleft()
            out.append(ChatResponse(row.response or "", row.prompt_tokens, row.completion_tokens,
                                    0.0, "replay", "replay", row.error, 1, r.key))
        return out


class ResponseCache:
    """Answers by request hash (model, sampling parameters, schema and messages)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def lookup(self, hashes: list[str]) -> dict[str, ChatResponse]:
        """Stored answers for the hashes that have one."""
        t = LLMCacheEntry.__table__
        found: dict[str, ChatResponse] = {}
        unique = sorted(set(hashes))
        with self.db.engine.connect() as conn:
            for i in range(0, len(unique), 500):
                rows = conn.execute(
                    sa.select(t.c.prompt_hash, t.c.response, t.c.prompt_tokens,
                              t.c.completion_tokens)
                    .where(t.c.prompt_hash.in_(unique[i : i + 500])).order_by(t.c.id))
                for row in rows:
                    found.setdefault(row.prompt_hash, ChatResponse(
                        row.response, row.prompt_tokens, row.completion_tokens, 0.0, "cache"))
        return found


class VLLMBackend(Backend):
    """An in-process vLLM engine; each step's prompts go to it as one batch with guided JSON.

    Needs ``pip install 'populace[vllm]'`` and a GPU; imported only when used.
    """

    name = "vllm"

    def __init__(self, llm: LLMConfig) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise BackendError("llm.backend vllm needs vLLM: pip install 'populace[vllm]' on a "
                               "machine with a GPU (or use backend: openai with a vLLM "
                               "server)") from exc
        import torch

        if not torch.cuda.is_available():
            raise BackendError("llm.backend vllm needs a CUDA GPU, and none is visible here; "
                               "use backend: openai with a vLLM server elsewhere")
        from vllm import LLM

        self.llm = llm
        self.engine = LLM(model=llm.model)

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """The whole batch in one ``LLM.chat`` call, guided by each request's schema."""
        from vllm import SamplingParams

        params = [SamplingParams(temperature=r.temperature, max_tokens=r.max_tokens, top_p=r.top_p,
                                 seed=r.seed, **_structured(r.schema)) for r in requests]
        t0 = time.perf_counter()
        outputs = await asyncio.to_thread(self.engine.chat, [r.messages for r in requests], params,
                                          use_tqdm=False)
        latency = time.perf_counter() - t0
        return [ChatResponse(o.outputs[0].text, len(o.prompt_token_ids),
                             len(o.outputs[0].token_ids), latency, "model", "vllm", None, 1, r.key)
                for o, r in zip(outputs, requests, strict=True)]


def _structured(schema: dict[str, Any] | None) -> dict[str, Any]:
    """Guided JSON decoding arguments of SamplingParams, for the installed vLLM version."""
    if schema is None:
        return {}
    try:  # vLLM >= 0.11
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        pass
    try:  # older vLLM
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}
    except ImportError:  # no guided decoding: answers are still validated on our side
        return {}


__all__ = ["ReplayBackend", "ResponseCache", "VLLMBackend", "make_backend"]
