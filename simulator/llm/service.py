"""A language model for scenarios themselves (not for agents): e.g. a platform that ranks
search results with one.

Core objects:
    ScenarioLLM: ``ask`` a batch of questions, each answer validated against a pydantic model;
        every call is recorded in ``llm_calls`` (kind ``scenario``) and counted in the step
        metrics ``llm.scenario.*``. The engine gives one to ``World.llm`` when the experiment
        has an ``llm:`` section.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from .calls import LLMCalls
from .config import LLMConfig
from .types import ChatRequest

if TYPE_CHECKING:
    from populace.storage import Database


class ScenarioLLM:
    """The ``llm:`` section's backend, for questions a scenario asks.

    Args:
        llm: the ``llm:`` section.
        seed: the run's seed (sampling seeds derive from it, the step, the key and the purpose).
        base_dir: the experiment file's folder.
    """

    def __init__(self, llm: LLMConfig, seed: int, base_dir: Path) -> None:
        self.llm, self.seed = llm, seed
        self.calls = LLMCalls(llm, seed, base_dir)
        self.keep_answers = False  # on a Ray run's lead shard: the other replicas replay them
        self.answers: list[list[Any | None]] = []

    def attach(self, db: Database, run_id: int | None = None) -> None:
        """Connect to the backend (called by the engine when the run starts or resumes);
        ``run_id`` is the run being written (a replay never answers from it)."""
        self.calls.attach(db, run_id)

    def close(self) -> None:
        """Close the backend."""
        self.calls.close()

    def ask(self, messages: list[list[dict[str, str]]], answer: TypeAdapter[Any], *,
            keys: list[int], purpose: str, step: int,
            schemas: list[dict[str, Any] | None] | None = None) -> list[Any | None]:
        """Send every question at once; return each validated answer, or None when the
        request failed or the answer does not validate (no repair: the caller falls back).

        Args:
            messages: one chat (system and user messages) per question.
            answer: validates an answer (and gives the JSON schema sent with the request,
                unless ``schemas`` gives one per question).
            keys: an id per question (recorded as ``agent_id``; seeds the sampling).
            purpose: names the question kind in the sampling seed.
            step: the current step.
        """
        default = answer.json_schema() if self.llm.structured_output else None
        requests = [ChatRequest(
            messages=m, model=self.llm.model,
            schema=(schemas[i] if schemas is not None else default)
            if self.llm.structured_output else None,
            temperature=self.llm.temperature, max_tokens=self.llm.max_tokens,
            top_p=self.llm.top_p, key=int(k),
            seed=zlib.crc32(f"{self.seed}:{step}:{k}:{purpose}".encode()) & 0x7FFFFFFF)
            for i, (m, k) in enumerate(zip(messages, keys, strict=True))]
        if not requests:
            return []
        responses = self.calls.send(requests)
        out = [self.calls.judge(r, a, "scenario", answer)[0]
               for r, a in zip(requests, responses, strict=True)]
        self.calls.stop_if_failing(sum(r.error is not None for r in responses), len(responses),
                                   f"{purpose} questions of step {step}")
        self.calls.counts["fallbacks"] += sum(x is None for x in out)
        if self.keep_answers:
            self.answers.append(out)
        return out

    def take_answers(self) -> list[list[Any | None]]:
        """The answers given since the last call, in order (replicas replay them)."""
        answers, self.answers = self.answers, []
        return answers

    def drain_records(self) -> dict[str, dict[str, list[Any]]]:
        """The step's ``llm_calls`` and ``llm_cache`` rows."""
        return self.calls.drain()

    def step_metrics(self) -> dict[str, float]:
        """``llm.scenario.*``: requests, invalid answers, errors, fallbacks, tokens, cost."""
        c = self.calls.counts
        if not c["requests"]:
            return {}
        prices = self.llm.prices
        out = {f"llm.scenario.{k}": float(c[k]) for k in (
            "requests", "invalid", "errors", "fallbacks", "cache_hits", "prompt_tokens",
            "completion_tokens", "retries", "ejections", "replay_misses")}
        out["llm.scenario.cost"] = (c["prompt_tokens"] * prices.prompt_per_million
                                    + c["completion_tokens"] * prices.completion_per_million) / 1e6
        self.calls.reset_measurements()
        return out


class ReplayedLLM:
    """What a Ray shard's replica asks instead of the model: the answers the lead shard got
    for the same questions in the same step, in the same order (the lead applies first)."""

    def __init__(self) -> None:
        self.queue: list[list[Any | None]] = []

    def ask(self, messages: list[list[dict[str, str]]], answer: TypeAdapter[Any],
            **_: Any) -> list[Any | None]:
        """The lead's next batch of answers."""
        if not self.queue:
            raise RuntimeError("a shard's scenario asked the model more often than the lead "
                               "shard's did: its replica is out of step")
        out = self.queue.pop(0)
        if len(out) != len(messages):
            raise RuntimeError("a shard's scenario asked different questions than the lead "
                               "shard's: its replica is out of step")
        return out


__all__ = ["ReplayedLLM", "ScenarioLLM"]
