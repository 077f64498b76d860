"""Tests for located config errors: YAML loading with marks and pydantic error conversion."""

from __future__ import annotations

import enum
import pickle
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from populace.simulator.config_errors import (
    ConfigError,
    Marks,
    Problem,
    check,
    format_path,
    load_yaml,
    load_yaml_text,
    problems_from_validation_error,
    validate,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Normal(Strict):
    dist: Literal["normal"]
    mean: float = 0.0
    sd: float = Field(gt=0)


class Uniform(Strict):
    dist: Literal["uniform"]
    low: float
    high: float


Distribution = Annotated[Normal | Uniform, Field(discriminator="dist")]


class Population(Strict):
    size: int = Field(gt=0)
    attributes: dict[str, Distribution] = {}


class Feed(Strict):
    algorithm: Literal["random", "followees", "hot", "interest", "mix"] = "random"


class Scenario(Strict):
    feed: Feed = Feed()


class Agent(Strict):
    name: str
    weight: int | list[int] = 1


class Experiment(Strict):
    steps: int = Field(gt=0)
    population: Population
    agents: list[Agent] = []
    scenario: dict = {}


def _errors(model: type[BaseModel], text: str, **kwargs: object) -> ConfigError:
    data, marks = load_yaml_text(text, "exp.yaml")
    with pytest.raises(ConfigError) as info:
        validate(model, data, marks, source="exp.yaml", **kwargs)  # type: ignore[arg-type]
    return info.value


def _by_path(err: ConfigError) -> dict[str, Problem]:
    return {p.path: p for p in err.problems}


MANY = """\
stpes: 10
population:
  size: 0
  attributes:
    age: {dist: normal, mean: 40, sdd: 3}
    income:
      dist: norml
    height:
      dist: uniform
      low: ten
      high: 2
agents:
  - name: a
    weight: heavy
  - nme: b
"""


def test_every_problem_reported_with_position_path_and_suggestion() -> None:
    err = _errors(Experiment, MANY)
    problems = _by_path(err)
    assert len(err.problems) == 10
    assert set(problems) == {
        "steps",
        "stpes",
        "population.size",
        "population.attributes.age.sd",
        "population.attributes.age.sdd",
        "population.attributes.income.dist",
        "population.attributes.height.low",
        "agents[0].weight",
        "agents[1].name",
        "agents[1].nme",
    }
    # Unknown key at top level: key position and suggestion.
    stpes = problems["stpes"]
    assert (stpes.line, stpes.column) == (1, 1)
    assert stpes.message == "Extra inputs are not permitted"
    assert stpes.suggestion == "steps"
    # Missing top-level field points at the root mapping.
    assert problems["steps"].message == "Field required"
    # Constraint: value position.
    size = problems["population.size"]
    assert (size.line, size.column) == (3, 9)
    assert size.message == "Input should be greater than 0"
    assert size.value == "0"
    # Inside a discriminated-union member, no tag noise in the path.
    sdd = problems["population.attributes.age.sdd"]
    assert (sdd.line, sdd.column) == (5, 35)
    assert sdd.suggestion == "sd"
    missing_sd = problems["population.attributes.age.sd"]
    assert missing_sd.message == "Field required"
    assert (missing_sd.line, missing_sd.column) == (5, 5)  # the 'age' key
    # Invalid discriminator tag: points at the tag value.
    tag = problems["population.attributes.income.dist"]
    assert (tag.line, tag.column) == (7, 13)
    assert tag.message.endswith("expected tags: 'normal', 'uniform'")
    assert tag.suggestion == "normal"
    # Type error inside the other union member.
    low = problems["population.attributes.height.low"]
    assert (low.line, low.column) == (10, 12)
    assert low.message == "Input should be a valid number, unable to parse string as a number"
    assert low.value == "'ten'"
    # Plain union branches are merged into one problem.
    weight = problems["agents[0].weight"]
    assert weight.message == ("Input should be a valid integer, unable to parse string as an "
                              "integer; or Input should be a valid list")
    assert weight.value == "'heavy'"
    assert (weight.line, weight.column) == (14, 13)
    # Unknown key inside a list item.
    nme = problems["agents[1].nme"]
    assert (nme.line, nme.column) == (15, 5)
    assert nme.suggestion == "name"


def test_literal_suggestion_and_loc_prefix() -> None:
    text = "steps: 3\nscenario:\n  feed:\n    algorithm: folowees\n    extra: 1\n"
    data, marks = load_yaml_text(text, "exp.yaml")
    with pytest.raises(ConfigError) as info:
        validate(Scenario, data["scenario"], marks, source="exp.yaml", loc_prefix=("scenario",))
    algo, extra = info.value.problems
    assert algo.path == "scenario.feed.algorithm"
    assert (algo.line, algo.column) == (4, 16)
    assert algo.message == "Input should be 'random', 'followees', 'hot', 'interest' or 'mix'"
    assert algo.value == "'folowees'"
    assert algo.suggestion == "followees"
    assert extra.path == "scenario.feed.extra"
    assert (extra.line, extra.column) == (5, 5)
    assert extra.suggestion is None
    assert extra.expected == "one of: algorithm"


def test_enum_and_no_model_fallback() -> None:
    class Color(enum.Enum):
        RED = "red"
        GREEN = "green"

    class Paint(Strict):
        color: Color
        finish: Literal["matte", "gloss"]

    data, marks = load_yaml_text("color: gren\nfinish: glos\n")
    with pytest.raises(ValidationError) as info:
        Paint.model_validate(data)
    # Without the model, choices are parsed from pydantic's message.
    color, finish = problems_from_validation_error(info.value, marks)
    assert (color.path, color.line, color.column) == ("color", 1, 8)
    assert color.message == "Input should be 'red' or 'green'"
    assert color.suggestion == "green"
    assert finish.suggestion == "gloss"


def test_str_format_and_sort_order() -> None:
    text = "population:\n  size: -1\nstpes: 10\nsteps: 1\n"
    err = _errors(Experiment, text)
    assert str(err).splitlines() == [
        "exp.yaml: 2 problems found",
        "exp.yaml:2:9: population.size: Input should be greater than 0 (got -1)",
        "exp.yaml:3:1: stpes: Extra inputs are not permitted; did you mean 'steps'?",
    ]
    # Sorted by position regardless of construction order.
    unsorted = ConfigError(
        [Problem("b", "late", 9, 1), Problem("", "nowhere"), Problem("a", "early", 2, 5)],
        "f.yaml",
    )
    assert [p.message for p in unsorted.problems] == ["early", "late", "nowhere"]
    assert str(unsorted).splitlines()[0] == "f.yaml: 3 problems found"
    assert str(unsorted).splitlines()[-1] == "f.yaml: nowhere"
    one = ConfigError([Problem("x", "bad", 1, 2, expected="one of: a, b", suggestion="a",
                               value="'c'")])
    assert str(one) == ("1 problem found\n1:2: x: bad (got 'c') (expected one of: a, b); "
                        "did you mean 'a'?")
    assert str(pickle.loads(pickle.dumps(one))) == str(one)


def test_model_validator_error_points_at_mapping_key() -> None:
    class Window(Strict):
        start: int
        end: int

        @model_validator(mode="after")
        def _ordered(self) -> Window:
            if self.end < self.start:
                raise ValueError("end must not be before start")
            return self

    class Run(Strict):
        window: Window

    err = _errors(Run, "window:\n  start: 5\n  end: 1\n")
    (problem,) = err.problems
    assert (problem.path, problem.line, problem.column) == ("window", 1, 1)
    assert problem.message == "end must not be before start"  # without "Value error, "


def test_custom_error_message_is_kept_and_its_value_not_repeated() -> None:
    class Span(Strict):
        days: int

        @field_validator("days")
        @classmethod
        def _positive(cls, days: int) -> int:
            if days < 1:
                raise PydanticCustomError("span_days", "a span lasts a day or more, not {days}",
                                          {"days": days})
            return days

    (problem,) = _errors(Span, "days: 0\n").problems
    assert (problem.path, problem.line, problem.column) == ("days", 1, 7)
    assert problem.message == "a span lasts a day or more, not 0"
    assert problem.value is None  # the validator's message names it already
    (problem,) = _errors(Span, "days: many\n").problems  # pydantic's own: the value is shown
    assert problem.render() == ("1:7: days: Input should be a valid integer, unable to parse "
                                "string as an integer (got 'many')")


def test_yaml_syntax_error_position() -> None:
    with pytest.raises(ConfigError) as info:
        load_yaml_text("steps: 1\npopulation:\n  size: 3\n   bad: [1, 2\n", "exp.yaml")
    (problem,) = info.value.problems
    assert problem.path == ""
    assert problem.message.startswith("invalid YAML: ")
    assert (problem.line, problem.column) == (4, 7)
    assert str(info.value).splitlines()[1].startswith("exp.yaml:4:7: invalid YAML: ")


def test_duplicate_keys() -> None:
    text = "steps: 1\npopulation:\n  size: 1\n  size: 2\nsteps: 3\n"
    with pytest.raises(ConfigError) as info:
        load_yaml_text(text, "exp.yaml")
    dup_size, dup_steps = info.value.problems
    assert (dup_size.path, dup_size.line, dup_size.column) == ("population.size", 4, 3)
    assert dup_size.message == "duplicate key 'size' (first defined at line 3)"
    assert (dup_steps.path, dup_steps.line) == ("steps", 5)
    # Deferred: kept in marks.problems so they can be reported with validation problems.
    data, marks = load_yaml_text(text, defer_duplicates=True)
    assert data == {"steps": 3, "population": {"size": 2}}
    assert [p.path for p in marks.problems] == ["population.size", "steps"]


def test_merge_keys_are_not_duplicates() -> None:
    text = "base: &b {size: 1, attributes: {}}\npopulation:\n  <<: *b\n  size: 2\n"
    data, marks = load_yaml_text(text)
    assert data["population"] == {"size": 2, "attributes": {}}
    assert marks.problems == []


def test_top_level_must_be_mapping_and_empty_file() -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="empty"):
        load_yaml_text("# nothing\n")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_yaml(missing)
    (problem,) = info.value.problems
    assert problem.message == f"file not found: {missing.absolute()}"
    assert str(info.value).startswith(f"{missing}: 1 problem found")


def test_load_yaml_file_and_scalar_types(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("steps: 10\nrate: 0.5\non: yes\nseed: ~\nday: 2024-01-02\n", "utf-8")
    data, marks = load_yaml(path)
    assert data["steps"] == 10 and data["rate"] == 0.5 and data["seed"] is None
    assert data[True] is True  # YAML 1.1 booleans, as SafeLoader
    assert str(data["day"]) == "2024-01-02"
    assert marks.locate_value(("rate",)) == (2, 7)


def test_marks_locate_rules() -> None:
    _, marks = load_yaml_text("a:\n  b:\n    - x: 1\n    -   y: 2\n")
    assert marks.locate_key(("a", "b")) == (2, 3)
    assert marks.locate_value(("a", "b")) == (3, 5)
    assert marks.locate_value(("a", "b", 1)) == (4, 9)  # list items have no key
    assert marks.locate_key(("a", "b", 1, "y")) == (4, 9)
    assert marks.locate_value(("a", "b", 1, "y")) == (4, 12)
    # Missing: closest existing parent (its key if it has one).
    assert marks.locate(("a", "b", 1, "z")) == (4, 9)
    assert marks.locate(("a", "q", "r")) == (1, 1)
    assert marks.exists(("a", "b", 0, "x"))
    assert not marks.exists(("a", "b", 2))
    assert Marks.empty().locate(("a",)) is None


def test_check_without_marks_and_format_path() -> None:
    instance, problems = check(Feed, {"algorithm": "hott"}, Marks.empty())
    assert instance is None
    (problem,) = problems
    assert (problem.path, problem.line, problem.suggestion) == ("algorithm", None, "hot")
    assert format_path(("agents", 0, "name")) == "agents[0].name"
    assert format_path((1, "a")) == "[1].a"


# --------------------------------------------------------------------------- hostile input


def _experiment_problems(text: str, tmp_path: Path, **overrides: object) -> list[str]:
    """Problems (rendered, without the file name) of an experiment file, [] when valid."""
    from populace.simulator.config import load_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_experiment(path, overrides=dict(overrides) or None)
    except ConfigError as err:
        return [p.render() for p in err.problems]
    return []


SMALL_EXP = "name: t\nsteps: 2\nscenario: {type: social}\npopulation: {size: 10}\n"


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import time

    bomb = "lols:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"  {c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="too large once its aliases"):
        load_yaml_text(SMALL_EXP + bomb)
    assert time.perf_counter() - start < 5  # 10**9 values: refused from the composed graph


def test_small_aliases_still_work() -> None:
    data, _ = load_yaml_text("a: &x {p: 1}\nb: *x\nc: [*x, *x]\n")
    assert data["b"] == {"p": 1} and data["c"] == [{"p": 1}, {"p": 1}]


def test_mixed_policy_params_are_refused(tmp_path: Path) -> None:
    text = SMALL_EXP + "policy: {type: mixed, parts: [{type: rule}], params: {junk: [1, 2]}}\n"
    (problem,) = _experiment_problems(text, tmp_path)
    assert "mixed policy has no `params`" in problem


def test_deep_nesting_and_control_characters_are_located() -> None:
    with pytest.raises(ConfigError, match="nested more than 64 levels"):
        load_yaml_text("a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match=r"2:6: invalid YAML: the character #x07 is not allowed"):
        load_yaml_text("a: 1\nb: 'x\x07'\n", "f.yaml")
    with pytest.raises(ConfigError, match="cannot read '2025-13-01': month must be in 1..12"):
        load_yaml_text("start: 2025-13-01\n")


@pytest.mark.parametrize("change, message", [
    ("seed: 100000000000000000000",
     "seed: Input should be less than or equal to 9223372036854775807"),
    ("seed: -1", "seed: Input should be greater than or equal to 0"),
    ("steps: 100000000000", "steps: Input should be less than or equal to 10000000"),
    ("step_duration: 1.0e+300", "step_duration: 1e+300 is too long for a step"),
    ("step_duration: 300d\nsteps: 100000",
     "steps: 100000 steps of 300 days, 0:00:00 from 2025-01-01 00:00:00 end after the year 9999"),
    ("population: {size: 1000000000000}", "population.size: Input should be less than or equal"),
    ("network: {generator: barabasi_albert, m: 10}",
     "network.m: barabasi_albert needs m below the number of agents (10), got 10"),
    ("network: {generator: watts_strogatz, k: 20}", "network.k: watts_strogatz needs k below"),
    ("population: {size: 100000000}\nnetwork: {generator: erdos_renyi, mean_degree: 1.0e+6}",
     "network.mean_degree: the erdos_renyi network would have about 1e+14 follow edges"),
    ("runtime: {connect_timeout_s: .inf}", "runtime.connect_timeout_s: Input should be less than"),
    ("llm: {timeout_s: .inf}", "llm.timeout_s: Input should be less than or equal to 86400"),
    ("llm: {max_attempts: 100000000}", "llm.max_attempts: Input should be less than or equal to 100"),
    ("checkpoint_every: 100000000000", "checkpoint_every: Input should be less than or equal to"),
    ("step_duration: 1.0e-300", "step_duration: a step must last at least a microsecond"),
    ("network: {generator: erdos_renyi, mean_degree: 1.0e-300}", "too small to draw any edge"),
    ("scenario: {type: social, feed: {window: 100000000000000000000}}",
     "scenario.feed.window: Input should be less than or equal to 10000000"),
    ("population: {size: 10, attributes: {c: {dist: categorical, "
     "values: [1, 100000000000000000000]}}}",
     "population.attributes.c.values[1]: 100000000000000000000 does not fit in 64 bits"),
    ("scenario: {type: economy, initial_wage: 1.0e+300}", "initial_wage: Input should be less than"),
    ("population: {size: 10, attributes: {w: {dist: lognormal, mean: 800, sigma: 1}}}",
     "draws would overflow"),
    ("population: {size: 10, attributes: {w: {dist: uniform, low: -1.0e+308, high: 1.0e+308}}}",
     "too wide for 64-bit floats"),
    ("scenario: {type: social, feed: {mix: {followees: 1.0e+308, random: 0.1}}}",
     "scenario.feed: feed.mix weights are relative: use finite numbers up to 1e12"),
    ("population: {size: 10, attributes: {c: {dist: categorical, "
     "values: {a: 1.0e+308, b: 1.0e+308}}}}", "the weights add up to more than a float holds"),
    ("scenario: {type: market, budget: [1, 1.0e+300]}", "budget must be at most 1e6"),
    ("scenario: {type: market}\npolicy: {params: {max_markup: 1.0e+300}}",
     "policy.params.max_markup: Input should be less than or equal to 100"),
])
def test_huge_sizes_are_refused_at_validation(tmp_path: Path, change: str, message: str) -> None:
    keys = {line.split(":")[0] for line in change.splitlines()}
    base = "".join(line + "\n" for line in SMALL_EXP.splitlines()
                   if line.split(":")[0] not in keys)
    problems = _experiment_problems(base + change + "\n", tmp_path)
    assert any(message in p for p in problems), problems


def test_market_money_must_fit_int64_cents(tmp_path: Path) -> None:
    text = ("name: t\nsteps: 1000\nscenario: {type: market, wallet: 1.0e+9, income: 1.0e+6}\n"
            "population: {size: 100000000}\n")
    (problem,) = _experiment_problems(text, tmp_path)
    assert "scenario.wallet" in problem and "cents" in problem
    huge = "name: t\nsteps: 1\nscenario: {type: market, wallet: 1.0e+300}\npopulation: {size: 50}\n"
    assert "Input should be less than or equal to" in _experiment_problems(huge, tmp_path)[0]
    few = "name: t\nsteps: 1\nscenario: {type: market, businesses: 50}\npopulation: {size: 50}\n"
    assert "leave no customer" in _experiment_problems(few, tmp_path)[0]


def test_files_the_run_reads_must_exist(tmp_path: Path) -> None:
    text = ("name: t\nsteps: 1\nscenario: {type: market, menu_file: menus.csv}\n"
            "population: {file: people.csv}\n"
            "network: {generator: edge_list, path: edges.csv}\n")
    problems = _experiment_problems(text, tmp_path)
    assert len(problems) == 3, problems
    assert all("no such file" in p for p in problems)
    assert any(p.startswith("4:") and "population.file.path" in p for p in problems)
    (tmp_path / "people.csv").write_text("age\n3\n")
    (tmp_path / "edges.csv").write_text("source,target\n")
    (tmp_path / "menus.csv").write_text("business_id\n")
    assert _experiment_problems(text, tmp_path) == []


def test_conditional_attribute_missing_a_case_is_refused(tmp_path: Path) -> None:
    text = SMALL_EXP.replace("{size: 10}", """
  size: 10
  attributes:
    job: {dist: categorical, values: [student, pilot]}
    income: {dist: conditional, by: job, cases: {student: {dist: constant, value: 1}}}
""")
    (problem,) = _experiment_problems(text, tmp_path)
    assert "no case for 'pilot' of 'job'" in problem


@pytest.mark.parametrize("spec, refused", [
    ("{dist: uniform, low: -3, high: 3}", True),
    ("{dist: integer, low: 0, high: 5}", True),
    ("{dist: categorical, values: [left, right]}", True),
    ("{dist: uniform, low: -1, high: 1}", False),
    ("{dist: beta, a: 2, b: 2, low: -1, high: 1}", False),
    ("{dist: normal, mean: 0, sd: 0.3}", False),  # unbounded tails: warned at run time
])
def test_opinion_attribute_range(tmp_path: Path, spec: str, refused: bool) -> None:
    text = SMALL_EXP.replace("{size: 10}", "{size: 10, attributes: {opinion: " + spec + "}}")
    problems = _experiment_problems(text, tmp_path)
    assert bool(problems) == refused, problems
    if refused:
        assert "population.attributes.opinion" in problems[0]


def test_dotted_overrides(tmp_path: Path) -> None:
    from populace.simulator.config import load_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(SMALL_EXP + "policy: {type: mixed, parts: [{type: rule}]}\n")
    exp = load_experiment(path, overrides={"policy.parts.0.params.backfire": 0.3,
                                           "scenario.feed.size": 5, "steps": 4})
    assert exp.config.policy.parts[0].params == {"backfire": 0.3}
    assert exp.to_dict()["steps"] == 4
    problems = _experiment_problems(SMALL_EXP, tmp_path, **{"policy.params.backfire": 5})
    assert problems == ["policy.params.backfire: Input should be less than or equal to 1 (set by "
                        "the override 'policy.params.backfire') (got 5)"]
    problems = _experiment_problems(SMALL_EXP, tmp_path, **{"name.x": 1, "a..b": 2})
    assert problems == ["name.x: override 'name.x': name is 't', not a mapping",
                        "a..b: override 'a..b': empty key in the dotted path"]


def test_infinite_parameters_and_zoned_start_times(tmp_path: Path) -> None:
    inf = SMALL_EXP.replace("{size: 10}", "{size: 10, attributes: {x: {dist: uniform, "
                            "low: -.inf, high: 1}}}")
    (problem,) = _experiment_problems(inf, tmp_path)
    assert "population.attributes.x.low: Input should be a finite number (got -.inf)" in problem
    from populace.simulator.config import experiment_from_dict

    data = {"name": "t", "steps": 1, "scenario": {"type": "social"}, "population": {"size": 5}}
    for written, naive in ((-5, "1969-12-31 23:59:55"),
                           ("2025-01-01T02:00:00+02:00", "2025-01-01 00:00:00")):
        start = experiment_from_dict({**data, "start_time": written}).config.start_time
        assert start.tzinfo is None and str(start) == naive  # read as UTC, like naive times


def test_sections_must_name_existing_attributes(tmp_path: Path) -> None:
    text = SMALL_EXP.replace("{size: 10}", "{size: 10, attributes: {group: "
                             "{dist: categorical, values: [a, b]}}}") + (
        "activation: {scale_by: activty}\n"
        "network: {generator: sbm, attribute: groups}\n"
        "policy: {type: mixed, parts: [{select: {where: {grp: a}}}]}\n")
    problems = _experiment_problems(text, tmp_path)
    assert [p.split(": ")[1] for p in problems] == [
        "activation.scale_by", "network.attribute", "policy.parts[0].select.where.grp"]
    assert all("no population attribute" in p and "(attributes: group)" in p for p in problems)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused_without_reading_it_all() -> None:
    with pytest.raises(ConfigError, match="file is larger than 20 MB"):
        load_yaml("/dev/zero")


def test_home_relative_paths_validate_as_the_run_reads_them(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from populace.simulator.config import load_experiment
    from populace.simulator.network.edge_list import load_edge_list
    from populace.simulator.population.files import load_population_file

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    social = ("name: t\nsteps: 1\nscenario: {type: social}\npopulation: {file: ~/people.csv}\n"
              "network: {generator: edge_list, path: ~/edges.csv}\n")
    market = "name: t\nsteps: 1\nscenario: {type: market, menu_file: ~/menus.csv}\n" \
             "population: {size: 50}\n"
    problems = _experiment_problems(social, tmp_path) + _experiment_problems(market, tmp_path)
    assert len(problems) == 3 and all(f"no such file: {home}/" in p for p in problems), problems
    (home / "people.csv").write_text("age\n3\n4\n")
    (home / "edges.csv").write_text("source,target\n0,1\n")
    (home / "menus.csv").write_text("business_id\n")
    assert _experiment_problems(social, tmp_path) == []
    assert _experiment_problems(market, tmp_path) == []
    # and the run-time loaders read the same files
    config = load_experiment(_write(tmp_path, social)).config
    assert config.population.file is not None
    assert len(load_population_file(config.population.file, tmp_path).frame) == 2
    src, dst = load_edge_list(config.network, 2, pd.DataFrame(index=range(2)),  # type: ignore[arg-type]
                              tmp_path)
    assert list(src) == [0] and list(dst) == [1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_chat_template_is_checked_only_where_it_is_read(tmp_path: Path) -> None:
    llm = "llm: {endpoints: [{base_url: 'http://127.0.0.1:9/v1'}], chat_template: missing.j2, "
    chat = SMALL_EXP + llm + "api: chat}\n"
    assert _experiment_problems(chat, tmp_path) == []  # chat servers apply their own template
    completions = SMALL_EXP + llm + "api: completions}\n"
    (problem,) = _experiment_problems(completions, tmp_path)
    assert "llm.chat_template: no such file" in problem and "missing.j2" in problem


def test_the_transformers_backend_s_model_must_be_on_this_machine(tmp_path: Path) -> None:
    """A local folder with config.json, or an org/name in the Hugging Face cache: nothing is
    downloaded, so `populace validate` says so before a run starts."""
    def problems(model: str) -> list[str]:
        return _experiment_problems(
            SMALL_EXP + f"llm: {{backend: transformers, model: '{model}'}}\n", tmp_path)

    (problem,) = problems("./models/none")
    assert "llm.model: no model folder at" in problem and "nothing is downloaded" in problem
    (tmp_path / "empty").mkdir()
    (problem,) = problems("empty")
    assert "holds no config.json" in problem
    (tmp_path / "empty" / "config.json").write_text("{}", encoding="utf-8")
    assert problems("empty") == []  # relative to the experiment's folder
    (tmp_path / "weights.bin").write_text("x", encoding="utf-8")
    (problem,) = problems("weights.bin")
    assert "is a file, not a model folder" in problem
    found = problems("nobody-here/no-such-model-0")
    if found:  # with huggingface_hub installed, the cache is looked at
        assert "not in this machine's Hugging Face cache" in found[0]


def test_the_64_bit_check_skips_paths_already_reported() -> None:
    from populace.simulator.config import _huge_integers

    data = {"steps": 10**20, "seed": 10**20, "scenario": {"feed": {"window": [1, 2**64]}}}
    found = _huge_integers(data, Marks.empty(), skip={"steps", "scenario.feed.window[1]"})
    assert [p.path for p in found] == ["seed"]


@pytest.mark.parametrize("change", [
    "scenario: {type: social, feed: {window: 100000000000000000000}}",
    "population: {size: 100000000000000000000}",
    "steps: 100000000000000000000",
])
def test_a_huge_integer_with_its_own_bound_is_reported_once(tmp_path: Path, change: str) -> None:
    keys = {line.split(":")[0] for line in change.splitlines()}
    base = "".join(line + "\n" for line in SMALL_EXP.splitlines()
                   if line.split(":")[0] not in keys)
    (problem,) = _experiment_problems(base + change + "\n", tmp_path)
    assert "64 bits" not in problem and "Input should be less than or equal to" in problem


def test_runtime_overrides_out_of_range_are_a_config_error() -> None:
    from populace.simulator.runtime import RuntimeConfig

    with pytest.raises(ConfigError) as info:
        RuntimeConfig().updated({"shards": 0}, source="command line")
    assert str(info.value).splitlines()[1].startswith(
        "command line: runtime.shards: Input should be greater than or equal to 1 (got 0)")
    with pytest.raises(ConfigError, match=r"runtime\.sharts: Extra inputs are not permitted; "
                       r"did you mean 'shards'\?"):
        RuntimeConfig().updated({"sharts": 2})
    assert RuntimeConfig(type="ray").updated({"shards": 3}).shards == 3
