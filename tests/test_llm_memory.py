"""Agent memory: retrieval by recency, importance and relevance; bounds; reflection; resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.llm.memory import HashedWords, MemoryConfig, MemoryStore
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

from .helpers import Crash, content_tables, crash_after, reopen
from .test_llm_policy import llm_experiment


def store(**cfg) -> MemoryStore:
    return MemoryStore(np.array([10, 20]), MemoryConfig(**cfg))


def test_relevance_ranks_memories_about_the_query_first() -> None:
    mem = store(capacity=8, retrieve=2, weights={"recency": 0, "importance": 0, "relevance": 1})
    texts = ["the football match was thrilling", "vaccines and public health policy",
             "a new phone with a better camera", "the election debate on taxes"]
    mem.add(np.array([10] * 4), ["observation"] * 4, texts, np.full(4, 5.0), step=1)
    got = mem.retrieve(np.array([10]), ["taxes in the election"], step=2)[0]
    assert got[0] == "the election debate on taxes" or got[1] == "the election debate on taxes"
    got = mem.retrieve(np.array([10]), ["health and vaccines"], step=2, k=1)[0]
    assert got == ["vaccines and public health policy"]
    assert mem.retrieve(np.array([20]), ["anything"], step=2) == [[]]  # agent 20 has none


def test_recency_and_importance_weights() -> None:
    mem = store(capacity=8, decay=0.5, weights={"recency": 1, "importance": 0, "relevance": 0})
    mem.add(np.array([10, 10, 10]), ["observation"] * 3, ["old", "middle", "new"],
            np.array([9.0, 1.0, 1.0]), step=1)
    mem.accessed[0, :3] = [1, 5, 9]
    assert mem.retrieve(np.array([10]), ["q"], step=10, k=1)[0] == ["new"]
    mem.config.weights.recency, mem.config.weights.importance = 0.0, 1.0
    assert mem.retrieve(np.array([10]), ["q"], step=10, k=1)[0] == ["old"]


def test_memory_is_bounded_and_evicts_the_weakest() -> None:
    mem = store(capacity=3)
    for step, (text, imp) in enumerate([("a", 9.0), ("b", 1.0), ("c", 8.0), ("d", 7.0)], 1):
        mem.add(np.array([10]), ["observation"], [text], np.array([imp]), step=step)
    kept = set(mem.text[0][mem.used[0]].tolist())
    assert len(kept) == 3 and "b" not in kept and {"a", "c", "d"} == kept
    assert mem.used[1].sum() == 0


def test_bulk_adds_match_one_at_a_time_eviction() -> None:
    """Several agents with several new memories per call, evicting: the same slots as adding
    the memories one by one in order."""
    rng = np.random.default_rng(4)
    cfg = {"capacity": 4, "decay": 0.9}
    bulk, single = (MemoryStore(np.array([10, 20, 30]), MemoryConfig(**cfg)) for _ in range(2))
    for step in range(1, 9):
        n = int(rng.integers(1, 9))
        agents = rng.choice([10, 20, 30], size=n)
        texts = [f"s{step} m{i}" for i in range(n)]
        imp = rng.uniform(0, 10, size=n).astype(np.float32)
        bulk.add(agents, ["observation"] * n, texts, imp, step=step)
        for i in range(n):
            single.add(agents[i:i + 1], ["observation"], texts[i:i + 1], imp[i:i + 1], step=step)
        if step % 3 == 0:  # retrieval refreshes last access, which eviction weighs
            for mem in (bulk, single):
                mem.retrieve(np.array([10, 30]), ["m1"], step=step, k=2)
    assert bulk.used.all()
    assert bulk.text.tolist() == single.text.tolist()
    np.testing.assert_array_equal(bulk.importance, single.importance)
    np.testing.assert_array_equal(bulk.created, single.created)
    np.testing.assert_allclose(bulk.since_reflection, single.since_reflection, rtol=1e-6)


def test_reflection_is_due_after_enough_importance_and_state_roundtrips() -> None:
    mem = store(reflection_threshold=10)
    mem.add(np.array([10, 10, 20]), ["action"] * 3, ["x é", "y", "z"], np.array([6.0, 5, 3]), 1)
    assert mem.due_for_reflection(np.array([10, 20])).tolist() == [10]
    mem.reflected(np.array([10]))
    assert mem.due_for_reflection(np.array([10, 20])).tolist() == []
    copy = store(reflection_threshold=10)
    copy.load_state_dict(mem.state_dict())
    assert copy.text.tolist() == mem.text.tolist()
    np.testing.assert_array_equal(copy.vectors, mem.vectors)


def test_hashed_words_are_unit_vectors() -> None:
    v = HashedWords(32).encode(["Hello hello world", ""])
    assert np.isclose(np.linalg.norm(v[0]), 1.0) and not v[1].any()


@pytest.fixture
def server():
    with TestServer(ServerBehaviour(seed=5)) as srv:
        yield srv


@pytest.mark.slow
def test_llm_agents_remember_reflect_and_resume_identically(server, tmp_path, monkeypatch):
    data = llm_experiment(server.url, steps=6, share=0.5)
    data["policy"]["parts"][0]["params"] = {"memory": {"reflection_threshold": 12,
                                                       "retrieve": 3}}
    data["checkpoint_every"] = 2
    full = Simulation(experiment_from_dict(data), db_url=f"sqlite:///{tmp_path / 'a.sqlite'}")
    full_run = full.run()
    memories = full_run.table("memories")
    assert {"observation", "action", "reflection"} <= set(memories["kind"])
    calls = full_run.table("llm_calls")
    assert (calls["kind"] == "reflection").sum() == full_run.metrics()["llm.reflections"].sum() > 0
    later = calls[(calls["kind"] == "decision") & (calls["step"] >= 3)]
    assert later["prompt"].map(lambda p: "Things you remember:" in json.loads(p)[1]["content"]
                               ).any()
    # a crash after step 5 resumes from the checkpoint of step 4, memories included
    url = f"sqlite:///{tmp_path / 'b.sqlite'}"
    data["llm"]["cache"] = False
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, 5, monkeypatch)
    with pytest.raises(Crash):
        sim.run()
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 4
    done = resumed.run()
    ta, tb = content_tables(full_run), content_tables(reopen(url, done.id))
    for name in ("posts", "actions", "memories"):
        assert ta[name].equals(tb[name]), name
    responses = lambda run: run.table("llm_calls")["response"].tolist()  # noqa: E731
    assert responses(full_run) == responses(done)


def test_the_model_can_rate_how_important_memories_are(server, sqlite_url: str) -> None:
    data = llm_experiment(server.url, steps=2, share=0.5)
    data["policy"]["parts"][0]["params"] = {"memory": {"importance": "llm"}}
    run = Simulation(experiment_from_dict(data), db_url=sqlite_url).run()
    calls = run.table("llm_calls")
    ratings = calls[calls["kind"] == "rating"]
    memories = run.table("memories")
    assert len(ratings) == len(memories) > 0
    # every rated memory carries the model's integer score (the heuristic ones are fractional
    # for observations); the test server answers within the schema's 1-10
    scores = [json.loads(r)["importance"] for r in ratings["response"]]
    assert sorted(scores) == sorted(memories["importance"].astype(int).tolist())
    assert memories["importance"].between(1, 10).all()
