"""The experiment configuration, loaded from YAML.

Core objects:
    ExperimentConfig: the pydantic model of an experiment file (every section, unknown keys
        rejected).
    Experiment: a validated config together with its scenario class, the scenario's own validated
        config, and the file it came from.
    load_experiment / experiment_from_dict: parse and validate, reporting every problem at once
        (``ConfigError``) with YAML line and column, field path and a "did you mean".

The ``scenario`` section is validated by the chosen scenario's own model, and ``policy.params`` by
its rule-parameter model, so a scenario adds configuration without touching this module.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from .activation import ActivationConfig
from .clock import Clock, parse_duration
from .config_errors import (
    ConfigError,
    Marks,
    Problem,
    format_path,
    load_yaml,
    problems_from_validation_error,
)
from .events import Event, check_events
from .llm.config import LLMConfig, LLMParams
from .llm.transformers_backend import local_model_problem
from .network import NetworkConfig
from .paths import MissingPathError, existing_path
from .policy import PolicyConfig
from .population import PopulationConfig
from .registry import UnknownScenarioError, get_scenario
from .runtime_config import RuntimeConfig
from .scenario import Scenario

#: Most steps a run may plan: steps are stored as 32-bit integers, and 10 million hourly steps
#: are already 1,140 simulated years.
MAX_STEPS = 10_000_000
#: Largest seed: stored as a signed 64-bit integer (the random streams use its 64 bits).
MAX_SEED = 2**63 - 1
#: Longest step: a simulated year is far beyond any model's time scale; longer steps also
#: leave the calendar (year 9999) after a few thousand steps.
MAX_STEP_DURATION = timedelta(days=366)
#: Most follow edges a generated network may have in all (expected): 100 edges each for 100
#: million agents. Above, the edge arrays alone outgrow the memory of a large machine.
MAX_EDGES = 10_000_000_000


def _duration(value: Any) -> timedelta:
    """``parse_duration`` with an upper bound (huge numbers overflow ``timedelta``)."""
    try:
        duration = parse_duration(value)
    except OverflowError:
        raise ValueError(f"{value!r} is too long for a step (at most 366d)") from None
    if duration > MAX_STEP_DURATION:
        raise ValueError(f"a step lasts at most 366 days, got {value!r}")
    if duration <= timedelta(0):  # under a microsecond: rounded to nothing
        raise ValueError(f"a step must last at least a microsecond, got {value!r}")
    return duration


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(lambda d: f"{int(d.total_seconds())}s", return_type=str),
]


class ScenarioSection(BaseModel):
    """``scenario:``: ``type`` picks the scenario; its other keys are the scenario's own."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="the scenario to simulate; the section's other keys are that "
                      "scenario's own (see the scenario sections below)")

    def params(self) -> dict[str, Any]:
        """The scenario's own keys (everything but ``type``)."""
        return dict(self.model_extra or {})


class StorageConfig(BaseModel):
    """``storage:``: where the run is recorded.

    ``url`` is a SQLAlchemy URL; by default a SQLite file named after the run,
    ``populace_runs/<name>.sqlite`` under the current folder. PostgreSQL:
    ``postgresql+psycopg://USER@HOST:5432/DB``.
    """

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="SQLAlchemy database URL. Unset: the SQLite file "
                            "`populace_runs/<name>.sqlite` under the current folder")
    background_writes: bool = Field(
        True, description="write each step in a background thread while the next one is "
        "computed (at most one step in flight); false writes before computing on")


class RecordingConfig(BaseModel):
    """``recording:``: what is written to the database each step."""

    model_config = ConfigDict(extra="forbid")

    actions: bool = Field(True, description="write the trace of every action (actions table)")
    do_nothing: bool = Field(False, description="include do_nothing actions in the trace")
    agent_state_every: int = Field(
        0, ge=0, le=MAX_STEPS, description="snapshot agents' state variables every N steps "
        "(0: never; at most 10,000,000)")


class MetricsConfig(BaseModel):
    """``metrics:``: how often per-step metrics are computed."""

    model_config = ConfigDict(extra="forbid")

    every: int = Field(1, ge=1, le=MAX_STEPS, description="compute step metrics every N steps "
                       "(and the last; at most 10,000,000)")
    final: bool = Field(True, description="run the scenario's end-of-run analysis (e.g. cascades)")


class ExperimentConfig(BaseModel):
    """An experiment: what to simulate, for how long, and where to record it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=100,
                      description="run name (letters, digits, _ . -); names the database file")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="fixes population, graph, activation "
                      "and every random choice (0 to 2**63-1)")
    steps: int = Field(gt=0, le=MAX_STEPS, description="number of steps to simulate (at most "
                       "10,000,000)")
    step_duration: Duration = Field(timedelta(hours=1),
                                    description="simulated time per step, e.g. 30m, 1h, 1d "
                                    "(at most 366d)")
    start_time: datetime = Field(datetime(2025, 1, 1), description="simulated time of step 0")
    scenario: ScenarioSection
    population: PopulationConfig
    network: NetworkConfig = Field(default_factory=lambda: {"generator": "none"},
                                   validate_default=True,
                                   description="the follow graph; m and k must be below the "
                                   "number of agents, and a generated graph may have at most "
                                   "10 billion edges")
    activation: ActivationConfig = Field(default_factory=ActivationConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig,
                                 description="who decides what agents do: the scenario's rule "
                                 "policy, or several policies for different groups of agents")
    llm: LLMConfig | None = Field(None, description="language-model backend for `type: llm` "
                                  "policy parts")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    checkpoint_every: int = Field(10, ge=1, le=MAX_STEPS,
                                  description="save resume state every N steps")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig,
                                   description="where agents observe and decide: local or ray")
    events: list[Event] = Field(default_factory=list, description="scheduled events: scripted "
                                "actions, changes of agents' variables, agents joining and leaving, "
                                "broadcasts, parameter changes and interviews (see "
                                "docs/steering.md)")

    @field_validator("start_time")
    @classmethod
    def _naive_utc(cls, value: datetime) -> datetime:
        # Simulated times are naive and read as UTC; a zone (or a number, read as a Unix
        # time) would make them aware and impossible to compare with the others.
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def storage_url(self) -> str:
        """The database URL: ``storage.url`` or the default SQLite file for this run."""
        return self.storage.url or f"sqlite:///populace_runs/{self.name}.sqlite"

    def clock(self) -> Clock:
        """The run's simulated clock."""
        return Clock(self.start_time, self.step_duration)


def _check_sizes(config: ExperimentConfig, marks: Marks) -> list[Problem]:
    """Sizes that only overflow together: the calendar, the graph against the population."""
    problems: list[Problem] = []
    # The calendar ends in year 9999: a run must not step past it (OverflowError).
    try:
        config.start_time + config.steps * config.step_duration
    except OverflowError:
        problems.append(_located(("steps",), f"{config.steps} steps of {config.step_duration} "
                                 f"from {config.start_time} end after the year 9999; use fewer "
                                 "or shorter steps", marks))
    n = config.population.size
    network: Any = config.network  # one of the generator models
    kind = getattr(network, "generator", None)
    if n is None:
        return problems  # known when the population file is read
    if kind == "barabasi_albert" and network.m >= n:
        problems.append(_located(("network", "m"), f"barabasi_albert needs m below the number "
                                 f"of agents ({n}), got {network.m}", marks))
    if kind == "watts_strogatz" and network.k >= n:
        problems.append(_located(("network", "k"), f"watts_strogatz needs k below the number "
                                 f"of agents ({n}), got {network.k}", marks))
    degree = {"barabasi_albert": "m", "watts_strogatz": "k", "erdos_renyi": "mean_degree",
              "sbm": "mean_degree"}.get(str(kind))
    if degree == "mean_degree" and 0 < network.mean_degree < 1e-9:
        # so small a degree draws no edge in any population that fits in memory: ask for 0
        problems.append(_located(("network", "mean_degree"), f"{network.mean_degree:g} is too "
                                 "small to draw any edge: use 0 for no edges, or at least 1e-9",
                                 marks))
    if degree is not None:
        edges = float(getattr(network, degree)) * n * (1.0 + float(network.mutual))
        if edges > MAX_EDGES:
            problems.append(_located(("network", degree), f"the {kind} network would have about "
                                     f"{edges:.3g} follow edges, more than the limit of "
                                     f"{MAX_EDGES:.0e}; lower {degree} or the population", marks))
    return problems


def base_dir_of(source: Path | None) -> Path:
    """The folder an experiment read from ``source`` reads its relative paths from (the YAML
    file's folder; the working folder for an experiment given as data)."""
    return source.parent if source is not None else Path(".")


@dataclass
class Experiment:
    """A validated experiment, ready to run."""

    config: ExperimentConfig
    scenario_cls: type[Scenario]
    scenario_config: BaseModel
    source: Path | None = None
    yaml_text: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the config are read from (the YAML file's folder)."""
        return base_dir_of(self.source)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (what the run row stores)."""
        return self.config.model_dump(mode="json")


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read and validate an experiment YAML file.

    Args:
        path: the YAML file.
        overrides: values to set after reading, by dotted path: ``{"steps": 3}``,
            ``{"policy.params.backfire": 0}``, ``{"policy.parts.0.type": "llm"}`` (list
            indices as numbers); missing mappings on the way are created.

    Raises:
        ConfigError: with every problem found, each with line and column (an override that
            cannot be applied is named).
    """
    path = Path(path)
    data, marks = load_yaml(path, defer_duplicates=True)
    if overrides:
        data = apply_overrides(data, overrides, source=str(path))
        locs = [tuple(int(k) if k.isdigit() else k for k in str(key).split("."))
                for key in overrides]
        for loc in locs:
            marks.overridden(loc)
        try:
            exp = experiment_from_dict(data, marks=marks, source=path)
        except ConfigError as err:
            raise _name_overrides(err, dict(zip(map(format_path, locs), overrides, strict=True))
                                  ) from None
    else:
        exp = experiment_from_dict(data, marks=marks, source=path)
    exp.yaml_text = path.read_text(encoding="utf-8")
    return exp


def _name_overrides(err: ConfigError, paths: dict[str, Any]) -> ConfigError:
    """The same error, each problem about an overridden value saying which override set it."""
    problems = []
    for problem in err.problems:
        key = next((k for p, k in paths.items() if problem.line is None and (
            problem.path == p or problem.path.startswith((p + ".", p + "[")))), None)
        if key is not None:
            problem = dataclasses.replace(problem, message=f"{problem.message} (set by the "
                                          f"override {key!r})")
        problems.append(problem)
    return ConfigError(problems, err.source)


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], *,
                    source: str | None = None) -> dict[str, Any]:
    """A copy of ``data`` with each dotted-path override set (see :func:`load_experiment`).

    Raises:
        ConfigError: an override's path is empty, or goes through a value that is neither a
            mapping nor a list, or names a list index that does not exist.
    """
    out = copy.deepcopy(data)
    problems: list[Problem] = []
    for key, value in overrides.items():
        parts = str(key).split(".")
        if not all(parts):
            problems.append(Problem(str(key), f"override {key!r}: empty key in the dotted path"))
            continue
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(Problem(str(key), f"override {key!r}: {where} is not an index "
                                            f"of the list at this place (0 to {len(node) - 1})"))
                    break
                index: Any = int(part)
            elif isinstance(node, dict):
                index = part
                if not last and not isinstance(node.get(part), dict | list):
                    if part in node and node[part] is not None:
                        problems.append(Problem(str(key), f"override {key!r}: {where} is "
                                                f"{node[part]!r}, not a mapping"))
                        break
                    node[part] = {}
            else:  # pragma: no cover - every step above leaves a mapping or a list
                break
            if last:
                node[index] = value
            else:
                node = node[index]
    if problems:
        raise ConfigError(problems, source)
    return out


def experiment_from_dict(data: dict[str, Any], *, marks: Marks | None = None,
                         source: Path | None = None) -> Experiment:
    """Validate experiment data (as read from YAML) and resolve its scenario."""
    if marks is None:
        marks = Marks.of(data)
    shown = str(source) if source is not None else None
    problems: list[Problem] = list(marks.problems)
    config: ExperimentConfig | None = None
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        problems += problems_from_validation_error(err, marks, model=ExperimentConfig)

    # The scenario's own section and rule parameters are checked even when other sections
    # failed, so that the user sees every problem in one go.
    scenario_cls: type[Scenario] | None = None
    scenario_config: BaseModel | None = None
    section = data.get("scenario") if isinstance(data, dict) else None
    stype = section.get("type") if isinstance(section, dict) else None
    if isinstance(stype, str):
        try:
            scenario_cls = get_scenario(stype)
        except UnknownScenarioError as err:
            line_col = marks.locate(("scenario", "type"))
            # the registry's message already names the scenarios and the closest one
            problems.append(Problem(
                path="scenario.type", message=str(err),
                line=line_col[0] if line_col else None,
                column=line_col[1] if line_col else None,
            ))
    if scenario_cls is not None:
        params = {k: v for k, v in section.items() if k != "type"}
        try:
            scenario_config = scenario_cls.config_model.model_validate(params)
        except ValidationError as err:
            problems += problems_from_validation_error(
                err, marks, loc_prefix=("scenario",), model=scenario_cls.config_model)
        problems += _check_policy_params(data.get("policy"), scenario_cls, marks)

    base_dir = base_dir_of(source)
    if config is not None:
        problems += _check_sizes(config, marks)
        problems += _check_files(config, base_dir, marks)
        problems += _check_attribute_names(config, marks)
        if scenario_config is not None:
            problems += _check_scenario(config, scenario_config, base_dir, marks)
        if scenario_cls is not None and scenario_config is not None and config.events:
            problems += _check_events(config, scenario_cls, scenario_config, marks)

    # A field's own bound (pydantic's, or a check's above) says more than the generic 64-bit
    # one: that one is reported only where nothing else was.
    problems += _huge_integers(data, marks, skip={p.path for p in problems})
    if problems:
        raise ConfigError(problems, shown)
    assert config is not None and scenario_cls is not None and scenario_config is not None
    return Experiment(config, scenario_cls, scenario_config, source=source, raw=dict(data))


def _huge_integers(data: Any, marks: Marks, skip: set[str] | frozenset[str] = frozenset()
                   ) -> list[Problem]:
    """Integers beyond 64 bits anywhere in the document (numpy, the database and every count
    are 64-bit: such a number can only fail later, as an OverflowError), except at the dotted
    paths in ``skip`` (already reported)."""
    problems: list[Problem] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            stack.extend(((*loc, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool) and not (
                -(2**63) <= value < 2**63) and format_path(loc) not in skip:
            problems.append(_located(loc, f"{value} does not fit in 64 bits (-2**63 to 2**63-1)",
                                     marks))
    return problems


def _located(loc: tuple[Any, ...], message: str, marks: Marks) -> Problem:
    line_col = marks.locate(loc)
    return Problem(format_path(loc), message,
                   line_col[0] if line_col else None, line_col[1] if line_col else None)


def _check_files(config: ExperimentConfig, base_dir: Path, marks: Marks) -> list[Problem]:
    """Files and folders the experiment reads must exist (checked now, not at run time), found
    as the run finds them (:func:`~.paths.existing_path`: ``~`` expanded, relative paths read
    from the experiment file's folder)."""
    wanted: list[tuple[tuple[Any, ...], str | Path, Literal["file", "folder"]]] = []
    if config.population.file is not None:
        wanted.append((("population", "file", "path"), config.population.file.path, "file"))
    network: Any = config.network
    if getattr(network, "generator", None) == "edge_list":
        wanted.append((("network", "path"), network.path, "file"))
    # only the completions API renders prompts with a chat template; chat servers apply their own
    if config.llm is not None and config.llm.api == "completions" and config.llm.chat_template:
        wanted.append((("llm", "chat_template"), config.llm.chat_template, "file"))
    parts = config.policy.part_list()
    for i, part in enumerate(parts):
        folder = part.params.get("templates") if part.type == "llm" else None
        if isinstance(folder, str):
            loc = (("policy", "parts", i, "params", "templates") if config.policy.type == "mixed"
                   else ("policy", "params", "templates"))
            wanted.append((loc, folder, "folder"))
    problems = []
    for loc, name, kind in wanted:
        try:
            existing_path(name, base_dir, kind)
        except MissingPathError as err:
            problems.append(_located(loc, str(err), marks))
    if config.llm is not None and config.llm.backend == "transformers":
        problem = local_model_problem(config.llm.model, base_dir)
        if problem is not None:
            problems.append(_located(("llm", "model"), problem, marks))
    return problems


def _check_attribute_names(config: ExperimentConfig, marks: Marks) -> list[Problem]:
    """Sections that name a population attribute must name one that exists. Without a
    population file every attribute is declared in the file, so this is known now."""
    population = config.population
    if population.file is not None:
        return []
    known = set(population.attributes)
    used: list[tuple[tuple[Any, ...], str]] = [
        (("activation", "by"), config.activation.by or ""),
        (("activation", "scale_by"), config.activation.scale_by or ""),
    ]
    network: Any = config.network
    if getattr(network, "generator", None) == "sbm":
        used.append((("network", "attribute"), network.attribute))
    if getattr(network, "generator", None) == "edge_list" and network.ids != "index":
        used.append((("network", "ids"), network.ids))
    if config.policy.type == "mixed":
        for i, part in enumerate(config.policy.parts):
            used += [(("policy", "parts", i, "select", "where", name), name)
                     for name in part.select.where]
    listing = ", ".join(sorted(known)) or "none"
    return [_located(loc, f"no population attribute {name!r} (attributes: {listing})", marks)
            for loc, name in used if name and name not in known]


def _check_scenario(config: ExperimentConfig, scenario_config: BaseModel, base_dir: Path,
                    marks: Marks) -> list[Problem]:
    """The scenario's own checks of the whole experiment (sizes, attribute ranges, files).

    A scenario config may define ``check_experiment(config, base_dir)`` returning
    ``(location, message)`` pairs, the location relative to the document root.
    """
    check = getattr(scenario_config, "check_experiment", None)
    if not callable(check):
        return []
    return [_located(tuple(loc), message, marks) for loc, message in check(config, base_dir)]


def _check_events(config: ExperimentConfig, scenario_cls: type[Scenario],
                  scenario_config: BaseModel, marks: Marks) -> list[Problem]:
    """The events against the experiment: its steps, population and scenario."""
    population = config.population
    found = check_events(
        config.events, steps=config.steps, step_of=config.clock().first_step_at, n_agents=population.size,
        attributes=list(population.attributes) if population.file is None else None,
        scenario=scenario_cls, scenario_config=scenario_config)
    return [_located(("events", *loc), message, marks) for loc, message in found]


def _check_policy_params(policy: Any, scenario_cls: type[Scenario], marks: Marks) -> list[Problem]:
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        return []
    places: list[tuple[tuple[Any, ...], Any, Any]] = [
        (("policy", "params"), policy.get("params", {}), policy.get("type", "rule"))]
    parts = policy.get("parts")
    if isinstance(parts, list):
        for i, part in enumerate(parts):
            if isinstance(part, dict):
                places.append((("policy", "parts", i, "params"), part.get("params", {}),
                               part.get("type", "rule")))
    problems: list[Problem] = []
    for prefix, params, kind in places:
        if not isinstance(params, dict) or kind == "mixed":
            continue
        model = LLMParams if kind == "llm" else scenario_cls.rule_params_model
        try:
            model.model_validate(params)
        except ValidationError as err:
            problems += problems_from_validation_error(err, marks, loc_prefix=prefix, model=model)
    return problems


__all__ = [
    "ConfigError",
    "Experiment",
    "ExperimentConfig",
    "MetricsConfig",
    "RecordingConfig",
    "ScenarioSection",
    "StorageConfig",
    "apply_overrides",
    "experiment_from_dict",
    "load_experiment",
]
