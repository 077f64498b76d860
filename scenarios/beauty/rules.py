"""The level-k rule policy (Nagel 1995; Stahl and Wilson 1995; Camerer, Ho and Chong 2004).

A level-0 player guesses at random; a level-k player (k >= 1) best-responds to a population
of level k-1 players and guesses ``p**k * anchor``, where the anchor is what level-0 players
are believed to guess on average: 50 in the first round and, with ``adaptive``, the previous
round's mean afterwards.

Core objects:
    level_k_guesses: the guesses of a batch of agents, as arrays.
    LevelKPolicy: the scenario's rule policy.
"""

from __future__ import annotations

import math

import numpy as np

from populace.simulator import ActionBatch, Policy, StepContext

from .actions import GUESS, BeautyArgs
from .config import GUESS_MAX, GUESS_MIN, LevelKParams
from .observation import BeautyObservation


def level_k_guesses(level: np.ndarray, anchor: float, p: float, params: LevelKParams,
                    level0_draw: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Guesses of agents of the given levels, clipped to [0, 100].

    Args:
        level: each agent's level k (>= 0).
        anchor: the believed mean guess of level-0 players this round.
        p: the game's ratio.
        params: the rule's parameters (level-0 mode, spreads).
        level0_draw: per-agent uniforms in [0, 1) (``level0: uniform``) or standard normals
            (``level0: anchor``), used by level-0 agents.
        noise: per-agent standard normals, scaled by ``noise_sd`` for levels >= 1.
    """
    reasoned = np.power(p, level.astype(np.float64)) * anchor + params.noise_sd * noise
    if params.level0 == "uniform":
        random = GUESS_MIN + (GUESS_MAX - GUESS_MIN) * level0_draw
    else:
        random = anchor + params.level0_sd * level0_draw
    return np.clip(np.where(level == 0, random, reasoned), GUESS_MIN, GUESS_MAX)


class LevelKPolicy(Policy[BeautyObservation, BeautyArgs]):
    """Every agent guesses by level-k reasoning (see the module docstring)."""

    def __init__(self, params: LevelKParams, p: float) -> None:
        self.params = params
        self.p = p

    def anchor(self, obs: BeautyObservation) -> float:
        """The anchor of this round: ``params.anchor``, or the last mean with ``adaptive``."""
        last = obs.last_mean
        return last if self.params.adaptive and not math.isnan(last) else self.params.anchor

    def decide(self, obs: BeautyObservation, ctx: StepContext) -> ActionBatch[BeautyArgs]:
        """One guess per agent; random numbers keyed by agent id, so any split of the batch
        (policy parts, shards) gives each agent the same guess."""
        if self.params.level is not None:
            level = np.full(len(obs.agents), self.params.level, dtype=np.int16)
        else:
            level = obs.level
            if (level < 0).any():
                raise ValueError("level-k agents without a level: declare the population "
                                 "attribute named by scenario.level_attribute or set "
                                 "policy.params.level")
        if self.params.level0 == "uniform":
            level0_draw = ctx.uniform("beauty.level0", obs.agents)[:, 0]
        else:
            level0_draw = ctx.normal("beauty.level0", obs.agents)[:, 0]
        noise = (ctx.normal("beauty.noise", obs.agents)[:, 0] if self.params.noise_sd > 0
                 else np.zeros(len(obs.agents)))
        guess = level_k_guesses(level, self.anchor(obs), self.p, self.params, level0_draw, noise)
        code = np.full(len(obs.agents), GUESS, dtype=np.int16)
        return ActionBatch(obs.agents, code, BeautyArgs(guess=guess, level=level))
