"""A prefill and decode of our own for Llama-family models (Llama, Qwen2, Qwen3, Mistral) on
a static KV cache: the transformers backend's fast path.

Why not transformers' forward: with an attention mask, its sdpa path copies the whole KV
cache once per query-head group at every decode step (``repeat_kv``: 4-7x the cache for
grouped-query attention), and a dynamic cache grows by concatenation. Here

* the KV cache is one preallocated tensor per layer, ``[batch, kv_heads, length, head_dim]``,
  written in place at one slot per step (left padding puts every row's next token in the same
  slot; a boolean ``valid`` mask says which slots a row attends to);
* the cache is a ring: a row whose answer is done takes the next request's prompt in the
  slots before the next step's (``refill``) while the other rows go on decoding, so that the
  batch stays full until the requests run out, instead of waiting for its longest answer;
* the query heads of a group are folded into the query length (``[b, kv, group, d]``), so a
  decode step reads each key and value once and copies nothing (the same result as
  ``repeat_kv``: query head ``h`` uses key head ``h // group``);
* the shared prompt prefix is encoded once (one row) and copied into every row's slots;
* a decode step reads its inputs from fixed tensors and advances its own slot and positions,
  so on CUDA it is captured once as a CUDA graph and replayed: one launch per step, and the
  host never waits for the GPU inside it.

The layers' own modules (projections, norms, MLP, rotary embedding, head) do the arithmetic;
only attention and the cache are ours. Other architectures use transformers' forward
(``TransformersBackend``'s generic path). Greedy tokens agree with transformers' (the tests
check it on CPU in float32).

Core objects:
    unsupported: why a model cannot take this path (None when it can).
    kv_layout: a model's key/value heads and head size (what its cache holds per token).
    left_padded: a chunk's prompt tokens left-padded, with their positions (both paths).
    StaticDecoder: the cache and the step of one batch size and length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ARCHITECTURES = ("llama", "qwen2", "qwen3", "mistral")
#: where a layer's new keys and values go: (layer, keys, values) -> the keys and values its
#: queries attend to
Store = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def unsupported(model: Any) -> str | None:
    """Why ``model`` cannot use the static decoder, or None when it can."""
    cfg = model.config
    kind = getattr(cfg, "model_type", None)
    if kind not in ARCHITECTURES:
        return f"model type {kind!r} (the static decoder knows {', '.join(ARCHITECTURES)})"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    rope = getattr(cfg, "rope_scaling", None) or getattr(cfg, "rope_parameters", None) or {}
    kind_of_rope = str(rope.get("rope_type", rope.get("type", "")))
    if "dynamic" in kind_of_rope or "longrope" in kind_of_rope:
        return f"{kind_of_rope} rotary scaling (its frequencies change with the length)"
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(inner, "rotary_emb") or not hasattr(model, "lm_head"):
        return "no decoder layers, rotary embedding or head where Llama keeps them"
    attn = layers[0].self_attn
    if not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
        return "attention without q/k/v/o projections"
    return None


def kv_layout(config: Any) -> tuple[int, int]:
    """Key/value heads and head size of a model's attention (its config's)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    return kv_heads, getattr(config, "head_dim", None) or config.hidden_size // heads


def left_padded(rows: list[list[int]], pad: int, prefix: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rows`` of tokens that follow a shared ``prefix`` of that many tokens, left-padded to
    the longest (on the CPU): the tokens ``[b, width]``, which of them are the row's own (not
    padding), and their positions (counting the prefix and the row's own tokens, not the
    padding), so that a row's tokens are encoded as they would be alone."""
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    own = torch.zeros((len(rows), width), dtype=torch.bool)
    for k, r in enumerate(rows):
        tokens[k, width - len(r):] = torch.tensor(r)
        own[k, width - len(r):] = True
    return tokens, own, (prefix + own.long().cumsum(-1) - 1).clamp(min=0)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` ``[b, heads, t, d]`` with ``cos``/``sin`` ``[b, t, d]``."""
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


class StaticDecoder:
    """The KV cache, and the prefill and decode step, of ``batch`` rows of at most ``length``
    tokens (prompt and answer).

    Use: ``prefill`` a batch (its rows' prompt tokens; fewer rows than ``batch`` are padded
    with idle rows), then ``step`` with each chosen token, and ``refill`` rows whose answers
    are done with new prompts, until every answer is done. ``graphs``: capture the
    step as a CUDA graph on first use (CUDA only; a failed capture leaves the eager step and
    says why in ``graph_error``).
    """

    def __init__(self, model: Any, batch: int, length: int, *, graphs: bool = False) -> None:
        self.model, self.batch, self.length = model, batch, length
        cfg = model.config
        window = getattr(cfg, "sliding_window", None) if cfg.model_type == "mistral" else None
        if window and length > window:
            raise ValueError(f"{length} tokens exceed the model's sliding window of {window}")
        self.layers = list(model.model.layers)
        attn = self.layers[0].self_attn
        self.heads = cfg.num_attention_heads
        self.kv_heads, self.head_dim = kv_layout(cfg)
        self.group = self.heads // self.kv_heads
        self.scale = float(getattr(attn, "scaling", self.head_dim ** -0.5))
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        shape = (batch, self.kv_heads, length, self.head_dim)
        self.keys = [torch.zeros(shape, dtype=self.dtype, device=self.device)
                     for _ in self.layers]
        self.values = [torch.zeros(shape, dtype=self.dtype, device=self.device)
                       for _ in self.layers]
        self.valid = torch.zeros((batch, length), dtype=torch.bool, device=self.device)
        # the step's inputs and outputs: fixed tensors, so that a CUDA graph can replay it
        self.tokens = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)
        self.logits = torch.zeros((batch, cfg.vocab_size), dtype=torch.float32,
                                  device=self.device)
        self.graphs = graphs and self.device.type == "cuda"
        self.graph: Any = None
        self.graph_error: str | None = None  # why capture failed (then steps run eagerly)
        self.graph_error_counted = False  # by the backend's counters
        self.at = 0  # the next step's slot (``slot`` on the host: no read from the device)
        self.prefix = 0  # tokens of the shared prefix kept for ``refill``
        self.prefix_keys: list[torch.Tensor] = []  # per layer, [kv_heads, prefix, head_dim]
        self.prefix_values: list[torch.Tensor] = []

    # -- the layers ------------------------------------------------------------------------------

    def _qkv(self, layer: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries ``[b, heads, t, d]``, keys and values ``[b, kv_heads, t, d]`` of ``x``
        ``[b, t, hidden]``, rotated by ``cos``/``sin`` ``[b, t, d]``."""
        attn = layer.self_attn
        b, t, _ = x.shape
        q = attn.q_proj(x).view(b, t, self.heads, self.head_dim)
        k = attn.k_proj(x).view(b, t, self.kv_heads, self.head_dim)
        v = attn.v_proj(x).view(b, t, self.kv_heads, self.head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises each head before the rotation
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        return _rope(q, cos, sin), _rope(k, cos, sin), v

    def _bias(self, allowed: torch.Tensor) -> torch.Tensor:
        """The additive attention bias ``[b, 1, group * t, s]`` (model dtype) of
        ``allowed`` ``[b, t, s]`` (True: attend), repeated for the folded query heads. Built
        once per prefill block or decode step, not per layer (sdpa would convert a boolean
        mask in every layer)."""
        b, t, s = allowed.shape
        bias = torch.zeros(allowed.shape, dtype=self.dtype, device=self.device)
        bias.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        return bias[:, None, None].expand(b, 1, self.group, t, s).reshape(
            b, 1, self.group * t, s)

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        """Grouped-query attention with the group folded into the query length: ``q``
        ``[b, heads, t, d]`` against ``keys``/``values`` ``[b, kv_heads, s, d]``, with
        ``bias`` from ``_bias``. Returns ``[b, t, heads * d]``."""
        b, _, t, d = q.shape
        folded = q.reshape(b, self.kv_heads, self.group * t, d)
        out = F.scaled_dot_product_attention(folded, keys, values, attn_mask=bias,
                                             scale=self.scale)
        # whatever the kernel's output layout (the memory-efficient one returns it
        # transposed): [b, kv, group * t, d] -> [b, t, kv, group, d] -> [b, t, heads * d]
        return out.reshape(b, self.kv_heads, self.group, t, d).permute(0, 3, 1, 2, 4).reshape(
            b, t, self.heads * d)

    def _layers(self, x: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor,
                store: Store) -> torch.Tensor:
        """Run every layer over ``x`` ``[b, t, hidden]`` (positions ``[b, t]``): ``store``
        puts each layer's new keys and values in the cache and gives the keys and values its
        queries attend to, with ``bias``."""
        cos, sin = self.model.model.rotary_emb(x, positions)  # once for every layer
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, layer.input_layernorm(x), cos, sin)
            keys, values = store(i, k, v)
            x = x + layer.self_attn.o_proj(self._attend(q, keys, values, bias))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return x

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[b, vocab]`` (float32) of the last position of ``x``."""
        return self.model.lm_head(self.model.model.norm(x[:, -1])).float()

    def _span(self, tokens: int) -> int:
        """Slots attended in a prefill of ``tokens``: rounded up to 8 (aligned rows for the
        attention kernels; the extra slots are not valid, so masked)."""
        return min(self.length, -(-tokens // 8) * 8)

    # -- prefill, refill and step ----------------------------------------------------------------

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], prefix: int, pad: int,
                block_tokens: int = 65_536) -> torch.Tensor:
        """Start a batch: encode ``prompts`` (one per row, at most ``batch``; they share
        their first ``prefix`` tokens, encoded once and kept for ``refill``) and return the
        logits of their last tokens ``[rows, vocab]``. Rows beyond the prompts are idle."""
        n, device = len(prompts), self.device
        self.valid.zero_()
        self.at, self.prefix = 0, prefix
        self.prefix_keys, self.prefix_values = [], []
        if prefix:
            span = self._span(prefix)
            shape = (1, self.kv_heads, span, self.head_dim)
            keys = [torch.zeros(shape, dtype=self.dtype, device=device) for _ in self.layers]
            values = [torch.zeros(shape, dtype=self.dtype, device=device) for _ in self.layers]

            def store(i: int, k: torch.Tensor, v: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
                keys[i][:, :, :prefix] = k
                values[i][:, :, :prefix] = v
                return keys[i], values[i]

            causal = torch.ones((prefix, span), dtype=torch.bool, device=device).tril()
            with self._prompt_kernels():
                self._layers(self.model.model.embed_tokens(
                    torch.tensor([prompts[0][:prefix]], device=device)),
                    torch.arange(prefix, device=device)[None], self._bias(causal[None]), store)
            self.prefix_keys = [k[0, :, :prefix] for k in keys]
            self.prefix_values = [v[0, :, :prefix] for v in values]
        self.positions.zero_()
        self.slot.fill_(0)
        idle = [prompts[0][:prefix] + [pad]] * (self.batch - n)
        self.refill(list(range(self.batch)), prompts + idle, pad, block_tokens)
        return self.logits[:n]

    def _prompt_kernels(self) -> Any:
        """The attention kernels for prompts (prefix, prefill, refill) on CUDA: the
        memory-efficient one (the math one as a fallback), whose launch costs nothing per
        shape. Prompt shapes change with nearly every refill, and cuDNN's attention, which
        torch may prefer on Hopper GPUs, builds a plan for each new shape (tens of ms)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])

    @torch.inference_mode()
    def refill(self, rows: list[int], prompts: list[list[int]], pad: int,
               block_tokens: int = 65_536) -> None:
        """Give ``rows`` (whose answers are done) new ``prompts``, which start with the
        prefix of the last ``prefill``; the logits of their last tokens go to the step's
        logits, so that the next token of every row is chosen from them. The other rows go
        on decoding. Rows are encoded in blocks of at most ``block_tokens`` tokens (the
        activations' memory).

        The cache is a ring: a row's prompt takes the slots just before the next step's
        slot (left-padded to the longest of ``prompts``), and its answer the slots after
        it; slots are attended by the ``valid`` mask, not by their order, since positions
        are rotated into the keys. A row's prompt and answer must fit in ``length`` slots
        (the caller's bound), so that the ring never reaches a row's own live slots."""
        device, prefix = self.device, self.prefix
        index = torch.tensor(rows, device=device)
        tokens, own, positions = left_padded([p[prefix:] for p in prompts], pad, prefix)
        width = tokens.shape[1]
        used = prefix + width
        if used >= self.length:
            raise ValueError(f"prompts of {used} tokens do not fit the decoder's {self.length}")
        span = self._span(used)
        # the slots of the rows' prompts, in order: the last is just before the next step's
        order = (self.at - span + torch.arange(span, device=device)) % self.length
        valid = torch.cat([torch.zeros((len(rows), span - used), dtype=torch.bool),
                           torch.ones((len(rows), prefix), dtype=torch.bool), own], 1).to(device)
        self.valid[index] = False
        self.valid[index[:, None], order[None]] = valid
        if prefix:
            shared = order[span - used:span - width][None]
            for i in range(len(self.layers)):  # [kv, prefix, d] -> every row's prefix slots
                self.keys[i][index[:, None], :, shared] = self.prefix_keys[i].transpose(0, 1)
                self.values[i][index[:, None], :, shared] = self.prefix_values[i].transpose(0, 1)
        tokens, positions = tokens.to(device), positions.to(device)
        # a prompt token attends to the valid slots up to its own
        causal = torch.ones((width, span), dtype=torch.bool, device=device).tril(span - width)
        with self._prompt_kernels():
            self._encode(index, tokens, positions, valid, causal, order, block_tokens)
        self.positions[index] = positions[:, -1] + 1

    def _encode(self, index: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
                valid: torch.Tensor, causal: torch.Tensor, order: torch.Tensor,
                block_tokens: int) -> None:
        """``refill``'s encoding of the prompts' own tokens in blocks of rows: their keys and
        values go to the rows' last slots of ``order``, their last logits to the step's."""
        width, span = tokens.shape[1], order.shape[0]
        slots = order[span - width:][None]
        step = max(1, block_tokens // width)
        for lo in range(0, len(index), step):
            hi = min(len(index), lo + step)
            block = index[lo:hi, None]

            def store(i: int, k: torch.Tensor, v: torch.Tensor,
                      block: torch.Tensor = block) -> tuple[torch.Tensor, torch.Tensor]:
                self.keys[i][block, :, slots] = k.transpose(1, 2)
                self.values[i][block, :, slots] = v.transpose(1, 2)
                # the rows' prompt slots, gathered in order: [rows, kv, span, d]
                return (self.keys[i][block, :, order[None]].transpose(1, 2),
                        self.values[i][block, :, order[None]].transpose(1, 2))

            allowed = causal[None] & valid[lo:hi, None, :]
            allowed |= ~allowed.any(-1, keepdim=True)  # a padding query attends anywhere
            x = self._layers(self.model.model.embed_tokens(tokens[lo:hi]), positions[lo:hi],
                             self._bias(allowed), store)
            self.logits[index[lo:hi]] = self._head(x)

    def _step(self) -> None:
        """One decode step from the fixed inputs: the token of every row at ``slot``."""
        self.valid.index_fill_(1, self.slot, True)

        def store(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            self.keys[i].index_copy_(2, self.slot, k)
            self.values[i].index_copy_(2, self.slot, v)
            return self.keys[i], self.values[i]

        x = self._layers(self.model.model.embed_tokens(self.tokens[:, None]),
                         self.positions[:, None], self._bias(self.valid[:, None]), store)
        self.logits.copy_(self._head(x))
        self.slot.add_(1).remainder_(self.length)
        self.positions.add_(1)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each row's chosen token (a device tensor of at most ``batch`` rows) and return
        the next logits ``[batch, vocab]`` (queued on the device: reading them waits)."""
        self.tokens[:tokens.shape[0]].copy_(tokens, non_blocking=True)
        if self.graphs and self.graph is None and self.graph_error is None:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()
        self.at = (self.at + 1) % self.length
        return self.logits

    def _capture(self) -> None:
        """Capture ``_step`` as a CUDA graph, on a side stream after two warm-up steps there
        (they only run each kernel once before capture; the slot, positions and mask they
        advanced are restored, the keys they wrote lie in slots no row holds). A failed
        capture leaves the eager step and says why in ``graph_error``; running out of memory
        is raised (the caller halves the batch)."""
        state = (self.valid, self.slot, self.positions)
        saved = [t.clone() for t in state]
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        error: BaseException | None = None
        try:
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step()
                for t, s in zip(state, saved, strict=True):
                    t.copy_(s)
            graph = torch.cuda.CUDAGraph()
            # thread-local: another thread's CUDA call (none is expected) does not break it
            with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                self._step()
            self.graph = graph
        except Exception as exc:  # torch raises RuntimeError and its own subclasses
            error, self.graph = exc, None
            self.graph_error = f"{type(exc).__name__}: {exc}"[:500]
        torch.cuda.synchronize(self.device)  # nothing of the warm-up left in flight
        for t, s in zip(state, saved, strict=True):
            t.copy_(s)
        if isinstance(error, torch.cuda.OutOfMemoryError):
            raise error

    @property
    def nbytes(self) -> int:
        """Bytes of the cache."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def release(self) -> None:
        """Drop the cache and the graph (memory back to the allocator)."""
        self.keys, self.values, self.graph = [], [], None
        self.prefix_keys, self.prefix_values = [], []


__all__ = ["ARCHITECTURES", "StaticDecoder", "kv_layout", "left_padded", "unsupported"]
