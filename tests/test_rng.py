"""The seeded random streams: reproducible, keyed by agent id, statistically sound."""

from __future__ import annotations

import numpy as np

from populace.simulator.rng import RngStreams


def test_streams_repeat_and_differ_by_purpose_step_and_seed() -> None:
    rng = RngStreams(5)
    a = rng.get("activation", 3).random(4)
    assert np.array_equal(a, RngStreams(5).get("activation", 3).random(4))
    assert not np.array_equal(a, rng.get("activation", 4).random(4))
    assert not np.array_equal(a, rng.get("network", 3).random(4))
    assert not np.array_equal(a, RngStreams(6).get("activation", 3).random(4))


def test_per_agent_draws_do_not_depend_on_the_batch() -> None:
    rng = RngStreams(11)
    ids = np.arange(1000)
    whole = rng.uniform("p", 2, ids, 3)
    shuffled = np.random.default_rng(0).permutation(ids)
    part = rng.uniform("p", 2, shuffled[:100], 3)
    np.testing.assert_array_equal(part, whole[shuffled[:100]])
    assert not np.array_equal(whole, rng.uniform("p", 3, ids, 3))
    assert not np.array_equal(whole, rng.uniform("q", 2, ids, 3))


def test_per_agent_uniforms_and_normals_have_the_right_distribution() -> None:
    rng = RngStreams(3)
    u = rng.uniform("u", 1, np.arange(400_000), 2)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.001
    hist = np.bincount((u[:, 0] * 20).astype(int), minlength=20) / len(u)
    assert np.abs(hist - 0.05).max() < 0.003
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.01  # columns independent
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.01  # neighbours independent
    z = rng.normal("z", 1, np.arange(400_000))[:, 0]
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 0.003
