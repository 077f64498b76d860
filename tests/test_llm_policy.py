"""Language-model agents end to end: a real HTTP test server, the run database, replay, cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.config_errors import ConfigError
from populace.simulator.llm.types import LLMStopError
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
from populace.storage import open_run

from .conftest import experiment
from .helpers import content_tables

N_AGENTS = 120


def llm_experiment(url: str | None, *, share: float = 0.3, steps: int = 4, **llm) -> dict:
    """The small social experiment with a share of agents on the language model."""
    section = {"backend": "openai", "model": "populace-test", "max_attempts": 3,
               "timeout_s": 5, "prices": {"prompt_per_million": 1.0,
                                          "completion_per_million": 2.0}}
    if url is not None:
        section["endpoints"] = [{"base_url": url, "max_in_flight": 16}]
    section.update(llm)
    data = experiment(steps=steps, activation={"probability": 0.5}, llm=section,
                      policy={"type": "mixed", "parts": [
                          {"select": {"fraction": share}, "type": "llm"},
                          {"type": "rule"}]})
    data["population"] = {**data["population"], "size": N_AGENTS}
    return data


def run(data: dict, url: str):
    return Simulation(experiment_from_dict(data), db_url=url).run()


def test_llm_agents_decide_and_every_call_is_recorded(server, sqlite_url: str) -> None:
    srv, url = server
    result = run(llm_experiment(url), sqlite_url)
    assert result.info["status"] == "completed"
    calls = result.table("llm_calls")
    metrics = result.metrics()
    assert len(calls) == int(metrics["llm.requests"].sum()) > 0
    assert calls["valid"].astype(bool).all()  # the server answers by the schema
    assert (metrics["llm.fallbacks"].fillna(0) == 0).all()
    assert srv.stats["answered"] == len(calls) + 1  # and the check before the first step
    # one shared system prompt (cacheable prefix), then the agent's own part
    prompts = [json.loads(p) for p in calls["prompt"]]
    assert len({p[0]["content"] for p in prompts}) == 1
    assert all(p[1]["content"].startswith(f"You are user {a}.")
               for p, a in zip(prompts, calls["agent_id"], strict=True))
    assert metrics["llm.shared_prefix_share"].dropna().between(0.2, 0.95).all()
    # LLM agents' actions are in the trace; their posts carry the model's text
    llm_agents = set(calls["agent_id"])
    actions = result.table("actions")
    assert set(actions["agent_id"]) & llm_agents
    posts = result.table("posts")
    written = posts[posts["author_id"].isin(llm_agents) & posts["content"].notna()]
    created = actions[actions["agent_id"].isin(llm_agents)
                      & actions["action"].isin(["create_post", "quote", "comment"])
                      & actions["accepted"].astype(bool)]
    assert len(written) == len(created)
    # accounting: tokens and cost from the given prices
    tokens_in, tokens_out = calls["prompt_tokens"].sum(), calls["completion_tokens"].sum()
    assert tokens_in == metrics["llm.prompt_tokens"].sum() > 0
    assert metrics["llm.cost"].sum() == pytest.approx((tokens_in * 1.0 + tokens_out * 2.0) / 1e6)
    assert (metrics["llm.latency_p95"].dropna() >= metrics["llm.latency_p50"].dropna()).all()


def test_invalid_answers_are_repaired_or_fall_back_and_counted(server, sqlite_url: str) -> None:
    srv, url = server
    srv.behaviour.invalid_json_rate = 0.4
    srv.behaviour.wrong_action_rate = 0.2
    result = run(llm_experiment(url, steps=3), sqlite_url)
    assert result.info["status"] == "completed"
    calls = result.table("llm_calls")
    m = result.metrics().sum()
    decisions = calls[calls["kind"] == "decision"]
    repairs = calls[calls["kind"] == "repair"]
    bad = (~decisions["valid"].astype(bool)).sum()
    assert bad > 0 and len(repairs) == bad == m["llm.repairs"]
    assert m["llm.invalid"] == bad + (~repairs["valid"].astype(bool)).sum()
    assert m["llm.repaired"] == repairs["valid"].astype(bool).sum()
    assert m["llm.fallbacks"] == bad - m["llm.repaired"] > 0
    assert decisions.loc[~decisions["valid"].astype(bool), "error"].notna().all()
    # nothing lost: every step committed, every active agent has its action (or do_nothing)
    assert result.steps()["step"].max() == 3


@pytest.mark.slow
def test_server_errors_are_retried_then_fall_back(server, sqlite_url: str) -> None:
    srv, url = server
    srv.behaviour.error_rate = 0.3
    srv.behaviour.rate_limit_rate = 0.2
    result = run(llm_experiment(url, steps=2), sqlite_url)
    m = result.metrics().sum()
    assert srv.stats["by_status"].get(500, 0) > 0 and srv.stats["by_status"].get(429, 0) > 0
    # half the attempts fail (500 or 429): without retries half the requests would end in an
    # error; with 3 attempts about 1 in 8 does (binomial over ~35 requests: below 0.3 by far)
    assert m["llm.errors"] < m["llm.requests"] * 0.3
    assert m["llm.errors"] == m["llm.fallbacks"]  # each error left its agent on the fallback
    srv.behaviour.error_rate = 1.0  # a server that answers no request: the run stops at once
    with pytest.raises(LLMStopError, match=r"(?s)all 1\d decisions of step 1 got no answer.*"
                       r"HTTP 500.*resume"):
        run(llm_experiment(url, steps=2, max_attempts=2, cache=False), sqlite_url)
    stopped = open_run(sqlite_url)
    assert stopped.info["status"] == "failed" and stopped.info["steps_done"] == 0


def test_replay_reproduces_a_run_without_a_server(server, tmp_path) -> None:
    srv, url = server
    db = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    original = run(llm_experiment(url), db)
    srv.stop_thread()  # no server from here on
    replayed = run(llm_experiment(None, backend="replay", replay=original.id), db)
    ta, tb = content_tables(original), content_tables(replayed)
    for name in ("posts", "likes", "follows", "actions", "agent_states"):
        assert ta[name].equals(tb[name]), name
    calls = replayed.table("llm_calls")
    assert set(calls["source"]) == {"replay"}
    assert calls["response"].tolist() == original.table("llm_calls")["response"].tolist()


def test_cache_answers_a_repeated_run_without_new_requests(server, sqlite_url: str) -> None:
    srv, url = server
    first = run(llm_experiment(url), sqlite_url)
    sent = srv.stats["requests"]
    second = run(llm_experiment(url), sqlite_url)
    m = second.metrics().sum()
    assert m["llm.cache_hits"] == m["llm.requests"] > 0
    assert srv.stats["requests"] == sent + 1  # only the check before the first step
    assert content_tables(first)["posts"].equals(content_tables(second)["posts"])


def test_llm_configuration_errors_are_reported() -> None:
    data = llm_experiment("http://127.0.0.1:9/v1")
    del data["llm"]
    sim = Simulation(experiment_from_dict(data), db_url="sqlite://")
    with pytest.raises(ValueError, match="no `llm:` section"):
        sim.start()
    data = llm_experiment(None)
    with pytest.raises(ConfigError, match="at least one entry in `endpoints`"):
        experiment_from_dict(data)
    data = llm_experiment("http://127.0.0.1:9/v1")
    data["policy"]["parts"][0]["params"] = {"fallbak": "like"}
    with pytest.raises(ConfigError, match="did you mean 'fallback'"):
        experiment_from_dict(data)


@pytest.mark.slow
def test_hung_requests_time_out_and_the_run_goes_on(server, sqlite_url: str) -> None:
    srv, url = server
    srv.behaviour.hang_rate = 0.6
    # the run goes on whatever share of a step fails: stopping is turned off
    result = run(llm_experiment(url, steps=2, timeout_s=0.5, max_attempts=2, cache=False,
                                max_failed_share=None, max_consecutive_failures=None),
                 sqlite_url)
    m = result.metrics().sum()
    assert result.info["status"] == "completed" and srv.stats["hung"] > 0
    calls = result.table("llm_calls")
    failed = calls["error"].notna() & (calls["response"] == "")  # no answer at all
    # a hung request times out; repeated timeouts take the endpoint out until a probe succeeds
    assert calls.loc[failed, "error"].str.contains("timeout|ejected").all() and failed.any()
    assert m["llm.errors"] == failed.sum()
    assert m["llm.fallbacks"] == failed.sum()
    assert result.steps()["step"].max() == 2


def test_a_model_naming_posts_that_do_not_exist_is_refused_and_counted(
        server, sqlite_url: str, tmp_path) -> None:
    _, url = server
    templates = tmp_path / "prompts"
    templates.mkdir()
    (templates / "agent.j2").write_text(
        'You are user {{ agent_id }}.\nANSWER: {"action": "like", "post_id": 999999}\n')
    data = llm_experiment(url, steps=2, share=1.0)
    data["policy"] = {"type": "llm", "params": {"templates": str(templates), "memory":
                                                {"enabled": False}}}
    result = run(data, sqlite_url)
    m = result.metrics().sum()
    assert m["llm.requests"] > 0 and m["llm.fallbacks"] == 0  # valid JSON, schema-valid
    assert m["rejected.unknown_post"] == m["actions.like"] == m["llm.requests"]
    assert result.table("likes").empty
    actions = result.table("actions")
    assert not actions["accepted"].astype(bool).any()


def test_vllm_backend_without_vllm_or_gpu_is_a_clear_error(sqlite_url: str) -> None:
    from populace.simulator.llm.backends import make_backend
    from populace.simulator.llm.config import LLMConfig
    from populace.simulator.llm.types import BackendError
    from populace.storage import Database

    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed here: the error path cannot be shown")
    with pytest.raises(BackendError, match=r"needs vLLM: pip install 'populace\[vllm\]'"):
        make_backend(LLMConfig(backend="vllm", model="any"), Database(sqlite_url), 0)


def test_two_llm_parts_pool_their_latency_percentiles_and_prefix_share(sqlite_url) -> None:
    srv = TestServer(ServerBehaviour(seed=2, latency_s=0.001, latency_jitter_s=0.02))
    url = srv.start_in_thread()
    try:
        data = llm_experiment(url, steps=3, cache=False)
        data["policy"]["parts"] = [
            {"select": {"fraction": 0.25}, "type": "llm", "params": {"fallback": "like"}},
            {"select": {"fraction": 0.25}, "type": "llm"},
            {"type": "rule"}]
        result = run(data, sqlite_url)
    finally:
        srv.stop_thread()
    calls = result.table("llm_calls")
    metrics = result.metrics()
    for step, rows in calls[calls["source"] == "model"].groupby("step"):
        lat = rows["latency_s"].to_numpy()
        # percentiles of both parts' answers together, not the sum of each part's percentile
        assert metrics.loc[step, "llm.latency_p50"] == pytest.approx(np.percentile(lat, 50))
        assert metrics.loc[step, "llm.latency_p95"] == pytest.approx(np.percentile(lat, 95))
        assert metrics.loc[step, "llm.requests"] == len(calls[calls["step"] == step])
        assert 0.2 < metrics.loc[step, "llm.shared_prefix_share"] < 0.95


def test_an_answer_naming_an_id_too_large_for_the_engine_is_invalid_not_a_crash() -> None:
    """A model may write any digits where an id goes (a grammar only asks for an integer):
    ids beyond 2**53 fail validation (repaired or falling back) instead of overflowing the
    scenario's int64 arrays."""
    from pydantic import BaseModel, ValidationError

    from populace.simulator.llm_adapter import MAX_ID, Id

    class Answer(BaseModel):
        user_id: Id

    assert Answer(user_id=MAX_ID).user_id == MAX_ID
    with pytest.raises(ValidationError):
        Answer(user_id=10**30)
    with pytest.raises(ValidationError):
        Answer(user_id=-1)
