"""Database schema shared by every run: the core tables that any scenario records into.

Core objects:
    Base: the declarative base; scenarios declare their own tables on it (see ``RunStepMixin``
        and ``EventMixin``).
    RunRecord, Step, StepMetric, Agent, AgentState, Checkpoint: typed ORM models for the engine's tables.
    RunLeaseRecord: which process may write a run now (see ``populace.storage.leases``).
    SweepRecord, SweepRunRecord: parameter sweeps and the runs they plan (``storage.sweeps``).
    EventRecord, InterviewAnswer, Arrival, Departure, ControlCommand: how a run was steered
        (events applied, interview answers, agents that joined and left, commands sent to a
        running run; see ``populace.storage.control``).

Storage knows nothing about scenarios or the engine: scenario packages import ``Base`` and
``RunStepMixin`` to declare their tables, and the loaders reflect tables they do not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base for every Populace table (core and scenario tables alike)."""


class RunStepMixin:
    """Columns every per-step table carries: the run it belongs to and the step that wrote it.

    ``step`` is what resume relies on: rows with a step after the last checkpoint are deleted
    before the run continues, so every table written during a run must have it.
    """

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)


class EventMixin:
    """For tables that receive many rows per step (actions, likes, ...): a surrogate key only.

    The key is SQLite's rowid (PostgreSQL: an identity column), so bulk inserts append to one
    B-tree instead of maintaining a composite index in random order; rows read back in the order
    they were written.
    """

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)


SCHEMA_VERSION = 1
"""Version of the table layout; a database written with another version is refused."""


class Meta(Base):
    """Facts about the database itself (its schema version)."""

    __tablename__ = "populace_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunRecord(Base):
    """One experiment run: its configuration, seed, version, status and timings."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    scenario: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))  # running | completed | failed
    seed: Mapped[int] = mapped_column(BigInteger)
    n_agents: Mapped[int] = mapped_column(BigInteger)
    steps_planned: Mapped[int] = mapped_column(Integer)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_yaml: Mapped[str | None] = mapped_column(Text, nullable=True)
    config_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    package_version: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    setup_s: Mapped[float] = mapped_column(Float, default=0.0)
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class RunLeaseRecord(Base):
    """The one process allowed to write a run, while it writes (see ``storage/leases.py``).

    A table of its own rather than columns of ``runs``: databases written before it existed
    get it from ``create_all`` without a migration (the schema version stays). The row exists
    only while a writer holds the run; its timestamps come from the database's clock.
    """

    __tablename__ = "run_leases"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(300))  # "host:pid:random", unique per writer
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)
    # the holder's own takeover timeout: others judge its heartbeat by it, not by theirs (a
    # holder that beats every 100 s of a 600 s timeout is alive to a resumer set to 30 s)
    timeout_s: Mapped[float] = mapped_column(Float)


class Step(RunStepMixin, Base):
    """One committed step: written in the same transaction as the step's rows."""

    __tablename__ = "steps"

    sim_time: Mapped[datetime] = mapped_column(DateTime)
    n_active: Mapped[int] = mapped_column(Integer)
    n_actions: Mapped[int] = mapped_column(Integer)
    compute_s: Mapped[float] = mapped_column(Float)
    record_s: Mapped[float] = mapped_column(Float)


class StepMetric(RunStepMixin, Base):
    """Per-step metrics in long form: one row per (step, metric name)."""

    __tablename__ = "step_metrics"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)


class Agent(Base):
    """The population: one row per agent with its attributes as a JSON object."""

    __tablename__ = "agents"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attributes: Mapped[str] = mapped_column(Text)  # JSON text: written through the bulk path


class AgentState(EventMixin, Base):
    """Snapshots of agents' changing state variables (e.g. opinion), in long form."""

    __tablename__ = "agent_states"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    variable: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)


class Checkpoint(RunStepMixin, Base):
    """What resume needs after a step, as numbered chunks of one serialised blob."""

    __tablename__ = "checkpoints"

    chunk: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class EventRecord(EventMixin, Base):
    """An event applied to a run (scheduled in its YAML, sent from Python or through the
    control channel): its parameters, where it came from and what it did."""

    __tablename__ = "events"

    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))  # yaml | python | control
    command_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spec: Mapped[str] = mapped_column(Text)  # the event as JSON
    result: Mapped[str] = mapped_column(Text)  # what it did, as JSON (agents, rows changed)


class Arrival(EventMixin, Base):
    """An agent that joined the run (a ``kind: join`` event) before ``step``; its attributes
    are in ``agents`` like every agent's."""

    __tablename__ = "arrivals"

    agent_id: Mapped[int] = mapped_column(BigInteger)


class Departure(EventMixin, Base):
    """An agent that left the run (a ``kind: leave`` event) before ``step``."""

    __tablename__ = "departures"

    agent_id: Mapped[int] = mapped_column(BigInteger)


class InterviewAnswer(EventMixin, Base):
    """One agent's answer to one interview question."""

    __tablename__ = "interview_answers"

    event: Mapped[str] = mapped_column(String(100))
    question: Mapped[str] = mapped_column(String(100))
    agent_id: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(20))  # llm | report
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)  # a json answer, as JSON
    valid: Mapped[bool] = mapped_column(Boolean)
    prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the model call that gave the answer: llm_calls.prompt_hash of the same step and agent
    call_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ControlCommand(Base):
    """A command sent to a running run (``populace intervene``, ``interview``, ``pause``, ...):
    queued by anyone, taken by the run's writer at its next step boundary.

    Not a per-step table: a resume keeps it, and re-applies the commands applied after the
    checkpoint it continues from at the steps they were applied at.
    """

    __tablename__ = "control_commands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Integer, index=True)
    command: Mapped[str] = mapped_column(String(20))  # intervene | interview | pause | ...
    spec: Mapped[str] = mapped_column(Text)  # JSON
    status: Mapped[str] = mapped_column(String(20))  # queued | applied | refused
    created_at: Mapped[datetime] = mapped_column(DateTime)
    applied_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SweepRecord(Base):
    """A parameter sweep: its name and its spec (the sweep file, resolved) as JSON. Its runs
    are ordinary runs, listed in ``sweep_runs``."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class SweepRunRecord(Base):
    """One run a sweep plans: its parameter point, its seed and the name of its run (the run
    itself is the newest row of ``runs`` with that name, once a worker has started it).

    A sweep being run holds the lease of key ``-id`` in ``run_leases`` (``sweep_lease``): one
    process runs a sweep at a time."""

    __tablename__ = "sweep_runs"

    sweep_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    point: Mapped[int] = mapped_column(Integer, primary_key=True)
    seed: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_name: Mapped[str] = mapped_column(String(200), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # what the sweep made of its run, when it differs from the run's own status: a language-
    # model run that completed on fallbacks past its allowed share is "failed" (and made anew
    # on the next restart), or a run that could not start says why
    outcome_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


CORE_STEP_TABLES = ("steps", "step_metrics", "agent_states", "checkpoints", "events",
                    "interview_answers", "arrivals", "departures")
