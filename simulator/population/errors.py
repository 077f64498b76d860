"""Errors raised while reading population files.

Core object: :class:`PopulationFileError`, a ``ValueError`` whose message names the file, the
row (1-based data row for tables, 0-based index for JSON lists), the column and a fix.
"""

from __future__ import annotations

from pathlib import Path


class PopulationFileError(ValueError):
    """A population file is missing, unreadable or holds a bad value.

    Attributes:
        path: The file concerned (absolute), if known.
        row: Human-readable row reference, e.g. ``"data row 3"`` or ``"entry [2]"``.
        column: The column (or JSON key) concerned, if any.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: Path | str | None = None,
        row: str | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.row = row
        self.column = column
        self.problem = problem
        where = [f"population file {self.path}"] if self.path is not None else []
        if row is not None:
            where.append(row)
        if column is not None:
            where.append(f"column '{column}'")
        message = ", ".join(where) + ": " + problem if where else problem
        if hint:
            message += f" ({hint})"
        super().__init__(message)


def table_row(position: int) -> str:
    """Row reference for tabular files (CSV/Parquet): 1-based data row, header excluded."""
    return f"data row {position + 1}"


def json_row(position: int) -> str:
    """Row reference for JSON lists: the 0-based index into the list."""
    return f"entry [{position}] (0-based index in the JSON list)"
