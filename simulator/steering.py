"""Steering a run: the engine's side of events, interventions and interviews.

Core objects:
    Scheduled: one event and the steps it happens at, where it came from (``yaml``,
        ``python``, ``control``) and the control command that sent it.
    Schedule: every event of a run, by step.
    select_agents: the agents an ``AgentSelector`` picks, vectorised over the population.
    apply_boundary: what a replica of the world does at a step boundary: set variables,
        let agents join (``resolve_join`` draws their profiles first, ``grow_world`` adds
        them) or leave, broadcast, reconfigure, and pick the agents of action and interview
        events.
    scripted_batch: the actions that action events make agents take.
    answer_interview: a replica's answers for its agents (the policy's, else the scenario's
        report of a state variable).
    event_records: the rows of ``events``.

Every replica of the world (the local runtime's, each Ray shard's) runs ``apply_boundary``
with the same events and context, so replicas stay identical; the lead replica's results
and selections are the ones kept. Agents are selected in id order, so that every runtime
gives the same rows in the same order.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from .actions import ActionBatch
from .clock import Clock
from .events import (
    ActionEvent,
    AgentSelector,
    InterviewEvent,
    JoinEvent,
    SetEvent,
    changed_config,
    event_name,
    parse_event,
)
from .interviews import Report, answer_records
from .policy import Policy
from .population import PopulationConfig, draw_newcomers
from .records import Records, merge_records
from .scenario import Scenario
from .sharding import Shardable
from .step import StepContext
from .world import World

SOURCES = ("yaml", "python", "control")


class SteeringError(ValueError):
    """An event that cannot be applied; the message names the event and its field."""


@dataclass
class Scheduled:
    """An event and when it happens."""

    event: Any
    name: str
    first: int
    """Its first step (the run's steps + 1 for ``at: end``)."""
    last: int
    source: str = "yaml"
    command_id: int | None = None
    early: bool = False
    """Happens before the step's other events (a Python interview, asked between steps,
    scheduled again by a resume or a replay)."""

    def at(self, step: int) -> bool:
        """Whether it happens at ``step``."""
        if step == self.first:
            return True
        every = self.event.every
        return (every is not None and self.first < step <= self.last
                and (step - self.first) % every == 0)

    def spec(self) -> str:
        """The event as JSON (what the ``events`` table stores)."""
        return json.dumps(self.event.model_dump(mode="json", by_alias=True, exclude_none=True))


@dataclass
class Schedule:
    """Every event of a run, with the steps they happen at."""

    steps: int
    clock: Clock
    events: list[Scheduled] = field(default_factory=list)

    def add(self, event: Any, name: str, source: str = "yaml", command_id: int | None = None,
            at: int | None = None, early: bool = False) -> Scheduled:
        """Schedule ``event`` (at its own ``at``, or at step ``at`` when given)."""
        if at is not None:
            first = at
        elif event.at == "end":
            first = self.steps + 1
        elif isinstance(event.at, datetime):
            first = self.clock.first_step_at(event.at)
        else:
            first = int(event.at)
        last = event.until if event.until is not None else self.steps
        item = Scheduled(event, name, first, last, source, command_id, early)
        self.events.append(item)
        return item

    def due(self, step: int) -> list[Scheduled]:
        """The events that happen at ``step``, in the order they were scheduled (``early``
        ones first)."""
        due = [s for s in self.events if s.at(step)]
        return sorted(due, key=lambda s: not s.early)  # stable: the order otherwise kept

    @classmethod
    def of(cls, events: list[Any], steps: int, clock: Clock) -> Schedule:
        """The schedule of an experiment's ``events:`` section."""
        schedule = cls(steps, clock)
        for i, event in enumerate(events):
            schedule.add(event, event_name(event, i))
        return schedule


def live_event(data: dict[str, Any]) -> Any:
    """An event given while a run goes on (Python, the control channel), validated; a bad one
    raises ``SteeringError`` naming its field (pydantic's first error, without the union's
    label)."""
    try:
        return parse_event(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(x) for x in first["loc"]]
        if loc and loc[0] == str(data.get("kind")):
            loc = loc[1:]
        message = first["msg"].removeprefix("Value error, ")
        raise SteeringError(f"{'.'.join(loc)}: {message}" if loc else message) from None


def boundary_groups(due: list[Scheduled]) -> list[list[Scheduled]]:
    """The events of a boundary in the batches the replicas apply them in: the experiment's
    events together, each live event (it has a command) alone, and each interview closing its
    batch (it is answered where it stands in the order)."""
    groups: list[list[Scheduled]] = []
    current: list[Scheduled] = []
    for item in due:
        alone = item.command_id is not None
        if alone and current:
            groups.append(current)
            current = []
        current.append(item)
        if alone or item.event.kind == "interview":
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def check_live(event: Any, scenario_cls: type[Scenario[Any, Any, Any, Any]],
               attributes: pd.DataFrame) -> None:
    """Raise ``SteeringError`` now for what would make a live event fail when applied: a
    ``where`` value that cannot be compared with the attribute's values (or a variable's
    numbers), action arguments of the wrong type or length."""
    selector = getattr(event, "agents", None)
    for name, cond in (selector.where.items() if selector is not None else ()):
        sample = (attributes[name].iloc[:1] if name in attributes.columns
                  else pd.Series([0.0]))  # a scenario variable: numbers
        _condition(sample, cond, name)
    if event.kind == "action":
        name = event.name or "event"
        ids = event.agents.ids if event.agents.ids is not None else [0]
        scripted_batch(scenario_cls, [(name, event)], {name: np.unique(np.asarray(
            ids, dtype=np.int64))})


# -- selecting agents ---------------------------------------------------------------------------

def _condition(values: Any, cond: Any, name: str) -> np.ndarray:
    """Where ``values`` (a Series or an array) meets one ``where`` condition."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    ops = cond if isinstance(cond, dict) else {"in" if isinstance(cond, list) else "==": cond}
    mask = np.ones(len(series), dtype=bool)
    try:
        for op, value in ops.items():
            if op == "in":
                mask &= series.isin(value).to_numpy()
            elif op == "not_in":
                mask &= ~series.isin(value).to_numpy()
            elif op == "==":
                mask &= (series == value).to_numpy()
            elif op == "!=":
                mask &= (series != value).to_numpy()
            else:
                compare = {"<": series.lt, "<=": series.le, ">": series.gt, ">=": series.ge}[op]
                mask &= compare(value).to_numpy(dtype=bool)
    except TypeError as err:
        raise SteeringError(f"where.{name}: cannot compare {series.dtype} values with "
                            f"{cond!r} ({err})") from None
    return mask


def select_agents(selector: AgentSelector, scenario: Scenario[Any, Any, Any, Any],
                  ctx: StepContext, event: str) -> np.ndarray:
    """The agents ``selector`` picks, in id order (conditions read population attributes
    first, then scenario variables; a sample is seeded by the event's name and the step)."""
    world = scenario.world
    n = world.n_agents
    attributes = world.population.attributes
    if selector.ids is not None:
        ids = np.unique(np.asarray(selector.ids, dtype=np.int64))
        if len(ids) and ids[-1] >= n:
            raise SteeringError(f"event {event!r}: agents.ids: no agent {int(ids[-1])} (the "
                                f"population has {n} agents)")
        ids = ids[world.present[ids]]  # agents that left are not there to act or answer
    else:
        ids = None
    if selector.where:
        mask = np.ones(n, dtype=bool)
        for name, cond in selector.where.items():
            if name in attributes.columns:
                values: Any = attributes[name]
            elif name in scenario.variables:
                values = scenario.variable(name)
            else:
                raise SteeringError(f"event {event!r}: agents.where: no population attribute "
                                    f"or scenario variable {name!r}")
            mask &= _condition(values, cond, name)
        chosen = ids[mask[ids]] if ids is not None else np.flatnonzero(mask & world.present)
    else:
        chosen = ids if ids is not None else np.flatnonzero(world.present)
    k = selector.sample
    if selector.fraction is not None:
        k = int(round(selector.fraction * len(chosen)))
    if k is not None and k < len(chosen):
        rng = ctx.random(f"steering.sample.{event}")
        chosen = np.sort(rng.choice(chosen, size=k, replace=False))
    return chosen.astype(np.int64)


# -- applying events in a replica ----------------------------------------------------------------

@dataclass
class Boundary:
    """What a replica did at a step boundary."""

    records: Records
    results: list[dict[str, Any]]
    """One per event, in order: what it did (agents, values changed, rows added)."""
    selected: dict[str, np.ndarray]
    """The agents of each action, join, leave and interview event, by name."""


def apply_boundary(scenario: Scenario[Any, Any, Any, Any], policy: Policy[Any, Any],
                   events: list[tuple[str, Any]], ctx: StepContext) -> Boundary:
    """Apply ``events`` (name, event) to this replica at the boundary before ``ctx.step``.
    A join event comes resolved (``resolve_join``): one profile per newcomer."""
    records: Records = {}
    results: list[dict[str, Any]] = []
    selected: dict[str, np.ndarray] = {}
    for name, event in events:
        if event.kind == "set":
            results.append(_set(scenario, name, event, ctx))
        elif event.kind == "join":
            agents = _join(scenario, policy, name, event, ctx, records)
            selected[name] = agents
            results.append({"agents": len(agents), "first_id": int(agents[0])})
        elif event.kind == "broadcast":
            model = scenario.broadcast_model
            if model is None:
                raise SteeringError(f"event {name!r}: kind: scenario {scenario.name!r} has no "
                                    "broadcasts")
            try:
                args = model.model_validate(event.args, context={"config": scenario.config})
            except ValueError as err:
                raise SteeringError(f"event {name!r}: args: {err}") from None
            rows = scenario.broadcast(event.text, args, ctx)
            merge_records(records, rows)
            results.append({"rows": {t: len(next(iter(c.values()), [])) for t, c in rows.items()}})
        elif event.kind == "leave":
            agents = select_agents(event.agents, scenario, ctx, name)
            scenario.world.present[agents] = False
            selected[name] = agents
            results.append({"agents": len(agents)})
        elif event.kind == "parameter":
            scenario.reconfigure(changed_config(scenario.config, event.changes))
            results.append({"changed": sorted(event.changes)})
        else:  # action, interview: the driver acts on the selection
            agents = select_agents(event.agents, scenario, ctx, name)
            selected[name] = agents
            results.append({"agents": len(agents)})
    return Boundary(records, results, selected)


def resolve_join(event: JoinEvent, population: PopulationConfig, rng: np.random.Generator
                 ) -> JoinEvent:
    """``event`` with a profile for every newcomer: the given ones completed, the others
    drawn from the population's distributions (what every replica then adds alike)."""
    rows = draw_newcomers(population, event.size, event.profiles, rng)
    profiles = [{k: v for k, v in row.items() if v is not None and v == v}  # NaN: missing
                for row in rows.to_dict("records")]
    return event.model_copy(update={"profiles": profiles, "count": len(profiles)})


def grow_world(world: World, profiles: list[dict[str, Any]]) -> np.ndarray:
    """Add agents with ``profiles`` to ``world`` (population rows, present); their ids."""
    population = world.population
    old = population.size
    ids = np.arange(old, old + len(profiles), dtype=np.int64)
    rows = pd.DataFrame(profiles, index=pd.RangeIndex(old, old + len(profiles)))
    frame = population.attributes
    rows = rows.reindex(columns=[*frame.columns, *(c for c in rows.columns
                                                   if c not in frame.columns)])
    for col in frame.columns:  # keep each column's dtype where the newcomers' values fit
        if col in rows and rows[col].notna().all():
            with contextlib.suppress(TypeError, ValueError):
                rows[col] = rows[col].astype(frame[col].dtype)
    population.attributes = pd.concat([frame, rows])
    world.present = np.concatenate([world.present, np.ones(len(ids), dtype=bool)])
    return ids


def _join(scenario: Scenario[Any, Any, Any, Any], policy: Policy[Any, Any], name: str,
          event: JoinEvent, ctx: StepContext, records: Records) -> np.ndarray:
    model = scenario.join_model
    if model is None:
        raise SteeringError(f"event {name!r}: kind: scenario {scenario.name!r} does not let "
                            "agents join during a run")
    try:
        args = model.model_validate(event.args, context={"config": scenario.config})
    except ValueError as err:
        raise SteeringError(f"event {name!r}: args: {err}") from None
    world = scenario.world
    old, frame, present = world.n_agents, world.population.attributes, world.present
    block = (scenario.lo, scenario.hi) if isinstance(scenario, Shardable) else None
    agents = grow_world(world, event.profiles)
    if isinstance(scenario, Shardable) and scenario.tail and scenario.hi == old:
        scenario.own(scenario.lo, old + len(agents))  # the newcomers are this replica's
    try:
        merge_records(records, scenario.join(agents, args, ctx))
    except ValueError as err:  # the scenario refuses them: the world as it was
        world.population.attributes, world.present = frame, present
        if block is not None:
            scenario.own(*block)  # type: ignore[union-attr]
        raise SteeringError(f"event {name!r}: {err}") from None
    policy.join(agents, world.population.attributes, ctx)
    return agents


def _set(scenario: Scenario[Any, Any, Any, Any], name: str, event: SetEvent,
         ctx: StepContext) -> dict[str, Any]:
    spec = scenario.variables.get(event.variable)
    if spec is None:
        raise SteeringError(f"event {name!r}: variable: scenario {scenario.name!r} has no "
                            f"variable {event.variable!r}")
    agents = select_agents(event.agents, scenario, ctx, name)
    values = scenario.variable(event.variable)
    old = np.asarray(values[agents], dtype=np.float64)
    if event.value is not None:
        new = np.full(len(agents), event.value, dtype=np.float64)
    elif event.shift is not None:
        new = old + event.shift
    else:
        new = old * event.scale
    values[agents] = np.clip(new, spec.low, spec.high)
    # what was stored (a scenario may round, or keep a variable in other units)
    stored = np.asarray(scenario.variable(event.variable)[agents], dtype=np.float64)
    same = (stored == old) | (np.isnan(stored) & np.isnan(old))
    return {"agents": len(agents), "changed": int((~same).sum()),
            "mean_before": _mean(old), "mean_after": _mean(stored)}


def _mean(values: np.ndarray) -> float | None:
    """The mean of the finite values (None when there are none), for the events table."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def scripted_batch(scenario_cls: type[Scenario[Any, Any, Any, Any]],
                   events: list[tuple[str, ActionEvent]], selected: dict[str, np.ndarray]
                   ) -> ActionBatch[Any] | None:
    """The actions that ``events`` make their selected agents take; an agent picked by two of
    them takes the later one's."""
    batches = []
    for name, event in events:
        agents = selected[name]
        if not len(agents):
            continue
        columns: dict[str, Any] = {}
        for col, value in event.args.items():
            if isinstance(value, list):
                if event.agents.ids is None or len(value) != len(event.agents.ids):
                    raise SteeringError(
                        f"event {name!r}: args.{col}: a list gives one value per agent of "
                        f"agents.ids ({len(event.agents.ids or [])}), not {len(value)}")
                by_id = dict(zip(event.agents.ids, value, strict=True))
                value = [by_id[a] for a in agents.tolist()]
                columns[col] = np.asarray(value) if col != "content" else value
            else:
                columns[col] = [value] * len(agents)
        code = scenario_cls.actions.index(event.action)
        try:
            args = scenario_cls.args_type(**columns)
            batches.append(ActionBatch(agents, np.full(len(agents), code, dtype=np.int16), args))
        except (ValueError, TypeError) as err:
            raise SteeringError(f"event {name!r}: args: {err}") from None
    if not batches:
        return None
    batch = ActionBatch.concat(batches)
    # the later event wins: keep each agent's last row, in the order of first appearance
    _, last = np.unique(batch.agent[::-1], return_index=True)
    keep = np.sort(len(batch) - 1 - last)
    return batch.take(keep)


def answer_interview(scenario: Scenario[Any, Any, Any, Any], policy: Policy[Any, Any],
                     agents: np.ndarray, name: str, event: InterviewEvent,
                     ctx: StepContext) -> Records:
    """``agents``' answers (the policy's; for agents it gives no words, the scenario's report
    of a state variable) as ``interview_answers`` rows."""
    if not len(agents):
        return {}
    obs = scenario.observe(agents, ctx)
    given = policy.interview(obs, event, ctx)
    report = None
    variable = event.report or next(iter(scenario.variables), None)
    if variable is not None and any(a is None for a in given):
        spec = scenario.variables[variable]
        reporting = np.array([a is None for a in given], dtype=bool)
        report = Report(variable, np.asarray(scenario.variable(variable)[agents[reporting]],
                                             dtype=np.float64), spec.low, spec.high)
    return answer_records(event, name, agents, given, report)


def event_records(items: list[Scheduled], results: list[dict[str, Any]]) -> Records:
    """The ``events`` rows of the events applied at a step."""
    if not items:
        return {}
    return {"events": {
        "name": [s.name for s in items],
        "kind": [s.event.kind for s in items],
        "source": [s.source for s in items],
        "command_id": [s.command_id for s in items],
        "spec": [s.spec() for s in items],
        "result": [json.dumps(r) for r in results],
    }}


__all__ = ["SOURCES", "Boundary", "Schedule", "Scheduled", "SteeringError", "answer_interview",
           "apply_boundary", "boundary_groups", "check_live", "event_records", "grow_world",
           "live_event", "resolve_join", "scripted_batch", "select_agents"]
