"""The web monitor (``populace monitor``, issue 14): each Streamlit page through Streamlit's
``AppTest`` against a real SQLite run database (a small social run with events, a small
market run, a beauty-contest run without a network, an economy and a clinic whose doctor is
scripted to write markup as a diagnosis), asserting that what a page shows is
what the database holds; agent-written text shown literally; clear messages for an empty
database, a run without a network, a finished run's controls and bad filters or events; the
controls steering a real running ``populace run`` subprocess; and ``populace monitor`` serving
HTTP on 127.0.0.1."""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.cli import main
from populace.storage import Database, list_runs, open_run
from populace.webui import monitor_cli
from populace.webui.monitor.clinic import CHARTS as CLINIC_CHARTS
from populace.webui.monitor.clinic import specialty_accuracy
from populace.webui.monitor.common import DB_ENV, RUN_ENV, RUN_KEY
from populace.webui.monitor.economy import CHARTS as ECONOMY_CHARTS
from populace.webui.monitor.social import cascade_tree
from populace.webui.monitor.steering import checked_event
from populace.webui.monitor_cli import APP, monitor_command
from populace.webui.queries import RunQueries

from .test_clinic_scenario import clinic
from .test_economy import small as economy
from .test_market import market
from .test_steering import steered
from .test_steering_llm import with_llm
from .test_webui_service import POPULACE, free_port, start_live_run

SHOUT = "<script>alert(1)</script>"
BOLD = "**bold**"
TIMEOUT = 30  # seconds an AppTest run may take (the first imports pandas, altair, ...)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database: a social run with events (run 1), a market run (2), a beauty contest
    (3), which records no network, an economy (4) and a clinic (5) whose doctor 0 is scripted
    to diagnose a patient with markup."""
    url = f"sqlite:///{tmp_path_factory.mktemp('monitor') / 'runs.sqlite'}"
    events = [{"name": "poll", "kind": "interview", "at": 3, "agents": [4, 5],
               "questions": [{"text": "?", "answer": "scale", "low": 1, "high": 7}]},
              {"name": "shout", "kind": "action", "at": 2, "agents": 4,
               "action": "create_post",
               "args": {"topic": 0, "stance": 0.5, "content": SHOUT}},
              {"name": "bold", "kind": "action", "at": 3, "agents": 5,
               "action": "create_post", "args": {"topic": 0, "stance": 0.5, "content": BOLD}}]
    social = steered(events, steps=6)
    social["population"]["attributes"]["job"] = {
        "dist": "categorical", "values": ["nurse", "farmer", "teacher"]}
    beauty = {"name": "b", "seed": 1, "steps": 2, "scenario": {"type": "beauty_contest"},
              "population": {"size": 20}, "policy": {"type": "rule", "params": {"level": 1}}}
    hospital = clinic(steps=40, doctors=2, patients=12)
    hospital["events"] = [{"name": "shout", "kind": "action", "at": 3, "agents": 0,
                           "action": "diagnose",
                           "args": {"patient": 2, "diagnosis": f"{SHOUT} {BOLD}"}}]
    for data in (social, market(steps=6), beauty, economy(steps=6), hospital):
        Simulation(experiment_from_dict(data), db_url=url).run()
    return url


@pytest.fixture
def monitor_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(DB_ENV, db_url)
    return db_url


def page(name: str | None, run_id: int | None = 1, **state: object) -> AppTest:
    """The app after a run of ``name`` (None: the default page) with run ``run_id`` picked."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if run_id is not None:
        at.session_state[RUN_KEY] = run_id
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if name is not None:
        at.switch_page(f"{name}_page.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.markdown, [m.value for m in at.markdown]  # no stray text (Streamlit's magic)
    return at


def texts(at: AppTest, kind: str = "text") -> list[str]:
    return [str(e.value) for e in at.get(kind)]


def frames(at: AppTest) -> list[pd.DataFrame]:
    return [d.value for d in at.dataframe]


def rendered_markup(at: AppTest) -> str:
    """Everything the page rendered as Markdown (titles, captions, alerts, labels)."""
    kinds = ("markdown", "caption", "title", "header", "subheader", "info", "error", "warning",
             "success")
    return "\n".join(str(e.value) for k in kinds for e in at.get(k))


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_runs_page_lists_every_run_with_its_progress(monitor_env: str) -> None:
    at = page(None)
    (table,) = frames(at)
    runs = list_runs(Database(monitor_env, create=False))
    assert table["id"].tolist() == [1, 2, 3, 4, 5]
    assert table["name"].tolist() == runs["name"].tolist() == [
        "small", "market_test", "b", "economy_small", "clinic"]
    assert table["scenario"].tolist() == ["social", "market", "beauty_contest", "economy",
                                          "clinic"]
    assert table["status"].tolist() == ["completed"] * 5
    assert table["steps_done"].tolist() == [6, 6, 2, 6, 40]
    assert table["progress"].tolist() == [1.0] * 5
    assert at.sidebar.selectbox[0].value == 1


def test_the_run_picker_starts_on_the_newest_run_or_the_one_asked_for(
        monitor_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert page(None, run_id=None).sidebar.selectbox[0].value == 5
    monkeypatch.setenv(RUN_ENV, "2")
    at = page("overview", run_id=None)
    assert at.sidebar.selectbox[0].value == 2
    assert "run 2 · market_test · market" in texts(at)[0]


def test_an_empty_database_says_it_holds_no_runs(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    Database(url).engine.dispose()
    monkeypatch.setenv(DB_ENV, url)
    at = page(None, run_id=None)
    assert any("holds no runs yet" in t for t in texts(at, "info"))
    at.switch_page("overview_page.py").run()
    assert any("holds no runs yet" in t for t in texts(at, "info"))
    assert not at.exception


def test_a_missing_database_variable_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DB_ENV, raising=False)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert any("No run database" in t for t in texts(at, "error"))


def test_overview_shows_progress_metrics_and_the_action_mix(monitor_env: str) -> None:
    at = page("overview")
    shown = metric_values(at)
    assert shown["Status"] == "completed" and shown["Steps"] == "6/6"
    assert shown["Agents"] == "300"
    # the social scenario's first three headline metrics
    assert at.multiselect[0].value == ["polarization", "bimodality", "assortativity"]
    series, mix = frames(at)  # the chart's values, then the action mix
    metrics = open_run(monitor_env, 1).metrics()
    assert series.index.tolist() == [1, 2, 3, 4, 5, 6]
    assert series["polarization"].tolist() == pytest.approx(
        metrics.loc[1:6, "polarization"].tolist())
    counts = open_run(monitor_env, 1).table("actions")["action"].value_counts().to_dict()
    assert dict(zip(mix["action"], mix["count"], strict=True)) == counts
    assert any("No language-model requests" in t for t in texts(at, "info"))
    # another metric chosen: the chart's table follows
    at.multiselect[0].set_value(["posts_total"]).run()
    (series, _) = frames(at)
    assert list(series.columns) == ["posts_total"]


def test_population_histograms_agree_with_the_database(monitor_env: str) -> None:
    agents = open_run(monitor_env, 1).agents()
    at = page("population", population_bins=7, **{"population_attribute_1": "age"})
    hist = frames(at)[0]
    expected, _ = np.histogram(agents["age"], bins=np.asarray(
        [*hist["from"].tolist(), hist["to"].iloc[-1]]))
    assert hist["agents"].tolist() == expected.tolist() and len(hist) == 7
    at.selectbox(key="population_attribute_1").set_value("job").run()
    jobs = frames(at)[0]
    assert dict(zip(jobs["value"], jobs["agents"], strict=True)) == (
        agents["job"].value_counts().to_dict())


def test_population_filter_pages_agents_and_explains_bad_conditions(monitor_env: str) -> None:
    agents = open_run(monitor_env, 1).agents()
    wanted = agents[(agents["age"] >= 40) & (agents["job"] == "nurse")]
    at = page("population", population_where="age>=40\njob=nurse")
    found = frames(at)[1]
    assert f"{len(wanted)} agents match · page 1 of {math.ceil(len(wanted) / 50)}" in texts(at)
    assert found["agent_id"].tolist() == wanted.index.tolist()[:50]
    assert set(found["job"]) == {"nurse"}
    at.text_area(key="population_where").set_value("job>nurse").run()
    assert any("compares numbers" in t for t in texts(at, "error"))
    at.text_area(key="population_where").set_value("height>3").run()
    assert any("no attribute 'height'" in t for t in texts(at, "error"))
    # what was typed is quoted as written, not rendered
    at.text_area(key="population_where").set_value("**x**<b>y").run()
    (said,) = texts(at, "error")
    assert "\\*\\*x\\*\\*\\<b\\>y" in said
    assert not at.exception


def test_network_around_an_agent_is_the_database_s(monitor_env: str) -> None:
    at = page("network", **{"network_center_1": 4, "network_colour_1": "job"})
    graph = RunQueries(Database(monitor_env, create=False), 1).graph(4, 1, 300, "job", 0)
    assert f"{len(graph['nodes'])} agents, {len(graph['edges'])} edges" in texts(at)
    (nodes,) = frames(at)
    jobs = open_run(monitor_env, 1).agents()["job"]
    assert sorted(nodes["agent"]) == sorted(n["id"] for n in graph["nodes"])
    assert all(jobs[a] == v for a, v in zip(nodes["agent"], nodes["value"], strict=True))
    assert len(at.get("vega_lite_chart")) == 1


def test_the_market_s_network_is_who_bought_from_whom(monitor_env: str) -> None:
    at = page("network", run_id=2, **{"network_nodes": 1000})
    orders = open_run(monitor_env, 2).table("market_orders")
    pairs = set(zip(orders["customer_id"], orders["business_id"], strict=True))
    (nodes,) = frames(at)
    graph = RunQueries(Database(monitor_env, create=False), 2).graph(None, 1, 1000, None, 0)
    assert sorted(nodes["agent"]) == sorted(n["id"] for n in graph["nodes"])
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert edges and edges <= pairs  # customer to business, as the orders say
    assert f"{len(graph['nodes'])} agents, {len(edges)} edges" in " ".join(texts(at))


def test_a_scenario_without_a_network_says_so(monitor_env: str) -> None:
    at = page("network", run_id=3)
    assert any("beauty_contest) records no network" in t for t in texts(at, "info"))


def test_agent_explorer_shows_one_agent_s_record(monitor_env: str) -> None:
    at = page("agents", **{"agents_id_1": 4})
    run = open_run(monitor_env, 1)
    actions = run.table("actions")
    mine = actions[actions["agent_id"] == 4]
    profile, shown_actions, interviews = frames(at)
    attrs = run.agents().loc[4]
    assert dict(zip(profile["attribute"], profile["value"], strict=True))["job"] == attrs["job"]
    assert shown_actions["step"].tolist() == mine["step"].tolist()[::-1]
    assert shown_actions["action"].tolist() == mine["action"].tolist()[::-1]
    assert interviews["event"].tolist() == ["poll"]
    assert any("No memories" in t for t in texts(at, "info"))
    # a finished run takes no interview: the box says why and its button is disabled
    assert any("not running: interviews reach a running run only" in t
               for t in texts(at, "info"))
    assert at.button[0].disabled


def test_agent_explorer_finds_agents_by_conditions(monitor_env: str) -> None:
    agents = open_run(monitor_env, 1).agents()
    nurses = agents[agents["job"] == "nurse"].index.tolist()
    at = page("agents", **{"agents_where_1": "job=nurse"})
    assert at.selectbox(key="agents_pick_1").options == [str(i) for i in nurses[:50]]
    assert f"{len(nurses)} agents match; the first {min(50, len(nurses))} by id:" in texts(at)
    assert frames(at)[0].set_index("attribute").loc["job", "value"] == "nurse"
    at.text_area(key="agents_where_1").set_value("job<3x").run()
    assert any("compares numbers" in t for t in texts(at, "error"))


def test_a_language_model_run_shows_its_health_and_an_agent_s_exchanges(
        server, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = with_llm("quickstart", server[1], size=30, steps=4)
    Simulation(experiment_from_dict(data), db_url=sqlite_url).run()
    monkeypatch.setenv(DB_ENV, sqlite_url)
    run = open_run(sqlite_url)
    health = RunQueries(Database(sqlite_url, create=False), 1).llm_health()
    shown = metric_values(page("overview"))
    assert health["requests"] > 0
    assert shown["Requests"] == f"{health['requests']:.0f}"
    assert shown["Prompt tokens"] == f"{health['prompt_tokens']:.0f}"
    assert shown["Invalid answers"] == f"{100 * health['invalid_rate']:.1f}%"
    calls = run.table("llm_calls")
    agent = int(calls["agent_id"].iloc[-1])
    mine = calls[calls["agent_id"] == agent]
    at = page("agents", **{"agents_id_1": agent})
    code = texts(at, "code")
    assert code[1] == mine["response"].iloc[-1]  # the newest exchange first, as written
    assert code[0].startswith("[system]\nYou are a user of")
    memories = run.table("memories")
    remembered = memories[memories["agent_id"] == agent]["text"]
    assert len(remembered) > 0  # the agent that asked the model remembers what it did
    assert set(frames(at)[2]["text"]) == set(remembered)


def test_social_page_shows_posts_as_written_and_a_cascade(monitor_env: str) -> None:
    at = page("scenario")
    assert texts(at, "title") == ["Social network"]
    feed = frames(at)[0]
    posts = open_run(monitor_env, 1).table("posts")
    assert feed["post_id"].tolist() == posts["post_id"].tolist()[::-1][:50]
    at.number_input(key="social_author_1").set_value(4).run()
    mine = frames(at)[0]
    assert SHOUT in mine["content"].tolist()
    at.number_input(key="social_author_1").set_value(5).run()
    assert BOLD in frames(at)[0]["content"].tolist()
    # the text reaches the page only as table cells: never as Markdown or HTML
    assert "alert(1)" not in rendered_markup(at) and "bold" not in rendered_markup(at)
    root = int(posts.groupby("root_id").size().idxmax())
    at.number_input(key="social_root_1").set_value(root).run()
    size = int((posts["root_id"] == root).sum())
    assert f"{size} posts in the cascade of post {root}" in texts(at)
    (tree,) = texts(at, "code")
    assert tree.count("\n") == size - 1 and tree.startswith(f"#{root} post by agent")
    shout = int(posts.loc[posts["content"] == SHOUT, "post_id"].iloc[0])
    at.number_input(key="social_root_1").set_value(shout).run()
    (tree,) = texts(at, "code")  # a code block: shown as written
    assert tree.splitlines()[0] == f"#{shout} post by agent 4 at step 2: {SHOUT}"
    assert "alert(1)" not in rendered_markup(at)


def test_the_cascade_tree_nests_each_post_under_its_parent() -> None:
    posts = [{"post_id": 0, "parent_id": -1, "kind": "post", "author_id": 1, "step": 1,
              "content": SHOUT},
             {"post_id": 1, "parent_id": 0, "kind": "repost", "author_id": 2, "step": 2},
             {"post_id": 2, "parent_id": 1, "kind": "quote", "author_id": 3, "step": 3,
              "content": "two\nlines"}]
    assert cascade_tree(posts, 0).splitlines() == [
        f"#0 post by agent 1 at step 1: {SHOUT}",
        "    #1 repost by agent 2 at step 2",
        "        #2 quote by agent 3 at step 3: two lines"]


def test_market_page_shows_welfare_concentration_and_orders(monitor_env: str) -> None:
    at = page("scenario", run_id=2)
    assert texts(at, "title") == ["Marketplace"]
    metrics = open_run(monitor_env, 2).metrics()
    shown = metric_values(at)
    assert shown["orders_total"] == f"{metrics['orders_total'].iloc[-1]:,.0f}"
    assert float(shown["hhi"]) == pytest.approx(metrics["hhi"].iloc[-1], abs=5e-4)
    welfare, concentration, orders = frames(at)[:3]
    assert welfare["welfare"].tolist() == pytest.approx(metrics.loc[1:, "welfare"].tolist())
    assert concentration["gini_revenue"].tolist() == pytest.approx(
        metrics.loc[1:, "gini_revenue"].tolist(), nan_ok=True)
    table = open_run(monitor_env, 2).table("market_orders")
    assert orders["need_id"].tolist() == table["need_id"].tolist()[::-1][:50]


def test_a_scenario_without_a_page_of_its_own_shows_its_tables(monitor_env: str) -> None:
    at = page("scenario", run_id=3)
    assert any("has no page of its own" in t for t in texts(at, "info"))
    (rows,) = frames(at)
    assert len(rows) == 40  # beauty_guesses: 20 agents x 2 rounds
    at.text_area(key="tables_where_3").set_value("nope=1").run()
    assert any("no column 'nope'" in t for t in texts(at, "error"))


def test_economy_page_shows_its_indicators_and_state(monitor_env: str) -> None:
    at = page("scenario", run_id=4)
    assert texts(at, "title") == ["Economy"]
    # one chart per indicator the run has, under prices, labour, output and policy
    recorded = set(open_run(monitor_env, 4).metrics().columns)
    assert len(at.get("vega_lite_chart")) == sum(
        name in recorded for names in ECONOMY_CHARTS.values() for name in names) > 4
    state = frames(at)[0]
    table = open_run(monitor_env, 4).table("economy_state")
    assert state["step"].tolist() == table["step"].tolist()[::-1]
    assert state["unemployment"].tolist() == pytest.approx(
        table["unemployment"].tolist()[::-1])


@pytest.mark.slow
def test_clinic_page_shows_accuracy_the_queue_and_consultations(monitor_env: str) -> None:
    at = page("scenario", run_id=5)
    assert texts(at, "title") == ["Clinic"]
    run = open_run(monitor_env, 5)
    metrics = run.metrics()
    shown = metric_values(at)
    assert shown["consultations"] == f"{metrics['consultations'].iloc[-1]:,.0f}"
    assert float(shown["accuracy"]) == pytest.approx(metrics["accuracy"].iloc[-1], abs=5e-4)
    # a chart each for accuracy, the queue, waits and utilisation, and the specialties' bars
    assert len(at.get("vega_lite_chart")) == len(CLINIC_CHARTS) + 1
    by_step, by_specialty, done, turns = frames(at)[:4]
    charted = [n for names in CLINIC_CHARTS.values() for n in names]
    assert list(by_step.columns) == charted
    assert by_step.index.tolist() == list(range(1, 41))
    for name in ("accuracy", "top5_accuracy", "queue", "waiting_test", "wait_p90"):
        assert by_step[name].tolist() == pytest.approx(metrics.loc[1:, name].tolist(),
                                                       nan_ok=True)
    last = metrics.iloc[-1]
    assert len(by_specialty) > 1 and by_specialty["accuracy"].tolist() == pytest.approx(
        [last[f"accuracy.{s}"] for s in by_specialty["specialty"]], nan_ok=True)
    assert ("at step 40: the share of each specialty's ended consultations diagnosed "
            "correctly") in texts(at)
    table = run.table("clinic_consultations")
    assert done["patient_id"].tolist() == table["patient_id"].tolist()[::-1][:50]
    assert {"doctor_id", "case_id", "outcome", "turns", "tests", "diagnosis",
            "correct_diagnosis", "correct", "waited_min"} <= set(done.columns)
    trace = run.table("clinic_turns")
    assert turns["step"].tolist() == trace["step"].tolist()[::-1][:50]
    # the scripted diagnosis, in both tables as written, never rendered
    said = f"{SHOUT} {BOLD}"
    at.selectbox(key="clinic_action").set_value("diagnose").run()
    done, turns = frames(at)[2:4]
    assert said in done["diagnosis"].tolist() and said in turns["diagnosis"].tolist()
    assert set(turns["action"]) == {"diagnose"}
    assert "alert(1)" not in rendered_markup(at) and "bold" not in rendered_markup(at)
    # filters by outcome and doctor
    at.selectbox(key="clinic_outcome").set_value("diagnosed").run()
    at.number_input(key="clinic_outcome_doctor_5").set_value(1).run()
    at.number_input(key="clinic_action_doctor_5").set_value(1).run()
    done, turns = frames(at)[2:4]
    mine = table[(table["outcome"] == "diagnosed") & (table["doctor_id"] == 1)]
    assert len(mine) > 0 and done["patient_id"].tolist() == mine["patient_id"].tolist()[::-1]
    assert set(turns["agent_id"]) == {1} and set(turns["action"]) == {"diagnose"}
    at.selectbox(key="clinic_outcome").set_value("left").run()
    assert any("No such consultations" in t for t in texts(at, "info"))


def test_the_specialty_accuracy_is_the_latest_step_s(monitor_env: str) -> None:
    q = RunQueries(Database(monitor_env, create=False), 5)
    step, frame = specialty_accuracy(q)
    metrics = open_run(monitor_env, 5).metrics()
    assert step == 40
    names = sorted(n for n in metrics.columns if n.startswith("accuracy."))
    assert frame["specialty"].tolist() == [n.removeprefix("accuracy.") for n in names]
    assert frame["accuracy"].tolist() == pytest.approx(metrics.loc[40, names].tolist(),
                                                       nan_ok=True)


def test_controls_of_a_finished_run_are_disabled_with_the_reason(monitor_env: str) -> None:
    at = page("controls")
    assert any("is completed, not running" in t for t in texts(at, "info"))
    assert all(b.disabled for b in at.button)
    assert len(at.button) == 4  # pause, resume, stop and the intervention's send


def test_events_are_checked_before_they_are_sent() -> None:
    assert checked_event("kind: broadcast\ntext: hello")["kind"] == "broadcast"
    for text, said in (("kind: nonsense", "kind"), ("[1, 2]", "mapping"),
                       ("kind: broadcast\n  text: : :", "not YAML"),
                       ("kind: broadcast", "text")):
        with pytest.raises(ValueError, match=said):
            checked_event(text)


def test_monitor_refuses_a_missing_database_or_run(db_url: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", str(tmp_path / "nope.sqlite")]) == 1
    assert "no run database at" in capsys.readouterr().err
    assert main(["monitor", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert main(["monitor", db_url, "--run", "nosuch"]) == 1
    assert "no run 'nosuch'" in capsys.readouterr().err
    assert main(["monitor", db_url, "--port", "70000"]) == 1
    assert "--port must be between" in capsys.readouterr().err


def test_monitor_runs_streamlit_headless_on_loopback() -> None:
    argv, env = monitor_command("sqlite:///x.sqlite", "127.0.0.1", 8600, "2")
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4] == str(APP)
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.headless") + 1] == "true"
    assert env[DB_ENV] == "sqlite:///x.sqlite" and env[RUN_ENV] == "2"
    # the command line names the app's variables without importing Streamlit
    assert (monitor_cli.DB_ENV, monitor_cli.RUN_ENV) == (DB_ENV, RUN_ENV)


@pytest.mark.slow
def test_populace_monitor_serves_http_on_loopback(db_url: str) -> None:
    port = free_port()
    db = db_url.removeprefix("sqlite:///")
    proc = subprocess.Popen([*POPULACE, "monitor", db, "--port", str(port), "--run", "small"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    said = proc.stdout.read() if proc.stdout else ""
                    raise AssertionError(f"populace monitor did not start: {said}") from None
                time.sleep(0.2)
        assert health.status_code == 200 and health.text == "ok"
        home = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert home.status_code == 200 and "<html" in home.text.lower()
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    # the signal reached Streamlit: it exited, and the monitor with its code
    assert code == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=5)


@pytest.fixture
def live_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen]:
    """A real ``populace run`` subprocess, running (at least two steps done)."""
    run, db = start_live_run(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    runs = list_runs(Database(f"sqlite:///{db}", create=False))
                except Exception:  # noqa: BLE001 - the file is still being created
                    runs = pd.DataFrame()
                if not runs.empty and runs["steps_done"].iloc[0] >= 2:
                    break
            assert run.poll() is None, run.stderr.read() if run.stderr else ""
            time.sleep(0.2)
        monkeypatch.setenv(DB_ENV, f"sqlite:///{db}")
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def until(at: AppTest, said: str, kind: str = "success", timeout_s: float = 60) -> None:
    """Rerun the page until an element of ``kind`` says ``said``."""
    deadline = time.monotonic() + timeout_s
    while not any(said in t for t in texts(at, kind)):
        assert time.monotonic() < deadline, f"no {kind} saying {said!r}: {texts(at, kind)}"
        time.sleep(0.3)
        at.run()


@pytest.mark.slow
def test_controls_pause_and_stop_a_running_populace_run(live_run: subprocess.Popen) -> None:
    live = metric_values(page("overview"))
    assert live["Status"] == "running" and int(live["Steps"].split("/")[0]) >= 2
    # an interview from the agent explorer, answered by the running run
    ask = page("agents", **{"agents_id_1": 1})
    ask.text_area(key="interview_q_1").set_value("Where do you stand?")
    ask.selectbox(key="interview_form_1").set_value("scale 1-7")
    ask.button[0].click().run()
    until(ask, "(interview): applied at step")
    answers = frames(ask)[-1]
    assert answers["agent_id"].tolist() == [1] and answers["value"].notna().all()
    at = page("controls")
    assert not any(b.disabled for b in at.button)
    at.button(key="controls_pause").click().run()
    until(at, "(pause): applied at step")
    assert any("is paused" in t for t in texts(at, "warning"))
    # a bad event is explained and not sent; a good one the run refuses says why
    at.text_area(key="controls_event_text").set_value("kind: nonsense")
    at.button[3].click().run()
    assert any("kind" in t for t in texts(at, "error")), texts(at, "error")
    at.text_area(key="controls_event_text").set_value(
        "kind: set\nagents: 99999\nvariable: opinion\nvalue: 0.5")
    at.button[3].click().run()
    until(at, "(intervene): refused", kind="error")
    assert any("99999" in t for t in texts(at))
    at.button(key="controls_resume").click().run()
    until(at, "(resume): applied at step")
    assert not texts(at, "warning")  # no longer paused
    at.button(key="controls_stop").click().run()
    until(at, "(stop): applied at step")
    assert live_run.wait(timeout=60) == 3
    at.run()
    assert any("is stopped, not running" in t for t in texts(at, "info"))
    commands = frames(at)[0]
    assert commands["command"].tolist()[:3] == ["stop", "resume", "intervene"]
    assert commands["status"].tolist()[:3] == ["applied", "applied", "refused"]
    assert os.environ[DB_ENV].endswith("live.sqlite")
