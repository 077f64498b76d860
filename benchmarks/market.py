"""Market benchmark: seconds per step of the marketplace with rule agents, by customer count.

Usage::

    python benchmarks/market.py --customers 10000 100000 --steps 24 [--out market.json]

Each size runs in a fresh subprocess (its peak memory is its own) with BLAS pinned to one
thread: the ``large`` example's settings (1 business per 100 customers, lexical search, k = 5,
capacity 20, 10% of agents active per step, need rate 0.05, 30% of customers with a need at the
start), recording to a SQLite file, metrics every step. Reported over the steps after the first
two (the market fills up): median seconds per step (compute + recording wait), steps per
second, agent-steps per second (every agent counted once per step), orders per step, and the
child's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from environment import child_env, environment


def experiment(customers: int, steps: int, seed: int) -> dict[str, Any]:
    """The benchmark experiment, as the dict a YAML file would give."""
    businesses = max(1, customers // 100)
    return {
        "name": f"market_bench_{customers}", "seed": seed, "steps": steps,
        "step_duration": "1h", "start_time": "2025-03-01T08:00:00",
        "scenario": {"type": "market", "businesses": businesses, "ranking": "lexical",
                     "results": 5, "capacity": 20, "need_rate": 0.05,
                     "initial_need_share": 0.3},
        "population": {"size": customers + businesses},
        "activation": {"probability": 0.1},
        "policy": {"type": "rule", "params": {"contacts": 3, "wait_for": 2, "patience": 4}},
        "metrics": {"every": 1},
        "checkpoint_every": steps,
    }


def child(customers: int, steps: int, seed: int, out: Path, db: Path) -> None:
    from populace.simulator import Simulation, experiment_from_dict

    sim = Simulation(experiment_from_dict(experiment(customers, steps, seed)),
                     db_url=f"sqlite:///{db}")
    sim.start()
    rows = []
    while sim.step < steps:
        r = sim.advance()
        rows.append({"step": r.step, "s": r.compute_s + r.record_s, "active": r.n_active,
                     "orders": r.metrics.get("orders", 0.0)})
    sim.flush()
    sim.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.write_text(json.dumps({"rows": rows, "peak_rss": peak, "setup_s": sim.setup_s}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        customers, steps, out, db = args.child
        child(int(customers), int(steps), args.seed, Path(out), Path(db))
        return 0
    env = environment(["numpy", "sqlalchemy"])
    print(f"command: {env['command']}\n{env['cpu_count']} CPUs, Python {env['python']}, "
          f"numpy {env['numpy']}; {env['platform']}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.customers:
            out, db = Path(tmp) / f"{n}.json", Path(tmp) / f"{n}.sqlite"
            subprocess.run([sys.executable, __file__, "--seed", str(args.seed), "--child",
                            str(n), str(args.steps), str(out), str(db)], check=True,
                           env=child_env(1))
            raw = json.loads(out.read_text())
            timed = raw["rows"][2:-1] or raw["rows"]
            s = statistics.median(r["s"] for r in timed)
            agents = n + max(1, n // 100)
            result = {"customers": n, "s_per_step": s, "steps_per_s": 1 / s,
                      "agent_steps_per_s": agents / s,
                      "orders_per_step": statistics.mean(r["orders"] for r in timed),
                      "active_per_step": statistics.mean(r["active"] for r in timed),
                      "peak_rss_mb": raw["peak_rss"] / 1e6, "setup_s": raw["setup_s"]}
            results.append(result)
            print(f"{n:>9,} customers: {s:.3f} s/step ({1 / s:.1f} steps/s, "
                  f"{agents / s:,.0f} agent-steps/s), {result['orders_per_step']:.0f} orders "
                  f"and {result['active_per_step']:,.0f} active agents per step, peak RSS "
                  f"{result['peak_rss_mb']:.0f} MB, set-up {raw['setup_s']:.2f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"environment": env, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
