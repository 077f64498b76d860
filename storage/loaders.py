"""Reading runs back as pandas DataFrames.

Core objects:
    Run: a handle on one run in a database; ``run.table("posts")``, ``run.metrics()``,
        ``run.agents()``, ``run.steps()`` return DataFrames.
    open_run: open a run by database URL or SQLite path, and run id or name.

Exporting is in ``export``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import Database, StorageError, unknown_name
from .runs import find_run
from .schema import AgentState


def database_url(target: str | Path) -> str:
    """Turn a SQLite file path into a URL; URLs pass through unchanged."""
    text = str(target)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text)}"


class Run:
    """A handle on one run: its row in ``runs`` and its tables as DataFrames.

    Args:
        db: the database, or its URL / SQLite path (opened read-only).
        ref: run id or name; the newest run when omitted.
    """

    def __init__(self, db: Database | str | Path, ref: int | str | None = None) -> None:
        self.db = db if isinstance(db, Database) else Database(
            database_url(db), create=False, read_only=True)
        self.info: dict[str, Any] = find_run(self.db, ref)
        self.id: int = int(self.info["id"])

    def __repr__(self) -> str:
        i = self.info
        return (f"Run(id={self.id}, name={i['name']!r}, status={i['status']!r}, "
                f"steps={i['steps_done']}/{i['steps_planned']})")

    def tables(self, conn: Connection | None = None) -> list[str]:
        """Names of the tables that hold rows of this run (``runs`` excluded)."""
        if conn is None:
            with self.db.engine.connect() as own:
                return self.tables(own)
        names = []
        for name in sorted(sa.inspect(conn).get_table_names()):
            if name == "runs":
                continue
            t = self.db.table(name)
            if "run_id" in t.c and conn.execute(
                sa.select(t.c.run_id).where(t.c.run_id == self.id).limit(1)
            ).first():
                names.append(name)
        return names

    def _select(self, name: str, where: Any = None) -> sa.Select:
        if name not in self.db.table_names():  # declared by a scenario, but not in this file
            raise StorageError(unknown_name("table", name, self.db.table_names(),
                                            self.db.shown_url))
        t = self.db.table(name)
        # the surrogate key of event tables means nothing to users; it only keeps write order
        cols = [c for c in t.c if c.name not in ("run_id", "id")]
        stmt = sa.select(*cols).where(t.c.run_id == self.id)
        if where is not None:
            stmt = stmt.where(where(t))
        # always an order: without one the database may answer in the order of whichever
        # index it picks (a completed run's readers' indexes, e.g. agents by an attribute)
        order = [t.c[c] for c in ("step", "id", "post_id") if c in t.c] or [
            c for c in t.primary_key.columns if c.name != "run_id"]
        return stmt.order_by(*order) if order else stmt

    def table(self, name: str) -> pd.DataFrame:
        """All rows of ``name`` for this run, without the ``run_id`` column.

        Raises:
            StorageError: no table ``name`` (the message lists the tables of the run).
        """
        return self._frame(self._select(name))

    def _frame(self, stmt: sa.Select) -> pd.DataFrame:
        with self.db.engine.connect() as conn:
            result = conn.execute(stmt)
            return rows_frame(result.fetchall(), list(result.keys()))

    def events(self) -> pd.DataFrame:
        """Events applied to the run, one row each: step, name, kind, source (yaml, python,
        control), the control command that sent it, its spec and what it did (both JSON)."""
        return self.table("events")

    def interviews(self) -> pd.DataFrame:
        """Interview answers, one row per agent and question: step, event, question,
        agent_id, source (llm or report), text, value (scales), answer (JSON), valid,
        prompt, and the hash of the model call that answered (``llm_calls.prompt_hash``)."""
        return self.table("interview_answers")

    def commands(self) -> pd.DataFrame:
        """Commands sent to the run through its control channel, and what became of them."""
        t = self.db.table("control_commands")
        stmt = sa.select(*[c for c in t.c if c.name != "run_id"]).where(
            t.c.run_id == self.id).order_by(t.c.id)
        return self._frame(stmt)

    def steps(self) -> pd.DataFrame:
        """One row per committed step: simulated time, active agents, actions, timings."""
        return self.table("steps")

    def metrics(self, wide: bool = True) -> pd.DataFrame:
        """Per-step metrics; ``wide`` gives one column per metric indexed by step."""
        long = self.table("step_metrics")
        if not wide:
            return long
        if long.empty:
            return pd.DataFrame(index=pd.Index([], name="step"))
        wide_df = long.pivot(index="step", columns="name", values="value")
        wide_df.columns.name = None
        return wide_df

    def agents(self) -> pd.DataFrame:
        """The population: one row per agent, one column per attribute, indexed by agent id.

        Empty (with the ``agent_id`` index) for a run that recorded no agents.
        """
        raw = self.table("agents")
        return agents_frame(raw["agent_id"].to_numpy(), raw["attributes"].tolist())

    def agent_states(self, variable: str | None = None) -> pd.DataFrame:
        """Agent state snapshots as a (step x agent) table per variable, or long if several.

        Raises:
            StorageError: ``variable`` is not one the run recorded (the message lists them).
        """
        if variable is None:
            return self.table("agent_states")
        sub = self._frame(self._select("agent_states", lambda t: t.c.variable == variable))
        if sub.empty:
            known = self._frame(sa.select(AgentState.variable).distinct().where(
                AgentState.run_id == self.id))["variable"].tolist()
            if variable not in known:
                raise StorageError(unknown_name(
                    "agent state variable", variable, known, f"run {self.id}",
                    none="it recorded no agent states (recording.agent_state_every)"))
        return sub.pivot(index="step", columns="agent_id", values="value")


def rows_frame(rows: Any, columns: list[str]) -> pd.DataFrame:
    """Result rows as a DataFrame; as plain tuples, which pandas takes several times faster
    than SQLAlchemy rows (it probes each row object for named-tuple fields)."""
    return pd.DataFrame.from_records([tuple(r) for r in rows], columns=columns)


def agents_frame(agent_ids: Any, attributes: list[str]) -> pd.DataFrame:
    """Agents' JSON attribute objects as one column per attribute, indexed by ``agent_id``."""
    try:  # orjson parses a few times faster than json; fall back where it is stricter
        records = [orjson.loads(a) for a in attributes]
    except orjson.JSONDecodeError:
        records = [json.loads(a) for a in attributes]
    attrs = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    attrs.index = pd.Index(np.asarray(agent_ids), name="agent_id")
    return attrs


def open_run(db: str | Path | Database, run: int | str | None = None) -> Run:
    """Open a run by database URL (or SQLite path) and run id or name (newest if omitted)."""
    return Run(db, run)
