"""`populace profiles generate`: biographies from the project's test server, cached, resumable,
checked for diversity, and usable as a population file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from populace.simulator import Simulation, load_experiment
from populace.simulator.cli import main
from populace.simulator.llm.profiles import (
    COLLAPSE_WARNING,
    INVALID,
    REQUEST_FAILED,
    ProfileAnswer,
    ProfilesInterrupted,
    diversity_report,
    generate_profiles,
)
from populace.simulator.population import build_population
from populace.simulator.rng import RngStreams
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

N_AGENTS = 60


def experiment_file(folder: Path, url: str | None, **llm: Any) -> Path:
    """A small social experiment whose `llm:` section points at ``url`` (None: no section)."""
    data: dict[str, Any] = {
        "name": "profiles_test", "seed": 11, "steps": 3,
        "scenario": {"type": "social", "feed": {"algorithm": "mix", "size": 6}},
        "population": {"size": N_AGENTS, "attributes": {
            "age": {"dist": "truncnormal", "mean": 40, "sd": 14, "low": 18, "high": 85},
            "occupation": {"dist": "categorical",
                           "values": {"student": 0.2, "employee": 0.55, "retired": 0.25}},
            "interest": {"dist": "categorical",
                         "values": ["politics", "economy", "health", "technology", "sports"]},
            "opinion": {"dist": "uniform", "low": -1, "high": 1},
        }},
        "network": {"generator": "barabasi_albert", "m": 3},
        "activation": {"probability": 0.3},
        "policy": {"type": "rule", "params": {}},
    }
    if url is not None:
        data["llm"] = {"backend": "openai", "model": "populace-test", "max_attempts": 2,
                       "timeout_s": 5, "endpoints": [{"base_url": url, "max_in_flight": 16}],
                       **llm}
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def population_of(path: Path) -> pd.DataFrame:
    """The population exactly as a run of the experiment builds it."""
    exp = load_experiment(path)
    cfg = exp.config
    return build_population(cfg.population, RngStreams(cfg.seed).get("population"),
                            exp.base_dir).attributes


def read(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)


def generate(exp: Path, out: Path, db: Path, *extra: str) -> int:
    return main(["profiles", "generate", str(exp), "--out", str(out), "--db", str(db),
                 "--quiet", *extra])


@pytest.fixture
def server():
    with TestServer(ServerBehaviour(seed=1)) as srv:
        yield srv


def test_every_agent_gets_a_valid_bio_and_its_exact_attributes(
        server: TestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    exp = experiment_file(tmp_path, server.url)
    monkeypatch.chdir(tmp_path)  # the cache goes where runs go: populace_runs/<name>.sqlite
    code = main(["profiles", "generate", str(exp), "--out", "profiles.parquet",
                 "--batch", "16"])
    assert code == 0
    captured = capsys.readouterr()
    frame = pd.read_parquet(tmp_path / "profiles.parquet")
    attrs = population_of(exp)
    assert list(frame.columns) == ["agent_id", *attrs.columns, "bio", "error"]
    assert frame["agent_id"].tolist() == list(range(N_AGENTS))
    pd.testing.assert_frame_equal(frame[list(attrs.columns)], attrs)
    for bio in frame["bio"]:
        assert ProfileAnswer.model_validate({"bio": bio}).bio == bio
    assert frame["error"].isna().all()
    assert server.stats["requests"] == N_AGENTS  # one request per agent, no repair needed
    # the answers are in the response cache of the default database, outside any run
    with sqlite3.connect(tmp_path / "populace_runs" / "profiles_test.sqlite") as conn:
        rows = conn.execute("SELECT run_id, count(*) FROM llm_cache GROUP BY run_id").fetchall()
    assert rows == [(0, N_AGENTS)]
    # progress on stderr, the report on stdout
    assert "profiles: 16/60 agents" in captured.err
    assert f"profiles: {N_AGENTS} agents in profiles.parquet" in captured.out
    assert f"diversity of {N_AGENTS} bios: distinct-1" in captured.out
    assert "population: {file: {path: profiles.parquet}}" in captured.out


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_second_call_continues_after_the_agents_in_the_file(
        server: TestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        suffix: str) -> None:
    exp, db = experiment_file(tmp_path, server.url), tmp_path / "c.sqlite"
    out = tmp_path / f"p{suffix}"
    assert generate(exp, out, db, "--limit", "25", "--batch", "10") == 0
    first = read(out)
    assert len(first) == 25 and server.stats["requests"] == 25
    assert generate(exp, out, db, "--batch", "10") == 0
    full = read(out)
    assert len(full) == N_AGENTS and full["agent_id"].tolist() == list(range(N_AGENTS))
    pd.testing.assert_frame_equal(full.iloc[:25], first)
    assert server.stats["requests"] == N_AGENTS  # only the 35 missing agents were asked
    assert full["bio"].notna().all()
    # on a complete file the command only reports
    capsys.readouterr()
    assert generate(exp, out, db) == 0
    assert server.stats["requests"] == N_AGENTS
    assert "nothing to do" in capsys.readouterr().out
    pd.testing.assert_frame_equal(read(out), full)


def test_the_response_cache_answers_a_rerun_without_the_server(
        server: TestServer, tmp_path: Path) -> None:
    exp, db = experiment_file(tmp_path, server.url), tmp_path / "c.sqlite"
    out = tmp_path / "p.parquet"
    assert generate(exp, out, db) == 0
    before = read(out)
    out.unlink()
    report = generate_profiles(load_experiment(exp), out, db_url=str(db))
    assert server.stats["requests"] == N_AGENTS  # 0 new requests
    assert report.counts["cache_hits"] == report.counts["requests"] == N_AGENTS
    pd.testing.assert_frame_equal(read(out), before)


@pytest.mark.parametrize("fault", ["invalid_json_rate", "wrong_action_rate"])
def test_invalid_answers_leave_the_bio_empty_with_the_reason(
        tmp_path: Path, fault: str, capsys: pytest.CaptureFixture[str]) -> None:
    with TestServer(ServerBehaviour(seed=1, **{fault: 1.0})) as srv:
        exp = experiment_file(tmp_path, srv.url)
        out = tmp_path / "p.parquet"
        report = generate_profiles(load_experiment(exp), out, db_url=str(tmp_path / "c.sqlite"))
        assert srv.stats["requests"] == 2 * N_AGENTS  # each answer, then one repair each
    frame = read(out)
    assert len(frame) == N_AGENTS and frame["bio"].isna().all()
    assert frame["error"].str.startswith(INVALID).all()
    assert frame["error"].str.contains("after a repair request").all()
    c = report.counts
    assert (c["requests"], c["repairs"], c["repaired"]) == (2 * N_AGENTS, N_AGENTS, 0)
    assert c["invalid"] == 2 * N_AGENTS and c["failed"] == N_AGENTS
    assert (report.failed_invalid, report.failed_requests) == (N_AGENTS, 0)
    assert f"without a bio: {N_AGENTS} agents ({N_AGENTS} invalid answers" in report.text()
    assert report.diversity.bios == 0
    # nothing was invented, and an invalid answer is final: a new call asks nothing
    again = generate_profiles(load_experiment(exp), out, db_url=str(tmp_path / "c.sqlite"))
    assert again.written == 0
    # the command says so and fails; the invalid answers come from the cache this time
    assert generate(exp, tmp_path / "q.csv", tmp_path / "c.sqlite") == 1
    assert "no agent got a biography" in capsys.readouterr().err
    assert read(tmp_path / "q.csv")["error"].tolist() == frame["error"].tolist()


def test_some_invalid_answers_are_repaired_and_the_counts_add_up(tmp_path: Path) -> None:
    with TestServer(ServerBehaviour(seed=2, invalid_json_rate=0.3,
                                    wrong_action_rate=0.2)) as srv:
        exp = experiment_file(tmp_path, srv.url)
        out = tmp_path / "p.csv"
        report = generate_profiles(load_experiment(exp), out, db_url=str(tmp_path / "c.sqlite"),
                                   batch=25)
        faulted = srv.stats["invalid_json"] + srv.stats["wrong_action"]
    frame = read(out)
    c = report.counts
    assert c["invalid"] == faulted > 0
    assert c["repairs"] == c["requests"] - N_AGENTS > 0
    assert 0 < c["repaired"] <= c["repairs"]
    assert c["failed"] == c["repairs"] - c["repaired"] == int(frame["bio"].isna().sum())
    assert (frame["bio"].isna() == frame["error"].notna()).all()
    assert frame["bio"].dropna().map(lambda b: 20 <= len(b) <= 800).all()


def test_failed_requests_are_counted_and_asked_again_in_order(tmp_path: Path) -> None:
    with TestServer(ServerBehaviour(seed=1, error_rate=0.4)) as srv:
        exp = experiment_file(tmp_path, srv.url, max_attempts=1, timeout_s=2)
        out, db = tmp_path / "p.parquet", str(tmp_path / "c.sqlite")
        report = generate_profiles(load_experiment(exp), out, db_url=db, batch=20)
        frame = read(out)
        failed = frame["bio"].isna()
        assert report.counts["request_errors"] == int(failed.sum()) > 0
        assert frame.loc[failed, "error"].str.startswith(REQUEST_FAILED).all()
        assert report.failed_requests == int(failed.sum())
        assert "run the command again" in report.text()
        srv.behaviour.error_rate = 0.0
        sent = srv.stats["requests"]
        again = generate_profiles(load_experiment(exp), out, db_url=db, batch=20)
        assert srv.stats["requests"] - sent == int(failed.sum())  # only those were asked again
    assert again.written == int(failed.sum())
    final = read(out)
    assert final["agent_id"].tolist() == list(range(N_AGENTS))  # row i is agent i again
    assert final["bio"].notna().all() and final["error"].isna().all()
    pd.testing.assert_frame_equal(final[~failed], frame[~failed])


def test_ctrl_c_keeps_the_chunks_written(server: TestServer, tmp_path: Path) -> None:
    exp, db = experiment_file(tmp_path, server.url), tmp_path / "c.sqlite"
    out = tmp_path / "p.parquet"
    calls = []

    def interrupt(line: str) -> None:
        calls.append(line)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(ProfilesInterrupted) as info:
        generate_profiles(load_experiment(exp), out, db_url=str(db), batch=10,
                          progress=interrupt)
    assert info.value.rows == 20
    assert read(out)["agent_id"].tolist() == list(range(20))
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    assert generate(exp, out, db, "--batch", "10") == 0
    assert len(read(out)) == N_AGENTS and server.stats["requests"] == N_AGENTS


def test_an_experiment_without_llm_section_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = experiment_file(tmp_path, None)
    assert generate(exp, tmp_path / "p.parquet", tmp_path / "c.sqlite") == 1
    err = capsys.readouterr().err
    assert "has no `llm:` section" in err and "Traceback" not in err
    assert not (tmp_path / "p.parquet").exists()


def test_a_file_of_another_population_is_not_continued(
        server: TestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp, db = experiment_file(tmp_path, server.url), tmp_path / "c.sqlite"
    out = tmp_path / "p.csv"
    assert generate(exp, out, db, "--limit", "5") == 0
    text = exp.read_text().replace("seed: 11", "seed: 12")
    exp.write_text(text)
    capsys.readouterr()
    assert generate(exp, out, db) == 1
    assert "was written for another population" in capsys.readouterr().err


def test_a_template_can_replace_the_prompt_and_undefined_names_are_errors(
        server: TestServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp, db = experiment_file(tmp_path, server.url), tmp_path / "c.sqlite"
    out = tmp_path / "p.parquet"
    template = tmp_path / "mine.j2"
    # the test server answers "ANSWER: <text>" lines verbatim
    template.write_text(
        "{% block system %}Biographies for {{ experiment }}.{% endblock %}\n"
        "{% block user %}ANSWER: {\"bio\": \"I am {{ attributes.age | int }}, a "
        "{{ attributes.occupation }} who follows {{ attributes.interest }}.\"}{% endblock %}\n")
    assert generate(exp, out, db, "--template", str(template)) == 0
    frame = read(out)
    expected = [f"I am {int(a)}, a {o} who follows {i}." for a, o, i in
                zip(frame["age"].round(2), frame["occupation"], frame["interest"], strict=True)]
    assert frame["bio"].tolist() == expected
    bad = tmp_path / "bad.j2"
    bad.write_text("{% block user %}{{ attributes.age }} {{ hobby }}{% endblock %}")
    capsys.readouterr()
    assert generate(exp, tmp_path / "q.parquet", db, "--template", str(bad)) == 1
    err = capsys.readouterr().err
    assert "bad.j2" in err and "'hobby' is undefined" in err
    assert not (tmp_path / "q.parquet").exists()
    # the shared system block may not use an agent's variables
    shared = tmp_path / "shared.j2"
    shared.write_text("{% block system %}{{ attributes }}{% endblock %}"
                      "{% block user %}x{% endblock %}")
    assert generate(exp, tmp_path / "q.parquet", db, "--template", str(shared)) == 1
    assert "shared by every agent" in capsys.readouterr().err


def test_diversity_of_hand_made_bios() -> None:
    same = ["I grow tomatoes on my balcony and argue about football."] * 10
    r = diversity_report(same)
    assert r.bios == 10 and r.duplicate_share == 1.0
    assert (r.distinct_1, r.distinct_2, r.distinct_3) == (0.1, 0.1, 0.1)  # 10/100, 9/90, 8/80
    assert r.mean_jaccard == 1.0 and (r.mean_words, r.min_words, r.max_words) == (10, 10, 10)
    assert r.warning is not None and COLLAPSE_WARNING in r.warning
    assert any(COLLAPSE_WARNING in line for line in r.lines())

    # n-grams never run from one bio into the next; missing bios are skipped
    r = diversity_report(["Alpha beta gamma.", None, "alpha BETA, delta!", "Epsilon zeta"])
    assert r.bios == 3
    assert r.distinct_1 == 6 / 8  # alpha beta gamma delta epsilon zeta / 8 words
    assert r.distinct_2 == 4 / 5  # (alpha beta) twice, (beta gamma) (beta delta) (eps zeta)
    assert r.distinct_3 == 2 / 2
    assert r.mean_jaccard == pytest.approx((2 / 4 + 0 + 0) / 3)
    assert r.duplicate_share == 0.0 and r.warning is None
    assert (r.mean_words, r.min_words, r.max_words) == (pytest.approx(8 / 3), 2, 3)

    r = diversity_report(["I'm here now", "I'm here now", "we left early", "they stay late",
                          "you come soon", "she reads books", "he rides bikes", "it rains hard",
                          "cats sleep all day"])
    assert r.duplicate_share == pytest.approx(2 / 9) and "duplicates 22.2% > 1%" in r.warning

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(300)]
    many = [" ".join(rng.choice(vocab, 12)) for _ in range(700)]
    a, b = diversity_report(many, seed=3), diversity_report(many, seed=3)
    assert a.jaccard_sample == 500 and a.mean_jaccard == b.mean_jaccard
    assert 0 < a.mean_jaccard < 0.1 and a.distinct_3 > 0.99

    empty = diversity_report([None, None])
    assert empty.bios == 0 and empty.warning is None and "no biographies" in empty.lines()[0]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_profiles_file_is_a_population_a_run_uses(
        server: TestServer, tmp_path: Path, suffix: str) -> None:
    exp, out = experiment_file(tmp_path, server.url), tmp_path / f"profiles{suffix}"
    assert generate(exp, out, tmp_path / "c.sqlite") == 0
    profiles = read(out)
    data = yaml.safe_load(exp.read_text())
    del data["llm"]
    data["name"] = "with_profiles"
    data["population"] = {"file": {"path": out.name}}  # file first, relative to the YAML
    second = tmp_path / "run.yaml"
    second.write_text(yaml.safe_dump(data), encoding="utf-8")
    sim = Simulation(load_experiment(second), db_url=f"sqlite:///{tmp_path / 'run.sqlite'}")
    run = sim.run()
    assert run.info["status"] == "completed" and run.info["n_agents"] == N_AGENTS
    attrs = sim.world.population.attributes
    assert attrs["bio"].tolist() == profiles["bio"].tolist()
    assert attrs["agent_id"].tolist() == list(range(N_AGENTS))  # row i is agent i
    assert run.agents()["bio"].tolist() == profiles["bio"].tolist()  # recorded with the run
