"""The engine benchmark (benchmarks/engine.py), its Mesa baseline (benchmarks/mesa_opinion.py) and
its compiled-loops limit (benchmarks/numba_opinion.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    if str(BENCH) not in sys.path:  # the scripts import their sibling environment.py
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(BENCH / "engine.py"), *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.exists(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_engine_benchmark_smoke(tmp_path: Path) -> None:
    proc, data = _bench(tmp_path, "--sizes", "2000", "--steps", "3", "--mesa-sizes", "2000",
                        "--mesa-steps", "3", "--numba-sizes", "2000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "agent-steps/s" in proc.stdout and "Populace / Mesa" in proc.stdout
    assert "Populace / numba limit" in proc.stdout

    env = data["environment"]
    assert "engine.py" in env["command"] and env["cpu_count"] >= 1
    assert env["numpy"] and env["mesa"] and env["numba"] and env["python"]

    [pop] = data["populace"]
    assert pop["ok"] and pop["size"] == 2000 and len(pop["steps"]) == 3
    for key in ("setup_s", "initial_commit_s", "s_per_step", "compute_s", "record_s",
                "agent_steps_per_s", "active_decisions_per_s", "peak_rss_mb", "db_mb"):
        assert pop[key] > 0, key
    assert pop["agent_steps_per_s"] == pytest.approx(2000 / pop["s_per_step"])
    assert 0 < pop["n_active"] < 2000  # activation probability 0.1
    assert pop["timed_steps"] == [3]  # two warm-up steps left out

    [mesa] = data["mesa"]
    assert mesa["ok"] and mesa["size"] == 2000 and len(mesa["step_s"]) == 3
    for key in ("setup_s", "s_per_step", "agent_steps_per_s", "active_decisions_per_s",
                "peak_rss_mb"):
        assert mesa[key] > 0, key

    [ratio] = data["ratios"]
    assert ratio["size"] == 2000
    assert ratio["ratio"] == pytest.approx(pop["agent_steps_per_s"] / mesa["agent_steps_per_s"])
    assert ratio["compute_ratio"] > 0

    [limit] = data["numba"]
    assert limit["ok"] and limit["size"] == 2000 and len(limit["step_s"]) == 3  # --steps
    for key in ("compile_s", "setup_s", "s_per_step", "agent_steps_per_s",
                "active_decisions_per_s", "peak_rss_mb", "compile_rss_mb"):
        assert limit[key] > 0, key
    assert limit["timed_steps"] == [3]
    assert limit["s_per_step"] == pytest.approx(limit["step_s"][2])  # compile time left out
    assert set(limit["phases_s"]) == {"activate", "observe", "decide", "apply", "metrics"}
    assert 0 < limit["n_active"] < 2000 and limit["posts"] > 0
    [to_limit] = data["limit_ratios"]
    assert to_limit["size"] == 2000
    assert to_limit["ratio"] == pytest.approx(pop["agent_steps_per_s"]
                                              / limit["agent_steps_per_s"])
    assert to_limit["rss_ratio"] == pytest.approx(pop["peak_rss_mb"] / limit["peak_rss_mb"])


def test_engine_benchmark_reports_a_failed_child_and_goes_on(tmp_path: Path) -> None:
    proc, data = _bench(tmp_path, "--sizes", "2000", "--steps", "2", "--mesa-sizes",
                        "--numba-sizes", "--timeout", "0.05")
    assert proc.returncode == 1
    [pop] = data["populace"]
    assert not pop["ok"] and "timed out" in pop["error"]
    assert "FAILED" in proc.stdout
    assert data["ratios"] == [] and data["numba"] == [] and data["limit_ratios"] == []


def test_experiment_is_valid() -> None:
    from populace.simulator import experiment_from_dict

    exp = experiment_from_dict(_load("engine").populace_experiment(1000, 10))
    cfg = exp.config
    assert cfg.population.size == 1000 and cfg.steps == 10 and cfg.checkpoint_every == 10
    assert cfg.activation.probability == 0.1 and cfg.metrics.every == 1
    assert cfg.recording.actions and cfg.recording.agent_state_every == 0


@pytest.mark.slow
def test_mesa_parameters_are_populace_defaults() -> None:
    from populace.scenarios.social.config import SocialRuleParams

    mesa_params = _load("mesa_opinion").SocialRuleParams()
    populace_params = SocialRuleParams()
    for name, value in vars(mesa_params).items():
        assert getattr(populace_params, name) == value, name


@pytest.mark.slow
def test_mesa_bounded_confidence_reduces_variance() -> None:
    mo = _load("mesa_opinion")
    # every agent active, so that 10 steps of 500 agents see enough posts to move opinions
    model = mo.OpinionModel(500, seed=3, activation=1.0)
    for _ in range(10):
        model.step()
    frame = model.datacollector.get_model_vars_dataframe()
    assert len(frame) == 11  # the initial state and one row per step
    var = frame["opinion_var"].to_numpy()
    assert var[-1] < 0.97 * var[0]
    assert (var[1:] <= var[:-1] + 1e-12).mean() >= 0.8  # it falls step after step
    assert frame["posts"].iloc[-1] > 0

    # without convergence nothing moves opinions: the change above is bounded confidence's
    params = mo.SocialRuleParams(convergence=0.0)
    still = mo.OpinionModel(500, seed=3, activation=1.0, params=params)
    for _ in range(10):
        still.step()
    var = still.datacollector.get_model_vars_dataframe()["opinion_var"]
    assert var.iloc[-1] == pytest.approx(var.iloc[0], abs=1e-15)


def test_mesa_user_moves_toward_agreeable_stances_only() -> None:
    mo = _load("mesa_opinion")
    quiet = mo.SocialRuleParams(post_rate=0.0, like_rate=0.0, follow_rate=0.0)
    model = mo.OpinionModel(10, seed=0, activation=1.0, params=quiet)
    users = list(model.agents)
    me, near, far = users[0], users[1], users[2]
    me.opinion = 0.0
    me.following = {near, far}
    near.posts = [mo.Post(0, near, 0.3, 0, 0), mo.Post(1, near, 0.1, 0, 0)]
    far.posts = [mo.Post(2, far, -0.9, 0, 0)]  # beyond confidence 0.4: ignored
    me.step()
    assert me.opinion == pytest.approx(0.1 * 0.2)  # convergence 0.1 toward mean 0.2
    assert model.n_active == 1


@pytest.mark.slow
@pytest.mark.parametrize("shards", [0, 2])
def test_scale_benchmark_smoke(tmp_path: Path, shards: int) -> None:
    """benchmarks/scale.py on the local runtime and on Ray: one row per run, with the figures
    docs/benchmarks.md reports (the Ray driver builds no follow graph: no graph time)."""
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--sizes", "3000",
                           "--steps", "3", "--databases", "sqlite", "--shards", str(shards),
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (row,) = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert row["agents"] == 3000 and row["shards"] == shards
    assert row["s_per_step"] > 0 and row["rows_per_step"] > 0 and row["peak_rss_mb"] > 50
    assert (row["graph_s"] is None) == (shards > 0)
    assert "3,000 sqlite" in proc.stdout


def test_numba_parameters_are_populace_defaults() -> None:
    from populace.scenarios.social.actions import ACTIONS
    from populace.scenarios.social.config import FeedConfig, SocialConfig, SocialRuleParams

    no = _load("numba_opinion")
    p = SocialRuleParams()
    rates = [p.post_rate, p.repost_rate, p.quote_rate, p.comment_rate, p.like_rate,
             p.dislike_rate, p.follow_rate, p.unfollow_rate]  # in action-code order
    assert no.RATES.tolist() == rates
    for name, value in no.PARAMS.items():
        assert getattr(p, name) == value, name
    feed = FeedConfig()
    assert (feed.size, feed.window, feed.recency_half_life) == (no.FEED_SIZE, no.WINDOW,
                                                                no.HALF_LIFE)
    assert feed.algorithm == "mix" and list(feed.mix) == ["followees", "interest", "hot",
                                                          "random"]
    slots = [no.FOLLOWEE_SLOTS, no.INTEREST_SLOTS, no.HOT_SLOTS, no.RANDOM_SLOTS]
    assert slots == [round(w * feed.size / sum(feed.mix.values())) for w in feed.mix.values()]
    config = SocialConfig()
    assert config.topics == list(no.TOPICS) and config.extreme_threshold == no.EXTREME
    assert ACTIONS == no.ACTIONS


@pytest.mark.slow
def test_numba_model_does_the_social_step() -> None:
    """Feeds hold no own post, no repeat, nothing older than the window; every kind of action
    happens; bounded confidence lowers the variance, and without convergence nothing moves;
    the kernels compile once."""
    no = _load("numba_opinion")
    model = no.NumbaOpinionModel(500, seed=3, activation=1.0)
    var0 = model.opinion_var()
    edges0 = int(model.f_len.sum())
    totals: dict[str, float] = {}
    variances = [var0]
    for _ in range(10):
        metrics = model.step()
        for k, v in metrics.items():
            if k.startswith(("actions.", "rejected.")):
                totals[k] = totals.get(k, 0.0) + v
        variances.append(metrics["opinion_var"])
        k = model.n_active
        assert k == 500  # activation 1.0
        lo = model.step_start[max(0, model.steps - no.WINDOW)]
        for i in range(k):
            row = model.feed[i, :model.feed_len[i]]
            assert len(set(row.tolist())) == len(row)
            assert (model.posts["author"][row] != model.active[i]).all()
            assert (row >= lo).all() and (row < model.n_posts).all()
        assert sorted(model.order[:k].tolist()) == list(range(k))
    for name in no.ACTIONS:
        assert totals[f"actions.{name}"] > 0, name
    assert totals["rejected.duplicate_reaction"] > 0
    assert metrics["follow_edges"] == int(model.f_len.sum()) != edges0
    assert metrics["posts_total"] == model.n_posts > 0
    assert model.posts["likes"][:model.n_posts].sum() > 0
    assert variances[-1] < 0.97 * variances[0]
    assert model.feed_len[:model.n_active].mean() > 5  # the feeds fill up
    for kernel in (no._activate, no._observe, no._decide, no._apply, no._metrics):
        assert len(kernel.signatures) == 1, kernel  # one compilation, none while stepping

    still = no.NumbaOpinionModel(500, seed=3, activation=1.0, convergence=0.0)
    start = still.opinion.copy()
    for _ in range(5):
        still.step()
    assert np.array_equal(still.opinion, start)

    few = no.NumbaOpinionModel(20_000, seed=0)  # activation 0.1
    few.step()
    assert 1700 < few.n_active < 2300
    active = few.active[:few.n_active]
    assert (np.diff(active) > 0).all()  # distinct, in id order


@pytest.mark.slow
def test_steering_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/steering.py: the plain and the steered run, and a language-model panel's
    interview against the test server, with the figures docs/benchmarks.md reports."""
    out = tmp_path / "steering.json"
    proc = subprocess.run([sys.executable, str(BENCH / "steering.py"), "--sizes", "5000",
                           "--steps", "4", "--llm-interview", "50", "--llm-latency", "0.05",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text(encoding="utf-8"))
    plain, steered = got["runs"]
    assert plain["variant"] == "plain" and plain["boundary_s"] == 0
    assert steered["variant"] == "steered" and steered["boundary_s"] > 0
    interview = got["llm_interview"]
    assert 20 < interview["asked"] < 100 and interview["interview_s"] >= interview["ideal_s"]


@pytest.mark.slow
def test_clinic_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/clinic.py: the hospital day as shipped and rounds of language-model
    consultations against a test server, with the figures docs/benchmarks.md reports."""
    out = tmp_path / "clinic.json"
    proc = subprocess.run([sys.executable, str(BENCH / "clinic.py"), "--llm-doctors", "40",
                           "--llm-server", "0:0", "--out", str(out)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    day = report["hospital"]
    assert day["steps"] == 288 and day["arrived"] == 10_000 and day["consultations"] > 3000
    assert 0 < day["step_median_s"] <= day["step_p90_s"] and day["peak_rss_mb"] > 50
    (rounds,) = report["llm"]
    assert rounds["doctors"] == 40 and len(rounds["round_s"]) == 4
    assert rounds["requests_per_round"] >= 40 and rounds["requests_per_s"] > 0


@pytest.mark.slow
def test_gpu_benchmark_runs_its_tiny_shape_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu.py, checked on the CPU before a GPU session: a random-weight model and a
    tokenizer built here, a step of language-model agents through the transformers backend
    with every answer valid, and plain generate on the same prompts."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("xgrammar")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--shapes", "tiny",
                           "--agents", "30", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    paths = report["paths"]  # the decode paths agree (on the CPU: no graphs to capture)
    assert paths["valid_share"] == 1.0 and paths["static_agree_share"] == 1.0
    assert paths["graphs_agree_share"] == 1.0 and paths["graph_failures"] == 0
    tiny = report["shapes"]["tiny"]
    assert "error" not in tiny, tiny
    ours = tiny["populace"]
    assert ours["decisions"] == 30 and ours["valid_share"] == 1.0
    assert ours["grammar_violations"] == 0 and ours["shared_prefix_tokens"] > 0
    assert ours["static_rows"] == 30 and ours["decode_ms_per_step"] > 0
    assert ours["grammar_ms_per_step"] > 0 and ours["tokens_per_answer"] > 5
    assert ours["decisions_per_s"] > 0 and tiny["plain_generate"]["decisions_per_s"] > 0
    mixed = report["mixed"]  # answers of mixed lengths, with the static decoder's refill or not
    assert mixed["shape"] == "tiny" and mixed["requests"] == 128
    refill, plain = mixed["refill"], mixed["batch_after_batch"]
    assert refill["tokens"] == plain["tokens"] and refill["refills"] > plain["refills"]
    assert refill["decode_steps"] < plain["decode_steps"]
