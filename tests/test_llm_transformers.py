"""The in-process torch + transformers backend on the CPU, with a tiny model built here from a
config (random weights) and a byte-level tokenizer trained on a few kB of text: every
constrained answer validates, the shared-prefix path gives the plain path's tokens, an
out-of-memory error halves the batch, sampling is fixed by the seed, and a whole run of
language-model agents goes through it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

# the slow lane (scripts/test, CI), where scripts/setup-transformers installs the extra
pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("xgrammar")

from populace.simulator.llm.config import LLMConfig  # noqa: E402
from populace.simulator.llm.transformers_backend import (  # noqa: E402
    TransformersBackend,
    _is_oom,
    bounded_schema,
    common_prefix,
)
from populace.simulator.llm.types import ChatRequest  # noqa: E402

from .helpers import local_ray, run_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["reasoning", "guess"],
          "properties": {"reasoning": {"type": "string", "maxLength": 600},
                         "guess": {"type": "integer", "minimum": 0, "maximum": 100}}}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (grouped-query attention) with random weights and a byte-level BPE
    tokenizer trained on the README, saved as a Hugging Face model folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    folder = tmp_path_factory.mktemp("tiny-model")
    text = (ROOT / "README.md").read_text(encoding="utf-8")[:20_000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                              pad_token="<|pad|>")
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        pad_token_id=hf.pad_token_id, eos_token_id=hf.eos_token_id, bos_token_id=None)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def backend(folder: Path, **settings: Any) -> TransformersBackend:
    llm = LLMConfig(backend="transformers", model=str(folder), temperature=0.0,
                    max_tokens=96, transformers={"device": "cpu", "max_text_chars": 24,
                                                 **settings})
    return TransformersBackend(llm)


def requests(n: int, *, temperature: float = 0.0, seed: int = 1) -> list[ChatRequest]:
    system = ("You are playing the guess 2/3 of the average game with many players. Pick a "
              "number from 0 to 100. Answer with JSON.")
    return [ChatRequest([{"role": "system", "content": system},
                         {"role": "user", "content": f"You are player {i}; round {1 + i % 3}."
                          + " Think." * (i % 4)}],
                        "tiny", SCHEMA, temperature=temperature, max_tokens=96,
                        seed=seed + i, key=i) for i in range(n)]


def beauty_of_llm_agents(model: Path) -> dict[str, Any]:
    """Six language-model players of the beauty contest for two rounds, on ``model``."""
    return {
        "name": "tiny", "seed": 4, "steps": 2, "step_duration": "1d",
        "scenario": {"type": "beauty_contest", "history": 2, "level_attribute": None},
        "population": {"size": 6},
        "policy": {"type": "llm", "params": {"memory": {"enabled": False}}},
        "llm": {"backend": "transformers", "model": str(model), "temperature": 0.0,
                "max_tokens": 96, "transformers": {"device": "cpu", "max_text_chars": 24}},
    }


def answers(b: TransformersBackend, reqs: list[ChatRequest]) -> list[str]:
    return [r.text for r in asyncio.run(b.generate(reqs))]


def test_every_constrained_answer_is_valid_json_of_its_schema(tiny_model: Path) -> None:
    b = backend(tiny_model)
    texts = answers(b, requests(12))
    for text in texts:
        value = json.loads(text)
        assert set(value) == {"reasoning", "guess"}
        assert 0 <= value["guess"] <= 100 and len(value["reasoning"]) <= 24
    assert b.health()["grammar_violations"] == 0 and b.health()["unterminated"] == 0
    assert b._grammar_s > 0 and "grammar_ms" in b.health()  # the grammar's host time


def test_the_shared_prefix_path_gives_the_plain_path_s_tokens(tiny_model: Path) -> None:
    cached, plain = backend(tiny_model), backend(tiny_model, prefix_cache=False)
    reqs = requests(9)
    assert answers(cached, reqs) == answers(plain, reqs)
    assert cached.health()["shared_prefix_tokens"] > 0
    assert plain.health()["shared_prefix_tokens"] == 0
    # one request alone (no padding, no shared prefix) answers as it does in the batch
    assert answers(plain, reqs[4:5]) == answers(cached, reqs)[4:5]


@pytest.mark.parametrize("static", [True, False])
def test_an_out_of_memory_error_halves_the_batch(tiny_model: Path, static: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A prefill of more than 2 rows runs out of memory (simulated), and so does the static
    decoder's first refill: the batch is halved each time, the requests not done yet are
    answered again, those done keep their answers, and every answer is the one without."""
    reqs = requests(8)
    expected = answers(backend(tiny_model, static_decode=static), reqs)
    b = backend(tiny_model, static_decode=static)
    start, refill = b._start, b._refill
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
    refills: list[int] = []

    def small_memory(ids: list[list[int]], prefix: int, decoder: Any) -> Any:
        if len(ids) > 2:
            raise oom
        return start(ids, prefix, decoder)

    def first_refill_fails(decoder: Any, slots: list[int], rows: list[Any]) -> None:
        refills.append(len(slots))
        if len(refills) == 1:
            raise oom
        refill(decoder, slots, rows)

    monkeypatch.setattr(b, "_start", small_memory)
    monkeypatch.setattr(b, "_refill", first_refill_fails)
    assert answers(b, reqs) == expected
    # 8 -> 4 -> 2 rows a batch; the static decoder streams the rest and its first refill
    # fails: -> 1 row, refilled 5 times (2 answers were done before it failed)
    assert b.health()["oom_halvings"] == (3 if static else 2)
    assert b.batch == (1 if static else 2)
    assert refills == ([2, 1, 1, 1, 1, 1] if static else [])
    assert b.health()["static_rows"] == (2 + 1 + 5 if static else 0)


def test_the_static_decoder_refills_rows_whose_answers_are_done(tiny_model: Path) -> None:
    """Answers of different lengths (max_tokens from 3 to 40), 4 rows a batch: the static
    decoder gives rows whose answers are done the next requests while the others go on
    decoding (its cache a ring), and every answer is what transformers' forward gives one
    batch after another. Also with sampling, whose draws follow each row's seed and token
    index: the same answers however the rows are batched."""
    reqs = [ChatRequest(r.messages, "tiny", None, temperature=0.0, max_tokens=3 + 37 * i // 10,
                        key=i) for i, r in enumerate(requests(11))]
    fast, generic = backend(tiny_model, max_batch=4), backend(tiny_model, max_batch=4,
                                                              static_decode=False)
    texts = answers(fast, reqs)
    assert texts == answers(generic, reqs)
    health = fast.health()
    assert health["refills"] >= 3 and health["static_rows"] == 11
    assert health["grammar_ms"] == 0  # no schema, no grammar
    assert health["decode_steps"] < generic.health()["decode_steps"]  # no waiting for the longest
    drawn = [ChatRequest(r.messages, "tiny", None, temperature=1.0, max_tokens=r.max_tokens,
                         seed=50 + r.key, key=r.key) for r in reqs]
    by_four = answers(fast, drawn)
    assert by_four == answers(backend(tiny_model, max_batch=16), drawn)
    assert by_four == answers(backend(tiny_model, max_batch=4, static_decode=False), drawn)
    assert by_four != texts


def test_the_grammar_s_work_in_threads_gives_the_same_answers(
        tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from populace.simulator.llm import transformers_backend

    reqs = requests(12)
    alone = answers(backend(tiny_model), reqs)
    monkeypatch.setattr(transformers_backend, "GRAMMAR_ROWS_PER_THREAD", 2)
    b = backend(tiny_model)
    assert answers(b, reqs) == alone
    assert b._pool is not None  # the rows were split between threads
    asyncio.run(b.close())


def test_prompts_are_the_chat_template_s(tiny_model: Path) -> None:
    """Rendered once per shape (the template only copies contents): the tokens of each
    request's own rendering, also for an odd one out."""
    b = backend(tiny_model)
    reqs = requests(70)
    reqs[40].messages[1]["content"] = "  spaced  "
    reqs.append(ChatRequest([{"role": "user", "content": "alone"}], "tiny", None, key=99))
    expected = [b.tokenizer(b.tokenizer.apply_chat_template(
        r.messages, tokenize=False, add_generation_prompt=True),
        add_special_tokens=False).input_ids for r in reqs]
    assert b._prompt_ids(reqs) == expected
    assert answers(b, []) == []  # every request answered from the cache: nothing to do


def test_sampling_is_fixed_by_the_seed(tiny_model: Path) -> None:
    b = backend(tiny_model)
    first = answers(b, requests(6, temperature=1.0, seed=7))
    assert answers(b, requests(6, temperature=1.0, seed=7)) == first
    assert answers(b, requests(6, temperature=1.0, seed=8)) != first
    assert all(json.loads(t)["guess"] <= 100 for t in first)


def tiny_of(kind: str, folder: Path, tokenizer_from: Path) -> Path:
    """A 2-layer model of ``kind`` (grouped-query attention) with the tiny model's tokenizer."""
    hf = transformers.AutoTokenizer.from_pretrained(tokenizer_from)
    hf.save_pretrained(folder)
    torch.manual_seed(1)
    extra = {"attention_bias": True} if kind == "qwen2" else {}
    config = transformers.AutoConfig.for_model(
        kind, vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
        pad_token_id=hf.pad_token_id, eos_token_id=hf.eos_token_id, bos_token_id=None,
        **extra)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3", "mistral"])
def test_the_static_decoder_gives_transformers_tokens(kind: str, tiny_model: Path,
                                                      tmp_path: Path) -> None:
    """Our prefill and decode (static cache, folded grouped-query attention) against
    transformers' forward, greedy, in float32: the same tokens, chunks of 3 rows, the last one
    with an idle row (8 requests)."""
    folder = tiny_model if kind == "llama" else tiny_of(kind, tmp_path, tiny_model)
    fast = backend(folder, max_batch=3)
    generic = backend(folder, max_batch=3, static_decode=False)
    assert fast.static_reason is None and generic.static_reason == "static_decode: false"
    reqs = requests(8)
    assert answers(fast, reqs) == answers(generic, reqs)
    assert fast.health()["static_rows"] == 8 and generic.health()["static_rows"] == 0
    assert [d.batch for d in fast._decoders] == [3]  # one decoder for the chunks (3, 3, 2)
    answers(fast, reqs[:1])  # a small batch (e.g. repairs) gets a decoder of its own
    assert [d.batch for d in fast._decoders] == [3, 1]
    answers(fast, reqs[1:7])  # and the large one is kept: 6 rows in 2 chunks of 3
    assert [d.batch for d in fast._decoders] == [1, 3]


@pytest.mark.parametrize("variant", ["plain", "blocks", "transposed-attention-output"])
def test_the_static_decoder_s_logits_are_the_model_s(tiny_model: Path, variant: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefill (shared prefix and padding) and four decode steps: each row's logits are those
    of the model's forward on the row's whole sequence, without cache or padding. Also with
    the prefill in blocks of one row, and with attention output in the layout CUDA's
    memory-efficient kernel returns (transposed, not contiguous)."""
    from populace.simulator.llm import static_decode
    from populace.simulator.llm.static_decode import StaticDecoder

    if variant == "transposed-attention-output":
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def transposed(*args: Any, **kwargs: Any) -> Any:
            return sdpa(*args, **kwargs).transpose(1, 2).contiguous().transpose(1, 2)

        monkeypatch.setattr(static_decode.F, "scaled_dot_product_attention", transposed)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    prompts = [[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 20], [5, 6, 7, 8, 30, 31, 32, 33, 34]]
    decoder = StaticDecoder(model, 4, 32)  # a row more than the prompts: an idle row
    blocks = {"block_tokens": 5} if variant == "blocks" else {}  # one 5-token row a block
    logits = decoder.prefill(prompts, 4, 0, **blocks)
    sequences = [list(p) for p in prompts]
    for _ in range(4):
        with torch.inference_mode():
            for k, seq in enumerate(sequences):
                expected = model(input_ids=torch.tensor([seq])).logits[0, -1]
                torch.testing.assert_close(logits[k], expected, atol=1e-4, rtol=1e-4)
        chosen = logits[:3].argmax(-1)
        for k, token in enumerate(chosen.tolist()):
            sequences[k].append(token)
        logits = decoder.step(chosen)[:3]


def test_other_architectures_use_transformers_forward(tiny_model: Path, tmp_path: Path) -> None:
    from populace.simulator.llm.static_decode import unsupported

    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert "gpt2" in unsupported(gpt2)
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, rope_scaling={"rope_type": "dynamic", "factor": 2.0}))
    assert "dynamic" in unsupported(llama)


def test_helpers() -> None:
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix([[5], [6]]) == 0 and common_prefix([]) == 0
    bounded = bounded_schema({"type": "object", "properties": {
        "a": {"type": "string", "maxLength": 600}, "b": {"type": "string"},
        "c": {"type": "string", "enum": ["x", "y"]}, "d": {"type": "string", "maxLength": 5}}},
        24)
    props = bounded["properties"]
    assert props["a"]["pattern"] == props["b"]["pattern"] == '^[^\\x00-\\x1f"\\\\]{0,24}$'
    assert props["c"] == {"type": "string", "enum": ["x", "y"]}
    assert props["d"]["pattern"].endswith("{0,5}$") and "maxLength" not in props["d"]
    # what halves the batch: the device's memory, also as a library's failed allocation
    assert _is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert _is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert not _is_oom(RuntimeError("CUDA error: device-side assert triggered"))


def test_a_run_of_language_model_agents_goes_through_the_backend(tiny_model: Path,
                                                                  tmp_path: Path) -> None:
    data = beauty_of_llm_agents(tiny_model)
    run = run_experiment(data, f"sqlite:///{tmp_path / 'run.sqlite'}")
    assert run.info["status"] == "completed"
    calls = run.table("llm_calls")
    decisions = calls[calls.kind == "decision"]
    assert len(decisions) == 12 and decisions.valid.all()
    guesses = run.table("beauty_guesses")
    assert len(guesses) == 12 and guesses.guess.between(0, 100).all()
    last = run.metrics().iloc[-1]
    assert last["llm.fallbacks"] == 0 and last["llm.grammar_violations"] == 0
    assert last["llm.shared_prefix_tokens"] > 0
    again = run_experiment(data, f"sqlite:///{tmp_path / 'again.sqlite'}")
    assert list(again.table("llm_calls").response) == list(calls.response)


def test_a_mixed_policy_with_memory_then_a_replay_of_it(tiny_model: Path,
                                                        tmp_path: Path) -> None:
    """Half the players are language-model agents with memory, half the rule policy; a replay
    of the run reproduces every guess from the recorded calls, with no model."""
    data = beauty_of_llm_agents(tiny_model)
    data["steps"] = 3
    data["policy"] = {"type": "mixed", "parts": [
        {"select": {"fraction": 0.5}, "type": "llm",
         "params": {"memory": {"enabled": True, "capacity": 4}}},
        {"type": "rule", "params": {"level": 1}}]}
    db = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    original = run_experiment(data, db)
    assert original.info["status"] == "completed"
    calls = original.table("llm_calls")
    decisions = calls[calls.kind == "decision"]
    llm_agents = decisions.agent_id.nunique()
    assert 1 <= llm_agents < 6 and len(decisions) == 3 * llm_agents and decisions.valid.all()
    last = decisions[decisions.step == 3].prompt
    # the JSON-encoded prompts of the last step hold what the agents remember
    assert last.str.contains("You remember:\\n- In round 2 I guessed", regex=False).all()
    replay = {**data, "llm": {"backend": "replay", "replay": original.id}}
    replayed = run_experiment(replay, db)
    assert replayed.info["status"] == "completed"
    assert set(replayed.table("llm_calls").source) == {"replay"}
    cols = ["step", "agent_id", "guess"]
    assert original.table("beauty_guesses")[cols].equals(replayed.table("beauty_guesses")[cols])


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    from populace.simulator.llm.types import BackendError

    with pytest.raises(BackendError, match="no local Hugging Face model"):
        TransformersBackend(LLMConfig(backend="transformers", model=str(tmp_path / "nope"),
                                      transformers={"device": "cpu"}))


@pytest.mark.slow
@pytest.mark.parametrize("actor", [False, True], ids=["model-per-shard", "model-actor"])
def test_shards_of_the_ray_runtime_answer_as_the_local_runtime(tiny_model: Path, actor: bool,
                                                               tmp_path: Path) -> None:
    """Each Ray shard loads the model and decides for its agents, or sends its requests to
    one model actor (``ray_actor``, here without a GPU): the answers and the guesses are the
    local run's (timings aside)."""
    pytest.importorskip("ray")
    data = beauty_of_llm_agents(tiny_model)
    local = run_experiment(data, f"sqlite:///{tmp_path / 'local.sqlite'}")
    if actor:
        data["llm"]["transformers"].update(ray_actor=True, ray_num_gpus=0)
    with local_ray() as ray:
        sharded = run_experiment({**data, "runtime": {"type": "ray", "shards": 2}},
                                 f"sqlite:///{tmp_path / 'ray.sqlite'}")
        if actor:  # asking for a GPU the cluster lacks is an error at once, not a wait
            from populace.simulator.llm.model_actor import start_model_actor
            from populace.simulator.llm.types import BackendError

            llm = LLMConfig.model_validate({**data["llm"], "transformers": {
                **data["llm"]["transformers"], "ray_num_gpus": 1}})
            with pytest.raises(BackendError, match="has 0 GPUs"):
                start_model_actor(ray, llm, tmp_path, "no-gpu", 60)
    by_agent = ["step", "agent_id"]
    for table, columns in (("llm_calls", ["agent_id", "response"]),
                           ("beauty_guesses", ["agent_id", "guess", "won"])):
        a = local.table(table).sort_values(by_agent)[columns].reset_index(drop=True)
        b = sharded.table(table).sort_values(by_agent)[columns].reset_index(drop=True)
        assert a.equals(b), table
    # the shards' counters add up to the local run's (the actor gives each batch's to one)
    for name in ("llm.static_rows", "llm.shared_prefix_tokens"):
        assert sharded.metrics()[name].sum() > 0
    assert sharded.metrics()["llm.static_rows"].sum() == local.metrics()["llm.static_rows"].sum()
    # batches the model actor decoded: at least one a step (the shards' requests merged into
    # one when they arrive together), none without the actor
    batches = sharded.metrics()["llm.actor_batches"].sum()
    assert (2 <= batches <= 4) if actor else batches == 0
