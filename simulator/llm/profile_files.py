"""The output file of ``populace profiles generate``: one row per agent, written batch by batch.

The file (Parquet or CSV) holds ``agent_id``, every population attribute, ``bio`` and
``error``, row ``i`` being agent ``i`` so that it can serve as a population file. CSV output is
appended in place; Parquet output goes, one row group per batch, into a temporary file that
replaces the output when the writer closes. A file that is already there is checked against the
population (same columns, same attribute values) before its rows are kept.

Core objects:
    output_format: ``parquet`` or ``csv`` from the file name.
    read_existing: the rows already in the output, checked against the population.
    open_writer: a ``ParquetOut`` or ``CsvOut`` that takes the new rows batch by batch.
    EXTRA_COLUMNS: the columns the file adds to the population's attributes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

EXTRA_COLUMNS = ("agent_id", "bio", "error")

__all__ = ["EXTRA_COLUMNS", "CsvOut", "ParquetOut", "open_writer", "output_format",
           "read_existing"]


def output_format(out: Path) -> str:
    """``parquet`` for ``.parquet``/``.pq``, ``csv`` for ``.csv``; anything else is an error."""
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ValueError(f"--out {out}: the file must end in .parquet or .csv")


def read_existing(out: Path, fmt: str, columns: list[str], attrs: pd.DataFrame) -> pd.DataFrame:
    """The rows already in ``out`` (empty when there is none), checked against the population."""
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    if not out.exists() or out.stat().st_size == 0:
        return empty
    try:
        frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    except pd.errors.EmptyDataError:
        return empty
    except Exception as exc:  # pyarrow and pandas raise many unrelated types
        raise ValueError(f"cannot read the existing output file {out} ({exc}); delete it or "
                         "choose another --out") from exc
    frame.columns = [str(c) for c in frame.columns]
    if list(frame.columns) != columns:
        raise ValueError(
            f"{out} has the columns {', '.join(frame.columns)} but this experiment's profiles "
            f"have {', '.join(columns)}: it was written for another population; choose another "
            "--out, or delete the file to start again")
    if len(frame) == 0:
        return empty
    ids = pd.to_numeric(frame["agent_id"], errors="coerce")
    bad = ids.isna() | (ids < 0) | (ids >= len(attrs)) | (ids % 1 != 0)
    if bad.any():
        raise ValueError(f"{out} has agent_id {frame['agent_id'].iloc[int(bad.argmax())]!r}, "
                         f"which is not an agent of this population (0..{len(attrs) - 1})")
    ids = ids.astype(np.int64)
    if ids.duplicated().any():
        raise ValueError(f"{out} has agent_id {int(ids[ids.duplicated()].iloc[0])} twice")
    frame["agent_id"] = ids
    mine = attrs.iloc[ids.to_numpy()].reset_index(drop=True)
    for col in attrs.columns:
        same = _same_values(mine[col], frame[col].reset_index(drop=True))
        if not same.all():
            row = int(np.argmin(same))
            raise ValueError(
                f"{out} was written for another population: agent {int(ids.iloc[row])} has "
                f"{col}={frame[col].iloc[row]!r} there but {mine[col].iloc[row]!r} in this "
                "experiment (did the seed or the population section change?); choose another "
                "--out, or delete the file to start again")
    return frame


def _same_values(mine: pd.Series, theirs: pd.Series) -> np.ndarray:
    """Element-wise equality that survives a CSV round trip (missing == missing)."""
    gone = mine.isna().to_numpy() & theirs.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(mine.dtype) or pd.api.types.is_bool_dtype(mine.dtype):
        a = pd.to_numeric(mine, errors="coerce").astype("float64").to_numpy()
        b = pd.to_numeric(theirs, errors="coerce").astype("float64").to_numpy()
        with np.errstate(invalid="ignore"):
            close = np.isclose(a, b, rtol=1e-9, atol=0.0)
        return gone | close
    a = mine.astype("string").fillna("\x00").to_numpy()
    b = theirs.astype("string").fillna("\x00").to_numpy()
    return gone | (a == b)


def _arrow_schema(columns: list[str], attrs: pd.DataFrame) -> Any:
    layout = attrs.copy()
    layout.columns = [str(c) for c in layout.columns]
    layout.insert(0, "agent_id", np.arange(len(layout), dtype=np.int64))
    layout["bio"] = pd.Series([""] * len(layout), dtype=object)
    layout["error"] = pd.Series([""] * len(layout), dtype=object)
    schema = pa.Schema.from_pandas(layout[columns], preserve_index=False)
    return schema


class ParquetOut:
    """Rows into a temporary Parquet file (one row group per chunk) that replaces ``out`` when
    closed; the rows kept from ``out`` go first."""

    def __init__(self, out: Path, columns: list[str], attrs: pd.DataFrame,
                 kept: pd.DataFrame, batch: int) -> None:
        self.out = out
        self.columns = columns
        self.schema = _arrow_schema(columns, attrs)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = out.with_name(f".{out.name}.partial")
        self.writer: Any = pq.ParquetWriter(str(self.tmp), self.schema)
        self.rows = 0
        for start in range(0, len(kept), batch):
            self.write(kept.iloc[start:start + batch])

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows as one row group."""
        table = pa.Table.from_pandas(frame[self.columns].reset_index(drop=True),
                                     schema=self.schema, preserve_index=False)
        self.writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        """Finish the file and move it over ``out`` (sorted by agent); idempotent."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        writer.close()
        if self.rows == 0 and not self.out.exists():  # failed before the first chunk
            self.tmp.unlink()
            return
        os.replace(self.tmp, self.out)
        _sort_if_needed(self.out, "parquet", self.schema)


class CsvOut:
    """Rows appended to ``out`` chunk by chunk (each chunk one write)."""

    def __init__(self, out: Path, columns: list[str], kept: pd.DataFrame,
                 rewrite: bool) -> None:
        self.out = out
        self.columns = columns
        out.parent.mkdir(parents=True, exist_ok=True)
        if rewrite:  # rows whose request failed are dropped, to be asked again
            _atomic_csv(kept[columns], out)
        self.header = not out.exists() or out.stat().st_size == 0
        self.closed = False

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame``'s rows in one write, flushed to disk."""
        text = frame[self.columns].to_csv(index=False, header=self.header, lineterminator="\n")
        with open(self.out, "a", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self.header = False

    def close(self) -> None:
        """Sort the file by agent if needed; idempotent."""
        if not self.closed:
            self.closed = True
            _sort_if_needed(self.out, "csv", None)


def open_writer(fmt: str, out: Path, columns: list[str], attrs: pd.DataFrame,
            existing: pd.DataFrame | None, kept: pd.DataFrame,
            batch: int) -> ParquetOut | CsvOut:
    """The writer of ``out`` in format ``fmt``; it starts with the ``kept`` rows (Parquet: copied
    into the new file; CSV: the file is rewritten with them when ``existing`` rows were dropped,
    else appended to)."""
    if fmt == "parquet":
        return ParquetOut(out, columns, attrs, kept, batch)
    return CsvOut(out, columns, kept, rewrite=existing is not None)


def _atomic_csv(frame: pd.DataFrame, out: Path) -> None:
    tmp = out.with_name(f".{out.name}.partial")
    frame.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, out)


def _sort_if_needed(out: Path, fmt: str, schema: Any) -> None:
    """Row ``i`` must be agent ``i`` for the file to serve as a population: re-sort by
    ``agent_id`` when agents asked again were appended after later ones."""
    if not out.exists() or out.stat().st_size == 0:
        return
    frame = pd.read_parquet(out) if fmt == "parquet" else pd.read_csv(out)
    if frame["agent_id"].is_monotonic_increasing:
        return
    frame = frame.sort_values("agent_id", kind="stable").reset_index(drop=True)
    if fmt == "csv":
        _atomic_csv(frame, out)
        return
    tmp = out.with_name(f".{out.name}.partial")
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), str(tmp))
    os.replace(tmp, out)
