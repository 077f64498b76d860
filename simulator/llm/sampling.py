"""Seeded sampling of a batch's next tokens on the device, each row's draw fixed by its own
seed and token index alone (not by its batch, its chunk or the device's random state).

Gumbel-max: a row's token is ``argmax(logits / temperature + g)``, where ``g = -log(-log(u))``
and ``u`` is a uniform number per (seed, token index, vocabulary id) from a counter-based hash
(splitmix64's finaliser in integer tensor arithmetic). It draws from the softmax of the scaled
logits, as a multinomial would, with no per-row generator and nothing copied to the host: the
decode loop keeps going without waiting. Top-p keeps, per row, the most likely tokens whose
probabilities sum to ``top_p`` (a sort, only for rows with ``top_p < 1``). Tokens the grammar
masked (-inf) are never drawn.

Core objects:
    sample: the chosen token of every row.
    uniforms: the hash's uniform numbers (exposed for tests).
"""

from __future__ import annotations

import torch

#: rows hashed at a time: [rows, vocabulary] int64 temporaries stay ~0.6 GB at 150k tokens
BLOCK_ROWS = 512
_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    """A 64-bit constant as torch's signed int64."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)
_STEP = _signed(0xD1B54A32D192ED03)


def _shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` keeps the sign)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def uniforms(seeds: torch.Tensor, counter: int | torch.Tensor, vocab: int) -> torch.Tensor:
    """Uniform numbers in (0, 1), float32 ``[rows, vocab]``, one per (row's seed, its
    ``counter``, vocabulary id): the same on every device (integer arithmetic wraps alike).
    ``counter``: one for every row, or an int64 tensor ``[rows]``."""
    ids = torch.arange(vocab, dtype=torch.int64, device=seeds.device)
    offset = ((counter * _STEP + 1)[:, None] if isinstance(counter, torch.Tensor)  # wraps alike
              else _signed(counter * _STEP + 1))
    x = seeds[:, None] * _GOLDEN + ids[None] * _signed(2 * _GOLDEN) + offset
    x = (x ^ _shift(x, 30)) * _MIX1
    x = (x ^ _shift(x, 27)) * _MIX2
    return unit(x ^ _shift(x, 31))


def unit(x: torch.Tensor) -> torch.Tensor:
    """float32 numbers strictly inside (0, 1) from the top 23 bits of int64 hashes (24 bits
    plus a half would round up to 1.0 in float32, and a Gumbel of 1 is infinite)."""
    return (_shift(x, 41).float() + 0.5) / float(1 << 23)


def sample(logits: torch.Tensor, drawn: torch.Tensor, temperature: torch.Tensor,
           top_p: torch.Tensor | None, seeds: torch.Tensor, counter: torch.Tensor
           ) -> torch.Tensor:
    """The token of each row of ``logits`` ``[rows, vocab]`` (float32, masked tokens -inf):
    the argmax, except the rows ``drawn`` (indices), drawn with their seed at their token
    index ``counter``. ``temperature``, ``top_p`` (None: 1 for every row), ``seeds`` and
    ``counter`` are ``[rows]`` device tensors. Nothing waits for the device (the caller knows
    which rows draw and whether any has a top-p)."""
    chosen = logits.argmax(-1)
    for start in range(0, drawn.numel(), BLOCK_ROWS):
        rows = drawn[start:start + BLOCK_ROWS]
        scaled = logits[rows] / temperature[rows, None]
        if top_p is not None:
            p = top_p[rows]
            ordered, order = scaled.sort(-1, descending=True)
            probs = ordered.softmax(-1)
            # a token stays while the tokens before it hold less than top_p
            drop = probs.cumsum(-1) - probs >= p[:, None]
            scaled = scaled.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
        gumbel = -(-uniforms(seeds[rows], counter[rows], logits.shape[-1]).log()).log()
        chosen[rows] = (scaled + gumbel).argmax(-1)  # finite noise: -inf stays -inf
    return chosen


__all__ = ["BLOCK_ROWS", "sample", "uniforms", "unit"]
