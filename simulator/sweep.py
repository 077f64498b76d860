"""Parameter sweeps: one experiment run over a grid or a random sample of parameters × seeds.

Core objects:
    SweepSpec: the sweep file (``populace sweep SWEEP.yaml``), validated like an experiment.
    load_sweep: read and check a sweep file, and every run it plans (each point's experiment is
        validated before any run starts: a bad value is named with its point).
    Sweep: a loaded sweep: its planned runs and where they are written.
    run_sweep: run what is not finished yet, in worker processes or as Ray tasks, each run into
        the same database; a restart skips completed runs and resumes unfinished ones.

Each run is an ordinary run (named ``SWEEP.pPOINT.sSEED``) written by its worker, which holds
its lease; ``populace.storage.open_sweep`` reads all of them as one tidy DataFrame.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import hashlib
import itertools
import logging
import multiprocessing
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from tqdm import tqdm

from populace.storage import Database, StorageError, database_url, find_run
from populace.storage.leases import LeaseHeldError
from populace.storage.sweeps import (
    PlannedRun,
    open_sweep,
    record_outcome,
    record_sweep,
    release_sweep_lease,
    sweep_lease,
    sweep_progress,
)

from .config import MAX_SEED, apply_overrides, load_experiment
from .config_errors import ConfigError, Problem, validate
from .engine import Simulation
from .llm.summary import summary_from_metrics
from .registry import headline_metrics
from .runtime import connect
from .runtime_config import RuntimeConfig
from .yaml_positions import load_yaml

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9_\-]+$"


class Distribution(BaseModel):
    """How a sampled parameter is drawn: exactly one of the keys."""

    model_config = ConfigDict(extra="forbid")

    uniform: tuple[float, float] | None = Field(None, description="[low, high): uniform")
    loguniform: tuple[float, float] | None = Field(
        None, description="[low, high), both > 0: uniform in log space")
    integers: tuple[int, int] | None = Field(None, description="[low, high], both included")
    normal: tuple[float, float] | None = Field(None, description="[mean, sd]")
    choice: list[Any] | None = Field(None, min_length=1, description="one of these values")

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k, v in self if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, integers, normal, "
                             f"choice (got {', '.join(given) or 'none'})")
        low_high = self.uniform or self.loguniform or self.integers
        if low_high is not None and not low_high[0] <= low_high[1]:
            raise ValueError(f"low {low_high[0]} is above high {low_high[1]}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs low > 0")
        if self.normal is not None and self.normal[1] < 0:
            raise ValueError("normal's sd must be >= 0")
        return self

    def draw(self, rng: np.random.Generator) -> Any:
        """One value (a plain Python value, as YAML would give it)."""
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.loguniform is not None:
            low, high = np.log(self.loguniform)
            return float(np.exp(rng.uniform(low, high)))
        if self.integers is not None:
            return int(rng.integers(self.integers[0], self.integers[1] + 1))
        if self.normal is not None:
            return float(rng.normal(*self.normal))
        assert self.choice is not None
        return self.choice[int(rng.integers(len(self.choice)))]


class SampleSpec(BaseModel):
    """``sample:``: ``n`` points drawn at random (seeded) from a distribution per parameter."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1, le=100_000, description="number of parameter points")
    seed: int = Field(0, ge=0, description="seed of the draw (the runs' seeds are `seeds`)")
    params: dict[str, Distribution] = Field(min_length=1, description="dotted key -> "
                                            "distribution")


class SweepRuntime(BaseModel):
    """``runtime:``: where the sweep's runs execute, each whole in one worker."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["local", "ray"] = Field("local", description="local: worker processes on "
                                          "this machine; ray: one Ray task per run")
    address: str | None = Field(None, description="Ray cluster to join (auto, ray://host:port, "
                                "host:port); unset: start Ray on this machine")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a private Ray")
    connect_timeout_s: float = Field(30.0, gt=0, le=86_400)


class SweepSpec(BaseModel):
    """A sweep file: an experiment, the parameters to vary and the seeds to repeat each with."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, max_length=60, description="the sweep's name "
                      "(default: the file's name); its runs are named NAME.pPOINT.sSEED")
    experiment: str = Field(description="the experiment YAML, relative to the sweep file")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted overrides for "
                                "every run (e.g. steps: 20)")
    grid: dict[str, list[Any]] | None = Field(None, description="dotted key -> values: every "
                                              "combination, in the order given")
    sample: SampleSpec | None = None
    seeds: StrictInt | list[Annotated[StrictInt, Field(ge=0, le=MAX_SEED)]] = Field(
        1, description="a count (the experiment's seed, +1, ...) or a list of seeds")
    workers: int | None = Field(None, ge=1, le=1024, description="runs at once (default: "
                                "the CPUs, at most the runs)")
    runtime: SweepRuntime = Field(default_factory=SweepRuntime)
    storage: str | None = Field(None, description="database URL or SQLite path (default: the "
                                "experiment's storage.url, else populace_runs/NAME.sqlite)")

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if self.grid is not None and self.sample is not None:
            raise ValueError("give grid or sample, not both")
        if self.grid is not None:
            empty = [k for k, v in self.grid.items() if not v]
            if empty:
                raise ValueError(f"grid {', '.join(empty)}: no values")
        if isinstance(self.seeds, int) and not 1 <= self.seeds <= 10_000:
            raise ValueError(f"seeds: a count from 1 to 10000 (got {self.seeds})")
        if isinstance(self.seeds, list) and (not self.seeds
                                             or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError("seeds: a non-empty list without repeats")
        own = sorted({"seed", "name"} & set(self.set))
        if own:
            raise ValueError(f"set: {', '.join(own)} is the sweep's own (seeds:, and runs "
                             "named NAME.pPOINT.sSEED)")
        swept = [*(self.grid or {}), *(self.sample.params if self.sample else {})]
        clash = sorted(set(swept) & {*self.set, "seed", "name"})
        if clash:
            raise ValueError(f"{', '.join(clash)}: set by the sweep itself or by `set`; "
                             "vary a key in one place")
        return self


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to make (or finish) one run: picklable for processes and Ray."""

    experiment: str
    overrides: dict[str, Any]
    db_url: str
    run_name: str
    point: int
    seed: int
    fresh: bool = False
    """Make the run anew even if one of its name completed (it was judged failed)."""


@dataclass(frozen=True)
class RunOutcome:
    """What became of one run: ``status`` is ``completed``, ``skipped`` (already completed),
    or ``failed`` (``error`` says why)."""

    point: int
    seed: int
    run_name: str
    status: str
    run_id: int | None = None
    error: str | None = None


@dataclass
class Sweep:
    """A loaded sweep: its spec, where its runs go and every run it plans."""

    spec: SweepSpec
    path: Path
    experiment: Path
    db_url: str
    runs: list[PlannedRun]
    seeds: list[int]
    points: list[dict[str, Any]] = field(default_factory=list)
    scenario: str = ""

    def task(self, run: PlannedRun) -> RunTask:
        """The worker's instructions for ``run``: the experiment with every override."""
        overrides = {**self.spec.set, **run.params, "seed": run.seed, "name": run.run_name}
        return RunTask(str(self.experiment), overrides, self.db_url, run.run_name, run.point,
                       run.seed)

    def stored_spec(self) -> dict[str, Any]:
        """The spec as recorded in the database: what makes two sweeps of one name the same.

        The experiment is identified by its text (a SHA-256), not its path: the same files
        moved elsewhere are the same sweep, and an experiment edited after some runs were
        made is another one (its runs would not be comparable).
        """
        return {"spec": self.spec.model_dump(mode="json", exclude={
                    "workers", "runtime", "storage", "experiment"}),
                "experiment_sha256": hashlib.sha256(self.experiment.read_bytes()).hexdigest(),
                "seeds": self.seeds, "points": self.points}


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key.path=value`` from the command line: the value read as a YAML scalar or flow
    collection (``0.2`` a float, ``true`` a bool, ``[1, 2]`` a list, ``abc`` a string).

    Raises:
        ValueError: no ``=``, or an empty key.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. "
                         "--set policy.params.backfire=0.2")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), as_number(parsed)


FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def as_number(value: Any) -> Any:
    """A string that YAML 1.1 leaves as text but that is a number (``1e-3``) as a float;
    anything else as it is (lists element by element)."""
    if isinstance(value, list):
        return [as_number(v) for v in value]
    if isinstance(value, str) and FLOAT.match(value.strip()):
        return float(value)
    return value


def load_sweep(path: str | Path, overrides: dict[str, Any] | None = None,
               db: str | None = None) -> Sweep:
    """Read a sweep file, plan its runs and validate each point's experiment.

    Args:
        path: the sweep YAML.
        overrides: dotted overrides of the sweep file itself (e.g. ``{"workers": 4}``).
        db: a database URL or SQLite path that replaces ``storage``.

    Raises:
        ConfigError: the sweep file is invalid, or a point's experiment is (the problem names
            the point and its parameters).
    """
    path = Path(path)
    data, marks = load_yaml(path, defer_duplicates=True)
    data = dict(data or {})
    if overrides:
        # `set` and `grid` hold dotted experiment keys: set.population.size=300 is the key
        # "population.size" of `set`, not a `population` mapping inside it
        data = _override(data, overrides, str(path))
    data.setdefault("name", path.stem.replace(".", "_"))
    spec = validate(SweepSpec, data, marks, source=str(path))
    spec.set = {k: as_number(v) for k, v in spec.set.items()}
    experiment = (path.parent / spec.experiment).resolve()
    base = load_experiment(experiment, overrides=spec.set or None)
    seeds = (list(spec.seeds) if isinstance(spec.seeds, list)
             else [base.config.seed + i for i in range(spec.seeds)])
    if seeds[-1] > MAX_SEED:
        raise ConfigError([Problem("seeds", f"{spec.seeds} seeds from the experiment's seed "
                                   f"{base.config.seed} pass the largest seed, {MAX_SEED}")],
                          str(path))
    points = list(_points(spec))
    for i, point in enumerate(points):  # every point checked before any run starts
        try:
            load_experiment(experiment, overrides={**spec.set, **point} or None)
        except ConfigError as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ConfigError([Problem(p.path, f"point {i} ({shown}): {p.message}",
                                       expected=p.expected, suggestion=p.suggestion,
                                       value=p.value) for p in err.problems],
                              str(path)) from None
    url = database_url(db) if db else (
        database_url(spec.storage) if spec.storage else
        base.config.storage.url if base.config.storage.url else
        database_url(Path("populace_runs") / f"{spec.name}.sqlite"))
    runs = [PlannedRun(i, seed, f"{spec.name}.p{i}.s{seed}", point)
            for i, point in enumerate(points) for seed in seeds]
    return Sweep(spec, path, experiment, url, runs, seeds, points, base.config.scenario.type)


def _override(data: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """The sweep file's data with ``overrides`` (dotted keys) applied. Under ``set``,
    ``grid`` and ``sample.params`` the rest of a key is one dotted experiment key:
    ``set.population.size=300`` is the key ``population.size`` of ``set``, not a
    ``population`` mapping inside it."""
    plain: dict[str, Any] = {}
    for key, value in overrides.items():
        section = next((s for s in ("sample.params", "set", "grid")
                        if key.startswith(s + ".")), None)
        if section is None:
            plain[key] = value
            continue
        node: Any = data
        for part in section.split("."):
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise ConfigError([Problem(section, f"override {key!r}: {section} is not a "
                                       "mapping")], source)
        node[key[len(section) + 1:]] = value
    return apply_overrides(data, plain, source=source) if plain else data


def _points(spec: SweepSpec) -> Iterator[dict[str, Any]]:
    """The parameter combinations: the grid's product in the order given, ``n`` seeded draws,
    or one empty point (seeds only)."""
    if spec.grid is not None:
        keys = list(spec.grid)
        for values in itertools.product(*(as_number(v) for v in spec.grid.values())):
            yield dict(zip(keys, values, strict=True))
    elif spec.sample is not None:
        rng = np.random.default_rng(spec.sample.seed)
        for _ in range(spec.sample.n):
            yield {k: d.draw(rng) for k, d in spec.sample.params.items()}
    else:
        yield {}


@dataclass
class SweepReport:
    """What a call of :func:`run_sweep` did."""

    sweep_id: int
    db_url: str
    outcomes: list[RunOutcome]
    skipped: int

    @property
    def failed(self) -> list[RunOutcome]:
        """The runs that did not complete (or completed without doing what was asked)."""
        return [o for o in self.outcomes if o.status == "failed"]

    def text(self) -> str:
        """One summary line, then one line per failed run."""
        done = sum(o.status == "completed" for o in self.outcomes)
        # a run another process completed meanwhile is skipped by its worker
        skipped = self.skipped + sum(o.status == "skipped" for o in self.outcomes)
        total = len(self.outcomes) + self.skipped
        lines = [f"{total} runs: {done} ran, {skipped} already completed (skipped), "
                 f"{len(self.failed)} failed"]
        lines += [f"  failed {o.run_name}: {o.error}" for o in self.failed]
        return "\n".join(lines)


def headline_table(sweep: Sweep, metrics: int = 3) -> pd.DataFrame:
    """Per parameter point, the completed runs' mean and standard deviation (across seeds) of
    the scenario's first ``metrics`` headline metrics at their last step: the summary
    ``populace sweep`` prints. Confidence intervals and figures: ``populace.simulator.analysis``.
    """
    frame = open_sweep(sweep.db_url, sweep.spec.name, completed_only=True)
    if frame.empty:
        return pd.DataFrame()
    last = frame[frame["step"] == frame.groupby("run_id")["step"].transform("max")]
    names = headline_metrics(sweep.scenario, frame.attrs["metrics"])[:metrics]
    params = frame.attrs["parameters"]
    shown = last.astype({p: str for p in params})  # lists and None group as their text
    grouped = shown.groupby(["point", *params], sort=True)
    table = grouped.size().rename("runs").to_frame()
    for name in names:
        stats = grouped[name].agg(["mean", "std"])
        table[name] = [f"{m:.4g} ± {s:.2g}" if s == s else f"{m:.4g}"
                       for m, s in zip(stats["mean"], stats["std"], strict=True)]
    return table.reset_index()


class SweepBusyError(RuntimeError):
    """Another process is running this sweep now."""


class SweepMismatchError(ValueError):
    """The database holds a different sweep of the same name."""


def run_sweep(sweep: Sweep, *, progress: bool = True,
              on_outcome: Callable[[RunOutcome], None] | None = None) -> SweepReport:
    """Run every planned run that has not completed, and return what happened.

    Completed runs are skipped; a run that stopped, failed or was interrupted is resumed
    from its last checkpoint; a run that completed on language-model fallbacks past its
    allowed share is made anew; new runs start. Runs go to ``spec.workers`` worker processes
    (``runtime.type: local``) or to Ray tasks, each into ``sweep.db_url``. The process holds
    the sweep's lease throughout: one process runs a sweep at a time.

    Raises:
        SweepMismatchError: the database holds another sweep of this name.
        SweepBusyError: another live process runs the sweep.
    """
    db = Database(sweep.db_url)  # creates the file and tables once, safely under concurrency
    try:
        sweep_id, stored = record_sweep(db, sweep.spec.name, sweep.stored_spec(), sweep.runs)
        if stored is not None and stored != sweep.stored_spec():
            raise SweepMismatchError(
                f"{db.shown_url} already holds a sweep named {sweep.spec.name!r} with other "
                "parameters, seeds or experiment (its file was edited since, or this is "
                "another sweep): give this one another name (name: in the file, or --set "
                "name=...) or another database")
        try:
            lease = sweep_lease(db, sweep_id, sweep.spec.name)
        except LeaseHeldError as err:
            raise SweepBusyError(str(err)) from None
        try:
            return _run_planned(sweep, db, sweep_id, progress, on_outcome)
        finally:
            release_sweep_lease(db, lease)
    finally:
        db.dispose()


def _run_planned(sweep: Sweep, db: Database, sweep_id: int, progress: bool,
                 on_outcome: Callable[[RunOutcome], None] | None) -> SweepReport:
    """Run the sweep's unfinished runs (under its lease), recording each outcome."""
    status = sweep_progress(db, sweep_id)
    done = set(status.loc[status["status"] == "completed", "run_name"])
    # completed, but judged failed (fallbacks): made anew rather than resumed
    redo = set(status.loc[(status["status"] == "failed") & status["error"].notna(), "run_name"])
    tasks = [_redo(sweep.task(r)) if r.run_name in redo else sweep.task(r)
             for r in sweep.runs if r.run_name not in done]
    outcomes: list[RunOutcome] = []
    bar = tqdm(total=len(sweep.runs), initial=len(done), desc=f"sweep {sweep.spec.name}",
               unit="run", disable=not progress or None, dynamic_ncols=True)
    try:
        for outcome in _dispatch(sweep, tasks):
            outcomes.append(outcome)
            if outcome.status == "failed":
                record_outcome(db, sweep_id, outcome.point, outcome.seed, outcome.run_id,
                               "failed", outcome.error)
            elif outcome.status == "completed":
                record_outcome(db, sweep_id, outcome.point, outcome.seed, None, None)
            bar.update(1)
            failed = sum(o.status == "failed" for o in outcomes)
            if failed:
                bar.set_postfix(failed=failed)
            if on_outcome is not None:
                on_outcome(outcome)
    finally:
        bar.close()
    return SweepReport(sweep_id, sweep.db_url, outcomes, skipped=len(done))


def _redo(task: RunTask) -> RunTask:
    """A run made anew because it completed on fallbacks: it asks the model again (with the
    response cache on it would be given the stored invalid answers again)."""
    return dataclasses.replace(task, fresh=True,
                               overrides={**task.overrides, "llm.cache": False})


def _workers(sweep: Sweep, tasks: int) -> int:
    return max(1, min(tasks, sweep.spec.workers or os.cpu_count() or 1))


def _dispatch(sweep: Sweep, tasks: list[RunTask]) -> Iterator[RunOutcome]:
    """Outcomes as runs finish: in this process (one worker), in worker processes, or as
    Ray tasks; never more than ``workers`` runs handed out at once, so that an interruption
    leaves no run queued in a worker that would start after it."""
    if not tasks:
        return
    if sweep.spec.runtime.type == "ray":
        yield from _ray_dispatch(sweep, tasks)
        return
    workers = _workers(sweep, len(tasks))
    if workers == 1:
        for task in tasks:
            yield run_task(task)
        return
    queue = collections.deque(tasks)
    retried: set[str] = set()
    while queue:
        lost = yield from _pool_dispatch(queue, workers)
        for task in lost:  # a worker process died: its runs are resumed once, then failed
            if task.run_name in retried:
                yield RunOutcome(task.point, task.seed, task.run_name, "failed", None,
                                 WORKER_DIED)
            else:
                retried.add(task.run_name)
                queue.appendleft(task)


WORKER_DIED = ("its worker process died twice (killed, or out of memory?); running the sweep "
               "again resumes it from its last checkpoint")
GRACE_S = 10.0
"""Seconds an interrupted sweep waits for its workers to mark their runs interrupted."""


def _pool_dispatch(queue: collections.deque[RunTask],
                   workers: int) -> Generator[RunOutcome, None, list[RunTask]]:
    """Run the queue's tasks in one pool of spawned worker processes (fresh interpreters,
    free of this process's threads and Ray state); return the tasks that were running when
    a worker died (the pool is then broken and stopped), or [] when the queue is done."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                               initializer=_worker_init)
    running: dict[Future[RunOutcome], RunTask] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                task = queue.popleft()
                running[pool.submit(run_task, task)] = task
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    log.warning("a sweep worker process died; resuming its runs")
                    lost = [task, *running.values()]
                    running.clear()
                    return lost
                except KeyboardInterrupt:  # the worker was interrupted: its run says so
                    outcome = RunOutcome(task.point, task.seed, task.run_name, "failed", None,
                                         "interrupted; running the sweep again resumes it")
                yield outcome
        return []
    except BaseException:
        _stop_workers(pool, running)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor, running: dict[Future[RunOutcome], RunTask]) -> None:
    """After Ctrl-C or SIGTERM: let the workers' runs end as interrupted (each marks its run
    and gives up its lease; a terminal's Ctrl-C reached them already, a SIGTERM to this
    process only did not), and end any worker that has not within ``GRACE_S``."""
    # the executor keeps its processes in a private mapping; nothing public lists them
    processes = list(getattr(pool, "_processes", {}).values())
    start = time.monotonic()
    signalled = False
    while any(not f.done() for f in running) and time.monotonic() - start < GRACE_S:
        if not signalled and time.monotonic() - start > 1.0:  # still running: tell them
            for process in processes:
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            signalled = True
        time.sleep(0.1)
    for process in processes:
        if process.is_alive() and any(not f.done() for f in running):
            process.terminate()


def _worker_init() -> None:
    """In each worker process: on Linux, get SIGINT when the sweep's process dies (even by
    kill -9), so that no worker goes on alone; its run ends as interrupted."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGINT)
        if os.getppid() == 1:  # the parent died before prctl took effect
            raise SystemExit(1)


def _ray_dispatch(sweep: Sweep, tasks: list[RunTask]) -> Iterator[RunOutcome]:
    rt = sweep.spec.runtime
    ray = connect(RuntimeConfig(type="ray", address=rt.address, num_cpus=rt.num_cpus,
                                connect_timeout_s=rt.connect_timeout_s))
    remote = ray.remote(num_cpus=1, max_retries=0)(run_task)
    # `workers` bounds the runs at once on Ray too (unset: the cluster's CPUs decide)
    limit = sweep.spec.workers or len(tasks)
    queue = collections.deque(tasks)
    pending: list[Any] = []
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                pending.append(remote.remote(queue.popleft()))
            finished, pending = ray.wait(pending, num_returns=1)
            for ref in finished:
                yield ray.get(ref)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise


def run_task(task: RunTask) -> RunOutcome:
    """Make one run of a sweep (a worker's whole job): skip it if a run of its name completed
    (unless ``task.fresh``), resume it if one stopped, start it otherwise. Errors become a
    ``failed`` outcome (the run's own row says ``failed`` too, and a restart of the sweep
    resumes it); so does a language-model run whose calls fell back past their allowed share."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        existing = _existing(task)
        if existing is not None and existing["status"] == "completed" and not task.fresh:
            return RunOutcome(task.point, task.seed, task.run_name, "skipped",
                              int(existing["id"]))
        if existing is not None and existing["status"] != "completed":
            sim = Simulation.resume(task.db_url, int(existing["id"]))
        else:
            sim = Simulation(load_experiment(task.experiment, overrides=task.overrides),
                             db_url=task.db_url)
        run = sim.run()
        llm = sim.config.llm
        if llm is not None:  # a run whose model calls fell back is not what was asked
            summary = summary_from_metrics(run.metrics(), llm.max_fallback_share)
            if summary.failed:
                return RunOutcome(task.point, task.seed, task.run_name, "failed", run.id,
                                  "; ".join(summary.lines()))
        return RunOutcome(task.point, task.seed, task.run_name, str(run.info["status"]),
                          run.id)
    except Exception as exc:  # one run's failure does not end the sweep
        log.warning("sweep run %s failed: %s: %s", task.run_name, type(exc).__name__, exc)
        return RunOutcome(task.point, task.seed, task.run_name, "failed",
                          _run_id(task), f"{type(exc).__name__}: {exc}")


def _existing(task: RunTask) -> dict[str, Any] | None:
    """The newest run named ``task.run_name`` in the sweep's database, if any."""
    db = Database(task.db_url)
    try:
        return find_run(db, task.run_name)
    except StorageError:
        return None
    finally:
        db.dispose()


def _run_id(task: RunTask) -> int | None:
    """The id of the newest run of the task's name, where the database can still say."""
    try:
        existing = _existing(task)
    except Exception:  # the database itself may be what failed
        return None
    return None if existing is None else int(existing["id"])
