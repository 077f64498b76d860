"""Scale benchmark: the social scenario at 10k, 100k and 1M agents on the local runtime.

Usage::

    python benchmarks/scale.py --sizes 10000 100000 1000000 --steps 6 --databases sqlite postgresql

Each (size, database) runs in a fresh subprocess with BLAS on one thread: the ``million``
example's experiment (Barabasi-Albert m=5, activation 0.1, rule policy, mixed feed of 10,
recording on) with N agents. Reported:

    population s, graph s: time to build the population and the follow graph;
    start s: the whole start (build, scenario set-up, first commit of the agents and graph);
    s/step: median compute + recording wait over the steps after the first (the last step,
        which also checkpoints, is reported on its own);
    agent-steps/s: N / (s/step);
    peak RSS and bytes per agent: the child's peak resident memory, and that over N;
    DB rows/s: rows written / seconds spent in the write transactions (the writer thread),
        over the steps, for SQLite (executemany) and PostgreSQL (COPY);
PostgreSQL runs use a fresh database on --pg-server, dropped afterwards.

With ``--llm-agents K`` the policy is mixed: K agents (a seeded sample) decide with a language
model, through the project's test server started in its own process (``--llm-latency`` seconds
per request, ``--llm-capacity`` requests at once), and the rest keep the rule policy. The step
time is then split into the LLM part's decide (prompts, requests, answers, memory) and the rest
of the engine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from environment import child_env, environment

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "scenarios" / "social" / "examples" / "million.yaml"


def experiment(n: int, steps: int, llm_agents: int = 0, llm_url: str | None = None,
               llm_in_flight: int = 64, shards: int = 0) -> dict[str, Any]:
    """The million example with ``n`` agents and ``steps`` steps (one checkpoint, at the end);
    with ``llm_agents``, that many agents on the model at ``llm_url``."""
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["name"] = f"scale_{n}"
    data["population"]["size"] = n
    data["steps"] = steps
    data["checkpoint_every"] = steps
    if shards:
        data["runtime"] = {"type": "ray", "shards": shards, "num_cpus": os.cpu_count()}
    if llm_agents:
        data["llm"] = {"backend": "openai", "model": "populace-test", "cache": False,
                       "endpoints": [{"base_url": llm_url, "max_in_flight": llm_in_flight}]}
        data["policy"] = {"type": "mixed", "parts": [
            {"select": {"fraction": llm_agents / n}, "type": "llm"}, {"type": "rule"}]}
    return data


def child(n: int, steps: int, url: str, out: Path, llm_agents: int = 0,
          llm_url: str | None = None, shards: int = 0) -> None:
    import populace.simulator.build as build
    import populace.simulator.engine as engine
    from populace.simulator import Simulation, experiment_from_dict

    spent: dict[str, float] = {}

    def timed(obj: Any, name: str, key: str) -> None:
        inner = getattr(obj, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0

        setattr(obj, name, wrapper)

    timed(engine, "build_population", "population")
    timed(build, "build_network", "graph")
    sim = Simulation(experiment_from_dict(experiment(n, steps, llm_agents, llm_url,
                                                     shards=shards)), db_url=url)
    written = {"rows": 0, "s": 0.0}
    inner_write = sim._write

    def write(step: int, tables: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner_write(step, tables, *args, **kwargs)
        finally:
            if step > 0:
                written["s"] += time.perf_counter() - t0
                written["rows"] += sum(len(next(iter(c.values()))) for c in tables.values()
                                       if c)

    sim._write = write  # type: ignore[method-assign]
    watcher = _TreeMemory() if shards else None
    t0 = time.perf_counter()
    sim.start()
    start_s = time.perf_counter() - t0
    if llm_agents:
        timed(sim.policy.policies[0], "decide", "llm_decide")
    steps_s, llm_s, llm_decisions = [], [], []
    while sim.step < steps:
        spent.pop("llm_decide", None)
        r = sim.advance()
        steps_s.append(r.compute_s + r.record_s)
        llm_s.append(spent.get("llm_decide", 0.0))
        llm_decisions.append(r.metrics.get("llm.requests", 0.0))
    t = time.perf_counter()
    sim.close()
    steps_s[-1] += time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if watcher is not None:  # every process of the run: the driver and Ray's, shards included
        watcher.stop()
        peak = max(peak, watcher.peak)
    out.write_text(json.dumps({"population_s": spent.get("population"),
                               "graph_s": spent.get("graph"), "start_s": start_s,
                               "steps_s": steps_s, "peak_rss": peak, "rows": written["rows"],
                               "write_s": written["s"], "llm_s": llm_s,
                               "llm_decisions": llm_decisions}))


class _TreeMemory:
    """Polls the summed resident memory of this process and all its descendants."""

    def __init__(self, every: float = 0.2) -> None:
        import threading

        import psutil

        self.peak = 0
        self._done = threading.Event()
        me = psutil.Process()

        def poll() -> None:
            while not self._done.wait(every):
                total = 0
                for p in [me, *me.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a process that just ended
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _fresh_pg(server: str) -> tuple[str, Any]:
    import sqlalchemy as sa

    name = f"populace_scale_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"],
                    default=["sqlite", "postgresql"])
    ap.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--shards", type=int, default=0,
                    help="run on the Ray runtime with this many shards (0: local runtime)")
    ap.add_argument("--llm-agents", type=int, default=0)
    ap.add_argument("--llm-latency", type=float, default=0.5)
    ap.add_argument("--llm-capacity", type=int, default=64)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, steps, url, out, k, llm_url, shards = args.child
        child(int(n), int(steps), url, Path(out), int(k), llm_url, int(shards))
        return 0
    if args.steps < 3:
        ap.error("--steps must be at least 3 (the first and last steps are reported apart)")
    env = environment(["numpy", "sqlalchemy", "psycopg"])
    print(f"command: {env['command']}\n{env['cpu_count']} CPUs, Python {env['python']}, "
          f"numpy {env['numpy']}, SQLAlchemy {env['sqlalchemy']}, psycopg {env['psycopg']}; "
          f"{env['platform']}", flush=True)
    results = []
    server = llm_url = None
    if args.llm_agents:
        server = subprocess.Popen(
            [sys.executable, "-m", "populace.simulator.testing.llm_server", "--port", "0",
             "--latency", str(args.llm_latency), "--capacity", str(args.llm_capacity)],
            stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        llm_url = server.stdout.readline().strip()
        print(f"test server at {llm_url}: latency {args.llm_latency:g} s, capacity "
              f"{args.llm_capacity} (ideal {args.llm_capacity / args.llm_latency:.0f} "
              "requests/s)", flush=True)
    try:
        _run_all(args, results, llm_url)
    finally:
        if server is not None:
            server.terminate()
            server.wait()
    if args.out:
        args.out.write_text(json.dumps({"environment": env, "results": results}, indent=2))
    return 0


def _run_all(args: argparse.Namespace, results: list[dict[str, Any]],
             llm_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            for db in args.databases:
                out = Path(tmp) / f"{n}-{db}.json"
                drop = None
                if db == "sqlite":
                    url = f"sqlite:///{Path(tmp) / f'{n}.sqlite'}"
                else:
                    url, drop = _fresh_pg(args.pg_server)
                try:
                    subprocess.run([sys.executable, __file__, "--child", str(n),
                                    str(args.steps), url, str(out), str(args.llm_agents),
                                    str(llm_url), str(args.shards)], check=True,
                                   env=child_env(1))
                finally:
                    if drop is not None:
                        drop()
                    for f in Path(tmp).glob(f"{n}.sqlite*"):
                        f.unlink()
                raw = json.loads(out.read_text())
                s = statistics.median(raw["steps_s"][1:-1])
                r = {"agents": n, "database": db, "shards": args.shards, "population_s": raw["population_s"],
                     "graph_s": raw["graph_s"], "start_s": raw["start_s"], "s_per_step": s,
                     "first_step_s": raw["steps_s"][0], "last_step_s": raw["steps_s"][-1],
                     "agent_steps_per_s": n / s, "peak_rss_mb": raw["peak_rss"] / 1e6,
                     "bytes_per_agent": raw["peak_rss"] / n,
                     "db_rows_per_s": raw["rows"] / raw["write_s"] if raw["write_s"] else None,
                     "rows_per_step": raw["rows"] / args.steps,
                     "llm_agents": args.llm_agents,
                     "llm_decide_s_per_step": statistics.median(raw["llm_s"][1:-1]),
                     "llm_decisions_per_step": statistics.mean(raw["llm_decisions"][1:-1])}
                results.append(r)
                where = f"ray x{args.shards}" if args.shards else "local"
                graph = ("in the shards" if r["graph_s"] is None  # the driver builds no graph
                         else f"{r['graph_s']:.2f}s")
                print(f"{n:>9,} {db:<10} {where:<7} population {r['population_s']:.2f}s graph "
                      f"{graph} start {r['start_s']:.1f}s | {s:.3f} s/step "
                      f"(last {r['last_step_s']:.2f}s) {r['agent_steps_per_s'] / 1e6:.2f}M "
                      f"agent-steps/s | peak {r['peak_rss_mb']:,.0f} MB "
                      f"({r['bytes_per_agent']:,.0f} B/agent) | DB "
                      f"{(r['db_rows_per_s'] or 0) / 1e3:,.0f}k rows/s "
                      f"({r['rows_per_step']:,.0f} rows/step)", flush=True)
                if args.llm_agents:
                    llm = r["llm_decide_s_per_step"]
                    print(f"    LLM part: {r['llm_decisions_per_step']:.0f} decisions/step, "
                          f"{llm:.3f} s of the {s:.3f} s step in its decide ({100 * llm / s:.0f}%)"
                          f"; the engine and the rule agents: {s - llm:.3f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
