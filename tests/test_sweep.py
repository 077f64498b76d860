"""Sweeps and command-line overrides: ``--set`` on run and validate, ``populace sweep`` (grid
and sample x seeds, worker processes and Ray tasks into one database, restart skipping and
resuming), ``open_sweep``'s tidy table, and the scenarios' headline metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from populace.simulator import ConfigError, Simulation, load_experiment
from populace.simulator.cli import main
from populace.simulator.registry import available_scenarios, get_scenario, headline_metrics
from populace.simulator.sweep import SweepBusyError, load_sweep, parse_assignment, run_sweep
from populace.storage import Database, StorageError, list_sweeps, open_run, open_sweep

from .helpers import assert_same_run

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "social" / "examples" / "quickstart.yaml"
SMALL = {"steps": 4, "population.size": 120, "start_time": "2025-03-01T12:00:00"}


def write_sweep(tmp_path: Path, **spec: Any) -> Path:
    """A sweep file over the social quick start (small), into tmp_path/sweep.sqlite."""
    data = {"name": "conf", "experiment": str(QUICKSTART), "set": dict(SMALL),
            "grid": {"policy.params.confidence": [0.2, 0.6]}, "seeds": 2, "workers": 1,
            "storage": str(tmp_path / "sweep.sqlite"), **spec}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ --set


def test_set_values_are_read_as_yaml_scalars() -> None:
    assert parse_assignment("policy.params.backfire=0.2") == ("policy.params.backfire", 0.2)
    assert parse_assignment("a.b=true") == ("a.b", True)
    assert parse_assignment("steps = 5") == ("steps", 5)
    assert parse_assignment("x=[1, 2]") == ("x", [1, 2])
    assert parse_assignment("name=a=b") == ("name", "a=b")  # only the first = splits
    with pytest.raises(ValueError, match="KEY.PATH=VALUE"):
        parse_assignment("steps")


def test_validate_and_run_take_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(QUICKSTART), "--set", "population.size=77",
                 "--set", "steps=3"]) == 0
    assert "77 agents, 3 steps" in capsys.readouterr().out
    db = tmp_path / "run.sqlite"
    assert main(["run", str(QUICKSTART), "--quiet", "--db", str(db), "--set", "steps=2",
                 "--set", "population.size=50", "--set", "policy.params.confidence=0.7"]) == 0
    run = open_run(db)
    assert run.info["steps_done"] == 2 and run.info["n_agents"] == 50
    assert run.info["config"]["policy"]["params"]["confidence"] == 0.7
    # the social scenario's headline metrics, in its declared order
    out = capsys.readouterr().out
    assert "final metrics: polarization=" in out and ", bimodality=" in out


def test_a_bad_set_is_an_invalid_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(QUICKSTART), "--set", "policy.params.confidence=high"]) == 2
    err = capsys.readouterr().err
    assert "policy.params.confidence" in err and "high" in err
    assert main(["validate", str(QUICKSTART), "--set", "population.sizee=5"]) == 2
    assert "sizee" in capsys.readouterr().err
    assert main(["run", str(QUICKSTART), "--set", "steps"]) == 2
    assert "expected KEY.PATH=VALUE" in capsys.readouterr().err


# ---------------------------------------------------------------------------- sweep files


def test_a_grid_plans_every_combination_times_seeds(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, grid={"policy.params.confidence": [0.2, 0.6],
                                       "policy.params.convergence": [0.1, 0.3, 0.5]},
                       seeds=[7, 9])
    sweep = load_sweep(path)
    assert len(sweep.points) == 6 and sweep.seeds == [7, 9] and len(sweep.runs) == 12
    assert sweep.points[1] == {"policy.params.confidence": 0.2,
                               "policy.params.convergence": 0.3}
    assert sweep.runs[3].run_name == "conf.p1.s9"
    task = sweep.task(sweep.runs[3])
    assert task.overrides["seed"] == 9 and task.overrides["steps"] == 4
    # overrides of `set` and `grid` name dotted experiment keys whole
    changed = load_sweep(path, overrides={"set.population.size": 90, "seeds": 1,
                                          "grid.network.m": [2, 3]})
    assert changed.spec.set == {**SMALL, "population.size": 90}
    assert len(changed.points) == 12 and changed.points[0]["network.m"] == 2
    # a count of seeds starts at the experiment's own seed (quickstart: 42)
    assert load_sweep(write_sweep(tmp_path, seeds=3)).seeds == [42, 43, 44]


def test_a_sample_is_drawn_from_its_seed(tmp_path: Path) -> None:
    sample = {"n": 5, "seed": 3, "params": {
        "policy.params.confidence": {"uniform": [0.1, 0.9]},
        "policy.params.post_rate": {"loguniform": [0.01, 0.2]},
        "network.m": {"integers": [2, 4]},
        "scenario.feed.algorithm": {"choice": ["mix", "random"]}}}
    a = load_sweep(write_sweep(tmp_path, grid=None, sample=sample)).points
    b = load_sweep(write_sweep(tmp_path, grid=None, sample=sample)).points
    c = load_sweep(write_sweep(tmp_path, grid=None, sample={**sample, "seed": 4})).points
    assert a == b and a != c and len(a) == 5
    assert all(0.1 <= p["policy.params.confidence"] < 0.9 for p in a)
    assert all(p["network.m"] in (2, 3, 4) for p in a)
    assert {type(p["network.m"]) for p in a} == {int}


@pytest.mark.parametrize(("change", "message"), [
    ({"sample": {"n": 2, "params": {"steps": {"uniform": [1, 2]}}}}, "not both"),
    ({"grid": {"policy.params.confidence": []}}, "no values"),
    ({"grid": {"steps": [2, 3]}}, "vary a key in one place"),
    ({"seeds": [1, 1]}, "without repeats"),
    ({"workerz": 2}, "workerz"),
    ({"grid": None, "sample": {"n": 2, "params": {"x": {"uniform": [2, 1]}}}}, "above high"),
    ({"grid": None, "sample": {"n": 2, "params": {"x": {"uniform": [0, 1],
                                                        "choice": [1]}}}}, "exactly one"),
])
def test_an_invalid_sweep_file_is_refused(tmp_path: Path, change: dict[str, Any],
                                          message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(write_sweep(tmp_path, **change))


def test_a_bad_point_is_named_before_anything_runs(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path, grid={"policy.params.confidence": [0.2, "high"]})
    with pytest.raises(ConfigError, match=r"point 1 \(policy.params.confidence='high'\)"):
        load_sweep(path)
    assert main(["sweep", str(path)]) == 2
    assert "point 1" in capsys.readouterr().err
    assert not (tmp_path / "sweep.sqlite").exists()


# ---------------------------------------------------------------------------- running


def test_a_sweep_runs_skips_and_resumes(tmp_path: Path) -> None:
    """Two points x two seeds: one run interrupted by hand beforehand is resumed (and ends
    as the uninterrupted run would), the others start; a second call skips them all."""
    sweep = load_sweep(write_sweep(tmp_path))
    first = sweep.runs[0]
    sim = Simulation(load_experiment(QUICKSTART, overrides=sweep.task(first).overrides),
                     db_url=sweep.db_url)

    def interrupt(report: Any) -> None:
        if report.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sim.run(progress=interrupt)
    interrupted = open_run(sweep.db_url, first.run_name)
    assert interrupted.info["status"] == "interrupted" and interrupted.info["steps_done"] == 2

    report = run_sweep(sweep, progress=False)
    assert not report.failed and report.skipped == 0
    assert sorted(o.run_name for o in report.outcomes) == sorted(r.run_name for r in sweep.runs)
    resumed = open_run(sweep.db_url, first.run_name)
    assert resumed.id == interrupted.id and resumed.info["status"] == "completed"
    # resumed from its checkpoint: the same data as the same run made in one go
    fresh = Simulation(load_experiment(QUICKSTART, overrides={
        **sweep.task(first).overrides, "name": "fresh"}), db_url=sweep.db_url).run()
    assert_same_run(resumed, fresh)

    again = run_sweep(sweep, progress=False)
    assert again.outcomes == [] and again.skipped == 4
    assert "4 runs: 0 ran, 4 already completed (skipped), 0 failed" in again.text()


def test_open_sweep_is_one_tidy_table(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path)
    assert main(["sweep", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    # the summary: one row per point, the social scenario's first headline metrics
    assert out[1] == "final step, mean ± sd across seeds:"
    assert out[2].split() == ["point", "policy.params.confidence", "runs", "polarization",
                              "bimodality", "assortativity"]
    assert out[3].split()[:3] == ["0", "0.2", "2"] and out[3].split()[4] == "±"
    frame = open_sweep(tmp_path / "sweep.sqlite", "conf")
    assert frame.attrs["parameters"] == ["policy.params.confidence"]
    assert "polarization" in frame.attrs["metrics"]
    assert list(frame.columns[:7]) == ["run_id", "run", "status", "point", "seed",
                                       "policy.params.confidence", "step"]
    assert len(frame) == 4 * 5  # 4 runs, steps 0-4
    assert set(frame["status"]) == {"completed"}
    assert frame.groupby("run")["policy.params.confidence"].nunique().eq(1).all()
    assert dict(frame.groupby("point")["policy.params.confidence"].first()) == {0: 0.2, 1: 0.6}
    # each row's metrics are its own run's, at its own step
    one = frame[frame["run"] == "conf.p1.s43"].set_index("step")
    metrics = open_run(tmp_path / "sweep.sqlite", "conf.p1.s43").metrics()
    pd.testing.assert_series_equal(one["polarization"], metrics["polarization"],
                                   check_names=False)
    # different confidence, different course
    last = frame[frame["step"] == 4].set_index(["point", "seed"])["opinion_var"]
    assert not np.isclose(last[(0, 42)], last[(1, 42)])
    assert list(list_sweeps(tmp_path / "sweep.sqlite")[["name", "runs", "completed"]]
                .itertuples(index=False, name=None)) == [("conf", 4, 4)]
    with pytest.raises(StorageError, match="no sweep 'cnof'.*did you mean 'conf'"):
        open_sweep(tmp_path / "sweep.sqlite", "cnof")


def test_another_sweep_of_the_same_name_is_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path, grid={"policy.params.confidence": [0.2]}, seeds=1)
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert main(["sweep", str(path), "--quiet", "--set", "seeds=2"]) == 2
    assert "already holds a sweep named 'conf'" in capsys.readouterr().err
    assert main(["sweep", str(path), "--quiet", "--set", "seeds=2",
                 "--set", "name=conf2"]) == 0


def test_dry_run_lists_the_plan_and_writes_nothing(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "conf.p0.s42\tplanned\tpolicy.params.confidence=0.2"
    assert len(lines) == 4 and not (tmp_path / "sweep.sqlite").exists()


@pytest.mark.slow
def test_parallel_workers_write_one_new_sqlite_database(tmp_path: Path) -> None:
    """Three worker processes start at once on a database that does not exist yet."""
    path = write_sweep(tmp_path, grid={"policy.params.confidence": [0.2, 0.4, 0.6]},
                       seeds=2, workers=3)
    assert main(["sweep", str(path), "--quiet"]) == 0
    frame = open_sweep(tmp_path / "sweep.sqlite")
    assert frame["run"].nunique() == 6 and set(frame["status"]) == {"completed"}
    # a worker's run is the run this process would make: determinism across processes
    task = load_sweep(path).task(load_sweep(path).runs[5])
    here = Simulation(load_experiment(QUICKSTART, overrides={**task.overrides, "name": "here"}),
                      db_url=f"sqlite:///{tmp_path / 'here.sqlite'}").run()
    assert_same_run(open_run(tmp_path / "sweep.sqlite", task.run_name), here)


@pytest.mark.slow
@pytest.mark.postgres
def test_parallel_workers_write_one_postgres_database(tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    schema = f"sweep_{np.random.default_rng().integers(1 << 30)}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        scoped = f"{url}?options=-csearch_path%3D{schema}"
        path = write_sweep(tmp_path, storage=scoped, workers=2)
        assert main(["sweep", str(path), "--quiet"]) == 0
        frame = open_sweep(Database(scoped, create=False, read_only=True), "conf")
        assert frame["run"].nunique() == 4 and set(frame["status"]) == {"completed"}
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.mark.slow
def test_ray_tasks_give_the_runs_local_workers_give(tmp_path: Path) -> None:
    local = write_sweep(tmp_path, grid={"policy.params.confidence": [0.3]}, seeds=2)
    assert main(["sweep", str(local), "--quiet"]) == 0
    ray_db = tmp_path / "ray.sqlite"
    assert main(["sweep", str(local), "--quiet", "--runtime", "ray", "--db", str(ray_db),
                 "--set", "runtime.num_cpus=2"]) == 0
    a = open_sweep(tmp_path / "sweep.sqlite").drop(columns=["run_id"])
    b = open_sweep(ray_db).drop(columns=["run_id"])
    pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------- headlines


@pytest.mark.parametrize("scenario", available_scenarios())
def test_headline_metrics_are_metrics_the_scenario_records(scenario: str,
                                                           tmp_path: Path) -> None:
    cls = get_scenario(scenario)
    examples = sorted((cls.examples or tmp_path).glob("quickstart.yaml")) or sorted(
        (cls.examples or tmp_path).glob("*.yaml"))
    if not cls.headline_metrics or not examples:
        pytest.skip(f"{scenario} declares no headline metrics or has no example")
    exp = load_experiment(examples[0], overrides={"steps": 2})
    run = Simulation(exp, db_url=f"sqlite:///{tmp_path / 'h.sqlite'}").run()
    recorded = list(run.metrics().columns)
    assert set(cls.headline_metrics) <= set(recorded), set(cls.headline_metrics) - set(recorded)
    assert headline_metrics(scenario, recorded) == list(cls.headline_metrics)


# ---------------------------------------------------------------------------- failures


def test_runs_of_different_lengths_keep_their_own_steps(tmp_path: Path) -> None:
    """A short run has rows up to its own last step, no invented ones after it."""
    path = write_sweep(tmp_path, grid={"steps": [2, 4]}, set={
        k: v for k, v in SMALL.items() if k != "steps"}, seeds=1)
    assert main(["sweep", str(path), "--quiet"]) == 0
    frame = open_sweep(tmp_path / "sweep.sqlite")
    assert frame.groupby("point")["step"].max().to_dict() == {0: 2, 1: 4}
    assert len(frame) == 3 + 5 and not frame["polarization"].isna().any()


def test_a_second_process_cannot_run_the_same_sweep(tmp_path: Path) -> None:
    from populace.storage.sweeps import find_sweep, release_sweep_lease, sweep_lease

    sweep = load_sweep(write_sweep(tmp_path, seeds=1))
    run_sweep(sweep, progress=False)  # recorded (and done)
    db = Database(sweep.db_url)
    lease = sweep_lease(db, int(find_sweep(db, "conf")["id"]), "conf")  # another "process"
    try:
        with pytest.raises(SweepBusyError, match="sweep 'conf' is being run by pid"):
            run_sweep(sweep, progress=False)
    finally:
        release_sweep_lease(db, lease)
        db.dispose()
    assert run_sweep(sweep, progress=False).skipped == 2  # free again


def test_an_edited_experiment_is_another_sweep_and_a_moved_one_the_same(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "exp.yaml").write_text(QUICKSTART.read_text(encoding="utf-8"),
                                         encoding="utf-8")
    db = str(tmp_path / "sweep.sqlite")
    a = write_sweep(first, experiment="exp.yaml", storage=db, seeds=1)
    b = write_sweep(second, experiment="exp.yaml", storage=db, seeds=1)
    assert main(["sweep", str(a), "--quiet"]) == 0
    assert main(["sweep", str(b), "--quiet"]) == 0  # the same files elsewhere: all skipped
    assert "0 ran, 2 already completed" in capsys.readouterr().out
    exp = second / "exp.yaml"
    exp.write_text(exp.read_text(encoding="utf-8").replace("size: 1000", "size: 900"),
                   encoding="utf-8")
    assert main(["sweep", str(b), "--quiet"]) == 2
    assert "with other parameters, seeds or experiment" in capsys.readouterr().err


@pytest.mark.parametrize(("seeds", "message"), [([-1], "greater than or equal to 0"),
                                                 ([2**64], "less than or equal to"),
                                                 (True, "valid integer")])
def test_bad_seeds_are_refused_before_anything_runs(tmp_path: Path, seeds: Any,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_sweep(write_sweep(tmp_path, seeds=seeds))


def test_numbers_in_e_notation_are_numbers(tmp_path: Path) -> None:
    sweep = load_sweep(write_sweep(tmp_path, grid={"policy.params.confidence": ["2e-1"]}),
                       overrides={"set.policy.params.convergence": "1e-1"})
    assert sweep.points == [{"policy.params.confidence": 0.2}]
    assert sweep.spec.set["policy.params.convergence"] == 0.1
    assert parse_assignment("x=1e-3") == ("x", 0.001)


def test_dry_run_of_a_database_populace_did_not_write(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sweep.sqlite").write_bytes(b"")
    assert main(["sweep", str(write_sweep(tmp_path)), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("\tplanned\t") == 4


@pytest.mark.slow
def test_concurrent_first_recordings_of_a_sweep_agree(tmp_path: Path) -> None:
    """Processes that record one new sweep at the same moment all get its id."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    url = f"sqlite:///{tmp_path / 'race.sqlite'}"
    Database(url).dispose()
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        for attempt in range(3):
            ids = list(pool.map(_record, [(url, f"race{attempt}")] * 4))
            assert len(set(ids)) == 1, ids


def _runs(db: Path) -> pd.DataFrame:
    from populace.storage import list_runs

    database = Database(f"sqlite:///{db}", create=False, read_only=True)
    try:
        return list_runs(database)
    finally:
        database.dispose()


def _record(args: tuple[str, str]) -> int:
    import time as _time

    from populace.storage.sweeps import PlannedRun, record_sweep

    url, name = args
    _time.sleep(max(0.0, 0.5 - _time.time() % 0.5))  # line the processes up
    db = Database(url)
    try:
        return record_sweep(db, name, {"x": 1}, [PlannedRun(0, 1, f"{name}.p0.s1", {})])[0]
    finally:
        db.dispose()


@pytest.mark.slow
def test_a_language_model_run_on_fallbacks_fails_and_is_made_anew(
        server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .test_llm_policy import llm_experiment

    srv, url = server
    data = llm_experiment(url, steps=2)
    data["policy"]["parts"][0]["params"] = {"repair": False}
    (tmp_path / "llm.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    path = write_sweep(tmp_path, experiment="llm.yaml", set={}, grid=None, seeds=1)
    srv.behaviour.invalid_json_rate = 0.5
    assert main(["sweep", str(path), "--quiet"]) == 1
    assert "failed conf.p0.s7: warning: llm LLM agents:" in capsys.readouterr().out
    first = open_sweep(tmp_path / "sweep.sqlite")
    assert set(first["status"]) == {"failed"}
    # still failing: made anew (a new run of the same name), and still a failure
    assert main(["sweep", str(path), "--quiet"]) == 1
    again = open_sweep(tmp_path / "sweep.sqlite")
    assert again["run_id"].iloc[0] != first["run_id"].iloc[0]
    assert open_sweep(tmp_path / "sweep.sqlite", completed_only=True).empty
    srv.behaviour.invalid_json_rate = 0.0
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert set(open_sweep(tmp_path / "sweep.sqlite")["status"]) == {"completed"}
    assert main(["sweep", str(path), "--quiet"]) == 0
    assert "0 ran, 1 already completed (skipped), 0 failed" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_interrupts_the_sweep_and_running_it_again_finishes_it(tmp_path: Path) -> None:
    """SIGINT to the command's process group (a terminal's Ctrl-C) mid-sweep: exit 130, no
    worker left running, no run started after it; the same command finishes the sweep with
    the runs an uninterrupted sweep makes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = {"set": {**SMALL, "steps": 120, "population.size": 2000}, "seeds": 3,
            "grid": {"policy.params.confidence": [0.3]}, "workers": 2}
    path = write_sweep(tmp_path, **spec)
    proc = subprocess.Popen([sys.executable, "-m", "populace.simulator.cli", "sweep",
                             str(path), "--quiet"], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "sweep.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until both workers' runs have committed steps
        time.sleep(0.2)
        if db.exists():
            try:
                runs = open_sweep(db)
            except StorageError:
                continue
            if runs["run"].nunique() >= 2 and runs.groupby("run")["step"].max().min() >= 3:
                break
    killed_at = datetime.now(UTC).replace(tzinfo=None)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "the same command again resumes the others" in err
    runs = _runs(db)
    assert (runs["created_at"] <= killed_at).all()  # no run started after Ctrl-C
    assert "interrupted" in set(runs["status"]) <= {"interrupted", "completed"}
    left = b""
    for _ in range(50):  # every process of the command's group ends (workers, their tracker)
        left = subprocess.run(["pgrep", "-a", "-g", str(proc.pid)], capture_output=True).stdout
        if not left:
            break
        time.sleep(0.1)
    assert left == b"", left
    assert main(["sweep", str(path), "--quiet"]) == 0
    (tmp_path / "ref").mkdir()
    reference = write_sweep(tmp_path / "ref", **spec)
    assert main(["sweep", str(reference), "--quiet"]) == 0
    pd.testing.assert_frame_equal(
        open_sweep(db).drop(columns=["run_id"]),
        open_sweep(tmp_path / "ref" / "sweep.sqlite").drop(columns=["run_id"]))


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_resumed_in_the_same_sweep(tmp_path: Path) -> None:
    """kill -9 of a worker process (as the out-of-memory killer would): the sweep goes on,
    resumes the runs that were in flight, and ends with every run completed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = write_sweep(tmp_path, set={**SMALL, "steps": 30, "population.size": 2000}, seeds=2,
                       grid={"policy.params.confidence": [0.3]}, workers=2)
    proc = subprocess.Popen([sys.executable, "-m", "populace.simulator.cli", "sweep",
                             str(path), "--quiet"], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "sweep.sqlite"
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            runs = _runs(db) if db.exists() else pd.DataFrame()
        except StorageError:
            continue
        if len(runs) and (runs["steps_done"] >= 2).any():  # a worker is mid-run
            children = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"],
                                      capture_output=True, text=True).stdout.split()
            victim = int(children[0]) if children else None
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "2 runs: 2 ran" in out and "a sweep worker process died" in err
    assert set(open_sweep(db)["status"]) == {"completed"}
