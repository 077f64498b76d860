"""Read indexes (``populace.storage.read_indexes``) on real SQLite and PostgreSQL databases: the
index exists afterwards and the database uses it, a second call is harmless, and a table or
column that is not there is a clear error."""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from populace.storage import Database, StorageError
from populace.storage.read_indexes import (
    ReadIndex,
    attribute_index_name,
    attribute_value,
    ensure_attribute_indexes,
    ensure_read_indexes,
    index_names,
)

AGES = [17.5, 30.0, 42.25, 61.0, 88.0, 30.0]
INTERESTS = ["health", "sports", "health", "politics", "health", "o'brien \"quoted\""]


def _fill(db: Database) -> None:
    with db.transaction() as conn:
        db.insert_columns(conn, "agents", 1, {
            "agent_id": list(range(len(AGES))),
            "attributes": [json.dumps({"age": a, "interest": i, "it's": 1})
                           for a, i in zip(AGES, INTERESTS, strict=True)]})
        db.insert_columns(conn, "agent_states", 1, {
            "step": [1] * 4, "agent_id": [0, 1, 1, 2], "variable": ["opinion"] * 4,
            "value": [0.1, 0.2, 0.3, 0.4]})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[Database]:
    """One database per back end for the module: the core tables, six agents, four states."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("read_indexes") / "run.sqlite"
        database = Database(f"sqlite:///{path}")
        _fill(database)
        yield database
        database.dispose()
        return
    server = request.getfixturevalue("pg_server")
    name = f"populace_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database = Database(server.rsplit("/", 1)[0] + f"/{name}")
    _fill(database)
    yield database
    database.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _plan(db: Database, sql: str, params: Any = None) -> str:
    """The database's plan for ``sql`` (driver SQL, with the driver's ``params``) as text
    (PostgreSQL told to avoid sequential scans: on six rows it would rightly prefer one)."""
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params or ())
            return "\n".join(str(r[-1]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        return "\n".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}",
                                                                  params or ()))


def _executed(db: Database, stmt: sa.Executable) -> tuple[Any, str, Any]:
    """Run ``stmt``: its first value, and the SQL and parameters the driver was given."""
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.engine.connect() as conn:
            value = conn.execute(stmt).scalar()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    return value, *sent[-1]


def test_an_index_exists_afterwards_and_answers_the_per_agent_read(db: Database) -> None:
    spec = ReadIndex("agent_states", ("agent_id", "run_id"))
    assert spec.name not in index_names(db, "agent_states")
    assert ensure_read_indexes(db, [spec]) == [spec.name]
    assert spec.name in index_names(db, "agent_states")
    plan = _plan(db, "SELECT value FROM agent_states WHERE run_id = 1 AND agent_id = 1")
    assert spec.name in plan
    with db.engine.connect() as conn:
        got = conn.exec_driver_sql(
            "SELECT value FROM agent_states WHERE run_id = 1 AND agent_id = 1 ORDER BY id")
        assert [r[0] for r in got] == [0.2, 0.3]


def test_calling_twice_is_harmless(db: Database) -> None:
    specs = [ReadIndex("agent_states", ("variable", "run_id")),
             ReadIndex("agent_states", ("run_id", "step"))]
    first = ensure_read_indexes(db, specs)
    before = index_names(db, "agent_states")
    assert ensure_read_indexes(db, specs) == first
    assert index_names(db, "agent_states") == before
    assert set(first) <= before
    assert len(set(first)) == 2  # two column lists, two names


def test_an_unknown_column_or_table_is_a_clear_error(db: Database) -> None:
    with pytest.raises(StorageError, match=r"no column 'agentid'.*did you mean 'agent_id'"):
        ensure_read_indexes(db, [ReadIndex("agent_states", ("agentid", "run_id"))])
    with pytest.raises(StorageError, match=r"no table 'agent_state'.*did you mean "
                                           r"'agent_states'"):
        ensure_read_indexes(db, [ReadIndex("agent_state", ("agent_id",))])
    with pytest.raises(ValueError, match="at least one column"):
        ensure_read_indexes(db, [ReadIndex("agent_states", ())])
    assert not any("agentid" in n for n in index_names(db, "agent_states"))


def test_attribute_indexes_answer_filters_built_with_the_same_expression(db: Database) -> None:
    made = ensure_attribute_indexes(db, {"age": True, "interest": False, "it's": True})
    assert made == {"age": attribute_index_name("age", True),
                    "interest": attribute_index_name("interest", False),
                    "it's": attribute_index_name("it's", True)}
    assert ensure_attribute_indexes(db, {"age": True}) == {"age": made["age"]}  # again
    assert set(made.values()) <= index_names(db, "agents")
    t = db.table("agents")
    for name, numeric, op, value, expected in (
            ("age", True, ">=", 42.0, 3), ("interest", False, "==", "health", 3),
            ("interest", False, "==", INTERESTS[-1], 1), ("it's", True, "==", 1.0, 6)):
        expr = attribute_value(db.dialect, t.c.attributes, name, numeric)
        test = expr >= value if op == ">=" else expr == value
        stmt = sa.select(sa.func.count()).select_from(t).where(t.c.run_id == 1, test)
        value, sql, params = _executed(db, stmt)
        assert value == expected, name
        # the very query the database ran uses the index (a bound JSON path would not, on
        # SQLite: it matches an index's expression only to the same expression)
        assert made[name] in _plan(db, sql, params), name


def test_an_attribute_too_long_for_an_index_is_left_out(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite indexes values of any length")
    with db.transaction() as conn:  # random text: PostgreSQL cannot compress it under 2.7 kB
        db.insert_columns(conn, "agents", 2, {"agent_id": [0], "attributes": [
            json.dumps({"bio": secrets.token_hex(4000), "age": 3.0})]})
    try:
        made = ensure_attribute_indexes(db, {"bio": False, "age": True})
        assert made == {"age": attribute_index_name("age", True)}
        assert attribute_index_name("bio", False) not in index_names(db, "agents")
    finally:
        with db.transaction() as conn:
            conn.exec_driver_sql("DELETE FROM agents WHERE run_id = 2")


RACERS = 6  # without the lock, 6 sessions collided on PostgreSQL in 19 tries out of 20
RACE_SPECS = [ReadIndex("agent_states", ("agent_id", "run_id")),
              ReadIndex("agent_states", ("variable", "run_id")),
              ReadIndex("agents", ("agent_id", "run_id"))]


def _fresh(backend: str, base: str, tmp_path: Path, attempt: int) -> str:
    """A new, filled database (a SQLite file, or a PostgreSQL schema of ``base``): its URL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / f'race{attempt}.sqlite'}"
    else:
        schema = f"race{attempt}"
        engine = sa.create_engine(base)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        engine.dispose()
        url = f"{base}?options=-csearch_path%3D{schema}"
    database = Database(url)
    _fill(database)
    database.dispose()
    return url


def _all_at_once(url: str) -> list[tuple[list[str], dict[str, str]]]:
    """What each of ``RACERS`` sessions (a thread with its own engine) got from creating the
    read and attribute indexes of ``url`` at the same moment; a session's error is raised."""
    databases = [Database(url, create=False) for _ in range(RACERS)]
    start = threading.Barrier(RACERS)

    def create(database: Database) -> tuple[list[str], dict[str, str]]:
        start.wait(timeout=30)
        return (ensure_read_indexes(database, RACE_SPECS),
                ensure_attribute_indexes(database, {"age": True, "interest": False}))

    try:
        with ThreadPoolExecutor(RACERS) as pool:
            return list(pool.map(create, databases))
    finally:
        for database in databases:
            database.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
@pytest.mark.slow
def test_sessions_creating_the_indexes_at_once_all_succeed(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Parallel sweep workers finish their runs into one fresh database at once: each one's
    ``CREATE INDEX IF NOT EXISTS`` must neither fail (PostgreSQL: a duplicate key in its
    catalog) nor stop the indexes after it. Threads with an engine each are sessions enough to
    race (the drivers release the GIL while the server works); a few fresh databases in a row,
    as one race is not certain to collide."""
    base = request.getfixturevalue("pg_url") if backend == "postgresql" else ""
    for attempt in range(3):
        url = _fresh(backend, base, tmp_path, attempt)
        results = _all_at_once(url)
        assert all(r == results[0] for r in results)
        reader = Database(url, create=False)
        try:
            made = index_names(reader, "agents") | index_names(reader, "agent_states")
        finally:
            reader.dispose()
        assert {s.name for s in RACE_SPECS} | set(results[0][1].values()) <= made
        assert set(results[0][1]) == {"age", "interest"}
