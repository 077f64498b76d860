"""The "guess p of the average" game (Keynesian beauty contest) as a Populace scenario.

Every step is a round: each active agent guesses a number in [0, 100], the target is p times
the round's mean guess, and the guesses closest to it win. Agents see the announced results
of the last rounds. Rule agents reason by level-k (``rules``); language-model agents get the
rules, the history and their profile (``decisions``).

The scenario is replicated on the Ray runtime (not ``Shardable``): its per-agent state is
three small arrays and a round is scored over the whole batch (mean, median, winners), so
every replica applying the gathered batch is both simplest and fast (a million guesses score
in tens of milliseconds).

Core objects:
    BeautyState: the run's state (round history, each agent's last guess).
    BeautyContestScenario: the scenario (``scenario: {type: beauty_contest}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from populace.simulator import (
    ActionBatch,
    ArrayState,
    Records,
    Scenario,
    StepContext,
    World,
    register_scenario,
)

from .actions import ACTIONS, GUESS, LLM_LEVEL, BeautyArgs
from .config import GUESS_MAX, GUESS_MIN, MAX_LEVEL, BeautyConfig, LevelKParams
from .decisions import BeautyLLM
from .metrics import round_metrics, score_round
from .observation import BeautyObservation, RoundResult
from .rules import LevelKPolicy
from .tables import BeautyGuess, BeautyRound

HISTORY_FIELDS = RoundResult._fields


@dataclass
class History(ArrayState):
    """The last ``history`` announced rounds, oldest first, one array per ``RoundResult``
    field."""

    round: np.ndarray
    guesses: np.ndarray
    mean: np.ndarray
    target: np.ndarray
    winning_guess: np.ndarray
    winners: np.ndarray

    @classmethod
    def empty(cls) -> History:
        """No round announced yet."""
        ints, floats = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return cls(round=ints, guesses=ints, mean=floats, target=floats, winning_guess=floats,
                   winners=ints)

    def append(self, result: RoundResult, keep: int) -> None:
        """Add the newest round, keeping the last ``keep``."""
        for name, value in zip(HISTORY_FIELDS, result, strict=True):
            column = getattr(self, name)
            setattr(self, name, np.append(column, np.asarray(value, column.dtype))[-keep:])

    def newest_first(self) -> tuple[RoundResult, ...]:
        """The rounds as announcements, newest first."""
        columns = [getattr(self, name).tolist() for name in HISTORY_FIELDS]
        return tuple(RoundResult(*row) for row in reversed(list(zip(*columns, strict=True))))


@dataclass
class BeautyState(ArrayState):
    """Everything that changes during a run."""

    history: History
    last_guess: np.ndarray  # (N,) each agent's latest guess, NaN before its first
    last_round: np.ndarray  # (N,) the round of that guess, -1 before
    last_won: np.ndarray  # (N,) whether it won
    level: np.ndarray = field(metadata={"save": False})  # (N,) from the population, fixed


def population_levels(world: World, attribute: str | None) -> np.ndarray:
    """Each agent's level from the population attribute (-1 for every agent when there is
    none); raises ValueError for values that are not levels."""
    n = world.n_agents
    columns = world.population.attributes
    if attribute is None or attribute not in columns:
        return np.full(n, LLM_LEVEL, dtype=np.int16)
    values = pd.to_numeric(columns[attribute], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > MAX_LEVEL) | (values != np.round(values))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"population attribute {attribute!r} must hold whole numbers from 0 "
                         f"to {MAX_LEVEL} (levels); agent {first} has "
                         f"{columns[attribute].iloc[first]!r}")
    return values.astype(np.int16)


@register_scenario
class BeautyContestScenario(Scenario[BeautyConfig, BeautyObservation, LevelKParams, BeautyArgs]):
    """Keynesian beauty contest: guess p times the mean guess; level-k or LLM players."""

    name = "beauty_contest"
    config_model = BeautyConfig
    rule_params_model = LevelKParams
    actions = ACTIONS
    args_type = BeautyArgs
    tables = (BeautyGuess.__tablename__, BeautyRound.__tablename__)
    action_table = BeautyGuess.__tablename__
    examples = Path(__file__).resolve().parent / "examples"
    state: BeautyState

    def setup(self) -> Records:
        """No round played; levels read from the population."""
        n = self.world.n_agents
        self.state = BeautyState(history=History.empty(),
                                 last_guess=np.full(n, np.nan),
                                 last_round=np.full(n, -1, dtype=np.int64),
                                 last_won=np.zeros(n, dtype=bool),
                                 level=population_levels(self.world, self.config.level_attribute))
        return {}

    def observe(self, agents: np.ndarray, ctx: StepContext) -> BeautyObservation:
        """The announced history (shared) and each agent's level and last guess."""
        s = self.state
        return BeautyObservation(agents=agents, level=s.level[agents],
                                 last_guess=s.last_guess[agents],
                                 last_round=s.last_round[agents], last_won=s.last_won[agents],
                                 round=ctx.step, history=s.history.newest_first())

    def rule_policy(self, params: LevelKParams) -> LevelKPolicy:
        """Level-k reasoning with the game's ratio."""
        return LevelKPolicy(params, self.config.p)

    def llm_adapter(self) -> BeautyLLM:
        """Prompts with the rules, the history and the agent's profile."""
        return BeautyLLM(self.config, self.world)

    def _guesses(self, actions: ActionBatch[BeautyArgs]) -> np.ndarray:
        """Which rows of the batch are guesses (a guess that is not a number is refused)."""
        return (actions.action == GUESS) & np.isfinite(actions.args.guess)

    def apply(self, actions: ActionBatch[BeautyArgs], ctx: StepContext) -> Records:
        """Score the round: clip and round the guesses, mark the winners, announce it."""
        args = actions.args
        guessing = self._guesses(actions)
        guess = np.clip(args.guess, GUESS_MIN, GUESS_MAX)
        if self.config.decimals is not None:
            guess = np.round(guess, self.config.decimals)
        args.guess = np.where(guessing, guess, np.nan)
        if not guessing.any():
            return {}
        stats, distance, won = score_round(args.guess[guessing], self.config.p)
        args.distance = np.full(len(actions), np.nan)
        args.distance[guessing] = distance
        args.won = np.zeros(len(actions), dtype=bool)
        args.won[guessing] = won
        players = actions.agent[guessing]
        s = self.state
        s.last_guess[players] = args.guess[guessing]
        s.last_round[players] = ctx.step
        s.last_won[players] = won
        s.history.append(RoundResult(round=ctx.step, guesses=stats.guesses, mean=stats.mean,
                                     target=stats.target, winning_guess=stats.winning_guess,
                                     winners=stats.winners), self.config.history)
        row = stats._asdict()
        return {BeautyRound.__tablename__: {k: [v] for k, v in row.items()}}

    def metrics(self, actions: ActionBatch[BeautyArgs], ctx: StepContext) -> dict[str, float]:
        """The round's distribution of guesses, target, winners, bins and levels."""
        guessing = self._guesses(actions)
        return round_metrics(actions.args.guess[guessing], actions.args.level[guessing],
                             self.config.p, self.config.focal(), self.config.focal_width,
                             abstained=int((~guessing).sum()))

    def agent_state(self) -> dict[str, np.ndarray]:
        """Each agent's latest guess, -1 before its first (agent_states takes no NULL)."""
        return {"last_guess": np.nan_to_num(self.state.last_guess, nan=-1.0)}
