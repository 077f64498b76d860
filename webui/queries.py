"""The reads the web service makes, as SQL the database computes: a run's metrics as time
series, its action mix, an attribute's distribution, agents found by their attributes, one
agent's record. Nothing here loads a population into Python: a million-agent run answers with
aggregates and pages.

Core objects:
    RunQueries: the reads of one run of a database.
    Condition / parse_condition: one ``where`` filter of an agent search (``age>=30``).
    NotFound: a run, agent, table or attribute that is not there (the service's 404).

Agent attributes are a JSON object per agent (``agents.attributes``); a filter or a histogram
extracts one attribute in SQL (``json_extract`` on SQLite, ``->>`` on PostgreSQL). An attribute
name is checked against the run's attributes before it reaches SQL, and every value is a bound
parameter.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from populace.simulator import GraphTable, get_scenario
from populace.simulator.llm.calls import COUNTERS
from populace.storage import Database, StorageError, find_run
from populace.storage.read_indexes import attribute_index_name, attribute_value, index_names

OPERATORS = {"=": "==", "==": "==", "!=": "!=", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$")
MAX_PAGE = 1000
"""The most agents (or rows) one page returns."""
MAX_GRAPH_NODES = 5000
"""The most nodes a sampled subgraph has."""
EDGES_PER_NODE = 20
"""A subgraph reads at most this many edges per node it may have (a hub's millions of
followers are cut, and the subgraph says it was sampled)."""
LLM_COUNTERS = (*COUNTERS, "cost")
"""The ``llm.*`` step metrics that add up over steps."""
STEERING_TABLES = ("events", "interview_answers", "arrivals", "departures", "control_commands")
"""Tables of how a run was steered, shown with the scenario's own."""


CACHED_HISTOGRAMS = 256
"""Histograms kept in memory (see ``RunQueries.histogram``)."""
_HISTOGRAMS: dict[tuple[Any, ...], dict[str, Any]] = {}
_CACHE_LOCK = threading.Lock()


class NotFound(LookupError):
    """What was asked for is not in the database (HTTP 404, with this message)."""


@dataclass(frozen=True)
class Condition:
    """One filter of an agent search: ``attribute op value``."""

    attribute: str
    op: str
    value: str | float


def parse_condition(text: str) -> Condition:
    """``age>=30``, ``occupation=student``: a condition (numbers compare as numbers)."""
    match = _CONDITION.match(text)
    if match is None:
        raise ValueError(f"where {text!r}: expected attribute, an operator "
                         f"({', '.join(sorted(set(OPERATORS)))}) and a value, e.g. age>=30")
    name, op, raw = match.groups()
    value: str | float = raw
    try:
        number = float(raw)
        if math.isfinite(number):
            value = number
    except ValueError:
        if op not in ("=", "==", "!="):
            raise ValueError(f"where {text!r}: {op} compares numbers, not {raw!r}") from None
    return Condition(name, OPERATORS[op], value)


class RunQueries:
    """Reads of run ``run_id`` of ``db`` (a ``NotFound`` if there is no such run)."""

    def __init__(self, db: Database, run_id: int) -> None:
        self.db = db
        try:
            self.info = find_run(db, run_id)
        except StorageError as err:
            raise NotFound(str(err)) from None
        self.id = int(self.info["id"])
        self.dialect = db.engine.dialect.name

    # -- helpers ---------------------------------------------------------------------------------

    def _table(self, name: str) -> sa.Table:
        if name not in self.db.table_names():
            raise NotFound(f"run {self.id} has no table {name!r}")
        return self.db.table(name)

    def _shown(self, name: str) -> tuple[sa.Table, list[sa.Column[Any]], Any]:
        """Table ``name``, its columns this database has but ``run_id`` (one written by an
        older version may lack new ones) and its newest-first order."""
        t = self._table(name)
        have = {c["name"] for c in sa.inspect(self.db.engine).get_columns(name)}
        cols = [c for c in t.c if c.name in have and c.name != "run_id"]
        return t, cols, sa.desc(t.c.id if "id" in have else t.c.step)

    def _rows(self, stmt: sa.Select) -> list[dict[str, Any]]:
        with self.db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt)]

    @cached_property
    def _first_attributes(self) -> dict[str, Any]:
        """The first agent's attributes: the names and kinds of every agent's (read once)."""
        t = self._table("agents")
        rows = self._rows(sa.select(t.c.attributes).where(t.c.run_id == self.id).order_by(
            t.c.agent_id).limit(1))
        return json.loads(rows[0]["attributes"]) if rows else {}

    def attribute_names(self) -> list[str]:
        """The agents' attribute names (from the first agent's row)."""
        return list(self._first_attributes)

    def _attribute(self, name: str, numeric: bool) -> sa.ColumnElement[Any]:
        """SQL for one attribute of ``agents.attributes`` (the name is checked first)."""
        if name not in self.attribute_names():
            raise NotFound(f"run {self.id}'s agents have no attribute {name!r} (attributes: "
                           f"{', '.join(self.attribute_names()) or 'none'})")
        # the expression of the attribute indexes a completed run has (storage.read_indexes):
        # the same SQL, or the database does not use them
        return attribute_value(self.dialect, self._table("agents").c.attributes, name, numeric)

    def _indexed(self, name: str, numeric: bool) -> bool:
        """Whether the agents table has the index of attribute ``name``."""
        return attribute_index_name(name, numeric) in index_names(self.db, "agents")

    def _numeric(self, name: str) -> bool:
        """Whether attribute ``name`` holds numbers (from the first agent's value)."""
        value = self._first_attributes.get(name)
        return isinstance(value, int | float) and not isinstance(value, bool)

    # -- reads ------------------------------------------------------------------------------------

    def metrics(self, names: list[str] | None = None, since: int = 0) -> dict[str, Any]:
        """Per-step metrics as time series: ``{"step": [...], name: [...]}`` (steps after
        ``since``; NaN stored as NULL comes back as None)."""
        t = self._table("step_metrics")
        stmt = sa.select(t.c.step, t.c.name, t.c.value).where(
            t.c.run_id == self.id, t.c.step > since)
        if names:
            stmt = stmt.where(t.c.name.in_(names))
        series: dict[str, dict[int, Any]] = {}
        steps: set[int] = set()
        for row in self._rows(stmt.order_by(t.c.step)):
            steps.add(row["step"])
            series.setdefault(row["name"], {})[row["step"]] = row["value"]
        ordered = sorted(steps)
        return {"step": ordered, **{k: [v.get(s) for s in ordered] for k, v in sorted(
            series.items())}}

    def action_mix(self, since: int = 0) -> dict[str, int]:
        """How many times each action was taken (after step ``since``), from the scenario's
        action table, counted by the database."""
        table = get_scenario(self.info["scenario"]).action_table
        t = self._table(table)
        stmt = (sa.select(t.c.action, sa.func.count().label("n"))
                .where(t.c.run_id == self.id, t.c.step > since)
                .group_by(t.c.action).order_by(sa.desc("n")))
        return {r["action"]: int(r["n"]) for r in self._rows(stmt)}

    def histogram(self, name: str, bins: int = 20) -> dict[str, Any]:
        """The distribution of attribute ``name`` over the run's agents: ``bins`` equal-width
        bins of a numeric attribute, else the count of each value (the 50 most common).

        Kept for the run as it stands (its row's ``updated_at``, written with every step and
        every resume, is in the key): agents join and change only with a step, and at 1M
        agents a histogram takes up to a second on PostgreSQL even with its index."""
        key = (self.db.url, self.id, str(self.info["updated_at"]), name, bins)
        with _CACHE_LOCK:
            hit = _HISTOGRAMS.get(key)
        if hit is not None:
            return copy.deepcopy(hit)
        out = self._histogram(name, bins)
        with _CACHE_LOCK:
            if len(_HISTOGRAMS) >= CACHED_HISTOGRAMS:
                _HISTOGRAMS.pop(next(iter(_HISTOGRAMS)))  # the oldest
            _HISTOGRAMS[key] = copy.deepcopy(out)
        return out

    def _histogram(self, name: str, bins: int) -> dict[str, Any]:
        t = self._table("agents")
        where = t.c.run_id == self.id
        if self._numeric(name) and self._indexed(name, numeric=True):
            return self._indexed_histogram(name, bins)
        if self._numeric(name):
            value = self._attribute(name, numeric=True)
            (low, high, n), = [tuple(r.values()) for r in self._rows(
                sa.select(sa.func.min(value), sa.func.max(value), sa.func.count(value))
                .where(where))]
            if not n:
                return {"attribute": name, "kind": "numeric", "edges": [], "counts": []}
            width = (high - low) / bins if high > low else 1.0
            bucket = sa.func.min(sa.cast((value - low) / width, sa.Integer), bins - 1)
            if self.dialect == "postgresql":
                bucket = sa.func.least(sa.cast(sa.func.floor((value - low) / width),
                                               sa.Integer), bins - 1)
            counts = [0] * bins
            for r in self._rows(sa.select(bucket.label("b"), sa.func.count().label("n"))
                                .where(where, value.is_not(None)).group_by("b")):
                counts[int(r["b"])] = int(r["n"])
            edges = [low + i * width for i in range(bins + 1)]
            return {"attribute": name, "kind": "numeric", "edges": edges, "counts": counts}
        value = self._attribute(name, numeric=False)
        stmt = (sa.select(value.label("v"), sa.func.count().label("n")).where(where)
                .group_by("v").order_by(sa.desc("n")).limit(50))
        rows = self._rows(stmt)
        return {"attribute": name, "kind": "categorical",
                "values": [r["v"] for r in rows], "counts": [int(r["n"]) for r in rows]}

    def _indexed_histogram(self, name: str, bins: int) -> dict[str, Any]:
        """``histogram`` of a numeric attribute from its index: the bounds are its first and
        last entries, and each bin counts a range of it (no agent's JSON is parsed)."""
        t = self._table("agents")
        value = self._attribute(name, numeric=True)
        present = [t.c.run_id == self.id, value.is_not(None)]
        with self.db.engine.connect() as conn:
            low = conn.execute(sa.select(value).where(*present).order_by(value).limit(1)
                               ).scalar()
            if low is None:
                return {"attribute": name, "kind": "numeric", "edges": [], "counts": []}
            high = conn.execute(sa.select(value).where(*present).order_by(value.desc())
                                .limit(1)).scalar()
            width = (high - low) / bins if high > low else 1.0
            edges = [low + i * width for i in range(bins + 1)]
            # bin i holds edges[i] <= v < edges[i + 1]; the last one also holds the maximum
            ranges = [sa.select(sa.func.count()).select_from(t).where(
                *present, value >= edges[i], *([value < edges[i + 1]] if i < bins - 1 else []))
                .scalar_subquery().label(f"c{i}") for i in range(bins)]
            counts = [int(c) for c in conn.execute(sa.select(*ranges)).one()]
        return {"attribute": name, "kind": "numeric", "edges": edges, "counts": counts}

    def agents(self, conditions: list[Condition], offset: int = 0,
               limit: int = 50) -> dict[str, Any]:
        """A page of the agents meeting every condition, by id, with their attributes and
        how many meet them."""
        t = self._table("agents")
        run = t.c.run_id == self.id
        values = [self._attribute(c.attribute, numeric=isinstance(c.value, float))
                  for c in conditions]
        tests = [_compare(v, c) for v, c in zip(values, conditions, strict=True)]
        count = sa.select(sa.func.count()).select_from(t).where(run, *tests)
        page = tests
        if self.dialect == "sqlite":
            if len(tests) > 1 and all(self._indexed(c.attribute, isinstance(c.value, float))
                                      for c in conditions):
                # SQLite uses one index per table: each condition's agents by its own attribute
                # index, and the count of the rowids they share (PostgreSQL ANDs bitmaps itself;
                # without the indexes, one pass over the agents is cheaper)
                count = sa.select(sa.func.count()).select_from(sa.intersect(*(
                    sa.select(sa.literal_column("rowid")).select_from(t).where(run, test)
                    for test in tests)).subquery())
            # the page walks the agents in id order and stops once it is full; through an
            # attribute index SQLite would fetch and sort every match first (8 s for age<60
            # at offset 800,000 of 1M agents): a unary + keeps it off the index
            page = [_compare(UnaryExpression(v, operator=operators.custom_op("+"), type_=v.type),
                             c) for v, c in zip(values, conditions, strict=True)]
        total = self._rows(count)[0]
        stmt = (sa.select(t.c.agent_id, t.c.attributes).where(run, *page)
                .order_by(t.c.agent_id).offset(offset).limit(min(limit, MAX_PAGE)))
        return {"total": int(next(iter(total.values()))), "offset": offset,
                "agents": [{"agent_id": int(r["agent_id"]),
                            "attributes": json.loads(r["attributes"])} for r in self._rows(stmt)]}

    def agent(self, agent_id: int, limit: int = 200) -> dict[str, Any]:
        """One agent: its attributes, its newest actions, its interview answers, memories and
        model exchanges (each the newest ``limit``)."""
        t = self._table("agents")
        rows = self._rows(sa.select(t.c.attributes).where(t.c.run_id == self.id,
                                                          t.c.agent_id == agent_id))
        if not rows:
            raise NotFound(f"run {self.id} has no agent {agent_id} (agents 0 to "
                           f"{int(self.info['n_agents']) - 1})")
        out: dict[str, Any] = {"agent_id": agent_id,
                               "attributes": json.loads(rows[0]["attributes"])}
        action_table = get_scenario(self.info["scenario"]).action_table
        for key, table in (("actions", action_table), ("interviews", "interview_answers"),
                           ("memories", "memories"), ("llm_calls", "llm_calls")):
            out[key] = self._agent_rows(table, agent_id, limit)
        return out

    def _agent_rows(self, table: str, agent_id: int, limit: int) -> list[dict[str, Any]]:
        if table not in self.db.table_names():
            return []
        t, cols, order = self._shown(table)
        stmt = (sa.select(*cols).where(t.c.run_id == self.id, t.c.agent_id == agent_id)
                .order_by(order).limit(limit))
        return [_plain(r) for r in self._rows(stmt)]

    def llm_health(self) -> dict[str, Any]:
        """The run's language-model use, from its ``llm.*`` step metrics: the counters summed
        over steps, the rates of invalid answers, fallbacks, cache hits and errors, and the
        median over steps of the latency percentiles (None where nothing was asked)."""
        t = self._table("step_metrics")
        names = [f"llm.{k}" for k in LLM_COUNTERS]
        sums = {r["name"][4:]: float(r["total"] or 0) for r in self._rows(
            sa.select(t.c.name, sa.func.sum(t.c.value).label("total"))
            .where(t.c.run_id == self.id, t.c.name.in_(names)).group_by(t.c.name))}
        out: dict[str, Any] = {k: sums.get(k, 0.0) for k in LLM_COUNTERS}
        decisions, requests = out["decisions"], out["requests"]
        for rate, part, whole in (("invalid_rate", "invalid", decisions),
                                  ("fallback_rate", "fallbacks", decisions),
                                  ("cache_rate", "cache_hits", requests),
                                  ("error_rate", "errors", requests)):
            out[rate] = out[part] / whole if whole else None
        for name in ("latency_p50", "latency_p95"):
            values = sorted(r["value"] for r in self._rows(
                sa.select(t.c.value).where(t.c.run_id == self.id, t.c.name == f"llm.{name}",
                                           t.c.value.is_not(None))))
            out[name] = values[len(values) // 2] if values else None
        return out

    def graph(self, center: int | None = None, hops: int = 1, max_nodes: int = 500,
              color: str | None = None, seed: int = 0) -> dict[str, Any]:
        """A sampled subgraph of the run's network (the scenario's ``graph`` table) as it
        stands now: the ``hops``-neighbourhood of agent ``center``, or around a seeded sample
        of agents; at most ``max_nodes`` nodes (``sampled`` says whether any were left out),
        each with its ``color`` attribute as ``value``."""
        spec = get_scenario(self.info["scenario"]).graph
        if spec is None:
            raise NotFound(f"run {self.id}'s scenario ({self.info['scenario']}) records no "
                           "network")
        n_agents = int(self.info["n_agents"])
        if center is not None and not 0 <= center < n_agents:
            raise NotFound(f"run {self.id} has no agent {center} (agents 0 to {n_agents - 1})")
        max_nodes = max(1, min(max_nodes, MAX_GRAPH_NODES))
        if center is not None:
            nodes, frontier = [center], [center]
        else:
            # seeds spread over the population; their neighbourhoods fill the rest
            rng = random.Random(seed)
            frontier = sorted(rng.sample(range(n_agents), min(n_agents,
                                                              max(1, max_nodes // 10))))
            nodes = list(frontier)
        seen, sampled = set(nodes), False
        limit = EDGES_PER_NODE * max_nodes
        for _ in range(hops if center is not None else 1):
            found, touching = [], self._edges(spec, frontier, any_end=True, limit=limit)
            sampled = sampled or len(touching) >= limit
            for a, b, _w in touching:
                for x in (a, b):
                    if x not in seen:
                        if len(seen) >= max_nodes:
                            sampled = True
                            continue
                        seen.add(x)
                        found.append(x)
            nodes += found
            frontier = found
            if not frontier:
                break
        edges = [{"source": a, "target": b, "weight": w}
                 for a, b, w in self._edges(spec, nodes, any_end=False, limit=limit)]
        values = self._values(nodes, color) if color else {}
        return {"nodes": [{"id": x, "value": values.get(x)} for x in nodes], "edges": edges,
                "sampled": sampled or center is None and len(nodes) < n_agents}

    def _edges(self, spec: GraphTable, nodes: list[int], *, any_end: bool,
               limit: int) -> list[tuple[int, int, int]]:
        """Edges with one end (``any_end``) or both ends in ``nodes``: (source, target,
        weight), where the weight counts the rows (or sums the ops) of the edge."""
        if not nodes:
            return []
        t = self._table(spec.table)
        src, dst = t.c[spec.source], t.c[spec.target]
        inside = [src.in_(nodes), dst.in_(nodes)]
        weight = sa.func.sum(t.c[spec.op]) if spec.op else sa.func.count()
        stmt = (sa.select(src.label("a"), dst.label("b"), weight.label("w"))
                .where(t.c.run_id == self.id, sa.or_(*inside) if any_end else sa.and_(*inside))
                .group_by(src, dst).having(weight > 0).limit(limit))
        return [(int(r["a"]), int(r["b"]), int(r["w"])) for r in self._rows(stmt)]

    def _values(self, ids: list[int], name: str) -> dict[int, Any]:
        """Attribute ``name`` of agents ``ids`` (checked against the run's attributes)."""
        value = self._attribute(name, numeric=self._numeric(name))
        t = self._table("agents")
        return {int(r["agent_id"]): r["v"] for r in self._rows(
            sa.select(t.c.agent_id, value.label("v")).where(t.c.run_id == self.id,
                                                            t.c.agent_id.in_(ids)))}

    def tables(self) -> list[str]:
        """The tables a viewer may page through: the scenario's and the steering tables."""
        have = set(self.db.table_names())
        scenario = get_scenario(self.info["scenario"]).tables
        return [t for t in (*scenario, *STEERING_TABLES) if t in have]

    def rows(self, table: str, conditions: list[Condition], offset: int = 0,
             limit: int = 50) -> dict[str, Any]:
        """A page of one of ``tables()``, newest rows first, filtered by conditions on its
        columns (e.g. ``root_id=5``: a post's cascade)."""
        if table not in self.tables():
            raise NotFound(f"run {self.id} has no table {table!r} to show (tables: "
                           f"{', '.join(self.tables())})")
        t, cols, order = self._shown(table)
        names = [c.name for c in cols]
        where: list[Any] = [t.c.run_id == self.id]
        for c in conditions:
            if c.attribute not in names and c.attribute != "run_id":
                raise NotFound(f"table {table} has no column {c.attribute!r} (columns: "
                               f"{', '.join(names)})")
            where.append(_compare(t.c[c.attribute], c))
        stmt = (sa.select(*cols).where(*where).order_by(order).offset(offset)
                .limit(min(limit, MAX_PAGE)))
        return {"table": table, "columns": [c.name for c in cols],
                "rows": [_plain(r) for r in self._rows(stmt)]}

    def answers(self, command_id: int) -> list[dict[str, Any]]:
        """The answers of the interview that control command ``command_id`` sent (none until
        the run applied it)."""
        if "events" not in self.db.table_names():
            return []
        events = self._table("events")
        found = self._rows(sa.select(events.c.name, events.c.step).where(
            events.c.run_id == self.id, events.c.command_id == command_id))
        if not found or "interview_answers" not in self.db.table_names():
            return []
        t = self._table("interview_answers")
        cols = [c for c in t.c if c.name not in ("run_id", "id", "prompt")]
        return [_plain(r) for r in self._rows(
            sa.select(*cols).where(t.c.run_id == self.id, t.c.event == found[0]["name"],
                                   t.c.step == found[0]["step"]).order_by(t.c.id))]

    def steps_after(self, step: int) -> list[dict[str, Any]]:
        """The committed steps after ``step`` (what a live stream sends)."""
        t = self._table("steps")
        stmt = (sa.select(t.c.step, t.c.sim_time, t.c.n_active, t.c.n_actions, t.c.compute_s)
                .where(t.c.run_id == self.id, t.c.step > step).order_by(t.c.step))
        return [_plain(r) for r in self._rows(stmt)]


def _compare(column: sa.ColumnElement[Any], c: Condition) -> sa.ColumnElement[bool]:
    """``column <op> value`` with the value bound (never spliced into the SQL)."""
    bound = sa.bindparam(None, c.value)
    return {"==": column == bound, "!=": column != bound, ">=": column >= bound,
            "<=": column <= bound, ">": column > bound, "<": column < bound}[c.op]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values (times as ISO text, NaN as None)."""
    out = {}
    for k, v in row.items():
        if hasattr(v, "isoformat"):
            v = v.isoformat()
        elif isinstance(v, float) and not math.isfinite(v):
            v = None
        elif isinstance(v, bytes):
            continue
        out[k] = v
    return out


__all__ = ["MAX_PAGE", "OPERATORS", "Condition", "NotFound", "RunQueries", "parse_condition"]
