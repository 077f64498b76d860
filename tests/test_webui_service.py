"""The web service (``populace serve``, issue 14): a real uvicorn process over a real run
database. Reads of runs, metrics, the action mix, attribute distributions, agent searches and
one agent's record agree with the database; a scenario's objects (posts, a clinic's
consultations and doctor turns) page newest first with their text as written; unknown runs,
agents and attributes are 404s with a message; filters are bound parameters; control needs the token and reaches a running
``populace run`` subprocess; the live stream sends each step."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from populace.simulator import Simulation, experiment_from_dict
from populace.storage import Database, open_run
from populace.storage.read_indexes import attribute_index_name, index_names
from populace.webui.queries import NotFound, RunQueries

from .test_clinic_scenario import clinic
from .test_steering import steered
from .test_steering_llm import with_llm

TOKEN = "s3cret-token"
POPULACE = [sys.executable, "-m", "populace.simulator.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """``populace serve`` in a subprocess, and an HTTP client of it."""

    def __init__(self, db: Path, *extra: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([*POPULACE, "serve", str(db), "--port", str(self.port),
                                      "--token", TOKEN, *extra], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.get("/docs")
                break
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    said = self.proc.stderr.read() if self.proc.stderr else ""
                    raise RuntimeError(f"populace serve did not start: {said}") from None
                time.sleep(0.2)

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_live_run(folder: Path) -> tuple[subprocess.Popen[str], Path]:
    """A real ``populace run`` subprocess of a long social run (2,000 agents, 400 steps) in
    ``folder``, and the database it writes (which appears once its set-up is done)."""
    data = steered([], steps=400)
    data["population"]["size"] = 2000
    (folder / "exp.yaml").write_text(yaml.safe_dump(data))
    db = folder / "live.sqlite"
    run = subprocess.Popen([*POPULACE, "run", "exp.yaml", "--db", str(db), "--quiet"],
                           cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    return run, db


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Path]]:
    """A completed social run with events and an interview, served."""
    folder = tmp_path_factory.mktemp("served")
    db = folder / "run.sqlite"
    events = [{"name": "poll", "kind": "interview", "at": 3, "agents": [4, 5],
               "questions": [{"text": "?", "answer": "scale", "low": 1, "high": 7}]},
              {"name": "shout", "kind": "action", "at": 2, "agents": 4, "action": "create_post",
               "args": {"topic": 0, "stance": 0.5, "content": "<script>alert(1)</script>"}}]
    data = steered(events, steps=6)
    data["population"]["attributes"]["job"] = {
        "dist": "categorical", "values": ["nurse", "farmer", "teacher"]}
    Simulation(experiment_from_dict(data), db_url=f"sqlite:///{db}").run()
    served = Served(db)
    yield served, db
    served.close()


def test_runs_metrics_and_the_action_mix_agree_with_the_database(finished) -> None:
    served, db = finished
    api = served.client
    run = open_run(f"sqlite:///{db}")
    (row,) = api.get("/api/runs").json()
    assert row["id"] == run.id and row["status"] == "completed" and row["steps_done"] == 6
    assert api.get(f"/api/runs/{run.id}").json()["config"]["name"] == "small"
    series = api.get(f"/api/runs/{run.id}/metrics", params={"name": ["polarization"],
                                                            "since": 2}).json()
    metrics = run.metrics()
    assert series["step"] == [3, 4, 5, 6]
    assert series["polarization"] == pytest.approx(metrics.loc[3:6, "polarization"].tolist())
    assert set(series) == {"step", "polarization"}
    mix = api.get(f"/api/runs/{run.id}/actions").json()
    assert mix == run.table("actions")["action"].value_counts().to_dict()


def test_attribute_distributions_are_computed_in_the_database(finished) -> None:
    served, db = finished
    api, run = served.client, open_run(f"sqlite:///{db}")
    agents = run.agents()
    numeric = api.get(f"/api/runs/{run.id}/attributes/age", params={"bins": 7}).json()
    assert numeric["kind"] == "numeric" and len(numeric["counts"]) == 7
    expected, _ = np.histogram(agents["age"], bins=np.asarray(numeric["edges"]))
    assert numeric["counts"] == expected.tolist() and sum(numeric["counts"]) == len(agents)
    jobs = api.get(f"/api/runs/{run.id}/attributes/job").json()
    assert dict(zip(jobs["values"], jobs["counts"], strict=True)) == (
        agents["job"].value_counts().to_dict())
    missing = api.get(f"/api/runs/{run.id}/attributes/height")
    assert missing.status_code == 404 and "no attribute 'height'" in missing.json()["detail"]


def test_agents_are_searched_with_bound_filters_a_page_at_a_time(finished) -> None:
    served, db = finished
    api, run = served.client, open_run(f"sqlite:///{db}")
    agents = run.agents()
    wanted = agents[(agents["age"] >= 40) & (agents["job"] == "nurse")]
    page = api.get(f"/api/runs/{run.id}/agents", params={
        "where": ["age>=40", "job=nurse"], "offset": 5, "limit": 10}).json()
    assert page["total"] == len(wanted)
    assert [a["agent_id"] for a in page["agents"]] == wanted.index[5:15].tolist()
    assert page["agents"][0]["attributes"]["job"] == "nurse"
    # a value is a bound parameter, never SQL
    sly = api.get(f"/api/runs/{run.id}/agents", params={"where": "job=nurse' OR '1'='1"})
    assert sly.status_code == 200 and sly.json()["total"] == 0
    bad = api.get(f"/api/runs/{run.id}/agents", params={"where": "job>nurse"})
    assert bad.status_code == 422 and "compares numbers" in bad.json()["detail"]


def test_one_agent_s_record_and_404s_for_what_is_not_there(finished) -> None:
    served, db = finished
    api, run = served.client, open_run(f"sqlite:///{db}")
    record = api.get(f"/api/runs/{run.id}/agents/4").json()
    actions = run.table("actions")
    mine = actions[actions["agent_id"] == 4]
    assert [a["step"] for a in record["actions"]] == mine["step"].tolist()[::-1]
    assert record["attributes"]["job"] in ("nurse", "farmer", "teacher")
    assert [a["event"] for a in record["interviews"]] == ["poll"]
    assert record["memories"] == [] and record["llm_calls"] == []
    assert api.get(f"/api/runs/{run.id}/agents/300").status_code == 404
    gone = api.get("/api/runs/99/metrics")
    assert gone.status_code == 404 and "no run 99" in gone.json()["detail"]


def test_control_needs_the_token_and_a_running_run(finished) -> None:
    served, db = finished
    api = served.client
    refused = api.post("/api/runs/1/pause")
    assert refused.status_code == 401 and "token" in refused.json()["detail"]
    wrong = api.post("/api/runs/1/pause", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    done = api.post("/api/runs/1/pause", headers={"Authorization": f"Bearer {TOKEN}"})
    assert done.status_code == 409 and "completed, not running" in done.json()["detail"]


def test_the_stream_sends_each_step_then_the_end(finished) -> None:
    served, _ = finished
    with served.client.stream("GET", "/api/runs/1/stream", params={"since": 3}) as response:
        text = "".join(response.iter_text())
    events = [block for block in text.split("\n\n") if block]
    steps = [json.loads(b.split("data: ", 1)[1]) for b in events if b.startswith("event: step")]
    assert [s["step"] for s in steps] == [4, 5, 6]
    assert "polarization" in steps[0]["metrics"]
    assert events[-1].startswith("event: end") and '"completed"' in events[-1]


def test_reads_can_be_protected_by_the_token(finished, tmp_path: Path) -> None:
    _, db = finished
    served = Served(db, "--protect-reads")
    try:
        assert served.client.get("/api/runs").status_code == 401
        ok = served.client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
    finally:
        served.close()


def test_the_network_around_an_agent_and_a_sampled_whole(finished) -> None:
    served, db = finished
    api, run = served.client, open_run(f"sqlite:///{db}")
    follows = run.table("follows")
    live = follows.groupby(["follower_id", "followee_id"])["op"].sum()
    live = live[live > 0]
    edges = set(live.index)
    around = api.get("/api/runs/1/graph", params={"center": 4, "color": "job"}).json()
    ids = {n["id"] for n in around["nodes"]}
    near = {b for a, b in edges if a == 4} | {a for a, b in edges if b == 4} | {4}
    assert ids == near and not around["sampled"]
    shown = {(e["source"], e["target"]) for e in around["edges"]}
    assert shown == {(a, b) for a, b in edges if a in ids and b in ids}
    jobs = run.agents()["job"]
    assert all(n["value"] == jobs[n["id"]] for n in around["nodes"])
    whole = api.get("/api/runs/1/graph", params={"max_nodes": 30, "seed": 2}).json()
    assert len(whole["nodes"]) == 30 and whole["sampled"]
    assert whole == api.get("/api/runs/1/graph", params={"max_nodes": 30, "seed": 2}).json()
    assert api.get("/api/runs/1/graph", params={"center": 999}).status_code == 404


def test_scenario_tables_page_newest_first_and_show_text_as_written(finished) -> None:
    served, db = finished
    api, run = served.client, open_run(f"sqlite:///{db}")
    assert {"posts", "likes", "follows", "actions", "events",
            "interview_answers"} <= set(api.get("/api/runs/1/tables").json())
    posts = run.table("posts")
    shout = posts[posts["content"] == "<script>alert(1)</script>"]
    assert len(shout) == 1  # the content is stored and served as it was written
    root = int(posts.groupby("root_id").size().idxmax())
    cascade = api.get("/api/runs/1/tables/posts", params={"where": f"root_id={root}",
                                                          "limit": 1000}).json()
    assert [r["post_id"] for r in cascade["rows"]] == (
        posts[posts["root_id"] == root]["post_id"].tolist()[::-1])
    page = api.get("/api/runs/1/tables/posts", params={"where": "author_id=4"}).json()
    assert "<script>alert(1)</script>" in [r["content"] for r in page["rows"]]
    assert api.get("/api/runs/1/tables/runs").status_code == 404  # not a run's table
    bad = api.get("/api/runs/1/tables/posts", params={"where": "nope=1"})
    assert bad.status_code == 404 and "no column 'nope'" in bad.json()["detail"]


@pytest.mark.slow
def test_a_clinic_s_consultations_and_turns_are_served_as_written(tmp_path: Path) -> None:
    db = tmp_path / "clinic.sqlite"
    said = "<script>alert(1)</script> **bold**"
    data = clinic(steps=30, doctors=2, patients=8)
    data["events"] = [{"name": "shout", "kind": "action", "at": 3, "agents": 0,
                       "action": "diagnose", "args": {"patient": 2, "diagnosis": said}}]
    Simulation(experiment_from_dict(data), db_url=f"sqlite:///{db}").run()
    run = open_run(f"sqlite:///{db}")
    served = Served(db)
    try:
        api = served.client
        assert {"clinic_cases", "clinic_patients", "clinic_consultations",
                "clinic_turns"} <= set(api.get("/api/runs/1/tables").json())
        table = run.table("clinic_consultations")
        page = api.get("/api/runs/1/tables/clinic_consultations").json()
        assert [r["patient_id"] for r in page["rows"]] == table["patient_id"].tolist()[::-1]
        mine = api.get("/api/runs/1/tables/clinic_consultations",
                       params={"where": ["doctor_id=0", "outcome=diagnosed"]}).json()["rows"]
        wanted = table[(table["doctor_id"] == 0) & (table["outcome"] == "diagnosed")]
        assert [r["patient_id"] for r in mine] == wanted["patient_id"].tolist()[::-1]
        assert said in [r["diagnosis"] for r in mine]  # stored and served as written
        turns = api.get("/api/runs/1/tables/clinic_turns",
                        params={"where": ["action=diagnose", "patient=2"]}).json()["rows"]
        assert [(t["diagnosis"], t["answer"]) for t in turns] == [(said, "incorrect")]
        # a value is a bound parameter, never SQL
        sly = api.get("/api/runs/1/tables/clinic_consultations",
                      params={"where": "outcome=diagnosed' OR '1'='1"})
        assert sly.status_code == 200 and sly.json()["rows"] == []
        gone = api.get("/api/runs/9/tables/clinic_consultations")
        assert gone.status_code == 404 and "no run 9" in gone.json()["detail"]
        bad = api.get("/api/runs/1/tables/clinic_consultations", params={"where": "nope=1"})
        assert bad.status_code == 404 and "no column 'nope'" in bad.json()["detail"]
    finally:
        served.close()


def test_a_completed_run_is_indexed_for_its_readers(finished) -> None:
    _, db = finished
    base = Database(f"sqlite:///{db}", create=False)
    assert {attribute_index_name("age", True), attribute_index_name("job", False)} <= (
        index_names(base, "agents"))
    follows = " ".join(index_names(base, "follows"))
    assert "follower_id" in follows and "followee_id" in follows
    assert any("agent_id" in name for name in index_names(base, "actions"))


def test_llm_health_of_a_rule_run_is_empty(finished) -> None:
    health = finished[0].client.get("/api/runs/1/llm").json()
    assert health["requests"] == 0 and health["invalid_rate"] is None
    assert health["latency_p50"] is None


def test_llm_health_adds_up_the_step_metrics(server, sqlite_url: str) -> None:
    _, url = server
    data = with_llm("quickstart", url, size=30, steps=3)
    sim = Simulation(experiment_from_dict(data), db_url=sqlite_url)
    sim.run()
    metrics = open_run(sqlite_url).metrics()
    health = RunQueries(Database(sqlite_url, create=False), 1).llm_health()
    assert health["requests"] == metrics["llm.requests"].sum() > 0
    assert health["prompt_tokens"] == metrics["llm.prompt_tokens"].sum()
    assert health["invalid_rate"] == pytest.approx(
        metrics["llm.invalid"].sum() / metrics["llm.decisions"].sum())
    assert health["latency_p50"] in metrics["llm.latency_p50"].tolist()


def test_a_scenario_without_a_network_says_so(sqlite_url: str) -> None:
    data = {"name": "b", "seed": 1, "steps": 2, "scenario": {"type": "beauty_contest"},
            "population": {"size": 20}, "policy": {"type": "rule", "params": {"level": 1}}}
    Simulation(experiment_from_dict(data), db_url=sqlite_url).run()
    with pytest.raises(NotFound, match="beauty_contest.*records no network"):
        RunQueries(Database(sqlite_url, create=False), 1).graph()


@pytest.mark.slow
def test_a_running_populace_run_is_steered_through_the_service(tmp_path: Path) -> None:
    """pause, an interview answered while paused... then stop: a real run subprocess."""
    run, db = start_live_run(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        served = Served(db)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        api = served.client
        try:
            while api.get("/api/runs").json()[0]["steps_done"] < 2:
                time.sleep(0.2)
            paused = api.post("/api/runs/1/pause", params={"wait_s": 60}, headers=auth).json()
            assert paused["status"] == "applied"
            at = api.get("/api/runs/1").json()["steps_done"]
            time.sleep(1.5)
            assert api.get("/api/runs/1").json()["steps_done"] == at  # it waits
            asked = api.post("/api/runs/1/interview", params={"wait_s": 0}, headers=auth,
                             json={"questions": [{"text": "?", "answer": "scale", "low": 1,
                                                  "high": 7}], "agents": [1, 2]}).json()
            assert asked["status"] == "queued"
            api.post("/api/runs/1/resume", params={"wait_s": 60}, headers=auth)
            answered = None
            for _ in range(300):
                row = api.get("/api/runs/1/agents/1").json()["interviews"]
                if row:
                    answered = row
                    break
                time.sleep(0.2)
            assert answered and answered[0]["value"] is not None
            stopped = api.post("/api/runs/1/stop", params={"wait_s": 60}, headers=auth).json()
            assert stopped["status"] == "applied"
            assert run.wait(timeout=60) == 3
            assert api.get("/api/runs/1").json()["status"] == "stopped"
        finally:
            served.close()
    finally:
        if run.poll() is None:
            run.kill()
