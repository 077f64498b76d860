"""The rule doctor: a differential diagnosis over a knowledge table, updated by Bayes' rule,
asking the most informative question or test next and diagnosing when confident. Batched: every
function works on the arrays of many consultations at once (one row each), so that a hospital
round of thousands of consultations is a few matrix products.

Core objects:
    DoctorParams: how confident a doctor must be, how many turns it has, what a test's cost
        weighs against what it tells, and its confirmation bias.
    prior_log: the starting log-posterior of each consultation (the library's shares,
        updated with the chief complaint).
    choose: per consultation, the finding to ask or order next, or DIAGNOSE.
    update: the posterior after the answers.
    consult: whole consultations against known truths (patients that answer from their case,
        tests that report it), for studies of the doctor alone and for tests.

The expected information gain of a finding is computed without a (consultations x diagnoses x
findings) array: with ``p`` the posterior and ``L`` the likelihoods, the entropy after a positive
answer is ``log p1 - ((p log p) @ L + p @ (L log L)) / p1`` where ``p1 = p @ L`` (the same for a
negative answer with ``1 - L``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .knowledge import KnowledgeTable

DIAGNOSE = -1
"""What ``choose`` returns for a consultation whose doctor diagnoses now."""

TINY = 1e-12


@dataclass(frozen=True)
class DoctorParams:
    """How a rule doctor decides. Each attribute is one value for the whole batch, or an array
    with one value per consultation (doctors with their own biases in one batch).

    Attributes:
        confidence: diagnose once the leading diagnosis has this posterior probability.
        max_turns: questions and tests at most; then the leading diagnosis is given.
        cost_weight: bits of expected information one unit of test cost is worth giving up
            (0: tests are free; 0.01: a 100-unit test must tell one bit more than a question).
        min_gain: diagnose when no finding's expected bits, less its cost's weight, reach
            this.
        confirmation: confirmation bias, 0 (none) to 1: the share of the evidence against its
            leading diagnosis (relative to the best-supported alternative) the doctor ignores.
    """

    confidence: float | np.ndarray = 0.9
    max_turns: int | np.ndarray = 20
    cost_weight: float | np.ndarray = 0.002
    min_gain: float | np.ndarray = 0.02
    confirmation: float | np.ndarray = 0.0

    def rows(self, index: np.ndarray) -> DoctorParams:
        """The parameters of the consultations at ``index`` (per-consultation arrays are
        indexed; batch-wide values stay as they are)."""
        def pick(value: float | np.ndarray) -> float | np.ndarray:
            return value[index] if isinstance(value, np.ndarray) and value.ndim else value
        return DoctorParams(*(pick(getattr(self, f)) for f in (
            "confidence", "max_turns", "cost_weight", "min_gain", "confirmation")))


def _per_row(value: float | np.ndarray) -> np.ndarray:
    """A parameter as a column that broadcasts against (consultations, ...) arrays."""
    array = np.asarray(value, dtype=float)
    return array[:, None] if array.ndim else array


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log2(np.clip(p, TINY, None))).sum(axis=-1)


def posterior(log_post: np.ndarray) -> np.ndarray:
    """Normalised probabilities of (consultations, diagnoses) log-posteriors."""
    shifted = log_post - log_post.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    return p / p.sum(axis=1, keepdims=True)


def _times(p: np.ndarray, lik: np.ndarray) -> np.ndarray:
    """(consultations, findings) ``p @ lik`` for a shared (diagnoses, findings) table, or row
    by row for per-consultation (consultations, diagnoses, findings) tables."""
    return p @ lik if lik.ndim == 2 else np.einsum("nd,ndf->nf", p, lik)


def prior_log(table: KnowledgeTable, complaints: np.ndarray, *,
              log_prior: np.ndarray | None = None,
              likelihood: np.ndarray | None = None) -> np.ndarray:
    """(consultations, diagnoses) log-posteriors after the chief complaint: the library's
    shares, updated with each consultation's complaint findings (``complaints``: a boolean
    (consultations, findings) array of the findings the patient opens with, all positive).

    ``log_prior`` (consultations, diagnoses) and ``likelihood`` (consultations, diagnoses,
    findings) replace the table's where each consultation's doctor knows its own (a doctor
    with a memory of past cases)."""
    prior = np.log(table.prior)[None, :] if log_prior is None else log_prior
    if likelihood is None:
        return prior + complaints.astype(float) @ np.log(table.likelihood).T
    return prior + np.einsum("nf,ndf->nd", complaints.astype(float), np.log(likelihood))


def information_gain(table: KnowledgeTable, log_post: np.ndarray,
                     likelihood: np.ndarray | None = None) -> np.ndarray:
    """(consultations, findings) expected bits each finding would tell (``likelihood``: per
    consultation tables instead of the shared one)."""
    p = posterior(log_post)
    like = table.likelihood if likelihood is None else likelihood
    plogp = p * np.log2(np.clip(p, TINY, None))
    gain = _entropy(p)[:, None]
    for lik in (like, 1.0 - like):
        p_answer = np.clip(_times(p, lik), TINY, None)
        inner = _times(plogp, lik) + _times(p, lik * np.log2(lik))
        after = np.log2(p_answer) - inner / p_answer
        gain = gain - p_answer * after
    return gain


def choose(table: KnowledgeTable, log_post: np.ndarray, asked: np.ndarray, turns: np.ndarray,
           params: DoctorParams, penalty: np.ndarray | None = None,
           likelihood: np.ndarray | None = None) -> np.ndarray:
    """Per consultation, the finding to ask or order next (its column), or ``DIAGNOSE``.

    Args:
        table: the doctor's knowledge.
        log_post: (consultations, diagnoses) its log-posteriors.
        asked: (consultations, findings) findings already asked or ordered (not again).
        turns: per consultation, turns taken so far.
        params: the doctor's parameters (one set for the batch).
        penalty: per finding, more bits to give up for it (e.g. for a test's turnaround).
        likelihood: (consultations, diagnoses, findings) per-consultation tables, where
            doctors know their own.
    """
    score = information_gain(table, log_post, likelihood) - _per_row(params.cost_weight) * table.cost[None, :]
    if penalty is not None:
        score = score - penalty[None, :]
    score = np.where(asked, -np.inf, score)
    best = score.argmax(axis=1)
    best_score = score[np.arange(len(best)), best]
    confident = posterior(log_post).max(axis=1) >= params.confidence
    done = confident | (turns >= params.max_turns) | ~(best_score >= params.min_gain)
    return np.where(done, DIAGNOSE, best)


def update(table: KnowledgeTable, log_post: np.ndarray, finding: np.ndarray,
           positive: np.ndarray, params: DoctorParams,
           likelihood: np.ndarray | None = None) -> np.ndarray:
    """The log-posteriors after each consultation's answer (``finding``: its column, every
    one asked; ``positive``: the answer). A biased doctor (``params.confirmation``) gives its
    leading diagnosis back that share of the ground the answer cost it against the
    best-supported alternative. ``likelihood``: per-consultation tables, as in ``choose``."""
    if likelihood is None:
        lik = table.likelihood[:, finding].T  # (consultations, diagnoses)
    else:
        lik = likelihood[np.arange(len(finding)), :, finding]
    delta = np.log(np.where(positive[:, None], lik, 1.0 - lik))
    confirmation = np.asarray(params.confirmation, dtype=float)
    if (confirmation > 0).any():
        rows = np.arange(len(finding))
        lead = log_post.argmax(axis=1)
        shortfall = delta.max(axis=1) - delta[rows, lead]
        delta[rows, lead] += confirmation * shortfall
    return log_post + delta


def differential(log_post: np.ndarray, k: int) -> np.ndarray:
    """(consultations, k) the k most probable diagnoses (rows of the table), best first."""
    k = min(k, log_post.shape[1])
    top = np.argpartition(-log_post, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(-log_post, top, axis=1).argsort(axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _draws(seed: int, keys: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """``keyed_uniform`` for consultations at different turns (the turn joins the key)."""
    return keyed_uniform(seed, keys.astype(np.uint64) * np.uint64(1 << 16)
                         + turns.astype(np.uint64), 0)


@dataclass
class ConsultationResults:
    """What whole consultations came to, one entry per consultation."""

    diagnosis: np.ndarray
    """Row of the table the doctor diagnosed."""
    rank: np.ndarray
    """Rank (1 = first) of the correct diagnosis in the final differential (0: not in it)."""
    turns: np.ndarray
    tests: np.ndarray
    cost: np.ndarray
    correct: np.ndarray


def keyed_uniform(seed: int, keys: np.ndarray, turn: int) -> np.ndarray:
    """Uniform numbers in [0, 1), one per key, fixed by (seed, key, turn) alone (splitmix64
    of the three): a consultation draws the same numbers whatever batch it is in, in whatever
    order, on whichever shard."""
    with np.errstate(over="ignore"):
        x = (np.asarray(keys, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0xBF58476D1CE4E5B9)
             + np.uint64(turn) * np.uint64(0x94D049BB133111EB))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def consult(table: KnowledgeTable, truth: np.ndarray, complaints: np.ndarray,
            correct: np.ndarray, params: DoctorParams, seed: int, *,
            keys: np.ndarray | None = None, miss_rate: np.ndarray | float = 0.0,
            k: int = 5) -> ConsultationResults:
    """Run consultations to their end, one batched round per turn.

    Args:
        table: the doctor's knowledge.
        truth: (consultations, findings) booleans: what each patient has (``case_findings``).
        complaints: (consultations, findings) the findings each patient opens with.
        correct: per consultation, the row of its correct diagnosis.
        params: the doctor's parameters (per consultation where they are arrays).
        seed: fixes the patients' recall draws, with ``keys``.
        keys: per consultation, the key of its draws (e.g. the patient's id; default: its
            row), so that a consultation's course does not depend on the batch around it.
        miss_rate: per consultation (or one for all), the chance that a patient does not
            report a symptom it has (low recall); tests always report the truth.
        k: the length of the differential that top-k accuracy is read from.
    """
    n = truth.shape[0]
    log_post = prior_log(table, complaints)
    asked = complaints.copy()
    turns = np.zeros(n, dtype=np.int64)
    tests = np.zeros(n, dtype=np.int64)
    cost = np.zeros(n)
    open_ = np.ones(n, dtype=bool)
    miss = np.broadcast_to(np.asarray(miss_rate, dtype=float), (n,))
    keys = np.arange(n) if keys is None else np.asarray(keys)
    while open_.any():
        rows = np.flatnonzero(open_)
        pick = choose(table, log_post[rows], asked[rows], turns[rows], params.rows(rows))
        ask = pick != DIAGNOSE
        open_[rows[~ask]] = False
        rows, pick = rows[ask], pick[ask]
        if not len(rows):
            break
        answer = truth[rows, pick]
        draw = _draws(seed, keys[rows], turns[rows])
        forgot = ~table.is_test[pick] & (draw < miss[rows])
        answer = answer & ~forgot
        log_post[rows] = update(table, log_post[rows], pick, answer, params.rows(rows))
        asked[rows, pick] = True
        turns[rows] += 1
        tests[rows] += table.is_test[pick]
        cost[rows] += table.cost[pick]
    top = differential(log_post, k)
    hit = top == correct[:, None]
    rank = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    return ConsultationResults(diagnosis=top[:, 0], rank=rank, turns=turns, tests=tests,
                               cost=cost, correct=top[:, 0] == correct)
