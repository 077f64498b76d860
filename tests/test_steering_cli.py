"""Steering a running run from the command line: ``populace intervene``, ``interview``,
``pause``, ``resume-live`` and ``stop`` as real subprocesses against runs written by another
process, and ``populace run --replay-events``."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.cli import main
from populace.storage import open_run

from .conftest import experiment
from .helpers import content_tables

POPULACE = [sys.executable, "-m", "populace.simulator.cli"]
ATTRIBUTES = {
    "age": {"dist": "uniform", "low": 18, "high": 90},
    "opinion": {"dist": "uniform", "low": -1, "high": 1},
    "interest": {"dist": "categorical",
                 "values": ["politics", "economy", "health", "technology", "sports"]},
}
OLDER = {"kind": "set", "name": "older", "agents": {"where": {"age": {">=": 60}}},
         "variable": "opinion", "value": 0.9}


def populace(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its end and capture its output."""
    return subprocess.run([*POPULACE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start the CLI in the background."""
    return subprocess.Popen([*POPULACE, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


class Armed:
    """A ``populace`` command in a subprocess that has started and imported everything, and
    runs when fired: a command that must reach a run at a given moment pays Python's start-up
    (seconds) beforehand. It runs ``populace.simulator.cli.main``, the console script's entry
    point, with the command's arguments."""

    CODE = ("import sys\nimport populace.storage.control\nfrom populace.simulator.cli import "
            "main\nprint('armed', flush=True)\nsys.stdin.readline()\nsys.exit(main(sys.argv[1:]))")

    def __init__(self, *args: str, cwd: Path) -> None:
        self.args = list(args)
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, *args], cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def ready(self) -> None:
        """Wait until it has started."""
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "armed\n", self.proc.communicate()

    def fire(self) -> subprocess.CompletedProcess[str]:
        """Run the command now; its exit code and output."""
        out, err = self.proc.communicate("\n", timeout=300)
        return subprocess.CompletedProcess(self.args, self.proc.returncode, out, err)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the SQLite file ``db`` (read-only: the run's process writes it)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError:  # the run's process has not created the file yet
        return []
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # nor its tables
        return []
    finally:
        conn.close()


def wait_until(condition: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def steps_done(db: Path) -> int:
    rows = query(db, "SELECT steps_done FROM runs WHERE id = 1")
    return int(rows[0][0]) if rows else -1


def commands_sent(db: Path) -> int:
    return len(query(db, "SELECT id FROM control_commands"))


def live_run(tmp_path: Path, **changes: Any) -> tuple[Simulation, Path]:
    """A run written by this process, one step done: the CLI subprocesses steer it, and the
    test decides when its next step happens."""
    db = tmp_path / "live.sqlite"
    data = experiment(population={"size": 300, "attributes": ATTRIBUTES},
                      recording={"agent_state_every": 1}, **changes)
    sim = Simulation(experiment_from_dict(data), db_url=f"sqlite:///{db}")
    sim.start()
    sim.advance()
    return sim, db


def test_intervene_applies_at_the_next_step_and_a_refused_event_exits_1(tmp_path: Path) -> None:
    sim, db = live_run(tmp_path)
    events = tmp_path / "events.yaml"
    # the second is valid as an event, but the run has 300 agents: only the run can refuse it
    events.write_text(yaml.safe_dump([OLDER, {"kind": "action", "agents": 999,
                                              "action": "like", "args": {"post_id": 0}}]))
    proc = start("intervene", str(db), "--file", str(events), "--wait", "60", cwd=tmp_path)
    try:
        wait_until(lambda: commands_sent(db) == 2, "the two commands")
        sim.advance()  # step 2: the boundary before it applies the events
    finally:
        out, err = proc.communicate(timeout=120)
        sim.close()
    assert proc.returncode == 1, err
    assert "command 1 queued: set event 'older' for run 1" in out
    assert "command 1 applied at step 2: set event 'older'" in out
    assert re.search(r"command 2 refused: agents\.ids\S*: no agent 999", out), out
    run = open_run(db, 1)
    log = run.events()
    assert log[["step", "name", "source", "command_id"]].values.tolist() == [
        [2, "older", "control", 1]]
    result = json.loads(log["result"].iloc[0])
    older = run.agents().index[run.agents()["age"] >= 60]
    assert result["agents"] == result["changed"] == len(older) > 0
    assert result["mean_after"] == pytest.approx(0.9)
    # the change is in the agents' state: step 1 before, step 2 after (then a step's dynamics)
    states = run.agent_states("opinion")
    assert abs(states.loc[1, older].mean()) < 0.3
    assert states.loc[2, older].mean() > 0.7
    commands = run.commands().set_index("id")
    assert commands.loc[1, "status"] == "applied" and commands.loc[1, "applied_step"] == 2
    assert commands.loc[2, "status"] == "refused"


@pytest.mark.slow  # subprocesses: kept out of the fast lane
def test_interview_asks_at_the_next_step_and_prints_the_answers(tmp_path: Path) -> None:
    sim, db = live_run(tmp_path)
    proc = start("interview", str(db), "--question", "Where do you stand?", "--scale", "1", "7",
                 "--where", "age>=60", "--where", "interest=politics,health", "--sample", "4",
                 "--wait", "60", cwd=tmp_path)
    try:
        wait_until(lambda: commands_sent(db) == 1, "the interview command")
        sim.advance()
    finally:
        out, err = proc.communicate(timeout=120)
        sim.close()
    assert proc.returncode == 0, err
    name = open_run(db, 1).events()["name"].iloc[0]
    assert f"command 1 applied at step 2: interview event '{name}': agents=4" in out, out
    answers = open_run(db, 1).interviews()
    assert (answers["event"] == name).all()
    assert len(answers) == 4 and (answers["step"] == 2).all()
    agents = open_run(db, 1).agents().loc[answers["agent_id"]]
    assert (agents["age"] >= 60).all() and agents["interest"].isin(["politics", "health"]).all()
    for agent, value in zip(answers["agent_id"], answers["value"], strict=True):
        assert re.search(rf"^\s*{agent}\s+q0\s+report\s+{value}\s", out, re.M), out
    assert f"q0: 4 answers, 4 valid, mean {answers['value'].mean():.3g}" in out
    spec = json.loads(open_run(db, 1).commands()["spec"].iloc[0])["event"]
    assert spec["agents"] == {"where": {"age": {">=": 60}, "interest": ["politics", "health"]},
                              "sample": 4}


def test_a_malformed_event_file_exits_2_naming_the_field_before_any_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "never.sqlite"
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: set\nagents: {where: {age: {'>=': 60}}, sampel: 3}\n"
                   "variable: opinion\nvalue: 0.9\n")
    proc = populace("intervene", str(db), "--file", str(bad), cwd=tmp_path)
    assert proc.returncode == 2
    assert "bad.yaml:2:36: agents.sampel: Extra inputs are not permitted; did you mean " \
           "'sample'?" in proc.stderr, proc.stderr
    listed = tmp_path / "listed.yaml"
    listed.write_text(yaml.safe_dump({"events": [OLDER, {"kind": "set", "variable": "opinion"}]}))
    # the same checks in this process (a subprocess each would only add start-up time)
    assert main(["intervene", str(db), "--file", str(listed)]) == 2
    assert "events[1]: give exactly one of `value`, `shift` and `scale`" in capsys.readouterr().err
    bare = tmp_path / "bare.yaml"  # a bare list: its problems at their lines all the same
    bare.write_text("---\n- kind: set\n  variable: opinion\n  value: 1\n- kind: broadcst\n"
                    "  text: hi\n")
    assert main(["intervene", str(db), "--file", str(bare)]) == 2
    assert "bare.yaml:5:9: [1].kind: " in capsys.readouterr().err
    assert main(["interview", str(db), "--question", "?", "--scale", "5", "2"]) == 2
    assert "--question/--scale: a scale needs high > low (got 5..2)" in capsys.readouterr().err
    assert main(["interview", str(db), "--question", "?", "--where", "age"]) == 2
    assert "--where 'age': write ATTRIBUTE=VALUE" in capsys.readouterr().err
    assert not db.exists(), "nothing is sent, and no database opened, for a malformed command"


@pytest.mark.slow  # subprocesses: kept out of the fast lane
def test_commands_to_a_run_that_is_not_running_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "done.sqlite"
    data = experiment(steps=2, population={"size": 50, "attributes": ATTRIBUTES})
    Simulation(experiment_from_dict(data), db_url=f"sqlite:///{db}").run()
    assert main(["stop", str(db)]) == 2
    assert "run 1 (small) is completed, not running: commands reach a running run only" \
        in capsys.readouterr().err
    # a process that died while writing its run leaves it "running": nobody would take the
    # command, so it is refused too, with the way to continue the run
    dead = tmp_path / "dead.sqlite"
    script = ("import os, sys; from populace.simulator import Simulation, experiment_from_dict;"
              f"sim = Simulation(experiment_from_dict({data!r}), db_url='sqlite:///{dead}');"
              "sim.start(); sim.advance(); os._exit(0)")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    proc = populace("pause", str(dead), cwd=tmp_path)
    assert proc.returncode == 2
    assert "has status running but no process is writing it" in proc.stderr
    assert f"populace resume 1 --db sqlite:///{dead}" in proc.stderr
    assert commands_sent(db) == commands_sent(dead) == 0


@pytest.mark.slow
def test_a_running_populace_run_is_paused_steered_stopped_resumed_and_replayed(
        tmp_path: Path) -> None:
    data = experiment(name="long", steps=150, checkpoint_every=10, recording={},
                      population={"size": 1000, "attributes": ATTRIBUTES},
                      activation={"probability": 1.0})
    exp = tmp_path / "long.yaml"
    exp.write_text(yaml.safe_dump(data))
    change = tmp_path / "older.yaml"
    change.write_text(yaml.safe_dump(OLDER))
    db = tmp_path / "long.sqlite"
    # the pause and the stop must reach the run before it ends: started beforehand
    pause = Armed("pause", str(db), "--wait", "120", cwd=tmp_path)
    stop = Armed("stop", str(db), "--wait", "120", cwd=tmp_path)
    run = None
    try:
        pause.ready()
        stop.ready()
        run = start("run", str(exp), "--db", str(db), "--quiet", cwd=tmp_path)
        wait_until(lambda: steps_done(db) >= 1, "the run's first step")
        paused = pause.fire()
        assert paused.returncode == 0, paused.stderr
        step = int(re.search(r"paused after step (\d+)", paused.stdout).group(1))
        assert step < 150, "the run ended before it could be paused: make it longer"
        wait_until(lambda: steps_done(db) == step, "the paused step's commit")
        time.sleep(1.0)
        assert steps_done(db) == step, "a paused run computes no step"

        sent = populace("intervene", str(db), "--file", str(change), cwd=tmp_path)
        assert sent.returncode == 0 and "command 2 queued: set event 'older'" in sent.stdout
        time.sleep(0.5)
        assert steps_done(db) == step and query(
            db, "SELECT status FROM control_commands WHERE id = 2") == [("queued",)]
        resumed = populace("resume-live", str(db), "--wait", "120", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        wait_until(lambda: steps_done(db) > step + 1, "steps after resume-live")
        stopped = stop.fire()
        assert stopped.returncode == 0, stopped.stderr
        last = int(re.search(r"the run stops after step (\d+)", stopped.stdout).group(1))
    except BaseException:
        if run is not None:  # a paused run would wait for ever
            run.kill()
        raise
    finally:
        pause.close()
        stop.close()
        if run is not None:
            out, err = run.communicate(timeout=300)
    assert run.returncode == 3, err
    assert re.search(rf"run 1 stopped by a control command after step {last} \(of 150\); "
                     r"continue it: populace resume 1 --db sqlite:///", err), err
    info = open_run(db, 1).info
    assert info["status"] == "stopped" and info["steps_done"] == last < 150
    # sent while the run waited after `step`: applied at the next step, with its effect
    assert query(db, "SELECT status, applied_step FROM control_commands WHERE id = 2") == [
        ("applied", step + 1)]
    log = open_run(db, 1).events()
    assert log[["step", "name", "source", "command_id"]].values.tolist() == [
        [step + 1, "older", "control", 2]]
    assert json.loads(log["result"].iloc[0])["mean_after"] == pytest.approx(0.9)

    again = populace("resume", str(db), "--quiet", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    done = open_run(db, 1)
    assert done.info["status"] == "completed" and done.info["steps_done"] == 150

    # the same experiment with the recorded run's live events replayed: the same run
    copy = tmp_path / "replay.sqlite"
    replay = populace("run", str(exp), "--db", str(copy), "--quiet", "--replay-events", str(db),
                      "--replay-run", "1", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert "replaying 1 live event of run 1 (long)" in replay.stderr
    assert "warning" not in replay.stderr
    a, b = content_tables(done), content_tables(open_run(copy, 1))
    assert set(a) - set(b) == {"control_commands"} and set(b) <= set(a)
    for name in b:
        # replayed events keep their source (control); only the command that sent them is gone
        drop = ["command_id"] if name == "events" else []
        pd.testing.assert_frame_equal(a[name].drop(columns=drop), b[name].drop(columns=drop),
                                      check_exact=True, obj=name)
