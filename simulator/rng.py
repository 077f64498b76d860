"""Seeded random streams.

Core objects:
    RngStreams: derives an independent ``numpy.random.Generator`` for each (purpose, step).

Every random choice in a run comes from ``RngStreams(seed).get(purpose, step)``. A stream depends
only on the seed, the purpose name and the step, never on how many numbers were drawn before, so
a resumed run draws exactly what the uninterrupted run drew, and a sharded runtime can draw the
same numbers as the local one. There is no generator state to checkpoint.
"""

from __future__ import annotations

import zlib

import numpy as np


class RngStreams:
    """Counter-based random streams keyed by (seed, purpose, step).

    Args:
        seed: the experiment's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def get(self, purpose: str, step: int = 0) -> np.random.Generator:
        """A fresh generator for ``purpose`` at ``step`` (same arguments, same numbers)."""
        key = zlib.crc32(purpose.encode("utf-8"))
        return np.random.default_rng(np.random.SeedSequence([self.seed & 0xFFFFFFFFFFFFFFFF,
                                                             key, int(step)]))

    def uniform(self, purpose: str, step: int, agents: np.ndarray, width: int = 1) -> np.ndarray:
        """Per-agent uniforms in [0, 1), shape ``(len(agents), width)`` (see per_agent_uniform)."""
        return per_agent_uniform(self.seed, purpose, step, agents, width)

    def normal(self, purpose: str, step: int, agents: np.ndarray, width: int = 1) -> np.ndarray:
        """Per-agent standard normals, shape ``(len(agents), width)``."""
        return per_agent_normal(self.seed, purpose, step, agents, width)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective scramble of 64-bit integers (wraps on overflow)."""
    x = x + _GOLDEN
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def per_agent_uniform(seed: int, purpose: str, step: int, agents: np.ndarray,
                      width: int = 1) -> np.ndarray:
    """Uniform numbers in [0, 1), shape ``(len(agents), width)``, keyed by agent id.

    A counter-based generator: agent ``a``'s numbers depend only on (seed, purpose, step, a), not
    on which other agents are in the batch, so a policy or recommender gives every agent the same
    draws whether the batch is whole, split among policies, or split among shards.
    """
    key = np.array([(seed & 0xFFFFFFFFFFFFFFFF), zlib.crc32(purpose.encode()), step & 0xFFFFFFFF],
                   dtype=np.uint64)
    base = _mix64(_mix64(_mix64(key[0:1]) ^ key[1:2]) ^ key[2:3])
    counters = (np.asarray(agents, dtype=np.uint64)[:, None] * np.uint64(width)
                + np.arange(width, dtype=np.uint64)[None, :])
    # SplitMix64 at position `counter` of the stream `base`: one multiply-add and one mix
    counters *= _GOLDEN
    counters += base
    bits = _mix64(counters)
    bits >>= np.uint64(11)
    return bits.astype(np.float64) * (1.0 / 9007199254740992.0)


def per_agent_normal(seed: int, purpose: str, step: int, agents: np.ndarray,
                     width: int = 1) -> np.ndarray:
    """Standard normal numbers keyed by agent id (Box-Muller on ``per_agent_uniform``)."""
    u = per_agent_uniform(seed, purpose, step, agents, 2 * width)
    r = np.sqrt(-2.0 * np.log1p(-u[:, :width]))
    return r * np.cos(2.0 * np.pi * u[:, width:])
