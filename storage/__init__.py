"""Populace storage: run databases (SQLite by default, PostgreSQL for scale) and DataFrame loaders.

Core objects:
    Database: open or create a run database; bulk, per-step transactional writes.
    Run / open_run: read a run's tables and per-step metrics as pandas DataFrames.
    export_run: write a run's tables to Parquet or CSV.
    open_sweep / list_sweeps: a parameter sweep's runs as one tidy DataFrame; the sweeps there.
    Base, RunStepMixin, EventMixin: declare scenario tables on the shared schema.

This package knows nothing about the engine or the scenarios above it.
"""

from .database import Database, StorageError, redact
from .export import export_run
from .loaders import Run, database_url, open_run
from .runs import find_run, list_runs
from .schema import Base, EventMixin, RunStepMixin
from .sweeps import list_sweeps, open_sweep

__all__ = [
    "Base",
    "Database",
    "EventMixin",
    "Run",
    "RunStepMixin",
    "StorageError",
    "database_url",
    "export_run",
    "find_run",
    "list_runs",
    "list_sweeps",
    "open_run",
    "open_sweep",
    "redact",
]
