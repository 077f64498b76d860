"""An in-process backend on torch + Hugging Face transformers: a whole step's decisions in
batched forward passes, the shared prompt prefix encoded once, structured output by grammar.

``llm: {backend: transformers, model: DIR}`` loads a local model directory (weights,
tokenizer and chat template; nothing is downloaded). For each batch of requests:

1. prompts are rendered with the tokenizer's chat template (or ``llm.chat_format`` when it
   has none), tokenised and sorted by length (short padding);
2. the longest token prefix that every prompt shares (the system prompt, the scenario's
   shared text) is encoded once and its KV cache repeated for every row
   (``transformers.prefix_cache``); the rest of each prompt follows, left-padded, with
   attention masks and position ids that skip the padding, so a row's tokens are what the
   plain path (every prompt encoded whole) gives;
3. a decode loop of our own generates up to ``max_tokens`` per row, a batch of at most the
   batch size at a time. With the static decoder (Llama-family models), one batch streams
   every request: rows whose answers are done take the next requests (``refill``) while the
   others go on, so that short answers do not wait for the batch's longest; with
   transformers' forward, one batch follows another. Where a request has a
   JSON schema, an xgrammar matcher per row masks the logits so that only tokens that keep
   the answer valid JSON of that schema can come (free-text strings are bounded by
   ``transformers.max_text_chars``, and no free whitespace is allowed, so that answers end);
   greedy at temperature 0, else sampled on the device with the request's seed (Gumbel-max
   with a counter-based hash, ``sampling``: a row's draws depend on its own seed and token
   index, not on its batch, and nothing waits for the host);
4. an out-of-memory error halves the batch and retries the requests not done yet (counted
   in ``health()``), and the batch size on CUDA is sized from free memory and the model's
   KV cache per token.

Everything but the GPU kernels runs on CPU: the tests build a tiny model from a config with
random weights and a tokenizer trained on a few kB of text.

Core objects:
    TransformersBackend: the backend.
    common_prefix: the length of the token prefix a chunk's prompts share.
    bounded_schema: a schema with its free-text strings bounded.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import experiment_path
from .chat_formats import make_renderer
from .chat_skeleton import render_chats
from .config import LLMConfig
from .types import Backend, BackendError, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from .static_decode import StaticDecoder

log = logging.getLogger(__name__)
MIN_BATCH = 1
#: the static cache's length is a multiple of this (so that calls of similar prompt lengths
#: reuse one decoder and its CUDA graph)
LENGTH_QUANTUM = 64
#: static decoders kept at once (a step's batch and its repairs)
KEPT_DECODERS = 2
#: the grammar's host work (accept a token, fill the next mask) is split between threads of
#: at least this many rows each, and at most this many threads
GRAMMAR_ROWS_PER_THREAD = 64
GRAMMAR_THREADS = 16
#: with the static decoder, rows whose answers are done take new requests once at least this
#: share of the batch (1/8) is done, or every request left
REFILL_SHARE = 8
#: the next logits from each row's chosen token (a device tensor)
Stepper = Callable[[Any], Any]
#: puts new requests (rows) in a batch's places (row indices), their logits in the next step's
Refill = Callable[[list[int], list["_Row"]], None]


#: ``org/name``: a model name the Hugging Face cache may hold (anything else is a path)
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]$")


def local_model_problem(model: str, base_dir: Path) -> str | None:
    """Why ``llm.model`` names no model this machine holds (None: it does): a folder with a
    ``config.json`` (relative to the experiment's folder), or an ``org/name`` in the local
    Hugging Face cache. Nothing is downloaded. Without huggingface_hub (the transformers extra
    not installed), a name that is not a folder is not checked here."""
    path = experiment_path(model, base_dir)
    if path.is_dir():
        if not (path / "config.json").is_file():
            return f"{path} holds no config.json: not a Hugging Face model folder"
        return None
    if path.exists():
        return f"{path} is a file, not a model folder"
    if not HUB_NAME.match(model):
        return f"no model folder at {path} (nothing is downloaded: give a local folder)"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # checked when the run loads the model
        return None
    if not isinstance(try_to_load_from_cache(model, "config.json"), str):
        return (f"no model folder at {path}, and {model!r} is not in this machine's Hugging "
                f"Face cache (nothing is downloaded: give a local folder)")
    return None


def common_prefix(rows: list[list[int]]) -> int:
    """The number of leading tokens every row shares."""
    if not rows:
        return 0
    first, n = rows[0], min(len(r) for r in rows)
    for i in range(n):
        token = first[i]
        if any(r[i] != token for r in rows):
            return i
    return n


def bounded_schema(schema: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """A copy of ``schema`` for the grammar: each free-text string (no enum, const, pattern or
    format) becomes ``pattern: ^[^<control>"\\]{min,max}$``, at most ``max_chars`` (or its
    ``maxLength``) characters without control characters, quotes or backslashes, so that a
    constrained answer ends within the token budget and parses as strict JSON (xgrammar's
    plain string admits raw control characters, and ignores ``maxLength`` next to a pattern).
    The answer is still validated against the original schema."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (node.get("type") == "string"
                    and not {"enum", "const", "pattern", "format"} & node.keys()):
                high = min(int(node.get("maxLength", max_chars)), max_chars)
                low = min(int(node.get("minLength", 0)), high)
                node["pattern"] = f'^[^\\x00-\\x1f"\\\\]{{{low},{high}}}$'
                node.pop("maxLength", None)
                node.pop("minLength", None)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


@dataclass
class _Row:
    """One request in a chunk: its tokens, grammar and sampling."""

    index: int
    ids: list[int]
    request: ChatRequest
    grammar: Any = None
    tokens: list[int] = field(default_factory=list)
    done: bool = False


def _is_oom(error: BaseException) -> bool:
    """Whether ``error`` says the device ran out of memory (torch's, or a library's failed
    allocation: cuBLAS, cuDNN)."""
    text = str(error).lower()
    return (type(error).__name__ == "OutOfMemoryError" or "out of memory" in text
            or "alloc_failed" in text)


class TransformersBackend(Backend):
    """A local Hugging Face model in this process (see the module docstring).

    Needs ``pip install 'populace[transformers]'`` (torch, transformers, xgrammar); imported
    only when used.
    """

    name = "transformers"

    def __init__(self, llm: LLMConfig, base_dir: Path | None = None) -> None:
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise BackendError("llm.backend transformers needs torch and transformers: pip "
                               "install 'populace[transformers]'") from exc
        self.torch, self.llm, self.settings = torch, llm, llm.transformers
        path = experiment_path(llm.model, base_dir or Path.cwd())
        source = str(path) if path.exists() else llm.model
        device = self.settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("llm.transformers.device is cuda, but torch sees no CUDA GPU "
                               "here; use device: cpu or auto")
        self.device = torch.device(device)
        dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32,
                 "float32": torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16}[self.settings.dtype]
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, local_files_only=True)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, local_files_only=True).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise BackendError(f"llm.model {llm.model!r}: no local Hugging Face model there "
                               f"(a folder with config.json, weights and a tokenizer; nothing "
                               f"is downloaded): {exc}") from exc
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.render = (None if self.tokenizer.chat_template else make_renderer(llm.chat_format))
        self.stop_ids = {t for t in (self.tokenizer.eos_token_id,) if t is not None}
        self.vocab = self.model.config.vocab_size
        # transformers 5 renamed the cache argument (``cache``; ``past_key_values`` before)
        params = inspect.signature(self.model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        # only the last position's logits are needed: (batch x prompt x vocabulary) logits
        # would not fit in memory for a large batch of a 150k-token vocabulary
        self.keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.batch = self.settings.max_batch
        self.counts = {"oom_halvings": 0, "grammar_violations": 0, "unterminated": 0,
                       "shared_prefix_tokens": 0, "prefill_ms": 0, "decode_ms": 0,
                       "static_rows": 0, "graph_failures": 0, "decode_steps": 0,
                       "refills": 0}
        # the torch modules (the static decoder and its padding and cache layout, used by
        # both paths; device sampling): imported here, with torch, since both are optional
        from . import sampling, static_decode

        self._static_decode = static_decode
        self._sample_fn = sampling.sample
        self.static_reason = (static_decode.unsupported(self.model)
                              if self.settings.static_decode else "static_decode: false")
        if self.static_reason is not None and self.settings.static_decode:
            log.info("transformers backend: transformers' forward decodes (%s)",
                     self.static_reason)
        # the static decoders kept, most recently used last: a step's large batch and its
        # small batch of repairs each keep theirs (and its CUDA graph) from step to step
        self._decoders: list[StaticDecoder] = []
        self._pool: ThreadPoolExecutor | None = None
        self._compiler: Any = None
        self._xgr: Any = None  # the xgrammar module, once a schema needs it
        self._grammars: dict[str, Any] = {}
        self._grammar_s = 0.0  # the grammar's host work (``llm.grammar_ms``)

    # -- grammar ---------------------------------------------------------------------------------

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """The compiled grammar of a schema (cached by its text)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            try:
                import xgrammar
            except ImportError as exc:
                raise BackendError("structured output with backend transformers needs "
                                   "xgrammar: pip install 'populace[transformers]' (or "
                                   "llm.structured_output: false)") from exc
            self._xgr = xgr = xgrammar
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab,
                                                          stop_token_ids=sorted(self.stop_ids))
                self._compiler = xgr.GrammarCompiler(info)
            bounded = bounded_schema(schema, self.settings.max_text_chars)
            self._grammars[key] = self._compiler.compile_json_schema(
                json.dumps(bounded), any_whitespace=False)
        return self._grammars[key]

    # -- the batch -------------------------------------------------------------------------------

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """Answer every request (in a worker thread: the event loop stays free)."""
        return await asyncio.to_thread(self._generate, requests)

    def _prompt_ids(self, requests: list[ChatRequest]) -> list[list[int]]:
        """Each request's prompt tokens: rendered once per conversation shape where the chat
        template only copies contents (``chat_skeleton``), tokenised in one batch (the
        tokenizer's threads: 0.5 ms a 350-token prompt one at a time)."""
        if self.render is not None:
            texts = [self.render(r.messages) for r in requests]
        else:
            template = self.tokenizer.chat_template
            texts, _ = render_chats(self._apply_template, [r.messages for r in requests],
                                    template if isinstance(template, str) else None)
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False).input_ids]

    def _apply_template(self, chat: Any) -> str:
        return self.tokenizer.apply_chat_template(list(chat), tokenize=False,
                                                  add_generation_prompt=True)

    def _generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        if not requests:  # e.g. every request of the step answered from the cache
            return []
        t0 = time.perf_counter()
        rows = []
        grammars: dict[int, Any] = {}  # by schema object: requests of a step share one
        for i, (r, ids) in enumerate(zip(requests, self._prompt_ids(requests), strict=True)):
            grammar = None
            if r.schema is not None and self.llm.structured_output:
                if id(r.schema) not in grammars:
                    grammars[id(r.schema)] = self._grammar(r.schema)
                grammar = grammars[id(r.schema)]
            rows.append(_Row(i, ids, r, grammar))
        # sorting by length keeps padding short and prompts that share a prefix together
        order = sorted(rows, key=lambda row: (len(row.ids), row.index))
        # one static cache length for the whole call (rounded up: a decoder, and its CUDA
        # graph, serves every chunk and the next calls of similar length)
        need = max(len(r.ids) for r in order) + max(r.request.max_tokens for r in order) + 1
        length = -(-need // LENGTH_QUANTUM) * LENGTH_QUANTUM
        size = max(MIN_BATCH, min(self.batch, self._memory_batch(length)))
        # batches of equal size (within one row), so that one decoder serves them all
        size = -(-len(order) // -(-len(order) // size))
        self._run(order, length, size)
        latency = time.perf_counter() - t0
        out = []
        for row in rows:
            tokens = [t for t in row.tokens if t not in self.stop_ids]
            out.append(ChatResponse(self.tokenizer.decode(tokens, skip_special_tokens=True),
                                    len(row.ids), len(row.tokens), latency, "model",
                                    "transformers", None, 1, row.request.key))
        return out

    def _memory_batch(self, length: int) -> int:
        """Rows that fit in free GPU memory (a row: its KV cache of ``length`` tokens and
        three vocabulary-wide float32 logit rows), with room to spare for the prefill's
        activations (bounded by ``prefill_tokens``); unbounded on CPU."""
        torch = self.torch
        if self.device.type != "cuda":
            return self.batch
        free, _ = torch.cuda.mem_get_info(self.device)
        # memory the allocator holds but no tensor uses is free to us, and so is our cache
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        free += sum(d.nbytes for d in self._decoders)
        cfg = self.model.config
        kv_heads, head_dim = self._static_decode.kv_layout(cfg)
        per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * self.model.dtype.itemsize
        per_row = per_token * length + 3 * 4 * self.vocab
        return max(MIN_BATCH, int(0.6 * free // max(per_row, 1)))

    def _run(self, rows: list[_Row], length: int, size: int) -> None:
        """Decode ``rows`` in batches of ``size``; on out-of-memory, halve the batch and
        retry the rows not done yet (after leaving the ``except`` block: its traceback holds
        the failed attempt's tensors)."""
        try:
            self._decode(rows, length, size)
            return
        except (RuntimeError, MemoryError) as exc:
            if not _is_oom(exc) or size <= MIN_BATCH:
                raise
        # out of memory: free what we hold, halve, retry what is left
        self._release_decoders()
        self.counts["oom_halvings"] += 1
        self.batch = size = max(MIN_BATCH, size // 2)
        left = [row for row in rows if not row.done]
        for row in left:
            row.tokens = []
        self._run(left, length, size)

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                          use_cache=True, **{self.cache_arg: cache}, **self.keep)

    def _prefix(self, ids: list[list[int]]) -> int:
        """Tokens of the prefix every prompt shares, encoded once (0: none worth it)."""
        if not self.settings.prefix_cache or len(ids) < 2:
            return 0
        prefix = min(common_prefix(ids), min(len(i) for i in ids) - 1)  # a row keeps a token
        return prefix if prefix >= self.settings.min_prefix_tokens else 0

    def _decode(self, rows: list[_Row], length: int, size: int) -> None:
        """Prefill and decode ``rows``, ``size`` at a time. With the static decoder, one batch
        streams them all: a row whose answer is done takes the next request
        (``StaticDecoder.refill``) while the others go on; transformers' forward decodes one
        batch after another."""
        decoder = (self._static_decoder(min(size, len(rows)), length)
                   if self.static_reason is None else None)
        batches = [rows] if decoder is not None else [rows[i:i + size]
                                                      for i in range(0, len(rows), size)]
        for batch in batches:
            ids = [r.ids for r in batch]
            prefix = self._prefix(ids)
            first, queue = batch[:size], deque(batch[size:])
            # prompt tokens not encoded again: the prefix, for every row but the one that did
            self.counts["shared_prefix_tokens"] += prefix * (len(batch) - 1)
            with self.torch.inference_mode():
                t0 = self._clock()
                logits, step = self._start(ids[:size], prefix, decoder)
                t1 = self._clock()
                refill = (None if decoder is None else
                          lambda slots, new, d=decoder: self._refill(d, slots, new))
                before = self.counts["prefill_ms"]
                self._loop(first, logits, step, queue, refill)
                refilled = self.counts["prefill_ms"] - before
                self.counts["prefill_ms"] += round(1000 * (t1 - t0))
                self.counts["decode_ms"] += round(1000 * (self._clock() - t1)) - refilled

    def _refill(self, decoder: StaticDecoder, slots: list[int], rows: list[_Row]) -> None:
        """New requests in the decoder's rows ``slots``, their logits in the next step's."""
        t0 = self._clock()
        decoder.refill(slots, [r.ids for r in rows], self.tokenizer.pad_token_id,
                       self.settings.prefill_tokens)
        self.counts["static_rows"] += len(rows)
        self.counts["refills"] += 1
        self.counts["prefill_ms"] += round(1000 * (self._clock() - t0))

    def _start(self, ids: list[list[int]], prefix: int, decoder: StaticDecoder | None
               ) -> tuple[Any, Stepper]:
        """Prefill a batch: the logits of each row's last prompt token, and the step that
        takes each row's chosen token (a device tensor) to the next logits. The static
        decoder where the model and settings allow (``static_decode``), else transformers'
        forward with its dynamic cache."""
        if decoder is not None:
            logits = decoder.prefill(ids, prefix, self.tokenizer.pad_token_id,
                                     self.settings.prefill_tokens)
            self.counts["static_rows"] += len(ids)
            return logits, self._static_step(decoder, len(ids))
        return self._generic_start(ids, prefix)

    def _static_decoder(self, rows: int, length: int) -> StaticDecoder | None:
        """The static decoder for ``rows`` rows of ``length`` tokens: the current one where
        it fits (it serves smaller chunks with idle rows, down to half its batch), else a new
        one; None where the model cannot take that length (a sliding window)."""
        for decoder in self._decoders:
            if decoder.length == length and rows <= decoder.batch < 2 * rows:
                self._decoders.remove(decoder)
                self._decoders.append(decoder)
                return decoder
        if len(self._decoders) >= KEPT_DECODERS:
            self._decoders.pop(0).release()  # no reference left to its cache
            if self.device.type == "cuda":
                self.torch.cuda.empty_cache()
        try:
            decoder = self._static_decode.StaticDecoder(self.model, rows, length,
                                                        graphs=self.settings.cuda_graphs)
        except ValueError as exc:
            log.info("transformers backend: transformers' forward decodes this batch (%s)", exc)
            return None
        self._decoders.append(decoder)
        return decoder

    def _release_decoders(self) -> None:
        """Drop every static decoder (their caches back to the allocator)."""
        for decoder in self._decoders:
            decoder.release()
        self._decoders = []
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    def _static_step(self, decoder: StaticDecoder, n: int) -> Stepper:
        def step(tokens: Any) -> Any:
            out = decoder.step(tokens)
            if decoder.graph_error is not None and not decoder.graph_error_counted:
                decoder.graph_error_counted = True
                self.counts["graph_failures"] += 1
                log.warning("CUDA graph capture failed; decoding without graphs (slower): %s",
                            decoder.graph_error)
            return out[:n]
        return step

    def _generic_start(self, ids: list[list[int]], prefix: int) -> tuple[Any, Stepper]:
        """transformers' forward: the prefix encoded once and its dynamic cache repeated for
        every row, the rest left-padded with masks and positions that skip the padding."""
        torch, device, b = self.torch, self.device, len(ids)
        cache = None
        if prefix:
            out = self._forward(torch.tensor([ids[0][:prefix]], device=device),
                                torch.ones((1, prefix), dtype=torch.long, device=device),
                                torch.arange(prefix, device=device)[None], None)
            cache = self._cache(out)
            cache.batch_repeat_interleave(b)
        tokens, own, positions = self._static_decode.left_padded(
            [i[prefix:] for i in ids], self.tokenizer.pad_token_id, prefix)
        mask = torch.cat([torch.ones((b, prefix), dtype=torch.long), own.long()], dim=1)
        mask, tokens, positions = mask.to(device), tokens.to(device), positions.to(device)
        out = self._forward(tokens, mask, positions, cache)
        state = {"cache": self._cache(out), "mask": mask, "last": positions[:, -1]}

        def step(chosen: Any) -> Any:
            state["mask"] = torch.cat([state["mask"], torch.ones(
                (b, 1), dtype=mask.dtype, device=device)], dim=1)
            state["last"] = state["last"] + 1
            out = self._forward(chosen[:, None], state["mask"], state["last"][:, None],
                                state["cache"])
            state["cache"] = self._cache(out)
            return out.logits[:, -1, :].float()

        return out.logits[:, -1, :].float(), step

    def _clock(self) -> float:
        """Seconds, after the GPU's queued work (so that prefill and decode are apart)."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _cache(self, out: Any) -> Any:
        # transformers 5 names it ``cache`` (``past_key_values`` is a deprecated alias there)
        return getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def _loop(self, rows: list[_Row], logits: Any, step: Stepper,
              queue: deque[_Row] | None = None, refill: Refill | None = None) -> None:
        """Generate until every row is done (grammar terminated, stop token, or its
        ``max_tokens``), and, with ``refill``, the rows of ``queue`` too: once enough rows
        are done (``REFILL_SHARE`` of the batch, or every row the queue still holds), their
        places take the next requests of the queue.

        Each iteration masks the logits by the grammar, chooses the tokens on the device,
        queues their copy to the host, and queues the next step before it waits for that
        copy: the grammar's work on the host (accepting the tokens, filling the next masks,
        in threads) runs while the device computes the next step. A refill is queued after
        that step, so that its rows' first tokens are chosen from the refill's logits.
        """
        torch, device = self.torch, self.device
        queue = queue if queue is not None and refill is not None else deque()
        active, b = list(rows), len(rows)
        cuda = device.type == "cuda"
        matchers, bitmask = self._matchers(active, any(r.grammar is not None for r in queue))
        if matchers:
            self._grammar_work([(k, None) for k, m in enumerate(matchers) if m is not None],
                               matchers, bitmask)
            mask_dev = bitmask.to(device) if cuda else bitmask
        choose = self._sampling(active)
        pad = self.tokenizer.pad_token_id
        done = torch.zeros(b, dtype=torch.bool, device=device)
        done_host = torch.zeros(b, dtype=torch.bool, pin_memory=cuda)
        host = torch.empty(b, dtype=torch.long, pin_memory=cuda)
        counter = torch.zeros(b, dtype=torch.long, device=device)  # each row's token index
        while True:
            self.counts["decode_steps"] += 1
            logits = logits[:b]
            if matchers:
                if cuda:
                    mask_dev.copy_(bitmask, non_blocking=True)
                self._xgr.apply_token_bitmask_inplace(logits, mask_dev)
            chosen = choose(logits, counter).masked_fill(done, pad)
            counter += 1
            host.copy_(chosen, non_blocking=True)
            copied = torch.cuda.Event() if cuda else None
            if copied is not None:
                copied.record()
            if queue or any(not r.done and len(r.tokens) + 1 < r.request.max_tokens
                            for r in active):
                logits = step(chosen)  # queued: the device works while the host goes on
            if copied is not None:
                copied.synchronize()
            if not self._accept(active, matchers, host.tolist(), bitmask) and not queue:
                return
            free = [k for k, r in enumerate(active) if r.done]
            if queue and len(free) >= min(len(queue), max(1, b // REFILL_SHARE)):
                new = [queue.popleft() for _ in free[:len(queue)]]
                slots = free[:len(new)]
                refill(slots, new)  # type: ignore[misc]  # queue is empty without refill
                for k, row in zip(slots, new, strict=True):
                    active[k] = row
                if matchers:
                    for k, row in zip(slots, new, strict=True):
                        matchers[k] = self._matcher(row)
                        if matchers[k] is None:
                            bitmask[k].fill_(-1)
                    self._grammar_work([(k, None) for k in slots if matchers[k] is not None],
                                       matchers, bitmask)
                counter[slots] = 0
                choose = self._sampling(active)
            # pinned: the copy is queued before the next wait, which orders it before the
            # next time this buffer is written
            done_host.copy_(torch.tensor([r.done for r in active]))
            done.copy_(done_host, non_blocking=cuda)

    def _accept(self, rows: list[_Row], matchers: list[Any], chosen: list[int],
                bitmask: Any) -> bool:
        """Take each open row's token (through its grammar, which then fills the row's next
        mask); whether any row is still open."""
        checked = []
        for k, row in enumerate(rows):
            if row.done:
                continue
            token = chosen[k]
            row.tokens.append(token)
            ending = token in self.stop_ids or len(row.tokens) >= row.request.max_tokens
            m = matchers[k] if matchers else None
            if m is not None:
                checked.append((k, token))
            if ending:
                row.done = True
        if checked:
            for (k, _), (accepted, terminated) in zip(
                    checked, self._grammar_work(checked, matchers, bitmask), strict=True):
                if not accepted:  # its mask is cleared: no constraint left on this row
                    self.counts["grammar_violations"] += 1
                    matchers[k] = None
                elif terminated:
                    rows[k].done = True
                elif rows[k].done:
                    self.counts["unterminated"] += 1
        return any(not r.done for r in rows)

    def _grammar_work(self, work: list[tuple[int, int | None]], matchers: list[Any],
                      bitmask: Any) -> list[tuple[bool, bool]]:
        """For each (row, token): the row's matcher accepts the token (None: none yet) and,
        unless it ended, fills the row's next-token mask. Rows are split between threads
        (xgrammar releases the GIL); a row that ended gets no constraint. Returns (accepted,
        terminated) per row. Its wall time adds to ``llm.grammar_ms``."""
        def part(items: list[tuple[int, int | None]]) -> list[tuple[bool, bool]]:
            out = []
            with self.torch.inference_mode():  # thread-local: the mask is an inference tensor
                for k, token in items:
                    m = matchers[k]
                    accepted = token is None or m.accept_token(token)
                    terminated = accepted and m.is_terminated()
                    if accepted and not terminated:
                        m.fill_next_token_bitmask(bitmask, k)
                    else:
                        bitmask[k].fill_(-1)
                    out.append((accepted, terminated))
            return out

        t0 = time.perf_counter()
        if len(work) < GRAMMAR_ROWS_PER_THREAD * 2:
            out = part(work)
        else:
            threads = max(1, min(GRAMMAR_THREADS, os.cpu_count() or 1))
            if self._pool is None:
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="populace-grammar")
            n = min(threads, len(work) // GRAMMAR_ROWS_PER_THREAD)
            size = -(-len(work) // n)
            parts = self._pool.map(part, [work[i:i + size] for i in range(0, len(work), size)])
            out = [r for p in parts for r in p]
        self._grammar_s += time.perf_counter() - t0
        return out

    def _matchers(self, rows: list[_Row], later: bool = False) -> tuple[list[Any], Any]:
        """A grammar matcher per row (None: no grammar) and the batch's token bitmask; none
        where no row has a grammar and none comes ``later`` (by refill)."""
        if not later and not any(r.grammar is not None for r in rows):
            return [], None
        matchers = [self._matcher(r) for r in rows]
        bitmask = self._xgr.allocate_token_bitmask(len(rows), self.vocab)  # -1: no constraint
        # pinned, so that its copy to the GPU does not wait for the host
        return matchers, bitmask.pin_memory() if self.device.type == "cuda" else bitmask

    def _matcher(self, row: _Row) -> Any:
        """A new grammar matcher for ``row`` (None: it has no grammar)."""
        return self._xgr.GrammarMatcher(row.grammar) if row.grammar is not None else None

    def _sampling(self, rows: list[_Row]) -> Callable[[Any, Any], Any]:
        """How a batch's tokens are chosen from its masked logits, given each row's token
        index (a device tensor): the argmax, and for rows at a temperature above 0 a draw
        fixed by the row's seed and token index (``sampling.sample``), all on the device."""
        torch, device = self.torch, self.device
        drawn = [k for k, r in enumerate(rows) if r.request.temperature > 0]
        if not drawn:
            return lambda logits, counter: logits.argmax(-1)
        temperature = torch.tensor([r.request.temperature for r in rows], device=device)
        top_p = (torch.tensor([r.request.top_p for r in rows], device=device)
                 if any(rows[k].request.top_p < 1 for k in drawn) else None)
        seeds = torch.tensor([int(r.request.seed or 0) & 0x7FFFFFFFFFFFFFFF for r in rows],
                             dtype=torch.long, device=device)
        index = torch.tensor(drawn, dtype=torch.long, device=device)
        sample = self._sample_fn
        return lambda logits, counter: sample(logits, index, temperature, top_p, seeds,
                                              counter)

    async def close(self) -> None:
        """Stop the grammar threads and drop the static cache."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._release_decoders()

    def health(self) -> dict[str, int]:
        """Out-of-memory halvings, grammar violations (answers the grammar could not keep
        valid: should stay 0), answers cut at ``max_tokens`` before the grammar ended, the
        prompt tokens the shared prefix saved encoding, the milliseconds of prefill, of
        decoding and of the grammar's host work (overlapped with decoding: beyond a decode
        step's time, the device waits for the host), and more (``llm.*`` metrics of the
        step)."""
        return {**self.counts, "grammar_ms": round(1000 * self._grammar_s)}
