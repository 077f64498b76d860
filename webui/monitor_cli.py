"""``populace monitor``: the web monitor of a run database (a Streamlit app), added to the
``populace`` command through the ``populace.commands`` entry point like ``serve``.

Core objects:
    register: add ``monitor`` to ``populace``'s subcommands.
    monitor_command: the ``streamlit run`` command line and environment that serve the app.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .cli import checked_address

APP = Path(__file__).resolve().parent / "monitor" / "app.py"
"""The Streamlit entry script of the monitor."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")
DB_ENV = "POPULACE_MONITOR_DB"
RUN_ENV = "POPULACE_MONITOR_RUN"
"""The environment variables the app reads its database URL and first run from (the same
names as ``populace.webui.monitor.common``'s, which this module does not import: it would
load Streamlit for every ``populace`` command)."""


def register(sub: Any) -> None:
    """Add ``populace monitor`` to the subparsers ``sub``."""
    p = sub.add_parser("monitor", help="watch and steer the runs of a database in a browser "
                       "(a Streamlit app)",
                       description="Serve the web monitor of a run database: runs, metrics, "
                       "population, network, agents, the scenario's own view, and controls "
                       "(pause, resume, stop, interventions, interviews) for running runs.")
    p.add_argument("db", help="database URL or SQLite file (e.g. "
                   "populace_runs/quickstart.sqlite)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--run", help="the run shown first: an id or a name (default: the newest)")
    p.set_defaults(handler=monitor)


def monitor_command(url: str, host: str, port: int, run: str | None = None
                    ) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line (headless, no usage statistics, no file watcher)
    and the environment that hands the app its database."""
    argv = [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.headless", "true",
            "--server.address", host,
            "--server.port", str(port),
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false",
            "--client.toolbarMode", "minimal"]
    env = {**os.environ, DB_ENV: url}
    if run:
        env[RUN_ENV] = run
    else:
        env.pop(RUN_ENV, None)
    return argv, env


def monitor(args: argparse.Namespace) -> int:
    """Run Streamlit until it exits (or is interrupted); its exit code."""
    # imported here, not at the top: every `populace` command loads this module
    from populace.storage import Database, find_run

    url = checked_address(args.db, args.port)
    db = Database(url, create=False)  # its errors (not a run database, ...) are said now
    # an unknown run is said now, with the runs there are; a name becomes its newest run's id
    run = None if args.run is None else str(find_run(db, args.run)["id"])
    db.engine.dispose()
    argv, env = monitor_command(url, args.host, args.port, run)
    print(f"populace: monitoring {db.shown_url} at http://{args.host}:{args.port}",
          file=sys.stderr, flush=True)
    if args.host not in LOOPBACK:
        print(f"populace: warning: the monitor has no login: whoever reaches {args.host}:"
              f"{args.port} can pause, stop and steer this database's running runs",
              file=sys.stderr, flush=True)
    proc = subprocess.Popen(argv, env=env)

    def forward(signum: int, _frame: object) -> None:
        # a terminated monitor must not leave its server behind, listening
        proc.send_signal(signum)

    before = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached Streamlit too (same process group): let it close, then say so
        proc.terminate()
        proc.wait()
        raise
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


__all__ = ["APP", "DB_ENV", "RUN_ENV", "monitor_command", "register"]
