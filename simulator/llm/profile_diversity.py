"""How varied a set of language-model biographies is: do the personas collapse into one voice?

``populace profiles generate`` prints this report after writing the biographies; it measures
distinct n-grams, pairwise word-set overlap, duplicates and lengths, and warns when the bios
look alike.

Core objects:
    diversity_report: measures a list of biographies; returns a ``DiversityReport``.
    DiversityReport: the measures, the collapse ``warning`` and the printed ``lines``.
    words: the lowercase word tokens the measures count.
    DISTINCT2_MIN, DUPLICATES_MAX: the thresholds of the warning; COLLAPSE_WARNING its text.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

DISTINCT2_MIN = 0.3
DUPLICATES_MAX = 0.01
COLLAPSE_WARNING = "personas are collapsing into one voice"

__all__ = [
    "COLLAPSE_WARNING",
    "DISTINCT2_MIN",
    "DUPLICATES_MAX",
    "DiversityReport",
    "diversity_report",
    "words",
]


_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def words(text: str) -> list[str]:
    """Lowercase word tokens (letters and digits; inner apostrophes kept)."""
    return _TOKEN.findall(text.lower())


@dataclass
class DiversityReport:
    """How varied a set of biographies is.

    Attributes:
        bios: how many biographies were measured (missing ones are not counted).
        distinct_1, distinct_2, distinct_3: distinct n-grams / all n-grams over every bio
            (lowercase word tokens, n-grams within one bio); 1 means no n-gram repeats.
        mean_jaccard: mean Jaccard similarity of the word sets of every pair in a seeded
            sample of ``jaccard_sample`` bios (0: no shared words, 1: same words).
        duplicate_share: share of bios whose text (whitespace normalised) occurs more than once.
        mean_words, min_words, max_words: length in words.
    """

    bios: int
    distinct_1: float
    distinct_2: float
    distinct_3: float
    mean_jaccard: float
    jaccard_sample: int
    duplicate_share: float
    mean_words: float
    min_words: int
    max_words: int

    @property
    def warning(self) -> str | None:
        """The collapse warning, or None when the biographies look varied enough."""
        reasons = []
        if self.distinct_2 < DISTINCT2_MIN:
            reasons.append(f"distinct-2 {self.distinct_2:.3f} < {DISTINCT2_MIN}")
        if self.duplicate_share > DUPLICATES_MAX:
            reasons.append(f"duplicates {self.duplicate_share:.1%} > {DUPLICATES_MAX:.0%}")
        if not reasons:
            return None
        return (f"warning: {COLLAPSE_WARNING} ({', '.join(reasons)}); vary the prompt, raise "
                "the temperature, or add attributes")

    def lines(self) -> list[str]:
        """The report as printed."""
        if self.bios == 0:
            return ["diversity: no biographies to measure"]
        out = [
            f"diversity of {self.bios} bios: distinct-1 {self.distinct_1:.3f}, distinct-2 "
            f"{self.distinct_2:.3f}, distinct-3 {self.distinct_3:.3f}; mean pairwise Jaccard "
            f"{self.mean_jaccard:.3f} (sample of {self.jaccard_sample}); duplicates "
            f"{self.duplicate_share:.1%}",
            f"length: {self.mean_words:.1f} words on average (min {self.min_words}, max "
            f"{self.max_words})",
        ]
        if self.warning:
            out.append(self.warning)
        return out


def diversity_report(bios: Sequence[str | None], *, sample: int = 500,
                     seed: int = 0) -> DiversityReport:
    """Measure how varied ``bios`` are (missing entries are skipped).

    Args:
        bios: the biographies.
        sample: most bios in the pairwise Jaccard sample (all pairs of the sample are compared).
        seed: seed of the sample.
    """
    texts = [b for b in bios if isinstance(b, str)]
    nan = float("nan")
    if not texts:
        return DiversityReport(0, nan, nan, nan, nan, 0, nan, nan, 0, 0)
    tokens = [words(t) for t in texts]
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    flat = np.empty(int(lengths.sum()), dtype=object)
    flat[:] = list(itertools.chain.from_iterable(tokens))
    ids, vocab = pd.factorize(flat)
    d1, d2, d3 = (_distinct(ids.astype(np.int64), lengths, len(vocab), n) for n in (1, 2, 3))
    jaccard, n_sample = _mean_jaccard(tokens, sample, seed)
    normal = pd.Series([" ".join(t.split()) for t in texts])
    return DiversityReport(
        bios=len(texts), distinct_1=d1, distinct_2=d2, distinct_3=d3, mean_jaccard=jaccard,
        jaccard_sample=n_sample, duplicate_share=float(normal.duplicated(keep=False).mean()),
        mean_words=float(lengths.mean()), min_words=int(lengths.min()),
        max_words=int(lengths.max()))


def _distinct(ids: np.ndarray, lengths: np.ndarray, size: int, n: int) -> float:
    """Distinct n-grams / n-grams, n-grams never crossing from one bio into the next.

    ``ids`` are the words of every bio one after the other (as integers below ``size``).
    """
    m = len(ids) - n + 1
    if m <= 0:
        return float("nan")
    doc = np.repeat(np.arange(len(lengths)), lengths)
    inside = doc[:m] == doc[n - 1:]  # first and last word in one bio: all of them are
    total = int(inside.sum())
    if total == 0:
        return float("nan")
    if max(size, 1) ** n < 2**62:  # pack each n-gram into one integer exactly
        code = ids[:m].copy()
        for k in range(1, n):
            code = code * size + ids[k:k + m]
        grams = pd.unique(code[inside])
    else:  # a vocabulary above 2 million words: compare the n-grams as rows
        rows = np.stack([ids[k:k + m] for k in range(n)], axis=1)[inside]
        grams = np.unique(rows, axis=0)
    return len(grams) / total


def _mean_jaccard(tokens: list[list[str]], sample: int, seed: int) -> tuple[float, int]:
    """Mean Jaccard similarity of word sets over every pair of a seeded sample."""
    n = len(tokens)
    if n < 2 or sample < 2:
        return float("nan"), min(n, max(sample, 0))
    picked = (np.random.default_rng(seed).choice(n, size=sample, replace=False)
              if n > sample else np.arange(n))
    sets = [set(tokens[i]) for i in picked]
    vocab = {w: j for j, w in enumerate(sorted(set().union(*sets)))}
    member = np.zeros((len(sets), max(len(vocab), 1)), dtype=np.float32)
    for row, s in enumerate(sets):
        member[row, [vocab[w] for w in s]] = 1.0
    shared = member @ member.T
    sizes = member.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - shared
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = np.where(union > 0, shared / union, 1.0)
    upper = np.triu_indices(len(sets), k=1)
    return float(similarity[upper].mean()), len(sets)
