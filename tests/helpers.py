"""Helpers for tests: run an experiment from a dict and compare run databases."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from populace.simulator import Simulation, experiment_from_dict
from populace.storage import Run, open_run

# Columns that legitimately differ between two runs of the same experiment (timings, clocks).
VOLATILE = {"compute_s", "record_s", "created_at", "updated_at", "finished_at", "setup_s",
            "wall_s", "data", "applied_at"}


def run_experiment(data: dict[str, Any], url: str) -> Run:
    """Run the experiment ``data`` into the database at ``url``."""
    sim = Simulation(experiment_from_dict(data), db_url=url)
    return sim.run()


def content_tables(run: Run) -> dict[str, pd.DataFrame]:
    """Every table of a run except timings, sorted, for equality checks."""
    out = {}
    for name in sorted(run.tables()):
        if name == "checkpoints":
            continue
        frame = run.table(name)
        frame = frame[[c for c in frame.columns if c not in VOLATILE]]
        out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def assert_same_run(a: Run, b: Run) -> None:
    """The two runs recorded identical data in every table."""
    ta, tb = content_tables(a), content_tables(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=True, obj=name)


def reopen(url: str, run_id: int) -> Run:
    """A fresh handle on a run (re-reads its row)."""
    return open_run(url, run_id)


class Crash(RuntimeError):
    """The simulated failure of ``crash_after``."""


def crash_after(sim: Simulation, step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``sim.run()`` raise ``Crash`` once ``step`` is committed (before the next step)."""
    original = sim.advance

    def advance():  # noqa: ANN202
        if sim.step == step:
            raise Crash("simulated crash")
        return original()

    monkeypatch.setattr(sim, "advance", advance)


@contextmanager
def local_ray() -> Iterator[Any]:
    """The ``ray`` module with a private Ray of 2 CPUs running: started here (and shut down
    after) unless one already runs; the tests skip where Ray is not installed."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def assert_ray_matches_local(data: dict[str, Any], folder: Path, tables: Sequence[str],
                             shards: Sequence[int] = (1, 2)) -> None:
    """Run ``data`` on the local runtime and on Ray with each number of ``shards`` (a local
    Ray cluster of 2 CPUs, started here unless one is running) into SQLite files in
    ``folder``; every run records the local run's rows, ``tables`` compared row for row in
    their order too."""
    pytest.importorskip("ray")
    local = run_experiment(data, f"sqlite:///{folder / 'local.sqlite'}")
    with local_ray():
        for n in shards:
            sharded = copy.deepcopy(data)
            sharded["runtime"] = {"type": "ray", "shards": n}
            ray_run = run_experiment(sharded, f"sqlite:///{folder / f'ray{n}.sqlite'}")
            assert_same_run(local, ray_run)
            for table in tables:
                pd.testing.assert_frame_equal(local.table(table), ray_run.table(table),
                                              check_exact=True)
