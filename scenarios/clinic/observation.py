"""What a doctor perceives before its turn.

Core objects:
    ClinicObservation: per agent, the consultation it talks in this step (a patient waiting
        for a test result, or a doctor without one, has none) with the chart a rule doctor
        reads: its turn, its differential and the findings already asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from populace.simulator import Observation


@dataclass
class ClinicObservation(Observation):
    """Per-agent columns (``take`` slices them; the 2-D ones by row)."""

    patient: np.ndarray  # (n,) int64: the patient's index in the hospital; -1: no turn now
    patient_agent: np.ndarray  # (n,) int64: the patient's agent id; -1: no turn now
    doctor: np.ndarray  # (n,) int64: the agent's doctor index in the hospital; -1: a patient
    turn: np.ndarray  # (n,) int32: turns the consultation has taken
    log_post: np.ndarray  # (n, diagnoses): the consultation's rule differential
    asked: np.ndarray  # (n, findings) bool: findings asked or ordered so far
    step: int  # the step being decided
