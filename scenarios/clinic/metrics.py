"""The clinic's measures after a step: diagnostic accuracy (overall, top-k, per specialty, by
doctor bias), turns, tests and their cost, failures, patients' confidence, the protocol
problems of language-model doctors, and the hospital's queue (``hospital.metrics``).

Core objects:
    clinic_metrics: every metric of the clinic after a step.
    doctor_accuracy: per doctor, the share of its diagnoses the judge accepted.
"""

from __future__ import annotations

import numpy as np

from .hospital import GENERAL, QueueRules, specialty_name
from .hospital import metrics as hospital_metrics
from .protocol import MAX_DIFFERENTIAL, PROBLEMS
from .state import DIAGNOSED, LEFT_UNSEEN, NO_DIAGNOSIS, ClinicState


def _share(hit: np.ndarray) -> float:
    return float(hit.mean()) if len(hit) else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


def clinic_metrics(state: ClinicState, step: int, rules: QueueRules) -> dict[str, float]:
    """The clinic's metrics after ``step`` (cumulative over the consultations that ended).

    ``accuracy`` counts a consultation that reached the turn limit without a diagnosis as
    wrong (AgentClinic's rule); ``top5_accuracy`` is the share whose correct diagnosis is in
    the doctor's differential of up to five; ``tests_unnecessary`` are tests the case does not
    need (neither decisive nor abnormal); ``accuracy_biased`` / ``accuracy_unbiased`` split
    the consultations by whether the doctor's confirmation bias was above 0 when it ended;
    ``accuracy_last_hour`` is the accuracy of the consultations that ended in the last 60
    minutes (a learning curve, with ``memory``); ``utilisation`` is the share of doctor-turns spent talking (a doctor talks in one
    consultation per turn).
    """
    c, p = state.charts, state.hospital.patients
    n = state.hospital.n_patients
    outcome = c.outcome[:n]
    ended = (outcome == DIAGNOSED) | (outcome == NO_DIAGNOSIS)
    correct = c.correct[:n][ended]
    rank = c.rank[:n][ended]
    tests = c.tests[:n][ended].astype(float)
    needed = c.needed[:n][ended].astype(float)
    bias = c.bias[:n][ended]
    out: dict[str, float] = {
        "consultations": float(ended.sum()),
        "accuracy": _share(correct),
        f"top{MAX_DIFFERENTIAL}_accuracy": _share((rank >= 1) & (rank <= MAX_DIFFERENTIAL)),
        "no_diagnosis": float((outcome == NO_DIAGNOSIS).sum()),
        "turns_mean": _mean(c.turns[:n][ended].astype(float)),
        "tests_mean": _mean(tests),
        "tests_needed_mean": _mean(needed),
        "tests_unnecessary_mean": _mean(tests - needed),
        "cost_mean": _mean(c.cost[:n][ended]),
        "confidence_mean": _mean(c.confidence[:n][ended]),
        "accuracy_last_hour": _share(correct[p.end[:n][ended] * rules.step_minutes
                                             > (step * rules.step_minutes - 60)]),
        "accuracy_biased": _share(correct[bias > 0]),
        "accuracy_unbiased": _share(correct[bias == 0]),
        "left_unseen": float((outcome == LEFT_UNSEEN).sum()),
    }
    specialty = p.specialty[:n][ended]
    for code in np.unique(p.specialty[:n]).tolist():
        if code != GENERAL:
            out[f"accuracy.{specialty_name(code)}"] = _share(correct[specialty == code])
    out.update(hospital_metrics(state.hospital, step, rules))
    # a doctor talks in one consultation per turn (its other slots wait for results), so its
    # utilisation is the share of turns it talked, open consultations included; ``occupancy``
    # (from the hospital) stays the share of slot-time held
    doctor_turns = state.hospital.n_doctors * step
    out["utilisation"] = (float(c.turns[:n].sum()) / doctor_turns if doctor_turns
                          else float("nan"))
    for code, count in zip(PROBLEMS, state.problems.tolist(), strict=True):
        out[f"problems.{code}"] = float(count)
    out["judge_llm.asked"], out["judge_llm.accepted"], out["judge_llm.invalid"] = (
        float(x) for x in state.judge_llm)
    for name, count in zip(("replies", "replies_invalid", "confidences",
                            "confidences_invalid"), state.patient_llm.tolist(), strict=True):
        out[f"patient_llm.{name}"] = float(count)
    return out


def doctor_accuracy(state: ClinicState) -> np.ndarray:
    """Per doctor (hospital order), the share of its ended consultations judged correct
    (NaN for a doctor with none)."""
    c, p = state.charts, state.hospital.patients
    n = state.hospital.n_patients
    ended = (c.outcome[:n] == DIAGNOSED) | (c.outcome[:n] == NO_DIAGNOSIS)
    doctor = p.doctor[:n][ended]
    d = state.hospital.n_doctors
    total = np.bincount(doctor, minlength=d).astype(float)
    right = np.bincount(doctor, weights=c.correct[:n][ended].astype(float), minlength=d)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, right / np.maximum(total, 1), np.nan)
