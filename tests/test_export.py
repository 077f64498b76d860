"""Export: one consistent snapshot of a run being written, names that are not there, docs."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import populace.scenarios.social.tables  # noqa: F401  (declares posts)
from populace.storage import Database, StorageError, export_run, open_run
from populace.storage.runs import find_run

from .test_storage import new_run

DOCS = Path(__file__).resolve().parents[1] / "docs" / "storage.md"

# Writes steps the way the engine does (every table of a step and the runs row in one
# transaction), with enough rows per step that reading a table takes a while.
WRITER = r"""
import sys, time
from datetime import datetime
import numpy as np
from populace.storage import Database
from populace.storage.runs import update_run

url, run_id, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = Database(url, create=False)
for step in range(1, 2001):  # stopped by the test long before the end
    time.sleep(0.02)
    with db.transaction() as conn:
        db.insert_columns(conn, "agent_states", run_id, {
            "step": np.full(rows, step), "agent_id": np.arange(rows),
            "variable": ["opinion"] * rows, "value": np.random.default_rng(step).random(rows)})
        db.insert_columns(conn, "step_metrics", run_id, {
            "step": [step], "name": ["m"], "value": [float(step)]})
        db.insert_columns(conn, "steps", run_id, {
            "step": [step], "sim_time": [datetime(2025, 1, 1)], "n_active": [rows],
            "n_actions": [0], "compute_s": [0.0], "record_s": [0.0]})
        update_run(db, run_id, conn=conn, steps_done=step)
    print(step, flush=True)
"""


def _max_steps(folder: Path) -> dict[str, int]:
    return {name: int(pd.read_parquet(folder / f"{name}.parquet")["step"].max())
            for name in ("agent_states", "step_metrics", "steps")}


@pytest.mark.slow
def test_export_of_a_run_being_written_is_one_snapshot(tmp_path: Path, any_url: str) -> None:
    db = Database(any_url)
    run_id = new_run(db)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, any_url, str(run_id), "5000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        for _ in range(3):  # a few steps committed before the first export
            assert writer.stdout.readline(), writer.stderr.read() if writer.stderr else ""
        for attempt in range(3):
            out = tmp_path / f"export{attempt}"
            files = export_run(open_run(any_url, run_id), "parquet", out, chunk_rows=7000)
            done = int(pd.read_parquet(out / "runs.parquet")["steps_done"].iloc[0])
            assert _max_steps(out) == dict.fromkeys(_max_steps(out), done)
            states = pd.read_parquet(out / "agent_states.parquet")
            assert len(states) == 5000 * done  # whole steps only
            assert files.run_info["steps_done"] == done >= 3
        # the command says that the run was still being written, and which step it holds
        cli = subprocess.run(
            [str(Path(sys.executable).parent / "populace"), "export", str(run_id), "--db",
             any_url, "--format", "csv", "--out", str(tmp_path / "cli")],
            capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        held = re.search(r"has status running: the export is one snapshot, steps 0-(\d+)",
                         cli.stderr)
        assert held, cli.stderr
        steps = pd.read_csv(tmp_path / "cli" / "steps.csv")
        assert steps["step"].max() == int(held.group(1))
        assert writer.poll() is None  # all of it while the run was being written
    finally:
        writer.terminate()
        writer.wait(timeout=30)
        db.dispose()


def test_unknown_names_are_errors_that_list_what_exists(sqlite_url: str, tmp_path) -> None:
    db = Database(sqlite_url)
    run_id = new_run(db, name="alpha")
    with db.transaction() as conn:
        db.insert_columns(conn, "agent_states", run_id, {
            "step": [0, 0], "agent_id": [0, 1], "variable": ["opinion", "opinion"],
            "value": [0.5, -0.5]})
    run = open_run(sqlite_url, run_id)
    assert run.agent_states("opinion").shape == (1, 2)
    with pytest.raises(StorageError, match=r"no agent state variable 'opinon'.*did you mean "
                                           r"'opinion'\?.*known: opinion"):
        run.agent_states("opinon")
    with pytest.raises(StorageError, match=r"no table 'postz'.*known: .*agent_states"):
        run.table("postz")
    with db.transaction() as conn:  # a table the scenario declares, missing from the file
        conn.exec_driver_sql("DROP TABLE posts")
    with pytest.raises(StorageError, match=r"no table 'posts'.*known: "):
        run.table("posts")
    with pytest.raises(StorageError, match=r"no export format 'parket'.*did you mean "
                                           r"'parquet'\?"):
        export_run(run, "parket", tmp_path / "x")
    with pytest.raises(StorageError, match=r"no run 'alpah'.*did you mean 'alpha'\?"):
        open_run(sqlite_url, "alpah")
    with pytest.raises(StorageError, match=r"did you mean 'alpha'\?"):  # resume looks up so
        find_run(db, "alpah")
    with pytest.raises(StorageError, match=r"no run '?99"):
        find_run(db, 99)
    other = open_run(sqlite_url, new_run(db, name="empty"))  # a run that recorded nothing
    with pytest.raises(StorageError, match="recorded no agent states"):
        other.agent_states("opinion")
    agents = other.agents()
    assert agents.empty and agents.index.name == "agent_id"
    db.dispose()


def test_storage_docs_say_what_export_writes(tmp_path: Path, sqlite_url: str) -> None:
    """docs/storage.md on export: agents one column per attribute, checkpoints left out."""
    text = DOCS.read_text()
    section = text[text.index("## Export"):text.index("## PostgreSQL")]
    assert "`checkpoints` is exported too" not in section
    assert "one column per attribute" in section and "not exported" in section
    db = Database(sqlite_url)
    run_id = new_run(db)
    with db.transaction() as conn:
        db.insert_columns(conn, "agents", run_id, {
            "agent_id": [0, 1], "attributes": ['{"age": 30, "camp": "a"}',
                                               '{"age": 31, "camp": "b"}']})
        db.insert_columns(conn, "checkpoints", run_id, {
            "step": [0], "chunk": [0], "data": [b"state"]})
    files = export_run(open_run(sqlite_url, run_id), "parquet", tmp_path / "out")
    assert sorted(f.name for f in files) == ["agents.parquet", "runs.parquet"]
    agents = pd.read_parquet(tmp_path / "out" / "agents.parquet")
    assert list(agents.columns) == ["agent_id", "age", "camp"]
    db.dispose()


def test_export_streams_agents_in_chunks_with_the_same_result(sqlite_url: str,
                                                              tmp_path: Path) -> None:
    db = Database(sqlite_url)
    run_id = new_run(db)
    n = 1000
    with db.transaction() as conn:
        db.insert_columns(conn, "agents", run_id, {
            "agent_id": list(range(n)),
            "attributes": [f'{{"age": {i}, "w": {i / 2}, "tag": "t{i % 3}"}}' for i in range(n)]})
    run = open_run(sqlite_url, run_id)
    export_run(run, "parquet", tmp_path / "one")
    export_run(run, "parquet", tmp_path / "many", chunk_rows=64)
    one = pd.read_parquet(tmp_path / "one" / "agents.parquet")
    pd.testing.assert_frame_equal(one, pd.read_parquet(tmp_path / "many" / "agents.parquet"))
    pd.testing.assert_frame_equal(one, run.agents().reset_index())
    db.dispose()


def _run_with_rows(url: str) -> int:
    """A run with rows in three tables: 40 agents, 50 metric rows, 30 agent states."""
    db = Database(url)
    run_id = new_run(db)
    with db.transaction() as conn:
        db.insert_columns(conn, "agents", run_id, {
            "agent_id": list(range(40)),
            "attributes": [f'{{"age": {20 + i}, "camp": "{"ab"[i % 2]}"}}' for i in range(40)]})
        db.insert_columns(conn, "step_metrics", run_id, {
            "step": list(range(50)), "name": ["m"] * 50, "value": [1.0] * 50})
        db.insert_columns(conn, "agent_states", run_id, {
            "step": [0] * 30, "agent_id": list(range(30)), "variable": ["opinion"] * 30,
            "value": [0.25] * 30})
    db.dispose()
    return run_id


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_progress_is_one_bar_when_asked_and_nothing_otherwise(
        sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    run = open_run(sqlite_url, _run_with_rows(sqlite_url))
    shown = export_run(run, fmt, tmp_path / "shown", progress=True, chunk_rows=16)
    err = capsys.readouterr().err
    # one bar over the rows of every table (counted in the snapshot), ending on the run
    assert f"export run {run.id}: 100%" in err and "120/120" in err, err
    quiet = export_run(run, fmt, tmp_path / "quiet", progress=False, chunk_rows=16)
    assert capsys.readouterr().err == ""
    auto = export_run(run, fmt, tmp_path / "auto", chunk_rows=16)  # stderr is no terminal
    assert capsys.readouterr().err == ""
    # the same files, byte for byte, whichever way
    names = [f.name for f in shown]
    assert names == [f.name for f in quiet] == [f.name for f in auto]
    assert len(names) == 4  # runs, agent_states, agents, step_metrics
    for name in names:
        data = (tmp_path / "shown" / name).read_bytes()
        assert data == (tmp_path / "quiet" / name).read_bytes() == (
            tmp_path / "auto" / name).read_bytes(), name


def test_export_progress_by_default_shows_on_a_terminal_only_for_long_exports(
        sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import populace.storage.export as export

    run = open_run(sqlite_url, _run_with_rows(sqlite_url))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    export_run(run, "csv", tmp_path / "short")  # done long before AUTO_DELAY_S
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(export, "AUTO_DELAY_S", 0.0)  # as if it had run that long
    export_run(run, "csv", tmp_path / "long", chunk_rows=16)
    assert f"export run {run.id}: 100%" in capsys.readouterr().err


def test_an_empty_or_foreign_database_is_named_as_such(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    foreign = tmp_path / "foreign.sqlite"
    with contextlib.closing(sqlite3.connect(foreign)) as con:
        con.execute("CREATE TABLE t (x)")
    for path in (empty, foreign):
        with pytest.raises(StorageError, match="is not a Populace run database"):
            open_run(path)
