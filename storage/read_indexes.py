"""Indexes for readers (the web service, notebooks), created once a run's bulk writes are done.

Tables that receive many rows per step (``EventMixin``) have no index but their surrogate key,
on purpose: bulk inserts stay append-only. A reader that wants one agent's rows, or the edges
touching a few agents, then scans the whole table (5M follow edges at 1M agents). These
functions add the secondary indexes such reads need, with ``CREATE INDEX IF NOT EXISTS``, on
SQLite and PostgreSQL; calling them again is harmless, and so is calling them from several
processes at once (parallel sweep workers finishing runs into one database): see
``INDEX_LOCK_KEY``.

Core objects:
    ReadIndex: an index of named columns of one table (the caller names them: storage knows
        nothing about the scenarios whose tables they are).
    ensure_read_indexes: create the ``ReadIndex`` es that do not exist yet.
    attribute_value: the SQL expression of one agent attribute (``agents.attributes`` JSON),
        the one expression both the attribute indexes and the queries that use them must use.
    ensure_attribute_indexes: an index per agent attribute on that expression.
    attribute_kinds: the agents' attributes, and which are numeric (what to index).
    index_names: the indexes a table has (to choose a query that uses one).

Key columns come first (``(agent_id, run_id)``, not ``(run_id, agent_id)``): SQLite answers
``run_id = ? AND (follower_id IN (..) OR followee_id IN (..))`` with one index per side of the
OR only when ``run_id`` is not the leading column of both (else it searches one index by
``run_id`` alone, i.e. scans the run); equality on both columns works either way.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from .database import Database, StorageError, unknown_name

AGENTS = "agents"
"""The core table of agents and their JSON attributes (``populace.storage.schema.Agent``)."""
MAX_INDEXED_TEXT = 200
"""Text attributes longer than this (in the first agent) are free text such as a biography,
not a category to filter or count by: they get no index."""
INDEX_LOCK_KEY = 0x706F702D69647878  # "pop-idxx"
"""The PostgreSQL advisory lock that each index's transaction takes before creating it.

Why: ``CREATE INDEX IF NOT EXISTS`` checks for the name first and enters it in the catalog
at the end, so two sessions that both find it missing both build the index (each reading the
whole table) and the later one fails on the catalog's unique key (``UniqueViolation ...
pg_class_relname_nsp_index``). Under the lock one process builds and the others wait, then find
the index made. Chosen over catching the duplicate error per index: no table is read twice
(the loser of the race has built the whole index before it fails), and no error text to match.
The lock is the first statement of its transaction, so a waiter holds no table lock that the
builder could need. The key is one per database, not per schema: processes writing to
different schemas of one database wait for each other's index builds, which costs time only.

SQLite needs no lock: ``CREATE INDEX`` takes the file's write lock, which another writer waits
for (``busy_timeout``, 30 s a statement; the longest single index at 1M agents takes about
12 s, docs/benchmarks.md) and then finds the index there."""


@dataclass(frozen=True)
class ReadIndex:
    """An index of ``columns`` (in that order) of ``table``."""

    table: str
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        """The index's name: readable, unique per (table, columns), at most 63 characters
        (PostgreSQL's limit)."""
        return _index_name("ix_read", self.table, "_".join(self.columns))


def _index_name(prefix: str, table: str, what: str) -> str:
    digest = hashlib.sha1(f"{table}\0{what}".encode()).hexdigest()[:8]
    readable = re.sub(r"\W+", "_", f"{table}_{what}", flags=re.ASCII)[:40]
    return f"{prefix}_{readable}_{digest}"


@contextmanager
def _index_transaction(db: Database) -> Iterator[Connection]:
    """``db.transaction()``, holding ``INDEX_LOCK_KEY`` until it ends on PostgreSQL."""
    with db.transaction() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": INDEX_LOCK_KEY})
        yield conn


def ensure_read_indexes(db: Database, specs: Sequence[ReadIndex]) -> list[str]:
    """Create each index of ``specs`` that does not exist yet; return the names of all of them.

    Each index is created in its own transaction (on PostgreSQL a failed one would abort the
    others), under ``INDEX_LOCK_KEY`` so that processes calling this at once do not collide.
    Building an index reads the whole table: seconds for millions of rows, so call this once the
    bulk writes are done (a completed run), not before every step.

    Raises:
        StorageError: a table or column that the database does not have (with the closest
            known name), or the database refused to build an index.
        ValueError: a spec with no column.
    """
    names = []
    existing = set(db.table_names())
    for spec in specs:
        if not spec.columns:
            raise ValueError(f"an index of table {spec.table!r} needs at least one column")
        if spec.table not in existing:
            raise StorageError(unknown_name("table", spec.table, sorted(existing),
                                            db.shown_url))
        have = [c["name"] for c in sa.inspect(db.engine).get_columns(spec.table)]
        for column in spec.columns:
            if column not in have:
                raise StorageError(unknown_name("column", column, have,
                                                f"table {spec.table} of {db.shown_url}"))
        quote = db.engine.dialect.identifier_preparer.quote
        cols = ", ".join(quote(c) for c in spec.columns)
        with _index_transaction(db) as conn:
            conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {quote(spec.name)} "
                                 f"ON {quote(spec.table)} ({cols})")
        names.append(spec.name)
    return names


def attribute_value(dialect: str, column: sa.ColumnElement[Any], name: str,
                    numeric: bool) -> sa.ColumnElement[Any]:
    """Attribute ``name`` of the JSON object in ``column`` as SQL (a float when ``numeric``,
    else text), for ``dialect`` (``sqlite`` or ``postgresql``).

    The attribute's path is rendered into the SQL, not bound: SQLite uses an index on an
    expression only for a query with the very same expression, and a bound parameter is not
    the same. The name is escaped as an SQL string literal; callers should still check it
    against the known attributes first.
    """
    if dialect == "postgresql":
        text: sa.ColumnElement[Any] = sa.cast(column, JSONB).op("->>")(
            sa.literal(name, sa.Text, literal_execute=True))
    else:
        path = f'$."{name}"'  # SQLite's JSON paths have no escape for a '"' in a key
        text = sa.func.json_extract(column, sa.literal(path, sa.Text, literal_execute=True))
    return sa.cast(text, sa.Float) if numeric else sa.cast(text, sa.String)


def index_names(db: Database, table: str) -> set[str]:
    """The names of the indexes of ``table`` (those on expressions included, which
    SQLAlchemy's inspector leaves out on SQLite)."""
    if db.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
    else:
        sql = ("SELECT indexname FROM pg_indexes WHERE tablename = :t "
               "AND schemaname = current_schema()")
    with db.engine.connect() as conn:
        return {str(r[0]) for r in conn.execute(sa.text(sql), {"t": table})}


def attribute_index_name(name: str, numeric: bool) -> str:
    """The name of the index ``ensure_attribute_indexes`` makes for attribute ``name``."""
    return _index_name("ix_attr", AGENTS, f"{name}_{'n' if numeric else 's'}")


def attribute_kinds(db: Database, run_id: int | None = None) -> dict[str, bool]:
    """The agents' attributes (of run ``run_id``, else of the database's first run) that an
    index can hold, from the first agent's row: name -> whether it is numeric (numbers are,
    booleans and text are not; lists, objects and long free text are left out)."""
    t = sa.table(AGENTS, sa.column("run_id"), sa.column("agent_id"), sa.column("attributes"))
    stmt = sa.select(t.c.attributes).order_by(t.c.run_id, t.c.agent_id).limit(1)
    if run_id is not None:
        stmt = stmt.where(t.c.run_id == run_id)
    with db.engine.connect() as conn:
        first = conn.execute(stmt).scalar()
    values = json.loads(first) if first else {}
    return {k: isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in values.items() if isinstance(v, int | float | bool)
            or isinstance(v, str) and len(v) <= MAX_INDEXED_TEXT}


def ensure_attribute_indexes(db: Database, attributes: Mapping[str, bool]) -> dict[str, str]:
    """An index of ``agents`` on ``(run_id, attribute_value(...))`` for each attribute (name
    -> whether it is numeric), shared by every run of the database.

    With it a filter (``age >= 60``) counts by a range of the index, and a histogram finds its
    bounds and bin counts in the index, instead of parsing every agent's JSON.

    Returns:
        attribute name -> index name, for the indexes that exist afterwards. An attribute the
        database cannot index (PostgreSQL refuses index entries over about 2.7 kB, e.g. a long
        free-text attribute) is left out and does not stop the others.

    Raises:
        StorageError: the database has no ``agents`` table.
    """
    if AGENTS not in db.table_names():
        raise StorageError(unknown_name("table", AGENTS, db.table_names(), db.shown_url))
    quote = db.engine.dialect.identifier_preparer.quote
    column = sa.column("attributes")
    out = {}
    for name, numeric in attributes.items():
        value = attribute_value(db.dialect, column, name, numeric)
        expr = str(value.compile(dialect=db.engine.dialect,
                                 compile_kwargs={"literal_binds": True}))
        index = attribute_index_name(name, numeric)
        try:
            with _index_transaction(db) as conn:
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {quote(index)} ON "
                                     f"{quote(AGENTS)} (run_id, ({expr}))")
        except StorageError as err:
            if "index row" in str(err).lower():
                continue  # values too long for a B-tree entry: this attribute stays unindexed
            raise
        out[name] = index
    if db.dialect == "postgresql" and out:
        # the planner's statistics of an indexed expression come from ANALYZE alone, and
        # autovacuum analyzes a table after enough rows changed, never for a new index
        with _index_transaction(db) as conn:
            conn.exec_driver_sql(f"ANALYZE {quote(AGENTS)}")
    return out


__all__ = ["ReadIndex", "attribute_index_name", "attribute_kinds", "attribute_value", "ensure_attribute_indexes",
           "ensure_read_indexes", "index_names"]
