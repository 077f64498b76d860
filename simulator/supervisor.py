"""The ``populace`` command's guard for runs on Ray: the driver runs in a child process.

Ray ends a driver process itself when the driver loses its node's raylet, e.g. when the head
of the cluster goes away with the driver on it: the connection to the object store breaks and
Ray terminates the process, with no Python exception that Populace could catch and explain.
So ``populace run`` and ``populace resume`` on the Ray runtime run the driver as a child of
the command; when the child ends without marking its run completed or failed, the command
marks the run failed and says how to finish it. Committed steps are never lost either way
(each step is one transaction).

The child dies with the command: ``kill -9`` of ``populace run`` must stop the run, not leave a
driver writing in the background while the user resumes it. On Linux the kernel kills the
child when its parent dies (``PR_SET_PDEATHSIG``); elsewhere a watchdog thread in the child
ends it when its parent changes. The run's lease (``populace.storage.leases``) is the second
guard: even a driver that outlived its command could not write once another process took the
run over.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

SUPERVISED = "POPULACE_SUPERVISED"
"""Set in the child's environment: the child runs the simulation itself."""

SUPERVISOR_PID = "POPULACE_SUPERVISOR_PID"
"""Set in the child's environment: the pid of the command that supervises it."""

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def supervised() -> bool:
    """Whether this process is the child of a supervising ``populace`` command."""
    return os.environ.get(SUPERVISED) == "1"


def supervise(argv: Sequence[str], db_url: str, name: str, run_id: int | None) -> int:
    """Run ``populace ARGV`` in a child process; return its exit code, after explaining a run
    it left unfinished.

    Args:
        argv: the command's arguments.
        db_url: the run's database.
        name: the experiment's name (a new run is found by it).
        run_id: the run being resumed (None: a new run, created by the child).
    """
    before = _newest_id(db_url, name) if run_id is None else None
    # a session of its own: a Ctrl-C in the terminal reaches the child once, through us; and
    # it dies with us (see the module's docstring)
    parent = os.getpid()
    child = subprocess.Popen([sys.executable, "-m", "populace.simulator.cli", *argv],
                             env={**os.environ, SUPERVISED: "1", SUPERVISOR_PID: str(parent)},
                             start_new_session=True,
                             preexec_fn=partial(_die_with, parent, _prctl()))
    forward = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s))
               for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        rc = child.wait()
    finally:
        for sig, handler in forward.items():
            signal.signal(sig, handler)
    if rc in (0, 2, 130):
        return rc
    return _explain_unfinished(db_url, name, run_id, before, rc)


def _prctl() -> Any:
    """Linux's ``prctl`` from the C library, or None elsewhere (looked up before the fork:
    the forked child should only call it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with(parent: int, prctl: Any) -> None:
    """In the forked child, before it runs the command: have the kernel kill it when
    ``parent`` dies (Linux); a parent that died already, before the request took effect, is
    caught by the check after it. Elsewhere ``watch_supervisor`` in the child does the job."""
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def watch_supervisor(interval: float = 0.5) -> None:
    """In the supervised child: end this process (as ``kill -9`` would) as soon as the
    supervising command is gone, where the kernel does not do it (``_die_with``)."""
    text = os.environ.get(SUPERVISOR_PID)
    if not text or not text.isdigit():
        return
    parent = int(text)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
    if _prctl() is not None:  # Linux: the kernel kills us with the parent (see _die_with)
        return

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="populace-supervisor-watch", daemon=True).start()


def _newest_id(db_url: str, name: str) -> int:
    """The id of the newest run named ``name`` (0: none, or no database with runs yet)."""
    from sqlalchemy.exc import SQLAlchemyError

    from populace.storage import Database, StorageError
    from populace.storage.runs import find_run

    try:
        db = Database(db_url, create=False)
    except StorageError:  # no database yet
        return 0
    try:
        return int(find_run(db, name)["id"])
    except (StorageError, SQLAlchemyError):  # no such run, or an empty file
        return 0
    finally:
        db.dispose()


def _explain_unfinished(db_url: str, name: str, run_id: int | None, before: int | None,
                        rc: int) -> int:
    from populace.storage import Database, StorageError
    from populace.storage.leases import LeaseHeldError, RunLease
    from populace.storage.runs import find_run, finish_run

    try:
        db = Database(db_url, create=False)
        info = find_run(db, run_id if run_id is not None else name)
    except StorageError:  # it ended before creating its run: it said why
        return rc
    try:
        if (run_id is None and int(info["id"]) <= (before or 0)) or info["status"] != "running":
            return rc  # no run of its own, or the child marked it and explained itself
        why = (f"the run's process ended abruptly (exit {rc}): Ray ends a driver that loses "
               "its cluster's head or its node's raylet")
        # the run row is written under the run's lease: the child's, taken over now that the
        # child is gone (unless another process already writes the run: then it is theirs)
        lease = RunLease(db)
        try:
            lease.acquire(int(info["id"]), info["name"])
        except LeaseHeldError:
            return rc
        try:
            finish_run(db, int(info["id"]), lease, status="failed", error=why)
        finally:
            lease.stop()
    finally:
        db.dispose()
    from .engine import resume_command

    print(f"error: {why}. The steps committed so far are in the database; "
          f"`{resume_command(name, db_url)} --runtime local` continues run {info['id']} from "
          "its last checkpoint (or `--runtime ray` once the cluster is back)", file=sys.stderr)
    return 1


__all__ = ["SUPERVISED", "SUPERVISOR_PID", "supervise", "supervised", "watch_supervisor"]
