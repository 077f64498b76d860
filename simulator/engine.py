"""The simulation engine: one run of an experiment, step by step, recorded in a database.

Core objects:
    Simulation: builds the world (population, follow graph, scenario, policy) from an
        ``Experiment`` and runs it; ``Simulation.resume`` continues a run that died.
    StepReport: what one step did (for progress display and callers).

One step: activate -> observe -> decide -> apply -> record -> metrics -> (checkpoint). The rows of
a step, its metrics, the run row's progress and (when due) the checkpoint are written in one
transaction, so a step is either wholly in the database or not at all. Random numbers come from
``RngStreams`` keyed by (purpose, step), so a resumed run continues exactly as an uninterrupted one.

One writer per run: the process that creates or resumes a run holds its lease
(``populace.storage.leases``), and every transaction that writes the run checks it first, so a
second ``populace resume`` of a run that is still being written is refused (naming the writer)
and a writer whose lease was taken over cannot commit anything more. A new run's row, its
lease, its agents and its step 0 (with a checkpoint) are one transaction: an interrupted
set-up leaves either no run or one that resumes.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from populace.storage import Database, Run, StorageError
from populace.storage.control import mark_command, pending_commands, send_command
from populace.storage.database import redact
from populace.storage.leases import LeaseLostError, RunLease
from populace.storage.read_indexes import (
    attribute_kinds,
    ensure_attribute_indexes,
    ensure_read_indexes,
)
from populace.storage.runs import (
    create_run,
    find_run,
    finish_run,
    last_committed_step,
    load_checkpoint,
    now,
    save_checkpoint,
    update_run,
)
from populace.storage.schema import CORE_STEP_TABLES, Agent, Departure, EventRecord

from . import interrupts
from .actions import ActionBatch
from .activation import Activation
from .build import build_world
from .config import Experiment, experiment_from_dict
from .events import changed_config, check_events, parse_event
from .llm.preflight import prepare_llm
from .llm.tables import STEP_TABLES as LLM_STEP_TABLES
from .local_runtime import LocalRuntime
from .policy import Policy
from .population import Population, build_population
from .reader_indexes import reader_indexes
from .records import Records, merge_records
from .rng import RngStreams
from .runtime import RayRuntime, ShardDiedError, ShardedScenario
from .scenario import Scenario
from .steering import (
    Schedule,
    Scheduled,
    SteeringError,
    boundary_groups,
    check_live,
    event_records,
    grow_world,
    live_event,
    resolve_join,
    scripted_batch,
)
from .step import StepContext, step_context
from .version import package_version
from .world import World

MAX_RECOVERIES = 3  # shard deaths a run survives before it stops
log = logging.getLogger("populace.engine")


def resume_command(name: str, db_url: str) -> str:
    """The ``populace resume`` command for run ``name`` in ``db_url`` (password hidden)."""
    return f"populace resume {name} --db {redact(db_url)}"


class RunStopped(Exception):
    """A ``stop`` command ended the run before its last step (it stays resumable)."""


@dataclass
class StepReport:
    """What one step did."""

    step: int
    n_active: int
    n_actions: int
    compute_s: float
    record_s: float
    metrics: dict[str, float]


class Simulation:
    """One run of an experiment.

    Args:
        experiment: the validated experiment.
        db_url: overrides ``storage.url``.

    Use ``run()`` to simulate every remaining step; the result is a ``populace.storage.Run``
    handle whose tables load as DataFrames.
    """

    def __init__(self, experiment: Experiment, db_url: str | None = None) -> None:
        self.experiment = experiment
        self.config = experiment.config
        self.db_url = db_url or self.config.storage_url()
        self.rng = RngStreams(self.config.seed)
        self.clock = self.config.clock()
        self.run_id: int | None = None
        self.step = 0
        self.db: Database | None = None
        self.setup_s = 0.0
        self.wall_s = 0.0
        self._writer: ThreadPoolExecutor | None = None
        self._pending: Future[float] | None = None
        self.runtime: LocalRuntime | RayRuntime | None = None
        self._drawn: tuple[int, np.ndarray] | None = None
        self.world: World
        self.scenario: Scenario[Any, Any, Any, Any] | ShardedScenario
        self.policy: Policy[Any, Any]
        self.lease: RunLease | None = None
        self.stage_hook: Callable[[str | None], None] | None = None
        """Called with each set-up stage's name as it starts, and None when set-up is done
        (``progress.SetupProgress`` prints them)."""
        self.schedule = Schedule.of(self.config.events, self.config.steps, self.clock)
        self.scenario_config: BaseModel = experiment.scenario_config
        """The scenario's config as parameter events left it."""
        self.paused = False
        self.stop_requested = False
        self._taken: set[int] = set()  # control commands already scheduled
        self._marks: list[tuple[int, int]] = []  # (command, step) applied with the next commit
        # rows of Python interviews, written with the step they belong to (kept until then:
        # a step that a Ray shard's death undoes is done again with them)
        self._carried: tuple[int, Records] | None = None
        self._interviews = 0  # Python interviews asked by this process (their default names)
        self._driving = False  # inside run(): no Python code runs between two steps

    def _stage(self, name: str | None) -> None:
        if self.stage_hook is not None:
            self.stage_hook(name)
            if name is None:  # set-up is over: a later rebuild (a lost shard) logs instead
                self.stage_hook = None

    # -- building --------------------------------------------------------------------------------

    def _build(self) -> Records:
        """Build population, activation and the world (on the Ray runtime: the shards build
        it); return the set-up rows."""
        cfg = self.config
        t0 = time.perf_counter()
        size = cfg.population.size
        self._stage("population" + (f" ({size:,} agents)" if size is not None else " (file)"))
        population = build_population(cfg.population, self.rng.get("population"),
                                      self.experiment.base_dir)
        self.activation = Activation(cfg.activation, population.attributes, self.rng)
        if self.runtime is not None:
            self.runtime.close()
        if cfg.runtime.type == "ray":
            self._stage(f"Ray shards ({cfg.runtime.shards}) build the world")
            records = self._start_shards(population)
        else:
            built = build_world(self.experiment, population, self.clock, self.rng,
                                stage=self._stage)
            self.world, self.scenario, self.policy = built.world, built.scenario, built.policy
            self.runtime = LocalRuntime(self.scenario, self.policy, self._context)
            records = built.records
        self.setup_s = time.perf_counter() - t0
        return records

    def _start_shards(self, population: Population) -> Records:
        """Start the Ray shards, which build the world from the experiment; the driver keeps
        the population and the shards' views. Returns the set-up rows."""
        if self.db_url in ("sqlite://", "sqlite:///"):
            raise ValueError("runtime: ray needs a database file or server that the shards can "
                             "open, not an in-memory SQLite database")
        source = self.experiment.source
        source = (source.resolve() if source is not None
                  else Path.cwd() / f"{self.config.name}.yaml")  # base_dir for relative paths
        runtime = RayRuntime(self.config.runtime, self.experiment.to_dict(), source,
                             population.size, self.experiment.scenario_cls,
                             self.config.llm,
                             metrics_due=self._metrics_due, next_active=self._next_active,
                             resume_hint=resume_command(self.config.name, self.db_url))
        self.runtime = runtime
        self.world = World(population, None, self.clock, self.rng, self.experiment.base_dir,
                           runtime.llm)  # type: ignore[arg-type]  (the lead shard's model)
        self.scenario = runtime.scenario  # type: ignore[assignment]  (the shards' view)
        self.policy = runtime.policy
        return self.scenario.setup()

    def _metrics_due(self, step: int) -> bool:
        return step % self.config.metrics.every == 0 or step == self.config.steps

    def _checkpoint_due(self, step: int) -> bool:
        return step % self.config.checkpoint_every == 0 or step == self.config.steps

    def _next_active(self, step: int) -> np.ndarray | None:
        """Who acts at ``step``, for Ray shards that would decide for it before step - 1 is
        recorded: not after a checkpoint (it must hold the policy's state before that
        decision), not past the end. Activation depends on the step only."""
        if step > self.config.steps or self._checkpoint_due(step - 1):
            return None
        if not self._driving:
            return None  # advance() called by hand: Python may steer before the next step
        if self.schedule.due(step) or self._commands_waiting():
            return None  # events change what agents see and do: decide after them
        return self._active(step)

    def _active(self, step: int) -> np.ndarray:
        """The agents active at ``step`` (drawn once, also when the shards asked ahead)."""
        if self._drawn is None or self._drawn[0] != step:
            self._drawn = (step, self.activation.draw(step, self.clock.hour(step)))
        active, present = self._drawn[1], self.world.present
        # agents that left are drawn as before (the draws of the others do not move)
        return active if present.all() else active[present[active]]

    def _context(self, step: int) -> StepContext:
        return step_context(self.clock, self.rng, step)

    # -- starting and resuming -------------------------------------------------------------------

    def start(self) -> int:
        """Create the run in the database and record its initial state (step 0).

        The run row, its lease, the agents and step 0 with its checkpoint are one
        transaction: interrupted (Ctrl-C, kill) before it commits, no run exists; after, the
        run resumes from step 0.
        """
        # before anything is built or created: the model answers, the replay source exists
        prepare_llm(self.config, self.db_url)
        # build first: a population or graph that cannot be built leaves no database behind
        records = self._build()
        self.db = Database(self.db_url)
        exp = self.experiment
        pop = self.world.population
        lease = RunLease(self.db)
        self._stage("recording step 0")
        try:
            with self.db.transaction() as conn:
                self.run_id = create_run(
                    self.db, conn=conn, name=self.config.name, scenario=self.scenario.name,
                    seed=self.config.seed, n_agents=pop.size, steps_planned=self.config.steps,
                    config=exp.to_dict(), config_yaml=exp.yaml_text,
                    config_path=str(exp.source.resolve()) if exp.source else None,
                    package_version=package_version(), setup_s=self.setup_s,
                )
                lease.insert(conn, self.run_id)
                self.lease = lease
                self._record_setup(conn, records)
        except BaseException:
            lease.stop()
            self.lease, self.run_id = None, None
            raise
        lease.start_heartbeat()
        self._stage(None)
        self.step = 0
        return self.run_id

    def _record_setup(self, conn: Connection, records: Records) -> None:
        """Attach the policy and the model to the run, and write step 0 (the agents, the
        scenario's set-up rows, the first metrics and checkpoint) in ``conn``'s transaction."""
        assert self.db is not None and self.run_id is not None
        pop = self.world.population
        attributes = (pop.attributes.to_json(orient="records", lines=True,
                                             date_format="iso").splitlines()
                      if len(pop.attributes.columns) else ["{}"] * pop.size)
        agents = {"agent_id": np.arange(pop.size, dtype=np.int64), "attributes": attributes}
        self.policy.attach(self.db, self.run_id)
        if self.world.llm is not None:
            self.world.llm.attach(self.db)
        ctx = self._context(0)
        metrics = self.scenario.metrics(self._empty_batch(), ctx)
        self._commit(0, records, metrics, n_active=0, n_actions=0, compute_s=self.setup_s,
                     checkpoint=True, extra={"agents": agents}, background=False, conn=conn)

    @classmethod
    def resume(cls, db_url: str, run: int | str | None = None, *,
               runtime: dict[str, Any] | None = None,
               stage_hook: Callable[[str | None], None] | None = None) -> Simulation:
        """Reopen a run that stopped and prepare to continue after its last checkpoint.

        Rows written after that checkpoint are deleted, so the finished database is the one an
        uninterrupted run would have written. ``runtime`` overrides keys of the run's
        ``runtime:`` section (e.g. ``{"type": "local"}`` when its Ray cluster is gone).

        Raises:
            LeaseHeldError: another live process is writing the run (nothing is changed).
        """
        db = Database(db_url, create=False)
        db.create_tables()  # a database from before run leases gets their table
        info = find_run(db, run)
        if info["status"] == "completed":
            raise StorageError(f"run {info['id']} ({info['name']}) is already completed")
        # the lease first, before the (long) rebuild: a second writer is refused at once
        lease = RunLease(db)
        lease.acquire(int(info["id"]), info["name"])
        lease.start_heartbeat()
        try:
            # read again under the lease: the writer we waited for may have completed it
            info = find_run(db, int(info["id"]))
            if info["status"] == "completed":
                raise StorageError(f"run {info['id']} ({info['name']}) is already completed")
            source = Path(info["config_path"]) if info.get("config_path") else None
            exp = experiment_from_dict(dict(info["config"]), source=source)
            exp.yaml_text = info.get("config_yaml")
            if runtime:
                exp.config.runtime = exp.config.runtime.updated(runtime)
            sim = cls(exp, db_url=db_url)
            sim.stage_hook = stage_hook
            sim.db = db
            sim.run_id = int(info["id"])
            sim.lease = lease
            prepare_llm(sim.config, db_url, sim.run_id)  # never replays itself; model answers
            sim._restore()
            sim._stage(None)
        except BaseException:
            # give the run back as it was (still resumable): nothing of it was changed unless
            # _restore's transaction committed, after which it resumes from there
            lease.stop()
            try:
                with db.transaction() as conn:
                    lease.release(conn)
            except Exception:  # the database may be what failed; the lease then times out
                log.exception("could not release the lease of run %s", info["id"])
            raise
        return sim

    def _restore(self) -> None:
        """Rebuild the world and continue from the run's last checkpoint (on resume, and when a
        Ray shard died). Rows written after that checkpoint are deleted, in a transaction that
        holds the run's lease.

        A run without a checkpoint (written by a version whose set-up was not one transaction,
        and interrupted during it) starts again from step 0 under the same id.
        """
        db, lease = self.db, self.lease
        assert db is not None and self.run_id is not None and lease is not None
        records = self._build()
        try:
            step, blob = load_checkpoint(db, self.run_id)
        except StorageError:
            if last_committed_step(db, self.run_id) > 0:  # it had steps: never start over
                raise
            self._restart(records)
            return
        self.policy.attach(db, self.run_id)
        if self.world.llm is not None:
            self.world.llm.attach(db)
        self._stage(f"restoring the checkpoint of step {step}")
        state = dict(np.load(io.BytesIO(blob), allow_pickle=False))
        scenario_state = {k.removeprefix("scenario."): v for k, v in state.items()
                          if k.startswith("scenario.")}
        policy_state = {k.removeprefix("policy."): v for k, v in state.items()
                        if k.startswith("policy.")}
        self._restore_joins(step)
        self.scenario.load_state_dict(scenario_state)
        if isinstance(self.runtime, LocalRuntime) and "shards" in policy_state:
            n = int(policy_state["shards"][0])
            if len(policy_state) > 1:  # the policy had state, kept per shard
                raise ValueError(f"this run's checkpoint holds its policy state in {n} Ray "
                                 f"shards; resume it with runtime ray and {n} shards")
        else:
            self.policy.load_state_dict(policy_state)
        self.wall_s = float(state["engine.wall_s"])
        self._restore_steering(step)
        with db.transaction() as conn:
            lease.check(conn)  # deletes only while this process holds the run
            # agents that joined after the checkpoint (ids past the world restored) go too
            conn.execute(sa.delete(Agent).where(Agent.run_id == self.run_id,
                                                Agent.agent_id >= self.world.n_agents))
            db.delete_after(conn, self.run_id, step,
                            (*CORE_STEP_TABLES, *LLM_STEP_TABLES, *self.scenario.tables))
            update_run(db, self.run_id, conn=conn, status="running", steps_done=step, error=None,
                       n_agents=self.world.n_agents)
        self.step = step
        log.info("run %s continues from step %s", self.run_id, step)

    def _restore_steering(self, step: int) -> None:
        """After loading the checkpoint of ``step``: apply again the parameter changes made up
        to it (a scenario's config is not in its state) and the departures, and schedule the
        live events applied after it at the steps they were applied at (before their rows are
        deleted)."""
        db, run_id = self.db, self.run_id
        assert db is not None and run_id is not None and self.runtime is not None
        self.scenario_config = self.experiment.scenario_config
        for row in self._recorded(db, run_id, up_to=step, kind="parameter"):
            event = parse_event(json.loads(row["spec"]))
            self.runtime.steer([(row["name"], event)], int(row["step"]))
            self.scenario_config = changed_config(self.scenario_config, event.changes)
        t = Departure
        with db.engine.connect() as conn:
            left = np.asarray(conn.execute(sa.select(t.agent_id).where(
                t.run_id == run_id, t.step <= step).order_by(t.agent_id)).scalars().all(),
                dtype=np.int64)
        if len(left):  # every replica's world, and the driver's
            gone = parse_event({"kind": "leave", "at": max(step, 1), "agents": {
                "ids": left.tolist()}})
            self.runtime.steer([("departures", gone)], max(step, 1))
            self.world.present[left] = False
        self._schedule_recorded(db, run_id, keep_commands=True)

    def _restart(self, records: Records) -> None:
        """Start a run that has no checkpoint again from step 0: its rows are replaced by
        freshly built ones in one transaction (the lease checked first)."""
        db, lease = self.db, self.lease
        assert db is not None and self.run_id is not None and lease is not None
        self._stage("recording step 0 again (the run had no checkpoint)")
        self.wall_s = 0.0
        with db.transaction() as conn:
            lease.check(conn)
            db.delete_after(conn, self.run_id, -1,
                            (*CORE_STEP_TABLES, *LLM_STEP_TABLES, *self.scenario.tables))
            conn.execute(sa.delete(Agent).where(Agent.run_id == self.run_id))
            update_run(db, self.run_id, conn=conn, status="running", steps_done=0, error=None,
                       setup_s=self.setup_s, wall_s=0.0)
            self._record_setup(conn, records)
        self.step = 0
        log.info("run %s had no checkpoint: started again from step 0", self.run_id)

    # -- stepping --------------------------------------------------------------------------------

    def run(self, progress: Callable[[StepReport], None] | None = None) -> Run:
        """Simulate every remaining step; return a handle on the recorded run."""
        if self.run_id is None:
            self.start()
        assert self.db is not None and self.run_id is not None
        self._held_lease()  # before computing a step that could not be written
        recoveries = 0
        self._driving = True
        try:
            while self.step < self.config.steps:
                self._wait_if_paused()
                try:
                    report = self.advance()
                except ShardDiedError as died:
                    recoveries += 1
                    if recoveries > MAX_RECOVERIES:
                        raise ShardDiedError(
                            f"{died}; this run has lost a shard {recoveries} times and resumed "
                            "from its last checkpoint after each of the first "
                            f"{MAX_RECOVERIES}. Shards that keep dying have often run out of "
                            "memory (Ray's logs say so): give them more, or split the agents "
                            "into more shards") from died
                    log.warning("%s; continuing from the last checkpoint (recovery %d of %d)",
                                died, recoveries, MAX_RECOVERIES)
                    self.flush()
                    self._restore()
                    continue
                if progress is not None:
                    progress(report)
            self.flush()
            self._refuse_queued()
            self.close()
        except BaseException as exc:
            try:  # let the steps already handed to the writer land before marking the run
                self.close(keep_lease=True)
            except Exception:
                log.exception("the last step's write failed too")
            self._mark_stopped(exc)
            raise
        finally:
            self._driving = False
        # a finished SQLite file leaves write-ahead logging: one self-contained file that
        # read-only storage can serve (best effort; another connection keeps it in WAL)
        self.db.finish()
        return Run(self.db, self.run_id)

    def _mark_stopped(self, exc: BaseException) -> None:
        """Mark the run interrupted or failed and release its lease, if this process still
        holds it (a process whose lease was taken over leaves the run to its new writer)."""
        assert self.db is not None and self.run_id is not None
        lease, self.lease = self.lease, None
        if lease is None:
            return
        lease.stop()
        if isinstance(exc, LeaseLostError):
            return
        status = ("interrupted" if interrupts.was_interrupted(exc)
                  else "stopped" if isinstance(exc, RunStopped) else "failed")
        try:
            if not finish_run(self.db, self.run_id, lease, status=status,
                              error=f"{type(exc).__name__}: {exc}"):
                log.warning("run %s was taken over by another process; not marking it %s",
                            self.run_id, status)
        except Exception:  # the database itself may be what failed
            log.exception("could not mark run %s as %s", self.run_id, status)

    def advance(self) -> StepReport:
        """Compute the next step and hand its rows to the writer.

        With ``storage.background_writes`` the step's transaction runs in a writer thread while
        the next step is computed (at most one step is in flight); ``flush()`` waits for it.
        """
        self._held_lease()  # refused before computing a step that could not be written
        if self.runtime is None:
            raise RuntimeError("this Simulation is closed; start() or resume() a run first")
        step = self.step + 1
        self.take_commands(controls=False)  # a pause or stop now would come a step late
        t0 = time.perf_counter()
        ctx = self._context(step)
        records: Records = {}
        if self._carried is not None and self._carried[0] == step:
            merge_records(records, dict(self._carried[1]))
        scripted = None
        due = self.schedule.due(step)
        if due:  # events of the boundary before this step
            scripted = self._boundary(step, due, records)
        active = self._active(step)  # after the boundary: without agents that just left
        # observe, decide, check and resolve: here, or in the Ray shards that own the agents
        actions, summary = self.runtime.decide(active, step, scripted)
        self.scenario.observed(active, summary)
        merge_records(records, self.scenario.apply(actions, ctx))
        merge_records(records, self.policy.drain_records())
        last = step == self.config.steps
        if last and self.schedule.due(step + 1):  # interviews at `end`
            self._boundary(step + 1, self.schedule.due(step + 1), records)
        metrics: dict[str, float] = self.policy.step_metrics()
        if self.world.llm is not None:
            merge_records(records, self.world.llm.drain_records())
            metrics.update(self.world.llm.step_metrics())
        if self._metrics_due(step):
            metrics.update(self.scenario.metrics(actions, ctx))
        if last and self.config.metrics.final:
            for table, cols in self.scenario.finish(ctx).items():
                records.setdefault(table, {}).update(cols)
        compute_s = time.perf_counter() - t0
        checkpoint = self._checkpoint_due(step)
        record_s = self._commit(step, records, metrics, n_active=len(active),
                                n_actions=len(actions), compute_s=compute_s,
                                checkpoint=checkpoint, actions=actions)
        if self._carried is not None and self._carried[0] == step:
            self._carried = None  # handed to the writer with the step
        self.step = step
        return StepReport(step, len(active), len(actions), compute_s, record_s, metrics)

    # -- steering ------------------------------------------------------------------------------

    def _boundary(self, step: int, due: list[Scheduled], records: Records
                  ) -> ActionBatch[Any] | None:
        """Apply the events due at the boundary before ``step`` (``steps + 1``: after the last
        step) on every replica, in order; add their rows (and interview answers) to
        ``records``; return the actions that action events script.

        Events of the experiment go to the replicas together; a live one (from Python or the
        control channel) alone, so that one the run cannot apply after all is refused (its
        command says why) and the run goes on. An interview is answered where it stands in
        the order: the events before it have happened, those after it not yet.
        """
        assert self.runtime is not None
        applied: list[Scheduled] = []
        results: list[dict[str, Any]] = []
        selected: dict[str, np.ndarray] = {}
        for group in boundary_groups(due):
            events = [(s.name, self._resolved(s.name, s.event, step)) for s in group]
            try:
                done = self.runtime.steer(events, step)
            except (SteeringError, ValueError) as err:  # a scenario refuses with ValueError
                if len(group) > 1 or group[0].command_id is None:
                    raise  # the experiment's own events were checked when it was validated
                self._refuse_live(group[0], step, str(err))
                continue
            merge_records(records, done.records)
            for s, (_, event), result in zip(group, events, done.results, strict=True):
                if result.get("agents") == 0:  # most likely a filter that matches nobody
                    log.warning("event %r at step %d selected no agents (agents: %s)", s.name,
                                step, s.event.agents.model_dump(exclude_defaults=True) or "all")
                if s.event.kind == "join":
                    merge_records(records, self._joined(event, done.selected[s.name]))
                elif s.event.kind == "parameter":
                    self.scenario_config = changed_config(self.scenario_config, s.event.changes)
                elif s.event.kind == "leave":  # the driver's world too (on Ray, not a replica)
                    left = done.selected[s.name]
                    self.world.present[left] = False
                    merge_records(records, {"departures": {"agent_id": left}})
                elif s.event.kind == "interview":
                    merge_records(records, self.runtime.interview(
                        done.selected[s.name], s.name, s.event, step))
            applied += group
            results += done.results
            selected.update(done.selected)
        merge_records(records, event_records(applied, results))
        self._marks += [(s.command_id, step) for s in applied
                        if s.command_id is not None and s.first == step]
        actions = [(s.name, s.event) for s in applied if s.event.kind == "action"]
        if not actions:
            return None
        return scripted_batch(self.experiment.scenario_cls, actions, selected)

    def _refuse_live(self, item: Scheduled, step: int, message: str) -> None:
        """A live event that failed when applied: refused (its command says why), no repeats;
        the replicas are as they were (an event fails before it changes anything)."""
        assert item.command_id is not None
        log.warning("event %r (command %d) refused at step %d: %s", item.name, item.command_id,
                    step, message)
        self.schedule.events.remove(item)
        self._marks = [(c, at) for c, at in self._marks if c != item.command_id]
        self._mark_now(item.command_id, "refused", error=f"at step {step}: {message}")

    def _resolved(self, name: str, event: Any, step: int) -> Any:
        """A join event with every newcomer's profile (drawn here, seeded by the event's name
        and step, so that every replica, a resume and a replay add the same agents)."""
        if event.kind != "join":
            return event
        return resolve_join(event, self.config.population, self.rng.get(f"join.{name}", step))

    def _joined(self, event: Any, agents: np.ndarray) -> Records:
        """The driver's side of agents joining: its world (on Ray, not a replica's) and
        activation take them; their rows of ``agents`` and ``arrivals``."""
        if self.world.n_agents <= int(agents[-1]):
            grow_world(self.world, event.profiles)
        self.activation = Activation(self.config.activation, self.world.population.attributes,
                                     self.rng)
        self._drawn = None
        rows = self.world.population.attributes.iloc[int(agents[0]):int(agents[-1]) + 1]
        attributes = (rows.to_json(orient="records", lines=True, date_format="iso").splitlines()
                      if len(rows.columns) else ["{}"] * len(agents))
        return {"agents": {"agent_id": agents, "attributes": attributes},
                "arrivals": {"agent_id": agents}}

    def _restore_joins(self, step: int) -> None:
        """Before loading the checkpoint of ``step``: the agents that joined up to it join
        again (drawn alike), so that the world has the checkpoint's size."""
        db, run_id = self.db, self.run_id
        assert db is not None and run_id is not None and self.runtime is not None
        for row in self._recorded(db, run_id, up_to=step, kind="join"):
            at = int(row["step"])
            event = self._resolved(row["name"], parse_event(json.loads(row["spec"])), at)
            done = self.runtime.steer([(row["name"], event)], at)
            self._joined(event, done.selected[row["name"]])

    def _check_live(self, event: Any, first_step: int) -> None:
        """Refuse a live event the run cannot apply (SteeringError naming the field)."""
        attributes = self.world.population.attributes
        found = check_events([event], steps=self.config.steps,
                             step_of=self.clock.first_step_at, n_agents=self.world.n_agents,
                             attributes=[str(c) for c in attributes.columns],
                             scenario=self.experiment.scenario_cls,
                             scenario_config=self.scenario_config, first_step=first_step)
        if found:
            loc, message = found[0]
            where = ".".join(str(p) for p in loc[1:])
            raise SteeringError(f"{where}: {message}" if where else message)
        check_live(event, self.experiment.scenario_cls, attributes)

    def intervene(self, event: dict[str, Any] | BaseModel, *, name: str | None = None) -> str:
        """Schedule an event between steps (``populace.simulator.events``; ``at`` defaults to
        the next step); checked now against the running run. Returns its name.

        It is recorded in ``events`` with source ``python`` when applied, so a re-run from
        the run's event log (``replay_events``) and a resume apply it again.
        """
        if self.run_id is None:
            self.start()
        data = (event.model_dump(by_alias=True, exclude_none=True)
                if isinstance(event, BaseModel) else dict(event))
        data.setdefault("at", self._next_free_step())
        if name is not None:
            data["name"] = name
        parsed = live_event(data)
        self._check_live(parsed, self._next_free_step())
        assert self.db is not None and self.run_id is not None
        # queued in the control channel like a command, so that a resume after a crash still
        # applies it; taken here at once (a Python caller hears of a bad event now)
        cid = send_command(self.db, self.run_id, "intervene",
                           {"event": parsed.model_dump(mode="json", by_alias=True,
                                                       exclude_none=True), "source": "python"})
        self._taken.add(cid)
        label = parsed.name or f"python{cid}"
        self.schedule.add(parsed, label, source="python", command_id=cid)
        return label

    def interview(self, questions: str | list[Any], agents: Any = "all", *,
                  report: str | None = None, remember: bool = False,
                  name: str | None = None) -> pd.DataFrame:
        """Ask agents now, between steps, and return their answers (one row per agent and
        question); the answers are recorded with the next step, and the interview in the
        run's event log. The run's later course does not change unless ``remember``.

        Args:
            questions: a question, or a list of questions (texts or ``Question`` fields).
            agents: ``all``, a list of ids, or a selector (``ids``, ``where``, ``sample``).
        """
        if self.run_id is None:
            self.start()
        assert self.runtime is not None
        step = self.step + 1
        if step > self.config.steps:
            raise SteeringError("the run has no step left to record an interview with; "
                                "schedule it `at: end` in the experiment instead")
        self._interviews += 1
        label = name or f"interview{step}_{self._interviews}"
        event = live_event({"kind": "interview", "name": label, "at": step,
                             "agents": agents, "questions": questions, "report": report,
                             "remember": remember})
        self._check_live(event, step)
        item = self.schedule.add(event, label, source="python")
        self.schedule.events.remove(item)  # answered now, not again at the boundary
        done = self.runtime.steer([(label, event)], step)
        rows = self.runtime.interview(done.selected[label], label, event, step)
        if self._carried is None or self._carried[0] != step:
            self._carried = (step, {})
        merge_records(self._carried[1], rows)
        merge_records(self._carried[1], event_records([item], done.results))
        answers = rows.get("interview_answers", {})
        return pd.DataFrame({k: v for k, v in answers.items()})

    def _next_free_step(self) -> int:
        """The next step whose decisions have not started (on Ray, shards may already be
        deciding the next one)."""
        step = self.step + 1
        if isinstance(self.runtime, RayRuntime) and self.runtime.deciding(step):
            step += 1
        return step

    def _commands_waiting(self) -> bool:
        """Whether the control channel holds commands this run has not taken yet."""
        if self.db is None or self.run_id is None:
            return False
        return any(c["id"] not in self._taken for c in pending_commands(self.db, self.run_id))

    def take_commands(self, *, controls: bool = True) -> None:
        """Take the commands queued in the run's control channel: events are scheduled (at
        the next step unless they say), pause, resume and stop take effect; a command the run
        cannot apply is refused, with the reason in ``control_commands.error``.

        Without ``controls``, pause, resume and stop stay queued: inside ``advance`` the step
        is already under way, and they take effect between steps (``run``)."""
        if self.db is None or self.run_id is None:
            return
        for command in pending_commands(self.db, self.run_id):
            cid = command["id"]
            kind, spec = command["command"], command["spec"]
            if cid in self._taken or (not controls and kind in ("pause", "resume", "stop")):
                continue
            self._taken.add(cid)
            try:
                if kind in ("intervene", "interview"):
                    data = dict(spec.get("event") or {})
                    if kind == "interview":
                        data["kind"] = "interview"
                    data.setdefault("at", self._next_free_step())
                    event = live_event(data)
                    self._check_live(event, self._next_free_step())
                    source = "python" if spec.get("source") == "python" else "control"
                    self.schedule.add(event, event.name or f"{source}{cid}", source=source,
                                      command_id=cid)
                    continue
                if kind == "pause":
                    self.paused = True
                    # commit the steps already computed first: whoever hears "applied" then
                    # reads the step the run holds at, not one the writer adds a moment later
                    self.flush()
                elif kind == "resume":
                    self.paused = False
                elif kind == "stop":
                    self.stop_requested = True
                self._mark_now(cid, "applied")
            except (SteeringError, ValueError) as err:
                message = str(err)
                log.warning("control command %s (%s) refused: %s", cid, kind, message)
                self._mark_now(cid, "refused", error=message)

    def _mark_now(self, command_id: int, status: str, error: str | None = None) -> None:
        """Record what became of a command at once, in its own transaction."""
        assert self.db is not None
        with self.db.transaction() as conn:
            mark_command(conn, command_id, status, step=self.step, error=error)

    def _wait_if_paused(self, poll_s: float = 0.25) -> None:
        """Between steps: take commands; while paused, wait for resume or stop; raise
        ``RunStopped`` after a stop."""
        self.take_commands()
        if self.paused:
            # said at warning level: the terminal of `populace run` shows it
            log.warning("run %s paused after step %d: waiting for `populace resume-live` or "
                        "`populace stop`", self.run_id, self.step)
        while self.paused and not self.stop_requested:
            time.sleep(poll_s)
            self.take_commands()
        if self.stop_requested:
            raise RunStopped(f"stopped by a control command after step {self.step}")

    def _refuse_queued(self) -> None:
        """Once the last step is committed: refuse the commands that came too late for it
        (a sender waiting on one hears why)."""
        assert self.db is not None and self.run_id is not None
        for command in pending_commands(self.db, self.run_id):
            self._mark_now(command["id"], "refused", error=(
                f"the run ended at step {self.step} before taking it"))

    def replay_events(self, db_url: str, run: int | str | None = None) -> int:
        """Schedule the live events (sent from Python or the control channel) of a recorded
        run at the steps they were applied at, for an exact re-run; returns how many."""
        db = Database(db_url, create=False)
        try:
            return self._schedule_recorded(db, int(find_run(db, run)["id"]),
                                           keep_commands=False)
        finally:
            db.dispose()

    def _schedule_recorded(self, db: Database, run_id: int, *, keep_commands: bool) -> int:
        """Schedule the live events recorded for ``run_id`` that this run has not scheduled
        (each once: its spec holds the step it was applied at first, and its repeats); with
        ``keep_commands``, as the control commands they came from (a resume of that run)."""
        def key(name: str, source: str, command: int | None, spec: str) -> tuple[Any, ...]:
            # a command is one event; one without (a Python interview) is known by its spec,
            # which holds its first step: the repeats of an event share it, two events differ
            return ("command", command) if command is not None else (name, source, spec)

        known = {key(s.name, s.source, s.command_id, s.spec()) for s in self.schedule.events
                 if s.source != "yaml"}
        count = 0
        for row in self._recorded(db, run_id, live_only=True):
            event = parse_event(json.loads(row["spec"]))
            spec = Scheduled(event, row["name"], 0, 0).spec()
            k = key(row["name"], row["source"], row["command_id"], spec)
            if k in known:
                continue  # a repeat, or still scheduled (a shard died; the schedule was kept)
            known.add(k)
            command = row["command_id"] if keep_commands else None
            # a Python interview was asked between steps: before the step's other events
            early = row["kind"] == "interview" and row["command_id"] is None
            self.schedule.add(event, row["name"], source=row["source"], command_id=command,
                              early=early)
            if command is not None:
                self._taken.add(int(command))
            count += 1
        return count

    @staticmethod
    def _recorded(db: Database, run_id: int, *, after: int = 0, up_to: int | None = None,
                  live_only: bool = False, kind: str | None = None) -> list[dict[str, Any]]:
        t = EventRecord
        stmt = sa.select(t.step, t.name, t.kind, t.source, t.command_id, t.spec).where(
            t.run_id == run_id, t.step > after)
        if up_to is not None:
            stmt = stmt.where(t.step <= up_to)
        if live_only:
            stmt = stmt.where(t.source != "yaml")
        if kind is not None:
            stmt = stmt.where(t.kind == kind)
        with db.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(stmt.order_by(t.id))]

    def flush(self) -> None:
        """Wait until every step handed to the writer is committed (re-raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self, keep_lease: bool = False) -> None:
        """Flush and stop the writer thread; close the policy's connections; stop the lease's
        heartbeat (unless ``keep_lease``: the caller marks the run and releases it). A run
        that completed gets the indexes its readers need (``index_for_reads``)."""
        try:
            self.flush()
            if (not keep_lease and self.run_id is not None and self.runtime is not None
                    and self.step == self.config.steps):
                self.index_for_reads()
        finally:
            if self.lease is not None and not keep_lease:
                self.lease.stop()  # released by the last step's transaction, if it completed
                self.lease = None
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None
            policy = getattr(self, "policy", None)
            if policy is not None:
                policy.close()
            world = getattr(self, "world", None)
            if world is not None and world.llm is not None:
                world.llm.close()
            self.runtime = None

    def index_for_reads(self) -> float:
        """Create the indexes the web service's reads need, once the run's bulk writes are
        done: per agent (the action table, interview answers, memories, model calls), the
        action mix, both ends of the scenario's network, and each agent attribute; return the
        seconds it took (about 20 s at 1M agents on SQLite, 10 s on PostgreSQL: see
        docs/benchmarks.md). Indexes that exist are kept, so calling it again costs nothing.

        Made at the end, not at the start: a run writes its rows append-only, without
        maintaining them (they would slow every step's write; docs/benchmarks.md measures it).
        """
        assert self.db is not None and self.run_id is not None
        t0 = time.perf_counter()
        specs = reader_indexes(self.experiment.scenario_cls, set(self.db.table_names()))
        try:
            ensure_read_indexes(self.db, specs)
            ensure_attribute_indexes(self.db, attribute_kinds(self.db, self.run_id))
        except Exception:  # the run is complete and stays so; only its readers are slower
            log.warning("run %s: could not create the indexes for readers", self.run_id,
                        exc_info=True)
        spent = time.perf_counter() - t0
        log.info("run %s: indexes for readers in %.1f s", self.run_id, spent)
        return spent

    def _commit(self, step: int, records: Records, metrics: dict[str, float], *, n_active: int,
                n_actions: int, compute_s: float, checkpoint: bool,
                actions: ActionBatch | None = None, extra: Records | None = None,
                background: bool | None = None, conn: Connection | None = None) -> float:
        """Prepare the rows of ``step`` and write them in one transaction (``conn``'s, when
        given: then in the foreground).

        Returns the seconds this thread spent: preparing, plus waiting for the writer (in the
        background) or writing (in the foreground).
        """
        t0 = time.perf_counter()
        self._held_lease()  # refused at once, not later in the writer thread
        tables = self._step_tables(step, records, actions, extra)
        blob = self._checkpoint_blob(step, self.wall_s + compute_s) if checkpoint else None
        self.wall_s += compute_s
        marks, self._marks = self._marks, []
        job = partial(self._write, step, tables, metrics, blob, n_active, n_actions, compute_s,
                      self.wall_s, conn, marks)
        if conn is not None:
            background = False
        if background is None:
            background = self.config.storage.background_writes
        # a failed earlier step surfaces here, before anything later is written
        self.flush()
        if background:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="populace-db")
            self._pending = self._writer.submit(job)
        else:
            job()
        spent = time.perf_counter() - t0
        self.wall_s += spent
        return spent

    def _step_tables(self, step: int, records: Records, actions: ActionBatch | None,
                     extra: Records | None) -> Records:
        """Every row of ``step`` by table, with the step column filled in."""
        rec = self.config.recording
        tables: Records = dict(extra or {})
        tables.update(records)
        if actions is not None and rec.actions and len(actions):
            tables[self.scenario.action_table] = self._action_rows(actions)
        every = rec.agent_state_every
        if every and step % every == 0:
            state = self.scenario.agent_state()
            if state:
                n = self.world.n_agents
                tables["agent_states"] = {
                    "agent_id": np.tile(np.arange(n, dtype=np.int64), len(state)),
                    "variable": [name for name in state for _ in range(n)],
                    # copies: the writer may run while the next step changes the state
                    "value": np.concatenate([np.asarray(v, dtype=np.float64)
                                             for v in state.values()]),
                }
        out: Records = {}
        for table, cols in tables.items():
            if not cols:
                continue
            n = len(next(iter(cols.values())))
            if table != "agents" and "step" not in cols:
                cols = {"step": np.full(n, step, dtype=np.int64), **cols}
            out[table] = cols
        return out

    def _write(self, step: int, tables: Records, metrics: dict[str, float],
               blob: memoryview | None, n_active: int, n_actions: int, compute_s: float,
               wall_s: float, conn: Connection | None = None,
               marks: list[tuple[int, int]] | None = None) -> float:
        """The transaction of one step (runs in the writer thread when in the background), or
        its part of ``conn``'s transaction."""
        assert self.db is not None and self.run_id is not None
        if conn is None:
            with self.db.transaction() as own:
                return self._write(step, tables, metrics, blob, n_active, n_actions, compute_s,
                                   wall_s, own, marks)
        db, run_id, lease = self.db, self.run_id, self._held_lease()
        t0 = time.perf_counter()
        # the fencing token: a process whose lease was taken over writes nothing (and on
        # SQLite this first write takes the database's write lock for the whole step)
        lease.check(conn)
        for table, cols in tables.items():
            db.insert_columns(conn, table, run_id, cols)
        if metrics:
            names = list(metrics)
            db.insert_columns(conn, "step_metrics", run_id, {
                "step": [step] * len(names), "name": names,
                "value": [None if v is None or v != v else float(v) for v in metrics.values()],
            })
        record_s = time.perf_counter() - t0
        db.insert_columns(conn, "steps", run_id, {
            "step": [step], "sim_time": [self.clock.time(step)], "n_active": [n_active],
            "n_actions": [n_actions], "compute_s": [compute_s], "record_s": [record_s],
        })
        if blob is not None:
            save_checkpoint(conn, db, run_id, step, blob)
        for command_id, applied in marks or ():
            mark_command(conn, command_id, "applied", step=applied)
        fields: dict[str, Any] = {"steps_done": step, "wall_s": wall_s}
        if step > 0 and len(tables.get("arrivals", {}).get("agent_id", ())):
            fields["n_agents"] = int(tables["arrivals"]["agent_id"][-1]) + 1  # agents joined
        if step == self.config.steps:
            fields.update(status="completed", finished_at=now())
        update_run(db, run_id, conn=conn, **fields)
        # again at the end: a long transaction leaves a fresh heartbeat behind it
        lease.check(conn)
        if step == self.config.steps:
            lease.release(conn)
        return time.perf_counter() - t0

    def _held_lease(self) -> RunLease:
        """This Simulation's lease on its run, or a clear error when it has none any more (it
        stopped, e.g. after Ctrl-C in a notebook, and released the run; another process may
        have taken it over since)."""
        if self.lease is None:
            raise LeaseLostError(
                f"this Simulation no longer holds run {self.run_id}: it stopped and released "
                f"the run; continue it with Simulation.resume({redact(self.db_url)!r}, "
                f"{self.run_id})")
        return self.lease

    def _empty_batch(self) -> ActionBatch[Any]:
        return ActionBatch(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int16),
                           self.experiment.scenario_cls.args_type())

    def _action_rows(self, actions: ActionBatch[Any]) -> dict[str, Any]:
        keep = np.ones(len(actions), dtype=bool)
        names = self.scenario.actions
        if not self.config.recording.do_nothing and "do_nothing" in names:
            keep = actions.action != names.index("do_nothing")
        batch = actions.take(keep) if not keep.all() else actions
        return {"agent_id": batch.agent, "action": np.asarray(names, dtype=object)[batch.action],
                **{k: getattr(batch.args, k) for k in self.scenario.trace_columns()}}

    def _checkpoint_blob(self, step: int, wall_s: float) -> memoryview:
        """The state as one .npz file, a view of its buffer (no copy of 100s of MB at 1M)."""
        arrays = {f"scenario.{k}": np.asarray(v) for k, v in self.scenario.state_dict().items()}
        arrays.update({f"policy.{k}": np.asarray(v) for k, v in self.policy.state_dict().items()})
        arrays["engine.step"] = np.asarray(step)
        arrays["engine.wall_s"] = np.asarray(wall_s)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getbuffer()



