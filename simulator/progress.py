"""The progress bar of a run: step, simulated time, active agents, actions/s and ETA."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:
    from .engine import Simulation, StepReport


class ProgressBar:
    """A tqdm bar fed with ``StepReport``s; disabled by ``disable`` (``--quiet``)."""

    def __init__(self, sim: Simulation, disable: bool = False) -> None:
        self.sim = sim
        self.bar = tqdm(total=sim.config.steps, initial=sim.step, unit="step", disable=disable,
                        file=sys.stderr, dynamic_ncols=True, desc=sim.config.name)
        self.llm_cost = 0.0

    def update(self, report: StepReport) -> None:
        """Advance by one step and show its figures."""
        seconds = report.compute_s + report.record_s
        rate = report.n_actions / seconds if seconds > 0 else 0.0
        text = (f"t={self.sim.clock.time(report.step):%Y-%m-%d %H:%M} active={report.n_active} "
                f"actions/s={rate:,.0f}")
        m = report.metrics
        if m.get("llm.requests"):
            self.llm_cost += m.get("llm.cost", 0.0)
            text += (f" llm={m['llm.requests']:.0f} tok={m['llm.prompt_tokens']:,.0f}/"
                     f"{m['llm.completion_tokens']:,.0f} p50={m['llm.latency_p50']:.2f}s "
                     f"cache={m['llm.cache_hits']:.0f} fallback={m['llm.fallbacks']:.0f} "
                     f"cost=${self.llm_cost:.4f}")
        self.bar.set_postfix_str(text, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()
