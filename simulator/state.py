"""A scenario's state declared once, as named arrays, with a default save and restore.

Core objects:
    ArrayState: base of a dataclass whose fields are numpy arrays, lists of texts or nested
        ArrayStates; ``to_arrays`` and ``load_arrays`` give and take the flat dict of named
        arrays that checkpoints hold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import pack_strings, unpack_strings


@dataclass
class ArrayState:
    """Named arrays a scenario checkpoints (see "State" in docs/scenarios.md).

    Fields hold numpy arrays (saved as they are), lists of texts (packed into two arrays,
    ``name.ends`` and ``name.data``), nested ``ArrayState`` (their keys prefixed ``name.``),
    or plain ints and floats (saved as 0-d arrays). A field whose metadata has
    ``{"save": False}`` is derived and rebuilt by the scenario after a restore.
    """

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The state as ``{key: array}``."""
        out: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            if not f.metadata.get("save", True):
                continue
            value, key = getattr(self, f.name), prefix + f.name
            if isinstance(value, ArrayState):
                out.update(value.to_arrays(key + "."))
            elif isinstance(value, list):
                out[key + ".ends"], out[key + ".data"] = pack_strings(value)
            else:
                out[key] = np.asarray(value)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        """Restore the fields from what ``to_arrays`` gave (each field keeps its kind)."""
        for f in dataclasses.fields(self):
            if not f.metadata.get("save", True):
                continue
            value, key = getattr(self, f.name), prefix + f.name
            restored: Any
            if isinstance(value, ArrayState):
                value.load_arrays(arrays, key + ".")
                continue
            if isinstance(value, list):
                restored = unpack_strings(arrays[key + ".ends"], arrays[key + ".data"])
            elif isinstance(value, bool | int | float):
                restored = type(value)(arrays[key])
            else:
                restored = np.array(arrays[key])  # a writable copy of the checkpoint's array
            setattr(self, f.name, restored)
