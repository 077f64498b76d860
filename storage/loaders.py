"""Reading runs back as pandas DataFrames, and exporting them to Parquet or CSV.

Core objects:
    Run: a handle on one run in a database; ``run.table("posts")``, ``run.metrics()``,
        ``run.agents()``, ``run.steps()`` return DataFrames.
    open_run: open a run by database URL or SQLite path, and run id or name.
    export_run: write each table of a run to a folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from .database import Database, StorageError
from .runs import find_run


def database_url(target: str | Path) -> str:
    """Turn a SQLite file path into a URL; URLs pass through unchanged."""
    text = str(target)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text)}"


class Run:
    """A handle on one run: its row in ``runs`` and its tables as DataFrames.

    Args:
        db: the database, or its URL / SQLite path.
        ref: run id or name; the newest run when omitted.
    """

    def __init__(self, db: Database | str | Path, ref: int | str | None = None) -> None:
        self.db = db if isinstance(db, Database) else Database(database_url(db), create=False)
        self.info: dict[str, Any] = find_run(self.db, ref)
        self.id: int = int(self.info["id"])

    def __repr__(self) -> str:
        i = self.info
        return (f"Run(id={self.id}, name={i['name']!r}, status={i['status']!r}, "
                f"steps={i['steps_done']}/{i['steps_planned']})")

    def tables(self) -> list[str]:
        """Names of the tables that hold rows of this run (``runs`` excluded)."""
        names = []
        with self.db.engine.connect() as conn:
            for name in self.db.table_names():
                if name == "runs":
                    continue
                t = self.db.table(name)
                if "run_id" in t.c and conn.execute(
                    sa.select(t.c.run_id).where(t.c.run_id == self.id).limit(1)
                ).first():
                    names.append(name)
        return names

    def _select(self, name: str, where: Any = None) -> sa.Select:
        t = self.db.table(name)
        # the surrogate key of event tables means nothing to users; it only keeps write order
        cols = [c for c in t.c if c.name not in ("run_id", "id")]
        stmt = sa.select(*cols).where(t.c.run_id == self.id)
        if where is not None:
            stmt = stmt.where(where(t))
        order = [c for c in ("step", "id", "post_id") if c in t.c]
        return stmt.order_by(*[t.c[c] for c in order]) if order else stmt

    def table(self, name: str) -> pd.DataFrame:
        """All rows of ``name`` for this run, without the ``run_id`` column."""
        stmt = self._select(name)
        with self.db.engine.connect() as conn:
            result = conn.execute(stmt)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def steps(self) -> pd.DataFrame:
        """One row per committed step: simulated time, active agents, actions, timings."""
        return self.table("steps")

    def metrics(self, wide: bool = True) -> pd.DataFrame:
        """Per-step metrics; ``wide`` gives one column per metric indexed by step."""
        long = self.table("step_metrics")
        if not wide:
            return long
        if long.empty:
            return pd.DataFrame(index=pd.Index([], name="step"))
        wide_df = long.pivot(index="step", columns="name", values="value")
        wide_df.columns.name = None
        return wide_df

    def agents(self) -> pd.DataFrame:
        """The population: one row per agent, one column per attribute, indexed by agent id."""
        raw = self.table("agents")
        attrs = pd.DataFrame.from_records([json.loads(a) for a in raw["attributes"]])
        attrs.index = pd.Index(raw["agent_id"].to_numpy(), name="agent_id")
        return attrs

    def agent_states(self, variable: str | None = None) -> pd.DataFrame:
        """Agent state snapshots as a (step x agent) table per variable, or long if several."""
        long = self.table("agent_states")
        if variable is None:
            return long
        sub = long[long["variable"] == variable]
        return sub.pivot(index="step", columns="agent_id", values="value")


def open_run(db: str | Path | Database, run: int | str | None = None) -> Run:
    """Open a run by database URL (or SQLite path) and run id or name (newest if omitted)."""
    return Run(db, run)


def export_run(run: Run, fmt: str, out_dir: str | Path, chunk_rows: int = 500_000) -> list[Path]:
    """Write every table of ``run`` to ``out_dir`` as Parquet or CSV; return the files written.

    Large tables stream in chunks of ``chunk_rows`` so export needs little memory. The
    ``agents`` file has one column per attribute; resume checkpoints are not exported.
    """
    if fmt not in ("parquet", "csv"):
        raise StorageError(f"unknown export format {fmt!r}; use parquet or csv")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    # checkpoints are resume blobs, not data; agents are written one column per attribute
    names = ["runs", *[t for t in run.tables() if t != "checkpoints"]]
    for name in names:
        path = out / f"{name}.{fmt}"
        if name == "runs":
            frame = pd.DataFrame([{k: (json.dumps(v) if isinstance(v, dict) else v)
                                   for k, v in run.info.items()}])
            frames: Any = [frame]
        elif name == "agents":
            frames = [run.agents().reset_index()]
        else:
            frames = _chunks(run, name, chunk_rows)
        _write_frames(frames, path, fmt)
        written.append(path)
    return written


def _chunks(run: Run, name: str, chunk_rows: int):
    stmt = run._select(name)
    with run.db.engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(stmt)
        keys = list(result.keys())
        while rows := result.fetchmany(chunk_rows):
            yield pd.DataFrame(rows, columns=keys)


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
