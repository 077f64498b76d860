"""Language-model households of the macro-economy: what they answer, what their prompts show,
and how answers become actions.

Core objects:
    HouseholdDecision: the pydantic model of one answer: a work propensity and a consumption
        share, both in [0, 1] (as in EconAgent).
    EconomyLLM: the scenario's ``LLMAdapter``: template variables for a batch of observations,
        validated answers (or a fallback) as actions (a stated propensity becomes ``work`` or
        ``not_work`` with the household's draw of the step), and what households remember.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from populace.simulator.actions import ActionBatch
from populace.simulator.llm_adapter import LLMAdapter, Memory

from .actions import ACTIONS, DO_NOTHING, NOT_WORK, WORK, EconomyArgs
from .config import EconomyConfig
from .observation import EconomyObservation


class HouseholdDecision(BaseModel):
    """One household's decision for the coming month."""

    model_config = ConfigDict(extra="forbid")

    work: float = Field(ge=0.0, le=1.0, description="propensity to work this month, from 0 "
                        "(stay home) to 1 (surely work)")
    consume_share: float = Field(ge=0.0, le=1.0, description="share of your money to spend on "
                                 "goods this month")


class EconomyLLM(LLMAdapter[EconomyObservation, EconomyArgs]):
    """What language-model households need from the economy.

    Args:
        config: the scenario's configuration (firms and taxes are shown in the prompts).
        periods_per_year: steps per year.
        profiles: each household's population attributes other than skill and wealth (which
            the prompt shows as the household's own figures).
    """

    prompt_dir = Path(__file__).parent / "prompts"

    def __init__(self, config: EconomyConfig, periods_per_year: float,
                 profiles: list[dict[str, Any]]) -> None:
        self.config = config
        self.periods_per_year = periods_per_year
        self.profiles = profiles

    def decision_model(self) -> type[BaseModel]:
        """One answer: a work propensity and a consumption share."""
        return HouseholdDecision

    def prompt_context(self, obs: EconomyObservation
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Template variables: the economy's rules, and each household's situation."""
        cfg = self.config
        shared = {
            "n_firms": cfg.firms,
            "tax_brackets": [{"above": b.above, "rate": b.rate} for b in cfg.tax.brackets],
            "redistribution": cfg.tax.redistribution,
            "steps_per_year": round(self.periods_per_year, 2),
        }
        inflation = obs.inflation if np.isfinite(obs.inflation) else 0.0
        economy = {"price_level": obs.price_level, "inflation": inflation,
                   "interest_rate": obs.interest_rate, "unemployment": obs.unemployment,
                   "month": obs.step, "news": list(obs.news)}
        out = []
        for i, agent in enumerate(obs.agents.tolist()):
            out.append({
                "agent_id": agent, "profile": self.profiles[agent], **economy,
                "skill": float(obs.skill[i]), "money": float(obs.money[i]),
                "employed": bool(obs.employed[i]), "wage_offer": float(obs.wage_offer[i]),
                "last_income": float(obs.last_income[i]),
                "last_consume": float(obs.last_consume[i]), "last_work": bool(obs.last_work[i])})
        return shared, out

    def decisions_to_actions(self, obs: EconomyObservation, decisions: list[Any],
                             fallback: str) -> ActionBatch[EconomyArgs]:
        """Validated answers as economy actions; ``None`` entries take ``fallback``.

        A valid answer works when the household's uniform draw of the step is below its stated
        propensity. A fallback ``work`` / ``not_work`` keeps the household's consumption share;
        a fallback ``do_nothing`` keeps its labour choice too.
        """
        n = len(obs.agents)
        code = ACTIONS.index(fallback)
        codes = np.full(n, code, dtype=np.int16)
        propensity = np.full(n, {WORK: 1.0, NOT_WORK: 0.0, DO_NOTHING: np.nan}[code])
        share = obs.last_consume.astype(np.float64) if code != DO_NOTHING else np.full(n, np.nan)
        valid = np.array([d is not None for d in decisions], dtype=bool)
        if valid.any():
            answers: list[HouseholdDecision] = [d for d in decisions if d is not None]
            stated = np.array([d.work for d in answers], dtype=np.float64)
            propensity[valid] = stated
            share[valid] = [d.consume_share for d in answers]
            codes[valid] = np.where(obs.draw[valid] < stated, WORK, NOT_WORK)
        return ActionBatch(obs.agents, codes,
                           EconomyArgs(propensity=propensity, consume_share=share))

    def memory_query(self, context: dict[str, Any]) -> str:
        """What a household's memories are retrieved for: its job, wage, prices and savings."""
        job = "employed job" if context["employed"] else "unemployed looking for work"
        return (f"{job} wage {context['wage_offer']:.0f} prices {context['price_level']:.0f} "
                f"inflation savings {context['money']:.0f} interest rate")

    def memories(self, obs: EconomyObservation, contexts: list[dict[str, Any]],
                 actions: ActionBatch[EconomyArgs]) -> list[Memory]:
        """Each household remembers the month's economy and what it chose."""
        out: list[Memory] = []
        codes = actions.action.tolist()
        shares = actions.args.consume_share.tolist()
        for i, c in enumerate(contexts):
            seen = (f"Month {c['month']}: goods cost {c['price_level']:.0f} (inflation "
                    f"{c['inflation']:+.1%} a year), I could earn {c['wage_offer']:.0f} a month, "
                    f"interest {c['interest_rate']:.1%}, unemployment {c['unemployment']:.1%}.")
            out.append(Memory(i, "observation", seen, 2.0 + min(6.0, 100.0 * abs(c["inflation"]))))
            if codes[i] == DO_NOTHING:
                continue
            what = "work" if codes[i] == WORK else "stay home"
            text = (f"In month {c['month']} I chose to {what} and to spend {shares[i]:.0%} of my "
                    f"money ({shares[i] * c['money']:.0f}).")
            out.append(Memory(i, "action", text, 3.0))
        return out
