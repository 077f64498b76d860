"""Tables of language-model calls (declared on the shared ``populace.storage.Base``).

Core objects:
    LLMCall: every request and answer of a run (decisions and repairs), with tokens, latency,
        where the answer came from and whether it was valid: what replay reads back.
    LLMCacheEntry: answers by request hash, shared by every run of a database.
    Memory: the memory stream of LLM agents, as it was formed (evictions are not recorded).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from populace.storage import Base, EventMixin


class LLMCall(EventMixin, Base):
    """One request to a model and its answer."""

    __tablename__ = "llm_calls"

    agent_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))  # decision | repair
    model: Mapped[str] = mapped_column(String(200))
    prompt_hash: Mapped[str] = mapped_column(String(64))
    sampling: Mapped[str] = mapped_column(Text)  # JSON of the sampling parameters
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON of the messages
    response: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_s: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(10))  # model | cache | replay
    endpoint: Mapped[str] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    valid: Mapped[bool] = mapped_column(Boolean)


class LLMCacheEntry(EventMixin, Base):
    """An answer kept for reuse by any later request with the same hash."""

    __tablename__ = "llm_cache"
    __table_args__ = (Index("ix_llm_cache_hash", "prompt_hash"),)

    prompt_hash: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    response: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)


class Memory(EventMixin, Base):
    """A memory an LLM agent formed (observation, action, message or reflection)."""

    __tablename__ = "memories"

    agent_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(12))
    text: Mapped[str] = mapped_column(Text)
    importance: Mapped[float] = mapped_column(Float)


STEP_TABLES = ("llm_calls", "memories")
