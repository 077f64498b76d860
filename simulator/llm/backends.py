"""Choosing a backend, and the backends that need no network: replay and the response cache.

Core objects:
    make_backend: the backend an ``llm:`` section asks for.
    ReplayBackend: answers from the calls a recorded run made (same prompt, same answer); a
        request the run never made stops the run, saying what differs (or goes to the model,
        with ``replay_on_miss: live``).
    ResponseCache: stored answers by request hash, shared by the runs of a database.
    VLLMBackend: an in-process ``vllm.LLM`` engine fed a whole step as one batch (GPU only).
    (The in-process torch + transformers backend is ``transformers_backend``.)
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from populace.storage import Database, database_url, find_run

from ..paths import experiment_path
from .answers import got_answer
from .config import LLMConfig
from .model_actor import RemoteBackend, model_actor_name
from .tables import LLMCacheEntry, LLMCall
from .transformers_backend import TransformersBackend
from .types import Backend, BackendError, ChatRequest, ChatResponse, ReplayMissError

if TYPE_CHECKING:
    from .openai_backend import EndpointConfig


def make_backend(llm: LLMConfig, db: Database, seed: int, base_dir: Path | None = None,
                 run_id: int | None = None) -> Backend:
    """The backend ``llm.backend`` names, connected to ``db`` where it needs the database.

    ``base_dir`` (the experiment file's folder) locates ``llm.chat_template``; ``run_id`` is
    the run being written in ``db`` (a replay never answers from it).
    """
    if llm.backend == "openai":
        return _openai_backend(llm, seed, base_dir)
    if llm.backend == "replay":
        # only read: nothing is written to the source (not even its journal mode), so a
        # recorded run on read-only storage can be replayed
        source = (Database(database_url(llm.replay_db), create=False, read_only=True)
                  if llm.replay_db else db)
        live = None
        if llm.replay_on_miss == "live":
            if not llm.endpoints:
                raise BackendError("llm.replay_on_miss: live needs `endpoints` (the model that "
                                   "answers the requests the replayed run never made)")
            live = _openai_backend(llm, seed, base_dir)
        return ReplayBackend(source, llm.replay, live=live,
                             exclude=run_id if source is db else None, owns_db=source is not db)
    if llm.backend == "transformers":
        actor = model_actor_name()
        if actor is not None:  # a Ray shard of a run whose model is in one actor
            import ray  # only on a Ray shard, where Ray is running

            return RemoteBackend(ray, actor)
        return TransformersBackend(llm, base_dir)
    return VLLMBackend(llm)


def endpoint_configs(llm: LLMConfig) -> list[EndpointConfig]:
    """The ``openai`` backend's settings of each of ``llm.endpoints`` (the backend and the
    pre-flight check build their endpoints from these)."""
    from .openai_backend import EndpointConfig

    return [EndpointConfig(base_url=e.base_url, max_in_flight=e.max_in_flight,
                           rate_limit_rps=e.rate_limit_rps, api_key_env=e.api_key_env)
            for e in llm.endpoints]


def _openai_backend(llm: LLMConfig, seed: int, base_dir: Path | None) -> Backend:
    """The ``openai`` backend of ``llm``'s endpoints."""
    from .chat_formats import make_renderer
    from .openai_backend import OpenAIBackend, RetryPolicy

    render = None
    if llm.api == "completions":
        template = None
        if llm.chat_template is not None:
            template = experiment_path(llm.chat_template, base_dir or Path("."))
        try:
            render = make_renderer(llm.chat_format, template)
        except ValueError as exc:
            raise BackendError(str(exc)) from None

    retry = RetryPolicy(max_attempts=llm.max_attempts, timeout_s=llm.timeout_s)
    return OpenAIBackend(endpoint_configs(llm), retry=retry, use_response_format=llm.structured_output,
                         seed=seed, api=llm.api, prompts_per_request=llm.prompts_per_request,
                         render=render)


class ReplayBackend(Backend):
    """Answers each request with what the recorded run answered to the same request.

    Identical requests are answered in the order the recorded run received them. A request the
    recorded run never made (or made fewer times) is a miss: without ``live`` the batch raises
    ``ReplayMissError`` saying what differs from the recorded requests; with ``live`` the misses
    go to that backend and come back marked ``extra["replay_miss"]``.

    Args:
        db: the database holding the recorded run.
        run: its id (``preflight.resolve_replay`` turns a name into one) or name (the newest
            completed run of that name, as there).
        live: the backend that answers misses, or None to stop at the first.
        exclude: the run being written in ``db``, never the one replayed.
        owns_db: dispose of ``db`` on ``close`` (a source database opened for the replay).
    """

    name = "replay"

    def __init__(self, db: Database, run: str | int | None, *, live: Backend | None = None,
                 exclude: int | None = None, owns_db: bool = False) -> None:
        info = find_run(db, run, exclude=exclude, prefer_status="completed")
        self.db, self.live, self.run_name = db, live, str(info["name"])
        self.owns_db = owns_db
        self.run_id = int(info["id"])
        t = LLMCall.__table__
        stmt = (sa.select(t.c.prompt_hash, t.c.response, t.c.prompt_tokens,
                          t.c.completion_tokens, t.c.error)
                .where(t.c.run_id == self.run_id).order_by(t.c.id))
        self.answers: dict[str, deque[Any]] = defaultdict(deque)
        with db.engine.connect() as conn:
            for row in conn.execute(stmt):
                self.answers[row.prompt_hash].append(row)

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """Recorded answers; misses raise, or go to the live backend."""
        out: list[ChatResponse | None] = []
        missed: list[int] = []
        for i, r in enumerate(requests):
            queue = self.answers.get(r.prompt_hash())
            if not queue:
                missed.append(i)
                out.append(None)
                continue
            row = queue.popleft()
            # the error column also holds why an answer that arrived was invalid: only a
            # request that got no answer is replayed as one (an invalid answer is judged,
            # repaired and counted again as it was)
            error = None if got_answer(row.response, row.error) else row.error
            out.append(ChatResponse(row.response or "", row.prompt_tokens, row.completion_tokens,
                                    0.0, "replay", "replay", error, 1, r.key))
        if missed and self.live is None:
            first = requests[missed[0]]
            raise ReplayMissError(
                f"llm replay of run {self.run_id} ({self.run_name}): {len(missed)} of "
                f"{len(requests)} requests have no recorded answer (first: agent {first.key}): "
                f"{self.why_missed(first)}. The replay stops rather than give other results; "
                "llm.replay_on_miss: live asks the model at `endpoints` for missing answers "
                "instead (counted in llm.replay_misses).")
        if missed:
            assert self.live is not None
            fresh = await self.live.generate([requests[i] for i in missed])
            for i, resp in zip(missed, fresh, strict=True):
                resp.extra["replay_miss"] = True
                out[i] = resp
        return out  # type: ignore[return-value]  (every slot is filled)

    def why_missed(self, req: ChatRequest) -> str:
        """What differs between ``req`` and the recorded run's requests of the same agent."""
        if req.prompt_hash() in self.answers:
            return ("the recorded run made this exact request fewer times than this run does "
                    "(identical requests are answered in their recorded order)")
        t = LLMCall.__table__
        with self.db.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.model, t.c.sampling, t.c.prompt)
                                .where(t.c.run_id == self.run_id, t.c.agent_id == req.key)
                                .order_by(t.c.id)).all()
        if not rows:
            return (f"the recorded run made no request for agent {req.key} (which agents use "
                    "the model, who is active, or the seed changed)")
        models = sorted({r.model for r in rows})
        if req.model not in models:
            return f"the model differs: recorded {', '.join(map(repr, models))}, now {req.model!r}"
        keys = ("temperature", "max_tokens", "top_p")
        now = req.sampling()
        recorded = [json.loads(r.sampling) for r in rows]
        if not any(all(s.get(k) == now[k] for k in keys) for s in recorded):
            was = ", ".join(f"{k}={recorded[0].get(k)}" for k in keys)
            new = ", ".join(f"{k}={now[k]}" for k in keys)
            return f"the sampling parameters differ: recorded {was}, now {new}"
        same_seed = [r for r, s in zip(rows, recorded, strict=True) if s.get("seed") == now["seed"]]
        if not same_seed:
            return ("no recorded request has this sampling seed (the experiment's seed, or the "
                    "step at which the agent asks, changed)")
        if same_seed[0].prompt is None:
            return ("the prompt or the answer schema differs (the recorded run kept no prompts: "
                    "record_prompts was false)")
        then = json.loads(same_seed[0].prompt)
        if then != req.messages:
            return "the prompt differs (templates, profiles, memory or the experiment changed): " \
                + _first_difference(then, req.messages)
        return ("the answer schema differs (structured_output, or the scenario's decision "
                "model, changed)")

    def health(self) -> dict[str, int]:
        """The live backend's totals (none without one)."""
        return self.live.health() if self.live is not None else {}

    async def close(self) -> None:
        """Close the live backend (and the source database, when opened for the replay)."""
        if self.live is not None:
            await self.live.close()
        if self.owns_db:
            self.db.dispose()


def _first_difference(then: list[dict[str, str]], now: list[dict[str, str]]) -> str:
    """The first line that differs between two conversations, recorded and new."""
    a = [f"{m.get('role')}: {line}" for m in then for line in str(m.get("content")).splitlines()]
    b = [f"{m.get('role')}: {line}" for m in now for line in str(m.get("content")).splitlines()]
    for op, i1, _, j1, _ in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            was = a[i1][:120] if i1 < len(a) else "(nothing)"
            new = b[j1][:120] if j1 < len(b) else "(nothing)"
            return f"recorded {was!r}, now {new!r}"
    return "the messages are split differently"


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
