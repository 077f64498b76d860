"""What runs inside a Ray shard actor: a replica of the world that decides for one block of
agents (see ``populace.simulator.runtime`` for the protocol).

Core objects:
    ShardReplica: builds the world from the experiment, owns agents ``lo..hi-1``, and runs the
        phases the driver asks for: decide (observe, decide, resolve) for its active agents,
        apply the step's whole batch, metrics, state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from populace.storage import Database

from .actions import ActionBatch
from .build import build_world
from .config import experiment_from_dict
from .llm.model_actor import serve_from_actor
from .llm.service import ReplayedLLM
from .local_runtime import decide_with_script
from .policy import Policy
from .population import build_population
from .records import Records, merge_records
from .rng import RngStreams
from .runtime_config import RuntimeConfig
from .sharding import Shardable
from .steering import Boundary, answer_interview, apply_boundary
from .step import StepContext, step_context


class ShardReplica:
    """A replica of the world for agents ``lo..hi-1``.

    Args:
        config: the experiment as plain data.
        source: the experiment file's path (relative paths in it are resolved from there).
        lo, hi: the block of agent ids this shard decides for.
        tail: whether agents that join mid-run are this shard's (the last one's).
        model_actor: the name of the run's model actor (``llm.transformers.ray_actor``), which
            this shard's transformers requests go to.
    """

    def __init__(self, config: dict[str, Any], source: str, lo: int, hi: int,
                 tail: bool = True, model_actor: str | None = None) -> None:
        serve_from_actor(model_actor)  # before the policy's backend is made (attach)
        exp = experiment_from_dict(config, source=Path(source))
        exp.config.runtime = RuntimeConfig()  # the replica itself runs locally
        cfg = exp.config
        self.rng = RngStreams(cfg.seed)
        self.clock = cfg.clock()
        population = build_population(cfg.population, self.rng.get("population"),
                                      exp.base_dir)
        built = build_world(exp, population, self.clock, self.rng, own=(lo, hi))
        self.world, self.scenario, self.policy = built.world, built.scenario, built.policy
        self._setup: Records = built.records
        self.world.graph = None  # the scenario holds what it needs of the follow graph
        self.lead = lo == 0
        self.shardable = isinstance(self.scenario, Shardable)
        if isinstance(self.scenario, Shardable):
            self.scenario.tail = tail
        if self.world.llm is not None:
            if self.lead:  # the lead asks the model; the other replicas replay its answers
                self.world.llm.keep_answers = True
            else:
                self.world.llm = ReplayedLLM()  # type: ignore[assignment]  (same interface)
        self._applied: ActionBatch[Any] | None = None

    def _context(self, step: int) -> StepContext:
        return step_context(self.clock, self.rng, step)

    def info(self) -> tuple[int, type[Policy]]:
        """This actor's process id, and its policy's class (it pools measurements)."""
        return os.getpid(), type(self.policy)

    def attach(self, db_url: str, run_id: int) -> None:
        """Connect the policy (and, on the lead, the scenario's model) to the run."""
        self.db = Database(db_url, create=False)
        self.policy.attach(self.db, run_id)
        if self.lead and self.world.llm is not None:
            self.world.llm.attach(self.db)

    def setup(self) -> Records:
        """The rows describing this replica's share of the initial state (given once)."""
        records, self._setup = self._setup, {}
        return self._shared(records)

    def _shared(self, records: Records) -> Records:
        """What the driver keeps of a replica's rows: all of a shardable scenario's; of a
        replicated scenario, the lead's only (the others would repeat them)."""
        return records if self.lead or self.shardable else {}

    def decide(self, agents: np.ndarray, step: int, scripted: ActionBatch | None = None
               ) -> tuple[ActionBatch, dict[str, np.ndarray], Records, dict[str, Any]]:
        """Observe, decide and resolve (``scripted``: this shard's share of the actions events
        script, first in the batch); with them, the policy's rows and measurements of the
        step (a policy produces both while deciding), so that no further call is needed."""
        actions, summary = decide_with_script(self.scenario, self.policy, agents,
                                              self._context(step), scripted)
        return (actions, summary, self.policy.drain_records(),
                self.policy.export_measurements())

    def steer(self, events: list[tuple[str, Any]], step: int) -> Boundary:
        """Apply the events of the boundary before ``step`` to this replica (the driver keeps
        the lead's results and selections)."""
        done = apply_boundary(self.scenario, self.policy, events, self._context(step))
        done.records = self._shared(done.records)
        return done

    def interview(self, agents: np.ndarray, name: str, event: Any, step: int) -> Records:
        """Answers of this shard's ``agents`` (with the rows of the model calls made)."""
        records = answer_interview(self.scenario, self.policy, agents, name, event,
                                   self._context(step))
        merge_records(records, self.policy.drain_records())
        return records

    def apply(self, actions: ActionBatch, step: int, agents: np.ndarray | None,
              summary: dict[str, np.ndarray] | None, answers: list[Any] | None,
              measure: bool = False) -> tuple[Records, dict[str, np.ndarray] | None,
                                              tuple[list[Any], Records, dict[str, float]] | None,
                                              dict[str, Any] | None]:
        """Apply the step's whole batch; this replica's rows, on the lead the batch's traced
        columns (``apply`` may fill outcomes in) and the scenario model's answers, rows and
        metrics (``answers``: the lead's, replayed here), and with ``measure`` this replica's
        ``metrics`` of the step."""
        if summary is not None:
            self.scenario.observed(agents, summary)
        llm = self.world.llm
        if answers:
            llm.queue = list(answers)  # type: ignore[union-attr]
        records = self.scenario.apply(actions, self._context(step))
        self._applied = actions
        measured = self.metrics(step, None) if measure else None
        if not self.lead:
            return self._shared(records), None, None, measured
        traced = {k: getattr(actions.args, k) for k in self.scenario.trace_columns()}
        asked = None
        if llm is not None:
            asked = (llm.take_answers(), llm.drain_records(), llm.step_metrics())
        return records, traced, asked, measured

    def metrics(self, step: int, actions: ActionBatch | None) -> dict[str, Any] | None:
        """A shardable scenario's ``metric_part``; a replicated one's metrics, on the lead."""
        actions = actions if actions is not None else self._applied
        ctx = self._context(step)
        if isinstance(self.scenario, Shardable):
            return self.scenario.metric_part(actions, ctx)
        return self.scenario.metrics(actions, ctx) if self.lead else None

    def finish(self, step: int) -> Records:
        """End-of-run rows."""
        return self._shared(self.scenario.finish(self._context(step)))

    def agent_state(self) -> dict[str, np.ndarray]:
        """Per-agent state (own agents', for a shardable scenario)."""
        return self.scenario.agent_state() if self.lead or self.shardable else {}

    def scenario_state(self) -> dict[str, np.ndarray] | None:
        """The scenario's checkpoint state (a shardable replica's part of it)."""
        return self.scenario.state_dict() if self.lead or self.shardable else None

    def policy_state(self) -> dict[str, np.ndarray]:
        """The state of the policy that decides for this shard's agents."""
        return self.policy.state_dict()

    def load_scenario(self, state: dict[str, np.ndarray]) -> None:
        """Restore the scenario from a checkpoint."""
        self._setup = {}
        self.scenario.load_state_dict(state)

    def load_policy(self, state: dict[str, np.ndarray]) -> None:
        """Restore this shard's policy from a checkpoint."""
        self.policy.load_state_dict(state)

    def close(self) -> None:
        """Close the policy's and the scenario model's connections."""
        self.policy.close()
        llm = self.world.llm
        if self.lead and llm is not None:
            llm.close()


__all__ = ["ShardReplica"]
