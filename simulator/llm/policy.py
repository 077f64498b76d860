"""The language-model policy: prompts from profile and observation, structured answers, batched.

Core objects:
    LLMPolicy: decides for a batch by sending every agent's prompt at once to the backend,
        validating each answer against the scenario's decision model, repairing once, falling
        back when it must, and accounting for every call; answers interviews in persona the
        same way (``populace.simulator.llm.interview`` builds their prompts and reply model).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from ..actions import ActionBatch, ArgsT
from ..events import InterviewEvent
from ..interviews import Answer
from ..llm_adapter import LLMAdapter
from ..paths import experiment_path
from ..policy import Policy
from ..step import ObsT
from .answers import repair_messages
from .calls import COUNTERS, LLMCalls
from .config import LLMConfig, LLMParams
from .interview import (
    INTERVIEW,
    INTERVIEW_REPAIR,
    InterviewPrompts,
    question_query,
    reply_answers,
    reply_memories,
    reply_model,
    reply_schema,
    reply_tokens,
)
from .memory import MemoryStore
from .prompts import PromptBuilder
from .types import Backend, ChatRequest

if TYPE_CHECKING:
    import pandas as pd

    from populace.storage import Database

    from ..records import Records
    from ..step import StepContext

log = logging.getLogger(__name__)

RequestMaker = Callable[[list[dict[str, str]], int, int], ChatRequest]
"""Builds a request from its messages, the agent and the attempt (0, or 1 for a repair)."""

INTERVIEW_IMPORTANCE = 5.0
"""Importance (0-10) of the memory of an interview answered, with heuristic importance: more
than scrolling past a post, less than a reflection (8)."""

INTERVIEW_COUNTERS = ("interviews", "interview_repairs", "interview_repaired",
                      "interview_invalid")
"""Per-step counters of interviews (metrics ``llm.<name>``, present in steps that had one)."""

REFLECTION_SYSTEM = ("You are a member of an online community, thinking back on what you saw and "
                     "did. Answer with a single JSON object and nothing else.")


RATING_SYSTEM = ("You rate how important memories are to the person who has them. Answer with a "
                 "single JSON object and nothing else.")


class Rating(BaseModel):
    """The answer of an importance rating."""

    model_config = ConfigDict(extra="forbid")

    importance: int = Field(ge=1, le=10)


def _insights_model(n: int) -> type[BaseModel]:
    """The answer of a reflection: ``{"insights": [n short sentences]}``."""
    sentence = Annotated[str, Field(min_length=3, max_length=300)]

    class Insights(BaseModel):
        model_config = ConfigDict(extra="forbid")

        insights: list[sentence] = Field(min_length=1, max_length=n)  # type: ignore[valid-type]

    return Insights


class LLMPolicy(Policy[ObsT, ArgsT]):
    """Agents that decide with a language model.

    It spends its decide waiting on servers (``waits_on_io``): in a mixed policy it runs in a
    worker thread while rule parts compute.

    Args:
        scenario: the running scenario's ``LLMAdapter`` (its decision model, prompt context,
            templates, actions and memories).
        actions: the scenario's action names (``params.fallback`` must be one).
        llm: the ``llm:`` section.
        params: this policy part's params.
        base_dir: the experiment file's folder (for ``params.templates``).
        seed: the run's seed (each request's sampling seed derives from it, the step and agent).
        agents: the agents this policy decides for (their memories are allocated up front);
            default every agent of the population.
    """

    waits_on_io = True

    def __init__(self, scenario: LLMAdapter[ObsT, ArgsT], actions: Sequence[str], llm: LLMConfig,
                 params: LLMParams, *, base_dir: Path, seed: int, agents: np.ndarray) -> None:
        if params.fallback not in actions:
            raise ValueError(f"policy params.fallback {params.fallback!r} is not an action of "
                             f"the scenario ({', '.join(actions)})")
        self.scenario_adapter, self.llm, self.params, self.seed = scenario, llm, params, seed
        self.adapter: TypeAdapter[Any] = TypeAdapter(scenario.decision_model())
        self.schema = self.adapter.json_schema() if llm.structured_output else None
        self.base_dir = base_dir
        user_dir = experiment_path(params.templates, base_dir) if params.templates else None
        self.prompts = PromptBuilder(scenario.prompt_dir, user_dir, params.role)
        self.interviews = InterviewPrompts(scenario.prompt_dir, user_dir, params.role)
        self._interview_counts = dict.fromkeys(INTERVIEW_COUNTERS, 0)
        self.calls = LLMCalls(llm, seed, base_dir)
        self._prefix_chars = 0
        self._prompt_chars = 0
        self._memory_rows: list[dict[str, Any]] = []
        self.memory: MemoryStore | None = None
        if params.memory.enabled:
            self.memory = MemoryStore(agents, params.memory)
        self._reflection_adapter: TypeAdapter[Any] = TypeAdapter(
            _insights_model(params.memory.reflection_insights))
        self._rating_adapter: TypeAdapter[Any] = TypeAdapter(Rating)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend | None:
        """The inference backend (None until ``attach``)."""
        return self.calls.backend

    def attach(self, db: Database, run_id: int) -> None:
        """Connect to the backend (and the response cache in ``db``) for run ``run_id``."""
        self.calls.attach(db, run_id)

    def close(self) -> None:
        """Close the backend's connections and the event loop."""
        self.calls.close()

    # -- deciding -------------------------------------------------------------------------------

    def decide(self, obs: ObsT, ctx: StepContext) -> ActionBatch[ArgsT]:
        """Prompt every agent of the batch at once; validate, repair, fall back."""
        if self.backend is None:
            raise RuntimeError("the LLM policy is not attached to a run (Policy.attach)")
        shared, contexts = self.scenario_adapter.prompt_context(obs)
        if self.memory is not None:
            queries = [self.scenario_adapter.memory_query(c) for c in contexts]
            for context, remembered in zip(contexts, self.memory.retrieve(
                    obs.agents, queries, ctx.step), strict=True):
                context["memories"] = remembered
        else:
            for context in contexts:
                context["memories"] = []
        system = self.prompts.system_text(shared)
        requests = []
        for agent, context in zip(obs.agents.tolist(), contexts, strict=True):
            user = self.prompts.agent_text(shared, context)
            self._prefix_chars += len(system)
            self._prompt_chars += len(system) + len(user)
            requests.append(self._request(
                [{"role": "system", "content": system}, {"role": "user", "content": user}],
                agent, ctx.step, 0))
        self.calls.counts["decisions"] += len(requests)
        decisions, fixes, repaired, _ = self._ask(
            requests, self.adapter, ("decision", "repair"), "decisions", "repairs", ctx.step,
            lambda messages, agent, attempt: self._request(messages, agent, ctx.step, attempt))
        self.calls.counts["repairs"] += fixes
        self.calls.counts["repaired"] += repaired
        self.calls.counts["fallbacks"] += sum(d is None for d in decisions)
        actions = self.scenario_adapter.decisions_to_actions(obs, decisions, self.params.fallback)
        if self.memory is not None:
            self._remember(obs, contexts, actions, ctx.step)
            self._reflect(obs.agents, ctx.step)
        return actions

    def _ask(self, requests: list[ChatRequest], adapter: TypeAdapter[Any], kinds: tuple[str, str],
             what: str, what_repairs: str, step: int, make: RequestMaker
             ) -> tuple[list[Any], int, int, list[ChatRequest]]:
        """Send ``requests`` at once and validate each answer with ``adapter``; ask once more
        (``params.repair``) where an answer came but was invalid; stop the run when too many
        requests got no answer.

        Args:
            kinds: the ``llm_calls.kind`` of the requests and of their repairs.
            what, what_repairs: the requests and their repairs in a stop's message.
            make: builds a request from its messages, the agent and the attempt (a repair is
                attempt 1).

        Returns:
            The validated answers (None where none was valid), the number of repair requests
            sent, how many of them gave a valid answer, and the request whose answer each
            result is (the repair's, where one was sent).
        """
        answers = self.calls.send(requests)
        results: list[Any] = []
        to_repair: list[tuple[int, ChatRequest, str, str]] = []
        for i, (req, resp) in enumerate(zip(requests, answers, strict=True)):
            result, problem = self.calls.judge(req, resp, kinds[0], adapter)
            results.append(result)
            if result is None and resp.error is None and self.params.repair:
                to_repair.append((i, req, resp.text, problem or "invalid"))
        # a model that does not answer stops the run here, before the step is recorded
        self.calls.stop_if_failing(sum(r.error is not None for r in answers), len(answers),
                                   f"{what} of step {step}")
        repaired = 0
        final = list(requests)
        if to_repair:
            fixes = [make(repair_messages(req.messages, text, problem, req.schema), req.key, 1)
                     for _, req, text, problem in to_repair]
            for (i, *_), req, resp in zip(to_repair, fixes, self.calls.send(fixes),
                                          strict=True):
                result, _ = self.calls.judge(req, resp, kinds[1], adapter)
                repaired += result is not None
                results[i], final[i] = result, req
            self.calls.stop_if_failing(0, len(fixes), f"{what_repairs} of step {step}")
        return results, len(to_repair), repaired, final

    def join(self, agents: np.ndarray, attributes: pd.DataFrame, ctx: StepContext) -> None:
        """Agents that joined the run start with empty memories (their profiles come from
        ``attributes`` through the scenario's adapter)."""
        if self.memory is not None:
            self.memory.grow(agents)

    # -- interviews -----------------------------------------------------------------------------

    def interview(self, obs: ObsT, event: InterviewEvent, ctx: StepContext
                  ) -> list[list[Answer] | None]:
        """Every agent of ``obs`` answers ``event``'s questions in persona, one request each,
        all sent at once: its profile and situation (from the scenario's prompt context), its
        memories retrieved for the questions, and the questions; the reply is one JSON object
        with a key per question id, validated and repaired once like a decision.

        An agent without a valid reply gets ``valid`` False for every question. The calls are
        recorded in ``llm_calls`` (kind ``interview``, and ``iv_repair`` for repairs) with the
        step and agent of the answers. With ``event.remember`` the exchange enters each
        agent's memory; without it the agents' memories are left exactly as they were.
        """
        if self.backend is None:
            raise RuntimeError("the LLM policy is not attached to a run (Policy.attach)")
        if not len(obs):
            return []
        reply = reply_model(event)
        schema = reply_schema(reply, event) if self.llm.structured_output else None
        max_tokens = reply_tokens(event, self.llm.max_tokens)
        step = ctx.step

        def make(messages: list[dict[str, str]], agent: int, attempt: int) -> ChatRequest:
            # seeded like a decision, with the purpose: a re-run asks the same way
            seed = zlib.crc32(f"{self.seed}:{step}:{agent}:{attempt}:interview".encode())
            return ChatRequest(messages=messages, model=self.llm.model, schema=schema,
                               temperature=self.llm.temperature, max_tokens=max_tokens,
                               top_p=self.llm.top_p, seed=seed & 0x7FFFFFFF, key=agent)

        shared, contexts = self.scenario_adapter.prompt_context(obs)
        memories = self._interview_memories(obs.agents, event, step)
        system = self.interviews.system(shared)
        requests, prompts = [], []
        for agent, context, remembered in zip(obs.agents.tolist(), contexts, memories,
                                              strict=True):
            user = self.interviews.user(shared, context, remembered, event)
            prompts.append(f"{system}\n\n{user}")
            requests.append(make([{"role": "system", "content": system},
                                  {"role": "user", "content": user}], agent, 0))
        replies, fixes, repaired, sent = self._ask(
            requests, reply, (INTERVIEW, INTERVIEW_REPAIR), "interview answers",
            "interview repairs", step, make)
        invalid = sum(r is None for r in replies)
        counts = self._interview_counts
        counts["interviews"] += len(requests)
        counts["interview_repairs"] += fixes
        counts["interview_repaired"] += repaired
        counts["interview_invalid"] += invalid
        if invalid:
            log.warning("interview at step %d: %d of %d language-model agents gave no valid "
                        "answer (recorded with valid = false)", step, invalid, len(requests))
        if event.remember and self.memory is not None:
            self._remember_interview(obs.agents, replies, event, step)
        return [reply_answers(r, event, p, req.prompt_hash())
                for r, p, req in zip(replies, prompts, sent, strict=True)]

    def _interview_memories(self, agents: np.ndarray, event: InterviewEvent,
                            step: int) -> list[list[str]]:
        """Each agent's memories retrieved for the questions. Retrieval refreshes the last
        access of what it found; an interview the agents do not remember must leave no trace,
        so without ``remember`` the access steps are put back."""
        if self.memory is None:
            return [[] for _ in range(len(agents))]
        rows = self.memory.rows(agents)
        accessed = self.memory.accessed[rows]  # a copy (fancy indexing)
        found = self.memory.retrieve(agents, [question_query(event)] * len(agents), step)
        if not event.remember:
            self.memory.accessed[rows] = accessed
        return found

    def _remember_interview(self, agents: np.ndarray, replies: list[Any],
                            event: InterviewEvent, step: int) -> None:
        """Store each question and its answer as a memory (kind ``message``) of the agents
        that replied."""
        who: list[int] = []
        texts: list[str] = []
        for agent, reply in zip(agents.tolist(), replies, strict=True):
            if reply is not None:
                said = reply_memories(reply, event)
                who += [agent] * len(said)
                texts += said
        if not texts:
            return
        ids = np.array(who, dtype=np.int64)
        importance = np.full(len(texts), INTERVIEW_IMPORTANCE, dtype=np.float32)
        if self.params.memory.importance == "llm":
            importance = self._rate(ids, texts, importance, step)
        self._store(ids, ["message"] * len(texts), texts, importance, step)

    # -- memory ---------------------------------------------------------------------------------

    def _remember(self, obs: ObsT, contexts: list[dict[str, Any]], actions: ActionBatch[ArgsT],
                  step: int) -> None:
        """Store what the scenario says agents remember of this step."""
        assert self.memory is not None
        events = self.scenario_adapter.memories(obs, contexts, actions)
        if not events:
            return
        agents = obs.agents[np.array([e[0] for e in events], dtype=np.int64)]
        texts = [e[2] for e in events]
        importance = np.array([e[3] for e in events], dtype=np.float32)
        if self.params.memory.importance == "llm":
            importance = self._rate(agents, texts, importance, step)
        self._store(agents, [e[1] for e in events], texts, importance, step)

    def _rate(self, agents: np.ndarray, texts: list[str], heuristic: np.ndarray,
              step: int) -> np.ndarray:
        """Ask the model how important each new memory is (1-10), as Generative Agents does."""
        schema = self._rating_adapter.json_schema() if self.llm.structured_output else None
        requests = [ChatRequest(
            messages=[{"role": "system", "content": RATING_SYSTEM},
                      {"role": "user", "content": f"Memory: {text}\nRate it from 1 (mundane, "
                       "e.g. scrolling past a post) to 10 (life-changing). Answer as JSON: "
                       '{"importance": <1-10>}'}],
            model=self.llm.model, schema=schema, temperature=0.0, max_tokens=20,
            top_p=self.llm.top_p, key=int(agent),
            seed=zlib.crc32(f"{self.seed}:{step}:{agent}:{i}:rate".encode()) & 0x7FFFFFFF)
            for i, (agent, text) in enumerate(zip(agents.tolist(), texts, strict=True))]
        answers = self.calls.send(requests)
        rated = [self.calls.judge(r, a, "rating", self._rating_adapter)[0]
                 for r, a in zip(requests, answers, strict=True)]
        self.calls.stop_if_failing(0, len(requests), f"importance ratings of step {step}")
        out = heuristic.copy()
        for i, result in enumerate(rated):
            if result is not None:
                out[i] = float(result.importance)
        return out

    def _store(self, agents: np.ndarray, kinds: list[str], texts: list[str],
               importance: np.ndarray, step: int) -> None:
        assert self.memory is not None
        self.memory.add(agents, kinds, texts, importance, step)
        self._memory_rows += [{"agent_id": int(a), "kind": k, "text": t, "importance": float(i)}
                              for a, k, t, i in zip(agents.tolist(), kinds, texts,
                                                    importance.tolist(), strict=True)]

    def _reflect(self, agents: np.ndarray, step: int) -> None:
        """Agents whose recent memories passed the importance threshold write insights."""
        assert self.memory is not None
        due = self.memory.due_for_reflection(agents)
        if len(due) == 0:
            return
        n = self.params.memory.reflection_insights
        schema = self._reflection_adapter.json_schema() if self.llm.structured_output else None
        requests = []
        for agent in due.tolist():
            recent = "\n".join(f"- {m}" for m in self.memory.recent(agent, 30))
            requests.append(ChatRequest(
                messages=[{"role": "system", "content": REFLECTION_SYSTEM},
                          {"role": "user", "content": f"Your recent memories:\n{recent}\n\n"
                           f"What are the {n} most important things you have learned about "
                           f"yourself, others and the issue? Answer as JSON: "
                           f'{{"insights": [{n} short sentences]}}'}],
                model=self.llm.model, schema=schema, temperature=self.llm.temperature,
                max_tokens=self.llm.max_tokens, top_p=self.llm.top_p, key=agent,
                seed=zlib.crc32(f"{self.seed}:{step}:{agent}:reflect".encode()) & 0x7FFFFFFF))
        self.calls.counts["reflections"] += len(requests)
        answers = self.calls.send(requests)
        judged = [self.calls.judge(r, a, "reflection", self._reflection_adapter)[0]
                  for r, a in zip(requests, answers, strict=True)]
        self.calls.stop_if_failing(0, len(requests), f"reflections of step {step}")
        who, texts = [], []
        for agent, result in zip(due.tolist(), judged, strict=True):
            if result is not None:
                who += [agent] * len(result.insights)
                texts += list(result.insights)
        if texts:
            self._store(np.array(who, dtype=np.int64), ["reflection"] * len(texts), texts,
                        np.full(len(texts), 8.0, dtype=np.float32), step)
        self.memory.reflected(due)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The agents' memories."""
        if self.memory is None:
            return {}
        return {f"memory.{k}": v for k, v in self.memory.state_dict().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore the agents' memories."""
        if self.memory is not None and state:
            self.memory.load_state_dict({k.removeprefix("memory."): v for k, v in state.items()})

    def _request(self, messages: list[dict[str, str]], agent: int, step: int,
                 attempt: int) -> ChatRequest:
        # a sampling seed per (run seed, step, agent, attempt): servers that honour seeds
        # answer the same prompt the same way in a re-run
        seed = zlib.crc32(f"{self.seed}:{step}:{agent}:{attempt}".encode()) & 0x7FFFFFFF
        return ChatRequest(messages=messages, model=self.llm.model, schema=self.schema,
                           temperature=self.llm.temperature, max_tokens=self.llm.max_tokens,
                           top_p=self.llm.top_p, seed=seed, key=agent)

    # -- what the engine records ----------------------------------------------------------------

    def drain_records(self) -> Records:
        """This step's calls (``llm_calls``) and new cache entries (``llm_cache``)."""
        records: Records = self.calls.drain()
        if self._memory_rows:
            rows = self._memory_rows
            records["memories"] = {k: [r[k] for r in rows] for k in rows[0]}
        self._memory_rows = []
        return records

    def step_metrics(self) -> dict[str, float]:
        """Requests, tokens, latency, cache hits, invalid answers, repairs, fallbacks, cost;
        interviews answered, repaired and left invalid (in a step that had one)."""
        return self.pool_measurements([self.export_measurements()])

    def export_measurements(self) -> dict[str, Any]:
        """The step's counters, latencies, prompt characters and cost (then reset)."""
        c, prices = self.calls.counts, self.llm.prices
        out = {"counts": dict(c), "latencies": list(self.calls.latencies),
               "prefix": self._prefix_chars, "prompt": self._prompt_chars,
               "interviews": dict(self._interview_counts),
               "cost": (c["prompt_tokens"] * prices.prompt_per_million
                        + c["completion_tokens"] * prices.completion_per_million) / 1e6}
        self._reset_step_measurements()
        return out

    @classmethod
    def pool_measurements(cls, exports: Sequence[dict[str, Any]]) -> dict[str, float]:
        """One set of LLM metrics: counters and cost add up; latency percentiles and the
        shared-prefix share are computed over every export's raw measurements."""
        counts = {k: sum(e["counts"][k] for e in exports) for k in COUNTERS}
        lat = np.asarray([x for e in exports for x in e["latencies"]])
        prefix = sum(e["prefix"] for e in exports)
        prompt = sum(e["prompt"] for e in exports)
        out = {f"llm.{k}": float(v) for k, v in counts.items()}
        out.update({
            "llm.latency_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "llm.latency_p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
            "llm.cost": sum(e["cost"] for e in exports),
            "llm.shared_prefix_share": prefix / prompt if prompt else float("nan"),
        })
        asked = {k: sum(e.get("interviews", {}).get(k, 0) for e in exports)
                 for k in INTERVIEW_COUNTERS}
        if asked["interviews"]:
            out.update({f"llm.{k}": float(v) for k, v in asked.items()})
        return out

    def _reset_step_measurements(self) -> None:
        self.calls.reset_measurements()
        self._prefix_chars = self._prompt_chars = 0
        self._interview_counts = dict.fromkeys(INTERVIEW_COUNTERS, 0)
