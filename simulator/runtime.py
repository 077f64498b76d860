"""Where the agents' phases run: in this process (``local``), or split into shards on Ray.

Core objects:
    RayRuntime: shard actors that each hold a replica of the world and decide for a block of
        agent ids, and the engine's views of them: ``ShardedScenario``, ``ShardedPolicy`` and
        ``ShardedLLM`` stand in for the driver's scenario, policy and scenario model.

How the Ray runtime works (any scenario, no scenario code): the driver builds the population
(activation needs it) but no world; every shard actor builds the world from the experiment (the
seed makes the replicas identical) and owns a block of agent ids. Each step the driver sends
the active agents; each shard observes, decides and ``resolve``s for its block in parallel; the
driver gathers one batch in activation order and hands it to every shard, which applies it to
its replica, in parallel again. A scenario that declares itself ``shardable`` keeps private
per-agent state (e.g. follow edges) only in the shard that owns the agent, so each shard
applies and measures only its share and returns its rows and ``metric_part``; other
scenarios are replicated whole and the lead shard (the one holding agent 0) returns the rows,
metrics and state. That is two waited calls per shard per step, whatever the number of agents.
Decisions use per-agent random numbers keyed by agent id and metrics sum over fixed chunks of
agent ids, so a run gives the same database on 1, 2 or 4 shards as on the local runtime.
Policy state (e.g. LLM agents' memories) lives in the shard that decides for those agents and
is saved per shard in checkpoints, so a run resumes with the shard count it started with.

A shard that dies is recovered by the engine: it resumes the run from its last checkpoint
(``Simulation.run``), which rebuilds the shards.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from .actions import ActionBatch
from .llm.config import LLMConfig
from .llm.model_actor import start_model_actor
from .policy import Policy, check_batch
from .records import AGENT_CHUNK, Records, joined_records
from .runtime_config import RuntimeConfig
from .scenario import Scenario
from .shard import ShardReplica
from .sharding import Shardable
from .steering import Boundary
from .step import Observation, StepContext

if TYPE_CHECKING:
    from populace.storage import Database

log = logging.getLogger("populace.runtime")


class ShardDiedError(RuntimeError):
    """A shard actor died (killed, out of memory, node lost); the run resumes from its last
    checkpoint."""


class RayUnavailableError(RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or it refused the shards."""


class RayClusterLostError(RayUnavailableError):
    """The Ray cluster's head stopped answering during a run: no shard can be recovered."""


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
    """The first agent id of each shard's contiguous block, and ``n_agents`` at the end.

    Blocks start at multiples of ``AGENT_CHUNK`` (metrics sum over such chunks), so with fewer
    than ``shards * AGENT_CHUNK`` agents some shards get none.
    """
    chunks = -(-n_agents // AGENT_CHUNK)
    bounds = np.linspace(0, chunks, shards + 1).round().astype(np.int64) * AGENT_CHUNK
    return np.minimum(bounds, n_agents)


class RayRuntime:
    """Shard actors for one run, and the engine's views of them.

    Args:
        config: the ``runtime:`` section.
        experiment: the experiment as plain data, and the file it came from (an absolute path,
            so that shards on other machines or in other folders read the same files).
        n_agents: population size.
        scenario_cls: the run's scenario class (its sharding hooks pool the shards' parts).
        llm: the experiment's ``llm:`` section, if any: the scenario may then ask the model
            while applying a step (the lead shard applies first and the others replay its
            answers), and with ``transformers.ray_actor`` one actor holds the model.
        metrics_due: whether the engine asks for the metrics of a step (the shards then
            measure right after applying it, in the same call).
        next_active: the agents active at a step, or None when the shards must not decide for
            it before the previous step is recorded (after a checkpoint, past the end);
            otherwise they decide for it as soon as they have applied the previous one, while
            the driver records.
        resume_hint: the command that resumes this run (for the error when the cluster is
            lost).
    """

    def __init__(self, config: RuntimeConfig, experiment: dict[str, Any], source: Path,
                 n_agents: int, scenario_cls: type[Scenario[Any, Any, Any, Any]],
                 llm: LLMConfig | None,
                 *, metrics_due: Callable[[int], bool],
                 next_active: Callable[[int], np.ndarray | None], resume_hint: str) -> None:
        ray = connect(config)
        self.ray, self.config, self.resume_hint = ray, config, resume_hint
        resources = ray.cluster_resources()
        cpus = resources.get("CPU", 1.0)
        if config.shards > cpus:
            log.warning("runtime.shards is %d but the Ray cluster has %g CPUs: shards will "
                        "share CPUs and run slower than they could", config.shards, cpus)
        per_shard = min(1.0, cpus / config.shards)
        model_gpus = (llm.transformers.ray_num_gpus if llm is not None
                      and llm.backend == "transformers" and llm.transformers.ray_actor else None)
        # the shards and the model actor together: GPUs asked for and not there would be
        # waited for without end
        asked = [f"runtime.shard_gpus is {config.shard_gpus:g} for {config.shards} shards"]
        if model_gpus is not None:
            asked.append(f"llm.transformers.ray_num_gpus is {model_gpus:g}")
        gpus = resources.get("GPU", 0.0)
        if config.shard_gpus * config.shards + (model_gpus or 0) > gpus:
            raise RayUnavailableError(f"{' and '.join(asked)}, but the Ray cluster has "
                                      f"{gpus:g} GPUs")
        self.model, model_name = None, None
        if model_gpus is not None:
            t0, model_name = time.perf_counter(), f"populace-model-{uuid.uuid4().hex}"
            self.model = start_model_actor(ray, llm, source.parent, model_name,
                                           config.call_timeout_s)
            log.info("the model actor loaded %s in %.1f s", llm.model, time.perf_counter() - t0)
        actor = ray.remote(num_cpus=per_shard, num_gpus=config.shard_gpus,
                           max_restarts=0)(ShardReplica)
        self.bounds = blocks(n_agents, config.shards)
        if (np.diff(self.bounds) == 0).any():
            log.warning("%d agents in %d shards: shards own blocks of %d agent ids, so some "
                        "own none", n_agents, config.shards, AGENT_CHUNK)
        t0 = time.perf_counter()
        last = config.shards - 1  # the last shard takes the agents that join mid-run
        self.shards = [actor.remote(experiment, str(source), int(lo), int(hi), i == last,
                                    model_name)
                       for i, (lo, hi) in enumerate(zip(self.bounds[:-1], self.bounds[1:],
                                                        strict=True))]
        info = self._get([s.info.remote() for s in self.shards])
        self.pids = [pid for pid, _ in info]
        log.info("%d Ray shards ready in %.1f s", config.shards, time.perf_counter() - t0)
        self.policy = ShardedPolicy(self, info[0][1])
        self.llm = ShardedLLM() if llm is not None else None
        self.scenario = ShardedScenario(self, scenario_cls, self.llm, metrics_due)
        self.next_active = next_active
        self._ahead: tuple[int, np.ndarray, list[Any]] | None = None

    def _get(self, refs: list[Any]) -> list[Any]:
        ray = self.ray
        try:
            return ray.get(refs, timeout=self.config.call_timeout_s)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            self._check_head()
            raise ShardDiedError(f"a Ray shard died: {exc}") from exc
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(f"a Ray shard did not answer within runtime.call_timeout_s "
                               f"({self.config.call_timeout_s:g} s)") from None
        except ray.exceptions.RayTaskError as exc:
            # an error the shard's code raised (e.g. the model stopped answering): the
            # original exception, so that callers see its type and message, not Ray's wrapping
            if isinstance(exc.cause, Exception):
                raise exc.cause from exc
            raise

    def _check_head(self) -> None:
        """Raise ``RayClusterLostError`` when the cluster's head (its GCS) does not answer: a
        shard lost with its cluster cannot be replaced (Ray itself would end this process
        after a minute of retries)."""
        address = self.ray.get_runtime_context().gcs_address
        try:
            _check_reachable(address, min(5.0, self.config.connect_timeout_s))
        except RayUnavailableError:
            raise RayClusterLostError(
                f"the Ray cluster is gone: its head ({address}) does not answer. The steps "
                f"committed so far are in the database; `{self.resume_hint} --runtime local` "
                "continues from the last checkpoint (or `--runtime ray` once the cluster is "
                "back)") from None

    def call(self, method: str, *args: Any) -> list[Any]:
        """Call ``method`` on every shard at once; their results in shard order."""
        return self._get([getattr(s, method).remote(*args) for s in self.shards])

    def _owner(self, agents: np.ndarray) -> np.ndarray:
        """The shard index of each agent (agents that joined mid-run, past the last block's
        start, are the last shard's)."""
        return np.searchsorted(self.bounds[:-1], agents, side="right") - 1

    def _send_decide(self, active: np.ndarray, step: int,
                     scripted: ActionBatch | None = None) -> list[Any]:
        which = self._owner(active)
        if scripted is None:
            refs = [shard.decide.remote(active[which == i], step)
                    for i, shard in enumerate(self.shards) if (which == i).any()]
        else:
            by = self._owner(scripted.agent)
            refs = [shard.decide.remote(active[which == i], step, scripted.take(by == i))
                    for i, shard in enumerate(self.shards)
                    if (which == i).any() or (by == i).any()]
        if not refs:  # nobody active: shard 0 gives the empty batch with the right columns
            refs = [self.shards[0].decide.remote(active, step)]
        return refs

    def deciding(self, step: int) -> bool:
        """Whether the shards were already asked to decide for ``step`` (ahead of it)."""
        return self._ahead is not None and self._ahead[0] == step

    def steer(self, events: list[tuple[str, Any]], step: int) -> Boundary:
        """Every replica applies the events of the boundary before ``step``; the lead's
        results and selections, and the rows (every replica's for a shardable scenario)."""
        parts: list[Boundary] = self.call("steer", events, step)
        lead = parts[0]
        if self.scenario.shardable:
            lead.records = joined_records([p.records for p in parts])
        return lead

    def interview(self, agents: np.ndarray, name: str, event: Any, step: int) -> Records:
        """The shards that own ``agents`` (in id order) answer for them."""
        which = self._owner(agents)
        refs = [shard.interview.remote(agents[which == i], name, event, step)
                for i, shard in enumerate(self.shards) if (which == i).any()]
        return joined_records(self._get(refs)) if refs else {}

    def decide_ahead(self, step: int) -> None:
        """Let the shards decide for ``step`` right after the call queued before (each actor
        runs its calls in order), if the engine allows it (``next_active``)."""
        active = self.next_active(step)
        if active is not None:
            self._ahead = (step, active, self._send_decide(active, step))

    def decide(self, active: np.ndarray, step: int, scripted: ActionBatch | None = None
               ) -> tuple[ActionBatch, dict[str, np.ndarray]]:
        """Every shard observes, decides and resolves for its active agents: one batch and
        the scenario's observation summary, in activation order (the batch checked like the
        local runtime's: one known action per active agent). ``scripted`` actions come first
        in the batch, and the agents they name do not decide."""
        ahead, self._ahead = self._ahead, None
        if (scripted is None and ahead is not None and ahead[0] == step
                and np.array_equal(ahead[1], active)):
            refs = ahead[2]
        else:
            if ahead is not None and ahead[0] == step:
                raise RuntimeError(f"the shards decided step {step} ahead, before its events "
                                   "were known")
            refs = self._send_decide(active, step, scripted)
        parts = self._get(refs)
        self.policy.gathered([p[2] for p in parts], [p[3] for p in parts])
        batch = ActionBatch.concat([p[0] for p in parts])
        expected = active
        if scripted is not None and len(scripted):
            expected = np.concatenate([scripted.agent,
                                       active[~np.isin(active, scripted.agent)]])
        order = np.argsort(batch.agent, kind="stable")
        pos = order[np.searchsorted(batch.agent[order], expected)]
        batch = batch.take(pos)
        check_batch(batch, expected, self.scenario.actions, self.scenario.name)
        # the summary rows follow each shard's active agents, in shard order
        seen = np.concatenate([active[self._owner(active) == i]
                               for i in range(len(self.shards))]) if len(active) else active
        order = np.argsort(seen, kind="stable")
        spos = order[np.searchsorted(seen[order], active)]
        summary = {k: np.concatenate([p[1][k] for p in parts])[spos] for k in parts[0][1]}
        return batch, summary

    def close(self) -> None:
        """Close the shards' policies and end the actors."""
        self._ahead = None
        try:
            self.call("close")
        except Exception:  # a dead shard has nothing to close
            log.debug("closing shards", exc_info=True)
        for s in self.shards:
            self.ray.kill(s, no_restart=True)
        self.shards = []
        if self.model is not None:
            self.ray.kill(self.model, no_restart=True)
            self.model = None


class ShardedScenario:
    """The engine's view of the shards' scenario replicas.

    A ``shardable`` scenario's rows are every replica's, its metrics are pooled from every
    replica's ``metric_part``, its state merged with ``merge_states`` and its agent state
    joined in shard order; a replicated scenario's are the lead replica's.
    """

    def __init__(self, runtime: RayRuntime, cls: type[Scenario[Any, Any, Any, Any]], llm: ShardedLLM | None,
                 metrics_due: Callable[[int], bool]) -> None:
        self.runtime, self.cls, self.llm, self.metrics_due = runtime, cls, llm, metrics_due
        self.name, self.actions, self.tables = cls.name, cls.actions, cls.tables
        self.action_table, self.trace_columns = cls.action_table, cls.trace_columns
        self.shardable = issubclass(cls, Shardable)
        self._seen: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
        self._applied: ActionBatch | None = None
        self._measured: list[Any] | None = None

    def _records(self, parts: list[Records]) -> Records:
        return joined_records(parts) if self.shardable else parts[0]

    def setup(self) -> Records:
        """The rows that describe the initial state (the replicas built it already)."""
        return self._records(self.runtime.call("setup"))

    def observed(self, agents: np.ndarray, summary: dict[str, np.ndarray]) -> None:
        """Kept for the lead replica, which gets it with the step's batch."""
        self._seen = (agents, summary)

    def apply(self, actions: ActionBatch, ctx: StepContext) -> Records:
        """Every replica applies the resolved batch; the step's rows."""
        rt = self.runtime
        ref = rt.ray.put(actions)
        agents, summary = self._seen if self._seen is not None else (None, None)
        self._seen = None
        lead, rest = rt.shards[0], rt.shards[1:]
        measure = self.metrics_due(ctx.step)
        if self.llm is not None and rest:  # the lead asks the model, the others replay
            first = [lead.apply.remote(ref, ctx.step, agents, summary, None, measure)]
            done = rt._get(first)
            answers = done[0][2][0] if done[0][2] is not None else []
            refs = first + [s.apply.remote(ref, ctx.step, None, None, answers, measure)
                            for s in rest]
        else:
            refs = ([lead.apply.remote(ref, ctx.step, agents, summary, None, measure)]
                    + [s.apply.remote(ref, ctx.step, None, None, None, measure) for s in rest])
        rt.decide_ahead(ctx.step + 1)  # queued behind the apply on every shard
        parts = rt._get(refs)
        actions.args.update(parts[0][1])  # outcomes the lead's apply filled in
        if self.llm is not None and parts[0][2] is not None:
            self.llm.received(*parts[0][2][1:])
        self._applied = actions
        self._measured = [p[3] for p in parts] if measure else None
        return self._records([p[0] for p in parts])

    def metrics(self, actions: ActionBatch, ctx: StepContext) -> dict[str, float]:
        """The step's metrics, pooled from the replicas (lead's for a replicated scenario);
        measured with the step's ``apply`` when it was due."""
        if actions is self._applied and self._measured is not None:
            parts, self._measured = self._measured, None
        else:
            parts = self.runtime.call("metrics", ctx.step, actions)
        if issubclass(self.cls, Shardable):
            return self.cls.pool_metrics(parts)
        return parts[0]

    def finish(self, ctx: StepContext) -> Records:
        """End-of-run rows."""
        return self._records(self.runtime.call("finish", ctx.step))

    def agent_state(self) -> dict[str, np.ndarray]:
        """Per-agent state over all agents."""
        parts = self.runtime.call("agent_state")
        if not self.shardable:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def state_dict(self) -> dict[str, np.ndarray]:
        """The run's scenario state, as the local runtime's ``state_dict`` gives it."""
        parts = self.runtime.call("scenario_state")
        if issubclass(self.cls, Shardable):
            return self.cls.merge_states(parts)
        return parts[0]

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Every replica loads the checkpoint's state (a shardable one keeps its part)."""
        rt = self.runtime
        ref = rt.ray.put(state)
        rt._get([s.load_scenario.remote(ref) for s in rt.shards])


class _Received:
    """Rows and metrics that came back from the shards, handed to the engine once."""

    _records: Records
    _metrics: dict[str, float]

    def drain_records(self) -> Records:
        records, self._records = self._records, {}
        return records

    def step_metrics(self) -> dict[str, float]:
        metrics, self._metrics = self._metrics, {}
        return metrics


class ShardedPolicy(_Received, Policy):
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
        """Each shard connects its policy (LLM backends, response cache), and the lead shard
        its scenario's model."""
        self.runtime.call("attach", db.url, run_id)

    def gathered(self, rows: list[Records], measurements: list[dict[str, Any]]) -> None:
        """The shards' rows and measurements of the step, returned with their decisions."""
        self._records = joined_records(rows)
        self._metrics = self.kind.pool_measurements(measurements)

    def state_dict(self) -> dict[str, np.ndarray]:
        rt = self.runtime
        out: dict[str, np.ndarray] = {"shards": np.array([len(rt.shards)])}
        for i, state in enumerate(rt.call("policy_state")):
            out.update({f"shard{i}.{k}": v for k, v in state.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Give every shard its own policy state from the checkpoint."""
        rt = self.runtime
        if "shards" not in state:
            if state:
                raise ValueError("this run's checkpoint holds its policy state in one "
                                 "process; resume it with runtime local")
            return
        saved = int(state["shards"][0])
        if saved != len(rt.shards) and len(state) > 1:
            raise ValueError(f"the checkpoint holds the policy state of {saved} shards; resume "
                             f"with runtime.shards: {saved}")
        rt._get([s.load_policy.remote({k.removeprefix(f"shard{i}."): v
                                       for k, v in state.items()
                                       if k.startswith(f"shard{i}.")})
                 for i, s in enumerate(rt.shards)])

    def close(self) -> None:
        self.runtime.close()


class ShardedLLM(_Received):
    """The engine's view of the scenario's model, which the lead shard asks: its rows and
    metrics come back with each step's ``apply``."""

    def __init__(self) -> None:
        self._records: Records = {}
        self._metrics: dict[str, float] = {}

    def received(self, records: Records, metrics: dict[str, float]) -> None:
        """The lead shard's rows and metrics of the step."""
        self._records, self._metrics = records, metrics

    def attach(self, db: Database) -> None:
        """The lead shard connects (``ShardedPolicy.attach``)."""

    def close(self) -> None:
        """The lead shard closes its backend with the actor."""


__all__ = ["RayClusterLostError", "RayRuntime", "RayUnavailableError", "RuntimeConfig",
           "ShardDiedError",
           "ShardedLLM", "ShardedPolicy", "ShardedScenario", "blocks", "connect"]
