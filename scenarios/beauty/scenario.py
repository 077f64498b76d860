"""The "guess p of the average" game (Keynesian beauty contest) as a Populace scenario.

Every step is a round: each active agent guesses a number in [0, 100], the target is p times
the round's mean guess, and the guesses closest to it win. Agents see the announced results
of the last rounds. Rule agents reason by level-k (``rules``); language-model agents get the
rules, the history and their profile (``decisions``).

The scenario is replicated on the Ray runtime (not ``Shardable``): its per-agent state is
three small arrays and a round is scored over the whole batch (mean, median, winners), so
every replica applying the gathered batch is both simplest and fast (a million guesses score
in tens of milliseconds).

Steering (docs/scenarios.md, "Steering hooks"): each agent's ``last_guess`` and
``reasoning_level`` are variables; p, the history shown, rounding and the focal points can
change mid-run. The game has no channel for free text from its organiser (it announces
results only), so it takes no broadcasts.

Core objects:
    BeautyState: the run's state (round history, each agent's last guess and level).
    BeautyContestScenario: the scenario (``scenario: {type: beauty_contest}``).
    LevelColumn: the agents' levels as a variable (assignments round to whole levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

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
from populace.simulator.scenario import Variable

from .actions import ACTIONS, GUESS, LLM_LEVEL, BeautyArgs
from .config import GUESS_MAX, GUESS_MIN, MAX_LEVEL, BeautyConfig, BeautyJoin, LevelKParams
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
    # (N,) int16 from the population (-1: none); saved, since events may change it
    level: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))


class LevelColumn(np.ndarray):
    """The agents' levels (a view of the int16 state) as a variable: an assigned value is
    rounded to the nearest whole level, where numpy's own cast would cut 2.7 down to 2."""

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, np.rint(np.asarray(value, dtype=np.float64)))


def population_levels(columns: pd.DataFrame, attribute: str | None) -> np.ndarray:
    """The level of each agent of ``columns`` (population rows, indexed by agent id) from the
    attribute (-1 for every agent when there is none); raises ValueError for values that are
    not levels."""
    if attribute is None or attribute not in columns:
        return np.full(len(columns), LLM_LEVEL, dtype=np.int16)
    values = pd.to_numeric(columns[attribute], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values) | (values < 0) | (values > MAX_LEVEL) | (values != np.round(values))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"population attribute {attribute!r} must hold whole numbers from 0 "
                         f"to {MAX_LEVEL} (levels); agent {columns.index[first]} has "
                         f"{columns[attribute].iloc[first]!r}")
    return values.astype(np.int16)


@register_scenario
class BeautyContestScenario(Scenario[BeautyConfig, BeautyObservation, LevelKParams, BeautyArgs]):
    """Keynesian beauty contest: guess p times the mean guess; level-k or LLM players."""

    name = "beauty_contest"
    headline_metrics = (
        "target", "winning_guess", "mean", "nash_distance", "guesses",
    )
    config_model = BeautyConfig
    rule_params_model = LevelKParams
    actions = ACTIONS
    args_type = BeautyArgs
    tables = (BeautyGuess.__tablename__, BeautyRound.__tablename__)
    action_table = BeautyGuess.__tablename__
    examples = Path(__file__).resolve().parent / "examples"
    variables: ClassVar[dict[str, Variable]] = {
        "last_guess": Variable("each agent's latest guess, NaN before its first; language-model "
                               "agents are told it as their previous guess (level-k agents do "
                               "not use it)", GUESS_MIN, GUESS_MAX),
        "reasoning_level": Variable(f"each agent's level k (whole numbers, 0 to {MAX_LEVEL}; "
                                    "-1 where the population gives none): what a level-k agent "
                                    "without policy.params.level guesses from",
                                    0, MAX_LEVEL),
    }
    # read from the config each round, or handed again to the policies and the model adapter
    # by ``reconfigure``
    reconfigurable: ClassVar[tuple[str, ...]] = ("p", "history", "decimals", "focal_points",
                                                 "focal_width")
    join_model = BeautyJoin
    state: BeautyState

    def __init__(self, config: BeautyConfig, world: World) -> None:
        super().__init__(config, world)
        self._rules: list[LevelKPolicy] = []  # the rule policies made, which hold p
        self._llm: BeautyLLM | None = None

    def setup(self) -> Records:
        """No round played; levels read from the population."""
        n = self.world.n_agents
        self.state = BeautyState(history=History.empty(),
                                 last_guess=np.full(n, np.nan),
                                 last_round=np.full(n, -1, dtype=np.int64),
                                 last_won=np.zeros(n, dtype=bool),
                                 level=population_levels(self.world.population.attributes,
                                                         self.config.level_attribute))
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
        policy = LevelKPolicy(params, self.config.p)
        self._rules.append(policy)
        return policy

    def llm_adapter(self) -> BeautyLLM:
        """Prompts with the rules, the history and the agent's profile (one adapter, which
        ``reconfigure`` keeps up to date)."""
        if self._llm is None:
            self._llm = BeautyLLM(self.config, self.world)
        return self._llm

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

    # -- steering --------------------------------------------------------------------------------

    def variable(self, name: str) -> np.ndarray:
        """``last_guess`` or ``reasoning_level`` of every agent, a view of the state (levels
        are assigned rounded)."""
        if name == "reasoning_level":
            return self.state.level.view(LevelColumn)
        return super().variable(name)

    def reconfigure(self, config: BeautyConfig) -> None:
        """Take the new config, and give its ratio to the rule policies and the config to the
        model adapter (each holds what it was made with)."""
        super().reconfigure(config)
        for policy in self._rules:
            policy.p = config.p
        if self._llm is not None:
            self._llm.config = config

    def join(self, agents: np.ndarray, args: BeautyJoin, ctx: StepContext) -> Records:
        """Newcomers have guessed nothing yet (NaN, round -1, not won); their level is
        ``args.level``, or read from their population rows as at set-up. The announced history
        is the game's, which they read from their first round. No rows: the game's tables
        hold guesses and rounds only."""
        s, m = self.state, len(agents)
        if args.level is not None:
            level = np.full(m, args.level, dtype=np.int16)
        else:
            rows = self.world.population.attributes.iloc[int(agents[0]):int(agents[-1]) + 1]
            level = population_levels(rows, self.config.level_attribute)
        s.last_guess = np.concatenate([s.last_guess, np.full(m, np.nan)])
        s.last_round = np.concatenate([s.last_round, np.full(m, -1, dtype=np.int64)])
        s.last_won = np.concatenate([s.last_won, np.zeros(m, dtype=bool)])
        s.level = np.concatenate([s.level, level])
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a checkpoint (one from before levels were saved keeps the population's)."""
        if "level" not in state:
            state = {**state, "level": self.state.level}
        super().load_state_dict(state)
