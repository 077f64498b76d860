"""The clinic's rule doctor: its knowledge table from the case library, the expected
information gain against a brute-force computation, Bayes updates, confirmation bias, and
whole batched consultations against the shipped cases."""

from __future__ import annotations

import numpy as np
import pytest

from populace.scenarios.clinic.cases import default_library
from populace.scenarios.clinic.doctor import (
    DIAGNOSE,
    DoctorParams,
    choose,
    consult,
    differential,
    information_gain,
    keyed_uniform,
    posterior,
    prior_log,
    update,
)
from populace.scenarios.clinic.knowledge import KnowledgeTable, case_findings
from populace.scenarios.clinic.vocabulary import find_symptoms


@pytest.fixture(scope="module")
def library():
    cases = list(default_library())
    table = KnowledgeTable.from_cases(cases)
    truth = case_findings(cases, table.findings)
    column = {f: j for j, f in enumerate(table.findings)}
    complaints = np.zeros_like(truth)
    for i, case in enumerate(cases):
        for key in find_symptoms(case.patient.primary_symptom):
            j = column.get(f"symptom:{key}")
            if j is not None and truth[i, j]:
                complaints[i, j] = True
    correct = np.array([table.index_of(c.diagnosis) for c in cases])
    return cases, table, truth, complaints, correct


def small_table() -> KnowledgeTable:
    like = np.array([[0.9, 0.2, 0.5], [0.1, 0.8, 0.5], [0.5, 0.5, 0.05]])
    return KnowledgeTable(diagnoses=("a", "b", "c"), findings=("symptom:x", "symptom:y",
                                                               "test:z"),
                          is_test=np.array([False, False, True]), cost=np.array([0, 0, 50.0]),
                          turnaround_min=np.array([0, 0, 30]), likelihood=like,
                          prior=np.array([0.5, 0.3, 0.2]))


def test_the_table_counts_findings_per_diagnosis(library) -> None:
    cases, table, truth, _, correct = library
    assert len(table.diagnoses) <= len(cases) and table.likelihood.shape == (
        len(table.diagnoses), len(table.findings))
    assert np.isclose(table.prior.sum(), 1.0)
    # a finding every case of a diagnosis has is likely, one none has is unlikely
    i = 0
    d = correct[i]
    present = np.flatnonzero(truth[i])
    absent = np.flatnonzero(~truth[i])
    same = correct == d
    if same.sum() == 1:
        assert (table.likelihood[d, present] > 0.9).all()
        assert (table.likelihood[d, absent] < 0.1).all()
    assert table.is_test.sum() > 0 and (table.cost[table.is_test] > 0).all()
    with pytest.raises(ValueError, match="no diagnosis 'dragon pox'"):
        table.index_of("dragon pox")


def test_information_gain_equals_the_brute_force_sum() -> None:
    table = small_table()
    log_post = np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]))
    gain = information_gain(table, log_post)
    p = posterior(log_post)
    for n in range(2):
        for f in range(3):
            h = -(p[n] * np.log2(p[n])).sum()
            expected = 0.0
            for lik in (table.likelihood[:, f], 1 - table.likelihood[:, f]):
                joint = p[n] * lik
                pa = joint.sum()
                post = joint / pa
                expected += pa * -(post * np.log2(post)).sum()
            assert gain[n, f] == pytest.approx(h - expected, abs=1e-9)
    # a finding with the same likelihood under every diagnosis tells nothing
    flat = small_table()
    flat.likelihood[:, 0] = 0.4
    assert information_gain(flat, log_post)[:, 0] == pytest.approx([0, 0], abs=1e-12)


def test_choose_asks_the_most_telling_finding_then_diagnoses() -> None:
    table = small_table()
    log_post = np.log(np.array([[0.45, 0.45, 0.1], [0.98, 0.01, 0.01]]))
    asked = np.zeros((2, 3), dtype=bool)
    pick = choose(table, log_post, asked, np.zeros(2), DoctorParams(cost_weight=0.0))
    assert pick[0] == information_gain(table, log_post)[0].argmax()
    assert pick[1] == DIAGNOSE  # already confident
    asked[0, pick[0]] = True
    again = choose(table, log_post, asked, np.zeros(2), DoctorParams(cost_weight=0.0))
    assert again[0] != pick[0]
    assert choose(table, log_post, asked, np.full(2, 20), DoctorParams())[0] == DIAGNOSE
    # a costly test loses to a question that tells a little less
    costly = choose(table, log_post, np.zeros((2, 3), dtype=bool), np.zeros(2),
                    DoctorParams(cost_weight=1.0))
    assert not table.is_test[costly[0]]


def test_bayes_update_and_confirmation_bias() -> None:
    table = small_table()
    log_post = np.log(np.array([[0.6, 0.3, 0.1]]))
    after = update(table, log_post, np.array([1]), np.array([True]), DoctorParams())
    expected = np.array([0.6 * 0.2, 0.3 * 0.8, 0.1 * 0.5])
    assert posterior(after)[0] == pytest.approx(expected / expected.sum())
    biased = update(table, log_post, np.array([1]), np.array([True]),
                    DoctorParams(confirmation=1.0))
    # fully biased: the leader (a) loses no ground against the best-supported alternative
    assert biased[0, 0] - biased[0, 1] == pytest.approx(log_post[0, 0] - log_post[0, 1])
    half = update(table, log_post, np.array([1]), np.array([True]),
                  DoctorParams(confirmation=0.5))
    assert after[0, 0] < half[0, 0] < biased[0, 0]
    assert list(differential(after, 2)[0]) == list(np.argsort(-after[0])[:2])


@pytest.mark.slow
def test_consultations_on_the_library(library) -> None:
    cases, table, truth, complaints, correct = library
    reps = 20
    args = (np.repeat(truth, reps, 0), np.repeat(complaints, reps, 0),
            np.repeat(correct, reps))
    sharp = consult(table, *args, DoctorParams(), 0, miss_rate=0.3)
    assert sharp.correct.mean() > 0.9 and (sharp.rank > 0).mean() >= sharp.correct.mean()
    assert (sharp.turns <= 20).all() and (sharp.tests <= sharp.turns).all()
    assert (sharp.cost >= 0).all() and sharp.turns.mean() > 1
    # the same seed, the same consultations
    again = consult(table, *args, DoctorParams(), 0, miss_rate=0.3)
    assert (again.diagnosis == sharp.diagnosis).all() and (again.turns == sharp.turns).all()
    # biased doctors are less accurate, over several seeds
    accuracy = {0.0: [], 0.9: []}
    for seed in range(5):
        for bias in accuracy:
            res = consult(table, *args, DoctorParams(confirmation=bias),
                          seed, miss_rate=0.3)
            accuracy[bias].append(res.correct.mean())
    assert max(accuracy[0.9]) < min(accuracy[0.0]), accuracy
    # a doctor allowed no turn diagnoses from the complaint alone, and worse
    blunt = consult(table, *args, DoctorParams(max_turns=0), 0)
    assert (blunt.turns == 0).all() and blunt.correct.mean() < sharp.correct.mean()
    assert prior_log(table, complaints).shape == (len(cases), len(table.diagnoses))


def test_a_consultation_does_not_depend_on_the_batch_around_it(library) -> None:
    _, table, truth, complaints, correct = library
    keys = np.arange(len(correct)) + 1000
    whole = consult(table, truth, complaints, correct, DoctorParams(), 7, keys=keys,
                    miss_rate=0.4)
    order = np.arange(len(correct))[::-1][: len(correct) // 2]
    part = consult(table, truth[order], complaints[order], correct[order], DoctorParams(), 7,
                   keys=keys[order], miss_rate=0.4)
    assert (part.turns == whole.turns[order]).all()
    assert (part.diagnosis == whole.diagnosis[order]).all()
    assert keyed_uniform(7, keys, 3).min() >= 0 and keyed_uniform(7, keys, 3).max() < 1
    assert not np.allclose(keyed_uniform(7, keys, 3), keyed_uniform(8, keys, 3))


def test_doctors_with_their_own_parameters_in_one_batch(library) -> None:
    _, table, truth, complaints, correct = library
    n = len(correct)
    mixed = DoctorParams(confirmation=np.where(np.arange(n) % 2 == 0, 0.0, 0.9),
                         max_turns=np.where(np.arange(n) % 2 == 0, 20, 0))
    res = consult(table, truth, complaints, correct, mixed, 3, miss_rate=0.3)
    assert (res.turns[1::2] == 0).all() and res.turns[0::2].mean() > 3
    alone = consult(table, truth[0::2], complaints[0::2], correct[0::2], DoctorParams(), 3,
                    keys=np.arange(n)[0::2], miss_rate=0.3)
    assert (alone.turns == res.turns[0::2]).all()
    with pytest.raises(ValueError, match="a > 0 and b > 0"):
        KnowledgeTable.from_cases(library[0], a=0.0)
