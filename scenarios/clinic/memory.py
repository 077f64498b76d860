"""What each rule doctor knows: a textbook (the library's knowledge table, of which a doctor may
have learned only some diagnoses) and, with ``memory: true``, the cases it has seen (as in
MedAgentSim, doctors remember past consultations and their outcomes and improve over a run).

A doctor's table is the textbook's, worth ``weight`` cases per diagnosis it learned, plus the
counts of its own past consultations: for each diagnosis it was told was correct, the
findings it asked or ordered and how they came back. With a Beta(a, a) prior per cell:

    likelihood[d, f] = (weight * known[d] * textbook[d, f] + positive[d, f] + a)
                       / (weight * known[d] + asked[d, f] + 2a)
    prior[d] ~ weight * known[d] * textbook_prior[d] * diagnoses + seen[d] + epsilon

so a diagnosis the doctor never learned nor met has (almost) no prior and is not given, and
one it meets enters its differential after the first case. Doctors without memory who know
the whole textbook share the textbook itself (the fast path: one table for every row).

Core objects:
    DoctorMemory: the counts (an ``ArrayState``: checkpoints keep what doctors learned).
    Knowledge: each doctor's prior and likelihoods, and ``remember`` after consultations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator import ArrayState

from .knowledge import KnowledgeTable

EPSILON = 1e-6
"""Prior weight of a diagnosis a doctor neither learned nor met (never 0: log stays finite)."""


@dataclass
class DoctorMemory(ArrayState):
    """Per doctor, what it has seen: empty arrays when doctors remember nothing."""

    seen: np.ndarray
    """(doctors, diagnoses) consultations that ended with that correct diagnosis."""
    asked: np.ndarray
    """(doctors, diagnoses, findings) times each finding was asked or ordered in them."""
    positive: np.ndarray
    """(doctors, diagnoses, findings) times it came back positive."""

    @classmethod
    def empty(cls, doctors: int, diagnoses: int, findings: int) -> DoctorMemory:
        """No memory yet (``doctors`` 0: doctors that remember nothing)."""
        return cls(seen=np.zeros((doctors, diagnoses), np.float32),
                   asked=np.zeros((doctors, diagnoses, findings), np.float32),
                   positive=np.zeros((doctors, diagnoses, findings), np.float32))


class Knowledge:
    """Each doctor's prior and likelihoods (see the module docstring).

    Args:
        table: the textbook.
        known: (doctors, diagnoses) the diagnoses each doctor learned.
        weight: how many cases of a diagnosis the textbook is worth.
        a: the Beta prior's pseudo-count.
        memory: the doctors' memory (the scenario's state, changed in place), or None.
    """

    def __init__(self, table: KnowledgeTable, known: np.ndarray, weight: float, a: float,
                 memory: DoctorMemory | None) -> None:
        self.table, self.known, self.weight, self.a = table, known, weight, a
        self.memory = memory
        self.shared = memory is None and bool(known.all())

    def tables(self, doctors: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(log-prior (n, diagnoses), likelihood (n, diagnoses, findings)) of ``doctors``
        (hospital indices, one per consultation); ``(None, None)`` on the fast path."""
        if self.shared:
            return None, None
        t, w, a = self.table, self.weight, self.a
        known = self.known[doctors].astype(np.float64) * w  # (n, diagnoses)
        positive = known[:, :, None] * t.likelihood[None] + a
        total = known[:, :, None] + 2 * a
        seen = known * t.prior[None, :] * len(t.prior) + EPSILON
        if self.memory is not None:
            positive = positive + self.memory.positive[doctors]
            total = total + self.memory.asked[doctors]
            seen = seen + self.memory.seen[doctors]
        log_prior = np.log(seen) - np.log(seen.sum(axis=1, keepdims=True))
        return log_prior, positive / total

    def remember(self, doctors: np.ndarray, diagnoses: np.ndarray, asked: np.ndarray,
                 positive: np.ndarray) -> None:
        """Doctors learn from ended consultations: the correct diagnosis (told after), the
        findings asked (``asked``: (n, findings) bools) and their answers."""
        if self.memory is None or not len(doctors):
            return
        m = self.memory
        np.add.at(m.seen, (doctors, diagnoses), 1.0)
        np.add.at(m.asked, (doctors, diagnoses), asked.astype(np.float32))
        np.add.at(m.positive, (doctors, diagnoses), (asked & positive).astype(np.float32))
