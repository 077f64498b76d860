"""What a language-model household answers in the macro-economy, and how it becomes actions.

Core objects:
    HouseholdDecision: the pydantic model of one answer: a work propensity and a consumption
        share, both in [0, 1] (as in EconAgent).
    prompt_context: the template variables for a batch of observations.
    decisions_to_actions: validated answers (or a fallback) as an ``ActionBatch``; a stated
        propensity becomes ``work`` or ``not_work`` with the household's draw of the step.
    memory_query, memories: what a household's memories are retrieved for, and what it keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from populace.simulator.actions import ActionBatch

from .actions import ACTIONS, DO_NOTHING, NOT_WORK, WORK, action_batch

if TYPE_CHECKING:
    from .scenario import EconomyObservation, EconomyScenario


class HouseholdDecision(BaseModel):
    """One household's decision for the coming month."""

    model_config = ConfigDict(extra="forbid")

    work: float = Field(ge=0.0, le=1.0, description="propensity to work this month, from 0 "
                        "(stay home) to 1 (surely work)")
    consume_share: float = Field(ge=0.0, le=1.0, description="share of your money to spend on "
                                 "goods this month")


def prompt_context(scenario: EconomyScenario, obs: EconomyObservation
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Shared and per-household template variables for a batch of observations."""
    cfg = scenario.config
    shared = {
        "n_firms": cfg.firms,
        "tax_brackets": [{"above": b.above, "rate": b.rate} for b in cfg.tax.brackets],
        "redistribution": cfg.tax.redistribution,
        "steps_per_year": round(scenario.periods_per_year, 2),
    }
    profiles = scenario.profiles()
    inflation = obs.inflation if np.isfinite(obs.inflation) else 0.0
    economy = {"price_level": obs.price_level, "inflation": inflation,
               "interest_rate": obs.interest_rate, "unemployment": obs.unemployment,
               "month": obs.step}
    out = []
    for i, agent in enumerate(obs.agents.tolist()):
        out.append({
            "agent_id": agent, "profile": profiles[agent], **economy,
            "skill": float(obs.skill[i]), "money": float(obs.money[i]),
            "employed": bool(obs.employed[i]), "wage_offer": float(obs.wage_offer[i]),
            "last_income": float(obs.last_income[i]),
            "last_consume": float(obs.last_consume[i]), "last_work": bool(obs.last_work[i])})
    return shared, out


def decisions_to_actions(obs: EconomyObservation, decisions: list[BaseModel | None],
                         fallback: str) -> ActionBatch:
    """Validated answers as economy actions; ``None`` entries take ``fallback``.

    A valid answer works when the household's uniform draw of the step is below its stated
    propensity. A fallback ``work`` / ``not_work`` keeps the household's consumption share; a
    fallback ``do_nothing`` keeps its labour choice too.
    """
    n = len(obs.agents)
    code = ACTIONS.index(fallback)
    codes = np.full(n, code, dtype=np.int16)
    propensity = np.full(n, {WORK: 1.0, NOT_WORK: 0.0, DO_NOTHING: np.nan}[code])
    share = obs.last_consume.astype(np.float64) if code != DO_NOTHING else np.full(n, np.nan)
    valid = np.array([d is not None for d in decisions], dtype=bool)
    if valid.any():
        answers = [d for d in decisions if d is not None]
        stated = np.array([d.work for d in answers], dtype=np.float64)  # type: ignore[attr-defined]
        propensity[valid] = stated
        share[valid] = [d.consume_share for d in answers]  # type: ignore[attr-defined]
        codes[valid] = np.where(obs.draw[valid] < stated, WORK, NOT_WORK)
    return action_batch(obs.agents, codes, propensity=propensity, consume_share=share)


def memory_query(context: dict[str, Any]) -> str:
    """What a household's memories are retrieved for: its job, wage, prices and savings."""
    job = "employed job" if context["employed"] else "unemployed looking for work"
    return (f"{job} wage {context['wage_offer']:.0f} prices {context['price_level']:.0f} "
            f"inflation savings {context['money']:.0f} interest rate")


def memories(obs: EconomyObservation, contexts: list[dict[str, Any]], actions: ActionBatch
             ) -> list[tuple[int, str, str, float]]:
    """Each household remembers the month's economy and what it chose."""
    out: list[tuple[int, str, str, float]] = []
    codes = actions.action.tolist()
    shares = actions.args["consume_share"].tolist()
    for i, c in enumerate(contexts):
        seen = (f"Month {c['month']}: goods cost {c['price_level']:.0f} (inflation "
                f"{c['inflation']:+.1%} a year), I could earn {c['wage_offer']:.0f} a month, "
                f"interest {c['interest_rate']:.1%}, unemployment {c['unemployment']:.1%}.")
        out.append((i, "observation", seen, 2.0 + min(6.0, 100.0 * abs(c["inflation"]))))
        if codes[i] == DO_NOTHING:
            continue
        what = "work" if codes[i] == WORK else "stay home"
        text = (f"In month {c['month']} I chose to {what} and to spend {shares[i]:.0%} of my "
                f"money ({shares[i] * c['money']:.0f}).")
        out.append((i, "action", text, 3.0))
    return out
