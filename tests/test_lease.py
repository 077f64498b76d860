"""One writer per run: the run lease (second writers refused, dead holders taken over, a
writer that lost its lease fenced off), concurrent creation of a new database, and Ctrl-C
during set-up. Real processes, real databases. (A Ray driver that dies with its command:
tests/test_ray_runtime.py, which has a Ray to join.)"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from populace.simulator import Simulation, experiment_from_dict
from populace.storage import Database, StorageError
from populace.storage.leases import LeaseHeldError, LeaseLostError, RunLease, lease_holders
from populace.storage.runs import create_run

from .conftest import experiment
from .helpers import Crash, assert_same_run, crash_after, reopen, run_experiment

POPULACE = [sys.executable, "-m", "populace.simulator.cli"]


def _write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _max_step(db: Path) -> int:
    """The last committed step of the (only) run in a SQLite file, read-only (0 if none)."""
    with contextlib.suppress(sqlite3.Error), contextlib.closing(
            sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        return con.execute("SELECT coalesce(max(step), 0) FROM steps").fetchone()[0]
    return 0


def _wait_for_step(db: Path, step: int, proc: subprocess.Popen, limit: float = 120) -> int:
    deadline = time.monotonic() + limit
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = _max_step(db) if db.exists() else 0
        if done >= step:
            return done
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach step {step} (at {done}, rc {proc.poll()})")


def _a_run(db: Database, name: str = "leased") -> int:
    return create_run(db, name=name, scenario="test", seed=1, n_agents=3, steps_planned=5,
                      config={}, package_version="0")


# -- the lease itself (in one process, SQLite and PostgreSQL) ------------------------------------


def test_a_fresh_lease_is_refused_with_its_holder_named_and_a_stale_one_taken_over(
        any_url: str) -> None:
    db = Database(any_url)
    run_id = _a_run(db)
    far = RunLease(db, timeout=600)  # a writer on another machine, with a fresh heartbeat
    far.host, far.pid, far.owner = "far-away-host", 4242, "far-away-host:4242:x"
    with db.transaction() as conn:
        far.insert(conn, run_id)
    far.stop()
    mine = RunLease(db, timeout=30)
    with pytest.raises(LeaseHeldError) as info:
        mine.acquire(run_id, "leased")
    said = str(info.value)
    assert f"run {run_id} (leased) is being written by pid 4242 on host far-away-host" in said
    assert "populace resume" in said and "600 s" in said  # the holder's timeout, not ours
    # silent for 100 s: stale by our 30 s, alive by its own 600 s (it beats every 100 s)
    ago = ("strftime('%Y-%m-%d %H:%M:%f', 'now', '-100 seconds')" if db.dialect == "sqlite"
           else "timezone('UTC', clock_timestamp()) - interval '100 seconds'")
    with db.transaction() as conn:
        conn.execute(sa.text(f"UPDATE run_leases SET heartbeat_at = {ago}"))
    with pytest.raises(LeaseHeldError):
        mine.acquire(run_id, "leased")
    assert isinstance(info.value, StorageError)
    assert lease_holders(db)[run_id].owner == far.owner
    # the same writer, silent for longer than the timeout: taken over
    with db.transaction() as conn:
        conn.execute(sa.text("UPDATE run_leases SET heartbeat_at = '2000-01-01 00:00:00'"))
    mine.acquire(run_id, "leased")
    holders = lease_holders(db)
    assert holders[run_id].owner == mine.owner and holders[run_id].age_s < 5
    mine.stop()
    db.dispose()


@pytest.mark.slow
def test_a_killed_holder_on_this_host_is_taken_over_at_once(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    run_id = _a_run(db)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from populace.storage import Database\n"
        "from populace.storage.leases import RunLease\n"
        f"lease = RunLease(Database({sqlite_url!r}), timeout=3600)\n"
        f"lease.acquire({run_id}); lease.start_heartbeat()\n"
        "print('held', flush=True); time.sleep(600)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseHeldError, match=f"pid {holder.pid} on host"):
            RunLease(db, timeout=3600).acquire(run_id)
    finally:
        holder.kill()
        holder.wait()
    t0 = time.monotonic()
    lease = RunLease(db, timeout=3600)  # an hour's timeout: only the dead pid lets it in
    lease.acquire(run_id)
    assert time.monotonic() - t0 < 5
    assert lease_holders(db)[run_id].pid == os.getpid()
    lease.stop()


def test_a_writer_whose_lease_was_taken_over_cannot_commit_or_mark_the_run(
        any_url: str) -> None:
    url = any_url
    sim = Simulation(experiment_from_dict(experiment(steps=8)), db_url=url)
    sim.start()
    sim.advance()
    sim.flush()
    db = Database(url)
    with db.transaction() as conn:  # its heartbeat stops (as a hung process's would) ...
        sim.lease.stop()
        conn.execute(sa.text("UPDATE run_leases SET heartbeat_at = '2000-01-01 00:00:00'"))
    other = RunLease(db, timeout=1)
    other.acquire(sim.run_id)  # ... and another process takes the run over
    before = reopen(url, sim.run_id)
    with pytest.raises(LeaseLostError, match="another process has taken over"):
        sim.run()
    after = reopen(url, sim.run_id)
    assert after.steps()["step"].max() == 1  # step 2 was not committed
    assert after.info["status"] == "running" and after.info["error"] is None
    assert after.info["updated_at"] == before.info["updated_at"]  # the run row untouched
    assert lease_holders(db)[sim.run_id].owner == other.owner
    other.stop()


def test_resume_restarts_a_run_that_has_no_checkpoint(tmp_path: Path) -> None:
    """A run left by an older version's interrupted set-up (run row, no checkpoint): resume
    starts it again from step 0 under the same id."""
    data = experiment(steps=6)
    reference = run_experiment(data, f"sqlite:///{tmp_path / 'ref.sqlite'}")
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, 2, pytest.MonkeyPatch())
    with pytest.raises(Crash):
        sim.run()
    db = Database(url)
    with db.transaction() as conn:  # what an interrupted set-up left before this version
        for table in ("checkpoints", "steps", "step_metrics"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE step > 0"))
        conn.execute(sa.text("DELETE FROM checkpoints"))
        conn.execute(sa.text("UPDATE runs SET status = 'running', steps_done = 0"))
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 0 and resumed.run_id == sim.run_id
    run = resumed.run()
    assert run.info["status"] == "completed" and run.id == sim.run_id
    assert_same_run(reference, run)


def test_a_simulation_that_stopped_cannot_write_after_another_took_the_run(
        tmp_path: Path) -> None:
    """run() stopped (Ctrl-C in a notebook) releases the run; calling run() or advance() on the
    same object again must not write while another process holds it."""
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    sim = Simulation(experiment_from_dict(experiment(steps=8)), db_url=url)
    patch = pytest.MonkeyPatch()
    crash_after(sim, 2, patch)
    with pytest.raises(Crash):
        sim.run()
    patch.undo()
    other = RunLease(Database(url))
    other.acquire(sim.run_id)  # e.g. `populace resume` in another process
    for again in (sim.run, sim.advance):
        with pytest.raises(LeaseLostError, match="no longer holds run"):
            again()
        sim.flush()
    after = reopen(url, sim.run_id)
    assert after.steps()["step"].max() == 2 and after.info["status"] == "failed"
    other.stop()


def test_resume_never_restarts_a_run_that_had_steps(tmp_path: Path) -> None:
    """A run whose checkpoints are gone but whose steps are there is refused, not wiped."""
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    sim = Simulation(experiment_from_dict(experiment(steps=6)), db_url=url)
    crash_after(sim, 3, pytest.MonkeyPatch())
    with pytest.raises(Crash):
        sim.run()
    db = Database(url)
    with db.transaction() as conn:
        conn.execute(sa.text("DELETE FROM checkpoints"))
    with pytest.raises(StorageError, match="no checkpoint"):
        Simulation.resume(url, sim.run_id)
    assert reopen(url, sim.run_id).steps()["step"].max() == 3  # nothing deleted


# -- real processes ------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_of_a_run_being_written_is_refused_and_deletes_nothing(tmp_path: Path) -> None:
    data = experiment(name="busy", steps=1000, checkpoint_every=10,
                      population={**experiment()["population"], "size": 1000})
    path = _write(tmp_path, data)
    db = tmp_path / "busy.sqlite"
    writer = subprocess.Popen([*POPULACE, "run", str(path), "--db", str(db), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_step(db, 3, writer)
        t0 = time.monotonic()
        second = subprocess.run([*POPULACE, "resume", "busy", "--db", str(db), "--quiet"],
                                capture_output=True, text=True, timeout=120)
        took = time.monotonic() - t0
        during = _max_step(db)
        listing = subprocess.run([*POPULACE, "runs", "--db", str(db)], capture_output=True,
                                 text=True, timeout=120)
        assert f"pid {writer.pid} on host" in listing.stdout, listing.stdout + listing.stderr
    finally:
        out, err = writer.communicate(timeout=300)
    assert second.returncode == 1, second.stderr
    assert f"is being written by pid {writer.pid} on host" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert took < 30
    assert during >= 3
    assert writer.returncode == 0, err
    run = reopen(f"sqlite:///{db}", 1)
    assert run.info["status"] == "completed" and run.info["error"] is None
    assert run.steps()["step"].tolist() == list(range(1001))
    assert sorted(run.metrics().index) == list(range(1001))


@pytest.mark.slow
def test_two_concurrent_resumes_one_wins_and_the_run_is_whole(tmp_path: Path,
                                                               monkeypatch) -> None:
    data = experiment(name="twice", steps=40, checkpoint_every=5,
                      population={**experiment()["population"], "size": 3000})
    url = f"sqlite:///{tmp_path / 'twice.sqlite'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, 7, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    cmd = [*POPULACE, "resume", "twice", "--db", str(tmp_path / "twice.sqlite"), "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.pid, *p.communicate(timeout=300), p.returncode) for p in procs]
    codes = sorted(r[3] for r in results)
    assert codes == [0, 1], results
    pid, _out, err, _rc = next(r for r in results if r[3] == 1)
    assert "Traceback" not in err and "UNIQUE" not in err, err
    assert ("is being written by pid" in err or "is already completed" in err), err
    run = reopen(url, sim.run_id)
    assert run.info["status"] == "completed" and run.info["error"] is None
    assert_same_run(run_experiment(data, f"sqlite:///{tmp_path / 'ref.sqlite'}"), run)


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(2))
def test_three_runs_into_one_new_database_all_succeed(tmp_path: Path, attempt: int) -> None:
    path = _write(tmp_path, experiment(steps=2, population={
        **experiment()["population"], "size": 50}))
    db = tmp_path / "new.sqlite"
    procs = [subprocess.Popen([*POPULACE, "run", str(path), "--db", str(db), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT count(*) FROM runs WHERE status = 'completed'"
                           ).fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM populace_meta").fetchone()[0] == 1


@pytest.mark.slow
def test_concurrent_creation_of_a_postgresql_database(pg_url: str) -> None:
    code = ("import sys\nfrom populace.storage import Database\n"
            "import populace.scenarios.social\nDatabase(sys.argv[1])\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    db = Database(pg_url)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM populace_meta")).scalar() == 1
    db.dispose()


@pytest.mark.slow
def test_ctrl_c_during_set_up_leaves_no_run_or_a_resumable_one(tmp_path: Path) -> None:
    data = experiment(name="big", steps=3, population={
        **experiment()["population"], "size": 200_000}, activation={"probability": 0.01})
    path = _write(tmp_path, data)
    for delay in (0.0, 0.3):
        db = tmp_path / f"big{delay}.sqlite"
        proc = subprocess.Popen([*POPULACE, "run", str(path), "--db", str(db)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen = ""
        while "recording step 0" not in seen:  # the stage lines come on stderr
            char = proc.stderr.read(1)
            assert char, f"the set-up ended early: {seen}"
            seen += char
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        err = seen + err
        assert "Traceback" not in err, err
        if proc.returncode == 0:  # it finished before the signal landed
            continue
        assert proc.returncode == 130, err
        with contextlib.closing(sqlite3.connect(db)) as con:
            runs = con.execute("SELECT id, status FROM runs").fetchall()
        if not runs:
            assert "no run was recorded" in err, err
            continue
        resumed = subprocess.run([*POPULACE, "resume", "big", "--db", str(db), "--quiet"],
                                 capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert reopen(f"sqlite:///{db}", runs[0][0]).info["status"] == "completed"
