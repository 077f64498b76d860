"""The storage layer on both SQLite and PostgreSQL: bulk writes, atomic steps, loaders, export."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from populace.storage import Base, Database, EventMixin, StorageError, export_run, open_run
from populace.storage.runs import create_run, find_run, list_runs, load_checkpoint, save_checkpoint


class Sample(EventMixin, Base):
    """A table with every kind of column the bulk paths must carry."""

    __tablename__ = "test_samples"

    agent_id: Mapped[int] = mapped_column(sa.BigInteger)
    label: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    value: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    flag: Mapped[bool] = mapped_column(sa.Boolean)
    blob: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)


def new_run(db: Database, name: str = "t") -> int:
    return create_run(db, name=name, scenario="test", seed=1, n_agents=3, steps_planned=5,
                      config={"name": name}, config_yaml=None, config_path=None,
                      package_version="0")


TRICKY = ["plain", "tab\there", "new\nline", "back\\slash", "", None, "quote ' and \" ok", "é ünï"]


def test_bulk_insert_roundtrip(any_url: str) -> None:
    db = Database(any_url)
    run_id = new_run(db)
    n = len(TRICKY)
    values = np.array([0.5, np.nan, -1e300, 3.0, 0.0, 1.5, -2.25, np.inf])
    with db.transaction() as conn:
        written = db.insert_columns(conn, "test_samples", run_id, {
            "step": np.arange(n), "agent_id": np.arange(n, dtype=np.int64) * 10**12,
            "label": TRICKY, "value": values, "flag": np.arange(n) % 2 == 0,
            "blob": [b"\x00\x01\\x", None] + [b"z"] * (n - 2),
        })
    assert written == n
    frame = open_run(db, run_id).table("test_samples")
    assert frame["agent_id"].tolist() == [i * 10**12 for i in range(n)]
    labels = [None if (isinstance(v, float) and math.isnan(v)) else v for v in frame["label"]]
    assert labels == TRICKY
    got = frame["value"].to_numpy(dtype=float)
    assert math.isnan(got[1])  # NaN is stored as NULL
    np.testing.assert_array_equal(np.delete(got, 1), np.delete(values, 1))
    assert frame["flag"].astype(bool).tolist() == [i % 2 == 0 for i in range(n)]
    assert bytes(frame["blob"][0]) == b"\x00\x01\\x" and frame["blob"][1] is None


def test_a_batch_larger_than_a_chunk_is_written_whole_and_in_order(any_url: str,
                                                                   monkeypatch) -> None:
    import populace.storage.database as database

    monkeypatch.setattr(database, "INSERT_CHUNK", 7)  # 50 rows: 7 full chunks and one of 1
    db = Database(any_url)
    run_id = new_run(db)
    n = 50
    with db.transaction() as conn:
        written = db.insert_columns(conn, "test_samples", run_id, {
            "step": np.arange(n), "agent_id": np.arange(n, dtype=np.int64)[::-1].copy(),
            "label": [f"row {i}" for i in range(n)], "value": np.arange(n) / 4,
            "flag": np.arange(n) % 3 == 0,
        })
    assert written == n
    frame = open_run(db, run_id).table("test_samples")
    assert frame["agent_id"].tolist() == list(range(n - 1, -1, -1))
    assert frame["label"].tolist() == [f"row {i}" for i in range(n)]
    assert frame["value"].tolist() == [i / 4 for i in range(n)]


def test_a_failing_step_writes_nothing(any_url: str) -> None:
    db = Database(any_url)
    run_id = new_run(db)
    with pytest.raises(StorageError), db.transaction() as conn:
        db.insert_columns(conn, "test_samples", run_id, {
            "step": [1], "agent_id": [1], "label": ["a"], "value": [1.0], "flag": [True],
            "blob": [None]})
        db.insert_columns(conn, "no_such_table", run_id, {"step": [1]})
    assert open_run(db, run_id).table("test_samples").empty


def test_delete_after_cuts_back_one_run_only(any_url: str) -> None:
    db = Database(any_url)
    a, b = new_run(db, "a"), new_run(db, "b")
    rows = {"step": [0, 1, 2, 3], "agent_id": [1, 2, 3, 4], "label": ["x"] * 4,
            "value": [1.0] * 4, "flag": [True] * 4, "blob": [None] * 4}
    with db.transaction() as conn:
        db.insert_columns(conn, "test_samples", a, rows)
        db.insert_columns(conn, "test_samples", b, rows)
    with db.transaction() as conn:
        db.delete_after(conn, a, 1, ["test_samples", "steps", "absent_table"])
    assert open_run(db, a).table("test_samples")["step"].tolist() == [0, 1]
    assert open_run(db, b).table("test_samples")["step"].tolist() == [0, 1, 2, 3]


def test_checkpoints_chunked_and_replaced(any_url: str, monkeypatch) -> None:
    from populace.storage import runs

    monkeypatch.setattr(runs, "CHUNK", 1000)
    db = Database(any_url)
    run_id = new_run(db)
    blob = os.urandom(3500)
    with db.transaction() as conn:
        save_checkpoint(conn, db, run_id, 4, b"old")
    with db.transaction() as conn:
        save_checkpoint(conn, db, run_id, 8, blob)
    step, got = load_checkpoint(db, run_id)
    assert step == 8 and got == blob
    with db.engine.connect() as conn:
        chunks = conn.execute(sa.text("select count(*) from checkpoints")).scalar()
    assert chunks == 4


def test_find_and_list_runs(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    with pytest.raises(StorageError, match="no runs"):
        find_run(db)
    first = new_run(db, "alpha")
    second = new_run(db, "alpha")
    third = new_run(db, "beta")
    assert find_run(db)["id"] == third
    assert find_run(db, "alpha")["id"] == second
    assert find_run(db, first)["name"] == "alpha"
    assert find_run(db, str(first))["id"] == first
    with pytest.raises(StorageError, match="no run 'gamma'"):
        find_run(db, "gamma")
    listing = list_runs(db)
    assert listing["id"].tolist() == [first, second, third]
    assert set(listing["status"]) == {"running"}


def test_run_handle_metrics_agents_and_export(tmp_path: Path, any_url: str) -> None:
    db = Database(any_url)
    run_id = new_run(db)
    with db.transaction() as conn:
        db.insert_columns(conn, "agents", run_id, {
            "agent_id": [0, 1, 2],
            "attributes": [json.dumps({"age": 30 + i, "camp": "ab"[i % 2]}) for i in range(3)]})
        db.insert_columns(conn, "step_metrics", run_id, {
            "step": [0, 0, 1, 1], "name": ["m", "k", "m", "k"], "value": [1.0, None, 2.0, 3.0]})
        db.insert_columns(conn, "steps", run_id, {
            "step": [0, 1], "sim_time": [datetime(2025, 1, 1), datetime(2025, 1, 1, 1)],
            "n_active": [0, 2], "n_actions": [0, 2], "compute_s": [0.1, 0.1],
            "record_s": [0.0, 0.0]})
        db.insert_columns(conn, "test_samples", run_id, {
            "step": list(range(25)), "agent_id": list(range(25)), "label": ["x"] * 25,
            "value": [float(i) for i in range(25)], "flag": [True] * 25, "blob": [None] * 25})
    run = open_run(db, run_id)
    metrics = run.metrics()
    assert metrics.loc[1, "m"] == 2.0 and math.isnan(metrics.loc[0, "k"])
    agents = run.agents()
    assert agents.index.tolist() == [0, 1, 2] and agents["age"].tolist() == [30, 31, 32]
    assert run.steps()["n_active"].tolist() == [0, 2]
    for fmt in ("parquet", "csv"):
        files = export_run(run, fmt, tmp_path / fmt, chunk_rows=7)  # several chunks
        names = {f.name for f in files}
        assert {f"runs.{fmt}", f"test_samples.{fmt}", f"step_metrics.{fmt}"} <= names
        read = pd.read_parquet if fmt == "parquet" else pd.read_csv
        samples = read(tmp_path / fmt / f"test_samples.{fmt}")
        assert samples["agent_id"].tolist() == list(range(25))
        assert read(tmp_path / fmt / f"runs.{fmt}")["id"].tolist() == [run_id]


def test_bad_urls_are_explained(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a database URL"):
        Database("not a url")
    with pytest.raises(StorageError, match="cannot connect to the database"):
        Database("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_timeout=2)
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises((StorageError, OSError)):
        Database(f"sqlite:///{blocked}/sub/run.sqlite")
    with pytest.raises(StorageError, match="no run database"):
        Database(f"sqlite:///{tmp_path / 'missing.sqlite'}", create=False)


def test_password_is_hidden_in_messages() -> None:
    with pytest.raises(StorageError) as info:
        Database("postgresql+psycopg://user:secret@127.0.0.1:1/none", connect_timeout=2)
    assert "secret" not in str(info.value) and "***" in str(info.value)


def test_database_of_another_schema_version_is_refused(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    new_run(db)
    with db.engine.begin() as conn:
        conn.execute(sa.text("update populace_meta set value = '0'"))
    db.dispose()
    with pytest.raises(StorageError, match="another Populace version"):
        Database(sqlite_url)
    with pytest.raises(StorageError, match="schema 0"):
        open_run(sqlite_url)


def test_an_error_without_a_message_is_still_explained() -> None:
    from populace.storage.database import _explain

    class Wrapped(Exception):
        orig = RuntimeError("")

    assert _explain("sqlite://", RuntimeError("")) == "database error on sqlite://: RuntimeError('')"
    assert _explain("sqlite://", Wrapped("outer message")) == (
        "database error on sqlite://: outer message")
