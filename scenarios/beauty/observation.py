"""What a beauty-contest player perceives before guessing.

Core objects:
    RoundResult: the announced result of one past round.
    BeautyObservation: each agent's level, its own last guess, and the shared announcements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from populace.simulator import Observation


class RoundResult(NamedTuple):
    """The announced result of a past round (every agent sees the same)."""

    round: int
    guesses: int
    mean: float
    target: float
    winning_guess: float
    winners: int


@dataclass
class BeautyObservation(Observation):
    """Per-agent columns are numpy arrays as long as ``agents``; the shared announcements are
    plain Python values, never numpy arrays, so that ``take`` cannot mistake a history that
    happens to be as long as the batch for a per-agent column."""

    level: np.ndarray  # (n,) int16: the agent's level attribute, -1 when there is none
    last_guess: np.ndarray  # (n,) float64: the agent's previous guess, NaN before its first
    last_round: np.ndarray  # (n,) int64: the round of that guess, -1 before its first
    last_won: np.ndarray  # (n,) bool: whether that guess won
    round: int  # the round being played (1, 2, ...; the step)
    history: tuple[RoundResult, ...]  # the last rounds with guesses, newest first

    @property
    def last_mean(self) -> float:
        """The mean guess of the newest announced round (NaN before any)."""
        return self.history[0].mean if self.history else math.nan
