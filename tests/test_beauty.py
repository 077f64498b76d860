"""The beauty contest ("guess 2/3 of the average"): level-k guesses follow the formula, the
closest guesses win, runs are deterministic and resumable, language-model players mix with
rule players, the Ray runtime records the local runtime's rows, and the metrics show the
convergence toward the Nash equilibrium."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from populace.scenarios.beauty.config import LevelKParams
from populace.scenarios.beauty.decisions import ratio_text
from populace.scenarios.beauty.rules import level_k_guesses
from populace.simulator import ConfigError, Simulation, experiment_from_dict, load_experiment
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

from .helpers import (
    Crash,
    assert_ray_matches_local,
    assert_same_run,
    content_tables,
    crash_after,
    reopen,
    run_experiment,
)

P = 2 / 3
EXAMPLES = Path(__file__).resolve().parents[1] / "scenarios" / "beauty" / "examples"
LEVELS = {0: 0.2, 1: 0.4, 2: 0.3, 3: 0.1}


def game(steps: int = 6, size: int = 400, **params: Any) -> dict[str, Any]:
    """A small game of level-k players (levels drawn from LEVELS)."""
    return {
        "name": "beauty", "seed": 3, "steps": steps, "step_duration": "1d",
        "scenario": {"type": "beauty_contest", "history": 3},
        "population": {"size": size, "attributes": {
            "level": {"dist": "categorical", "values": dict(LEVELS)},
            "age": {"dist": "integer", "low": 18, "high": 80}}},
        "policy": {"type": "rule", "params": params},
        "checkpoint_every": 3,
    }


def run(data: dict[str, Any], tmp_path: Path, name: str = "run") -> Any:
    return run_experiment(data, f"sqlite:///{tmp_path / (name + '.sqlite')}")


def test_level_k_formula_on_arrays() -> None:
    level = np.array([0, 1, 2, 3, 5])
    params = LevelKParams()
    u = np.array([0.25, 0.9, 0.9, 0.9, 0.9])
    guesses = level_k_guesses(level, 50.0, P, params, u, np.zeros(5))
    np.testing.assert_allclose(guesses, [25.0, 50 * P, 50 * P**2, 50 * P**3, 50 * P**5])
    noisy = level_k_guesses(level, 50.0, P, LevelKParams(noise_sd=10), u, np.full(5, -10.0))
    assert noisy[0] == 25.0  # noise is for reasoned guesses only
    np.testing.assert_allclose(noisy[1:], np.clip(guesses[1:] - 100, 0, 100))
    anchored = level_k_guesses(level, 30.0, P, LevelKParams(level0="anchor", level0_sd=5),
                               np.array([2.0, 0, 0, 0, 0]), np.zeros(5))
    assert anchored[0] == 40.0 and anchored[1] == pytest.approx(20.0)


def test_guesses_are_what_level_k_says_round_after_round(tmp_path: Path) -> None:
    r = run(game(steps=4, adaptive=True), tmp_path)
    guesses = r.table("beauty_guesses")
    rounds = r.table("beauty_rounds").set_index("step")
    for step, rows in guesses.groupby("step"):
        anchor = 50.0 if step == 1 else rounds.loc[step - 1, "mean"]
        reasoned = rows[rows.level > 0]
        np.testing.assert_allclose(reasoned.guess, P ** reasoned.level * anchor, rtol=1e-12)
        random = rows[rows.level == 0].guess
        assert random.between(0, 100).all() and random.nunique() == len(random)
    levels = r.agents()["level"].astype(int)
    np.testing.assert_array_equal(guesses.level, levels.loc[guesses.agent_id].to_numpy())


def test_fixed_level_and_non_adaptive_anchor(tmp_path: Path) -> None:
    r = run(game(steps=3, level=2, anchor=40), tmp_path)
    guesses = r.table("beauty_guesses")
    assert (guesses.level == 2).all()
    np.testing.assert_allclose(guesses.guess, 40 * P**2)
    assert len(guesses) == 3 * 400


def test_the_closest_guesses_win_and_rounds_summarise_the_guesses(tmp_path: Path) -> None:
    r = run(game(steps=5, adaptive=True, noise_sd=3), tmp_path)
    guesses = r.table("beauty_guesses")
    rounds = r.table("beauty_rounds").set_index("step")
    assert list(rounds.index) == [1, 2, 3, 4, 5]
    for step, rows in guesses.groupby("step"):
        result = rounds.loc[step]
        assert result.guesses == len(rows)
        assert result["mean"] == pytest.approx(rows.guess.mean(), rel=1e-12)
        assert result["median"] == pytest.approx(rows.guess.median(), rel=1e-12)
        assert result.target == pytest.approx(P * rows.guess.mean(), rel=1e-12)
        distance = (rows.guess - result.target).abs()
        np.testing.assert_allclose(rows.distance, distance, rtol=1e-12, atol=1e-12)
        winners = rows[rows.won]
        assert len(winners) == result.winners >= 1
        assert (winners.distance == rows.distance.min()).all()
        assert (rows[~rows.won].distance > rows.distance.min()).all()
        assert result.winning_guess == winners.guess.min()


def test_ties_share_the_win(tmp_path: Path) -> None:
    # every level-1 player guesses 33.3; with no level 0 the closest are all of one level
    data = game(steps=1)
    data["population"]["attributes"]["level"] = {"dist": "categorical", "values": {1: 0.5, 2: 0.5}}
    r = run(data, tmp_path)
    guesses = r.table("beauty_guesses")
    winners = guesses[guesses.won]
    assert (winners.level == 2).all()  # target 2/3 of the mean lies below 50p, nearest 50p^2
    assert len(winners) == (guesses.level == 2).sum() > 1
    assert r.table("beauty_rounds").winners.iloc[0] == len(winners)


def test_whole_number_guesses(tmp_path: Path) -> None:
    data = game(steps=2, noise_sd=4)
    data["scenario"]["decimals"] = 0
    guesses = run(data, tmp_path).table("beauty_guesses").guess
    assert (guesses == guesses.round()).all()


def test_same_seed_same_database_other_seed_another(tmp_path: Path) -> None:
    data = game(steps=4, adaptive=True, noise_sd=5)
    a, b = run(data, tmp_path, "a"), run(data, tmp_path, "b")
    assert_same_run(a, b)
    other = copy.deepcopy(data)
    other["seed"] = 4
    c = run(other, tmp_path, "c")
    assert not content_tables(a)["beauty_guesses"].equals(content_tables(c)["beauty_guesses"])


def test_a_mixed_policy_with_the_same_params_is_the_single_policy(tmp_path: Path) -> None:
    params = {"adaptive": True, "noise_sd": 5, "level0": "anchor"}
    data = game(steps=4, **params)
    data["activation"] = {"probability": 0.7}
    one = run(data, tmp_path, "one")
    mixed = copy.deepcopy(data)
    mixed["policy"] = {"type": "mixed", "parts": [
        {"select": {"fraction": 0.3}, "params": params}, {"params": params}]}
    two = run(mixed, tmp_path, "two")
    for table in ("beauty_guesses", "beauty_rounds", "step_metrics"):
        pd.testing.assert_frame_equal(content_tables(one)[table], content_tables(two)[table])


def test_resume_after_a_crash_gives_the_uninterrupted_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = game(steps=8, adaptive=True, noise_sd=5)
    data["activation"] = {"probability": 0.8}
    data["recording"] = {"agent_state_every": 2}
    full = run(data, tmp_path, "full")
    url = f"sqlite:///{tmp_path / 'crash.sqlite'}"
    sim = Simulation(experiment_from_dict(data), db_url=url)
    crash_after(sim, 5, monkeypatch)  # checkpoint at 3: steps 4 and 5 are redone
    with pytest.raises(Crash):
        sim.run()
    assert reopen(url, sim.run_id).info["status"] == "failed"
    resumed = Simulation.resume(url, sim.run_id)
    assert resumed.step == 3
    assert_same_run(full, resumed.run())


def test_adaptive_level_k_converges_toward_nash(tmp_path: Path) -> None:
    adaptive = run(game(steps=6, size=2000, adaptive=True, level0="anchor", noise_sd=2),
                   tmp_path, "adaptive").metrics()
    distance = adaptive["nash_distance"].dropna()
    assert list(distance.index) == [1, 2, 3, 4, 5, 6]
    assert (np.diff(distance.to_numpy()) < 0).all()
    assert distance.iloc[-1] < distance.iloc[0] / 4
    # first round: 0.2 * 50 + 0.4 * 33.3 + 0.3 * 22.2 + 0.1 * 14.8 = 31.5 expected
    assert 28 < adaptive.loc[1, "mean"] < 35
    static = run(game(steps=6, size=2000), tmp_path, "static").metrics()["nash_distance"]
    assert static.iloc[-1] > 0.8 * static.iloc[1]  # without adaptation the mean stays put


def test_metrics_bins_focal_points_and_levels(tmp_path: Path) -> None:
    m = run(game(steps=2), tmp_path).metrics()
    first = m.loc[1]
    assert sum(first[f"decile.{i}"] for i in range(10)) == pytest.approx(1.0)
    assert sum(first[f"level.{k}.share"] for k in LEVELS) == pytest.approx(1.0)
    # level 1 (50p = 33.3) and level 2 (50p^2 = 22.2) guess exactly at their focal points
    assert first["focal.33.3"] >= first["level.1.share"]
    assert first["focal.22.2"] >= first["level.2.share"]
    assert first["level.1.mean"] == pytest.approx(50 * P)
    assert first["level.3.mean"] == pytest.approx(50 * P**3)
    assert first["guesses"] == 400 and first["abstained"] == 0
    assert first["nash_distance"] == first["mean"] and first["target"] == pytest.approx(
        P * first["mean"])
    assert np.isnan(m.loc[0, "mean"]) and m.loc[0, "guesses"] == 0


def test_missing_level_is_a_validation_error() -> None:
    data = game()
    del data["population"]["attributes"]["level"]
    with pytest.raises(ConfigError, match="level"):
        experiment_from_dict(data)
    data["policy"]["params"] = {"level": 1}
    experiment_from_dict(data)  # a fixed level needs no attribute
    bad = game()
    bad["population"]["attributes"]["level"] = {"dist": "categorical", "values": ["a", 1]}
    with pytest.raises(ConfigError, match="whole numbers"):
        experiment_from_dict(bad)


def test_ratio_text() -> None:
    assert ratio_text(2 / 3) == "2/3" and ratio_text(0.5) == "1/2" and ratio_text(0.7071) == "0.7071"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_validate(path: Path) -> None:
    exp = load_experiment(path)
    assert exp.scenario_cls.name == "beauty_contest"
    assert exp.config.name.endswith("beauty")
    assert path.read_text(encoding="utf-8").startswith("#")


def test_quickstart_runs_as_documented(tmp_path: Path) -> None:
    raw = copy.deepcopy(load_experiment(EXAMPLES / "quickstart.yaml").raw)
    r = run(raw, tmp_path)
    rounds = r.table("beauty_rounds")
    assert len(rounds) == 10 and (rounds.guesses == 1000).all()
    assert rounds["mean"].iloc[-1] < rounds["mean"].iloc[0] / 3


def test_llm_players_mix_with_level_k_players(tmp_path: Path) -> None:
    raw = copy.deepcopy(load_experiment(EXAMPLES / "llm_mixed.yaml").raw)
    raw.update(steps=3)
    raw["population"]["size"] = 200
    raw["policy"]["parts"][0]["select"] = {"fraction": 0.1}
    raw["llm"]["model"] = "populace-test"
    with TestServer(ServerBehaviour(seed=1)) as server:
        raw["llm"]["endpoints"][0]["base_url"] = server.url
        r = run(raw, tmp_path)
    guesses = r.table("beauty_guesses")
    llm = guesses[guesses.level == -1]
    assert 0 < len(llm) < len(guesses) and llm.guess.between(0, 100).all()
    calls = r.table("llm_calls")
    decisions = calls[calls.kind == "decision"]
    assert len(decisions) == len(llm)
    assert set(decisions.agent_id) == set(llm.agent_id)
    for response, (_, row) in zip(decisions.sort_values(["step", "agent_id"]).response,
                                  llm.sort_values(["step", "agent_id"]).iterrows(), strict=True):
        assert np.round(json.loads(response)["guess"], 2) == row.guess  # decimals: 2
    last = json.loads(decisions[decisions.step == 3].prompt.iloc[0])
    assert "2/3 of the average" in last[0]["content"]
    assert "This is round 3." in last[1]["content"] and "- round 2:" in last[1]["content"]
    assert "level" not in last[1]["content"].split("About you:")[1]  # the level is hidden
    m = r.metrics()
    assert m.loc[1, "level.llm.share"] == pytest.approx(len(llm[llm.step == 1]) / 200)
    assert m.loc[3, "llm.decisions"] == len(llm[llm.step == 3])


@pytest.mark.slow
def test_ray_shards_record_the_local_runtime_s_rows(tmp_path: Path) -> None:
    data = game(steps=5, size=1000, adaptive=True, level0="anchor", noise_sd=5)
    data["activation"] = {"probability": 0.6}
    assert_ray_matches_local(data, tmp_path, ["beauty_guesses"])


@pytest.mark.parametrize("fallback", ["do_nothing", "guess"])
def test_players_without_a_valid_answer_take_the_fallback(tmp_path: Path, fallback: str) -> None:
    data = game(steps=2, size=100)
    data["llm"] = {"backend": "openai", "model": "populace-test"}
    data["recording"] = {"do_nothing": True}
    data["policy"] = {"type": "mixed", "parts": [
        {"type": "llm", "select": {"fraction": 0.2},
         "params": {"fallback": fallback, "repair": False, "memory": {"enabled": False}}},
        {"type": "rule", "params": {}}]}
    with TestServer(ServerBehaviour(invalid_json_rate=1.0)) as server:
        data["llm"]["endpoints"] = [{"base_url": server.url}]
        r = run(data, tmp_path)
    guesses = r.table("beauty_guesses")
    llm = guesses[guesses.level == -1]
    assert len(llm) > 0
    m = r.metrics()
    if fallback == "do_nothing":
        assert (llm.action == "do_nothing").all() and llm.guess.isna().all() and not llm.won.any()
        assert m.loc[1, "abstained"] == (llm.step == 1).sum()
        assert m.loc[1, "guesses"] == 100 - m.loc[1, "abstained"]
    else:
        assert (llm.action == "guess").all() and (llm.guess == 50).all()
        assert m.loc[1, "abstained"] == 0 and m.loc[1, "level.llm.mean"] == 50
