"""Web service benchmark: every read of ``populace serve`` against the database of a 1M-agent run.

Usage::

    python benchmarks/webui.py --agents 1000000 --steps 24 --databases sqlite postgresql

Builds (or reuses) the run of the ``million`` example (Barabasi-Albert m=5, activation 0.1, rule
policy, every action recorded) with ``--agents`` agents and ``--steps`` steps, on SQLite (a file
under ``--db-dir``, kept for the next time) and on PostgreSQL (a database of its own on
``--pg-server``, dropped at the end unless ``--keep-db``). Then, for each phase of ``--phases``:

    before: the database without the read indexes (any there are dropped first);
    after:  the read indexes created (``ensure_read_indexes`` and ``ensure_attribute_indexes``,
        what a completed run gets; the seconds this takes are reported);
    as-is:  the database as the run left it;

it starts a real ``populace serve`` subprocess on the database and times every read endpoint
over HTTP: the first call of each (right after the server started), then ``--repeat`` rounds of
all of them (warm), reported as median and max. A read over 1 s is flagged.

With ``--index-cost`` it also measures what the read indexes cost if they exist while the run
writes: the same SQLite run built twice in fresh subprocesses, once plain and once with the
indexes created right after step 0, comparing the steps' record time (the write transaction).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from environment import child_env, environment

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "scenarios" / "social" / "examples" / "million.yaml"
LIMIT_S = 1.0
"""The target: every read answers in under a second."""


def experiment(n: int, steps: int) -> dict[str, Any]:
    """The million example with ``n`` agents and ``steps`` steps (one checkpoint, at the end)."""
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["name"] = f"webui_{n}"
    data["population"]["size"] = n
    data["steps"] = steps
    data["checkpoint_every"] = steps
    return data


# -- the read indexes -------------------------------------------------------------------------------


def index_specs(db: Any, scenario: str) -> tuple[list[Any], dict[str, bool]]:
    """The read indexes of a run of ``scenario``: (``ReadIndex`` es, attribute -> numeric),
    as the engine makes them when a run completes."""
    from populace.simulator import get_scenario
    from populace.simulator.reader_indexes import reader_indexes
    from populace.storage.read_indexes import attribute_kinds

    return (reader_indexes(get_scenario(scenario), set(db.table_names())),
            attribute_kinds(db))


def create_indexes(url: str, scenario: str) -> dict[str, float]:
    """Create the read indexes of ``url``'s runs; seconds per index."""
    from populace.storage import Database
    from populace.storage.read_indexes import ensure_attribute_indexes, ensure_read_indexes

    db = Database(url, create=False)
    try:
        specs, attrs = index_specs(db, scenario)
        spent = {}
        for spec in specs:
            t0 = time.perf_counter()
            ensure_read_indexes(db, [spec])
            spent[spec.name] = time.perf_counter() - t0
        for name, numeric in attrs.items():  # (on PostgreSQL each also ANALYZEs agents)
            t0 = time.perf_counter()
            made = ensure_attribute_indexes(db, {name: numeric})
            spent[made.get(name, f"{name} (refused)")] = time.perf_counter() - t0
        return spent
    finally:
        db.dispose()


def drop_indexes(url: str) -> list[str]:
    """Drop every read index (``ix_read_*``, ``ix_attr_*``) of ``url``; their names."""
    from populace.storage import Database
    from populace.storage.read_indexes import index_names

    db = Database(url, create=False)
    try:
        dropped = []
        for table in db.table_names():
            for name in sorted(index_names(db, table)):  # expression indexes included
                if name.startswith(("ix_read_", "ix_attr_")):
                    with db.transaction() as conn:
                        conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')
                    dropped.append(name)
        return dropped
    finally:
        db.dispose()


# -- building the run ---------------------------------------------------------------------------------


def child(n: int, steps: int, url: str, out: Path, indexes: str) -> None:
    """Build the run in this process; ``indexes``: none, start (after step 0) or end."""
    from populace.simulator import Simulation, experiment_from_dict

    sim = Simulation(experiment_from_dict(experiment(n, steps)), db_url=url)
    t0 = time.perf_counter()
    sim.start()
    start_s = time.perf_counter() - t0
    index_s: dict[str, float] = {}
    if indexes == "start":
        index_s = create_indexes(url, "social")
    compute, record = [], []
    while sim.step < steps:
        r = sim.advance()
        compute.append(r.compute_s)
        record.append(r.record_s)
    sim.flush()
    # the record time the writer thread spent, per step, from the steps table
    import sqlalchemy as sa

    with sim.db.engine.connect() as conn:
        written = [float(v) for v in conn.execute(sa.text(
            "SELECT record_s FROM steps WHERE run_id = :r AND step > 0 ORDER BY step"),
            {"r": sim.run_id}).scalars()]
    sim.close()
    sim.db.finish()
    if indexes == "end":
        index_s = create_indexes(url, "social")
    out.write_text(json.dumps({"start_s": start_s, "compute_s": compute, "wait_s": record,
                               "write_s": written, "index_s": index_s}))


def build(n: int, steps: int, url: str, indexes: str = "none") -> dict[str, Any]:
    """Build the run in a fresh subprocess; what ``child`` measured."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "build.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child", str(n), str(steps), url, str(out),
                        indexes], check=True, env=child_env(1))
        raw = json.loads(out.read_text())
        raw["wall_s"] = time.perf_counter() - t0
        return raw


def completed_run(url: str, name: str) -> int | None:
    """The id of the newest completed run called ``name`` in ``url``, if any."""
    from populace.storage import Database, StorageError, find_run

    try:
        db = Database(url, create=False)
    except StorageError:
        return None
    try:
        info = find_run(db, name, prefer_status="completed")
        return int(info["id"]) if info["status"] == "completed" else None
    except StorageError:
        return None
    finally:
        db.dispose()


@contextlib.contextmanager
def pg_database(server: str, name: str, keep: bool, run: str) -> Iterator[str]:
    """The URL of database ``name`` on ``server``: kept if it holds a completed run called
    ``run``, else created afresh; dropped afterwards unless ``keep``."""
    import sqlalchemy as sa

    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    url = server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                              {"n": name}).scalar()
        if exists and completed_run(url, run) is None:  # an interrupted build
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            exists = False
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- serving and timing ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(url: str) -> Iterator[str]:
    """A ``populace serve`` subprocess on ``url``; its base URL once it answers."""
    exe = shutil.which("populace", path=str(Path(sys.executable).parent)) or "populace"
    port = free_port()
    proc = subprocess.Popen([exe, "serve", url, "--port", str(port), "--token", "bench"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=child_env(1))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"populace serve exited: {proc.stderr.read()}")
            try:
                with urllib.request.urlopen(f"{base}/openapi.json", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("populace serve did not answer in 120 s") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str) -> tuple[float, int]:
    """Seconds to GET ``url`` and read the whole answer, and its size (an error raises)."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


def reads(url: str) -> list[tuple[str, str]]:
    """(label, path) of every read to time, with the agents, post and run to ask about."""
    import sqlalchemy as sa

    from populace.simulator import get_scenario
    from populace.storage import Database, find_run

    db = Database(url, create=False)
    try:
        info = find_run(db, None, prefer_status="completed")
        run, n = int(info["id"]), int(info["n_agents"])
        cls = get_scenario(info["scenario"])
        with db.engine.connect() as conn:
            g = cls.graph
            hub = conn.execute(sa.text(
                f"SELECT {g.target} FROM {g.table} WHERE run_id = :r AND step = 0 AND "
                f"{g.target} < 1000 GROUP BY {g.target} ORDER BY count(*) DESC LIMIT 1"),
                {"r": run}).scalar() if g is not None else 0
            root = conn.execute(sa.text(
                "SELECT root_id FROM cascades WHERE run_id = :r ORDER BY scale DESC LIMIT 1"),
                {"r": run}).scalar()
        tables = set(db.table_names())
    finally:
        db.dispose()
    ordinary = n // 2 + 17
    r = f"/api/runs/{run}"
    out = [("runs", "/api/runs"), ("run", r), ("metrics", f"{r}/metrics"),
           ("action mix", f"{r}/actions"),
           ("histogram age (numeric)", f"{r}/attributes/age"),
           ("histogram interest (categorical)", f"{r}/attributes/interest"),
           ("agents, no filter", f"{r}/agents"),
           ("agents where age>=60", f"{r}/agents?where=age%3E%3D60"),
           ("agents where interest=health, age<30",
            f"{r}/agents?where=interest%3Dhealth&where=age%3C30"),
           ("agents, last page", f"{r}/agents?offset={n - 50}"),
           (f"agent {hub} (hub)", f"{r}/agents/{hub}"),
           (f"agent {ordinary}", f"{r}/agents/{ordinary}"),
           (f"graph center={hub} (hub)", f"{r}/graph?center={hub}"),
           (f"graph center={ordinary}", f"{r}/graph?center={ordinary}"),
           (f"graph center={ordinary}, 2 hops", f"{r}/graph?center={ordinary}&hops=2"),
           ("graph, no center", f"{r}/graph"),
           ("graph, no center, color=opinion", f"{r}/graph?color=opinion"),
           ("tables", f"{r}/tables")]
    if root is not None and "posts" in tables:
        out.append((f"posts where root_id={root}", f"{r}/tables/posts?where=root_id%3D{root}"))
    out += [("posts, newest page", f"{r}/tables/posts"), ("llm health", f"{r}/llm")]
    return out


def time_reads(url: str, repeat: int) -> list[dict[str, Any]]:
    """Serve ``url`` and time every read: the first call, then ``repeat`` warm rounds."""
    todo = reads(url)
    with serve(url) as base:
        rows = []
        for label, path in todo:
            first, size = get(base + path)
            rows.append({"read": label, "path": path, "first_s": first, "bytes": size,
                         "warm_s": []})
        for _ in range(repeat):
            for row in rows:
                row["warm_s"].append(get(base + row["path"])[0])
    for row in rows:
        row["median_s"] = statistics.median(row["warm_s"])
        row["max_s"] = max(row["warm_s"])
        row["slowest_s"] = max(row["first_s"], row["max_s"])
    return rows


def table(results: list[dict[str, Any]]) -> str:
    """The timings as a Markdown table: one row per read, a column group per (database,
    phase)."""
    keys = [(r["database"], r["phase"]) for r in results]
    head = "| read | " + " | ".join(f"{d} {p}: first / median / max s" for d, p in keys) + " |"
    lines = [head, "|---|" + "---|" * len(keys)]
    for i, row in enumerate(results[0]["reads"]):
        cells = []
        for r in results:
            x = r["reads"][i]
            flag = " **>1 s**" if x["slowest_s"] >= LIMIT_S else ""
            cells.append(f"{x['first_s']:.3f} / {x['median_s']:.3f} / {x['max_s']:.3f}{flag}")
        lines.append(f"| {row['read']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def index_cost(n: int, steps: int, db_dir: Path) -> dict[str, Any]:
    """SQLite: the run built plain and with the read indexes from step 0 on; record times."""
    out = {}
    for mode in ("none", "start"):
        path = db_dir / f"index_cost_{mode}.sqlite"
        for f in db_dir.glob(f"{path.name}*"):
            f.unlink()
        try:
            out[mode] = build(n, steps, f"sqlite:///{path}", mode)
        finally:
            for f in db_dir.glob(f"{path.name}*"):
                f.unlink()
        w = out[mode]["write_s"]
        print(f"  indexes {mode:<5}: write transaction median {statistics.median(w[:-1]):.3f} s "
              f"per step (max {max(w[:-1]):.3f}, last {w[-1]:.3f}); step wait median "
              f"{statistics.median(out[mode]['wait_s'][1:-1]):.3f} s; indexes built in "
              f"{sum(out[mode]['index_s'].values()):.1f} s", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"],
                    default=["sqlite"])
    ap.add_argument("--phases", nargs="+", choices=["before", "after", "as-is"],
                    default=["before", "after"])
    ap.add_argument("--repeat", type=int, default=5, help="warm rounds of every read")
    ap.add_argument("--db-dir", type=Path, default=Path(tempfile.gettempdir()) / "populace_webui",
                    help="where the SQLite run is built and kept for the next time")
    ap.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--keep-db", action="store_true",
                    help="keep the PostgreSQL database for the next time")
    ap.add_argument("--index-cost", action="store_true",
                    help="also measure the record time with the indexes during the run")
    ap.add_argument("--out", type=Path, help="JSON of everything")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, steps, url, out, indexes = args.child
        child(int(n), int(steps), url, Path(out), indexes)
        return 0
    env = environment(["sqlalchemy", "psycopg", "fastapi", "uvicorn"])
    sqlite_version = __import__("sqlite3").sqlite_version
    print(f"command: {env['command']}\n{env['cpu_count']} CPUs, load {env['load_avg']}, Python "
          f"{env['python']}, SQLite {sqlite_version}, SQLAlchemy {env['sqlalchemy']}, psycopg "
          f"{env['psycopg']}, FastAPI {env['fastapi']}, uvicorn {env['uvicorn']}; "
          f"{env['platform']}", flush=True)
    args.db_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    builds: dict[str, Any] = {}
    name = f"webui_{args.agents}"
    for database in args.databases:
        if database == "sqlite":
            path = args.db_dir / f"webui_{args.agents}_{args.steps}.sqlite"
            if completed_run(f"sqlite:///{path}", name) is None:  # none, or an interrupted build
                for f in args.db_dir.glob(f"{path.name}*"):
                    f.unlink()
            where = contextlib.nullcontext(f"sqlite:///{path}")
        else:
            where = pg_database(args.pg_server, f"populace_webui_{args.agents}_{args.steps}",
                                args.keep_db, name)
        with where as url:
            if completed_run(url, name) is None:
                print(f"{database}: building {args.agents:,} agents, {args.steps} steps ...",
                      flush=True)
                builds[database] = build(args.agents, args.steps, url)
                print(f"{database}: built in {builds[database]['wall_s']:.0f} s", flush=True)
            else:
                print(f"{database}: reusing the run in {url}", flush=True)
            for phase in args.phases:
                made: dict[str, float] = {}
                if phase == "before":
                    drop_indexes(url)
                elif phase == "after":
                    made = create_indexes(url, "social")
                    print(f"{database}: read indexes in {sum(made.values()):.1f} s: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in made.items()), flush=True)
                load = os.getloadavg()
                rows = time_reads(url, args.repeat)
                results.append({"database": database, "phase": phase, "reads": rows,
                                "index_s": made, "load_before": load,
                                "load_after": os.getloadavg()})
                print(f"{database} {phase}: load {load[0]:.2f} before, "
                      f"{os.getloadavg()[0]:.2f} after; slowest read "
                      f"{max(r['slowest_s'] for r in rows):.3f} s", flush=True)
    print()
    print(table(results))
    cost = None
    if args.index_cost:
        print("\nRead indexes during the run (SQLite, fresh subprocesses):", flush=True)
        cost = index_cost(args.agents, args.steps, args.db_dir)
    if args.out:
        args.out.write_text(json.dumps({"environment": env, "settings": vars(args) | {
            "db_dir": str(args.db_dir), "out": str(args.out)}, "builds": builds,
            "results": results, "index_cost": cost}, indent=2, default=str))
    slow = [(r["database"], r["phase"], x["read"]) for r in results for x in r["reads"]
            if x["slowest_s"] >= LIMIT_S]
    if slow:
        print(f"\n{len(slow)} reads took 1 s or more: " + "; ".join(
            f"{d} {p}: {x}" for d, p, x in slow))
    return 0


if __name__ == "__main__":
    sys.exit(main())
