"""The control channel of a running run: commands queued in its database and taken by its
writer at the next step boundary.

Core objects:
    send_command: queue a command for a run (any process; never blocks a step).
    pending_commands: the run's queued commands, oldest first (the writer polls them).
    mark_command: record what became of a command (applied at a step, or refused and why).
    command_row / wait_for_command: read a command back, or wait until it is no longer queued.
    applied_commands: commands a run applied after a step (resume re-applies them).

Commands are rows of ``control_commands`` (``populace.storage.schema.ControlCommand``); their
``spec`` is JSON the sender wrote and the engine reads. Storage does not interpret it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Database, StorageError
from .runs import now
from .schema import ControlCommand

COMMANDS = ("intervene", "interview", "pause", "resume", "stop")
"""What can be sent: an event, an interview, and the run's pause, resume and stop."""
DONE = ("applied", "refused")


def send_command(db: Database, run_id: int, command: str, spec: dict[str, Any] | None = None
                 ) -> int:
    """Queue ``command`` for run ``run_id``; return its id."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r} (commands: {', '.join(COMMANDS)})")
    with db.transaction() as conn:
        result = conn.execute(sa.insert(ControlCommand).values(
            run_id=run_id, command=command, spec=json.dumps(spec or {}, default=str),
            status="queued", created_at=now()))
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def pending_commands(db: Database, run_id: int) -> list[dict[str, Any]]:
    """The run's queued commands, oldest first, with their spec decoded."""
    stmt = (sa.select(ControlCommand.id, ControlCommand.command, ControlCommand.spec)
            .where(ControlCommand.run_id == run_id, ControlCommand.status == "queued")
            .order_by(ControlCommand.id))
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [{"id": int(r.id), "command": r.command, "spec": json.loads(r.spec)} for r in rows]


def mark_command(conn: Connection, command_id: int, status: str, *, step: int | None = None,
                 error: str | None = None) -> None:
    """Record that a command was ``applied`` (at ``step``) or ``refused`` (with ``error``), in
    ``conn``'s transaction (the step's, so that the mark and the step land together)."""
    if status not in DONE:
        raise ValueError(f"status must be one of {DONE}, not {status!r}")
    conn.execute(sa.update(ControlCommand).where(ControlCommand.id == command_id).values(
        status=status, applied_step=step, applied_at=now(), error=error))


def command_row(db: Database, command_id: int) -> dict[str, Any]:
    """One command as a dict (its spec decoded)."""
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(ControlCommand).where(
            ControlCommand.id == command_id)).mappings().first()
    if row is None:
        raise StorageError(f"no control command {command_id}")
    out = dict(row)
    out["spec"] = json.loads(out["spec"])
    return out


def wait_for_command(db: Database, command_id: int, timeout_s: float, poll_s: float = 0.2
                     ) -> dict[str, Any]:
    """The command once it is applied or refused; raises ``TimeoutError`` after
    ``timeout_s`` (the command stays queued)."""
    deadline = time.monotonic() + timeout_s
    while True:
        row = command_row(db, command_id)
        if row["status"] in DONE:
            return row
        if time.monotonic() >= deadline:
            raise TimeoutError(f"command {command_id} is still queued after {timeout_s:g} s")
        time.sleep(poll_s)


def applied_commands(db: Database, run_id: int, after_step: int) -> list[dict[str, Any]]:
    """Commands of the run applied at a step after ``after_step``, in the order applied."""
    stmt = (sa.select(ControlCommand.id, ControlCommand.command, ControlCommand.spec,
                      ControlCommand.applied_step)
            .where(ControlCommand.run_id == run_id, ControlCommand.status == "applied",
                   ControlCommand.applied_step > after_step)
            .order_by(ControlCommand.applied_step, ControlCommand.id))
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [{"id": int(r.id), "command": r.command, "spec": json.loads(r.spec),
             "step": int(r.applied_step)} for r in rows]


__all__ = ["COMMANDS", "applied_commands", "command_row", "mark_command", "pending_commands",
           "send_command", "wait_for_command"]
