"""Run leases: at most one process writes a run at a time.

Core objects:
    RunLease: this process's claim on one run: taken when the run is created (in the same
        transaction) or resumed, kept fresh by a heartbeat, checked in every step's
        transaction, released when the run is marked completed, failed or interrupted.
    LeaseHeldError: another live process writes the run (names it and says what to do).
    LeaseLostError: this process's lease was taken over; nothing more may be written.
    lease_holders: who writes which run now, for ``populace runs``.

Why a lease: without one, ``populace resume`` of a run that is still being written deletes
the rows after the last checkpoint under the writer's feet, and two resumes interleave their
steps. The lease is a row in ``run_leases`` claimed by compare-and-swap (an INSERT that a
primary-key conflict turns away; an UPDATE ``WHERE owner = <old owner>`` whose row count says
who won), which behaves the same on SQLite (one writer at a time) and PostgreSQL (row locks,
re-checked after a concurrent commit). Every step's transaction re-checks ``owner = me``
first, so a process that lost its lease can never commit a step, delete rows or touch the run
row: the lease is the fencing token, not just advice.

Times come from the database's clock (``heartbeat_at`` is written and aged by SQL), because
the hosts of a Ray cluster or the clients of a PostgreSQL server may disagree about the time.
A lease is taken over when its heartbeat is older than its holder's timeout (default 30 s,
``POPULACE_LEASE_TIMEOUT`` of the holder, stored with the lease: the holder beats by it), or at
once when its holder ran on this host and its process is gone (``kill -9`` then ``populace
resume`` need not wait).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Database, StorageError
from .schema import RunLeaseRecord

DEFAULT_TIMEOUT = 30.0
"""Seconds without a heartbeat after which a run's lease may be taken over."""

TIMEOUT_ENV = "POPULACE_LEASE_TIMEOUT"
"""Environment variable that overrides ``DEFAULT_TIMEOUT`` (seconds)."""

log = logging.getLogger("populace.storage.leases")
_table = RunLeaseRecord.__table__

# owners of the leases this process holds and keeps alive: a lease row that names this very
# process but is not here was left behind by an abandoned object (e.g. a Simulation that
# failed), and may be taken over at once like one of a dead process
_active: set[str] = set()
_active_lock = threading.Lock()


class LeaseHeldError(StorageError):
    """Another live process holds the run's lease; ``holder`` says which."""

    def __init__(self, message: str, holder: Holder) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLostError(StorageError):
    """This process's lease on a run was taken over by another; it must stop writing."""


@dataclass(frozen=True)
class Holder:
    """The process that holds a run's lease."""

    owner: str
    host: str
    pid: int
    age_s: float
    """Seconds since its last heartbeat, by the database's clock."""
    timeout_s: float
    """Its takeover timeout: it is stale once ``age_s`` passes this."""

    def describe(self) -> str:
        """E.g. ``pid 1234 on host node-1 (last heartbeat 2 s ago)``."""
        return f"pid {self.pid} on host {self.host} (last heartbeat {self.age_s:.0f} s ago)"


def lease_timeout() -> float:
    """The takeover timeout in seconds: ``POPULACE_LEASE_TIMEOUT`` or ``DEFAULT_TIMEOUT``."""
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError as exc:
        raise StorageError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from exc
    if not value > 0:
        raise StorageError(f"{TIMEOUT_ENV} must be a positive number of seconds, not {text!r}")
    return value


def _db_now(dialect: str) -> Any:
    """The database's current UTC time as a naive timestamp (the ``DateTime`` columns' kind)."""
    if dialect == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")
    # clock_timestamp: the time of the statement, not of the transaction's start
    return sa.func.timezone("UTC", sa.func.clock_timestamp())


def _age(dialect: str) -> Any:
    """Seconds since the heartbeat, computed by the database."""
    if dialect == "sqlite":
        return (sa.func.julianday("now") - sa.func.julianday(_table.c.heartbeat_at)) * 86400.0
    return sa.cast(sa.extract("epoch", _db_now(dialect) - _table.c.heartbeat_at), sa.Float)


def holder_alive(holder: Holder) -> bool:
    """Whether the process that holds a lease may still be writing its run: its heartbeat is
    fresh and, when it runs on this host, the process exists (and is no zombie)."""
    if holder.age_s > holder.timeout_s:
        return False
    return holder.host != socket.gethostname() or _pid_alive(holder.pid)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _insert_if_absent(dialect: str, values: dict[str, Any]) -> Any:
    """INSERT that does nothing when the run already has a lease row; it returns the run id
    when it inserted (PostgreSQL reports no row count for it: -1)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:  # pragma: no cover - Populace supports SQLite and PostgreSQL
        raise StorageError(f"run leases need SQLite or PostgreSQL, not {dialect}")
    return (insert(_table).values(**values).on_conflict_do_nothing(index_elements=["run_id"])
            .returning(_table.c.run_id))


def _in_memory(db: Database) -> bool:
    return db.dialect == "sqlite" and sa.engine.make_url(db.url).database in (None, "",
                                                                               ":memory:")


class RunLease:
    """This process's lease on one run.

    Args:
        db: the run's database.
        timeout: seconds without a heartbeat after which others may take the lease over
            (default: ``lease_timeout()``).
    """

    def __init__(self, db: Database, *, timeout: float | None = None) -> None:
        self.db = db
        self.timeout = lease_timeout() if timeout is None else float(timeout)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{secrets.token_hex(6)}"
        self.run_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking ---------------------------------------------------------------------------------

    def _values(self, run_id: int) -> dict[str, Any]:
        now = _db_now(self.db.dialect)
        return {"run_id": run_id, "owner": self.owner, "host": self.host, "pid": self.pid,
                "acquired_at": now, "heartbeat_at": now, "timeout_s": self.timeout}

    def insert(self, conn: Connection, run_id: int) -> None:
        """Take the lease of a run being created, in the transaction that creates it."""
        conn.execute(sa.insert(_table).values(**self._values(run_id)))
        self._held(run_id)

    def acquire(self, run_id: int, name: str | None = None) -> None:
        """Take the lease of an existing run (for resume), or raise ``LeaseHeldError``.

        A lease that another process holds is taken over only when that process is dead:
        its heartbeat is older than the timeout, or it ran on this host and has exited.
        """
        dialect = self.db.dialect
        with self.db.transaction() as conn:
            # the INSERT comes first: on SQLite it takes the write lock, so the read and the
            # takeover below cannot interleave with another process's
            for _ in range(5):
                if conn.execute(_insert_if_absent(dialect, self._values(run_id))).first():
                    break
                holder = next(iter(_holders(conn, dialect, run_id).values()), None)
                if holder is None:  # released between our two statements: try again
                    continue
                stale = holder.age_s > holder.timeout_s
                if not stale and self._alive(holder):
                    raise LeaseHeldError(self._held_message(run_id, name, holder), holder)
                where = [_table.c.run_id == run_id, _table.c.owner == holder.owner]
                if stale and self._alive(holder):  # re-checked under the row's lock
                    where.append(_age(dialect) > _table.c.timeout_s)
                taken = conn.execute(sa.update(_table).where(*where).values(
                    owner=self.owner, host=self.host, pid=self.pid, timeout_s=self.timeout,
                    acquired_at=_db_now(dialect), heartbeat_at=_db_now(dialect))).rowcount
                if taken == 1:
                    log.warning("run %s: took over the lease of %s", run_id, holder.describe())
                    break
            else:
                raise StorageError(f"could not take the lease of run {run_id}: other processes "
                                   "keep taking it; try again")
        self._held(run_id)

    def _alive(self, holder: Holder) -> bool:
        if holder.host != self.host:
            return True  # another host: only the heartbeat can tell
        if holder.pid == self.pid:
            with _active_lock:
                return holder.owner in _active
        return _pid_alive(holder.pid)

    def _held_message(self, run_id: int, name: str | None, holder: Holder) -> str:
        what = f"run {run_id}" + (f" ({name})" if name else "")
        return (f"{what} is being written by {holder.describe()}; a run has one writer at a "
                "time. Wait for it to finish, or stop it (Ctrl-C, or `kill "
                f"{holder.pid}` on {holder.host}); if that process has died, `populace resume` "
                f"takes the run over once its heartbeat is {holder.timeout_s:.0f} s old (at once "
                "on the same host)")

    def _held(self, run_id: int) -> None:
        self.run_id = run_id
        with _active_lock:
            _active.add(self.owner)

    # -- keeping --------------------------------------------------------------------------------

    def check(self, conn: Connection) -> None:
        """Refresh the heartbeat in ``conn``'s transaction, or raise ``LeaseLostError``.

        Called first and last in every write transaction of the run: the transaction commits
        only if this process still holds the lease (the fencing token), and leaves a fresh
        heartbeat behind however long it took.
        """
        assert self.run_id is not None, "check() before the lease was taken"
        done = conn.execute(sa.update(_table).where(
            _table.c.run_id == self.run_id, _table.c.owner == self.owner,
        ).values(heartbeat_at=_db_now(self.db.dialect))).rowcount
        if done != 1:
            raise LeaseLostError(
                f"run {self.run_id}: another process has taken over this run (its lease was "
                "taken, e.g. by `populace resume` after this process stopped answering); this "
                "process wrote nothing more and stops")

    def release(self, conn: Connection) -> None:
        """Give the lease up in ``conn``'s transaction (which marks the run finished)."""
        if self.run_id is not None:
            conn.execute(sa.delete(_table).where(_table.c.run_id == self.run_id,
                                                 _table.c.owner == self.owner))

    def start_heartbeat(self) -> None:
        """Refresh the heartbeat every ``timeout / 6`` s in a daemon thread until ``stop``."""
        if self._thread is not None or self.run_id is None or _in_memory(self.db):
            return  # an in-memory database has no other process to keep out
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"populace-lease-{self.run_id}",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = max(0.05, self.timeout / 6)
        stmt = sa.update(_table).where(
            _table.c.run_id == self.run_id, _table.c.owner == self.owner,
        ).values(heartbeat_at=_db_now(self.db.dialect))
        while not self._stop.wait(interval):
            try:
                with self.db.engine.begin() as conn:
                    done = conn.execute(stmt).rowcount
            except Exception as exc:  # busy database, network blip: the next beat retries
                log.debug("lease heartbeat of run %s failed: %s", self.run_id, exc)
                continue
            if done != 1:  # released, or taken over: the next step's check says which
                return

    def stop(self) -> None:
        """Stop the heartbeat; this process no longer keeps the lease alive."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with _active_lock:
            _active.discard(self.owner)


def _holders(conn: Connection, dialect: str, run_id: int | None = None) -> dict[int, Holder]:
    """Run id -> its lease's holder (of one run, or of every run being written)."""
    stmt = sa.select(_table.c.run_id, _table.c.owner, _table.c.host, _table.c.pid,
                     _table.c.timeout_s, _age(dialect).label("age"))
    if run_id is not None:
        stmt = stmt.where(_table.c.run_id == run_id)
    return {int(r.run_id): Holder(r.owner, r.host, int(r.pid), max(0.0, float(r.age or 0.0)),
                                  float(r.timeout_s)) for r in conn.execute(stmt)}


def lease_holders(db: Database) -> dict[int, Holder]:
    """Run id -> the process writing it now (runs nobody writes are absent)."""
    if "run_leases" not in db.table_names():  # a database written before leases existed
        return {}
    with db.engine.connect() as conn:
        return _holders(conn, db.dialect)


__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_ENV", "Holder", "LeaseHeldError", "LeaseLostError",
           "RunLease", "holder_alive", "lease_holders", "lease_timeout"]
