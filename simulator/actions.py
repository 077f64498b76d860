"""Batches of decisions.

Core objects:
    ActionBatch: the actions of many agents as columns: agent ids, action codes and the
        scenario's argument columns. Policies return one; scenarios apply one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ActionBatch:
    """Actions of a batch of agents, one row per agent, in activation order.

    Attributes:
        agent: agent ids (int64).
        action: action codes, indexes into the scenario's ``actions`` tuple (int16).
        args: scenario-defined argument columns (e.g. ``post``, ``target``), each as long as
            ``agent``; -1 (ints) or NaN (floats) where an action takes no such argument.
    """

    agent: np.ndarray
    action: np.ndarray
    args: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.agent)
        if len(self.action) != n or any(len(v) != n for v in self.args.values()):
            raise ValueError("every column of an ActionBatch must have one entry per agent")

    def __len__(self) -> int:
        return len(self.agent)

    def take(self, index: np.ndarray) -> ActionBatch:
        """The rows at ``index`` (positions or a boolean mask)."""
        return ActionBatch(self.agent[index], self.action[index],
                           {k: v[index] for k, v in self.args.items()})

    @staticmethod
    def concat(batches: Sequence[ActionBatch]) -> ActionBatch:
        """Join batches that carry the same argument columns."""
        if not batches:
            raise ValueError("nothing to concatenate")
        keys = list(batches[0].args)
        return ActionBatch(
            np.concatenate([b.agent for b in batches]),
            np.concatenate([b.action for b in batches]),
            {k: np.concatenate([b.args[k] for b in batches]) for k in keys},
        )

    def reorder_like(self, agents: np.ndarray) -> ActionBatch:
        """Rows rearranged to follow the order of ``agents`` (which must hold the same ids)."""
        order = np.argsort(self.agent, kind="stable")
        pos = order[np.searchsorted(self.agent[order], agents)]
        return self.take(pos)
