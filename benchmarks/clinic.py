"""Clinic benchmark: a hospital day of 10,000 patients with rule doctors, and consultation rounds
of 1,000 language-model doctors against the project's test server.

Usage::

    python benchmarks/clinic.py [--out clinic.json]
    python benchmarks/clinic.py --skip-llm            # the hospital day only
    python benchmarks/clinic.py --llm-doctors 200 --llm-server 64:0.25

Runs, each in a fresh subprocess (its peak memory is its own), BLAS on one thread:
    hospital: ``scenarios/clinic/examples/hospital_day.yaml`` as shipped (10,000 patients over
        24 hours, 320 rule doctors, 288 five-minute steps), into SQLite: set-up seconds, total
        seconds, median and 90th-percentile seconds per step (compute + recording wait), the
        consultations in progress at the busiest step, consultations finished, accuracy, and
        the child's peak resident memory.
    llm: N language-model doctors (``--llm-doctors``, default 1,000), each with one patient
        from the start, so that every step is a round of N concurrent consultations (one turn
        each); structured decisions (``llm_protocol: structured``) against a test server per
        ``--llm-server C:L`` (capacity C requests at once, L seconds each; default 0:0, an
        instant server: Populace's own cost per round, and 256:0.25, ideal 1,024 requests
        per second); the client keeps 2C requests in flight (N for the instant server).
        Reported per round over rounds 2-5: seconds, requests (decisions and
        repairs) and requests per second. The test server's answers are schema-valid JSON but
        arbitrary, so many fail the decision's own checks and are repaired or fall back;
        ``llm.max_fallback_share`` is 1 so that the run goes on.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from environment import child_env, environment
from llm import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
HOSPITAL = ROOT / "scenarios" / "clinic" / "examples" / "hospital_day.yaml"


def llm_experiment(doctors: int, url: str, rounds: int, doctors_csv: Path,
                   in_flight: int) -> dict[str, Any]:
    """N language-model doctors, one patient each, every patient there at the start."""
    return {
        "name": f"clinic_llm_{doctors}", "seed": 3, "steps": rounds, "step_duration": "5m",
        "start_time": "2025-01-06 08:00",
        "scenario": {"type": "clinic", "arrival": "start", "capacity": 1, "max_turns": 20,
                     "llm_protocol": "structured", "patience_min": 100000},
        "population": {"size": 2 * doctors, "file": str(doctors_csv)},
        "activation": {"by": "role", "groups": {"doctor": [1.0] * 24}},
        "policy": {"type": "mixed", "parts": [
            {"select": {"where": {"role": "doctor"}}, "type": "llm",
             "params": {"memory": {"enabled": False}}},
            {"type": "rule"}]},
        "llm": {"backend": "openai", "model": "populace-test", "cache": False,
                "max_fallback_share": 1.0,
                "endpoints": [{"base_url": url, "max_in_flight": in_flight}]},
        "checkpoint_every": rounds,
    }


def child(spec: dict[str, Any], out: Path) -> None:
    """Run one experiment step by step; write per-step timings and the final metrics."""
    from populace.simulator import Simulation, experiment_from_dict, load_experiment

    exp = (load_experiment(spec["path"]) if "path" in spec
           else experiment_from_dict(spec["experiment"]))
    sim = Simulation(exp, db_url=f"sqlite:///{spec['db']}")
    sim.start()
    rows = []
    while sim.step < exp.config.steps:
        r = sim.advance()
        rows.append({"step": r.step, "s": r.compute_s + r.record_s,
                     "open": r.metrics.get("in_consultation", 0.0)
                     + r.metrics.get("waiting_test", 0.0),
                     "requests": r.metrics.get("llm.requests", float("nan")),
                     "decisions": r.metrics.get("llm.decisions", float("nan"))})
    sim.flush()
    metrics = {k: v for k, v in r.metrics.items() if isinstance(v, float)}
    sim.close()
    out.write_text(json.dumps({"setup_s": sim.setup_s, "steps": rows, "final": metrics}),
                   encoding="utf-8")


def run_child(spec: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """``child`` in a fresh interpreter; adds its wall time and peak memory."""
    spec_path, out = tmp / "spec.json", tmp / "out.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    import time
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", str(spec_path), str(out)],
                   check=True, env=child_env(1))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(out.read_text(encoding="utf-8"))
    result["wall_s"] = wall
    result["peak_rss_mb"] = max(peak, before) / 1024
    return result


def hospital(tmp: Path) -> dict[str, Any]:
    """The hospital day as shipped."""
    r = run_child({"path": str(HOSPITAL), "db": str(tmp / "hospital.sqlite")}, tmp)
    times = [s["s"] for s in r["steps"]]
    final = r["final"]
    return {"setup_s": r["setup_s"], "wall_s": r["wall_s"], "steps": len(times),
            "step_median_s": statistics.median(times),
            "step_p90_s": statistics.quantiles(times, n=10)[-1],
            "steps_s": sum(times), "open_max": max(s["open"] for s in r["steps"]),
            "consultations": final["consultations"], "accuracy": final["accuracy"],
            "arrived": final["arrived"], "left": final["left"],
            "peak_rss_mb": r["peak_rss_mb"]}


def llm_rounds(doctors: int, capacity: int, latency: float, rounds: int,
               tmp: Path) -> dict[str, Any]:
    """N concurrent language-model consultations against one test server."""
    doctors_csv = tmp / "doctors.csv"
    with doctors_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["role"])
        writer.writerows([["doctor"]] * doctors)
    server = ServerProcess(capacity, latency, 1, tmp / f"server_{capacity}_{latency}.log")
    try:
        # the client keeps twice the server's capacity outstanding (as benchmarks/llm.py)
        in_flight = 2 * capacity if capacity else doctors
        spec = {"experiment": llm_experiment(doctors, server.url, rounds, doctors_csv,
                                             in_flight),
                "db": str(tmp / f"llm_{capacity}_{latency}.sqlite")}
        r = run_child(copy.deepcopy(spec), tmp)
    finally:
        server.stop()
    steps = r["steps"][1:5]
    return {"doctors": doctors, "capacity": capacity, "latency_s": latency,
            "ideal_rps": capacity / latency if capacity and latency else None,
            "round_s": [round(s["s"], 3) for s in steps],
            "round_median_s": statistics.median(s["s"] for s in steps),
            "requests_per_round": statistics.median(s["requests"] for s in steps),
            "requests_per_s": statistics.median(s["requests"] / s["s"] for s in steps),
            "no_diagnosis": r["final"].get("no_diagnosis"),
            "peak_rss_mb": r["peak_rss_mb"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--skip-hospital", action="store_true")
    parser.add_argument("--llm-doctors", type=int, default=1000)
    parser.add_argument("--llm-rounds", type=int, default=6)
    parser.add_argument("--llm-server", nargs="*", default=["0:0", "256:0.25"],
                        help="C:L per server (capacity, seconds per request)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(json.loads(Path(args.child[0]).read_text(encoding="utf-8")), Path(args.child[1]))
        return 0
    report: dict[str, Any] = {"environment": environment(["numpy", "sqlalchemy"])}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_hospital:
            report["hospital"] = hospital(Path(tmp))
            print(json.dumps(report["hospital"], indent=1), flush=True)
        if not args.skip_llm:
            report["llm"] = []
            for server in args.llm_server:
                capacity, latency = server.split(":")
                result = llm_rounds(args.llm_doctors, int(capacity), float(latency),
                                    args.llm_rounds, Path(tmp))
                report["llm"].append(result)
                print(json.dumps(result, indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
