"""Batches of decisions, with typed argument columns.

Core objects:
    ActionArgs: base of a scenario's argument columns, a dataclass of per-agent numpy arrays
        declared with ``column``; each column's "unset" value fills rows whose action takes
        no such argument.
    column: declare one argument column (dtype, unset value, whether it is traced).
    NoArgs: the arguments of a scenario whose actions take none.
    ActionBatch: the actions of many agents as columns: agent ids, action codes and the
        scenario's ``ActionArgs``. Policies return one; scenarios apply one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

import numpy as np


def column(dtype: Any, unset: Any, *, trace: bool = False, doc: str = "") -> Any:
    """An argument column of an ``ActionArgs`` dataclass.

    Args:
        dtype: the numpy dtype of the column (``np.int64``, ``np.float64``, ``bool``,
            ``object`` for texts).
        unset: the value of rows whose action takes no such argument (-1, NaN, None, ...).
        trace: whether the engine writes the column into the scenario's action table.
        doc: what the column holds (shown in docs).
    """
    return field(default=None, metadata={"dtype": dtype, "unset": unset, "trace": trace,
                                         "doc": doc})


@dataclass
class ActionArgs:
    """A scenario's argument columns: a dataclass whose fields are declared with ``column``.

    Columns left out (None) when a batch is built are filled with their unset value; every
    column then has one entry per agent of the batch. ``apply`` (or ``resolve``) may set
    outcome columns (e.g. ``accepted``) on the batch's args.
    """

    @classmethod
    def specs(cls) -> tuple[dataclasses.Field[Any], ...]:
        """The declared columns."""
        return dataclasses.fields(cls)

    @classmethod
    def traced(cls) -> tuple[str, ...]:
        """Names of the columns the engine writes to the action table, in declaration order."""
        return tuple(f.name for f in cls.specs() if f.metadata.get("trace"))

    def filled(self, n: int) -> Self:
        """These columns with the missing ones set to their unset value and each cast to its
        dtype; raises ValueError when a column does not have ``n`` entries."""
        values = {}
        for f in self.specs():
            dtype, value = f.metadata["dtype"], getattr(self, f.name)
            if value is None:
                value = np.full(n, f.metadata["unset"], dtype=dtype)
            elif dtype is not object:
                value = np.asarray(value, dtype=dtype)
            elif not isinstance(value, np.ndarray) or value.dtype != object:
                texts = list(value)
                value = np.empty(len(texts), dtype=object)
                value[:] = texts  # element by element: a list of lists stays one column
            if len(value) != n:
                raise ValueError(f"argument column {f.name!r} has {len(value)} entries for "
                                 f"{n} agents")
            values[f.name] = value
        return type(self)(**values)

    def columns(self) -> dict[str, np.ndarray]:
        """Column name -> array."""
        return {f.name: getattr(self, f.name) for f in self.specs()}

    def update(self, columns: dict[str, np.ndarray]) -> None:
        """Set some columns (outcomes another replica filled in)."""
        names = {f.name for f in self.specs()}
        for name, value in columns.items():
            if name not in names:
                raise KeyError(f"{type(self).__name__} has no column {name!r}")
            setattr(self, name, value)

    def take(self, index: np.ndarray) -> Self:
        """The rows at ``index`` (positions or a boolean mask)."""
        return type(self)(**{k: v[index] for k, v in self.columns().items()})

    @classmethod
    def concat(cls, parts: Sequence[Self]) -> Self:
        """The rows of ``parts`` one after the other."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in cls.specs()})


@dataclass
class NoArgs(ActionArgs):
    """The arguments of a scenario whose actions take none."""


ArgsT = TypeVar("ArgsT", bound=ActionArgs)


@dataclass
class ActionBatch(Generic[ArgsT]):
    """Actions of a batch of agents, one row per agent, in activation order.

    Attributes:
        agent: agent ids (int64).
        action: action codes, indexes into the scenario's ``actions`` tuple (int16).
        args: the scenario's argument columns (an ``ActionArgs``), each as long as ``agent``;
            unset where an action takes no such argument.
    """

    agent: np.ndarray
    action: np.ndarray
    args: ArgsT

    def __post_init__(self) -> None:
        n = len(self.agent)
        if len(self.action) != n:
            raise ValueError("every column of an ActionBatch must have one entry per agent")
        self.args = self.args.filled(n)

    def __len__(self) -> int:
        return len(self.agent)

    def take(self, index: np.ndarray) -> ActionBatch[ArgsT]:
        """The rows at ``index`` (positions or a boolean mask)."""
        return ActionBatch(self.agent[index], self.action[index], self.args.take(index))

    @staticmethod
    def concat(batches: Sequence[ActionBatch[ArgsT]]) -> ActionBatch[ArgsT]:
        """Join batches of the same argument type."""
        if not batches:
            raise ValueError("nothing to concatenate")
        kinds = {type(b.args) for b in batches}
        if len(kinds) > 1:
            raise TypeError(f"cannot join batches of different argument types: "
                            f"{sorted(k.__name__ for k in kinds)}")
        return ActionBatch(np.concatenate([b.agent for b in batches]),
                           np.concatenate([b.action for b in batches]),
                           type(batches[0].args).concat([b.args for b in batches]))

    def reorder_like(self, agents: np.ndarray) -> ActionBatch[ArgsT]:
        """Rows rearranged to follow the order of ``agents`` (which must hold the same ids)."""
        order = np.argsort(self.agent, kind="stable")
        pos = order[np.searchsorted(self.agent[order], agents)]
        return self.take(pos)
