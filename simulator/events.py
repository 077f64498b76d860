"""Events that steer a run: what the ``events:`` section of an experiment, ``Simulation.intervene``
and ``populace intervene`` describe.

Core objects:
    AgentSelector: which agents an event concerns: every agent, listed ids, attribute and state
        filters (``where``), then a seeded sample.
    ActionEvent, SetEvent, JoinEvent, LeaveEvent, BroadcastEvent, ParameterEvent,
        InterviewEvent: the kinds of event (``kind:``), each with its schedule (``at``,
        ``every``, ``until``).
    Event: the union of the kinds, as pydantic validates it.
    check_events: the checks that need the experiment (its steps, population, scenario): an
        unknown agent, action, argument, variable or attribute, a step past the end.

An event ``at: N`` happens at the boundary before step N is decided: it sees the state after
step N-1 and its changes are in place for step N's decisions; its rows are recorded with step
N. ``at: end`` (interviews only) happens after the last step. The engine's side is
``populace.simulator.steering``.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

Scalar = str | int | float | bool
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in")
"""Operators of a ``where`` condition given as a mapping, e.g. ``{age: {">=": 30}}``."""


class AgentSelector(BaseModel):
    """Which agents an event concerns.

    ``ids`` lists agents by id (default: every agent); ``where`` keeps those whose population
    attribute or scenario variable matches every condition (a value: equal; a list: any of the
    values; a mapping: comparisons such as ``{">=": 30}``); ``sample`` or ``fraction`` then
    draws that many (or that share) of them at random, seeded by the run's seed, the event and
    the step, so a re-run draws the same agents on any runtime.
    """

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="agent ids (default: every agent)")
    where: dict[str, Scalar | list[Scalar] | dict[str, Scalar | list[Scalar]]] = Field(
        default_factory=dict, description="keep agents whose attribute or state variable "
        "matches every condition: a value (equal), a list (any of) or comparisons such as "
        '{">=": 30} (operators: ' + ", ".join(COMPARISONS) + ")")
    sample: int | None = Field(None, ge=1, description="then draw this many of them (seeded)")
    fraction: float | None = Field(None, gt=0, le=1, description="then draw this share of "
                                   "them (seeded)")

    @model_validator(mode="after")
    def _one_draw(self) -> AgentSelector:
        if self.sample is not None and self.fraction is not None:
            raise ValueError("give `sample` or `fraction`, not both")
        for name, cond in self.where.items():
            if isinstance(cond, dict):
                unknown = sorted(set(cond) - set(COMPARISONS))
                if unknown:
                    raise ValueError(f"where.{name}: unknown operator {unknown[0]!r} (operators: "
                                     f"{', '.join(COMPARISONS)})")
                for op, value in cond.items():
                    if op in ("in", "not_in") and not isinstance(value, list):
                        raise ValueError(f"where.{name}.{op} takes a list of values")
                    if op not in ("in", "not_in") and isinstance(value, list):
                        raise ValueError(f"where.{name}.{op} takes one value, not a list")
        return self

    def names(self) -> list[str]:
        """The attributes and variables the conditions read."""
        return list(self.where)


def _selector(value: Any) -> Any:
    """``agents: all``, ``agents: [1, 2]`` and ``agents: 17`` are short forms."""
    if value == "all":
        return {}
    if isinstance(value, int) and not isinstance(value, bool):
        return {"ids": [value]}
    if isinstance(value, list):
        return {"ids": value}
    return value


When = int | Literal["end"] | datetime


class _EventBase(BaseModel):
    """The schedule every event kind shares."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100, description="the event's name in the "
                             "`events` table (default: event<i>, its index in the list)")
    at: When = Field(description="the step before which it happens (1 = before the first "
                     "step), a simulated time (the first step at or after it), or `end` "
                     "(interviews only: after the last step)")
    every: int | None = Field(None, ge=1, description="repeat every this many steps")
    until: int | None = Field(None, ge=1, description="last step of a repeat (default: the "
                              "run's last step)")

    @field_validator("at")
    @classmethod
    def _step_from_one(cls, value: When) -> When:
        if isinstance(value, int) and value < 1:
            raise ValueError("steps are numbered from 1 (an event at 1 happens before the "
                             "first step)")
        return value

    @model_validator(mode="after")
    def _repeat(self) -> _EventBase:
        if self.until is not None and self.every is None:
            raise ValueError("`until` ends a repeat: give `every` too")
        if self.at == "end" and self.every is not None:
            raise ValueError("an event at `end` cannot repeat")
        return self


class ActionEvent(_EventBase):
    """Chosen agents take a given action (instead of deciding one themselves), e.g. agent 17
    posts this text, these 50 agents like post 3. ``args`` maps the scenario's argument
    columns to one value for every agent, or a list with one value per selected agent."""

    kind: Literal["action"]
    agents: Annotated[AgentSelector, Field(description="who acts")]
    action: str = Field(description="one of the scenario's actions")
    args: dict[str, Any] = Field(default_factory=dict, description="argument columns of the "
                                 "action (see the scenario's action arguments)")

    _agents = field_validator("agents", mode="before")(_selector)


class SetEvent(_EventBase):
    """A scenario variable of the selected agents is set, shifted or scaled (then kept within
    the variable's bounds), e.g. the opinion of agents with ``party == 'A'``."""

    kind: Literal["set"]
    agents: AgentSelector = Field(default_factory=AgentSelector, description="whose variable "
                                  "changes (default: every agent)")
    variable: str = Field(description="one of the scenario's agent variables")
    value: float | None = Field(None, description="the new value")
    shift: float | None = Field(None, description="added to the value")
    scale: float | None = Field(None, description="the value is multiplied by it")

    _agents = field_validator("agents", mode="before")(_selector)

    @model_validator(mode="after")
    def _one_change(self) -> SetEvent:
        given = [k for k in ("value", "shift", "scale") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `value`, `shift` and `scale`"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class LeaveEvent(_EventBase):
    """The selected agents leave the run: from this step on they are not activated, asked or
    selected by any event; their rows and what they posted stay (``departures`` records
    who left when)."""

    kind: Literal["leave"]
    agents: Annotated[AgentSelector, Field(description="who leaves")]

    _agents = field_validator("agents", mode="before")(_selector)


class JoinEvent(_EventBase):
    """New agents join the run: ``count`` of them, with profiles drawn from the population's
    distributions (seeded by the run's seed, the event's name and the step), or given in
    ``profiles`` (attributes a profile leaves out are drawn). They get the next ids, rows in
    ``agents`` and ``arrivals``, and what the scenario gives a newcomer (``args``: e.g. the
    accounts a new user of the social network follows)."""

    kind: Literal["join"]
    count: int | None = Field(None, ge=1, le=10_000_000, description="how many agents join "
                              "(default: one per profile)")
    profiles: list[dict[str, Scalar]] = Field(
        default_factory=list, max_length=1_000_000, description="attributes of the first "
        "newcomers, one mapping each; attributes left out are drawn")
    args: dict[str, Any] = Field(default_factory=dict, description="the scenario's arguments "
                                 "for newcomers (see its join arguments)")

    @model_validator(mode="after")
    def _how_many(self) -> JoinEvent:
        if self.count is None and not self.profiles:
            raise ValueError("give `count` (profiles drawn from the population's "
                             "distributions) or `profiles`")
        if self.count is not None and self.count < len(self.profiles):
            raise ValueError(f"count {self.count} is smaller than the {len(self.profiles)} "
                             "profiles given")
        return self

    @property
    def size(self) -> int:
        """The number of agents that join."""
        return self.count if self.count is not None else len(self.profiles)


class BroadcastEvent(_EventBase):
    """A message from a system account to every agent (a post, an announcement); ``args`` are
    the scenario's broadcast arguments."""

    kind: Literal["broadcast"]
    text: str = Field(min_length=1, max_length=20_000, description="what it says")
    args: dict[str, Any] = Field(default_factory=dict, description="the scenario's broadcast "
                                 "arguments (e.g. a post's topic and stance)")


class ParameterEvent(_EventBase):
    """Parameters of the ``scenario:`` section change from this step on (e.g. the feed
    algorithm); keys are dotted paths inside the section, e.g. ``feed.algorithm``."""

    kind: Literal["parameter"]
    changes: dict[str, Any] = Field(min_length=1, description="dotted path in the scenario "
                                    "section -> new value")


class Question(BaseModel):
    """One question of an interview, and the form of its answer."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | None = Field(None, max_length=100, description="its name in the answers table "
                           "(default: q<i>)")
    text: str = Field(min_length=1, max_length=5_000, description="the question")
    answer: Literal["text", "scale", "json"] = Field(
        "text", description="`text`: free text; `scale`: an integer from `low` to `high`; "
        "`json`: an object that validates against `schema`")
    low: int = Field(1, description="lowest point of a scale")
    high: int = Field(7, description="highest point of a scale")
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="JSON schema of a "
                                           "`json` answer")
    max_chars: int = Field(1_000, ge=1, le=20_000, description="longest free-text answer kept")

    @model_validator(mode="after")
    def _form(self) -> Question:
        if self.answer == "scale" and self.high <= self.low:
            raise ValueError(f"a scale needs high > low (got {self.low}..{self.high})")
        if self.answer == "json" and self.schema_ is None:
            raise ValueError("a `json` answer needs a `schema`")
        if self.answer != "json" and self.schema_ is not None:
            raise ValueError("`schema` is for `answer: json`")
        if self.schema_ is not None:
            try:
                validator_for(self.schema_).check_schema(self.schema_)
            except SchemaError as err:
                raise ValueError(f"`schema` is not a valid JSON schema: {err.message}") from None
        return self


class InterviewEvent(_EventBase):
    """Questions put to agents. Language-model agents answer in persona (profile and memories;
    the exchange enters their memory only with ``remember``); rule agents answer a scale
    question with a state variable (``report``) mapped onto the scale, and no text."""

    kind: Literal["interview"]
    agents: AgentSelector = Field(default_factory=AgentSelector, description="who is asked "
                                  "(default: every agent)")
    questions: list[Question] = Field(min_length=1, max_length=50)
    report: str | None = Field(None, description="the scenario variable rule agents answer "
                               "scale questions with (default: its first variable)")
    remember: bool = Field(False, description="the question and answer enter the memories of "
                           "language-model agents")

    _agents = field_validator("agents", mode="before")(_selector)

    @field_validator("questions", mode="before")
    @classmethod
    def _plain_questions(cls, value: Any) -> Any:
        if isinstance(value, str | dict):  # one question
            value = [value]
        if isinstance(value, list):
            return [{"text": q} if isinstance(q, str) else q for q in value]
        return value

    @model_validator(mode="after")
    def _distinct_ids(self) -> InterviewEvent:
        ids = [q.id or f"q{i}" for i, q in enumerate(self.questions)]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"questions: the id {repeated[0]!r} is given to several "
                             "questions; each needs its own (answers are stored by it)")
        return self


Event = Annotated[ActionEvent | SetEvent | JoinEvent | LeaveEvent | BroadcastEvent
                  | ParameterEvent | InterviewEvent,
                  Field(discriminator="kind")]
"""One event of any kind."""
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)
EVENT_KINDS = ("action", "set", "join", "leave", "broadcast", "parameter", "interview")


def parse_event(data: dict[str, Any]) -> Any:
    """Validate one event given as plain data (raises pydantic's ``ValidationError``)."""
    return EVENT_ADAPTER.validate_python(data)


def event_name(event: Any, index: int) -> str:
    """The name an event is recorded under."""
    return event.name or f"event{index}"


def check_events(events: list[Any], *, steps: int, step_of: Any, n_agents: int | None,
                 attributes: list[str] | None, scenario: Any, scenario_config: BaseModel,
                 first_step: int = 1) -> list[tuple[tuple[Any, ...], str]]:
    """What the experiment makes wrong in its events: (location, message) pairs, the location
    relative to the ``events`` list.

    Args:
        steps: the run's number of steps.
        step_of: turns a simulated time into the first step at or after it.
        n_agents: the population size, when known before the population is built.
        attributes: the population's attribute names, when known.
        scenario: the run's scenario class (its actions, argument columns, variables,
            broadcast and reconfigurable parameters; typed ``Any`` because the scenario
            contract imports this module's types).
        scenario_config: the scenario's config (parameter changes must validate against it).
        first_step: the earliest step an event may happen at (a live event: the next one).
    """
    problems: list[tuple[tuple[Any, ...], str]] = []
    variables = scenario.variables
    starts = [steps + 1 if e.at == "end" else step_of(e.at) if isinstance(e.at, datetime)
              else e.at for e in events]
    for i, event in enumerate(events):
        where = (i,)
        start = starts[i] if event.at != "end" else "end"
        if event.at == "end" and event.kind != "interview":
            problems.append(((*where, "at"), "only an interview can happen at `end`"))
        if isinstance(start, int):
            if start < first_step:
                problems.append(((*where, "at"), f"step {start} is in the past: the run is "
                                 f"at step {first_step - 1}, so the earliest is {first_step}"))
            elif start > steps:
                problems.append(((*where, "at"), f"step {start} is after the run's last step "
                                 f"({steps}); use `at: end` for an interview after it"))
        if event.until is not None and isinstance(start, int) and event.until < start:
            problems.append(((*where, "until"), f"until {event.until} is before at {start}"))
        selector = getattr(event, "agents", None)
        if selector is not None:
            size = None if n_agents is None else n_agents + _joined_before(
                events, starts, steps, starts[i], i)
            problems += _check_selector(selector, (*where, "agents"), size, attributes,
                                        variables)
        if event.kind == "action":
            problems += _check_action(event, where, scenario)
        elif event.kind == "set":
            if event.variable not in variables:
                problems.append(((*where, "variable"), _unknown("variable", event.variable,
                                                                variables, scenario.name)))
        elif event.kind == "join":
            problems += _check_join(event, where, scenario, scenario_config, attributes)
        elif event.kind == "broadcast":
            problems += _check_broadcast(event, where, scenario, scenario_config)
        elif event.kind == "parameter":
            problems += _check_parameters(event, where, scenario, scenario_config)
        elif event.kind == "interview":
            problems += _check_report(event, where, scenario)
    return problems


def _joined_before(events: list[Any], starts: list[Any], steps: int, step: int,
                   index: int) -> int:
    """How many agents the join events add before event ``index`` happens at ``step`` (at
    earlier steps, or at that step but earlier in the list)."""
    total = 0
    for j, event in enumerate(events):
        first = starts[j]
        if event.kind != "join" or not isinstance(first, int):
            continue
        last = min(step, event.until or steps) if event.every else first
        times = (range(first, last + 1, event.every) if event.every else [first])
        total += event.size * sum(1 for t in times if t < step or (t == step and j < index))
    return total


def _unknown(what: str, name: str, known: Any, scenario: str) -> str:
    listing = ", ".join(known) or "none"
    return f"scenario {scenario!r} has no {what} {name!r} ({what}s: {listing})"


def _check_selector(selector: AgentSelector, where: tuple[Any, ...], n_agents: int | None,
                    attributes: list[str] | None, variables: Any
                    ) -> list[tuple[tuple[Any, ...], str]]:
    problems: list[tuple[tuple[Any, ...], str]] = []
    if selector.ids is not None and n_agents is not None:
        for j, agent in enumerate(selector.ids):
            if agent >= n_agents:
                problems.append(((*where, "ids", j), f"no agent {agent}: the population has "
                                 f"{n_agents} agents (ids 0 to {n_agents - 1})"))
                break
    if attributes is not None:
        known = list(dict.fromkeys([*attributes, *variables]))
        for name in selector.names():
            if name not in known:
                problems.append(((*where, "where", name), f"no population attribute or "
                                 f"scenario variable {name!r} (known: {', '.join(known)})"))
    return problems


def _check_action(event: ActionEvent, where: tuple[Any, ...], scenario: Any) -> list[tuple[tuple[Any, ...], str]]:
    if event.action not in scenario.actions:
        return [((*where, "action"), _unknown("action", event.action, scenario.actions,
                                              scenario.name))]
    columns = [f.name for f in scenario.args_type.specs()]
    return [((*where, "args", name), f"action {event.action!r} of scenario {scenario.name!r} "
             f"has no argument {name!r} (arguments: {', '.join(columns) or 'none'})")
            for name in event.args if name not in columns]


def _check_broadcast(event: BroadcastEvent, where: tuple[Any, ...], scenario: Any,
                     config: BaseModel) -> list[tuple[tuple[Any, ...], str]]:
    model = scenario.broadcast_model
    if model is None:
        return [((*where, "kind"), f"scenario {scenario.name!r} has no broadcasts")]
    try:  # the scenario's config is the validation context (e.g. its topics)
        model.model_validate(event.args, context={"config": config})
    except ValueError as err:
        return [((*where, "args"), _first_error(err))]
    return []


def _check_report(event: InterviewEvent, where: tuple[Any, ...], scenario: Any
                  ) -> list[tuple[tuple[Any, ...], str]]:
    """The variable rule agents report on a scale must exist and have finite bounds."""
    variables = scenario.variables
    if event.report is not None and event.report not in variables:
        return [((*where, "report"), _unknown("variable", event.report, variables,
                                              scenario.name))]
    if not any(q.answer == "scale" for q in event.questions):
        return []
    name = event.report or next(iter(variables), None)
    if name is None:
        return []  # nothing to report: rule agents' scale answers are invalid
    spec = variables[name]
    if math.isfinite(spec.low) and math.isfinite(spec.high):
        return []
    bounded = [v for v, s in variables.items() if math.isfinite(s.low) and math.isfinite(s.high)]
    return [((*where, "report"), (
        f"rule agents report {name!r} on the scale, but it has no finite bounds "
        f"({spec.low} to {spec.high}); name a bounded variable in `report` "
        f"({', '.join(bounded) or 'the scenario has none'})"))]


def _check_join(event: JoinEvent, where: tuple[Any, ...], scenario: Any, config: BaseModel,
                attributes: list[str] | None) -> list[tuple[tuple[Any, ...], str]]:
    model = scenario.join_model
    if model is None:
        return [((*where, "kind"), f"scenario {scenario.name!r} does not let agents join "
                 "during a run")]
    problems = []
    if attributes is not None:
        for j, profile in enumerate(event.profiles):
            for key in profile:
                if key not in attributes:
                    problems.append(((*where, "profiles", j, key), (
                        f"no population attribute {key!r} (attributes: "
                        f"{', '.join(attributes) or 'none'})")))
    try:  # the context: what a scenario may check newcomers' arguments against
        model.model_validate(event.args, context={"config": config, "attributes": attributes})
    except ValueError as err:
        problems.append(((*where, "args"), _first_error(err)))
    return problems


def _check_parameters(event: ParameterEvent, where: tuple[Any, ...], scenario: Any,
                      config: BaseModel) -> list[tuple[tuple[Any, ...], str]]:
    allowed = scenario.reconfigurable
    problems = []
    for key in event.changes:
        if not any(key == p or key.startswith(p + ".") for p in allowed):
            problems.append(((*where, "changes", key), (
                f"scenario {scenario.name!r} cannot change {key!r} during a run (it can "
                f"change: {', '.join(allowed) or 'nothing'})")))
    if not problems:
        try:
            changed_config(config, event.changes)
        except (ValueError, KeyError) as err:
            problems.append(((*where, "changes"), _first_error(err)))
    return problems


def changed_config(config: BaseModel, changes: dict[str, Any]) -> BaseModel:
    """``config`` with the dotted ``changes`` applied, validated by its own model (raises
    ``KeyError`` for a path it does not have, pydantic's ``ValidationError`` for a value)."""
    data = copy.deepcopy(config.model_dump(mode="python", by_alias=True))
    for key, value in changes.items():
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"{key}: the scenario section has no "
                               f"{'.'.join(parts[:i + 1])!r}")
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return type(config).model_validate(data)


def _first_error(err: Exception) -> str:
    if isinstance(err, KeyError):
        return str(err.args[0])
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        return f"{loc}: {first['msg']}" if loc else str(first["msg"])
    return str(err)


__all__ = ["COMPARISONS", "EVENT_ADAPTER", "EVENT_KINDS", "ActionEvent", "AgentSelector",
           "BroadcastEvent", "Event", "InterviewEvent", "JoinEvent", "LeaveEvent", "ParameterEvent", "Question",
           "SetEvent", "changed_config", "check_events", "event_name", "parse_event"]
