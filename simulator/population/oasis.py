"""Readers for OASIS (camel-ai/oasis) user files, so OASIS populations can be reused.

Core functions:

* :func:`read_oasis_twitter` - the Twitter CSV (``user_id, name, username, description,
  user_char, following_agentid_list, previous_tweets`` plus any extra columns). The agent id is
  the row position, as in OASIS; the follow lists become ``follow_edges`` and the previous
  tweets become ``seed_posts``.
* :func:`read_oasis_reddit` - the Reddit JSON list of ``{realname, username, bio, persona, age,
  gender, mbti, country}`` objects.

Attribute names follow Populace conventions: ``description`` -> ``bio``, ``user_char`` ->
``persona``, ``realname`` -> ``name``; every other column keeps its name. A user ``mapping``
is applied on top of (and may override) these renames; its keys are the file's column names.
"""

from __future__ import annotations

import ast
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import PopulationFileError, json_row, table_row
from .tabular import (
    LoadedFile,
    apply_mapping,
    json_frame,
    read_csv_frame,
    read_json_records,
    short_repr,
)

logger = logging.getLogger(__name__)

TWITTER_REQUIRED = ("name", "username", "description", "user_char")
"""Columns OASIS itself reads from every Twitter row."""
TWITTER_FOLLOWING = "following_agentid_list"
TWITTER_TWEETS = "previous_tweets"
TWITTER_RENAMES = {"description": "bio", "user_char": "persona"}

REDDIT_REQUIRED = ("realname", "username", "bio", "persona", "age", "gender", "mbti", "country")
REDDIT_RENAMES = {"realname": "name"}


def read_oasis_twitter(path: Path, mapping: dict[str, str] | None = None) -> LoadedFile:
    """Read an OASIS Twitter user CSV.

    ``following_agentid_list`` and ``previous_tweets`` are optional (newer OASIS files may omit
    them); when present they are parsed as Python list literals and removed from the attribute
    table. Follows of ids outside ``0..rows-1``, self-follows and repeats are dropped with one
    ``logging`` warning giving the counts.

    Args:
        path: Absolute path of the CSV.
        mapping: Extra ``{file_column: attribute_name}`` renames.

    Returns:
        The agents with ``follow_edges`` and ``seed_posts`` set.

    Raises:
        PopulationFileError: If required columns are missing or a list literal is malformed.
    """
    raw = read_csv_frame(path)
    _require_columns(raw, TWITTER_REQUIRED, path, "OASIS twitter CSV")
    n = len(raw)

    if TWITTER_FOLLOWING in raw.columns:
        edges = _follow_edges(raw[TWITTER_FOLLOWING], n, path)
    else:
        edges = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    if TWITTER_TWEETS in raw.columns:
        posts = _seed_posts(raw[TWITTER_TWEETS], path)
    else:
        posts = pd.DataFrame(
            {"author_id": np.empty(0, dtype=np.int64), "content": pd.Series([], dtype=str)}
        )

    frame = raw.drop(columns=[c for c in (TWITTER_FOLLOWING, TWITTER_TWEETS) if c in raw])
    renames = {k: v for k, v in TWITTER_RENAMES.items() if k not in (mapping or {})}
    renames.update(mapping or {})
    renames = _only_present(renames, frame, mapping, path)
    frame = apply_mapping(frame, renames, path)
    return LoadedFile(
        path=path,
        frame=frame,
        row_label=table_row,
        follow_edges=edges,
        seed_posts=posts,
        source_columns=tuple(str(c) for c in raw.columns),
        renamed_from={dst: src for src, dst in renames.items()},
    )


def read_oasis_reddit(path: Path, mapping: dict[str, str] | None = None) -> LoadedFile:
    """Read an OASIS Reddit user JSON (a list of user objects).

    Args:
        path: Absolute path of the JSON file.
        mapping: Extra ``{file_key: attribute_name}`` renames.

    Returns:
        The agents; ``age`` is an int64 column. No follow edges or seed posts.

    Raises:
        PopulationFileError: If an object lacks required keys or has a non-integer age.
    """
    records = read_json_records(path)
    for i, record in enumerate(records):
        missing = [k for k in REDDIT_REQUIRED if k not in record]
        if missing:
            raise PopulationFileError(
                f"missing required key(s) {', '.join(missing)}; OASIS reddit users need "
                f"{', '.join(REDDIT_REQUIRED)}",
                path=path,
                row=json_row(i),
            )
    ages = np.empty(len(records), dtype=np.int64)
    for i, record in enumerate(records):
        age = _as_int(record["age"])
        if age is None:
            raise PopulationFileError(
                f"age must be a whole number, got {short_repr(record['age'])}",
                path=path,
                row=json_row(i),
                column="age",
            )
        ages[i] = age
    frame = json_frame(records)
    source_columns = tuple(str(c) for c in frame.columns)
    frame["age"] = ages
    renames = {k: v for k, v in REDDIT_RENAMES.items() if k not in (mapping or {})}
    renames.update(mapping or {})
    frame = apply_mapping(frame, renames, path)
    return LoadedFile(
        path=path,
        frame=frame,
        row_label=json_row,
        source_columns=source_columns,
        renamed_from={dst: src for src, dst in renames.items()},
    )


def looks_like_oasis_twitter(columns: Any) -> bool:
    """True if a CSV's columns look like an OASIS Twitter user file."""
    names = {str(c) for c in columns}
    return {TWITTER_FOLLOWING, "user_char"} <= names


def _only_present(
    renames: dict[str, str],
    frame: pd.DataFrame,
    user_mapping: dict[str, str] | None,
    path: Path,
) -> dict[str, str]:
    """Keep built-in renames whose column exists; user mapping keys must exist in the file."""
    user_mapping = user_mapping or {}
    consumed = [k for k in user_mapping if k in (TWITTER_FOLLOWING, TWITTER_TWEETS)]
    if consumed:
        raise PopulationFileError(
            f"column(s) {', '.join(consumed)} become follow_edges / seed_posts and cannot be "
            "mapped to attributes",
            path=path,
            hint="remove them from population.file.mapping",
        )
    return {k: v for k, v in renames.items() if k in user_mapping or k in frame.columns}


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], path: Path, what: str) -> None:
    columns = [str(c) for c in frame.columns]
    missing = [c for c in required if c not in columns]
    if missing:
        raise PopulationFileError(
            f"missing column(s) {', '.join(missing)} required in an {what}; "
            f"available: {', '.join(columns)}",
            path=path,
            hint="check population.file.format",
        )


def _is_blank(cell: Any) -> bool:
    if cell is None or cell is pd.NA:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def _parse_list(cell: Any, path: Path, row: int, column: str, example: str) -> list[Any] | None:
    """Parse one list-literal cell; ``None`` means a bare integer, which OASIS ignores."""
    if _is_blank(cell):
        return []
    if isinstance(cell, list | tuple | np.ndarray):
        return list(cell)
    text = str(cell).strip()
    if text == "[]":
        return []
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise PopulationFileError(
            f"malformed list literal {short_repr(text)} ({type(exc).__name__})",
            path=path,
            row=table_row(row),
            column=column,
            hint=f"write a Python-style list such as {example}, or [] for none",
        ) from exc
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    if not isinstance(value, list | tuple):
        raise PopulationFileError(
            f"expected a list literal, got {short_repr(text)}",
            path=path,
            row=table_row(row),
            column=column,
            hint=f"write a Python-style list such as {example}, or [] for none",
        )
    return list(value)


def _as_int(value: Any) -> int | None:
    """Whole number from int / integral float / digit string; ``None`` if not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
    return None


def _follow_edges(column: pd.Series, n: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Turn per-row following lists into deduplicated ``(src, dst)`` arrays."""
    src: list[int] = []
    dst: list[int] = []
    bare_ints = 0
    for row, cell in enumerate(column.tolist()):
        ids = _parse_list(cell, path, row, TWITTER_FOLLOWING, "[1, 5, 7]")
        if ids is None:
            bare_ints += 1
            continue
        for item in ids:
            target = _as_int(item)
            if target is None:
                raise PopulationFileError(
                    f"following list holds {short_repr(item)}, which is not an agent id",
                    path=path,
                    row=table_row(row),
                    column=TWITTER_FOLLOWING,
                    hint="agent ids are the 0-based row positions of the followed users",
                )
            src.append(row)
            dst.append(target)
    s = np.asarray(src, dtype=np.int64)
    d = np.asarray(dst, dtype=np.int64)
    in_range = (d >= 0) & (d < n)
    not_self = s != d
    keep = in_range & not_self
    s, d = s[keep], d[keep]
    # Keep the first occurrence of each (src, dst) pair, preserving file order.
    _, first = np.unique(s * max(n, 1) + d, return_index=True)
    first.sort()
    dupes = s.size - first.size
    s, d = s[first], d[first]
    out_of_range = int((~in_range).sum())
    self_follows = int((in_range & ~not_self).sum())
    if out_of_range or self_follows or dupes or bare_ints:
        logger.warning(
            "%s: dropped %d follow(s) of agent ids outside 0..%d, %d self-follow(s), "
            "%d repeated follow(s); ignored %d bare-integer following cell(s)",
            path,
            out_of_range,
            n - 1,
            self_follows,
            dupes,
            bare_ints,
        )
    return s, d


def _seed_posts(column: pd.Series, path: Path) -> pd.DataFrame:
    """Turn per-row previous-tweet lists into an ``author_id, content`` table."""
    authors: list[int] = []
    contents: list[str] = []
    for row, cell in enumerate(column.tolist()):
        tweets = _parse_list(cell, path, row, TWITTER_TWEETS, "['first tweet', 'second tweet']")
        for tweet in tweets or ():
            if _is_blank(tweet):
                continue
            authors.append(row)
            contents.append(str(tweet))
    return pd.DataFrame(
        {
            "author_id": np.asarray(authors, dtype=np.int64),
            "content": pd.Series(contents, dtype=str),
        }
    )
