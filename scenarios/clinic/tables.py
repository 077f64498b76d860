"""Database tables of the clinic (declared on the shared ``populace.storage.Base``).

Core objects:
    ClinicCase: the case library of the run (step 0).
    ClinicPatient: each patient: its case, when it arrives, its triage level and persona
        (step 0).
    ClinicConsultation: each consultation when it ends (or the patient leaves unseen): who,
        how long, the turns, tests and cost, the diagnosis and the judge's verdict.
    ClinicTurn: the trace of every doctor turn (the engine writes it; ``apply`` fills in the
        answer and the verdict).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from populace.storage import Base, EventMixin


class ClinicCase(EventMixin, Base):
    """One case of the library: its id, specialty, diagnosis and triage level."""

    __tablename__ = "clinic_cases"

    case_index: Mapped[int] = mapped_column(Integer)
    case_id: Mapped[str] = mapped_column(String(100))
    specialty: Mapped[str] = mapped_column(String(40))
    diagnosis: Mapped[str] = mapped_column(Text)
    severity: Mapped[int] = mapped_column(SmallInteger)


class ClinicPatient(EventMixin, Base):
    """A patient: case, arrival step, triage level and PatientSim persona."""

    __tablename__ = "clinic_patients"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    case_id: Mapped[str] = mapped_column(String(100))
    specialty: Mapped[str] = mapped_column(String(40))
    arrival: Mapped[int] = mapped_column(BigInteger)
    severity: Mapped[int] = mapped_column(SmallInteger)
    personality: Mapped[str] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(20))
    recall: Mapped[str] = mapped_column(String(10))
    dazed: Mapped[bool] = mapped_column(Boolean)


class ClinicConsultation(EventMixin, Base):
    """A consultation that ended (``step``: when), or a patient who left unseen."""

    __tablename__ = "clinic_consultations"

    patient_id: Mapped[int] = mapped_column(BigInteger)
    doctor_id: Mapped[int] = mapped_column(BigInteger)  # -1: left unseen
    case_id: Mapped[str] = mapped_column(String(100))
    specialty: Mapped[str] = mapped_column(String(40))
    doctor_specialty: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(16))  # diagnosed, no_diagnosis, left
    arrival: Mapped[int] = mapped_column(BigInteger)
    started: Mapped[int] = mapped_column(BigInteger)  # -1: never seen
    waited_min: Mapped[float] = mapped_column(Float)
    turns: Mapped[int] = mapped_column(Integer)
    tests: Mapped[int] = mapped_column(Integer)
    tests_needed: Mapped[int] = mapped_column(Integer)
    tests_unnecessary: Mapped[int] = mapped_column(Integer)
    cost: Mapped[float] = mapped_column(Float)
    diagnosis: Mapped[str | None] = mapped_column(Text, nullable=True)
    correct_diagnosis: Mapped[str] = mapped_column(Text)
    correct: Mapped[bool] = mapped_column(Boolean)
    rank: Mapped[int] = mapped_column(SmallInteger)  # of the correct diagnosis; 0: absent
    doctor_bias: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)


class ClinicTurn(EventMixin, Base):
    """One doctor turn: the move, and what came back."""

    __tablename__ = "clinic_turns"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(12))
    patient: Mapped[int] = mapped_column(BigInteger)
    question: Mapped[str | None] = mapped_column(Text, nullable=True)
    test: Mapped[str | None] = mapped_column(Text, nullable=True)
    system: Mapped[str | None] = mapped_column(String(40), nullable=True)
    diagnosis: Mapped[str | None] = mapped_column(Text, nullable=True)
    differential: Mapped[str | None] = mapped_column(Text, nullable=True)
    problems: Mapped[str | None] = mapped_column(Text, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    correct: Mapped[bool] = mapped_column(Boolean)


TABLES = ("clinic_cases", "clinic_patients", "clinic_consultations", "clinic_turns")
