"""Sending requests to a model and accounting for them: shared by LLM policies and by
scenarios that ask a model themselves (e.g. a platform that ranks search results with one).

Core objects:
    COUNTERS: what is counted per step.
    LLMCalls: one backend (with the response cache) in its own event loop; ``send`` a batch,
        ``judge`` each answer against a pydantic model, and ``drain`` the ``llm_calls`` and
        ``llm_cache`` rows of the step.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import TypeAdapter

from .answers import got_answer, parse_decision
from .backends import ResponseCache, make_backend
from .config import LLMConfig
from .types import Backend, ChatRequest, ChatResponse, LLMStopError

if TYPE_CHECKING:
    from populace.storage import Database

COUNTERS = ("requests", "decisions", "invalid", "repairs", "repaired", "fallbacks", "errors",
            "cache_hits", "prompt_tokens", "completion_tokens", "reflections", "retries",
            "ejections", "replay_misses", "oom_halvings", "grammar_violations", "unterminated",
            "shared_prefix_tokens", "prefill_ms", "decode_ms", "static_rows", "graph_failures",
            "decode_steps", "refills", "grammar_ms", "actor_batches")


class LLMCalls:
    """A backend, the response cache and the step's call records.

    Args:
        llm: the ``llm:`` section.
        seed: the run's seed (the backend's retry jitter).
        base_dir: the experiment file's folder (for ``llm.chat_template``).
    """

    def __init__(self, llm: LLMConfig, seed: int, base_dir: Path) -> None:
        self.llm, self.seed, self.base_dir = llm, seed, base_dir
        self.backend: Backend | None = None
        self.cache: ResponseCache | None = None
        self.loop = asyncio.new_event_loop()
        self.rows: list[dict[str, Any]] = []
        self.cache_rows: list[dict[str, Any]] = []
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.latencies: list[float] = []
        self.streak = 0  # requests in a row that got no answer (across steps)

    def attach(self, db: Database, run_id: int | None = None) -> None:
        """Connect to the backend (and the response cache in ``db``); ``run_id`` is the run
        being written (a replay never answers from it)."""
        self.backend = make_backend(self.llm, db, self.seed, self.base_dir, run_id)
        if self.llm.cache and self.llm.backend != "replay":
            self.cache = ResponseCache(db)

    def close(self) -> None:
        """Close the backend's connections and the event loop."""
        if self.backend is not None and not self.loop.is_closed():
            self.loop.run_until_complete(self.backend.close())
        if not self.loop.is_closed():
            self.loop.close()

    def send(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """Answers from the cache where it has them, the backend for the rest (one batch)."""
        if self.backend is None:
            raise RuntimeError("LLM calls before the run started (attach)")
        hashes = [r.prompt_hash() for r in requests]
        cached = self.cache.lookup(hashes) if self.cache is not None else {}
        misses = [i for i, h in enumerate(hashes) if h not in cached]
        before = self.backend.health()
        fresh = self.loop.run_until_complete(self.backend.generate([requests[i] for i in misses]))
        for name, total in self.backend.health().items():
            self.counts[name] += total - before.get(name, 0)
        self.counts["replay_misses"] += sum(bool(r.extra.get("replay_miss")) for r in fresh)
        out: list[ChatResponse] = [cached.get(h) for h in hashes]  # type: ignore[misc]
        for i, resp in zip(misses, fresh, strict=True):
            out[i] = resp
            if self.cache is not None and resp.error is None and resp.source == "model":
                self.cache_rows.append({"prompt_hash": hashes[i], "model": requests[i].model,
                                        "response": resp.text,
                                        "prompt_tokens": resp.prompt_tokens,
                                        "completion_tokens": resp.completion_tokens})
                cached[hashes[i]] = resp  # identical prompts later in this step reuse it
        self.counts["requests"] += len(requests)
        self.counts["cache_hits"] += len(requests) - len(misses)
        return out

    def judge(self, req: ChatRequest, resp: ChatResponse, kind: str,
              adapter: TypeAdapter[Any]) -> tuple[Any, str | None]:
        """Validate one answer with ``adapter``, count it, and keep its ``llm_calls`` row."""
        if resp.error is not None:
            decision, problem = None, resp.error
            self.counts["errors"] += 1
            self.streak += 1
        else:
            self.streak = 0
            decision, problem = parse_decision(resp.text, adapter)
            if decision is None:
                self.counts["invalid"] += 1
        self.counts["prompt_tokens"] += resp.prompt_tokens
        self.counts["completion_tokens"] += resp.completion_tokens
        if resp.source == "model":
            self.latencies.append(resp.latency_s)
        self.rows.append({
            "agent_id": req.key, "kind": kind, "model": req.model,
            "prompt_hash": req.prompt_hash(), "sampling": json.dumps(req.sampling()),
            "prompt": (orjson.dumps(req.messages).decode()
                       if self.llm.record_prompts else None),
            "response": resp.text, "prompt_tokens": resp.prompt_tokens,
            "completion_tokens": resp.completion_tokens, "latency_s": resp.latency_s,
            "source": resp.source, "endpoint": resp.endpoint,
            "error": resp.error if resp.error is not None else (problem if decision is None
                                                                else None),
            "valid": decision is not None})
        return decision, problem

    def stop_if_failing(self, failed: int, total: int, what: str) -> None:
        """Stop the run when ``failed`` of ``total`` requests (the last ``total`` judged) got
        no answer at or past ``llm.max_failed_share``, or when the last
        ``llm.max_consecutive_failures`` requests in a row got none.

        Raises:
            LLMStopError: naming the share or streak, the errors and their endpoints.
        """
        llm = self.llm
        if failed and llm.max_failed_share is not None and failed >= total * llm.max_failed_share:
            share = f"all {total}" if failed == total else f"{failed} of the {total}"
            why = (f"{share} {what} got no answer from the model (llm.max_failed_share: "
                   f"{llm.max_failed_share:g})")
        elif llm.max_consecutive_failures and self.streak >= llm.max_consecutive_failures:
            why = (f"the last {self.streak} requests got no answer from the model "
                   f"(llm.max_consecutive_failures: {llm.max_consecutive_failures})")
        else:
            return
        raise LLMStopError(
            f"llm: {why}, so the run stopped before recording this step; the steps before "
            f"are kept. The errors:\n{_error_report(self.rows[-total:] if total else [])}\n"
            "Fix the model server (or raise llm.timeout_s), then resume the run.")

    def drain(self) -> dict[str, dict[str, list[Any]]]:
        """The step's ``llm_calls`` and ``llm_cache`` rows (then forgotten)."""
        records: dict[str, dict[str, list[Any]]] = {}
        for table, rows in (("llm_calls", self.rows), ("llm_cache", self.cache_rows)):
            if rows:
                records[table] = {k: [r[k] for r in rows] for k in rows[0]}
        self.rows, self.cache_rows = [], []
        return records

    def reset_measurements(self) -> None:
        """Zero the step's counters and latencies (after the step's metrics were taken)."""
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.latencies = []


def _error_report(rows: list[dict[str, Any]], most: int = 3) -> str:
    """The most frequent errors of ``rows``, each with its count and endpoint."""
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        if not got_answer(r["response"], r["error"]):
            where = r["endpoint"] or "no endpoint"
            counts[(r["error"], where)] = counts.get((r["error"], where), 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    lines = [f"  {n} x {error} ({where})" for (error, where), n in ranked[:most]]
    if len(ranked) > most:
        lines.append(f"  ... and {len(ranked) - most} other errors")
    return "\n".join(lines)


__all__ = ["COUNTERS", "LLMCalls"]
