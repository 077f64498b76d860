"""Language-model players: the decision a model must give and its prompts' variables.

Core objects:
    GuessDecision: the answer a model must give (short reasoning, then the guess).
    BeautyLLM: the scenario's ``LLMAdapter``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from populace.simulator import ActionBatch, LLMAdapter, Memory, World

from .actions import ACTIONS, DO_NOTHING, GUESS, LLM_LEVEL, BeautyArgs
from .config import GUESS_MAX, GUESS_MIN, LEVEL0_MEAN, BeautyConfig
from .observation import BeautyObservation

PROMPTS = Path(__file__).resolve().parent / "prompts"


class GuessDecision(BaseModel):
    """A language model's move in a round."""

    reasoning: str = Field(max_length=600, description="one or two sentences: why this number")
    guess: float = Field(ge=GUESS_MIN, le=GUESS_MAX, description="your number, from 0 to 100")


def ratio_text(p: float) -> str:
    """``p`` as players read it: ``2/3`` when it is a simple fraction, else a decimal."""
    fraction = Fraction(p).limit_denominator(12)
    if abs(float(fraction) - p) < 1e-9:
        return str(fraction.numerator) if fraction.denominator == 1 else str(fraction)
    return f"{p:g}"


def number(x: float) -> str:
    """A guess or mean as shown in prompts (two decimals at most)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


class BeautyLLM(LLMAdapter[BeautyObservation, BeautyArgs]):
    """Prompts show the rules, the announced results of the last rounds, the agent's profile
    (its level attribute hidden) and its own previous guess."""

    prompt_dir = PROMPTS

    def __init__(self, config: BeautyConfig, world: World) -> None:
        self.config = config
        self.world = world
        self._profiles: list[dict[str, Any]] | None = None

    def profiles(self) -> list[dict[str, Any]]:
        """Every agent's attributes for prompts, built at the first prompt (a million-agent
        rule run never pays for them) and again once agents have joined."""
        if self._profiles is None or len(self._profiles) < self.world.population.size:
            hidden = {self.config.level_attribute} if self.config.level_attribute else set()
            self._profiles = self.world.population.profiles(hidden)
        return self._profiles

    def decision_model(self) -> type[BaseModel]:
        """Short reasoning first, then the guess: models that reason before answering guess
        better, and the reasoning is recorded with the call."""
        return GuessDecision

    def prompt_context(self, obs: BeautyObservation
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Shared: the rules and the announced history (the same text for every agent of the
        round, so servers cache it); per agent: its profile and its own last guess."""
        history = [{"round": r.round, "guesses": r.guesses, "mean": number(r.mean),
                    "target": number(r.target), "winning_guess": number(r.winning_guess),
                    "winners": r.winners} for r in obs.history]
        shared = {"p": ratio_text(self.config.p), "players": self.world.n_agents,
                  "round": obs.round, "history": history, "low": number(GUESS_MIN),
                  "high": number(GUESS_MAX), "decimals": self.config.decimals}
        profiles = self.profiles()
        agents = [{"profile": profiles[a],
                   "last_guess": None if np.isnan(g) else number(g),
                   "last_round": r, "last_won": w}
                  for a, g, r, w in zip(obs.agents.tolist(), obs.last_guess.tolist(),
                                        obs.last_round.tolist(), obs.last_won.tolist(),
                                        strict=True)]
        return shared, agents

    def decisions_to_actions(self, obs: BeautyObservation, decisions: list[Any],
                             fallback: str) -> ActionBatch[BeautyArgs]:
        """A guess per valid decision; without one, the fallback: ``do_nothing`` sits the
        round out, ``guess`` guesses 50 (the mean of a random guess)."""
        if fallback not in ACTIONS:
            raise ValueError(f"unknown fallback {fallback!r} (actions: {', '.join(ACTIONS)})")
        missing = np.array([d is None for d in decisions], dtype=bool)
        guess = np.array([LEVEL0_MEAN if d is None else d.guess for d in decisions],
                         dtype=np.float64)
        code = np.full(len(decisions), GUESS, dtype=np.int16)
        if fallback == ACTIONS[DO_NOTHING]:
            code[missing] = DO_NOTHING
            guess[missing] = np.nan
        level = np.full(len(decisions), LLM_LEVEL, dtype=np.int16)
        return ActionBatch(obs.agents, code, BeautyArgs(guess=guess, level=level))

    def memory_query(self, context: dict[str, Any]) -> str:
        """Retrieve the memories about guesses and results."""
        return "my guess in the round, the target and the mean guess"

    def memories(self, obs: BeautyObservation, contexts: list[dict[str, Any]],
                 actions: ActionBatch[BeautyArgs]) -> list[Memory]:
        """Each guesser remembers its guess of the round."""
        return [Memory(i, "action", f"In round {obs.round} I guessed {number(g)}.", 3.0)
                for i, (c, g) in enumerate(zip(actions.action.tolist(),
                                               actions.args.guess.tolist(), strict=True))
                if c == GUESS]
