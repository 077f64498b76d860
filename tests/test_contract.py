"""The pieces of the scenario contract on their own: typed action arguments, state declared as
named arrays, the policy registry and the batch check (docs/scenarios.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from populace.simulator import ActionArgs, ActionBatch, ArrayState, NoArgs, column, policies
from populace.simulator.policies import policy_kinds, register_policy_kind
from populace.simulator.policy import check_batch


@dataclass
class Args(ActionArgs):
    target: np.ndarray = column(np.int64, -1, trace=True)
    price: np.ndarray = column(np.float64, np.nan)
    text: np.ndarray = column(object, None, trace=True)
    accepted: np.ndarray = column(bool, True, trace=True)


@dataclass
class Other(ActionArgs):
    x: np.ndarray = column(np.int64, 0)


def test_missing_columns_are_filled_with_their_unset_value_and_cast() -> None:
    batch = ActionBatch(np.array([4, 2, 9]), np.array([0, 1, 0]), Args(target=[1, 2, 3]))
    assert batch.args.target.dtype == np.int64 and batch.args.target.tolist() == [1, 2, 3]
    assert np.isnan(batch.args.price).all() and batch.args.price.dtype == np.float64
    assert batch.args.text.dtype == object and batch.args.text.tolist() == [None] * 3
    assert batch.args.accepted.tolist() == [True] * 3
    assert Args.traced() == ("target", "text", "accepted")


def test_texts_stay_one_column_even_when_they_look_like_sequences() -> None:
    batch = ActionBatch(np.arange(2), np.zeros(2, dtype=np.int16),
                        Args(text=[["a", "b"], "c"]))
    assert batch.args.text.shape == (2,) and batch.args.text[0] == ["a", "b"]


def test_a_column_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="'target' has 2 entries for 3 agents"):
        ActionBatch(np.arange(3), np.zeros(3, dtype=np.int16), Args(target=[1, 2]))


def test_take_concat_and_reorder_keep_every_column_together() -> None:
    a = ActionBatch(np.array([5, 1]), np.array([0, 1]), Args(target=[50, 10], text=["x", "y"]))
    b = ActionBatch(np.array([3]), np.array([1]), Args(target=[30]))
    joined = ActionBatch.concat([a, b]).reorder_like(np.array([1, 3, 5]))
    assert joined.agent.tolist() == [1, 3, 5]
    assert joined.args.target.tolist() == [10, 30, 50]
    assert joined.args.text.tolist() == ["y", None, "x"]
    assert joined.take(np.array([False, True, False])).args.target.tolist() == [30]
    with pytest.raises(TypeError, match="different argument types"):
        ActionBatch.concat([a, ActionBatch(np.array([0]), np.array([0]), Other())])


def test_update_sets_known_columns_only() -> None:
    batch = ActionBatch(np.arange(2), np.zeros(2, dtype=np.int16), Args())
    batch.args.update({"accepted": np.array([False, True])})
    assert batch.args.accepted.tolist() == [False, True]
    with pytest.raises(KeyError, match="no column 'nope'"):
        batch.args.update({"nope": np.zeros(2)})
    assert ActionBatch(np.arange(2), np.zeros(2, dtype=np.int16), NoArgs()).args.columns() == {}


@dataclass
class Inner(ArrayState):
    price: np.ndarray
    names: list[str]


@dataclass
class State(ArrayState):
    money: np.ndarray
    inner: Inner
    rounds: int = 0
    rate: float = 0.5
    index: dict[int, int] = field(default_factory=dict, metadata={"save": False})


def test_array_state_round_trips_through_named_arrays() -> None:
    state = State(np.array([1.5, 2.5]), Inner(np.array([3, 4]), ["a", "bé", ""]), rounds=7,
                  rate=0.25, index={1: 2})
    arrays = state.to_arrays()
    assert set(arrays) == {"money", "inner.price", "inner.names.ends", "inner.names.data",
                           "rounds", "rate"}
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    fresh = State(np.zeros(0), Inner(np.zeros(0, dtype=np.int64), []))
    fresh.load_arrays(arrays)
    assert fresh.money.tolist() == [1.5, 2.5] and fresh.inner.price.tolist() == [3, 4]
    assert fresh.inner.names == ["a", "bé", ""]
    assert fresh.rounds == 7 and isinstance(fresh.rounds, int) and fresh.rate == 0.25
    assert fresh.index == {}  # derived: not saved, rebuilt by the scenario
    fresh.money[0] = 9.0  # a writable copy, not a view of the checkpoint's array
    assert arrays["money"][0] == 1.5


def test_check_batch_names_what_is_wrong() -> None:
    active = np.array([3, 1])
    ok = ActionBatch(active, np.array([0, 1], dtype=np.int16), NoArgs())
    check_batch(ok, active, ("a", "b"), "demo")
    with pytest.raises(ValueError, match=r"unknown action codes \[5\].*'demo' has 2 actions"):
        check_batch(ActionBatch(active, np.array([0, 5]), NoArgs()), active, ("a", "b"), "demo")
    with pytest.raises(ValueError, match="one action per active agent, in the order"):
        check_batch(ActionBatch(active[::-1], np.zeros(2), NoArgs()), active, ("a",), "demo")


def test_policy_kinds_are_found_through_the_registry() -> None:
    assert {"rule", "llm"} <= set(policy_kinds())
    register_policy_kind("demo_kind", lambda req: None)  # type: ignore[arg-type,return-value]
    try:
        assert "demo_kind" in policy_kinds()
    finally:
        policies._KINDS.pop("demo_kind")
