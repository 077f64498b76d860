"""What a rule-based doctor knows: a table of symptom and test likelihoods per diagnosis, built
from a case library.

Core objects:
    KnowledgeTable: diagnoses x findings. A finding is a symptom (asked of the patient) or a
        test (ordered, with a cost and a turnaround time); ``likelihood[d, f]`` is the
        probability that finding ``f`` is positive (the symptom present, the test abnormal) in
        a patient with diagnosis ``d``; ``prior[d]`` the share of cases with it.
    case_findings: which findings are positive in each case (the truth patients and tests
        answer from).

Likelihoods are counts with a Beta(a, b) prior per cell: with one case of a diagnosis, a finding
it has is positive with probability (1 + a) / (1 + a + b), one it lacks with a / (1 + a + b),
so that a doctor never rules a diagnosis out on one answer (patients forget, tests miss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cases import Case, result_of
from .diagnosis import normalise_diagnosis
from .vocabulary import TEST_VOCABULARY, implied_symptoms


@dataclass(frozen=True)
class KnowledgeTable:
    """Diagnoses x findings, as arrays (see the module's docstring).

    Attributes:
        diagnoses: the diagnoses (their names as the library gives them), one per row.
        findings: the finding names, symptoms first (``symptom:KEY``) then tests
            (``test:NAME``).
        is_test: per finding, whether it is a test (ordered) rather than a question.
        cost: per finding, the test's cost (0 for questions).
        turnaround_min: per finding, the test's turnaround in minutes (0 for questions).
        likelihood: (diagnoses, findings) probabilities of a positive finding.
        prior: per diagnosis, the share of the library's cases with it.
    """

    diagnoses: tuple[str, ...]
    findings: tuple[str, ...]
    is_test: np.ndarray
    cost: np.ndarray
    turnaround_min: np.ndarray
    likelihood: np.ndarray
    prior: np.ndarray

    @classmethod
    def from_cases(cls, cases: Sequence[Case], *, a: float = 0.1,
                   b: float = 0.1) -> KnowledgeTable:
        """The table of a case library (its cases' diagnoses, symptoms and abnormal tests).

        Cases whose diagnoses normalise to the same text count as one diagnosis. Only tests
        of the vocabulary are findings (a case's own tests, from an imported file, are not:
        a doctor can only order what the hospital offers).
        """
        if not cases:
            raise ValueError("a knowledge table needs at least one case")
        if not (a > 0 and b > 0):
            raise ValueError(f"the Beta prior needs a > 0 and b > 0 (got a={a}, b={b}): with "
                             "0 a finding never seen would rule a diagnosis out for good")
        names: dict[str, str] = {}
        for case in cases:
            names.setdefault(normalise_diagnosis(case.diagnosis), case.diagnosis)
        keys = list(names)
        symptoms = sorted({k for c in cases for k in _symptoms(c)})
        tests = sorted({t for c in cases for t in c.tests if t in TEST_VOCABULARY})
        findings = tuple([f"symptom:{s}" for s in symptoms] + [f"test:{t}" for t in tests])
        positive = case_findings(cases, findings)
        row = np.array([keys.index(normalise_diagnosis(c.diagnosis)) for c in cases])
        counts = np.zeros((len(keys), len(findings)))
        np.add.at(counts, row, positive)
        n = np.bincount(row, minlength=len(keys)).astype(float)
        likelihood = (counts + a) / (n[:, None] + a + b)
        info = [TEST_VOCABULARY[t] for t in tests]
        return cls(
            diagnoses=tuple(names.values()),
            findings=findings,
            is_test=np.array([False] * len(symptoms) + [True] * len(tests)),
            cost=np.array([0.0] * len(symptoms) + [t.cost for t in info]),
            turnaround_min=np.array([0] * len(symptoms) + [t.turnaround_min for t in info]),
            likelihood=likelihood,
            prior=n / n.sum(),
        )

    def index_of(self, diagnosis: str) -> int:
        """The row of a diagnosis (by normalised text); ValueError naming it if unknown."""
        wanted = normalise_diagnosis(diagnosis)
        for i, name in enumerate(self.diagnoses):
            if normalise_diagnosis(name) == wanted:
                return i
        raise ValueError(f"no diagnosis {diagnosis!r} in the knowledge table")


def _symptoms(case: Case) -> set[str]:
    keys = set(case.patient.symptom_keys)
    return keys | implied_symptoms(keys)


def case_findings(cases: Sequence[Case], findings: Sequence[str]) -> np.ndarray:
    """(cases, findings) booleans: the symptom is present, or the test is abnormal (a test the
    case does not list is normal, as the measurement agent reports it)."""
    out = np.zeros((len(cases), len(findings)), dtype=bool)
    column = {f: j for j, f in enumerate(findings)}
    for i, case in enumerate(cases):
        for key in _symptoms(case):
            j = column.get(f"symptom:{key}")
            if j is not None:
                out[i, j] = True
        for name in case.tests:
            j = column.get(f"test:{name}")
            if j is not None:
                out[i, j] = result_of(case, name).abnormal
    return out
