"""Reading runs from read-only storage, and writers leaving their files out of WAL mode.

Read-only storage is real: the folder is bind-mounted read-only (``mount -o remount,ro,bind``),
which refuses every write with EROFS, root's included. Where mounting is not allowed, the
folder and file are made read-only with chmod and the reader runs as ``nobody`` (root ignores
permissions); where neither works the tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from populace.storage import Database, StorageError
from populace.storage.runs import create_run, update_run

from .conftest import experiment
from .helpers import run_experiment

NOBODY = 65534
READER = r"""
import json, sys
from pathlib import Path
from populace.storage import Database, export_run, list_runs, open_run

url, out = sys.argv[1], Path(sys.argv[2])
run = open_run(url, "ro")
files = export_run(run, "parquet", out / "export")
print(json.dumps({
    "tables": run.tables(), "steps": len(run.steps()), "agents": len(run.agents()),
    "opinion": run.agent_states("opinion").shape[0], "metrics": len(run.metrics()),
    "runs": list_runs(Database(url, create=False, read_only=True))["name"].tolist(),
    "files": sorted(Path(f).name for f in files),
}))
"""


def _write_run(path: Path, finish: bool) -> None:
    db = Database(f"sqlite:///{path}")
    run_id = create_run(db, name="ro", scenario="test", seed=1, n_agents=3, steps_planned=2,
                        config={"name": "ro"}, config_yaml=None, config_path=None,
                        package_version="0")
    with db.transaction() as conn:
        db.insert_columns(conn, "agents", run_id, {
            "agent_id": [0, 1, 2], "attributes": [json.dumps({"age": 20 + i}) for i in range(3)]})
        for step in (0, 1, 2):
            db.insert_columns(conn, "steps", run_id, {
                "step": [step], "sim_time": [datetime(2025, 1, 1, step)], "n_active": [3],
                "n_actions": [1], "compute_s": [0.0], "record_s": [0.0]})
            db.insert_columns(conn, "step_metrics", run_id, {
                "step": [step], "name": ["m"], "value": [float(step)]})
            db.insert_columns(conn, "agent_states", run_id, {
                "step": [step] * 3, "agent_id": [0, 1, 2], "variable": ["opinion"] * 3,
                "value": [0.1, 0.2, 0.3]})
        update_run(db, run_id, conn=conn, status="completed", steps_done=2)
    if finish:
        db.finish()
    else:
        db.dispose()


def _journal_mode(path: Path) -> str:
    # from the file header (bytes 18-19: 1 rollback journal, 2 WAL): opening the file to ask
    # would create the -shm and -wal files this test checks are not made
    versions = path.read_bytes()[18:20]
    return {b"\x01\x01": "delete", b"\x02\x02": "wal"}[versions]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A scratch folder another user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="populace-ro-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for p in (folder, *folder.rglob("*")):
        with contextlib.suppress(OSError):
            p.chmod(0o777 if p.is_dir() else 0o666)
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[tuple[Path, list[str]]]:
    """``folder`` as read-only storage: ``(path to read it at, command prefix for readers)``."""
    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(folder), str(view)],
                             capture_output=True).returncode == 0
    if mounted and subprocess.run(["mount", "-o", "remount,ro,bind", str(view)],
                                  capture_output=True).returncode == 0:
        try:
            yield view, []
        finally:
            subprocess.run(["umount", str(view)], check=True)
        return
    if mounted:
        subprocess.run(["umount", str(view)], check=True)
    for p in folder.rglob("*"):
        p.chmod(0o555 if p.is_dir() else 0o444)
    folder.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores permissions: read as nobody, if nobody can run us
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        if shutil.which("setpriv") is None or subprocess.run(
                [*prefix, sys.executable, "-c", "import populace.storage"],
                capture_output=True, cwd="/").returncode != 0:
            pytest.skip("no read-only mount allowed here, and user nobody cannot run this "
                        "interpreter: cannot make read-only storage for root")
    yield folder, prefix


def _read_as_reader(db_file: Path, out: Path, prefix: list[str]) -> dict:
    """Run the reader on the read-only ``db_file`` (as ``prefix`` says) in a subprocess."""
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    cmd = [*prefix, sys.executable, "-c", READER, f"sqlite:///{db_file}", str(out)]
    env = {**os.environ, "HOME": str(out)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=out, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


EXPECTED = {"steps": 3, "agents": 3, "opinion": 3, "metrics": 3, "runs": ["ro"],
            "files": ["agent_states.parquet", "agents.parquet", "runs.parquet",
                      "step_metrics.parquet", "steps.parquet"]}


@pytest.mark.parametrize("finish", [True, False], ids=["finished", "left-in-wal"])
@pytest.mark.slow
def test_a_run_on_read_only_storage_can_be_read_and_is_not_changed(
        shared_dir: Path, finish: bool) -> None:
    store = shared_dir / "db"
    store.mkdir()
    _write_run(store / "run.sqlite", finish=finish)
    # a finished writer leaves one self-contained file; one that did not, a WAL-mode file
    assert _journal_mode(store / "run.sqlite") == ("delete" if finish else "wal")
    before = _digest(store / "run.sqlite")
    with read_only(store) as (view, prefix):
        got = _read_as_reader(view / "run.sqlite", shared_dir / "out", prefix)
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert _digest(store / "run.sqlite") == before
    assert sorted(p.name for p in store.iterdir()) == ["run.sqlite"]


@pytest.mark.slow
def test_a_wal_file_that_read_only_storage_cannot_apply_is_an_error_not_missing_rows(
        shared_dir: Path) -> None:
    """Committed rows in a -wal file need its -shm to be read; on read-only storage that
    cannot be made, so reading refuses rather than silently reading the rows before them."""
    store = shared_dir / "db"
    store.mkdir()
    path = store / "run.sqlite"
    _write_run(path, finish=False)
    writer = sqlite3.connect(path)  # commits into the -wal file and keeps it (no checkpoint)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE runs SET steps_done = 7")
    writer.commit()
    copy = shared_dir / "copy"
    copy.mkdir()
    for name in ("run.sqlite", "run.sqlite-wal"):  # a crashed writer's files, without -shm
        shutil.copy(store / name, copy / name)
    writer.close()
    with read_only(copy) as (view, prefix):
        done = subprocess.run(
            [*prefix, sys.executable, "-c", "import sys; from populace.storage import open_run;"
             "print(open_run(sys.argv[1]).info['steps_done'])", f"sqlite:///{view / 'run.sqlite'}"],
            capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode != 0 and "-wal" in done.stderr, done.stdout + done.stderr


@pytest.mark.slow
def test_the_cli_lists_and_exports_a_read_only_run(shared_dir: Path) -> None:
    store = shared_dir / "db"
    store.mkdir()
    _write_run(store / "run.sqlite", finish=False)
    out = shared_dir / "out"
    out.mkdir()
    out.chmod(0o777)
    populace = str(Path(sys.executable).parent / "populace")
    with read_only(store) as (view, prefix):
        for args in (["runs", "--db", str(view / "run.sqlite")],
                     ["export", str(view / "run.sqlite"), "--format", "csv", "--out",
                      str(out / "csv")]):
            done = subprocess.run([*prefix, populace, *args], capture_output=True, text=True,
                                  timeout=120, cwd=out, env={**os.environ, "HOME": str(out)})
            assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "csv" / "agents.csv").read_text().splitlines() == [
        "agent_id,age", "0,20", "1,21", "2,22"]


def test_finish_leaves_a_file_in_use_alone(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    writer = Database(f"sqlite:///{path}")
    reader = sqlite3.connect(path)  # e.g. a notebook reading the run
    reader.execute("SELECT count(*) FROM runs").fetchone()
    writer.finish()  # no error, no wait
    assert _journal_mode(path) == "wal"
    reader.close()
    writer.finish()
    assert _journal_mode(path) == "delete"
    assert not (tmp_path / "run.sqlite-wal").exists()
    assert writer.table_names()  # reading on through the finished writer keeps it so
    writer.dispose()
    assert _journal_mode(path) == "delete"


def test_a_reader_does_not_switch_the_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    _write_run(path, finish=True)
    reader = Database(f"sqlite:///{path}", create=False, read_only=True)
    assert reader.table_names()
    reader.dispose()
    assert _journal_mode(path) == "delete"
    with pytest.raises(ValueError, match="read-only"):
        Database(f"sqlite:///{path}", read_only=True)


def test_a_completed_run_leaves_its_file_out_of_wal_mode(tmp_path: Path) -> None:
    """The engine calls Database.finish: a finished run is one self-contained file."""
    path = tmp_path / "done.sqlite"
    run = run_experiment(experiment(steps=2), f"sqlite:///{path}")
    assert run.info["status"] == "completed"
    run.db.dispose()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not path.with_name("done.sqlite-wal").exists()


def test_a_postgresql_reader_keeps_the_url_s_options_and_cannot_write(pg_url: str) -> None:
    writer = Database(pg_url)
    writer.dispose()
    reader = Database(pg_url, create=False, read_only=True)
    with pytest.raises(Exception, match="read-only transaction"), reader.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM runs")
    reader.dispose()
    # options given in the URL still apply next to the read-only one: here a search path
    # without the tables, so the database holds no runs for this reader
    with pytest.raises(StorageError, match="is not a Populace run database"):
        Database(pg_url + "?options=-csearch_path%3Dnowhere", create=False, read_only=True)
