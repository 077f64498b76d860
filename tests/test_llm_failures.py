"""Language-model runs that cannot do what was asked fail loudly, and replay works as written.

Real test servers (in this process, on real ports), a port where nothing listens, the
``populace`` command in subprocesses, real SQLite files.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.cli import main
from populace.simulator.llm.backends import ReplayBackend
from populace.simulator.llm.types import LLMStopError, ReplayMissError
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
from populace.storage import Database, StorageError, list_runs, open_run
from populace.storage.runs import create_run, find_run

from .helpers import content_tables
from .test_llm_policy import llm_experiment

ROOT = Path(__file__).resolve().parents[1]
LLM_AGENTS = ROOT / "scenarios" / "social" / "examples" / "llm_agents.yaml"
POPULACE = [sys.executable, "-m", "populace.simulator.cli"]


def populace(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess, output captured."""
    return subprocess.run([*POPULACE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def free_port() -> int:
    """A port where nothing listens (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def runs_in(db_file: Path):
    if not db_file.exists():
        return []
    db = Database(f"sqlite:///{db_file}", create=False)
    try:
        return list_runs(db).to_dict("records")
    finally:
        db.dispose()


# -- before the first step -------------------------------------------------------------------


@pytest.mark.slow
def test_an_unreachable_server_fails_fast_naming_its_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    exp = write(tmp_path, llm_experiment(url, timeout_s=60))
    t0 = time.perf_counter()
    proc = populace("run", str(exp), "--db", str(tmp_path / "r.sqlite"), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert time.perf_counter() - t0 < 10
    assert "Traceback" not in proc.stderr
    assert f"{url}: cannot connect" in proc.stderr
    assert "the run did not start" in proc.stderr
    assert not [r for r in runs_in(tmp_path / "r.sqlite")]  # no run left `running`


@pytest.mark.slow
def test_a_server_slower_than_the_timeout_fails_fast_naming_url_and_timeout(
        server, tmp_path: Path) -> None:
    srv, url = server
    srv.behaviour.latency_s = 5.0
    exp = write(tmp_path, llm_experiment(url, timeout_s=0.5))
    t0 = time.perf_counter()
    proc = populace("run", str(exp), "--db", str(tmp_path / "r.sqlite"), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert time.perf_counter() - t0 < 10
    assert f"{url}: no answer within 0.5 s (llm.timeout_s)" in proc.stderr
    assert not runs_in(tmp_path / "r.sqlite")


def test_one_endpoint_down_of_two_is_a_warning_all_down_an_error(
        server, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    _, url = server
    dead = f"http://127.0.0.1:{free_port()}/v1"
    data = llm_experiment(url, steps=2)
    data["llm"]["endpoints"].append({"base_url": dead, "max_in_flight": 4})
    with caplog.at_level(logging.WARNING, logger="populace.llm"):
        result = Simulation(experiment_from_dict(data), db_url=sqlite_url).run()
    assert result.info["status"] == "completed"
    assert any(f"endpoint {dead} is left out until it answers" in r.getMessage()
               and "1 of 2 endpoints answered" in r.getMessage() for r in caplog.records)
    other = f"http://127.0.0.1:{free_port()}/v1"
    data["llm"]["endpoints"] = [{"base_url": dead}, {"base_url": other}]
    with pytest.raises(LLMStopError, match=rf"(?s){re.escape(dead)}: cannot connect.*"
                       rf"{re.escape(other)}: cannot connect"):
        Simulation(experiment_from_dict(data), db_url=sqlite_url).start()


def test_a_base_url_without_scheme_is_named_before_any_request(tmp_path: Path) -> None:
    data = llm_experiment("127.0.0.1:8011/v1")
    t0 = time.perf_counter()
    with pytest.raises(LLMStopError, match=r"endpoint base_url must look like "
                       r"http://host:port/v1, got '127.0.0.1:8011/v1'.*did not start"):
        Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'r.sqlite'}"
                   ).start()
    assert time.perf_counter() - t0 < 5  # the configuration, not two failed attempts
    assert not runs_in(tmp_path / "r.sqlite")


# -- during the run --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_server_failing_every_request_from_step_3_stops_the_run_resumably(
        server, tmp_path: Path) -> None:
    srv, url = server
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    data = llm_experiment(url, steps=5, max_attempts=2, cache=False)

    def fail_after_step_2(report) -> None:
        if report.step == 2:
            srv.behaviour.error_rate = 1.0

    with pytest.raises(LLMStopError, match=r"(?s)all \d+ decisions of step 3 got no answer.*"
                       r"HTTP 500"):
        Simulation(experiment_from_dict(data), db_url=db).run(progress=fail_after_step_2)
    stopped = open_run(db)
    assert stopped.info["status"] == "failed" and stopped.info["steps_done"] == 2
    assert stopped.steps()["step"].max() == 2  # step 3 was not recorded
    srv.behaviour.error_rate = 0.0
    resumed = Simulation.resume(db).run()
    assert resumed.info["status"] == "completed" and resumed.info["steps_done"] == 5
    whole = Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'w.sqlite'}"
                       ).run()
    assert content_tables(whole)["posts"].equals(content_tables(resumed)["posts"])


@pytest.mark.slow
def test_the_command_exits_1_with_the_resume_command_and_resume_finishes(
        server, tmp_path: Path) -> None:
    srv, url = server
    srv.behaviour.error_rate = 1.0  # the server is up (the check passes) but answers nothing
    exp = write(tmp_path, llm_experiment(url, steps=3, max_attempts=2, cache=False, timeout_s=1))
    proc = populace("run", str(exp), "--db", "r.sqlite", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "decisions of step 1 got no answer" in proc.stderr
    assert "resume it: populace resume" in proc.stderr and "Traceback" not in proc.stderr
    assert [r["status"] for r in runs_in(tmp_path / "r.sqlite")] == ["failed"]
    srv.behaviour.error_rate = 0.0
    assert main(["resume", str(tmp_path / "r.sqlite"), "--quiet"]) == 0
    assert [r["status"] for r in runs_in(tmp_path / "r.sqlite")] == ["completed"]


@pytest.mark.slow
def test_a_short_outage_is_recorded_and_the_run_completes(
        server, sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    srv, url = server
    data = llm_experiment(url, steps=3, timeout_s=15, max_attempts=4, cache=False)
    restarted = threading.Event()

    def outage_after_step_1(report) -> None:
        if report.step == 1:
            srv.stop_thread()  # down now, back (same port) in 3 s

            def back() -> None:
                time.sleep(3)
                srv.start_in_thread()
                restarted.set()

            threading.Thread(target=back, daemon=True).start()

    with caplog.at_level(logging.WARNING, logger="populace.llm"):
        result = Simulation(experiment_from_dict(data), db_url=sqlite_url).run(
            progress=outage_after_step_1)
    assert restarted.is_set()
    assert result.info["status"] == "completed"
    m = result.metrics()
    assert m.loc[2, "llm.ejections"] >= 1 and m.loc[2, "llm.retries"] > 0
    assert m.loc[3, "llm.ejections"] == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"endpoint {url} taken out of rotation" in t for t in messages)
    assert any(f"endpoint {url} answers again after" in t for t in messages)


# -- at the end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_with_too_many_fallbacks_warns_and_exits_1(
        server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv, url = server
    exp = write(tmp_path, llm_experiment(url, steps=2))
    assert main(["run", str(exp), "--db", str(tmp_path / "clean.sqlite"), "--quiet"]) == 0
    assert "warning: llm" not in capsys.readouterr().err  # a clean run says nothing more
    srv.behaviour.invalid_json_rate = 0.5
    data = llm_experiment(url, steps=2)
    data["policy"]["parts"][0]["params"] = {"repair": False}
    exp = write(tmp_path, data)
    proc = populace("run", str(exp), "--db", "bad.sqlite", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    line = re.search(r"warning: llm LLM agents: (\d+) of (\d+) decisions fell back \(([\d.]+)%\)"
                     r"; of \d+ requests, (\d+) invalid answers", proc.stderr)
    assert line is not None, proc.stderr
    fallbacks, decisions = int(line[1]), int(line[2])
    assert fallbacks == int(line[4]) and fallbacks / decisions > 0.1
    assert "more than llm.max_fallback_share (0.1)" in proc.stderr
    run = open_run(f"sqlite:///{tmp_path / 'bad.sqlite'}")
    assert run.info["status"] == "completed"  # recorded, but the command says it failed
    assert run.metrics()["llm.fallbacks"].sum() == fallbacks


# -- replay ----------------------------------------------------------------------------------


@pytest.mark.slow  # two runs of the 500-agent example through the command
def test_the_replay_recipe_of_the_llm_agents_example_works_as_written(tmp_path: Path) -> None:
    text = LLM_AGENTS.read_text(encoding="utf-8")
    recipe = re.search(r"^#\s+(llm: \{backend: replay.*\})$", text, re.M)
    assert recipe is not None, "the example shows the replay's llm: line"
    assert "replace the whole\n# llm: section below by the line" in text
    with TestServer(ServerBehaviour(seed=1)) as srv:
        # the only change: the test server's port instead of 8011
        (tmp_path / "llm_agents.yaml").write_text(
            text.replace("http://127.0.0.1:8011/v1", srv.url), encoding="utf-8")
        proc = populace("run", "llm_agents.yaml", "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    # no server from here on; the llm: section replaced by the comment's line
    replay = re.sub(r"^llm:\n(?:[ #].*\n)*", recipe[1] + "\n", text, flags=re.M)
    assert "base_url" not in replay.split("policy:")[0].split("network:")[1]
    (tmp_path / "llm_agents.yaml").write_text(replay, encoding="utf-8")
    proc = populace("run", "llm_agents.yaml", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    db = f"sqlite:///{tmp_path / 'populace_runs' / 'llm_agents.sqlite'}"
    original, replayed = open_run(db, 1), open_run(db, 2)
    assert replayed.info["status"] == "completed"
    assert replayed.info["config"]["llm"]["replay"] == 1  # resolved: a resume replays run 1
    # every table the same, but how the model was reached (calls, cache, latency metrics)
    ta, tb = content_tables(original), content_tables(replayed)
    model_side = {"llm_calls", "llm_cache", "step_metrics"}
    assert set(ta) - model_side == set(tb) - model_side
    assert {"posts", "likes", "follows", "actions", "memories", "agents"} <= set(ta)
    for name in set(ta) - model_side:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True, obj=name)
    ma, mb = original.metrics(), replayed.metrics()
    kept = [c for c in ma.columns if not c.startswith("llm.latency")]
    pd.testing.assert_frame_equal(ma[kept].drop(columns=["llm.cache_hits"]),
                                  mb[kept].drop(columns=["llm.cache_hits"]), check_exact=True)
    calls = replayed.table("llm_calls")
    assert set(calls["source"]) == {"replay"}
    assert replayed.metrics()["llm.replay_misses"].sum() == 0


def test_a_replay_that_misses_says_what_differs_or_asks_the_model_when_told(
        server, tmp_path: Path) -> None:
    srv, url = server
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    original = Simulation(experiment_from_dict(llm_experiment(url, steps=2)), db_url=db).run()
    changed = llm_experiment(None, steps=2, backend="replay", replay=original.id,
                             temperature=0.2)
    with pytest.raises(ReplayMissError, match=r"the sampling parameters differ: recorded "
                       r"temperature=0.7.*now temperature=0.2"):
        Simulation(experiment_from_dict(changed), db_url=db).run()
    model = llm_experiment(None, steps=2, backend="replay", replay=original.id, model="other")
    with pytest.raises(ReplayMissError, match=r"the model differs: recorded 'populace-test', "
                       r"now 'other'"):
        Simulation(experiment_from_dict(model), db_url=db).run()
    live = llm_experiment(url, steps=2, backend="replay", replay=original.id,
                          temperature=0.2, replay_on_miss="live")
    result = Simulation(experiment_from_dict(live), db_url=db).run()
    m = result.metrics().sum()
    assert result.info["status"] == "completed"
    assert m["llm.replay_misses"] == m["llm.requests"] > 0  # every request asked the model
    assert set(result.table("llm_calls")["source"]) == {"model"}


def test_a_replay_by_name_never_replays_itself_and_resumes_from_the_same_run(
        server, tmp_path: Path) -> None:
    srv, url = server
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    data = llm_experiment(url, steps=4)
    original = Simulation(experiment_from_dict(data), db_url=db).run()
    srv.stop_thread()
    replay = llm_experiment(None, steps=4, backend="replay", replay=data["name"])

    def interrupt_after_step_2(report) -> None:
        if report.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Simulation(experiment_from_dict(replay), db_url=db).run(progress=interrupt_after_step_2)
    stopped = open_run(db, original.id + 1)
    assert stopped.info["status"] == "interrupted"
    assert stopped.info["config"]["llm"]["replay"] == original.id
    resumed = Simulation.resume(db, stopped.id).run()
    assert resumed.info["status"] == "completed"
    ta, tb = content_tables(original), content_tables(resumed)
    for name in ("posts", "likes", "follows", "actions"):
        assert ta[name].equals(tb[name]), name
    # a name with no other run is refused before a run is created
    lonely = llm_experiment(None, steps=4, backend="replay", replay="nobody")
    with pytest.raises(LLMStopError, match="no run 'nobody'"):
        Simulation(experiment_from_dict(lonely), db_url=db).run()
    assert len(runs_in(tmp_path / "r.sqlite")) == 2


def _journal_mode(path: Path) -> str:
    # from the file header (bytes 18-19: 1 rollback journal, 2 WAL), without opening it
    return {b"\x01\x01": "delete", b"\x02\x02": "wal"}[path.read_bytes()[18:20]]


def test_a_replay_of_a_run_with_invalid_answers_repairs_and_falls_back_as_it_did(
        server, tmp_path: Path) -> None:
    srv, url = server
    srv.behaviour.invalid_json_rate = 0.4
    source = tmp_path / "recorded.sqlite"
    original = Simulation(experiment_from_dict(llm_experiment(url, steps=3, cache=False)),
                          db_url=f"sqlite:///{source}").run()
    srv.stop_thread()  # no server from here on
    assert _journal_mode(source) == "delete"  # a completed run's file is out of WAL mode
    replay = llm_experiment(None, steps=3, backend="replay", replay=original.id,
                            replay_db=str(source))
    replayed = Simulation(experiment_from_dict(replay),
                          db_url=f"sqlite:///{tmp_path / 'replay.sqlite'}").run()
    assert replayed.info["status"] == "completed"
    ta, tb = content_tables(original), content_tables(replayed)
    for name in ("posts", "likes", "follows", "actions", "agent_states", "memories"):
        if name in ta:
            pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True, obj=name)
    ma, mb = original.metrics().sum(), replayed.metrics().sum()
    assert ma["llm.invalid"] > 0 and ma["llm.repairs"] > 0
    for key in ("requests", "decisions", "invalid", "repairs", "repaired", "fallbacks", "errors"):
        assert mb[f"llm.{key}"] == ma[f"llm.{key}"], key
    assert mb["llm.errors"] == 0  # an invalid answer is an answer, not a failed request
    calls_a, calls_b = original.table("llm_calls"), replayed.table("llm_calls")
    for column in ("kind", "response", "error", "valid"):
        assert calls_a[column].tolist() == calls_b[column].tolist(), column
    # the source was only read: not even switched to WAL (read-only storage could not be)
    assert _journal_mode(source) == "delete"


def test_replay_sources_are_looked_up_once_never_the_run_itself(server, tmp_path: Path) -> None:
    _, url = server
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    data = llm_experiment(url, steps=1)
    original = Simulation(experiment_from_dict(data), db_url=db).run()
    # a misspelt name gets the closest one, as `populace resume` and open_run do
    typo = llm_experiment(None, steps=1, backend="replay", replay=data["name"] + "x")
    with pytest.raises(LLMStopError, match=rf"no run '{data['name']}x'.*did you mean "
                       rf"'{data['name']}'"):
        Simulation(experiment_from_dict(typo), db_url=db).start()
    # an in-memory database holds no earlier run: said before the run row exists (it found
    # the run being created, and failed after creating it)
    by_name = llm_experiment(None, steps=1, backend="replay", replay=data["name"])
    with pytest.raises(LLMStopError, match="cannot open the database of the run to replay: "
                       "sqlite://"):
        Simulation(experiment_from_dict(by_name), db_url="sqlite://").start()
    # the backend itself never answers from the run being written, and prefers completed runs
    store = Database(db, create=False)
    row = {"scenario": "social", "seed": 0, "n_agents": 1, "steps_planned": 1, "config": {},
           "package_version": "test"}
    try:
        newer = create_run(store, name=data["name"], **row)  # the run being written
        assert ReplayBackend(store, data["name"], exclude=newer).run_id == original.id
        other = create_run(store, name=data["name"], **row)  # newer, but not completed
        assert ReplayBackend(store, data["name"], exclude=other).run_id == original.id
        lonely = create_run(store, name="lonely", **row)
        with pytest.raises(StorageError, match=rf"no run 'lonely' .* other than run {lonely}"):
            find_run(store, "lonely", exclude=lonely)
        with pytest.raises(StorageError, match=rf"run {lonely} is the run being written"):
            find_run(store, lonely, exclude=lonely)
    finally:
        store.dispose()
