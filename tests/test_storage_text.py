"""Any agent text is stored and read back exactly, on SQLite and PostgreSQL (NUL included).

PostgreSQL text cannot hold NUL: storage escapes it reversibly on PostgreSQL only (see
docs/storage.md), and everything Populace reads decodes it.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
from populace.storage import Database, StorageError, export_run, open_run
from populace.storage.database import escape_text, unescape_text
from populace.storage.runs import find_run, list_runs, update_run

from .conftest import experiment
from .test_storage import Sample, new_run  # noqa: F401  (Sample declares test_samples)

E = "\ue000"
HOSTILE = [
    "nul\x00inside", "\x00", "\x00\x00", E, E + "0", E + E, E + "\x00", "\x00" + E + "0",
    "0" + E + "00", "back\\slash\\N", "\\N", "\\\\N", "\\x00", "tab\there", "new\nline",
    "cr\rlf\r\n", "'); DROP TABLE runs; --", "<script>alert(1)</script>", "é ünï 中文 🙂",
    "\x01\x02\x1f\x7f", "", None, "x" * 1_000_000 + "\x00" + E,
]


def _text(values: pd.Series) -> list:
    return [None if (isinstance(v, float) and math.isnan(v)) else v for v in values]


def test_the_escape_is_reversible_and_leaves_ordinary_text_alone() -> None:
    for n in range(6):  # every string of up to 5 characters over the awkward alphabet
        for chars in itertools.product(["\x00", E, "0", "a"], repeat=n):
            text = "".join(chars)
            assert unescape_text(escape_text(text)) == text
            assert "\x00" not in escape_text(text)
    assert escape_text("plain text, \\N and all") == "plain text, \\N and all"


def test_hostile_text_round_trips_through_every_path(tmp_path: Path, any_url: str) -> None:
    db = Database(any_url)
    run_id = new_run(db, name="hostile\x00" + E)
    n = len(HOSTILE)
    with db.transaction() as conn:  # the bulk path (COPY on PostgreSQL)
        db.insert_columns(conn, "test_samples", run_id, {
            "step": np.arange(n), "agent_id": np.arange(n), "label": HOSTILE,
            "value": np.zeros(n), "flag": np.ones(n, dtype=bool), "blob": [b"\x00" + E.encode()] * n})
    error = "ValueError: model said \x00 and " + E + "0 \\N"
    update_run(db, run_id, error=error)  # the SQLAlchemy path
    with db.transaction() as conn:
        conn.execute(sa.update(sa.table("runs", sa.column("id"), sa.column("config_yaml")))
                     .where(sa.column("id") == run_id).values(config_yaml="yaml\x00" + E))
    run = open_run(any_url, "hostile\x00" + E)  # a name with NUL is found
    assert run.id == run_id
    assert run.info["error"] == error and run.info["config_yaml"] == "yaml\x00" + E
    assert find_run(db, run_id)["name"] == "hostile\x00" + E
    assert list_runs(db)["name"].tolist() == ["hostile\x00" + E]
    frame = run.table("test_samples")
    assert _text(frame["label"]) == HOSTILE
    assert [bytes(b) for b in frame["blob"]] == [b"\x00" + E.encode()] * n
    files = export_run(run, "parquet", tmp_path / "out")
    exported = pd.read_parquet(tmp_path / "out" / "test_samples.parquet")
    assert _text(exported["label"]) == HOSTILE
    assert pd.read_parquet(files[0])["error"].tolist() == [error]
    db.dispose()


def test_postgresql_holds_nul_as_the_documented_escape(pg_url: str) -> None:
    """What raw SQL users see: ordinary text unchanged, NUL and U+E000 escaped."""
    db = Database(pg_url)
    run_id = new_run(db)
    with db.transaction() as conn:
        db.insert_columns(conn, "test_samples", run_id, {
            "step": [0, 1], "agent_id": [0, 1], "label": ["plain", "a\x00b" + E],
            "value": [0.0, 0.0], "flag": [True, True], "blob": [None, None]})
    raw = sa.create_engine(pg_url)
    with raw.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT encode(convert_to(label, 'UTF8'), 'hex') FROM test_samples ORDER BY step")
        ).scalars().all()
    raw.dispose()
    assert bytes.fromhex(stored[0]).decode() == "plain"
    assert bytes.fromhex(stored[1]).decode() == "a" + E + "0b" + E + E
    db.dispose()


def test_string_parameters_stay_untyped_on_postgresql(pg_url: str) -> None:
    """The escaping adapters keep psycopg's default for str (type left to the server), so
    users' own SQL through ``db.engine`` compares strings with dates and numbers as before."""
    db = Database(pg_url)
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT now() > :t"), {"t": "2000-01-01"}).scalar()
        assert conn.execute(sa.text("SELECT 1 + :t"), {"t": "2"}).scalar() == 3
        assert conn.execute(sa.text("SELECT :t"), {"t": "a\x00" + E}).scalar() == "a\x00" + E
    db.dispose()


def test_lone_surrogates_are_refused_with_a_message(any_url: str) -> None:
    # the LLM pipeline cannot produce them (orjson and pydantic reject a lone \ud800 escape);
    # code that stores one directly gets an explanation, not a UnicodeEncodeError
    db = Database(any_url)
    run_id = new_run(db)
    with pytest.raises(StorageError, match="not valid Unicode"), db.transaction() as conn:
        db.insert_columns(conn, "test_samples", run_id, {
            "step": [0], "agent_id": [0], "label": ["\ud800"], "value": [0.0],
            "flag": [True], "blob": [None]})
    db.dispose()


NUL_POST = "I\x00 say \\N\t" + E + "0 <b>bold</b>"


@pytest.fixture
def nul_server():
    srv = TestServer(ServerBehaviour(seed=3))
    url = srv.start_in_thread()
    yield url
    srv.stop_thread()


def _nul_experiment(url: str, tmp_path: Path) -> dict:
    templates = tmp_path / "prompts"
    templates.mkdir(exist_ok=True)
    answer = json.dumps({"action": "create_post", "topic": "politics", "content": NUL_POST,
                         "stance": 0.5})
    (templates / "agent.j2").write_text(f"You are user {{{{ agent_id }}}}.\nANSWER: {answer}\n")
    data = experiment(steps=3, activation={"probability": 0.5}, llm={
        "backend": "openai", "model": "populace-test", "max_attempts": 2, "timeout_s": 5,
        "endpoints": [{"base_url": url, "max_in_flight": 16}]})
    data["population"] = {**data["population"], "size": 60}
    data["policy"] = {"type": "llm", "params": {"templates": str(templates),
                                                "memory": {"enabled": False}}}
    return data


@pytest.mark.slow
def test_an_llm_run_whose_model_writes_nul_completes_on_both_back_ends(
        nul_server: str, tmp_path: Path, sqlite_url: str, pg_url: str) -> None:
    data = _nul_experiment(nul_server, tmp_path)
    posts = {}
    for url in (sqlite_url, pg_url):
        run = Simulation(experiment_from_dict(data), db_url=url).run()
        assert run.info["status"] == "completed", run.info["error"]
        posts[url] = open_run(url, run.id).table("posts")
        run.db.dispose()
    written = posts[pg_url]["content"].dropna()
    assert len(written) > 0 and (written == NUL_POST).all()
    pd.testing.assert_frame_equal(posts[pg_url], posts[sqlite_url], check_dtype=False)
