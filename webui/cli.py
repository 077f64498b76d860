"""``populace serve``: the web service of a run database, added to the ``populace`` command
through the ``populace.commands`` entry point (the command line does not import the web
interface; it finds it when the ``webui`` extra is installed).

Core objects:
    register: add ``serve`` to ``populace``'s subcommands.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from typing import Any

TOKEN_ENV = "POPULACE_TOKEN"
"""The environment variable a control token may come from (instead of ``--token``)."""


def register(sub: Any) -> None:
    """Add ``populace serve`` to the subparsers ``sub``."""
    p = sub.add_parser("serve", help="serve a run database over HTTP (the web monitor's API)",
                       description="Serve runs, metrics, agents and steering of a run database "
                       "over HTTP; OpenAPI docs at /docs. Control (pause, resume, stop, "
                       "interventions, interviews) needs the token printed at start-up.")
    p.add_argument("db", help="database URL or SQLite file (e.g. "
                   "populace_runs/quickstart.sqlite)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--token", help=f"control token (default: ${TOKEN_ENV}, else a random one, "
                   "printed)")
    p.add_argument("--protect-reads", action="store_true",
                   help="reads need the token too")
    p.set_defaults(handler=serve)


def checked_address(db: str, port: int) -> str:
    """The database URL of ``db`` (a URL or an SQLite file that exists), after checking
    ``port``; a ValueError that says what is wrong otherwise (``serve`` and ``monitor``)."""
    from populace.storage import database_url  # not at the top: see ``serve``

    if not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, not {port}")
    if os.path.isdir(db):
        raise ValueError(f"{db} is a folder: give one database, e.g. "
                         f"{os.path.join(db, 'quickstart.sqlite')}")
    if "://" not in db and not os.path.isfile(db):
        raise ValueError(f"no run database at {os.path.abspath(db)}")
    return database_url(db)


def serve(args: argparse.Namespace) -> int:
    """Run the service until interrupted."""
    # imported here, not at the top: every `populace` command loads this module to list its
    # subcommands, and FastAPI with uvicorn would add a third of a second to each of them
    import uvicorn

    from .service import ServiceConfig, create_app

    url = checked_address(args.db, args.port)
    token = args.token or os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(16)
    app = create_app(ServiceConfig(url, token=token, protect_reads=args.protect_reads))
    shown = "your token" if args.token or os.environ.get(TOKEN_ENV) else token
    print(f"populace: serving {app.state.db.shown_url} at http://{args.host}:{args.port} "
          f"(API docs: /docs); control token: {shown}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


__all__ = ["TOKEN_ENV", "checked_address", "register", "serve"]
