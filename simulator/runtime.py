"""Where the agents' phases run: in this process (``local``), or split into shards on Ray.

Core objects:
    RuntimeConfig: the ``runtime:`` section.
    RayRuntime: shard actors that each observe and decide for a contiguous block of agent ids,
        plus ``ShardedPolicy``, the engine's view of the shards' policies.

How the Ray runtime works (any scenario, no scenario code): every shard actor builds the same
world as the driver from the experiment (population, graph, scenario, policy; the seed makes
them identical) and keeps it in step: each step the driver sends the active agents, each shard
observes and decides for its own block in parallel and returns one ``ActionBatch``, the driver
applies the whole batch to its scenario (rows, metrics, checkpoints come from there) and sends
the batch to every shard, which applies it to its replica without being waited for (each actor
runs its calls in order). That is one waited call per shard per step (the decisions come back
with the policy's rows and measurements), whatever the number of agents. Decisions use per-agent random numbers keyed by agent id,
so a run gives the same database on 1, 2 or 4 shards as on the local runtime. Policy state
(e.g. LLM agents' memories) lives in the shard that decides for those agents and is saved per
shard in checkpoints, so a run resumes with the shard count it started with.

A shard that dies is recovered by the engine: it resumes the run from its last checkpoint
(``Simulation.run``), which rebuilds the shards.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .actions import ActionBatch
from .policy import Policy
from .scenario import merge_records

if TYPE_CHECKING:
    from populace.storage import Database

    from .scenario import Observation, Records, StepContext

log = logging.getLogger("populace.runtime")


class RuntimeConfig(BaseModel):
    """``runtime:``: where agents observe and decide.

    ``local`` runs everything in this process. ``ray`` splits the agents into ``shards`` Ray
    actors (see docs/ray.md); ``address`` is ``auto`` (a cluster started with ``ray start``),
    ``ray://host:10001`` (Ray Client) or ``host:6379``; unset starts a private Ray on this
    machine with ``num_cpus``.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="Ray cluster to join (auto, ray://host:port, "
                                "host:port); unset: start Ray on this machine")
    shards: int = Field(2, ge=1, le=1024, description="Ray actors the agents are split into")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the private Ray (default: "
                                 "all of this machine's)")
    connect_timeout_s: float = Field(30.0, gt=0, description="how long to wait for the cluster")
    call_timeout_s: float = Field(600.0, gt=0, description="longest a shard may take for one "
                                  "call before the run stops with an error")

    def updated(self, changes: dict[str, Any]) -> RuntimeConfig:
        """A copy with ``changes`` applied and validated (command-line overrides)."""
        return RuntimeConfig.model_validate({**self.model_dump(), **changes})


class ShardDiedError(RuntimeError):
    """A shard actor died (killed, out of memory, node lost); the run resumes from its last
    checkpoint."""


class RayUnavailableError(RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or it refused the shards."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError("runtime: ray needs Ray: pip install 'populace[ray]'") from exc
    return ray


def _check_reachable(address: str, timeout: float) -> None:
    """A clear error, within ``timeout``, when a host:port address does not answer."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if not parts.hostname or not parts.port:
        raise RayUnavailableError(f"runtime.address {address!r}: expected auto, "
                                  "ray://host:port or host:port")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            pass
    except OSError as exc:
        raise RayUnavailableError(f"runtime.address {address}: cannot reach the Ray cluster "
                                  f"({exc.strerror or exc}); is `ray start --head` running "
                                  "there?") from None


def connect(config: RuntimeConfig) -> Any:
    """Join or start Ray (once per process) and return the module."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    if config.address is not None:
        _check_reachable(config.address, config.connect_timeout_s)
        try:
            ray.init(address=config.address, log_to_driver=False,
                     ignore_reinit_error=True)
        except Exception as exc:  # version mismatch, refused client, ...
            raise RayUnavailableError(f"runtime.address {config.address}: Ray refused the "
                                      f"connection: {exc}") from exc
    else:
        ray.init(num_cpus=config.num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=False)
    return ray


def blocks(n_agents: int, shards: int) -> np.ndarray:
    """The first agent id of each shard's contiguous block, and ``n_agents`` at the end."""
    return np.linspace(0, n_agents, shards + 1).round().astype(np.int64)


class _Shard:
    """What runs inside a shard actor: a replica of the driver's world."""

    def __init__(self, config: dict[str, Any], source: str) -> None:
        from .config import experiment_from_dict
        from .engine import Simulation

        exp = experiment_from_dict(config, source=Path(source))
        exp.config.runtime = RuntimeConfig()  # the replica itself runs locally
        self.sim = Simulation(exp)  # its database is the driver's, given in attach
        self.sim._build()
        if self.sim.world.llm is not None:  # the scenario's own questions are the driver's:
            from .llm.service import ReplayedLLM  # the replica replays its answers

            self.sim.world.llm = ReplayedLLM()

    def pid(self) -> int:
        return os.getpid()

    def attach(self, db_url: str, run_id: int) -> None:
        from populace.storage import Database

        self.db = Database(db_url, create=False)
        self.sim.policy.attach(self.db, run_id)

    def decide(self, agents: np.ndarray, step: int
               ) -> tuple[ActionBatch, dict[str, np.ndarray], Records, dict[str, Any]]:
        """Observe and decide; with them, the policy's rows and measurements of the step (a
        policy produces both while deciding), so that no further call is needed."""
        ctx = self.sim._context(step)
        obs = self.sim.scenario.observe(agents, ctx)
        summary = self.sim.scenario.observation_summary(obs)
        actions = self.sim.policy.decide(obs, ctx)
        return (actions, summary, self.sim.policy.drain_records(),
                self.sim.policy.export_measurements())

    def apply(self, actions: ActionBatch, step: int, answers: list[Any]) -> None:
        if answers:
            self.sim.world.llm.queue = list(answers)  # type: ignore[union-attr]
        self.sim.scenario.apply(actions, self.sim._context(step))

    def state(self) -> dict[str, np.ndarray]:
        return self.sim.policy.state_dict()

    def load(self, scenario: dict[str, np.ndarray], policy: dict[str, np.ndarray]) -> None:
        self.sim.scenario.load_state_dict(scenario)
        self.sim.policy.load_state_dict(policy)

    def close(self) -> None:
        self.sim.policy.close()


class RayRuntime:
    """Shard actors for one run.

    Args:
        config: the ``runtime:`` section.
        experiment: the experiment as plain data, and the file it came from (an absolute path,
            so that shards on other machines or in other folders read the same files).
        n_agents: population size.
        policy_kind: the class of the run's policy (it pools the shards' measurements).
    """

    def __init__(self, config: RuntimeConfig, experiment: dict[str, Any], source: Path,
                 n_agents: int, policy_kind: type[Policy] = Policy) -> None:
        ray = connect(config)
        self.ray, self.config = ray, config
        cpus = ray.cluster_resources().get("CPU", 1.0)
        if config.shards > cpus:
            log.warning("runtime.shards is %d but the Ray cluster has %g CPUs: shards will "
                        "share CPUs and run slower than they could", config.shards, cpus)
        per_shard = min(1.0, cpus / config.shards)
        actor = ray.remote(num_cpus=per_shard, max_restarts=0)(_Shard)
        self.bounds = blocks(n_agents, config.shards)
        self._pending: list[Any] = []
        t0 = time.perf_counter()
        self.shards = [actor.remote(experiment, str(source))
                       for _ in range(config.shards)]
        self.pids = self._get([s.pid.remote() for s in self.shards])
        log.info("%d Ray shards ready in %.1f s", config.shards, time.perf_counter() - t0)
        self.policy = ShardedPolicy(self, policy_kind)

    def _get(self, refs: list[Any]) -> list[Any]:
        ray = self.ray
        try:
            return ray.get(refs, timeout=self.config.call_timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            raise ShardDiedError(f"a Ray shard died: {exc}") from exc
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(f"a Ray shard did not answer within runtime.call_timeout_s "
                               f"({self.config.call_timeout_s:g} s)") from None

    def decide(self, active: np.ndarray, step: int
               ) -> tuple[ActionBatch, dict[str, np.ndarray]]:
        """Every shard observes and decides for its active agents: one batch and the
        scenario's observation summary, both in activation order."""
        which = np.searchsorted(self.bounds, active, side="right") - 1
        refs = [shard.decide.remote(active[which == i], step)
                for i, shard in enumerate(self.shards) if (which == i).any()]
        if not refs:  # nobody active: shard 0 gives the empty batch with the right columns
            refs = [self.shards[0].decide.remote(active, step)]
        parts = self._get(refs)
        self._settle()  # the previous step's replays (they ran before these decisions)
        self.policy.gathered([p[2] for p in parts], [p[3] for p in parts])
        batch = ActionBatch.concat([p[0] for p in parts])
        order = np.argsort(batch.agent, kind="stable")
        pos = order[np.searchsorted(batch.agent[order], active)]
        summary = {k: np.concatenate([p[1][k] for p in parts])[pos] for k in parts[0][1]}
        return batch.take(pos), summary

    def apply(self, actions: ActionBatch, step: int, answers: list[Any] | None = None) -> None:
        """Every replica applies the step's whole batch (the driver applied it already), with
        the answers the driver's scenario got from the model while applying it.

        Not waited for: each actor runs its calls in order, so the replay happens before the
        shard's next decision, while the driver records the step; its errors surface with the
        next call (``_settle``).
        """
        ref = self.ray.put(actions)
        self._pending = [s.apply.remote(ref, step, answers or []) for s in self.shards]

    def _settle(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._get(pending)

    def load(self, scenario: dict[str, np.ndarray], policy: dict[str, np.ndarray]) -> None:
        """Give every replica the checkpoint's scenario state and its own policy state."""
        saved = int(policy["shards"][0]) if "shards" in policy else None
        if saved is not None and saved != len(self.shards):
            raise ValueError(f"the checkpoint holds the policy state of {saved} shards; resume "
                             f"with runtime.shards: {saved}")
        self._settle()
        ref = self.ray.put(scenario)
        self._get([s.load.remote(ref, {k.removeprefix(f"shard{i}."): v
                                       for k, v in policy.items()
                                       if k.startswith(f"shard{i}.")})
                   for i, s in enumerate(self.shards)])

    def kill(self, index: int) -> None:
        """Kill one shard (for fault tests)."""
        self.ray.kill(self.shards[index], no_restart=True)

    def close(self) -> None:
        """Close the shards' policies and end the actors."""
        try:
            self._settle()
            self._get([s.close.remote() for s in self.shards])
        except Exception:  # a dead shard has nothing to close
            log.debug("closing shards", exc_info=True)
        for s in self.shards:
            self.ray.kill(s, no_restart=True)
        self.shards = []


class ShardedPolicy(Policy):
    """The engine's view of the shards' policies: records, metrics and state are gathered."""

    def __init__(self, runtime: RayRuntime, kind: type[Policy]) -> None:
        self.runtime = runtime
        self.kind = kind  # the shards' policy class: it pools their measurements
        self._records: Records = {}
        self._metrics: dict[str, float] = {}

    def decide(self, obs: Observation, ctx: StepContext) -> ActionBatch:
        """Not used: on Ray the shards observe too (``RayRuntime.decide``)."""
        return self.runtime.decide(obs.agents, ctx.step)[0]

    def attach(self, db: Database, run_id: int) -> None:
        """Each shard connects its policy (LLM backends, response cache)."""
        rt = self.runtime
        rt._get([s.attach.remote(db.url, run_id) for s in rt.shards])

    def gathered(self, rows: list[Records], measurements: list[dict[str, Any]]) -> None:
        """The shards' rows and measurements of the step, returned with their decisions."""
        records: Records = {}
        for part in rows:
            merge_records(records, part)
        self._records = records
        self._metrics = self.kind.pool_measurements(measurements)

    def drain_records(self) -> Records:
        records, self._records = self._records, {}
        return records

    def step_metrics(self) -> dict[str, float]:
        metrics, self._metrics = self._metrics, {}
        return metrics

    def state_dict(self) -> dict[str, np.ndarray]:
        rt = self.runtime
        rt._settle()
        out: dict[str, np.ndarray] = {"shards": np.array([len(rt.shards)])}
        for i, state in enumerate(rt._get([s.state.remote() for s in rt.shards])):
            out.update({f"shard{i}.{k}": v for k, v in state.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError("use RayRuntime.load")

    def close(self) -> None:
        self.runtime.close()


__all__ = ["RayRuntime", "RayUnavailableError", "RuntimeConfig", "ShardDiedError", "blocks",
           "connect"]
