"""Parameter sweeps in the database: what a sweep plans, how far it got, and its results as one
tidy DataFrame.

Core objects:
    find_sweep: a sweep's row by name.
    record_sweep: store a sweep's spec and planned runs (or find the same sweep already there).
    sweep_progress: the planned runs with the status of each run (not started, running, ...).
    sweep_lease: the lease that lets one process at a time run a sweep.
    record_outcome: what the sweep made of one of its runs, when the run's status does not say.
    open_sweep: every run of a sweep, one row per run and step, with its parameters and metrics
        (like Mesa's ``batch_run``).
    list_sweeps: the sweeps in a database.

A sweep's runs are ordinary runs (``open_run`` reads any of them); ``sweep_runs`` names each
planned run, and a run belongs to its sweep by that name. Storage knows nothing about how the
runs are made: ``populace.simulator.sweep`` plans and runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .database import Database, StorageError, unknown_name
from .leases import LeaseHeldError, RunLease
from .loaders import database_url
from .runs import now
from .schema import RunRecord, StepMetric, SweepRecord, SweepRunRecord

ID_CHUNK = 500  # run ids per IN (...) list: well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its parameter point, seed, run name and parameter values."""

    point: int
    seed: int
    run_name: str
    params: dict[str, Any]


def record_sweep(db: Database, name: str, spec: dict[str, Any],
                 runs: Sequence[PlannedRun]) -> tuple[int, dict[str, Any] | None]:
    """Store sweep ``name`` with its ``spec`` and planned ``runs``, in one transaction.

    Returns:
        ``(sweep id, None)`` for a new sweep; ``(sweep id, stored spec)`` when a sweep of that
        name is already in the database (its spec may differ from ``spec``: the caller decides;
        nothing is written then). Two processes recording the same new sweep at once: one
        writes it, the other finds it.
    """
    table = SweepRecord.__table__
    try:
        with db.transaction() as conn:
            row = conn.execute(sa.select(table.c.id, table.c.spec)
                               .where(table.c.name == name)).first()
            if row is not None:
                return int(row.id), dict(row.spec)
            sweep_id = int(conn.execute(sa.insert(SweepRecord).values(
                name=name, spec=spec, created_at=now())).inserted_primary_key[0])
            if runs:
                conn.execute(sa.insert(SweepRunRecord), [
                    {"sweep_id": sweep_id, "point": r.point, "seed": r.seed,
                     "run_name": r.run_name, "params": r.params} for r in runs])
            return sweep_id, None
    except (IntegrityError, StorageError) as err:
        # recorded by another process between our read and our insert (the transaction
        # reports the unique name's violation as a StorageError caused by it)
        if not isinstance(err, IntegrityError) and not isinstance(err.__cause__, IntegrityError):
            raise
        with db.engine.connect() as conn:
            row = conn.execute(sa.select(table.c.id, table.c.spec)
                               .where(table.c.name == name)).one()
        return int(row.id), dict(row.spec)


def find_sweep(db: Database, name: str | None = None) -> dict[str, Any]:
    """The row of sweep ``name`` (the newest sweep for None): id, name, spec, created_at.

    Raises:
        StorageError: no such sweep (the message lists the sweeps there).
    """
    if "sweeps" not in db.table_names():
        raise StorageError(f"no sweeps in {db.shown_url} (`populace sweep FILE.yaml` writes "
                           "them)")
    table = SweepRecord.__table__
    stmt = sa.select(table)
    stmt = stmt.where(table.c.name == name) if name is not None else stmt.order_by(
        table.c.id.desc()).limit(1)
    with db.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
        if row is not None:
            return dict(row)
        names = list(conn.execute(sa.select(table.c.name).order_by(table.c.name)).scalars())
    raise StorageError(unknown_name("sweep", str(name), names, db.shown_url,
                                    none="it holds no sweeps"))


def sweep_progress(db: Database, sweep_id: int) -> pd.DataFrame:
    """The planned runs of a sweep: ``point``, ``seed``, ``run_name``, ``params`` (a dict),
    and of the newest run with that name ``run_id``, ``status``, ``steps_done`` and
    ``steps_planned`` (``run_id`` is missing and ``status`` is ``"planned"`` before a worker
    started it). ``status`` is ``"failed"`` with ``error`` saying why where the sweep judged
    the run failed though it completed (``record_outcome``)."""
    planned = SweepRunRecord.__table__
    runs = RunRecord.__table__
    newest = (sa.select(runs.c.name, sa.func.max(runs.c.id).label("run_id"))
              .group_by(runs.c.name).subquery())
    stmt = (sa.select(planned.c.point, planned.c.seed, planned.c.run_name, planned.c.params,
                      newest.c.run_id, runs.c.status, runs.c.steps_done, runs.c.steps_planned,
                      planned.c.outcome_run_id, planned.c.outcome, planned.c.error)
            .select_from(planned
                         .outerjoin(newest, newest.c.name == planned.c.run_name)
                         .outerjoin(runs, runs.c.id == newest.c.run_id))
            .where(planned.c.sweep_id == sweep_id)
            .order_by(planned.c.point, planned.c.seed))
    with db.engine.connect() as conn:
        result = conn.execute(stmt)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame["run_id"] = frame["run_id"].astype("Int64")
    frame["status"] = frame["status"].fillna("planned")
    # the sweep's verdict on the run it judged, while that run is still the newest of its name
    judged = (frame["outcome"].notna() & (frame["outcome_run_id"].astype("Int64")
                                          == frame["run_id"]).fillna(False))
    frame.loc[judged, "status"] = frame.loc[judged, "outcome"]
    frame["error"] = frame["error"].where(judged, None)
    return frame.drop(columns=["outcome_run_id", "outcome"])


def sweep_lease(db: Database, sweep_id: int, name: str) -> RunLease:
    """Take the lease that lets this process run sweep ``sweep_id`` (key ``-sweep_id`` in
    ``run_leases``: the runs' own lease machinery, heartbeat and takeover of dead holders
    included), with its heartbeat going; ``release_sweep_lease`` gives it back.

    Raises:
        LeaseHeldError: another live process runs the sweep (the message names it).
    """
    lease = RunLease(db)
    try:
        lease.acquire(-sweep_id)
    except LeaseHeldError as err:
        raise LeaseHeldError(
            f"sweep {name!r} is being run by {err.holder.describe()}; one process runs a "
            "sweep at a time. Wait for it to finish or stop it (Ctrl-C, or `kill "
            f"{err.holder.pid}` on {err.holder.host}); its runs are then resumed by running "
            "the sweep again", err.holder) from None
    lease.start_heartbeat()
    return lease


def release_sweep_lease(db: Database, lease: RunLease) -> None:
    """Give back a lease ``sweep_lease`` took."""
    lease.stop()
    with db.transaction() as conn:
        lease.release(conn)


def record_outcome(db: Database, sweep_id: int, point: int, seed: int, run_id: int | None,
                   outcome: str | None, error: str | None = None) -> None:
    """Record what the sweep made of its run (point, seed): ``outcome="failed"`` with the
    reason for a run that completed without doing what was asked, or ``None`` to clear it."""
    table = SweepRunRecord.__table__
    with db.transaction() as conn:
        conn.execute(sa.update(table).where(
            table.c.sweep_id == sweep_id, table.c.point == point, table.c.seed == seed
        ).values(outcome_run_id=run_id, outcome=outcome, error=error))


def list_sweeps(db: Database | str) -> pd.DataFrame:
    """The sweeps in a database: id, name, planned runs, completed runs, created_at."""
    db = db if isinstance(db, Database) else Database(database_url(db), create=False,
                                                      read_only=True)
    if "sweeps" not in db.table_names():
        return pd.DataFrame(columns=["id", "name", "runs", "completed", "created_at"])
    table = SweepRecord.__table__
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.id, table.c.name, table.c.created_at)
                            .order_by(table.c.id)).all()
    out = []
    for row in rows:
        progress = sweep_progress(db, int(row.id))
        out.append({"id": row.id, "name": row.name, "runs": len(progress),
                    "completed": int((progress["status"] == "completed").sum()),
                    "created_at": row.created_at})
    return pd.DataFrame(out, columns=["id", "name", "runs", "completed", "created_at"])


def open_sweep(db: Database | str, name: str | None = None, *,
               completed_only: bool = False) -> pd.DataFrame:
    """Every run of sweep ``name`` (the newest sweep if None) as one tidy DataFrame.

    One row per run and step: ``run_id``, ``run`` (its name), ``status``, ``point`` (the index
    of its parameter combination), ``seed``, one column per swept parameter (named by its dotted
    key, e.g. ``policy.params.backfire``), ``step``, and one column per metric the runs
    recorded. ``frame.attrs`` holds ``sweep`` (the name), ``parameters`` and ``metrics`` (the
    column names of each kind) and ``spec`` (the sweep's spec). Runs not started yet have no
    rows; a run still going has the steps it committed.

    Args:
        db: the database, its URL or SQLite path.
        name: the sweep's name.
        completed_only: keep only runs whose status is ``completed``.

    Raises:
        StorageError: no such sweep (the message lists the sweeps there).
    """
    db = db if isinstance(db, Database) else Database(database_url(db), create=False,
                                                      read_only=True)
    sweep = find_sweep(db, name)
    progress = sweep_progress(db, int(sweep["id"]))
    started = progress.dropna(subset=["run_id"])
    if completed_only:
        started = started[started["status"] == "completed"]
    parameters = list(dict.fromkeys(k for p in progress["params"] for k in p))
    runs = pd.DataFrame({
        "run_id": started["run_id"].astype("int64").to_numpy(),
        "run": started["run_name"].to_numpy(),
        "status": started["status"].to_numpy(),
        "point": started["point"].astype("int64").to_numpy(),
        "seed": started["seed"].astype("int64").to_numpy(),
    })
    for key in parameters:
        runs[key] = [p.get(key) for p in started["params"]]
    long = _metrics_long(db, runs["run_id"].tolist())
    if long.empty:
        wide = pd.DataFrame(columns=["run_id", "step"])
    else:
        # unstack, not pivot_table(dropna=False): that would add a row for every run at every
        # step of the longest run (NaN rows after a short or unfinished run's last step)
        wide = (long.set_index(["run_id", "step", "name"])["value"].unstack("name")
                .reset_index())
        wide.columns.name = None
    metrics = [c for c in wide.columns if c not in ("run_id", "step")]
    frame = runs.merge(wide, on="run_id", how="inner")
    frame = frame.sort_values(["point", "seed", "step"], kind="stable").reset_index(drop=True)
    frame["step"] = frame["step"].astype("int64")
    frame.attrs.update(sweep=sweep["name"], parameters=parameters, metrics=metrics,
                       spec=sweep["spec"])
    return frame


def _metrics_long(db: Database, run_ids: list[int]) -> pd.DataFrame:
    """``step_metrics`` rows (run_id, step, name, value) of the given runs, read in chunks of
    ids (one query per chunk, never a query per run)."""
    table = StepMetric.__table__
    parts = []
    with db.engine.connect() as conn:
        for i in range(0, len(run_ids), ID_CHUNK):
            chunk = run_ids[i : i + ID_CHUNK]
            result = conn.execute(sa.select(table.c.run_id, table.c.step, table.c.name,
                                            table.c.value).where(table.c.run_id.in_(chunk)))
            parts.append(pd.DataFrame(result.fetchall(), columns=list(result.keys())))
    if not parts:
        return pd.DataFrame(columns=["run_id", "step", "name", "value"])
    return pd.concat(parts, ignore_index=True)
