"""Exporting a run's tables to Parquet or CSV files, as one consistent snapshot.

Core objects:
    export_run: write the ``runs`` row and every table that holds rows of a run to a folder.
    Exported: the list of files written, with the ``runs`` row the snapshot holds.

Every table is read in one read transaction on one connection (SQLite: a WAL read snapshot;
PostgreSQL: REPEATABLE READ, READ ONLY), so a run that is still being written exports whole
steps only, every table up to the same step, the one its exported ``runs`` row names.

Tables stream in chunks: rows go from the driver's cursor to the file a chunk at a time, so the
memory an export needs does not grow with the run (a 1M-agent run: 6M rows, under 400 MB).
One progress bar on stderr counts the rows written (``progress``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from tqdm import tqdm

from .database import StorageError, unknown_name
from .loaders import Run, agents_frame
from .schema import RunRecord

FORMATS = ("parquet", "csv")

SKIPPED = ("checkpoints", "run_leases")
"""Tables not exported: binary resume state and the writer's lease are bookkeeping, not data."""


class Exported(list[Path]):
    """The files an export wrote (a list of paths), with the snapshot it holds.

    Attributes:
        run_info: the run's ``runs`` row as it was in the snapshot (``steps_done`` is the last
            step exported; ``status`` is ``running`` for a run that was still being written).
    """

    def __init__(self, paths: list[Path], run_info: dict[str, Any]) -> None:
        super().__init__(paths)
        self.run_info = run_info


AUTO_DELAY_S = 1.0
"""With ``progress=None``, the bar appears (on a terminal) only once the export has run this many
seconds: a small export prints nothing."""


def export_run(run: Run, fmt: str, out_dir: str | Path, chunk_rows: int = 100_000,
               progress: bool | None = None) -> Exported:
    """Write the ``runs`` row and every table of ``run`` to ``out_dir`` as Parquet or CSV.

    All tables come from one read snapshot, so a run being written exports whole steps up to
    the ``steps_done`` of its exported ``runs`` row. Tables stream in chunks of ``chunk_rows``
    rows, so export needs little memory; ``agents`` is written one column per attribute, and
    ``checkpoints`` (binary resume state) is not exported.

    Args:
        run: the run (``open_run``).
        fmt: ``parquet`` or ``csv``.
        out_dir: the folder to write (created if missing); one file per table.
        chunk_rows: rows read and written at a time.
        progress: one bar on stderr over the rows of every table, naming the table being
            written (the tables are counted first, in the same snapshot). ``True``: always;
            ``False``: never, and nothing is counted; ``None``: when stderr is a terminal, and
            only once the export has run ``AUTO_DELAY_S`` seconds (a large export).
            The files are the same either way.

    Returns:
        The paths written (``runs`` first), with the exported ``runs`` row as ``.run_info``.

    Raises:
        StorageError: an unknown format, or the database failed.
    """
    if fmt not in FORMATS:
        raise StorageError(unknown_name("export format", fmt, list(FORMATS), "Populace"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with _snapshot(run) as conn:
        row = conn.execute(sa.select(RunRecord.__table__).where(
            RunRecord.id == run.id)).mappings().first()
        if row is None:
            raise StorageError(f"run {run.id} was deleted from {run.db.shown_url}")
        info = dict(row)
        selects = {t: run._select(t) for t in run.tables(conn) if t not in SKIPPED}
        path = out / f"runs.{fmt}"
        _write_frames([pd.DataFrame([{k: (json.dumps(v) if isinstance(v, dict) else v)
                                      for k, v in info.items()}])], path, fmt)
        written.append(path)
        label = f"export run {run.id}"
        with _progress_bar(conn, selects, progress, label) as bar:
            for name, stmt in selects.items():
                bar.set_description(f"{label} ({name})", refresh=False)
                path = out / f"{name}.{fmt}"
                frames = _chunks(conn, stmt, chunk_rows, bar)
                if name == "agents":
                    frames = (agents_frame(f["agent_id"].to_numpy(),
                                           f["attributes"].tolist()).reset_index()
                              for f in frames)
                _write_frames(frames, path, fmt)
                written.append(path)
            bar.set_description(label, refresh=False)
    return Exported(written, info)


def _progress_bar(conn: Connection, selects: dict[str, sa.Select], progress: bool | None,
                  label: str) -> tqdm:
    """The export's bar over the rows of ``selects`` (disabled: nothing counted)."""
    shown = progress if progress is not None else sys.stderr.isatty()
    total = None
    if shown:  # counted in the snapshot, so the total is exact; a small cost next to reading
        total = sum(conn.execute(sa.select(sa.func.count()).select_from(
            stmt.order_by(None).subquery())).scalar() or 0 for stmt in selects.values())
    return tqdm(total=total, desc=label, unit=" rows", unit_scale=(total or 0) >= 10_000,
                disable=not shown, file=sys.stderr, dynamic_ncols=True,
                delay=AUTO_DELAY_S if progress is None else 0.0)


@contextmanager
def _snapshot(run: Run) -> Iterator[Connection]:
    """One connection in one read-only transaction that sees one committed state."""
    db = run.db
    with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                          postgresql_readonly=True)
        try:
            with _sorts_on_disk(conn), conn.begin():
                if db.dialect == "sqlite":
                    # Python's sqlite3 opens no transaction for SELECTs: without BEGIN each
                    # statement would read the file as it is at that moment
                    conn.exec_driver_sql("BEGIN")
                yield conn
        except (sa.exc.OperationalError, sa.exc.DBAPIError) as exc:
            raise StorageError(f"exporting run {run.id} from {db.shown_url} failed: "
                               f"{getattr(exc, 'orig', exc)}") from exc


@contextmanager
def _sorts_on_disk(conn: Connection) -> Iterator[None]:
    """On SQLite, let the sorts of the export's ``ORDER BY`` spill past the page cache to a
    temporary file, as SQLite does by default, instead of the memory that the readers'
    ``temp_store=MEMORY`` gives them: sorting the 5M follow edges of a 1M-agent run in memory
    added 170 MB to the export's peak, and took longer. The connection goes back to the pool
    as it was."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    before = int(raw.execute("PRAGMA temp_store").fetchone()[0])
    raw.execute("PRAGMA temp_store=FILE")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA temp_store={before}")


def _chunks(conn: Connection, stmt: sa.Select, chunk_rows: int,
            bar: tqdm) -> Iterator[pd.DataFrame]:
    """The rows of ``stmt`` in DataFrames of ``chunk_rows``, read through the driver's cursor on
    ``conn`` (in its transaction): SQLAlchemy's row objects cost more than the read itself at
    millions of rows. Its type conversions are kept, applied to the columns that have one (on
    SQLite, date-times and booleans)."""
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect)
    params = compiled.construct_params()
    args: Any = (tuple(params[k] for k in compiled.positiontup or ()) if compiled.positional
                 else params)
    keys = [c.key for c in stmt.selected_columns]
    raw = conn.connection.dbapi_connection
    assert raw is not None
    # PostgreSQL: a server-side cursor, so that the table streams instead of arriving whole
    cursor = (raw.cursor(name=f"populace_export_{id(stmt)}") if dialect.name == "postgresql"
              else raw.cursor())
    try:
        cursor.execute(compiled.string, args)
        codes = [d[1] for d in cursor.description]  # the driver's type of each column
        convert = [(c.key, proc) for c, code in zip(stmt.selected_columns, codes, strict=True)
                   if (proc := c.type.dialect_impl(dialect).result_processor(dialect, code))]
        while rows := cursor.fetchmany(chunk_rows):
            frame = pd.DataFrame.from_records(rows, columns=keys)
            for key, proc in convert:
                frame[key] = [proc(v) for v in frame[key].tolist()]
            bar.update(len(rows))
            yield frame
    finally:
        cursor.close()


def _write_frames(frames: Any, path: Path, fmt: str) -> None:
    writer = None
    wrote_header = False
    try:
        for frame in frames:
            if fmt == "csv":
                frame.to_csv(path, mode="a" if wrote_header else "w", header=not wrote_header,
                             index=False)
                wrote_header = True
                continue
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
        if fmt == "csv" and not wrote_header:
            path.write_text("")
        if fmt == "parquet" and writer is None:
            pq.write_table(pa.table({}), path)
    finally:
        if writer is not None:
            writer.close()
