"""End-to-end engine behaviour: recording, determinism, resume after a crash, failures."""

from __future__ import annotations

import numpy as np
import pytest

from populace.simulator import Simulation, experiment_from_dict
from populace.storage import StorageError

from .conftest import experiment
from .helpers import Crash, assert_same_run, content_tables, crash_after, reopen, run_experiment


def test_run_records_every_step_consistently(sqlite_url: str) -> None:
    run = run_experiment(experiment(), sqlite_url)
    assert run.info["status"] == "completed"
    assert run.info["steps_done"] == 12
    steps = run.steps()
    assert steps["step"].tolist() == list(range(13))  # step 0 is the initial state
    metrics = run.metrics()
    posts = run.table("posts")
    # the posts table and the metrics agree, step by step
    per_step = posts.groupby("step").size().reindex(range(13), fill_value=0)
    assert per_step.iloc[1:].tolist() == metrics["posts_new"].iloc[1:].astype(int).tolist()
    assert len(posts) == int(metrics["posts_total"].iloc[-1])
    # the action trace holds every action but do_nothing
    actions = run.table("actions")
    assert "do_nothing" not in set(actions["action"])
    counted = metrics.filter(like="actions.").drop(columns="actions.do_nothing").sum().sum()
    assert len(actions) == int(counted)
    assert (steps["n_active"].iloc[1:] == metrics["active_agents"].iloc[1:]).all()
    # initial follow graph at step 0: 300 agents, BA m=4 (the vectorised generator drops the
    # repeats of its draws with replacement: a few percent fewer edges at this size)
    follows = run.table("follows")
    initial = follows[follows["step"] == 0]
    assert 0.95 * 4 * 296 < len(initial) <= 4 * 296
    assert (initial["op"] == 1).all()
    # the agents table holds the population with its attributes
    agents = run.agents()
    assert len(agents) == 300
    assert {"opinion", "interest"} <= set(agents.columns)
    # opinion snapshots every 4 steps, for every agent
    states = run.table("agent_states")
    assert sorted(states["step"].unique()) == [0, 4, 8, 12]
    assert (states.groupby("step").size() == 300).all()


def test_same_seed_same_database_other_seed_differs(tmp_path) -> None:
    a = run_experiment(experiment(), f"sqlite:///{tmp_path / 'a.sqlite'}")
    b = run_experiment(experiment(), f"sqlite:///{tmp_path / 'b.sqlite'}")
    assert_same_run(a, b)
    c = run_experiment(experiment(seed=8), f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert not content_tables(a)["posts"].equals(content_tables(c)["posts"])


def test_mixed_policy_split_decides_like_one_policy(tmp_path) -> None:
    """Per-agent random draws: splitting agents among identical policies changes nothing."""
    one = run_experiment(experiment(), f"sqlite:///{tmp_path / 'one.sqlite'}")
    mixed = experiment(policy={"type": "mixed", "parts": [
        {"select": {"where": {"interest": ["politics", "economy"]}}, "type": "rule"},
        {"select": {"fraction": 0.5}, "type": "rule"},
        {"type": "rule"},
    ]})
    two = run_experiment(mixed, f"sqlite:///{tmp_path / 'two.sqlite'}")
    ta, tb = content_tables(one), content_tables(two)
    for name in ("posts", "likes", "follows", "actions", "step_metrics"):
        assert ta[name].equals(tb[name]), name


def test_mixed_policy_parts_behave_differently(sqlite_url: str) -> None:
    data = experiment(policy={"type": "mixed", "parts": [
        {"select": {"where": {"interest": "politics"}}, "type": "rule",
         "params": {"post_rate": 1.0, "like_rate": 0.0, "repost_rate": 0.0, "quote_rate": 0.0,
                    "comment_rate": 0.0, "dislike_rate": 0.0, "follow_rate": 0.0,
                    "unfollow_rate": 0.0}},
        {"type": "rule", "params": {"post_rate": 0.0}},
    ]})
    run = run_experiment(data, sqlite_url)
    agents = run.agents()
    actions = run.table("actions").merge(agents[["interest"]], left_on="agent_id",
                                         right_index=True)
    politics = actions[actions["interest"] == "politics"]
    others = actions[actions["interest"] != "politics"]
    assert len(politics) > 0 and (politics["action"] == "create_post").all()
    assert (others["action"] != "create_post").all()


def test_resume_after_crash_matches_uninterrupted_run(tmp_path, monkeypatch) -> None:
    full = run_experiment(experiment(), f"sqlite:///{tmp_path / 'full.sqlite'}")
    url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    sim = Simulation(experiment_from_dict(experiment()), db_url=url)
    # dies after step 6 committed (checkpoint at 4): steps 5-6 are redone
    crash_after(sim, 6, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    crashed = reopen(url, sim.run_id)
    assert crashed.info["status"] == "failed"
    assert "simulated crash" in crashed.info["error"]
    assert crashed.info["steps_done"] == 6
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 4  # rows of steps 5 and 6 were cut back to the checkpoint
    assert reopen(url, sim.run_id).steps()["step"].max() == 4
    run = resumed.run()
    assert run.info["status"] == "completed"
    assert_same_run(full, run)


def test_resume_refuses_completed_run(sqlite_url: str) -> None:
    run = run_experiment(experiment(steps=2), sqlite_url)
    with pytest.raises(StorageError, match="already completed"):
        Simulation.resume(sqlite_url, run.id)


@pytest.mark.slow
def test_full_disk_keeps_committed_steps_and_resumes(tmp_path) -> None:
    """SQLite's page limit makes the database 'full' mid-run: a clear error, nothing lost."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'full.sqlite'}"
    data = experiment(steps=30, recording={"agent_state_every": 1})
    sim = Simulation(experiment_from_dict(data), db_url=url)
    sim.start()
    sim.advance()
    sim.flush()
    path = tmp_path / "full.sqlite"
    con = sqlite3.connect(path)
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()

    from sqlalchemy import event

    def limit(dbapi_conn, _rec):  # applies to every new connection of the engine
        dbapi_conn.execute(f"PRAGMA max_page_count={pages + 40}")

    sim.db.engine.dispose()
    event.listen(sim.db.engine, "connect", limit)
    with pytest.raises(StorageError, match="full") as info:
        sim.run()
    assert "populace resume" in str(info.value)
    event.remove(sim.db.engine, "connect", limit)
    sim.db.engine.dispose()
    steps = reopen(url, sim.run_id).steps()
    done = int(steps["step"].max())
    assert 1 <= done < 30
    # each committed step is whole: its metrics and its actions are there
    run = reopen(url, sim.run_id)
    assert sorted(run.metrics().index) == list(range(done + 1))
    resumed = Simulation.resume(url, sim.run_id).run()
    assert resumed.info["status"] == "completed"
    full = run_experiment(data, f"sqlite:///{tmp_path / 'ref.sqlite'}")
    assert_same_run(full, resumed)


def test_runs_on_postgresql_match_sqlite(tmp_path, pg_url: str) -> None:
    a = run_experiment(experiment(), f"sqlite:///{tmp_path / 'a.sqlite'}")
    b = run_experiment(experiment(), pg_url)
    ta, tb = content_tables(a), content_tables(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        fa, fb = ta[name], tb[name]
        assert len(fa) == len(fb), name
        for col in fa.columns:
            x, y = fa[col].to_numpy(), fb[col].to_numpy()
            if fa[col].dtype.kind == "f":
                np.testing.assert_allclose(x.astype(float), y.astype(float), equal_nan=True)
            else:
                assert list(map(str, x)) == list(map(str, y)), (name, col)


def test_unknown_action_from_a_policy_stops_the_run_clearly(sqlite_url: str) -> None:
    sim = Simulation(experiment_from_dict(experiment(steps=3)), db_url=sqlite_url)
    sim.start()
    inner = sim.policy

    class Broken:
        def decide(self, obs, ctx):
            batch = inner.decide(obs, ctx)
            batch.action[:1] = 42
            return batch

    sim.runtime.policy = Broken()  # the runtime asks the policy
    with pytest.raises(ValueError, match=r"unknown action codes \[42\].*9 actions: create_post"):
        sim.run()
    run = reopen(sqlite_url, sim.run_id)
    assert run.info["status"] == "failed" and run.info["steps_done"] == 0


def test_set_up_reports_its_stages_and_runs_release_their_lease(tmp_path, monkeypatch) -> None:
    import os

    from populace.storage import Database
    from populace.storage.leases import lease_holders

    url = f"sqlite:///{tmp_path / 'stages.sqlite'}"
    stages: list[str | None] = []
    sim = Simulation(experiment_from_dict(experiment(steps=4)), db_url=url)
    sim.stage_hook = stages.append
    sim.start()
    assert [s.split(" (")[0] if s else s for s in stages] == [
        "population", "network", "scenario and policy", "recording step 0", None]
    assert stages[0] == "population (300 agents)"
    db = Database(url)
    assert lease_holders(db)[sim.run_id].pid == os.getpid()  # held while it runs
    crash_after(sim, 2, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    assert lease_holders(db) == {}  # a failed run gives its lease back with its status
    assert reopen(url, sim.run_id).info["status"] == "failed"
    done = Simulation.resume(url, sim.run_id).run()
    assert done.info["status"] == "completed" and lease_holders(db) == {}
