"""The beauty contest's configuration: its ``scenario:`` section and its rule policy's params.

Core objects:
    BeautyConfig: the ``scenario:`` keys (the ratio p, the rounds of history agents see, where
        each agent's reasoning level comes from, guess rounding, the focal points measured).
    BeautyJoin: the ``args`` of a join event (the newcomers' reasoning level).
    LevelKParams: ``policy.params`` of the level-k rule policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GUESS_MIN = 0.0
GUESS_MAX = 100.0
MAX_LEVEL = 50  # p**50 * 100 is below 1e-6 for p = 2/3: deeper levels guess the same
LEVEL0_MEAN = (GUESS_MIN + GUESS_MAX) / 2


class BeautyConfig(BaseModel):
    """The "guess p of the average" game (Keynesian beauty contest): every step is a round in
    which each active agent guesses a number in [0, 100]; the target is p times the round's
    mean guess and the guesses closest to it win."""

    model_config = ConfigDict(extra="forbid")

    p: float = Field(2 / 3, gt=0, le=10,
                     description="The target is p times the mean guess of the round (2/3 in "
                                 "the classic game; the Nash equilibrium is 0 for p < 1).")
    history: int = Field(3, ge=1, le=100,
                         description="Rounds of past results (target, mean, winning guess) "
                                     "each agent sees; the newest round with guesses first.")
    level_attribute: str | None = Field(
        "level", min_length=1,
        description="Population attribute holding each agent's reasoning level k (an "
                    "integer >= 0, e.g. drawn with dist: categorical); null: every rule agent "
                    "takes policy.params.level. Hidden from language-model agents' profiles.")
    decimals: int | None = Field(
        None, ge=0, le=6,
        description="Round every guess to this many decimals before scoring (0: whole "
                    "numbers, as in many lab games); unset: guesses are real numbers.")
    focal_points: list[float] | None = Field(
        None, max_length=50,
        description="Guesses whose shares are measured (metrics focal.<x>); unset: 0, "
                    "50p^2, 50p, 50, 100p and 100 (with p = 2/3: 0, 22.2, 33.3, 50, 66.7, "
                    "100).")
    focal_width: float = Field(1.0, ge=0, le=50,
                               description="A guess counts at a focal point within ± this.")

    def focal(self) -> list[float]:
        """The focal points measured: ``focal_points`` or the level-k defaults for ``p``."""
        if self.focal_points is not None:
            return list(self.focal_points)
        p = self.p
        points = {GUESS_MIN, LEVEL0_MEAN * p * p, LEVEL0_MEAN * p, LEVEL0_MEAN,
                  GUESS_MAX * p, GUESS_MAX}
        return sorted(x for x in points if GUESS_MIN <= x <= GUESS_MAX)

    def check_experiment(self, experiment: Any, base_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
        """Problems that need the rest of the experiment: a rule policy without a level (no
        ``policy.params.level`` and no level attribute), or a level attribute drawn with
        values that are not whole numbers in [0, MAX_LEVEL]."""
        problems: list[tuple[tuple[Any, ...], str]] = []
        population = experiment.population
        declared = self.level_attribute is not None and (
            self.level_attribute in population.attributes or population.file is not None)
        for location, params in _rule_params(experiment.policy):
            if params.get("level") is None and not declared:
                reason = ("scenario.level_attribute is null" if self.level_attribute is None
                          else f"the population has no attribute {self.level_attribute!r}")
                problems.append((location, f"level-k agents need a level: {reason}; declare "
                                           "the attribute (e.g. level: {dist: categorical, "
                                           "values: {0: 0.3, 1: 0.4, 2: 0.3}}) or set "
                                           "params.level"))
        if self.level_attribute is not None and self.level_attribute in population.attributes:
            spec = population.attributes[self.level_attribute]
            bad = _bad_level_values(spec)
            if bad:
                problems.append((("population", "attributes", self.level_attribute),
                                 f"levels must be whole numbers from 0 to {MAX_LEVEL}; "
                                 f"got {', '.join(map(repr, bad[:5]))}"))
        return problems


class LevelKParams(BaseModel):
    """The level-k rule: a level-0 agent guesses at random; a level-k agent best-responds to a
    population of level k-1 and guesses ``p**k * anchor``."""

    model_config = ConfigDict(extra="forbid")

    level: int | None = Field(
        None, ge=0, le=MAX_LEVEL,
        description="Level k of every agent of this policy (part); unset: each agent's "
                    "scenario.level_attribute.")
    anchor: float = Field(LEVEL0_MEAN, ge=GUESS_MIN, le=GUESS_MAX,
                          description="What level-0 players are believed to guess on "
                                      "average in the first round (50: uniform guesses).")
    adaptive: bool = Field(False,
                           description="From the second round on, anchor on the previous "
                                       "round's mean guess (guesses then fall toward 0 over "
                                       "rounds, as in lab experiments).")
    level0: Literal["uniform", "anchor"] = Field(
        "uniform", description="How level-0 agents guess: uniform on [0, 100], or normal "
                               "around the anchor with sd level0_sd (clipped to [0, 100]).")
    level0_sd: float = Field(20.0, ge=0, le=100,
                             description="Standard deviation of level-0 guesses with "
                                         "level0: anchor.")
    noise_sd: float = Field(0.0, ge=0, le=100,
                            description="Standard deviation of a normal noise (per agent and "
                                        "round, seeded) added to the guesses of levels >= 1; "
                                        "clipped to [0, 100].")


class BeautyJoin(BaseModel):
    """What players who join the game mid-run start with: no guess yet, and a reasoning
    level."""

    model_config = ConfigDict(extra="forbid")

    level: int | None = Field(
        None, ge=0, le=MAX_LEVEL,
        description="Reasoning level k of every newcomer (what a level-k rule agent without "
                    "policy.params.level guesses from, as a set of reasoning_level would "
                    "give); unset: each newcomer's scenario.level_attribute, from its profile "
                    "(given or drawn from the population's distribution).")


def _rule_params(policy: Any) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Location and params of every rule policy (part) of the experiment's ``policy:``."""
    if policy.type == "rule":
        return [(("policy", "params"), dict(policy.params))]
    if policy.type == "mixed":
        return [(("policy", "parts", i, "params"), dict(part.params))
                for i, part in enumerate(policy.parts) if part.type == "rule"]
    return []


def _bad_level_values(spec: Any) -> list[Any]:
    """Values a level attribute's distribution can draw that are not levels."""
    dist = getattr(spec, "dist", None)
    if dist == "categorical":
        values = spec.values if isinstance(spec.values, list) else list(spec.values)
        return [v for v in values if not _is_level(v)]
    if dist == "integer":
        return [v for v in (spec.low, spec.high) if not _is_level(v)]
    if dist == "constant":
        return [] if _is_level(spec.value) else [spec.value]
    if dist in {"normal", "truncnormal", "lognormal", "uniform", "beta"}:
        return [f"dist: {dist}"]
    return []


def _is_level(value: Any) -> bool:
    """Whether ``value`` (a YAML scalar) is a whole number in [0, MAX_LEVEL]."""
    if isinstance(value, bool):
        return False
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number.is_integer() and 0 <= number <= MAX_LEVEL
