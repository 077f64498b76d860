"""Scoring a round and measuring it, on arrays of guesses.

Core objects:
    RoundStats, score_round: the round's summary statistics, target and winners.
    round_metrics: the step metrics of a round (moments, Nash distance, bins, focal points,
        levels, winners).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .actions import LLM_LEVEL
from .config import GUESS_MAX, GUESS_MIN

DECILES = 10
NASH = 0.0  # the unique Nash equilibrium of the p < 1 game on [0, 100]


class RoundStats(NamedTuple):
    """Summary of one round's guesses."""

    guesses: int
    mean: float
    median: float
    sd: float
    min: float
    max: float
    target: float
    winning_guess: float  # the smallest winning guess (two can tie on either side of the target)
    winners: int


def score_round(guess: np.ndarray, p: float) -> tuple[RoundStats, np.ndarray, np.ndarray]:
    """Score the guesses of a round (at least one, in activation order).

    Returns:
        the round's statistics, each guess's distance to the target, and which guesses won
        (every guess at the smallest distance: ties share the win).
    """
    mean = float(guess.mean())
    target = p * mean
    distance = np.abs(guess - target)
    won = distance == distance.min()
    stats = RoundStats(guesses=len(guess), mean=mean, median=float(np.median(guess)),
                       sd=float(guess.std()), min=float(guess.min()), max=float(guess.max()),
                       target=target, winning_guess=float(guess[won].min()),
                       winners=int(won.sum()))
    return stats, distance, won


def focal_name(point: float) -> str:
    """Metric name of a focal point: ``focal.22.2`` for 22.222..."""
    text = f"{point:.1f}".rstrip("0").rstrip(".")
    return f"focal.{text}"


def level_name(level: int) -> str:
    """Metric prefix of a level: ``level.2``, or ``level.llm`` for language-model guesses."""
    return "level.llm" if level == LLM_LEVEL else f"level.{level}"


def round_metrics(guess: np.ndarray, level: np.ndarray, p: float, focal: list[float],
                  width: float, abstained: int) -> dict[str, float]:
    """The step metrics of a round from its guesses (NaN where there were none).

    Args:
        guess: the round's guesses.
        level: the level behind each guess (``LLM_LEVEL`` for a language model's).
        p: the game's ratio.
        focal: the focal points whose shares are measured.
        width: a guess within ± ``width`` of a focal point counts at it.
        abstained: active agents that did not guess.
    """
    n = len(guess)
    out: dict[str, float] = {"guesses": float(n), "abstained": float(abstained)}
    if n:
        stats, _, _ = score_round(guess, p)
        out.update(mean=stats.mean, median=stats.median, sd=stats.sd, min=stats.min,
                   max=stats.max, target=stats.target, winning_guess=stats.winning_guess,
                   winners=float(stats.winners), nash_distance=abs(stats.mean - NASH))
        decile = np.minimum(((guess - GUESS_MIN) * DECILES / (GUESS_MAX - GUESS_MIN))
                            .astype(np.int64), DECILES - 1)
        shares = np.bincount(decile, minlength=DECILES) / n
    else:
        out.update(dict.fromkeys(("mean", "median", "sd", "min", "max", "target",
                                  "winning_guess", "nash_distance"), math.nan), winners=0.0)
        shares = np.full(DECILES, math.nan)
    for i, share in enumerate(shares):
        out[f"decile.{i}"] = float(share)
    for point in focal:
        out[focal_name(point)] = (float((np.abs(guess - point) <= width).mean()) if n
                                  else math.nan)
    levels, inverse, counts = np.unique(level, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=guess, minlength=len(levels))
    for k, count, total in zip(levels.tolist(), counts.tolist(), sums.tolist(), strict=True):
        out[f"{level_name(k)}.share"] = count / n
        out[f"{level_name(k)}.mean"] = total / count
    return out
