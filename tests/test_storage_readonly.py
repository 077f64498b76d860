"""Reading runs from read-only storage, and writers leaving their files out of WAL mode.

The tests run as root, which ignores file permissions: the reader therefore runs in a
subprocess as ``nobody`` (``setpriv``), on a folder and file made read-only with chmod. Without
root, the same chmod already makes the storage read-only to the reader.
"""

from __future__ import annotations

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

from populace.storage import Database
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
    """A folder another user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="populace-ro-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for p in (folder, *folder.rglob("*")):
        p.chmod(0o777 if p.is_dir() else 0o666)
    shutil.rmtree(folder)


def _read_as_reader(db_file: Path, out: Path) -> dict:
    """Run the reader on the read-only ``db_file`` as an unprivileged user."""
    db_file.chmod(0o444)
    db_file.parent.chmod(0o555)
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    cmd = [sys.executable, "-c", READER, f"sqlite:///{db_file}", str(out)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot read as another user")
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
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
def test_a_run_on_read_only_storage_can_be_read_and_is_not_changed(
        shared_dir: Path, finish: bool) -> None:
    db_file = shared_dir / "db" / "run.sqlite"
    db_file.parent.mkdir()
    _write_run(db_file, finish=finish)
    # a finished writer leaves one self-contained file; one that did not, a WAL-mode file
    assert _journal_mode(db_file) == ("delete" if finish else "wal")
    before = _digest(db_file)
    got = _read_as_reader(db_file, shared_dir / "out")
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert _digest(db_file) == before
    assert sorted(p.name for p in db_file.parent.iterdir()) == ["run.sqlite"]


def test_the_cli_lists_and_exports_a_read_only_run(shared_dir: Path) -> None:
    db_file = shared_dir / "db" / "run.sqlite"
    db_file.parent.mkdir()
    _write_run(db_file, finish=False)
    db_file.chmod(0o444)
    db_file.parent.chmod(0o555)
    out = shared_dir / "out"
    out.mkdir()
    out.chmod(0o777)
    populace = str(Path(sys.executable).parent / "populace")
    prefix = (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
              if os.geteuid() == 0 and shutil.which("setpriv") else [])
    for args in (["runs", "--db", str(db_file)],
                 ["export", str(db_file), "--format", "csv", "--out", str(out / "csv")]):
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
