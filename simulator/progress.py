"""Progress on stderr: the stages of a run's set-up, then a bar of its steps.

Core objects:
    SetupProgress: one line per set-up stage (population, network, scenario, the first
        commit), each finished with its seconds, so that a long set-up (a 1M-agent population
        builds for seconds, then writes 5M follow edges) never looks hung.
    ProgressBar: step, simulated time, active agents, actions/s and ETA; after the last
        step, that the run is finishing (its last commit and the indexes for readers: 12 s at
        1M agents, during which the bar would otherwise look hung).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

if TYPE_CHECKING:
    from .engine import Simulation, StepReport


class SetupProgress:
    """Stage lines of a set-up: call it with a stage's name when the stage starts, and with
    ``None`` when the set-up is done (``Simulation.stage_hook``).

    Args:
        disable: print nothing (``--quiet``).
        stream: where to print (stderr).
    """

    def __init__(self, disable: bool = False, stream: TextIO | None = None) -> None:
        self.disable = disable
        self.stream = stream if stream is not None else sys.stderr
        self._started: float | None = None

    def __call__(self, stage: str | None) -> None:
        """Finish the stage in progress (with its seconds) and start ``stage``."""
        if self.disable:
            return
        t = time.perf_counter()
        if self._started is not None:
            print(f" {t - self._started:.1f} s", file=self.stream, flush=True)
        self._started = None
        if stage is not None:
            print(f"  {stage} ...", end="", file=self.stream, flush=True)
            self._started = t


class ProgressBar:
    """A tqdm bar fed with ``StepReport``s; disabled by ``disable`` (``--quiet``).

    After the last step's report the run still commits that step and, once complete, indexes
    its tables for readers (``Simulation.index_for_reads``: 12 s at 1M agents on SQLite): the
    bar says so until ``close``.
    """

    FINISHING = "(finishing: last commit, indexes for readers)"
    """The bar's description while the run finishes (first on the line: a narrow terminal cuts
    the line's end)."""

    def __init__(self, sim: Simulation, disable: bool = False) -> None:
        self.sim = sim
        self.bar = tqdm(total=sim.config.steps, initial=sim.step, unit="step", disable=disable,
                        file=sys.stderr, dynamic_ncols=True, desc=sim.config.name)
        self.llm_cost = 0.0
        self._finishing = False

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
        if report.step == self.sim.config.steps:
            self._finishing = True
            self.bar.set_description(f"{self.sim.config.name} {self.FINISHING}")  # shown now

    def close(self) -> None:
        """Close the bar (with the last step's figures, once the run has finished)."""
        if self._finishing:
            self.bar.set_description(self.sim.config.name, refresh=False)
        self.bar.close()
