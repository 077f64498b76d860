"""Loading follow edges from CSV/TSV/Parquet files.

Core function: :func:`load_edge_list`, which reads the ``source``/``target`` columns named by an
:class:`~.config.EdgeListConfig`, maps the ids to agent indices (either directly, ``ids: index``,
or through a unique population attribute such as ``user_id``) and raises
:class:`~.graph.NetworkError` messages that name the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..paths import experiment_path
from .config import EdgeListConfig
from .graph import NetworkError

__all__ = ["load_edge_list", "resolve_format"]

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zip"}
_EXAMPLES = 5


def resolve_format(path: Path, fmt: str) -> str:
    """Return the concrete file format (``csv``, ``tsv`` or ``parquet``) of an edge file.

    Args:
        path: The edge file; with ``fmt == "auto"`` its suffix decides (a compression suffix
            such as ``.gz`` is looked through).
        fmt: ``auto`` or an explicit format.

    Raises:
        NetworkError: The suffix is not recognised.
    """
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffixes[-1]]
    raise NetworkError(
        f"edge_list file {path}: cannot tell the format from its suffix; "
        f"set `format:` to csv, tsv or parquet"
    )


def _examples(values: np.ndarray | pd.Series) -> str:
    return ", ".join(repr(v) for v in pd.unique(np.asarray(values, dtype=object))[:_EXAMPLES])


def _read_columns(path: Path, fmt: str, cfg: EdgeListConfig, as_str: bool) -> pd.DataFrame:
    """Read the two id columns, checking that they exist first."""
    wanted = [cfg.source, cfg.target]
    sep = "\t" if fmt == "tsv" else ","
    try:
        if fmt == "parquet":
            available = list(pq.read_schema(path).names)
        else:
            available = list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except (OSError, ValueError, pd.errors.ParserError) as exc:  # unreadable / not that format
        raise NetworkError(f"edge_list file {path}: cannot read it as {fmt}: {exc}") from exc
    missing = [c for c in wanted if c not in available]
    if missing:
        raise NetworkError(
            f"edge_list file {path} has no column {', '.join(repr(c) for c in missing)} "
            f"(available: {', '.join(map(str, available)) or 'none'}); "
            f"set `source:`/`target:` in the network config"
        )
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path, columns=wanted)
        else:
            dtype = dict.fromkeys(wanted, str) if as_str else None
            frame = pd.read_csv(path, sep=sep, usecols=wanted, dtype=dtype)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise NetworkError(f"edge_list file {path}: cannot read it as {fmt}: {exc}") from exc
    for col in wanted:
        empty = int(frame[col].isna().sum())
        if empty:
            raise NetworkError(
                f"edge_list file {path}: column {col!r} has {empty} empty value(s) "
                f"(first at row {int(np.flatnonzero(frame[col].isna().to_numpy())[0])})"
            )
    return frame


def _as_keys(values: pd.Series) -> pd.Series:
    """Normalise ids for matching: integral numbers as int64, everything else as str."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(str)
    if pd.api.types.is_integer_dtype(values):
        return values.astype(np.int64)
    if pd.api.types.is_float_dtype(values):
        arr = values.to_numpy()
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return values.astype(np.int64)
    return values.astype(str)


def _index_ids(path: Path, col: str, values: pd.Series, n: int) -> np.ndarray:
    """Validate agent indices ``0..n-1`` given directly in the file."""
    keys = _as_keys(values)
    if not pd.api.types.is_integer_dtype(keys):
        bad = values[pd.to_numeric(values, errors="coerce").isna()]
        raise NetworkError(
            f"edge_list file {path}: column {col!r} holds non-integer ids (e.g. "
            f"{_examples(bad if len(bad) else values)}); with `ids: index` the file must use "
            f"agent indices 0..{n - 1}, otherwise set `ids:` to the population attribute "
            f"these values come from (e.g. `ids: user_id`)"
        )
    arr = keys.to_numpy()
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        raise NetworkError(
            f"edge_list file {path}: {int(bad.sum())} value(s) in column {col!r} are outside "
            f"the agent index range 0..{n - 1} (e.g. {_examples(arr[bad])}); "
            f"the population has {n} agents -- if the file uses ids from a population "
            f"attribute, set `ids:` to that attribute"
        )
    return arr


def _mapped_ids(
    path: Path, col: str, values: pd.Series, lookup: pd.Index, attribute: str
) -> np.ndarray:
    """Map attribute values to agent indices through ``lookup``."""
    keys = _as_keys(values)
    if lookup.dtype.kind != keys.dtype.kind:
        keys = keys.astype(str)
        lookup = pd.Index(lookup.astype(str))
    idx = lookup.get_indexer(keys)
    unknown = idx < 0
    if unknown.any():
        raise NetworkError(
            f"edge_list file {path}: {int(unknown.sum())} value(s) in column {col!r} match no "
            f"agent's {attribute!r} (e.g. {_examples(values[unknown])}); check `ids:` and "
            f"that the file belongs to this population"
        )
    return idx.astype(np.int64)


def load_edge_list(
    cfg: EdgeListConfig, n: int, attributes: pd.DataFrame, base_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Read follow edges from a file and map them to agent indices.

    Self loops and duplicate rows are left in; :func:`~.graph.finalize_edges` removes them.

    Args:
        cfg: The ``edge_list`` config.
        n: Number of agents.
        attributes: Population attributes (one row per agent); used when ``cfg.ids`` names one.
        base_dir: Directory that a relative ``cfg.path`` is resolved against.

    Returns:
        Raw ``(src, dst)`` int64 agent indices.

    Raises:
        NetworkError: Missing/unreadable file, missing columns, unknown attribute, non-unique
            attribute, empty values, or ids that are out of range / unknown.
    """
    path = experiment_path(cfg.path, base_dir)  # as validation finds it (~ expanded)
    if not path.is_file():
        raise NetworkError(
            f"edge_list file {path} not found (`path: {cfg.path}` is relative to {base_dir}); "
            f"fix the path or use another generator"
        )
    fmt = resolve_format(path, cfg.format)

    lookup: pd.Index | None = None
    if cfg.ids != "index":
        if cfg.ids not in attributes.columns:
            raise NetworkError(
                f"edge_list file {path}: `ids: {cfg.ids}` is not a population attribute "
                f"(available: {', '.join(map(str, attributes.columns)) or 'none'}); "
                f"use `ids: index` for agent indices 0..{n - 1}"
            )
        if len(attributes) != n:
            raise NetworkError(
                f"edge_list file {path}: population attributes have {len(attributes)} rows "
                f"but there are {n} agents"
            )
        lookup = pd.Index(_as_keys(attributes[cfg.ids].reset_index(drop=True)))
        if not lookup.is_unique:
            dup = lookup[lookup.duplicated()]
            raise NetworkError(
                f"edge_list file {path}: population attribute {cfg.ids!r} is not unique "
                f"({len(dup)} repeated value(s), e.g. {_examples(dup)}), so it cannot identify "
                f"agents; choose a unique id attribute for `ids:`"
            )

    # Read string-keyed attributes' ids as text so that e.g. "007" keeps its leading zeros.
    as_str = lookup is not None and lookup.dtype.kind not in "iu"
    frame = _read_columns(path, fmt, cfg, as_str)
    if frame.empty:  # header only: no edges (the column dtypes carry no information)
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ids = []
    for col in (cfg.source, cfg.target):
        if lookup is None:
            ids.append(_index_ids(path, col, frame[col], n))
        else:
            ids.append(_mapped_ids(path, col, frame[col], lookup, cfg.ids))
    return ids[0], ids[1]
