"""Run bookkeeping: creating run rows, status updates, checkpoints and the list of runs.

Core objects:
    create_run, update_run, find_run, list_runs: the ``runs`` table.
    finish_run: mark a run stopped and give up its lease, only while holding that lease.
    save_checkpoint, load_checkpoint: the resume state of a run, stored in the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Database, StorageError, unknown_name
from .leases import LeaseLostError, RunLease, lease_holders
from .schema import Checkpoint, RunRecord, Step

CHUNK = 64 * 1024 * 1024  # keep each blob well under SQLite's and PostgreSQL's value limits


def now() -> datetime:
    """The current UTC time without tzinfo (portable across SQLite and PostgreSQL)."""
    return datetime.now(UTC).replace(tzinfo=None)


def create_run(db: Database, conn: Connection | None = None, **fields: Any) -> int:
    """Insert a run row with status ``running`` and return its id (in ``conn``'s transaction
    when given: the engine creates the run, its lease and its step 0 in one)."""
    t = now()
    stmt = sa.insert(RunRecord).values(
        status="running", steps_done=0, created_at=t, updated_at=t, **fields)
    if conn is not None:
        return int(conn.execute(stmt).inserted_primary_key[0])
    with db.transaction() as own:
        return int(own.execute(stmt).inserted_primary_key[0])


def update_run(db: Database, run_id: int, conn: Connection | None = None, **fields: Any) -> None:
    """Update fields of a run row (in ``conn``'s transaction when given)."""
    stmt = sa.update(RunRecord).where(RunRecord.id == run_id).values(updated_at=now(), **fields)
    if conn is not None:
        conn.execute(stmt)
        return
    with db.transaction() as own:
        own.execute(stmt)


def finish_run(db: Database, run_id: int, lease: RunLease, **fields: Any) -> bool:
    """Update the run row (e.g. ``status="failed"``) and release ``lease`` in one transaction,
    only if ``lease`` still holds the run; return whether it did.

    A process that lost its lease must not write the run row: the run belongs to the process
    that took it over (once, the loser of two resumes wrote its own error into the winner's
    completed run).
    """
    try:
        with db.transaction() as conn:
            lease.check(conn)
            update_run(db, run_id, conn=conn, **fields)
            lease.release(conn)
    except LeaseLostError:
        return False
    return True


def find_run(db: Database, ref: int | str | None = None, *, exclude: int | None = None,
             prefer_status: str | None = None) -> dict[str, Any]:
    """The run with id ``ref``, or the newest run named ``ref``, or the newest run if ``None``.

    Args:
        db: the database.
        ref: a run id (an int or a string of digits), a run name, or None.
        exclude: a run never returned (a run being written that looks up another, e.g. the
            run a replay answers from: never itself).
        prefer_status: among runs of a name (or all runs, for ``None``), the newest with this
            status (e.g. ``"completed"``) comes first; the newest of any status when none has it.

    Raises:
        StorageError: no such run (a misspelt name gets the closest known name, and all).
    """
    cols = RunRecord.__table__.c
    stmt = sa.select(RunRecord.__table__)
    if exclude is not None:
        stmt = stmt.where(cols.id != exclude)
    by_id = isinstance(ref, int) or str(ref).isdigit()
    if ref is not None and by_id:
        stmt = stmt.where(cols.id == int(ref))
    else:
        if ref is not None:
            stmt = stmt.where(cols.name == str(ref))
        if prefer_status is not None:
            stmt = stmt.order_by(sa.case((cols.status == prefer_status, 0), else_=1))
        stmt = stmt.order_by(cols.id.desc()).limit(1)
    with db.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
        if row is not None:
            return dict(row)
        if ref is not None and not by_id:  # a misspelt name: the closest, and all
            names = list(conn.execute(sa.select(cols.name).distinct().order_by(cols.name))
                         .scalars())
            if str(ref) in names:  # only the excluded run has that name
                raise StorageError(f"no run {ref!r} in {db.shown_url} other than run {exclude} "
                                   "(the run being written); `populace runs --db URL` lists them")
            raise StorageError(unknown_name("run", str(ref), names, db.shown_url,
                                            none="it holds no runs"))
    if ref is not None and exclude is not None and int(ref) == exclude:
        raise StorageError(f"run {ref} is the run being written, not another run in "
                           f"{db.shown_url}; `populace runs --db URL` lists them")
    what = "no runs" if ref is None else f"no run {ref!r}"
    if ref is None and exclude is not None:
        what = f"no runs other than run {exclude}"
    raise StorageError(f"{what} in {db.shown_url}; `populace runs --db URL` lists them")


def list_runs(db: Database) -> pd.DataFrame:
    """All runs in the database with status, seed, steps done and wall time."""
    cols = RunRecord.__table__.c
    stmt = sa.select(
        cols.id, cols.name, cols.scenario, cols.status, cols.seed, cols.n_agents,
        cols.steps_done, cols.steps_planned, cols.wall_s, cols.created_at, cols.updated_at,
    ).order_by(cols.id)
    with db.engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(stmt).mappings().all(),
                             columns=list(stmt.selected_columns.keys()))
    # who writes each run now (empty for runs nobody writes)
    holders = lease_holders(db)
    frame["writer"] = [holders[i].describe() if i in holders else "" for i in frame["id"]]
    return frame


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
    """The newest checkpoint of a run as ``(step, blob)`` (``StorageError`` if it has none:
    runs written before run creation and step 0 were one transaction may lack one)."""
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
