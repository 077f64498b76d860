"""Run bookkeeping: creating run rows, status updates, checkpoints and the list of runs.

Core objects:
    create_run, update_run, find_run, list_runs: the ``runs`` table.
    save_checkpoint, load_checkpoint: the resume state of a run, stored in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Database, StorageError
from .schema import Checkpoint, RunRecord, Step

CHUNK = 64 * 1024 * 1024  # keep each blob well under SQLite's and PostgreSQL's value limits


def now() -> datetime:
    """The current UTC time without tzinfo (portable across SQLite and PostgreSQL)."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_run(db: Database, **fields: Any) -> int:
    """Insert a run row with status ``running`` and return its id."""
    t = now()
    with db.transaction() as conn:
        result = conn.execute(
            sa.insert(RunRecord).values(
                status="running", steps_done=0, created_at=t, updated_at=t, **fields
            )
        )
        return int(result.inserted_primary_key[0])


def update_run(db: Database, run_id: int, conn: Connection | None = None, **fields: Any) -> None:
    """Update fields of a run row (in ``conn``'s transaction when given)."""
    stmt = sa.update(RunRecord).where(RunRecord.id == run_id).values(updated_at=now(), **fields)
    if conn is not None:
        conn.execute(stmt)
        return
    with db.transaction() as own:
        own.execute(stmt)


def find_run(db: Database, ref: int | str | None = None) -> dict[str, Any]:
    """The run with id ``ref``, or the newest run named ``ref``, or the newest run if ``None``."""
    cols = RunRecord.__table__.c
    stmt = sa.select(RunRecord.__table__)
    if ref is None:
        stmt = stmt.order_by(cols.id.desc()).limit(1)
    elif isinstance(ref, int) or str(ref).isdigit():
        stmt = stmt.where(cols.id == int(ref))
    else:
        stmt = stmt.where(cols.name == str(ref)).order_by(cols.id.desc()).limit(1)
    with db.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        what = "no runs" if ref is None else f"no run {ref!r}"
        raise StorageError(f"{what} in {db.shown_url}; `populace runs --db URL` lists them")
    return dict(row)


def list_runs(db: Database) -> pd.DataFrame:
    """All runs in the database with status, seed, steps done and wall time."""
    cols = RunRecord.__table__.c
    stmt = sa.select(
        cols.id, cols.name, cols.scenario, cols.status, cols.seed, cols.n_agents,
        cols.steps_done, cols.steps_planned, cols.wall_s, cols.created_at, cols.updated_at,
    ).order_by(cols.id)
    with db.engine.connect() as conn:
        return pd.DataFrame(conn.execute(stmt).mappings().all(), columns=list(stmt.selected_columns.keys()))


def last_committed_step(db: Database, run_id: int) -> int:
    """The last step whose transaction committed (0 if only the set-up did)."""
    with db.engine.connect() as conn:
        value = conn.execute(
            sa.select(sa.func.max(Step.step)).where(Step.run_id == run_id)
        ).scalar()
    return int(value or 0)


def save_checkpoint(conn: Connection, db: Database, run_id: int, step: int,
                    blob: bytes | memoryview) -> None:
    """Store ``blob`` as the checkpoint after ``step`` and drop older ones of the run (a
    memoryview is written in slices of itself, without copies)."""
    conn.execute(sa.delete(Checkpoint).where(Checkpoint.run_id == run_id))
    chunks = [blob[i : i + CHUNK] for i in range(0, len(blob), CHUNK)] or [b""]
    db.insert_columns(
        conn, "checkpoints", run_id,
        {"step": [step] * len(chunks), "chunk": list(range(len(chunks))), "data": chunks},
    )


def load_checkpoint(db: Database, run_id: int) -> tuple[int, bytes]:
    """The newest checkpoint of a run as ``(step, blob)``."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(Checkpoint.step, Checkpoint.chunk, Checkpoint.data)
            .where(Checkpoint.run_id == run_id)
            .order_by(Checkpoint.step.desc(), Checkpoint.chunk)
        ).all()
    if not rows:
        raise StorageError(f"run {run_id} has no checkpoint to resume from")
    step = rows[0].step
    return int(step), b"".join(bytes(r.data) for r in rows if r.step == step)
