"""The Ray runtime: the same database as the local runtime on 1, 2 and 4 shards, for every
scenario; a shard killed mid-run is recovered from the last checkpoint; clear errors."""

from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from populace.simulator import Simulation, experiment_from_dict  # noqa: E402
from populace.simulator.local_runtime import LocalRuntime  # noqa: E402
from populace.simulator.runtime import RayUnavailableError, RuntimeConfig, blocks, connect  # noqa: E402

from .conftest import experiment  # noqa: E402
from .helpers import assert_same_run, local_ray, run_experiment  # noqa: E402
from .test_economy import SMALL as ECONOMY  # noqa: E402
from .test_market import market  # noqa: E402
from .test_steering import EVENTS, JOINS, steered  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def one_ray():
    """One private Ray for the module (starting it takes several seconds)."""
    with local_ray():
        yield


def social() -> dict:
    data = experiment(steps=6, checkpoint_every=3)
    data["population"] = {**data["population"], "size": 300}
    return data


def economy() -> dict:
    data = copy.deepcopy(ECONOMY)
    data["steps"] = 8
    data["checkpoint_every"] = 4
    return data


EXPERIMENTS = {"social": social, "market": lambda: market(steps=8, checkpoint_every=4),
               "economy": economy}


@pytest.mark.parametrize("scenario", sorted(EXPERIMENTS))
def test_ray_shards_write_the_local_runtime_s_database(scenario: str, tmp_path) -> None:
    make = EXPERIMENTS[scenario]
    local = run_experiment(make(), f"sqlite:///{tmp_path / 'local.db'}")
    for shards in (1, 2, 4):
        data = make()
        data["runtime"] = {"type": "ray", "shards": shards}
        sharded = run_experiment(data, f"sqlite:///{tmp_path / f'ray{shards}.db'}")
        assert_same_run(local, sharded)


def test_a_killed_shard_is_recovered_from_the_last_checkpoint(tmp_path, monkeypatch) -> None:
    data = social()
    data["steps"] = 8
    local = run_experiment(copy.deepcopy(data), f"sqlite:///{tmp_path / 'local.db'}")
    data["runtime"] = {"type": "ray", "shards": 2}
    sim = Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'ray.db'}")
    original = sim.advance
    killed = []

    def advance():  # kill shard 1 (by its process) once step 4 is done
        if sim.step == 4 and not killed:
            import os
            import signal

            os.kill(sim.runtime.pids[1], signal.SIGKILL)
            killed.append(sim.runtime.pids[1])
            time.sleep(0.5)
        return original()

    monkeypatch.setattr(sim, "advance", advance)
    run = sim.run()
    assert killed and run.info["status"] == "completed"
    assert_same_run(local, run)


def test_a_shard_that_keeps_dying_stops_the_run_with_advice(tmp_path, monkeypatch) -> None:
    import os
    import signal

    import populace.simulator.engine as engine
    from populace.simulator.runtime import ShardDiedError
    from populace.storage import open_run

    monkeypatch.setattr(engine, "MAX_RECOVERIES", 1)
    data = social()
    data["runtime"] = {"type": "ray", "shards": 2}
    url = f"sqlite:///{tmp_path / 'ray.db'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    original = sim.advance

    def advance():  # kill shard 0 before every step after the second
        if sim.step >= 2:
            os.kill(sim.runtime.pids[0], signal.SIGKILL)
            time.sleep(0.5)
        return original()

    monkeypatch.setattr(sim, "advance", advance)
    with pytest.raises(ShardDiedError, match="lost a shard 2 times .* out of memory"):
        sim.run()
    info = open_run(url).info
    assert info["status"] == "failed" and info["steps_done"] >= 2
    assert "lost a shard 2 times" in info["error"]


def test_blocks_cover_every_agent_once_and_start_at_chunk_boundaries() -> None:
    from populace.simulator.records import AGENT_CHUNK

    assert AGENT_CHUNK == 64
    assert blocks(1000, 3).tolist() == [0, 320, 704, 1000]
    assert blocks(300, 4).tolist() == [0, 64, 128, 256, 300]
    assert blocks(10, 3).tolist() == [0, 0, 10, 10]  # one chunk: one shard owns it
    for n, shards in ((1, 1), (63, 2), (64, 2), (10**6 + 3, 7)):
        b = blocks(n, shards)
        assert b[0] == 0 and b[-1] == n and (np.diff(b) >= 0).all()
        assert (b[:-1] % AGENT_CHUNK == 0).all()


def test_ray_configuration_errors_are_clear(tmp_path) -> None:
    with pytest.raises(RayUnavailableError, match="cannot reach the Ray cluster"):
        if ray.is_initialized():
            from populace.simulator.runtime import _check_reachable

            _check_reachable("127.0.0.1:9", 2.0)
        else:
            connect(RuntimeConfig(type="ray", address="127.0.0.1:9", connect_timeout_s=2))
    with pytest.raises(RayUnavailableError, match="expected auto"):
        from populace.simulator.runtime import _check_reachable

        _check_reachable("nowhere", 1.0)
    data = social()
    data["runtime"] = {"type": "ray", "shards": 2}
    with pytest.raises(ValueError, match="in-memory SQLite"):
        Simulation(experiment_from_dict(data), db_url="sqlite://").start()
    # shards that ask for GPUs the cluster lacks would wait for ever: an error at once
    data["runtime"] = {"type": "ray", "shards": 2, "shard_gpus": 0.5}
    with pytest.raises(RayUnavailableError, match="shard_gpus is 0.5 for 2 shards, but the "
                       "Ray cluster has 0 GPUs"):
        Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'g.db'}").start()
    # and the model actor's GPUs count with the shards'
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}", encoding="utf-8")
    data["runtime"] = {"type": "ray", "shards": 2}
    data["llm"] = {"backend": "transformers", "model": str(tmp_path / "model"),
                   "transformers": {"ray_actor": True, "ray_num_gpus": 1}}
    with pytest.raises(RayUnavailableError, match="shard_gpus is 0 for 2 shards and "
                       "llm.transformers.ray_num_gpus is 1, but the Ray cluster has 0 GPUs"):
        Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'm.db'}").start()



def _stopped_ray_run(tmp_path, monkeypatch):
    """A 2-shard run that stopped after step 4 (e.g. its Ray head went away), and the local
    runtime's uninterrupted run of the same experiment."""
    from .helpers import Crash, crash_after

    data = social()
    local = run_experiment(copy.deepcopy(data), f"sqlite:///{tmp_path / 'local.db'}")
    data["runtime"] = {"type": "ray", "shards": 2}
    url = f"sqlite:///{tmp_path / 'ray.db'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, 4, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    return local, url, sim.run_id


def test_a_ray_run_that_stopped_is_finished_on_the_local_runtime(tmp_path, monkeypatch) -> None:
    from .helpers import reopen

    local, url, run_id = _stopped_ray_run(tmp_path, monkeypatch)
    resumed = Simulation.resume(url, run_id, runtime={"type": "local"})
    assert isinstance(resumed.runtime, LocalRuntime) and resumed.step == 3
    assert_same_run(local, reopen(url, resumed.run().id))


def test_a_ray_run_resumes_on_another_number_of_shards(tmp_path, monkeypatch) -> None:
    """Rule agents keep no policy state: the merged checkpoint is split anew among 4 shards."""
    from .helpers import reopen

    local, url, run_id = _stopped_ray_run(tmp_path, monkeypatch)
    resumed = Simulation.resume(url, run_id, runtime={"shards": 4})
    assert len(resumed.runtime.shards) == 4 and resumed.step == 3
    assert_same_run(local, reopen(url, resumed.run().id))


def _kill_cluster(marks: list[str]) -> None:
    """Stop the processes of a cluster started with `ray start`, by pid (never `ray stop`,
    which would stop every Ray on the machine)."""
    import psutil

    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if any(m in line for m in marks):
            victims.append(proc)
    for proc in victims:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(victims, timeout=10)


def test_a_two_node_cluster_writes_the_local_database(tmp_path) -> None:
    """`ray start --head` plus a second `ray start --address` on this machine, one CPU each:
    the two shards run on the two nodes; `populace run` joins with runtime.address."""
    import os
    import shutil
    import socket
    import subprocess
    import sys

    import yaml

    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    assert ray_cli is not None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import tempfile

    temp = Path(tempfile.mkdtemp(prefix="pray", dir="/tmp"))  # Unix socket paths must be short
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    marks = [f":{port}", str(temp)]
    try:
        head = subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=1",
                               f"--temp-dir={temp}", "--include-dashboard=false",
                               "--disable-usage-stats"], env=env, timeout=120,
                              capture_output=True, text=True)
        assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
        subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                        "--disable-usage-stats"], env=env, check=True, timeout=120,
                       capture_output=True)
        data = social()
        local = run_experiment(copy.deepcopy(data), f"sqlite:///{tmp_path / 'local.db'}")
        data["runtime"] = {"type": "ray", "shards": 2, "address": f"127.0.0.1:{port}"}
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        db = tmp_path / "cluster.db"
        done = subprocess.run([sys.executable, "-m", "populace.simulator.cli", "run", str(path),
                               "--db", str(db), "--quiet"], env=env, timeout=300,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        from populace.storage import open_run

        assert_same_run(local, open_run(f"sqlite:///{db}"))
    finally:
        _kill_cluster(marks)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_lost_ray_head_stops_the_run_clearly_and_resume_finishes_it(tmp_path) -> None:
    """The head of a `ray start` cluster is killed mid-run: `populace run` stops within
    seconds with a message naming the way out, the run is marked failed, and `populace resume
    --runtime local` completes it. Two ways lead there, depending on what the driver notices
    first: a shard call fails and the driver finds the head gone, or Ray ends the driver
    process itself (its node's object store went away) and the supervising command explains."""
    import os
    import shutil
    import socket
    import sqlite3
    import subprocess
    import sys
    import tempfile

    import yaml

    from populace.storage import open_run

    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = Path(tempfile.mkdtemp(prefix="pray", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    data = social()
    data.update(name="headless", steps=80, checkpoint_every=5)
    data["population"] = {**data["population"], "size": 5000}
    local = run_experiment(copy.deepcopy(data), f"sqlite:///{tmp_path / 'local.db'}")
    data["runtime"] = {"type": "ray", "shards": 2, "address": f"127.0.0.1:{port}"}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    db = tmp_path / "cluster.db"
    cli = [sys.executable, "-m", "populace.simulator.cli"]
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2",
                        f"--temp-dir={temp}", "--include-dashboard=false",
                        "--disable-usage-stats"], env=env, check=True, timeout=120,
                       capture_output=True)
        proc = subprocess.Popen([*cli, "run", str(path), "--db", str(db), "--quiet"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        done = 0
        while done < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            with contextlib.suppress(sqlite3.Error), contextlib.closing(
                    sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                done = conn.execute("SELECT max(step) FROM steps").fetchone()[0] or 0
        assert done >= 8, "the run did not get going"
        _kill_cluster([f":{port}", str(temp)])
        t0 = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, out + err
        assert time.monotonic() - t0 < 30
        said = out + err
        assert ("the Ray cluster is gone" in said or "ended abruptly" in said), said
        assert f"populace resume headless --db sqlite:///{db} --runtime local" in said, said
        run = open_run(f"sqlite:///{db}")
        assert run.info["status"] == "failed" and run.info["steps_done"] < 80
    finally:
        _kill_cluster([f":{port}", str(temp)])
        shutil.rmtree(temp, ignore_errors=True)
    resumed = subprocess.run([*cli, "resume", "headless", "--db", str(db), "--runtime", "local",
                              "--quiet"], env=env, timeout=300, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(local, open_run(f"sqlite:///{db}"))


def test_llm_agents_on_shards_decide_as_locally_and_their_metrics_pool_exactly(tmp_path) -> None:
    import numpy as np

    from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

    from .helpers import content_tables
    from .test_llm_policy import llm_experiment

    with TestServer(ServerBehaviour(seed=6, latency_jitter_s=0.01)) as srv:
        data = llm_experiment(srv.url, steps=3, cache=False)
        local = run_experiment(copy.deepcopy(data), f"sqlite:///{tmp_path / 'local.db'}")
        data["runtime"] = {"type": "ray", "shards": 2}
        sharded = run_experiment(data, f"sqlite:///{tmp_path / 'ray.db'}")
    a, b = content_tables(local), content_tables(sharded)
    for name in ("posts", "actions", "likes", "follows", "memories"):
        assert a[name].equals(b[name]), name
    calls = sharded.table("llm_calls")
    assert sorted(calls["response"]) == sorted(local.table("llm_calls")["response"])
    metrics = sharded.metrics()
    for step, rows in calls.groupby("step"):
        lat = rows["latency_s"].to_numpy()
        assert metrics.loc[step, "llm.requests"] == len(rows)
        assert metrics.loc[step, "llm.latency_p50"] == pytest.approx(np.percentile(lat, 50))
        assert metrics.loc[step, "llm.latency_p95"] == pytest.approx(np.percentile(lat, 95))


def test_a_scenario_that_asks_the_model_runs_on_shards_as_locally(tmp_path) -> None:
    """The market's LLM-ranked search: the driver asks, the replicas replay its answers."""
    from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

    from .helpers import content_tables

    data = market(steps=5, scenario={"ranking": "llm", "results": 4, "llm_candidates": 6})
    with TestServer(ServerBehaviour(seed=9, invalid_json_rate=0.2)) as srv:
        data["llm"] = {"backend": "openai", "model": "populace-test", "cache": False,
                       "endpoints": [{"base_url": srv.url}]}
        local = run_experiment(copy.deepcopy(data), f"sqlite:///{tmp_path / 'local.db'}")
        srv.reset_stats()  # the server's fault draws count attempts per request body
        data["runtime"] = {"type": "ray", "shards": 2}
        sharded = run_experiment(data, f"sqlite:///{tmp_path / 'ray.db'}")
    a, b = content_tables(local), content_tables(sharded)
    for name in ("market_messages", "market_orders", "market_actions", "market_needs"):
        assert a[name].equals(b[name]), name
    assert (sharded.metrics()["search.llm_fallbacks"].iloc[-1]
            == local.metrics()["search.llm_fallbacks"].iloc[-1] > 0)


def test_a_killed_ray_command_stops_its_run_and_resume_finishes_it(tmp_path) -> None:
    """`kill -9` of `populace run` on Ray: its driver (a child process) dies with it, so no
    step is committed after the kill, and `populace resume --runtime local` finishes the run
    into the database of an uninterrupted one (the dead driver's lease is taken over at once)."""
    import os
    import subprocess
    import sys

    import yaml

    from populace.storage import open_run

    from .test_lease import _max_step, _wait_for_step

    data = social()
    data.update(name="rayed", steps=120, checkpoint_every=5)
    data["population"] = {**data["population"], "size": 2000}
    local = run_experiment(copy.deepcopy(data), f"sqlite:///{tmp_path / 'local.db'}")
    # the driver joins this module's Ray (starting a cluster of its own would take longer)
    data["runtime"] = {"type": "ray", "shards": 2,
                       "address": ray.get_runtime_context().gcs_address}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    db = tmp_path / "ray.db"
    cli = [sys.executable, "-m", "populace.simulator.cli"]
    env = dict(os.environ)  # as this module's Ray has it (its authentication included)
    proc = subprocess.Popen([*cli, "run", str(path), "--db", str(db), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait_for_step(db, 3, proc, limit=120)
    finally:
        proc.kill()  # kill -9 of the command
        proc.wait()
    time.sleep(1.5)  # the driver dies with its command
    first = _max_step(db)
    time.sleep(2.5)
    assert _max_step(db) == first, "the driver kept writing after its command was killed"
    assert first < 120
    resumed = subprocess.run([*cli, "resume", "rayed", "--db", str(db), "--runtime", "local",
                              "--quiet"], capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(local, open_run(f"sqlite:///{db}"))


def test_an_llm_stop_on_a_shard_reaches_the_driver_as_itself(tmp_path) -> None:
    """A shard's LLM agents stop the run (every decision failed): the driver gets the
    LLMStopError with its own message, the run is failed and resumable."""
    from populace.simulator.llm.types import LLMStopError
    from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
    from populace.storage import open_run

    from .test_llm_policy import llm_experiment

    url = f"sqlite:///{tmp_path / 'ray.db'}"
    with TestServer(ServerBehaviour(seed=6)) as srv:
        data = llm_experiment(srv.url, steps=3, cache=False, max_attempts=1)
        data["runtime"] = {"type": "ray", "shards": 2}
        srv.behaviour.error_rate = 1.0  # up (the pre-flight check passes) but answers nothing
        with pytest.raises(LLMStopError) as stop:
            run_experiment(data, url)
    # the shard's own exception, not Ray's wrapping of it (whose text is the remote traceback)
    assert type(stop.value) is LLMStopError and str(stop.value).startswith("llm: ")
    assert "no answer" in str(stop.value) and 'File "' not in str(stop.value)
    assert open_run(url).info["status"] == "failed"


def test_steered_runs_on_shards_write_the_local_runtime_s_database(tmp_path) -> None:
    """Every kind of event of the experiment (agents joining and leaving too), and live ones
    from Python (an intervention and an interview between steps), give the same rows on 1, 2
    and 4 shards as locally."""
    def live(data: dict, url: str):  # noqa: ANN202
        sim = Simulation(experiment_from_dict(data), db_url=url)
        sim.start()
        sim.advance()
        sim.intervene({"kind": "set", "variable": "opinion", "shift": 0.2, "every": 2,
                       "agents": {"where": {"age": {"<": 40}}}}, name="nudge")
        answers = sim.interview("Where do you stand?", agents={"sample": 30}, name="ask")
        sim.advance()
        sim.intervene({"kind": "action", "agents": [3, 9], "action": "create_post",
                       "args": {"topic": 2, "stance": 0.3}})
        return answers, sim.run()

    data = steered(EVENTS + JOINS)  # agents that join belong to the last shard
    answers, local = live(data, f"sqlite:///{tmp_path / 'local.db'}")
    for shards in (1, 2, 4):
        sharded_data = copy.deepcopy(data)
        sharded_data["runtime"] = {"type": "ray", "shards": shards}
        got, sharded = live(sharded_data, f"sqlite:///{tmp_path / f'ray{shards}.db'}")
        assert got.equals(answers)
        assert_same_run(local, sharded)


def test_a_shard_killed_after_agents_joined_is_rebuilt_with_them(tmp_path, monkeypatch) -> None:
    """The last shard owns the newcomers; killed after step 5, it is rebuilt from the
    checkpoint of step 4 with the 50 agents that joined at step 3, and the run ends as the
    local one."""
    import os
    import signal

    local = run_experiment(steered(JOINS), f"sqlite:///{tmp_path / 'local.db'}")
    data = steered(JOINS)
    data["runtime"] = {"type": "ray", "shards": 2}
    sim = Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'ray.db'}")
    original = sim.advance
    killed = []

    def advance():  # noqa: ANN202
        if sim.step == 5 and not killed:
            os.kill(sim.runtime.pids[1], signal.SIGKILL)
            killed.append(True)
            time.sleep(0.5)
        return original()

    monkeypatch.setattr(sim, "advance", advance)
    run = sim.run()
    assert killed and run.info["status"] == "completed"
    assert_same_run(local, run)


def test_python_steering_between_hand_driven_steps_matches_the_local_runtime(tmp_path) -> None:
    """With no event of the experiment near, shards would decide the next step ahead; between
    steps driven by hand they must not, so a live event lands at the next step as locally."""

    def steer(data: dict, url: str):  # noqa: ANN202
        sim = Simulation(experiment_from_dict(data), db_url=url)
        sim.start()
        sim.advance()
        sim.intervene({"kind": "set", "variable": "opinion", "value": 0.7,
                       "agents": {"where": {"age": {"<": 40}}}})
        sim.advance()
        sim.intervene({"kind": "leave", "at": sim.step + 1, "agents": {"fraction": 0.2}})
        sim.intervene({"kind": "action", "agents": [5, 6], "action": "create_post",
                       "args": {"topic": 1, "stance": 0.1}})
        return sim.run()

    local = steer(steered([]), f"sqlite:///{tmp_path / 'local.db'}")
    assert local.events()["step"].tolist() == [2, 3, 3]
    data = steered([])
    data["runtime"] = {"type": "ray", "shards": 2}
    assert_same_run(local, steer(data, f"sqlite:///{tmp_path / 'ray.db'}"))
