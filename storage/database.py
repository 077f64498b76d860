"""Opening run databases and writing to them in bulk.

Core objects:
    Database: a SQLAlchemy engine plus the bulk-write paths (SQLite executemany, PostgreSQL COPY).
    StorageError: a clear, user-facing error (bad URL, unreachable server, full disk, ...).
    Columns: a batch of rows for one table, as a mapping of column name to a numpy array or list.

A step's rows are written in one transaction through the database driver's bulk path, never one
round trip per row, so that a step is either wholly committed or not at all.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from .schema import SCHEMA_VERSION, Base, Meta

Columns = Mapping[str, Any]

INSERT_CHUNK = 200_000
"""Rows converted to Python values and sent to the driver at a time, within one transaction."""


SCHEMA_LOCK_KEY = 0x706F70756C616365  # "populace": PostgreSQL advisory lock around creation


class StorageError(RuntimeError):
    """A database problem explained for the user: what failed and what to do about it."""


def unknown_name(what: str, name: str, known: Sequence[str], where: str, none: str = "") -> str:
    """A message for a name that is not there: the closest known one, and all of them."""
    if not known:
        return f"no {what} {name!r} in {where}: {none or 'there are none'}"
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no {what} {name!r} in {where}{hint} (known: {', '.join(map(str, known))})"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (notebooks, the monitor) read while a run writes; NORMAL sync is durable
    # against a process crash (kill -9), which is what resume must survive.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
    _sqlite_reader_pragmas(dbapi_connection, _record)


def _sqlite_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # connection-local settings only: a reader must not write to the file (journal_mode=WAL is
    # a write, and fails on read-only storage)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def _explain(url: str, exc: Exception) -> str:
    # the driver's own error (SQLAlchemy wraps it in .orig) says what happened; its first line
    # is enough, and an error with no message at all is shown by its type
    messages = (str(getattr(exc, "orig", "") or ""), str(exc))
    text = next((m.strip().splitlines()[0] for m in messages if m.strip()), repr(exc))
    low = text.lower()
    if "disk is full" in low or "no space left" in low or "disk full" in low:
        return (
            f"the database at {url} is full ({text}). Committed steps are intact; free some disk "
            "space (or raise the database's size limit) and run `populace resume` to continue."
        )
    if "unable to open database" in low:
        return (
            f"cannot open the SQLite database {url} ({text}): check that its folder exists and "
            "is writable, or set storage.url to another path."
        )
    if "connection" in low or "could not" in low or "refused" in low or "timeout" in low:
        return (
            f"cannot connect to the database {url} ({text}): check that the server is running "
            "and that storage.url (host, port, user, database name) is right."
        )
    return f"database error on {url}: {text}"


def redact(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


class Database:
    """A run database: SQLite (embedded default) or PostgreSQL, created on first use.

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:///runs/exp.sqlite`` or
            ``postgresql+psycopg://user@127.0.0.1:5432/test``.
        create: create the folder (SQLite) and any missing tables.
        connect_timeout: seconds to wait for a database server before giving up.
        read_only: open for reading only (loaders, ``populace runs`` and ``export``): nothing is
            written, not even the journal mode, and a SQLite file on read-only storage is opened
            read-only. Cannot be combined with ``create``.
    """

    def __init__(self, url: str, *, create: bool = True, connect_timeout: float = 10.0,
                 read_only: bool = False) -> None:
        if create and read_only:
            raise ValueError("a database opened read-only cannot create tables")
        self.url = url
        self.shown_url = redact(url)
        self.read_only = read_only
        try:
            parsed = sa.engine.make_url(url)
        except ArgumentError as exc:
            raise StorageError(
                f"storage.url {url!r} is not a database URL; use e.g. "
                "sqlite:///populace_runs/NAME.sqlite or postgresql+psycopg://USER@HOST:5432/DB"
            ) from exc
        self.dialect = parsed.get_backend_name()
        self._sqlite_path: Path | None = None
        connect_args: dict[str, Any] = {}
        engine_args: dict[str, Any] = {}
        if self.dialect == "sqlite":
            db = parsed.database
            if db and db != ":memory:" and not db.startswith("file:"):
                path = Path(db)
                self._sqlite_path = path
                if create:
                    path.parent.mkdir(parents=True, exist_ok=True)
                elif not path.exists():
                    raise StorageError(f"no run database at {path.resolve()}")
                if read_only and not _writable(path):
                    # a file or folder we cannot write: open it read-only, or SQLite fails
                    # trying to create its journal files ("unable to open database file")
                    engine_args["creator"] = _read_only_connector(path)
            connect_args["timeout"] = 30
            connect_args["check_same_thread"] = False  # the engine writes from a writer thread
        elif self.dialect == "postgresql":
            connect_args["connect_timeout"] = max(1, int(math.ceil(connect_timeout)))
            if read_only:  # the server itself refuses writes from a reader
                given = parsed.query.get("options")  # e.g. -csearch_path=... in the URL
                given = " ".join(given) if isinstance(given, tuple) else given
                connect_args["options"] = " ".join(
                    filter(None, [given, "-c default_transaction_read_only=on"]))
        try:
            self.engine: Engine = sa.create_engine(url, connect_args=connect_args, **engine_args)
        except (NoSuchModuleError, ImportError) as exc:
            hint = " (install it with: pip install 'populace[postgres]')" if (
                self.dialect == "postgresql") else ""
            raise StorageError(f"no database driver for {self.shown_url}{hint}: {exc}") from exc
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect",
                         _sqlite_reader_pragmas if read_only else _sqlite_pragmas)
        elif self.dialect == "postgresql":
            event.listen(self.engine, "connect", _pg_text_adapters)
        if create:
            self.create_tables()
            return
        try:
            existing = set(sa.inspect(self.engine).get_table_names())
            self.check_schema(existing)
        except (OperationalError, DBAPIError) as exc:
            raise StorageError(_explain(self.shown_url, exc)) from exc
        if "runs" not in existing:  # an empty file, or another program's database
            raise StorageError(
                f"{self.shown_url} is not a Populace run database (it has no runs table); "
                "give the database a run wrote (`populace runs --db URL` lists its runs)")

    # -- schema -------------------------------------------------------------------------------

    def create_tables(self) -> None:
        """Create every table declared on ``Base`` that does not exist yet.

        Safe when several processes open a new database at once (three ``populace run --db
        same.sqlite``): the tables and the schema version are created in one transaction under
        a database-wide lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so a
        process sees either none of them or all of them, and the second one finds them made.

        Raises:
            StorageError: the database holds Populace tables of another schema version.
        """
        try:
            existing = set(sa.inspect(self.engine).get_table_names())
            self.check_schema(existing)
            if set(Base.metadata.tables) <= existing:
                return  # the usual case: nothing to create, no lock to wait for
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits for (busy_timeout) the lock
                elif self.dialect == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                 {"key": SCHEMA_LOCK_KEY})
                existing = set(sa.inspect(conn).get_table_names())
                self.check_schema(existing, conn)
                Base.metadata.create_all(conn)
                if "populace_meta" not in existing:
                    conn.execute(sa.insert(Meta).values(key="schema_version",
                                                        value=str(SCHEMA_VERSION)))
                conn.commit()
        except (OperationalError, DBAPIError) as exc:
            raise StorageError(_explain(self.shown_url, exc)) from exc

    def check_schema(self, existing: set[str] | None = None,
                     conn: Connection | None = None) -> None:
        """Refuse a database whose Populace tables have another layout than this version's
        (reading in ``conn`` when given, e.g. inside ``create_tables``' transaction)."""
        if existing is None:
            existing = set(sa.inspect(conn if conn is not None else self.engine)
                           .get_table_names())
        if "runs" not in existing:
            return
        found = None
        if "populace_meta" in existing:
            stmt = sa.select(Meta.value).where(Meta.key == "schema_version")
            if conn is not None:
                found = conn.execute(stmt).scalar()
            else:
                with self.engine.connect() as own:
                    found = own.execute(stmt).scalar()
        if found != str(SCHEMA_VERSION):
            raise StorageError(
                f"{self.shown_url} holds runs of another Populace version (schema "
                f"{found or 'unversioned'}, this version writes {SCHEMA_VERSION}); write new "
                "runs to another database (storage.url or --db)")

    def table(self, name: str) -> sa.Table:
        """The table called ``name``: declared on ``Base`` or reflected from the database."""
        if name in Base.metadata.tables:
            return Base.metadata.tables[name]
        try:
            return sa.Table(name, sa.MetaData(), autoload_with=self.engine)
        except sa.exc.NoSuchTableError as exc:
            raise StorageError(unknown_name("table", name, self.table_names(),
                                            self.shown_url)) from exc

    def table_names(self) -> list[str]:
        """Names of the tables that exist in the database."""
        return sorted(sa.inspect(self.engine).get_table_names())

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; database errors become ``StorageError`` with a clear message."""
        # the bulk paths use the driver's cursor directly, so its own errors arrive unwrapped
        driver_error = getattr(self.engine.dialect.dbapi, "Error", DBAPIError)
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, DBAPIError, driver_error) as exc:
            raise StorageError(_explain(self.shown_url, exc)) from exc
        except UnicodeEncodeError as exc:  # Python text that no database can hold
            raise StorageError(
                f"cannot store text in {self.shown_url}: it is not valid Unicode ({exc}); "
                "lone surrogates (e.g. from a JSON \\ud800 escape) have no UTF-8 form") from exc

    def insert_columns(self, conn: Connection, table: str, run_id: int, columns: Columns) -> int:
        """Insert a column batch into ``table`` through the driver's bulk path.

        Args:
            conn: an open connection inside a transaction.
            table: table name.
            run_id: value for the ``run_id`` column of every row.
            columns: column name -> numpy array or list, all of one length.

        Returns:
            The number of rows written.
        """
        # a column given as all-None is left to its default (NULL): one bind less per row
        names = [c for c in columns
                 if not (isinstance(columns[c], list) and all(v is None for v in columns[c]))]
        if not names:
            return 0
        n = len(columns[names[0]])
        if any(len(columns[c]) != n for c in names):
            raise ValueError(f"columns for table {table!r} differ in length")
        if n == 0:
            return 0
        dbapi_conn = conn.connection.dbapi_connection
        # in chunks: Python values for a few 100k rows at a time, not for millions (a 1M-agent
        # run's initial follow graph is 5M rows; as one batch, 700 MB of Python ints)
        for lo in range(0, n, INSERT_CHUNK):
            part = {c: columns[c][lo:lo + INSERT_CHUNK] for c in names}
            self._insert_chunk(dbapi_conn, table, run_id, names, part, min(INSERT_CHUNK, n - lo))
        return n

    def _insert_chunk(self, dbapi_conn: Any, table: str, run_id: int, names: list[str],
                      columns: Columns, n: int) -> None:
        if self.dialect == "postgresql":
            texts = [[str(run_id)] * n, *(_pg_column(columns[c]) for c in names)]
            _copy_rows(dbapi_conn, table, ["run_id", *names], texts)
            return
        lists = [[run_id] * n, *(_to_list(columns[c]) for c in names)]
        names = ["run_id", *names]
        marks = ", ".join("?" if self.dialect == "sqlite" else "%s" for _ in names)
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"
        cursor = dbapi_conn.cursor()
        try:
            cursor.executemany(sql, zip(*lists, strict=True))
        finally:
            cursor.close()

    def delete_after(self, conn: Connection, run_id: int, step: int, tables: Sequence[str]) -> None:
        """Delete the rows of ``run_id`` written after ``step`` (for resume)."""
        existing = set(self.table_names())
        for name in tables:
            if name in existing:
                conn.execute(
                    sa.text(f"DELETE FROM {name} WHERE run_id = :r AND step > :s"),
                    {"r": run_id, "s": step},
                )

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()

    def finish(self) -> None:
        """Close the database after a writer is done with it (e.g. a completed run).

        A SQLite file is checkpointed and switched out of write-ahead logging, so that it is one
        self-contained file that can be read from read-only storage (a WAL file needs its
        ``-shm`` companion, which read-only storage cannot create). Best effort: while another
        connection (a reader, another writer) holds the file it stays in WAL mode, and nothing
        is raised. Then every pooled connection is closed.
        """
        self.engine.dispose()
        if self.dialect != "sqlite" or self.read_only or self._sqlite_path is None:
            return
        # connections opened later (e.g. the Run handle reading the result) must not switch the
        # file back to WAL: from now on they get the reader's settings only
        if event.contains(self.engine, "connect", _sqlite_pragmas):
            event.remove(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "connect", _sqlite_reader_pragmas)
        try:
            # timeout 0: never wait for another connection; if one holds the file, leave it
            conn = sqlite3.connect(str(self._sqlite_path), timeout=0)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error:
            pass
        finally:
            conn.close()


def _writable(path: Path) -> bool:
    # SQLite writes journal files next to the database, so its folder must be writable too
    # (os.access reports a read-only file system even to root)
    folder = path.resolve().parent
    return os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)


def _read_only_connector(path: Path) -> Any:
    """A DBAPI ``creator`` opening ``path`` with ``mode=ro``; a file left in WAL mode on
    read-only storage (it needs a ``-shm`` file nobody can create) is opened ``immutable``."""
    uri = "file:" + urllib.parse.quote(str(path.resolve()))

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        # immutable reads the main file alone: committed pages still in a -wal file would be
        # skipped without a word, so only a file with no (or an empty) -wal is opened so
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise StorageError(
                f"{path} is in write-ahead-log mode with committed rows in {wal.name}, which "
                "SQLite can only read with a -shm file that this read-only storage cannot "
                "hold; copy the database with its -wal file to writable storage and open it "
                "there (or let the writer finish, which folds the -wal into the file)")
        # nobody can write read-only storage, so the file cannot change under the reader
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)

    return connect


# -- text that PostgreSQL cannot hold --------------------------------------------------------------
# PostgreSQL text cannot contain NUL, which SQLite stores (and models do emit). On PostgreSQL
# only, every text value is escaped reversibly with a private-use character: NUL becomes
# ESCAPE + "0" and a literal ESCAPE becomes ESCAPE + ESCAPE. Ordinary text never changes, and
# the reading side (the psycopg loaders below) turns it back, so Populace reads exactly what was
# written on both back ends.

ESCAPE = "\ue000"
_DECODE = re.compile("\ue000([0\ue000])")


def escape_text(value: str) -> str:
    """``value`` as stored in a PostgreSQL text column (NUL and ``U+E000`` escaped)."""
    if "\x00" in value or ESCAPE in value:
        return value.replace(ESCAPE, ESCAPE + ESCAPE).replace("\x00", ESCAPE + "0")
    return value


def unescape_text(value: str) -> str:
    """The text written, from a value stored by ``escape_text``."""
    if ESCAPE not in value:
        return value
    return _DECODE.sub(lambda m: "\x00" if m.group(1) == "0" else ESCAPE, value)


_PG_ADAPTERS: list[Any] = []


def _pg_adapter_classes() -> list[Any]:
    # the driver's pure-Python text adapters (its C ones cannot be subclassed), plus the escape
    if not _PG_ADAPTERS:
        from psycopg.types import string

        class EscapingStrDumper(string.StrDumperUnknown):
            def dump(self, obj: str) -> Any:
                return super().dump(escape_text(obj))

        class EscapingStrBinaryDumper(string.StrBinaryDumper):
            def dump(self, obj: str) -> Any:
                return super().dump(escape_text(obj))

        class UnescapingTextLoader(string.TextLoader):
            def load(self, data: Any) -> Any:
                return unescape_text(super().load(data))

        class UnescapingTextBinaryLoader(string.TextBinaryLoader):
            def load(self, data: Any) -> Any:
                return unescape_text(super().load(data))

        _PG_ADAPTERS.extend([EscapingStrDumper, EscapingStrBinaryDumper, UnescapingTextLoader,
                             UnescapingTextBinaryLoader])
    return _PG_ADAPTERS


def _pg_text_adapters(dbapi_connection: Any, _record: Any) -> None:
    """Escape every str parameter and unescape every text result on a psycopg connection."""
    adapters = getattr(dbapi_connection, "adapters", None)
    if adapters is None:  # another driver than psycopg 3
        return
    dumper, binary_dumper, loader, binary_loader = _pg_adapter_classes()
    # the binary one first: the last registered is the default, and psycopg's default for str
    # is the text dumper of unknown type (the server infers it: `now() > :t` keeps working)
    adapters.register_dumper(str, binary_dumper)
    adapters.register_dumper(str, dumper)
    for oid_name in ("text", "varchar", "bpchar"):
        adapters.register_loader(oid_name, loader)
        adapters.register_loader(oid_name, binary_loader)


def _to_list(values: Any) -> list[Any]:
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "f":
            # NaN means missing: store NULL, not a float that SQL cannot compare.
            out = values.tolist()
            if np.isnan(values).any():
                return [None if v != v else v for v in out]
            return out
        return values.tolist()
    return list(values)


def _copy_rows(dbapi_conn: Any, table: str, names: list[str], texts: list[Any]) -> None:
    """PostgreSQL COPY FROM STDIN in text format: columns already as COPY text, joined into
    one buffer in C (``str.join`` over ``zip``), with no per-row round trip."""
    body = "\n".join(map("\t".join, zip(*texts, strict=True))) + "\n"
    with dbapi_conn.cursor() as cur, cur.copy(
        f"COPY {table} ({', '.join(names)}) FROM STDIN"
    ) as copy:
        copy.write(body)


def _pg_column(values: Any) -> list[str]:
    """One column as COPY text values, vectorised for numpy numbers and booleans."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iub":
        if values.dtype.kind == "b":
            return np.where(values, "t", "f").tolist()
        return values.astype(str).tolist()
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        # as doubles, like the SQLite path (a float32 stored by its float32 repr would differ)
        values = values.astype(np.float64, copy=False)
        text = values.astype(str)
        missing = np.isnan(values)
        if missing.any():
            text[missing] = "\\N"
        return text.tolist()
    return [_pg_text(v) for v in (values.tolist() if isinstance(values, np.ndarray)
                                  else values)]


def _pg_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + value.hex()
    if isinstance(value, str):
        if "\x00" in value or ESCAPE in value:
            value = escape_text(value)
        return (
            value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)
