"""The beauty contest's actions and their argument columns.

Core objects:
    ACTIONS, GUESS, DO_NOTHING: the action names and their codes.
    BeautyArgs: a batch's columns: the guess and the level behind it (decided), whether it won
        and how far it was from the target (filled in by ``apply``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator import ActionArgs, column

# "do_nothing" is the name the engine knows: the default LLM fallback, and left out of the
# action table unless recording.do_nothing is true.
ACTIONS = ("guess", "do_nothing")
GUESS, DO_NOTHING = range(len(ACTIONS))

LLM_LEVEL = -1
"""The ``level`` of a guess a language model made."""


@dataclass
class BeautyArgs(ActionArgs):
    """Argument and outcome columns of a round's batch of guesses."""

    guess: np.ndarray = column(np.float64, np.nan, trace=True,
                               doc="the number guessed, in [0, 100] (rounded if the scenario "
                                   "says so)")
    level: np.ndarray = column(np.int16, LLM_LEVEL, trace=True,
                               doc="the level-k reasoning depth behind the guess; -1: a "
                                   "language model's guess")
    won: np.ndarray = column(bool, False, trace=True,
                             doc="outcome: the guess was (one of) the closest to the target")
    distance: np.ndarray = column(np.float64, np.nan, trace=True,
                                  doc="outcome: |guess - target|")
