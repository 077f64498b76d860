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

import difflib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

from .activation import ActivationConfig
from .clock import Clock, parse_duration
from .config_errors import ConfigError, Marks, Problem, load_yaml, problems_from_validation_error
from .llm.config import LLMConfig, LLMParams
from .network import NetworkConfig
from .policy import PolicyConfig
from .population import PopulationConfig
from .registry import UnknownScenarioError, available_scenarios, get_scenario
from .runtime import RuntimeConfig
from .scenario import Scenario

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda d: f"{int(d.total_seconds())}s", return_type=str),
]


class ScenarioSection(BaseModel):
    """``scenario:``: ``type`` picks the scenario; its other keys are the scenario's own."""

    model_config = ConfigDict(extra="allow")

    type: str

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

    url: str | None = None
    background_writes: bool = Field(
        True, description="write each step in a background thread while the next one is "
        "computed (at most one step in flight); false writes before computing on")


class RecordingConfig(BaseModel):
    """``recording:``: what is written to the database each step."""

    model_config = ConfigDict(extra="forbid")

    actions: bool = Field(True, description="write the trace of every action (actions table)")
    do_nothing: bool = Field(False, description="include do_nothing actions in the trace")
    agent_state_every: int = Field(
        0, ge=0, description="snapshot agents' state variables every N steps (0: never)")


class MetricsConfig(BaseModel):
    """``metrics:``: how often per-step metrics are computed."""

    model_config = ConfigDict(extra="forbid")

    every: int = Field(1, ge=1, description="compute step metrics every N steps (and the last)")
    final: bool = Field(True, description="run the scenario's end-of-run analysis (e.g. cascades)")


class ExperimentConfig(BaseModel):
    """An experiment: what to simulate, for how long, and where to record it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=100,
                      description="run name (letters, digits, _ . -); names the database file")
    seed: int = Field(0, description="fixes population, graph, activation and every random choice")
    steps: int = Field(gt=0, description="number of steps to simulate")
    step_duration: Duration = Field(timedelta(hours=1),
                                    description="simulated time per step, e.g. 30m, 1h, 1d")
    start_time: datetime = Field(datetime(2025, 1, 1), description="simulated time of step 0")
    scenario: ScenarioSection
    population: PopulationConfig
    network: NetworkConfig = Field(default_factory=lambda: {"generator": "none"},
                                   validate_default=True)
    activation: ActivationConfig = Field(default_factory=ActivationConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    llm: LLMConfig | None = Field(None, description="language-model backend for `type: llm` "
                                  "policy parts")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    checkpoint_every: int = Field(10, ge=1, description="save resume state every N steps")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig,
                                   description="where agents observe and decide: local or ray")

    def storage_url(self) -> str:
        """The database URL: ``storage.url`` or the default SQLite file for this run."""
        return self.storage.url or f"sqlite:///populace_runs/{self.name}.sqlite"

    def clock(self) -> Clock:
        """The run's simulated clock."""
        return Clock(self.start_time, self.step_duration)


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
        return self.source.parent if self.source is not None else Path(".")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (what the run row stores)."""
        return self.config.model_dump(mode="json")


def load_experiment(path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read and validate an experiment YAML file.

    Args:
        path: the YAML file.
        overrides: top-level keys to replace after reading (e.g. ``{"steps": 3}`` from the CLI).

    Raises:
        ConfigError: with every problem found, each with line and column.
    """
    path = Path(path)
    data, marks = load_yaml(path, defer_duplicates=True)
    if overrides:
        data = {**data, **overrides}
    exp = experiment_from_dict(data, marks=marks, source=path)
    exp.yaml_text = path.read_text(encoding="utf-8")
    return exp


def experiment_from_dict(data: dict[str, Any], *, marks: Marks | None = None,
                         source: Path | None = None) -> Experiment:
    """Validate experiment data (as read from YAML) and resolve its scenario."""
    if marks is None:
        marks = Marks.empty()
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
            close = difflib.get_close_matches(stype, available_scenarios(), n=1)
            problems.append(Problem(
                path="scenario.type", message=str(err),
                line=line_col[0] if line_col else None,
                column=line_col[1] if line_col else None,
                expected="one of: " + ", ".join(available_scenarios()),
                suggestion=close[0] if close else None,
            ))
    if scenario_cls is not None:
        params = {k: v for k, v in section.items() if k != "type"}
        try:
            scenario_config = scenario_cls.config_model.model_validate(params)
        except ValidationError as err:
            problems += problems_from_validation_error(
                err, marks, loc_prefix=("scenario",), model=scenario_cls.config_model)
        problems += _check_policy_params(data.get("policy"), scenario_cls, marks)

    if problems:
        raise ConfigError(problems, shown)
    assert config is not None and scenario_cls is not None and scenario_config is not None
    return Experiment(config, scenario_cls, scenario_config, source=source, raw=dict(data))


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
    "experiment_from_dict",
    "load_experiment",
]
