"""Who comes to the clinic: doctors and patients among the agents, each patient's case, arrival
time and persona, from the population and the seed. Pure functions over arrays, called once
when the scenario is built (and again, identically, on resume and on every Ray replica).

Core objects:
    roles: the doctors' and the patients' agent ids.
    doctor_specialties: each doctor's specialty.
    patient_cases: each patient's case of the library.
    arrival_steps: each patient's arrival step (a Poisson process with an hourly profile).
    persona_codes: each patient's PatientSim persona, as codes per dimension.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd

from populace.simulator.rng import RngStreams

from .cases import CaseLibrary
from .config import ClinicConfig
from .hospital import case_weights
from .persona import CONFUSION_LEVELS, LANGUAGE_LEVELS, PERSONALITIES, RECALL_LEVELS

PERSONA_COLUMNS = ("personality", "language", "recall", "dazed")
"""The population columns of a patient's persona, in ``persona_arrays``' order."""
_LEVELS = {"personality": PERSONALITIES, "language": LANGUAGE_LEVELS, "recall": RECALL_LEVELS,
           "dazed": CONFUSION_LEVELS}
_INT = np.int64


def roles(config: ClinicConfig, attrs: pd.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Doctor and patient agent ids: the role column (a missing value is a patient), else
    the first ``doctors`` ids are doctors.

    Raises:
        ValueError: a role that is neither doctor nor patient, no doctor, or no patient.
    """
    column = config.role_attribute
    if column in attrs:  # a missing role (generated rows after a file's) is a patient
        role = attrs[column].fillna("patient").astype(str).str.lower().to_numpy()
        bad = sorted(set(role.tolist()) - {"doctor", "patient"})
        if bad:
            raise ValueError(f"population attribute {column!r}: {bad[:3]} is not doctor "
                             "or patient")
        is_doctor = role == "doctor"
    else:
        if config.doctors >= n:
            raise ValueError(f"scenario.doctors is {config.doctors}, but the population has "
                             f"only {n} agents: patients are the rest")
        is_doctor = np.arange(n) < config.doctors
    if not is_doctor.any():
        raise ValueError("the clinic needs at least one doctor")
    if is_doctor.all():
        raise ValueError("the clinic needs at least one patient (agents beyond the doctors)")
    return np.flatnonzero(is_doctor).astype(_INT), np.flatnonzero(~is_doctor).astype(_INT)


def doctor_specialties(config: ClinicConfig, attrs: pd.DataFrame,
                       doctors: np.ndarray) -> list[str]:
    """Each doctor's specialty: the population column ``specialty`` (missing: general), else
    the first doctors by ``config.specialists``, the rest general."""
    if "specialty" in attrs:
        return [str(s) if isinstance(s, str) else "general"
                for s in attrs["specialty"].to_numpy()[doctors]]
    names = [name for name, count in config.specialists.items() for _ in range(count)]
    return (names + ["general"] * len(doctors))[:len(doctors)]


def patient_cases(library: CaseLibrary, config: ClinicConfig, attrs: pd.DataFrame,
                  patients: np.ndarray, rng: RngStreams) -> np.ndarray:
    """Each patient's case index: its ``case_attribute`` value, else drawn by ``mix`` (one
    uniform per agent id, stream ``clinic.case``).

    Raises:
        ValueError: a case id the library does not have, naming the agent.
    """
    weights = case_weights(list(library), config.mix)
    u = rng.uniform("clinic.case", 0, patients)[:, 0]
    cases = np.minimum(np.searchsorted(np.cumsum(weights), u * weights.sum(), side="right"),
                       len(weights) - 1).astype(_INT)
    column = config.case_attribute
    if column in attrs:
        index = {case_id: i for i, case_id in enumerate(library.ids)}
        given = attrs[column].to_numpy()[patients]
        for row, value in enumerate(given.tolist()):
            if isinstance(value, str) and value:
                if value not in index:
                    raise ValueError(f"population attribute {column!r}: no case {value!r} in "
                                     f"the library (agent {int(patients[row])})")
                cases[row] = index[value]
    return cases


def arrival_steps(config: ClinicConfig, start: datetime, step_minutes: float,
                  patients: np.ndarray, rng: RngStreams) -> np.ndarray:
    """Each patient's arrival step: a Poisson process whose rate follows ``hourly`` over
    ``arrival_hours`` from ``start``, given the number of patients (arrival times drawn
    i.i.d. from the profile's density, one uniform per agent id, stream ``clinic.arrival``),
    or 0 for all (``arrival: start``)."""
    if config.arrival == "start":
        return np.zeros(len(patients), dtype=_INT)
    start_minute = start.hour * 60 + start.minute + start.second / 60
    window = int(math.ceil(config.arrival_hours * 60))
    minute = np.arange(window, dtype=np.float64)
    hour = ((start_minute + minute) // 60 % 24).astype(_INT)
    cumulative = np.concatenate(([0.0], np.cumsum(np.asarray(config.hourly)[hour])))
    u = rng.uniform("clinic.arrival", 0, patients)[:, 0]
    at = np.interp(u * cumulative[-1], cumulative, np.arange(window + 1, dtype=np.float64))
    return (at // step_minutes).astype(_INT)


def persona_codes(config: ClinicConfig, attrs: pd.DataFrame,
                  patients: np.ndarray) -> dict[str, np.ndarray]:
    """Patients' persona codes per dimension (``PERSONA_COLUMNS``): population columns of
    those names (``dazed`` may be a boolean), else ``persona_defaults``.

    Raises:
        ValueError: a level that is not one of the dimension's, naming the column.
    """
    out = {}
    for name in PERSONA_COLUMNS:
        default = config.persona_defaults[name]
        if name in attrs:
            raw = attrs[name].to_numpy()[patients]
            values = [default if v is None or (isinstance(v, float) and math.isnan(v))
                      else ("dazed" if v is True else "clear" if v is False else str(v))
                      for v in raw.tolist()]
        else:
            values = [default] * len(patients)
        known = _LEVELS[name]
        bad = sorted(set(values) - set(known))
        if bad:
            raise ValueError(f"population attribute {name!r}: {bad[:3]} is not one of "
                             f"{', '.join(known)}")
        out[name] = np.array([known.index(v) for v in values], dtype=np.int8)
    return out
