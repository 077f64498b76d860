"""The beauty contest's database tables.

Core objects:
    BeautyGuess: ``beauty_guesses``, the action table: one row per guess.
    BeautyRound: ``beauty_rounds``: one row per round with guesses.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from populace.storage import Base, EventMixin, RunStepMixin


class BeautyGuess(EventMixin, Base):
    """One agent's guess in a round (the step), whether it won and how far off it was."""

    __tablename__ = "beauty_guesses"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(16))
    guess: Mapped[float | None] = mapped_column(Float)
    level: Mapped[int] = mapped_column(SmallInteger)
    won: Mapped[bool] = mapped_column(Boolean)
    distance: Mapped[float | None] = mapped_column(Float)


class BeautyRound(RunStepMixin, Base):
    """The result of a round with at least one guess (its step is the round)."""

    __tablename__ = "beauty_rounds"

    guesses: Mapped[int] = mapped_column(Integer)
    mean: Mapped[float] = mapped_column(Float)
    median: Mapped[float] = mapped_column(Float)
    sd: Mapped[float] = mapped_column(Float)
    min: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    winning_guess: Mapped[float] = mapped_column(Float)
    winners: Mapped[int] = mapped_column(Integer)
