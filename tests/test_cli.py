"""The ``populace`` command as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import experiment
from .helpers import assert_same_run, reopen, run_experiment

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "social" / "examples" / "quickstart.yaml"
POPULACE = [sys.executable, "-m", "populace.simulator.cli"]


def populace(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``cwd`` and capture its output."""
    proc = subprocess.run([*POPULACE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"populace {args} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def test_validate_quickstart_ok(tmp_path: Path) -> None:
    proc = populace("validate", str(QUICKSTART), cwd=tmp_path, check=True)
    assert "OK" in proc.stdout and "1000 agents" in proc.stdout
    assert not list(tmp_path.iterdir()), "validate must write nothing"


@pytest.mark.slow
def test_validate_reports_every_problem_with_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: demo\n"
        "seed: 1\n"
        "stpes: 10\n"                                   # misspelt key (line 3)
        "scenario:\n"
        "  type: social\n"
        "  feed: {algorithm: folowees}\n"                # unknown feed (line 6)
        "population:\n"
        "  size: 100\n"
        "  attributes:\n"
        "    age: {dist: normal, mean: 30, sd: -2}\n"    # sd must be > 0 (line 10)
        "policy:\n"
        "  params: {post_rate: 2}\n"                     # rate above 1 (line 12)
    )
    proc = populace("validate", str(bad), cwd=tmp_path)
    assert proc.returncode == 2
    err = proc.stderr
    assert "Traceback" not in err
    assert "problems found" in err
    assert "bad.yaml:3:1: stpes: Extra inputs are not permitted; did you mean 'steps'?" in err
    assert "bad.yaml:1:1: steps: Field required" in err
    assert "bad.yaml:6:" in err and "did you mean 'followees'" in err
    assert "bad.yaml:10:" in err and "population.attributes.age.sd" in err
    assert "bad.yaml:12:" in err and "policy.params.post_rate" in err
    # run refuses the same file the same way and writes no database
    run = populace("run", str(bad), cwd=tmp_path)
    assert run.returncode == 2 and "did you mean 'steps'" in run.stderr
    assert not (tmp_path / "populace_runs").exists()


@pytest.mark.slow
def test_broken_yaml_and_unknown_scenario(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsteps: [1, 2\n")
    proc = populace("validate", str(broken), cwd=tmp_path)
    assert proc.returncode == 2 and "invalid YAML" in proc.stderr and "broken.yaml:" in proc.stderr
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: x\nsteps: 3\nscenario: {type: socail}\npopulation: {size: 5}\n")
    proc = populace("validate", str(unknown), cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown.yaml:3:" in proc.stderr and "did you mean 'social'" in proc.stderr


@pytest.mark.slow
def test_run_runs_export_quickstart(tmp_path: Path) -> None:
    proc = populace("run", str(QUICKSTART), "--steps", "6", "--quiet", cwd=tmp_path, check=True)
    assert "completed: 6 steps" in proc.stdout
    db = tmp_path / "populace_runs" / "quickstart.sqlite"
    assert db.is_file()
    listing = populace("runs", cwd=tmp_path, check=True).stdout
    assert "quickstart" in listing and "completed" in listing and "6/6" in listing
    out = tmp_path / "export"
    populace("export", "quickstart", "--format", "parquet", "--out", str(out), cwd=tmp_path,
             check=True)
    posts = pd.read_parquet(out / "posts.parquet")
    con = sqlite3.connect(db)
    assert len(posts) == con.execute("select count(*) from posts").fetchone()[0] > 0
    populace("export", str(db), "--format", "csv", "--out", str(tmp_path / "csv"), cwd=tmp_path,
             check=True)
    metrics = pd.read_csv(tmp_path / "csv" / "step_metrics.csv")
    assert set(metrics["step"]) == set(range(7))
    assert {"runs.csv", "agents.csv", "follows.csv", "likes.csv"} <= {
        p.name for p in (tmp_path / "csv").iterdir()}


@pytest.mark.slow
def test_resume_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    proc = populace("resume", "nothing-here", cwd=tmp_path)
    assert proc.returncode == 1
    assert "cannot find run 'nothing-here'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    data = experiment(steps=2)
    data["storage"] = {"url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    exp.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = populace("run", str(exp), cwd=tmp_path)
    assert proc.returncode == 1
    assert "cannot connect to the database" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_database(tmp_path: Path) -> None:
    data = experiment(name="killme", steps=40, checkpoint_every=5,
                      population={**experiment()["population"], "size": 20000},
                      activation={"probability": 0.2})
    exp = tmp_path / "killme.yaml"
    exp.write_text(yaml.safe_dump(data, sort_keys=False))
    db = tmp_path / "populace_runs" / "killme.sqlite"
    proc = subprocess.Popen([*POPULACE, "run", str(exp), "--quiet"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=1)
                done = con.execute("select coalesce(max(step), 0) from steps").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                done = 0
            if done >= 7:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = reopen(f"sqlite:///{db}", 1)
    assert killed.info["status"] == "running" and 7 <= killed.info["steps_done"] < 40
    resumed = populace("resume", "killme", "--quiet", cwd=tmp_path, check=True)
    assert "completed: 40 steps" in resumed.stdout
    reference = run_experiment(data, f"sqlite:///{tmp_path / 'reference.sqlite'}")
    assert_same_run(reference, reopen(f"sqlite:///{db}", 1))


@pytest.mark.slow
def test_bad_population_file_is_explained_and_writes_nothing(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("name,age\nann,31\nbob,not-a-number\n")
    data = experiment(steps=2)
    data["population"] = {"file": {"path": "users.csv"},
                          "attributes": {"age": {"dist": "integer", "low": 18, "high": 99}}}
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = populace("run", str(exp), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "users.csv" in proc.stderr and "age" in proc.stderr and "row 2" in proc.stderr
    assert not (tmp_path / "populace_runs").exists()
    data["population"] = {"file": {"path": "missing.csv"}}
    exp.write_text(yaml.safe_dump(data, sort_keys=False))
    for command in ("validate", "run"):  # a missing file is found without running
        proc = populace(command, str(exp), cwd=tmp_path)
        assert proc.returncode == 2 and "missing.csv" in proc.stderr, proc.stderr
        assert "population.file.path: no such file" in proc.stderr


@pytest.mark.slow
def test_version_and_usage_errors_exit_2(tmp_path: Path) -> None:
    from importlib.metadata import version

    from populace.simulator import engine
    from populace.simulator.version import package_version

    proc = populace("--version", cwd=tmp_path, check=True)
    assert proc.stdout.strip() == f"populace {version('populace')}" == f"populace {package_version()}"
    assert engine.package_version is package_version  # one definition, the CLI's and the runs'
    proc = populace("run", str(QUICKSTART), "--shards", "3", cwd=tmp_path)
    assert proc.returncode == 2 and "--shards needs the Ray runtime" in proc.stderr
    for shards, bound in (("0", "greater than or equal to 1"), ("2000", "less than or equal to 1024")):
        proc = populace("run", str(QUICKSTART), "--shards", shards, "--runtime", "ray",
                        cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert f"runtime.shards: Input should be {bound}" in proc.stderr, proc.stderr
    assert not (tmp_path / "populace_runs").exists()


@pytest.mark.slow
def test_resume_with_out_of_range_shards_exits_2(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment(steps=1), sort_keys=False))
    populace("run", str(exp), "--quiet", "--db", "run.sqlite", cwd=tmp_path, check=True)
    for extra in ((), ("--runtime", "ray")):  # the bound is RuntimeConfig's, whatever the runtime
        proc = populace("resume", "run.sqlite", "--shards", "0", *extra, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert ("command line: runtime.shards: Input should be greater than or equal to 1"
                in proc.stderr)
    proc = populace("resume", "run.sqlite", "--shards", "3", cwd=tmp_path)
    assert proc.returncode == 2 and "--shards needs the Ray runtime" in proc.stderr


@pytest.mark.slow
def test_a_database_without_runs_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for args in (("runs", "--db", str(empty)), ("export", str(empty), "--out", "x"),
                 ("resume", "x", "--db", str(empty))):
        proc = populace(*args, cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "is not a Populace run database" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_clipped_opinions_are_warned(tmp_path: Path) -> None:
    data = experiment(steps=1)
    data["population"] = {"size": 200, "attributes": {
        "opinion": {"dist": "normal", "mean": 0, "sd": 2}}}
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = populace("run", str(exp), "--quiet", cwd=tmp_path, check=True)
    warning = [line for line in proc.stderr.splitlines() if "clipped" in line]
    assert warning and "of 200 agents have a 'opinion' outside [-1, 1]" in warning[0], proc.stderr
