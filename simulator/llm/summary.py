"""How much of a language-model run came from the model: the end-of-run summary.

A run whose model answered badly still completes (every agent falls back to an action), so
its results can look fine while the model decided little. The summary totals the run's ``llm.*``
step metrics, per part (the LLM agents, and the questions the scenario asked) and judges them
against ``llm.max_fallback_share``.

Core objects:
    LLMRunSummary: the totals and rates of one run, ``lines`` to print and ``failed``.
    summary_from_metrics: the summary of a run's step metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .calls import COUNTERS

if TYPE_CHECKING:
    import pandas as pd

# metric prefix -> name of the part in the summary
PARTS = {"llm.": "LLM agents", "llm.scenario.": "scenario questions"}


@dataclass
class LLMRunSummary:
    """What the model did in a run, per part.

    Attributes:
        totals: per part, the run's totals of its counters (requests, decisions, fallbacks,
            invalid, errors, retries, ejections, replay_misses ...).
        max_fallback_share: the share of fallbacks above which the run did not do what was
            asked.
    """

    totals: dict[str, dict[str, float]] = field(default_factory=dict)
    max_fallback_share: float = 0.1

    def fallback_share(self, part: str) -> float:
        """Fallbacks per decision (per question, for the scenario's questions)."""
        t = self.totals[part]
        asked = t.get("decisions") or t.get("requests", 0.0)
        return t.get("fallbacks", 0.0) / asked if asked else 0.0

    @property
    def failed(self) -> bool:
        """More fallbacks than ``max_fallback_share`` in some part."""
        return any(self.fallback_share(p) > self.max_fallback_share for p in self.totals)

    @property
    def troubled(self) -> bool:
        """Anything went wrong: fallbacks, invalid answers, errors, retries, ejections, misses."""
        keys = ("fallbacks", "invalid", "errors", "retries", "ejections", "replay_misses")
        return any(t.get(k, 0) for t in self.totals.values() for k in keys)

    def lines(self) -> list[str]:
        """The summary, one line per part with trouble, then the verdict (empty when clean)."""
        if not self.troubled:
            return []
        out = []
        for part, t in self.totals.items():
            asked = t.get("decisions") or t.get("requests", 0.0)
            requests = t.get("requests", 0.0)
            if not requests:
                continue
            what = "decisions" if t.get("decisions") else "questions"
            line = (f"warning: llm {part}: {t.get('fallbacks', 0):.0f} of {asked:.0f} {what} "
                    f"fell back ({self.fallback_share(part):.1%}); of {requests:.0f} requests, "
                    f"{t.get('invalid', 0):.0f} invalid answers "
                    f"({t.get('invalid', 0) / requests:.1%}), {t.get('errors', 0):.0f} without "
                    f"an answer ({t.get('errors', 0) / requests:.1%})")
            extra = [f"{t[k]:.0f} {k.replace('_', ' ')}" for k in
                     ("repaired", "retries", "ejections", "replay_misses") if t.get(k)]
            out.append(line + (f"; {', '.join(extra)}" if extra else ""))
        if self.failed:
            worst = max(self.totals, key=self.fallback_share)
            out.append(f"error: the {worst} fell back in {self.fallback_share(worst):.1%} of "
                       f"their decisions, more than llm.max_fallback_share "
                       f"({self.max_fallback_share:g}): the run is recorded, but the model did "
                       "not make the decisions asked of it (llm_calls.error says why)")
        return out


def summary_from_metrics(metrics: pd.DataFrame, max_fallback_share: float) -> LLMRunSummary:
    """The summary of a wide metrics frame (a column per metric, a row per step)."""
    sums = metrics.sum(numeric_only=True) if len(metrics) else {}
    totals: dict[str, dict[str, float]] = {}
    for prefix, part in PARTS.items():
        names = {k[len(prefix):]: float(v) for k, v in dict(sums).items()
                 if k.startswith(prefix) and k[len(prefix):] in COUNTERS}
        if names.get("requests"):
            totals[part] = names
    return LLMRunSummary(totals, max_fallback_share)


__all__ = ["LLMRunSummary", "summary_from_metrics"]
