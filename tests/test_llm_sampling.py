"""Seeded sampling on the device (simulator/llm/sampling.py): uniform hash numbers, draws that
follow the softmax of the scaled logits, top-p, masked tokens never drawn, and a row's draw
fixed by its seed and token index whatever its batch."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from populace.simulator.llm.sampling import sample, uniforms, unit  # noqa: E402


def test_uniforms_are_uniform_and_fixed_by_seed_counter_and_token() -> None:
    seeds = torch.tensor([0, 1, 2**52 + 7, 2**63 - 1])
    u = uniforms(seeds, 3, 250_000)
    assert u.shape == (4, 250_000) and float(u.min()) > 0 and float(u.max()) < 1
    assert torch.equal(u, uniforms(seeds, 3, 250_000))
    assert not torch.equal(u, uniforms(seeds, 4, 250_000))
    assert len({round(float(x), 7) for x in u[:, 0]}) == 4  # the seeds differ
    # a counter per row (rows at different token indices) gives each row its own counter's
    mixed = uniforms(seeds, torch.tensor([3, 4, 3, 2**40]), 250_000)
    assert torch.equal(mixed[[0, 2]], u[[0, 2]])
    assert torch.equal(mixed[1], uniforms(seeds, 4, 250_000)[1])
    assert torch.equal(mixed[3], uniforms(seeds, 2**40, 250_000)[3])
    counts = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert (counts - 0.1).abs().max() < 0.002
    assert abs(float(torch.corrcoef(torch.stack([u[0], u[1]]))[0, 1])) < 0.01
    # the extreme hashes stay strictly inside (0, 1): their Gumbel noise is finite (a 24-bit
    # version rounded the top one to 1.0 in float32, and a masked token won as NaN)
    ends = unit(torch.tensor([-1, 0, 2**63 - 1, -(2**63)]))
    assert bool((ends > 0).all() and (ends < 1).all())
    assert bool((-(-ends.log()).log()).isfinite().all())


def draws(logits: list[float], n: int, *, temperature: float = 1.0,
          top_p: float | None = None, counter: int = 5) -> torch.Tensor:
    rows = torch.tensor([logits] * n, dtype=torch.float32)
    p = None if top_p is None else torch.full((n,), top_p)
    return sample(rows, torch.arange(n), torch.full((n,), temperature), p,
                  torch.arange(n) * 7919 + 1, torch.full((n,), counter))


def test_draws_follow_the_softmax_of_the_scaled_logits() -> None:
    probs = [0.5, 0.3, 0.2]
    logits = [math.log(p) for p in probs]
    n = 40_000
    freq = torch.bincount(draws(logits, n), minlength=3) / n
    assert torch.allclose(freq, torch.tensor(probs), atol=0.012)
    cooled = torch.tensor(probs) ** 2 / sum(p * p for p in probs)  # temperature 0.5
    freq = torch.bincount(draws(logits, n, temperature=0.5), minlength=3) / n
    assert torch.allclose(freq, cooled, atol=0.012)
    # top-p 0.6 keeps the tokens before which less than 0.6 is held: the first two
    freq = torch.bincount(draws(logits, n, top_p=0.6), minlength=3) / n
    assert float(freq[2]) == 0 and abs(float(freq[0]) - 0.5 / 0.8) < 0.012


def test_masked_tokens_greedy_rows_and_batches() -> None:
    logits = torch.tensor([[0.0, -math.inf, 0.1, 5.0], [1.0, 2.0, 3.0, -math.inf],
                           [0.0, 0.0, 0.0, 0.0]])
    temperature = torch.tensor([2.0, 0.0, 1.0])
    seeds = torch.tensor([11, 12, 13])
    seen = set()
    for counter in range(300):
        at = torch.full((3,), counter)
        chosen = sample(logits, torch.tensor([0, 2]), temperature, None, seeds, at)
        assert int(chosen[1]) == 2  # not drawn: the argmax
        assert int(chosen[0]) != 1  # masked: never drawn
        seen.add(int(chosen[2]))
        alone = sample(logits[2:], torch.tensor([0]), temperature[2:], None, seeds[2:],
                       at[2:])
        assert int(alone[0]) == int(chosen[2])  # a row's draw does not depend on its batch
    assert seen == {0, 1, 2, 3}
