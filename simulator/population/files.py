"""Loading a "bring your own population" file described by :class:`PopulationFile`.

Core function: :func:`load_population_file`, which resolves the path, picks the reader for the
format (csv, json, parquet, oasis_twitter, oasis_reddit; ``auto`` goes by extension), applies
``mapping`` and checks the required ``columns``. Every failure is a
:class:`~.errors.PopulationFileError` naming the file, the row and the column.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .config import PopulationFile
from .distributions import missing_mask
from .errors import PopulationFileError, json_row
from .oasis import looks_like_oasis_twitter, read_oasis_reddit, read_oasis_twitter
from .tabular import (
    LoadedFile,
    apply_mapping,
    json_frame,
    read_csv_frame,
    read_json_records,
    read_parquet_frame,
    resolve_path,
)

logger = logging.getLogger(__name__)

_EXTENSIONS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def detect_format(path: Path, configured: str) -> str:
    """Return the concrete format for a file (``auto`` is resolved by extension).

    Raises:
        PopulationFileError: If ``auto`` meets an unknown extension.
    """
    if configured != "auto":
        return configured
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise PopulationFileError(
            f"cannot tell the format from the extension '{path.suffix}'",
            path=path,
            hint="set population.file.format to csv, json, parquet, oasis_twitter or oasis_reddit",
        )
    return fmt


def load_population_file(spec: PopulationFile, base_dir: Path = Path(".")) -> LoadedFile:
    """Read the agents of a population file.

    Args:
        spec: The ``population.file`` section.
        base_dir: Folder that relative paths are resolved against (the experiment's folder).

    Returns:
        The file's agents (renamed per ``mapping``), with follow edges / seed posts for
        ``oasis_twitter``.

    Raises:
        PopulationFileError: For a missing, unreadable or invalid file, or missing columns.
    """
    path = resolve_path(spec.path, base_dir)
    fmt = detect_format(path, spec.format)
    if fmt == "oasis_twitter":
        loaded = read_oasis_twitter(path, spec.mapping)
    elif fmt == "oasis_reddit":
        loaded = read_oasis_reddit(path, spec.mapping)
    else:
        if fmt == "csv":
            frame, row_label = read_csv_frame(path), None
            if looks_like_oasis_twitter(frame.columns):
                logger.info(
                    "%s looks like an OASIS twitter file; set population.file.format: "
                    "oasis_twitter to load follows and previous tweets",
                    path,
                )
        elif fmt == "json":
            frame, row_label = json_frame(read_json_records(path)), json_row
        else:
            frame, row_label = read_parquet_frame(path), None
        source = tuple(str(c) for c in frame.columns)
        frame = apply_mapping(frame, spec.mapping, path)
        loaded = LoadedFile(
            path=path,
            frame=frame,
            source_columns=source,
            renamed_from={dst: src for src, dst in spec.mapping.items()},
        )
        if row_label is not None:
            loaded.row_label = row_label
    loaded.frame.columns = [str(c) for c in loaded.frame.columns]
    loaded.frame = loaded.frame.reset_index(drop=True)
    _check_required(loaded, spec)
    return loaded


def _check_required(loaded: LoadedFile, spec: PopulationFile) -> None:
    """Every required column must exist (under its file or attribute name) and be filled."""
    if not spec.columns:
        return
    frame = loaded.frame
    # Required names may be given as the file's own column names; find their final names.
    to_final = {src: dst for dst, src in loaded.renamed_from.items()}
    final_name = {
        name: name if name in frame.columns else to_final.get(name, name) for name in spec.columns
    }
    missing = [
        name
        for name, final in final_name.items()
        if final not in frame.columns and name not in loaded.source_columns
    ]
    if missing:
        available = sorted(set(frame.columns) | set(loaded.source_columns))
        raise PopulationFileError(
            f"missing required column(s) {', '.join(missing)}; available: {', '.join(available)}",
            path=loaded.path,
            hint="check population.file.columns and population.file.mapping",
        )
    for name, final in final_name.items():
        if final not in frame.columns:
            continue  # consumed by the format reader (e.g. OASIS follow lists)
        empty = missing_mask(frame[final])
        if empty.any():
            first = int(empty.argmax())
            raise PopulationFileError(
                f"empty value in required column ({int(empty.sum())} row(s) affected)",
                path=loaded.path,
                row=loaded.row_label(first),
                column=name,
                hint="fill the value, or remove the column from population.file.columns",
            )


def pad_column(values: pd.Series, size: int) -> pd.Series:
    """Extend a file column to ``size`` rows; the generated agents get missing values.

    Integer and bool columns switch to pandas' nullable dtypes (``Int64``/``boolean``) when
    padded: casting to float for NaN would corrupt large ids such as 19-digit Twitter ids.
    """
    values = values.reset_index(drop=True)
    if len(values) == size:
        return values
    if pd.api.types.is_integer_dtype(values.dtype):
        values = values.astype("Int64")
    elif pd.api.types.is_bool_dtype(values.dtype):
        values = values.astype("boolean")
    return values.reindex(pd.RangeIndex(size))
