"""Rows for the database, per table, as columns, and the per-agent chunk sums that keep metrics
independent of sharding.

Core objects:
    Records: table name -> column name -> numpy array or list.
    merge_records, joined_records: append rows of several parts (mixed-policy parts, shards).
    chunk_sums, AGENT_CHUNK: sums of a per-agent quantity over fixed chunks of agent ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Records = dict[str, dict[str, Any]]
"""Table name -> column name -> numpy array or list; each table's columns share one length."""


def merge_records(records: Records, more: Records) -> None:
    """Add ``more``'s rows to ``records``, appending to the tables both have (numpy columns
    stay numpy)."""
    for table, cols in more.items():
        if table not in records:
            records[table] = dict(cols)
            continue
        mine = records[table]
        for name, values in cols.items():
            have = mine[name]
            if isinstance(have, np.ndarray) and isinstance(values, np.ndarray):
                mine[name] = np.concatenate([have, values])
            else:
                mine[name] = list(have) + list(values)


def joined_records(parts: list[Records]) -> Records:
    """The rows of several parts (mixed-policy parts, Ray shards) in order, table by table."""
    records: Records = {}
    for part in parts:
        merge_records(records, part)
    return records


AGENT_CHUNK = 64
"""Agents per chunk of ``chunk_sums``. Ray shards' blocks of agent ids start at multiples of it,
so a metric summed over chunks is the same, to the last bit, on any number of shards."""


def chunk_sums(values: np.ndarray, lo: int = 0) -> np.ndarray:
    """Sums of a per-agent quantity over chunks of ``AGENT_CHUNK`` agent ids.

    ``values`` holds agents ``lo, lo + 1, ...`` (a replica's own agents; ``lo`` a multiple of
    ``AGENT_CHUNK``). The chunk sums of every replica, concatenated in shard order and summed,
    give the same float as the local runtime's: floating-point addition is not associative,
    so a metric that summed each shard's agents and then added the shards would change with
    the number of shards.
    """
    if lo % AGENT_CHUNK:
        raise ValueError(f"chunk_sums: lo={lo} is not a multiple of {AGENT_CHUNK}")
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.zeros(0)
    return np.add.reduceat(values, np.arange(0, len(values), AGENT_CHUNK))
