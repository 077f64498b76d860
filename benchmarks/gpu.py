"""GPU benchmark of the in-process transformers backend: a step of N language-model agents of
the social scenario through the whole Populace path, next to plain ``generate``.

Usage::

    python benchmarks/gpu.py --out gpu.json                     # on a GPU: the three shapes
    python benchmarks/gpu.py --shapes tiny --agents 40 --device cpu   # the CPU check

Nothing is downloaded. For each model shape (the published configurations of Qwen2.5-0.5B,
Qwen2.5-1.5B and Llama-3-8B, or ``tiny``), a model with random weights is built from its
config on the device and saved (bf16 on a GPU) with a byte-level BPE tokenizer trained here on
the project's docs and a ChatML template. The model keeps its published vocabulary size, and so
does the tokenizer: its few thousand trained tokens encode the prompts, and tokens made of two
of them fill the vocabulary (less 256 ids left unused, as a published model pads its own), so
that the grammar's host work and the choice of tokens are those of a full vocabulary.

First, a check of the decode paths (seconds): a tiny model in float32 on the device answers 64
constrained requests through the static decoder with CUDA graphs, without them, and through
transformers' forward; the share of answers that agree with transformers' forward and the
share that parse are reported (``paths``). Then, for each shape:

1. Populace: the social scenario's ``llm_agents`` example with N agents (``--agents``, default
   10,000), every agent a language-model agent, every agent active, the response cache off,
   temperature 0, structured output (the decision's JSON schema as a grammar), through
   ``llm: {backend: transformers}``; the second step is timed (the first warms up). Reported:
   decisions/s (decisions over the step's decide seconds, repairs included), the share of
   first answers that validate and their mean new tokens, prefill and decode seconds, the
   step's other (host) seconds, decode milliseconds per step (one token for every row of a
   chunk) and the grammar's host milliseconds per step (overlapped with the step: beyond its
   time, the device waits), rows on the static decoder, failed graph captures, prompt tokens
   the shared prefix saved, peak GPU memory.
2. Plain ``generate``: the same prompts (the step's, from ``llm_calls``), left-padded, greedy,
   exactly ``--new-tokens`` (24) new tokens each, at the shape's batch, two batches timed.

Last, if time is left (``mixed``): answers of mixed lengths, as a real model's are (a like is
a few tokens, a post many): ``--mixed-batches`` (2) batches' worth of unconstrained requests
of the first shape, each with ``max_tokens`` from 12 to 120 (a third of them 80 or 120),
through the backend with the static decoder's refill (rows whose answers are done take the
next requests) and without it (``REFILL_SHARE = 1``: the next batch starts when the whole
batch is done): requests/s and decode steps of each.

Figures go to stdout and ``--out``; docs/benchmarks.md ("GPU") records them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from environment import environment

ROOT = Path(__file__).resolve().parents[1]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
             "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 4096},
    "qwen2.5-0.5b": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                     "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                     "num_attention_heads": 14, "num_key_value_heads": 2,
                     "vocab_size": 151936, "tie_word_embeddings": True,
                     "rope_theta": 1000000.0},
    "qwen2.5-1.5b": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                     "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                     "num_attention_heads": 12, "num_key_value_heads": 2,
                     "vocab_size": 151936, "tie_word_embeddings": True,
                     "rope_theta": 1000000.0},
    "llama-3-8b": {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                   "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                   "rope_theta": 500000.0},
}
#: ids past the tokenizer's vocabulary (Qwen2.5 leaves 271 of its 151,936 unused)
UNUSED_IDS = 256
BATCH = {"tiny": 64, "qwen2.5-0.5b": 2048, "qwen2.5-1.5b": 1024, "llama-3-8b": 512}


def tokenizer(folder: Path, vocab: int) -> Any:
    """A byte-level BPE tokenizer trained on the project's docs, with ChatML's tokens, its
    vocabulary filled up to ``vocab`` less ``UNUSED_IDS`` (``full_vocabulary``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").rglob("*.md"))]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(
        vocab_size=min(vocab, 8000), special_tokens=["<|pad|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = full_vocabulary(tok, vocab - UNUSED_IDS)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                 pad_token="<|pad|>")
    hf.chat_template = CHATML
    hf.save_pretrained(folder)
    return hf


def full_vocabulary(tok: Any, size: int) -> Any:
    """``tok`` with tokens added to its BPE vocabulary up to ``size``, each two of its trained
    tokens joined (seeded). No merge makes them, so prompts encode as before; but the grammar
    and the model see a vocabulary of the published size, as with a real tokenizer. Without
    them, xgrammar takes the ids past the tokenizer for special tokens: accepting a token then
    searches that list (35 us more a token at 144k ids), while masks have few tokens to check.

    No added token holds a quote or a backslash. Inside a JSON string the grammar checks each
    such token at run time, and real vocabularies have few (GPT-2's: 0.26% and 0.06%): the
    trained ones (98, from docs full of JSON) give a string's mask GPT-2's cost (10-14 us to
    fill, 2 cores), where joined tokens would be 2.4% such tokens and take 630 us."""
    from tokenizers import Tokenizer

    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    trained = [t for t in sorted(vocab, key=vocab.__getitem__) if not t.startswith("<|")]
    rng, next_id = random.Random(0), max(vocab.values()) + 1
    while next_id < size:
        token = rng.choice(trained) + rng.choice(trained)
        if token not in vocab and '"' not in token and "\\" not in token:
            vocab[token], next_id = next_id, next_id + 1
    return Tokenizer.from_str(json.dumps(data))


def build(shape: str, folder: Path, device: str) -> None:
    """A random-weight model of ``shape`` saved in ``folder`` with its tokenizer."""
    import torch
    import transformers

    spec = dict(SHAPES[shape])
    tok = tokenizer(folder, spec["vocab_size"])
    config = transformers.AutoConfig.for_model(
        spec.pop("model_type"), max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None, **spec)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def experiment(agents: int, model: Path, device: str, batch: int,
               temperature: float = 0.0) -> dict[str, Any]:
    """The social ``llm_agents`` example: every agent a language-model agent, every step."""
    import yaml

    data = yaml.safe_load((ROOT / "scenarios/social/examples/llm_agents.yaml").read_text())
    data.update(name=f"gpu_{agents}", steps=2, checkpoint_every=2)
    data["population"]["size"] = agents
    data["activation"] = {"probability": 1.0}
    data["policy"] = {"type": "llm", "params": {"memory": {"enabled": False}}}
    data["llm"] = {"backend": "transformers", "model": str(model), "temperature": temperature,
                   "max_tokens": 160, "cache": False, "record_prompts": True,
                   "transformers": {"device": device, "max_batch": batch,
                                    "max_text_chars": 32}}
    return data


def populace_step(shape: str, folder: Path, agents: int, device: str,
                  temperature: float = 0.0) -> dict[str, Any]:
    """The whole Populace path for a step of ``agents`` language-model agents."""
    import torch

    from populace.simulator import Simulation, experiment_from_dict
    from populace.storage import open_run

    db = folder / "run.sqlite"
    sim = Simulation(experiment_from_dict(experiment(agents, folder, device, BATCH[shape],
                                                     temperature)),
                     db_url=f"sqlite:///{db}")
    sim.start()
    sim.advance()  # warm-up: kernels, the grammar compiled
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    report = sim.advance()
    wall = time.perf_counter() - t0
    sim.flush()
    m = report.metrics
    sim.close()
    calls = open_run(f"sqlite:///{db}", sim.run_id).table("llm_calls")
    first = calls.query(f"step == {report.step} and kind == 'decision'")
    prompts = [json.loads(p) for p in first.prompt]
    decisions = m.get("llm.decisions", 0.0)
    return {"decisions": decisions, "step_s": report.compute_s, "wall_s": wall,
            "decisions_per_s": decisions / report.compute_s if report.compute_s else None,
            "valid_share": float(first.valid.mean()) if len(first) else None,  # first answers
            # new tokens an answer took, its end token included (plain generate: --new-tokens;
            # a random model writes the longest numbers the grammar allows)
            "tokens_per_answer": float(first.completion_tokens.mean()) if len(first) else None,
            "fallbacks": m.get("llm.fallbacks"), "prefill_s": m.get("llm.prefill_ms", 0) / 1000,
            "decode_s": m.get("llm.decode_ms", 0) / 1000,
            # the step's host work outside the model: prompts, tokenising, parsing, the
            # scenario, recording (a step's wall time less prefill and decode)
            "host_s": report.compute_s - (m.get("llm.prefill_ms", 0)
                                          + m.get("llm.decode_ms", 0)) / 1000,
            "decode_steps": m.get("llm.decode_steps"),
            "decode_ms_per_step": (m.get("llm.decode_ms", 0) / m["llm.decode_steps"]
                                   if m.get("llm.decode_steps") else None),
            # the grammar's host work, overlapped with decoding: above a decode step's time,
            # the device waits for the host
            "grammar_ms_per_step": (m.get("llm.grammar_ms", 0) / m["llm.decode_steps"]
                                    if m.get("llm.decode_steps") else None),
            "static_rows": m.get("llm.static_rows"), "refills": m.get("llm.refills"),
            "graph_failures": m.get("llm.graph_failures"),
            "grammar_violations": m.get("llm.grammar_violations"),
            "unterminated": m.get("llm.unterminated"),
            "shared_prefix_tokens": m.get("llm.shared_prefix_tokens"),
            "peak_gpu_gb": (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
                            else None), "prompts": prompts}


def plain_generate(folder: Path, prompts: list[Any], device: str, batch: int,
                   new_tokens: int) -> dict[str, Any]:
    """``model.generate`` on the same prompts: greedy, exactly ``new_tokens`` each."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder, padding_side="left")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts]
    batch = max(1, min(batch, len(texts) // 3))  # three batches: one warms up, two are timed
    timed, done = 0.0, 0
    for start in range(0, 3 * batch, batch):
        enc = tok(texts[start:start + batch], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(device)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           do_sample=False, pad_token_id=tok.pad_token_id)
        if device == "cuda":
            torch.cuda.synchronize()
        if start:  # the first batch warms up
            timed += time.perf_counter() - t0
            done += enc.input_ids.shape[0]
    del model
    return {"batch": batch, "decisions_per_s": done / timed if timed else None}


def mixed_lengths(folder: Path, device: str, batch: int, batches: int = 2) -> dict[str, Any]:
    """Requests whose answers have mixed lengths (``max_tokens`` 12 to 120, no grammar, so
    that a random model's answers run to it), ``batches * batch`` of them, through the backend with
    the static decoder's refill and without it: requests/s and decode steps of each."""
    import asyncio

    from populace.simulator.llm import transformers_backend
    from populace.simulator.llm.config import LLMConfig
    from populace.simulator.llm.types import ChatRequest

    rng = random.Random(3)
    system = "You are a user of a social network. Decide what you do next. " * 20
    requests = [ChatRequest([{"role": "system", "content": system},
                             {"role": "user", "content": f"User {i}: " + "news " * rng.randint(
                                 5, 40)}], "bench", None, temperature=0.0,
                            max_tokens=rng.choice([12, 16, 20, 24, 80, 120]), key=i)
                for i in range(batches * batch)]
    llm = LLMConfig(backend="transformers", model=str(folder), temperature=0.0, max_tokens=128,
                    transformers={"device": device, "max_batch": batch})
    backend = transformers_backend.TransformersBackend(llm)
    out: dict[str, Any] = {"requests": len(requests)}
    share = transformers_backend.REFILL_SHARE
    try:
        for name, value in (("refill", share), ("batch_after_batch", 1)):
            transformers_backend.REFILL_SHARE = value
            asyncio.run(backend.generate(requests[:batch]))  # warm-up: the decoder, its graph
            before = dict(backend.health())
            t0 = time.perf_counter()
            answers = asyncio.run(backend.generate(requests))
            seconds = time.perf_counter() - t0
            health = backend.health()
            out[name] = {"requests_per_s": len(requests) / seconds, "s": seconds,
                         "tokens": sum(a.completion_tokens for a in answers),
                         **{k: health[k] - before[k] for k in ("decode_steps", "refills",
                                                                "prefill_ms", "decode_ms")}}
    finally:
        transformers_backend.REFILL_SHARE = share
        asyncio.run(backend.close())
    return out


def paths_agree(device: str, rows: int = 64) -> dict[str, Any]:
    """The decode paths on one tiny model in float32 on ``device``: the static decoder with
    CUDA graphs, without them, and transformers' forward, greedy, on the same constrained
    requests: the share of answers that agree with transformers' forward, and that parse."""
    import asyncio

    from populace.simulator.llm.config import LLMConfig
    from populace.simulator.llm.transformers_backend import TransformersBackend
    from populace.simulator.llm.types import ChatRequest

    schema = {"type": "object", "additionalProperties": False, "required": ["reasoning", "guess"],
              "properties": {"reasoning": {"type": "string"},
                             "guess": {"type": "integer", "minimum": 0, "maximum": 100}}}
    system = "You are playing the guess 2/3 of the average game. Answer with JSON."
    requests = [ChatRequest([{"role": "system", "content": system},
                             {"role": "user",
                              "content": f"You are player {i}." + " Think." * (i % 5)}],
                            "tiny", schema, temperature=0.0, max_tokens=64, key=i)
                for i in range(rows)]
    folder = Path(tempfile.mkdtemp(prefix="populace-paths-"))
    try:
        build("tiny", folder, "cpu")  # float32 weights, moved to the device by the backend
        answers, health = {}, {}
        for name, settings in (("graphs", {}), ("static", {"cuda_graphs": False}),
                               ("transformers", {"static_decode": False})):
            llm = LLMConfig(backend="transformers", model=str(folder), temperature=0.0,
                            max_tokens=64, transformers={"device": device, "dtype": "float32",
                                                         "max_text_chars": 24, **settings})
            backend = TransformersBackend(llm)
            answers[name] = [r.text for r in asyncio.run(backend.generate(requests))]
            health[name] = backend.health()
        valid = 0
        for text in answers["graphs"]:
            with contextlib.suppress(ValueError, AttributeError):
                valid += isinstance(json.loads(text).get("guess"), int)
        ref = answers["transformers"]
        return {"rows": rows, "valid_share": valid / rows,
                **{f"{n}_agree_share": sum(a == b for a, b in zip(answers[n], ref,
                                                                     strict=True)) / rows
                   for n in ("graphs", "static")},
                "graph_failures": health["graphs"]["graph_failures"]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-1.5b",
                                                         "llama-3-8b"], choices=list(SHAPES))
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="the agents' sampling temperature (0: greedy, as the issue's "
                        "figures; above 0 draws on the device)")
    parser.add_argument("--mixed-batches", type=int, default=2,
                        help="requests of mixed lengths, in batches of the first shape's size")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    report: dict[str, Any] = {"environment": environment(["torch", "transformers", "xgrammar"]),
                              "device": (torch.cuda.get_device_name() if args.device == "cuda"
                                         else "cpu"), "agents": args.agents, "shapes": {}}
    t0 = time.perf_counter()
    try:
        report["paths"] = {**paths_agree(args.device), "s": time.perf_counter() - t0}
    except Exception as exc:  # the shapes are still measured
        traceback.print_exc()
        report["paths"] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps({"paths": report["paths"]}), flush=True)
    for shape in args.shapes:
        folder = Path(tempfile.mkdtemp(prefix=f"populace-{shape}-"))
        try:
            t0 = time.perf_counter()
            build(shape, folder, args.device)
            built = time.perf_counter() - t0
            ours = populace_step(shape, folder, args.agents, args.device, args.temperature)
            prompts = ours.pop("prompts")
            # the run's model and caches go before plain generate loads its copy (8B: 16 GB)
            gc.collect()
            if args.device == "cuda":
                torch.cuda.empty_cache()
            plain = plain_generate(folder, prompts, args.device, BATCH[shape], args.new_tokens)
            result = {"build_s": built, "populace": ours, "plain_generate": plain}
        except Exception as exc:  # one shape failing (e.g. out of memory) leaves the others
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if args.device == "cuda":
                torch.cuda.empty_cache()
        report["shapes"][shape] = result
        print(json.dumps({shape: result}, indent=1), flush=True)
        if args.out:
            args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    shape = args.shapes[0]  # after the figures: what time is left
    folder = Path(tempfile.mkdtemp(prefix=f"populace-{shape}-"))
    try:
        build(shape, folder, args.device)
        report["mixed"] = {"shape": shape, **mixed_lengths(folder, args.device, BATCH[shape],
                                                           args.mixed_batches)}
    except Exception as exc:
        traceback.print_exc()
        report["mixed"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps({"mixed": report["mixed"]}, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
