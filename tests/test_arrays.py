"""Array helpers: texts packed into arrays for checkpoints."""

from __future__ import annotations

import numpy as np

from populace.simulator.arrays import pack_strings, unpack_strings


def test_packed_strings_come_back_exactly() -> None:
    texts = ["", "plain", "naïve ☃ 🙂", "a\x00b", "", "\ue000", "x" * 10_000]
    ends, data = pack_strings(texts)
    assert ends.dtype == np.int64 and data.dtype == np.uint8 and len(ends) == len(texts)
    assert unpack_strings(ends, data) == texts
    ends, data = pack_strings([])
    assert unpack_strings(ends, data) == [] and len(data) == 0
