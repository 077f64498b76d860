"""Asking the language model for biographies: requests, the answer model, repairs, the cache.

Core objects:
    ProfileAnswer: the answer's pydantic model (JSON ``{"bio": "..."}``); its JSON schema is
        sent when the backend supports structured output.
    ask_profiles: one batch of agents: one request each, then one repair request for every
        answer that does not validate; returns their rows with ``bio`` and ``error``.
    ProfileAsker: the backend in its own event loop, behind the response cache (the
        ``llm_cache`` table), so that asking again costs nothing.
    REQUEST_FAILED, INVALID: how the ``error`` column of an agent without a bio begins (a
        failed request is asked again by the next run; an invalid answer is final).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from populace.storage import Database

from .answers import parse_decision, repair_messages
from .backends import ResponseCache, make_backend
from .config import LLMConfig
from .profile_prompts import ProfilePrompts, prompt_attributes
from .types import Backend, ChatRequest, ChatResponse

REQUEST_FAILED = "request failed: "
INVALID = "invalid answer: "

__all__ = ["INVALID", "REQUEST_FAILED", "ProfileAnswer", "ProfileAsker", "ask_profiles"]


class ProfileAnswer(BaseModel):
    """The model's answer: one biography."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    bio: str = Field(min_length=20, max_length=800,
                     description="2 to 4 sentences in the first person, consistent with the "
                     "attributes")


def ask_profiles(agents: list[int], attrs: pd.DataFrame, prompts: ProfilePrompts,
                 asker: ProfileAsker, llm: LLMConfig, seed: int,
                 counts: dict[str, int]) -> pd.DataFrame:
    """Ask for the bios of ``agents`` (one batch, then one batch of repairs); their rows.

    Args:
        agents: agent ids (rows of ``attrs``).
        attrs: the population's attributes.
        prompts: the prompt template.
        asker: the backend behind the response cache.
        llm: the experiment's ``llm:`` section (model, sampling, structured output).
        seed: the experiment's seed; each request's sampling seed derives from it.
        counts: request counters, updated in place (see ``ProfileReport.counts``).

    Returns:
        ``agent_id``, the attributes, ``bio`` (None when it failed) and ``error`` (why).
    """
    rows = attrs.iloc[agents].reset_index(drop=True)
    records = rows.to_dict("records")
    adapter: TypeAdapter[ProfileAnswer] = TypeAdapter(ProfileAnswer)
    schema = adapter.json_schema() if llm.structured_output else None

    def request(messages: list[dict[str, str]], agent: int, attempt: int) -> ChatRequest:
        # a sampling seed per (seed, agent, attempt): agents with the same attributes still
        # get their own request (and answer), and a re-run asks exactly the same
        sampling_seed = zlib.crc32(f"{seed}:profile:{agent}:{attempt}".encode()) & 0x7FFFFFFF
        return ChatRequest(messages=messages, model=llm.model, schema=schema,
                           temperature=llm.temperature, max_tokens=llm.max_tokens,
                           top_p=llm.top_p, seed=sampling_seed, key=agent)

    requests = [request(prompts.messages(agent, prompt_attributes(record)), agent, 0)
                for agent, record in zip(agents, records, strict=True)]
    answers = asker.send(requests, counts)
    bios: list[str | None] = [None] * len(agents)
    errors: list[str | None] = [None] * len(agents)
    to_repair: list[tuple[int, ChatRequest, str, str]] = []
    for i, (req, resp) in enumerate(zip(requests, answers, strict=True)):
        if resp.error is not None:
            counts["request_errors"] += 1
            errors[i] = REQUEST_FAILED + resp.error
            continue
        answer, problem = parse_decision(resp.text, adapter)
        if answer is not None:
            bios[i] = answer.bio  # type: ignore[attr-defined]
        else:
            counts["invalid"] += 1
            to_repair.append((i, req, resp.text, problem or "invalid"))
    if to_repair:
        fixes = [request(repair_messages(req.messages, text, problem, schema), req.key, 1)
                 for _, req, text, problem in to_repair]
        counts["repairs"] += len(fixes)
        for (i, _, _, problem), resp in zip(to_repair, asker.send(fixes, counts), strict=True):
            if resp.error is not None:
                counts["request_errors"] += 1
                errors[i] = f"{REQUEST_FAILED}{resp.error} (repair of: {problem})"
                continue
            answer, again = parse_decision(resp.text, adapter)
            if answer is not None:
                counts["repaired"] += 1
                bios[i] = answer.bio  # type: ignore[attr-defined]
            else:
                counts["invalid"] += 1
                errors[i] = f"{INVALID}{problem}; after a repair request: {again or 'invalid'}"
    counts["failed"] += sum(b is None for b in bios)
    frame = rows.copy()
    frame.insert(0, "agent_id", np.asarray(agents, dtype=np.int64))
    frame["bio"] = pd.Series(bios, dtype=object)
    frame["error"] = pd.Series(errors, dtype=object)
    return frame


class ProfileAsker:
    """The backend in its own event loop, behind the response cache.

    Args:
        llm: the experiment's ``llm:`` section (backend, model; ``cache: false`` skips the
            cache).
        db: the database whose ``llm_cache`` table holds the answers.
        seed: the experiment's seed (for the backend).
        base_dir: the experiment file's folder (relative paths of the backend).
    """

    def __init__(self, llm: LLMConfig, db: Database, seed: int, base_dir: Path) -> None:
        self.db = db
        self.backend: Backend = make_backend(llm, db, seed, base_dir)
        self.cache = ResponseCache(db) if llm.cache else None
        self.loop = asyncio.new_event_loop()

    def send(self, requests: list[ChatRequest], counts: dict[str, int]) -> list[ChatResponse]:
        """Answers from the cache where it has them, the backend for the rest; new answers
        are stored in the cache (one transaction)."""
        hashes = [r.prompt_hash() for r in requests]
        cached = self.cache.lookup(hashes) if self.cache is not None else {}
        misses = [i for i, h in enumerate(hashes) if h not in cached]
        fresh = self.loop.run_until_complete(self.backend.generate([requests[i] for i in misses]))
        out: list[ChatResponse] = [cached.get(h) for h in hashes]  # type: ignore[misc]
        new: dict[str, ChatResponse] = {}
        for i, resp in zip(misses, fresh, strict=True):
            out[i] = resp
            if resp.error is None and resp.source == "model":
                new.setdefault(hashes[i], resp)
        if self.cache is not None and new:
            rows = list(new.items())
            with self.db.transaction() as conn:
                self.db.insert_columns(conn, "llm_cache", 0, {
                    "step": [0] * len(rows), "prompt_hash": [h for h, _ in rows],
                    "model": [requests[0].model] * len(rows),
                    "response": [r.text for _, r in rows],
                    "prompt_tokens": [r.prompt_tokens for _, r in rows],
                    "completion_tokens": [r.completion_tokens for _, r in rows]})
        counts["requests"] += len(requests)
        counts["cache_hits"] += len(requests) - len(misses)
        return out

    def close(self) -> None:
        """Cancel what is still in flight (after Ctrl-C), close the connections and the loop."""
        loop = self.loop
        if loop.is_closed():
            return
        with contextlib.suppress(Exception):
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self.backend.close())
        loop.close()
