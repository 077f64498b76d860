"""Low-level readers for population files (CSV, JSON lists of objects, Parquet).

Core objects:

* :class:`LoadedFile` - a file's agents as a DataFrame plus optional follow edges and seed
  posts (filled by the OASIS readers) and the rule used to name rows in error messages.
* :func:`resolve_path`, :func:`read_csv_frame`, :func:`read_json_records`,
  :func:`read_parquet_frame` - each turns every failure into a :class:`PopulationFileError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..paths import experiment_path
from .errors import PopulationFileError, json_row, table_row


@dataclass
class LoadedFile:
    """Agents read from a population file.

    Attributes:
        path: Absolute path of the file.
        frame: One row per agent (row position == agent id), columns already renamed.
        row_label: Turns a 0-based row position into the text used in error messages.
        follow_edges: ``(src, dst)`` int64 arrays, "src follows dst", if the format has them.
        seed_posts: DataFrame ``author_id`` (int64), ``content`` (str), if the format has them.
        source_columns: The file's own column names before any renaming.
        renamed_from: ``{attribute_name: file_column}`` for renamed columns.
    """

    path: Path
    frame: pd.DataFrame
    row_label: Callable[[int], str] = table_row
    follow_edges: tuple[np.ndarray, np.ndarray] | None = None
    seed_posts: pd.DataFrame | None = None
    source_columns: tuple[str, ...] = ()
    renamed_from: dict[str, str] = field(default_factory=dict)


def resolve_path(path: str | Path, base_dir: Path) -> Path:
    """Resolve a configured path against the experiment folder and check it is a file.

    Args:
        path: ``population.file.path`` as written in the YAML.
        base_dir: Folder of the experiment YAML.

    Returns:
        The absolute path.

    Raises:
        PopulationFileError: If nothing readable exists there.
    """
    candidate = experiment_path(path, base_dir)
    hint = (
        f"check population.file.path; relative paths are resolved against "
        f"{Path(base_dir).resolve()}"
    )
    if not candidate.exists():
        raise PopulationFileError("file not found", path=candidate, hint=hint)
    if not candidate.is_file():
        raise PopulationFileError("not a regular file", path=candidate, hint=hint)
    return candidate


_LINE_RE = re.compile(r"line (\d+)")


def read_csv_frame(path: Path) -> pd.DataFrame:
    """Read a CSV file with a header row.

    Raises:
        PopulationFileError: If the file is empty, not UTF-8 or not well-formed CSV.
    """
    try:
        frame = pd.read_csv(path, encoding="utf-8")
    except pd.errors.EmptyDataError as exc:
        raise PopulationFileError(
            "the file is empty", path=path, hint="a CSV needs a header row and one row per agent"
        ) from exc
    except UnicodeDecodeError as exc:
        raise PopulationFileError(
            f"not UTF-8 text (byte offset {exc.start})",
            path=path,
            hint="save the file as UTF-8 CSV, or check population.file.format",
        ) from exc
    except pd.errors.ParserError as exc:
        match = _LINE_RE.search(str(exc))
        row = table_row(int(match.group(1)) - 2) if match else None
        raise PopulationFileError(
            f"malformed CSV: {str(exc).strip()}",
            path=path,
            row=row,
            hint="check quoting and that every row has as many fields as the header",
        ) from exc
    _require_rows(frame, path)
    return frame


def read_json_records(path: Path) -> list[dict[str, Any]]:
    """Read a JSON file holding a list of objects (one per agent).

    Raises:
        PopulationFileError: If the file is not valid JSON or not a non-empty list of objects.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PopulationFileError(
            "not UTF-8 text", path=path, hint="save the file as UTF-8 JSON"
        ) from exc
    except json.JSONDecodeError as exc:
        raise PopulationFileError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", path=path
        ) from exc
    if not isinstance(data, list):
        raise PopulationFileError(
            f"expected a JSON list of objects (one per agent), got a {type(data).__name__}",
            path=path,
            hint='write the file as [{"name": ...}, {"name": ...}]',
        )
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise PopulationFileError(
                f"expected an object with the agent's fields, got {type(item).__name__} "
                f"{short_repr(item)}",
                path=path,
                row=json_row(i),
            )
    if not data:
        raise PopulationFileError(
            "the JSON list is empty; it must hold one object per agent", path=path
        )
    return data


def json_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Build a DataFrame from JSON records; columns are the union of keys in first-seen order."""
    return pd.DataFrame(records)


def read_parquet_frame(path: Path) -> pd.DataFrame:
    """Read a Parquet file.

    Raises:
        PopulationFileError: If pyarrow cannot read it or it has no rows.
    """
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types (ArrowInvalid, OSError)
        raise PopulationFileError(
            f"cannot read as Parquet: {exc}",
            path=path,
            hint="check population.file.format or re-export the file",
        ) from exc
    _require_rows(frame.reset_index(drop=True), path)
    return frame.reset_index(drop=True)


def _require_rows(frame: pd.DataFrame, path: Path) -> None:
    if len(frame) == 0:
        raise PopulationFileError(
            "the file has no data rows", path=path, hint="add one row per agent below the header"
        )


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def apply_mapping(frame: pd.DataFrame, mapping: dict[str, str], path: Path) -> pd.DataFrame:
    """Rename file columns to attribute names.

    Args:
        frame: The file's table.
        mapping: ``{file_column: attribute_name}``.
        path: The file, for error messages.

    Returns:
        The renamed frame (unmapped columns keep their names).

    Raises:
        PopulationFileError: If a mapped column is absent, or a rename would collide with a
            column that keeps its name.
    """
    if not mapping:
        return frame
    columns = [str(c) for c in frame.columns]
    absent = [src for src in mapping if src not in columns]
    if absent:
        raise PopulationFileError(
            f"population.file.mapping names column(s) not in the file: {', '.join(absent)}; "
            f"available: {', '.join(columns)}",
            path=path,
            hint="mapping keys are the file's column names, values the attribute names",
        )
    targets = list(mapping.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise PopulationFileError(
            f"several columns would be renamed to {', '.join(doubled)}",
            path=path,
            hint="check population.file.mapping against the format's built-in renames",
        )
    staying = set(columns) - set(mapping)
    clashes = sorted(dst for dst in mapping.values() if dst in staying)
    if clashes:
        raise PopulationFileError(
            f"mapping would create duplicate column(s) {', '.join(clashes)}, which the file "
            "already has",
            path=path,
            hint="map the existing column elsewhere too, or pick another attribute name",
        )
    return frame.rename(columns=mapping)
