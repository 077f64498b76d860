"""Household actions of the macro-economy scenario.

Core objects:
    ACTIONS: the action names (``ActionBatch.action`` indexes them): ``work`` and ``not_work``
        are this step's labour choice; ``do_nothing`` makes no new decision (the household keeps
        its previous labour choice and consumption share).
    action_batch: an ``ActionBatch`` with every argument column the scenario reads and traces.
"""

from __future__ import annotations

import numpy as np

from populace.simulator.actions import ActionBatch

ACTIONS = ("work", "not_work", "do_nothing")
WORK, NOT_WORK, DO_NOTHING = range(len(ACTIONS))


def action_batch(agents: np.ndarray, codes: np.ndarray, *, propensity: np.ndarray,
                 consume_share: np.ndarray) -> ActionBatch:
    """The decisions of ``agents``.

    Args:
        agents: agent ids.
        codes: action codes (indexes of ``ACTIONS``).
        propensity: the stated propensity to work, in [0, 1] (NaN with ``do_nothing``).
        consume_share: share of money to spend this step, in [0, 1] (NaN: keep the previous).

    The outcome columns ``firm``, ``hired`` and ``spent`` are filled in by the scenario's
    ``apply``.
    """
    n = len(agents)
    return ActionBatch(np.asarray(agents, dtype=np.int64), np.asarray(codes, dtype=np.int16), {
        "propensity": np.asarray(propensity, dtype=np.float64),
        "consume_share": np.asarray(consume_share, dtype=np.float64),
        "firm": np.full(n, -1, dtype=np.int64),
        "hired": np.zeros(n, dtype=bool),
        "spent": np.zeros(n, dtype=np.float64),
    })
