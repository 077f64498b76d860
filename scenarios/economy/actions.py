"""Household actions of the macro-economy scenario and their argument columns.

Core objects:
    ACTIONS: the action names (``ActionBatch.action`` indexes them): ``work`` and ``not_work``
        are this step's labour choice; ``do_nothing`` makes no new decision (the household keeps
        its previous labour choice and consumption share).
    EconomyArgs: the argument columns of a batch: what a household states (``propensity``,
        ``consume_share``) and what came of it (``firm``, ``hired``, ``spent``, filled in by
        ``apply``); all five are written to ``economy_actions``, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator.actions import ActionArgs, column

ACTIONS = ("work", "not_work", "do_nothing")
WORK, NOT_WORK, DO_NOTHING = range(len(ACTIONS))


@dataclass
class EconomyArgs(ActionArgs):
    """A household's decision and its outcome, one entry per household of the batch."""

    propensity: np.ndarray = column(np.float64, np.nan, trace=True,
                                    doc="the stated propensity to work, in [0, 1] (NaN with "
                                    "do_nothing)")
    consume_share: np.ndarray = column(np.float64, np.nan, trace=True,
                                       doc="share of money to spend this step, in [0, 1] (NaN: "
                                       "keep the previous)")
    firm: np.ndarray = column(np.int64, -1, trace=True,
                              doc="outcome: the firm applied to, -1 if none")
    hired: np.ndarray = column(bool, False, trace=True, doc="outcome: employed after the step")
    spent: np.ndarray = column(np.float64, 0.0, trace=True,
                               doc="outcome: money spent on goods this step")
