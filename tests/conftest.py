"""Shared fixtures: experiment builders and database URLs (SQLite files and the local PostgreSQL)."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

SMALL: dict[str, Any] = {
    "name": "small",
    "seed": 7,
    "steps": 12,
    "step_duration": "1h",
    "scenario": {"type": "social", "feed": {"algorithm": "mix", "size": 8}},
    "population": {
        "size": 300,
        "attributes": {
            "opinion": {"dist": "uniform", "low": -1, "high": 1},
            "interest": {"dist": "categorical",
                         "values": ["politics", "economy", "health", "technology", "sports"]},
        },
    },
    "network": {"generator": "barabasi_albert", "m": 4},
    "activation": {"probability": 0.3},
    "policy": {"type": "rule", "params": {}},
    "recording": {"agent_state_every": 4},
    "checkpoint_every": 4,
}


def experiment(**changes: Any) -> dict[str, Any]:
    """A copy of the small experiment with top-level keys replaced."""
    data = copy.deepcopy(SMALL)
    data.update(changes)
    return data


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'run.sqlite'}"


def _pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The local PostgreSQL server's admin URL (the test fails loudly in CI if it is down)."""
    import os

    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"populace_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'run.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def server():
    """The LLM test server (seed 3) in a thread of this process: ``(server, base URL)``."""
    srv = TestServer(ServerBehaviour(seed=3))
    url = srv.start_in_thread()
    yield srv, url
    srv.stop_thread()
