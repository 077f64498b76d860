"""Steering benchmark: what events, interviews and the control channel cost a large run.

Usage::

    python benchmarks/steering.py --sizes 100000 1000000 --steps 8 [--out results.json]

Each (size, variant) runs in a fresh subprocess with BLAS on one thread, recording to SQLite in
a temporary folder: the ``million`` example's experiment (Barabasi-Albert m=5, activation 0.1,
rule policy, mixed feed of 10) with N agents. Variants:

    plain: no events;
    steered: from step 2 on, at every step, an attribute change over a filter (the opinion of
        every agent aged 60 or more shifted by 0.01: about a fifth of the population), an
        interview of a seeded sample of 1,000 agents (a 1-7 scale; rule agents report their
        opinion) and a broadcast post.

Reported per variant: s/step (median over steps 2 to N-1, compute and recording wait), and
for the steered run the seconds spent at the step boundary (applying the events on the
population and answering the interview: the part of the step the events add) and in taking
commands from the control channel (one query per step).

With ``--llm-interview K``, one more run: the first size's experiment with a panel of about K
agents (a population attribute) on a language model, the project's test server in its own
process (``--llm-latency`` seconds per request, ``--llm-capacity`` requests at once), the rest
rule agents; the panel is interviewed (a scale and a free-text question) before step 3.
Reported: the interview's seconds at the boundary against the ideal (requests / capacity x
latency) and the steps without it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from environment import child_env, environment

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "scenarios" / "social" / "examples" / "million.yaml"

EVENTS: list[dict[str, Any]] = [
    {"name": "elders", "kind": "set", "at": 2, "every": 1, "variable": "opinion", "shift": 0.01,
     "agents": {"where": {"age": {">=": 60}}}},
    {"name": "poll", "kind": "interview", "at": 2, "every": 1, "agents": {"sample": 1000},
     "questions": [{"text": "Where do you stand, from 1 to 7?", "answer": "scale", "low": 1,
                    "high": 7}]},
    {"name": "news", "kind": "broadcast", "at": 2, "every": 1, "text": "Today's news.",
     "args": {"topic": "politics", "stance": 0.5, "likes": 1}},
]


def experiment(n: int, steps: int, steered: bool) -> dict[str, Any]:
    """The million example with ``n`` agents, ``steps`` steps, and the events if ``steered``."""
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["name"] = f"steering_{n}"
    data["population"]["size"] = n
    data["steps"] = steps
    data["checkpoint_every"] = steps
    if steered:
        data["events"] = EVENTS
    return data


def child(n: int, steps: int, steered: bool, url: str, out: Path) -> None:
    from populace.simulator import Simulation, experiment_from_dict

    sim = Simulation(experiment_from_dict(experiment(n, steps, steered)), db_url=url)
    spent = {"boundary": 0.0, "commands": 0.0}

    def timed(name: str, key: str) -> None:
        inner = getattr(sim, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - t0

        setattr(sim, name, wrapper)

    timed("_boundary", "boundary")
    timed("take_commands", "commands")
    sim.start()
    steps_s, boundary_s, commands_s = [], [], []
    while sim.step < steps:
        spent.update(boundary=0.0, commands=0.0)
        r = sim.advance()
        steps_s.append(r.compute_s + r.record_s)
        boundary_s.append(spent["boundary"])
        commands_s.append(spent["commands"])
    sim.close()
    out.write_text(json.dumps({"steps_s": steps_s, "boundary_s": boundary_s,
                               "commands_s": commands_s}))


def llm_child(n: int, panel: int, url: str, llm_url: str, out: Path) -> None:
    from populace.simulator import Simulation, experiment_from_dict

    data = experiment(n, 4, steered=False)
    share = panel / n
    data["population"]["attributes"]["panel"] = {
        "dist": "categorical", "values": {"yes": share, "no": 1 - share}}
    data["llm"] = {"backend": "openai", "model": "populace-test", "cache": False,
                   "endpoints": [{"base_url": llm_url, "max_in_flight": 64}]}
    data["policy"] = {"type": "mixed", "parts": [
        {"select": {"where": {"panel": "yes"}}, "type": "llm"}, {"type": "rule"}]}
    data["events"] = [{"name": "panel", "kind": "interview", "at": 3,
                       "agents": {"where": {"panel": "yes"}}, "questions": [
                           {"id": "stance", "text": "Where do you stand, from 1 to 7?",
                            "answer": "scale", "low": 1, "high": 7},
                           {"id": "why", "text": "Why?", "max_chars": 200}]}]
    sim = Simulation(experiment_from_dict(data), db_url=url)
    spent = {"boundary": 0.0}
    inner = sim._boundary

    def boundary(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent["boundary"] += time.perf_counter() - t0

    sim._boundary = boundary  # type: ignore[method-assign]
    sim.start()
    steps_s = []
    asked = 0
    while sim.step < 4:
        r = sim.advance()
        steps_s.append(r.compute_s + r.record_s)
        asked += int(r.metrics.get("llm.interviews", 0) or 0)
    sim.close()
    out.write_text(json.dumps({"steps_s": steps_s, "interview_s": spent["boundary"],
                               "asked": asked}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--llm-interview", type=int, default=0, metavar="K")
    ap.add_argument("--llm-latency", type=float, default=0.5)
    ap.add_argument("--llm-capacity", type=int, default=64)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--llm-child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n, steps, steered, url, out = args.child
        child(int(n), int(steps), steered == "1", url, Path(out))
        return 0
    if args.llm_child:
        n, k, url, llm_url, out = args.llm_child
        llm_child(int(n), int(k), url, llm_url, Path(out))
        return 0
    if args.steps < 4:
        ap.error("--steps must be at least 4")
    results: dict[str, Any] = {"environment": environment(["numpy", "sqlalchemy"]), "runs": []}
    print(f"{'agents':>10} {'variant':>8} {'s/step':>8} {'boundary s':>11} {'commands s':>11}")
    status = 0
    for n in args.sizes:
        for steered in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "out.json"
                url = f"sqlite:///{Path(tmp) / 'run.sqlite'}"
                proc = subprocess.run([sys.executable, __file__, "--child", str(n),
                                       str(args.steps), "1" if steered else "0", url, str(out)],
                                      env=child_env(1), capture_output=True, text=True)
                if proc.returncode:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    status = 1
                    continue
                got = json.loads(out.read_text())
            window = slice(1, args.steps - 1)  # steps 2 .. N-1: events on, no checkpoint
            row = {"agents": n, "variant": "steered" if steered else "plain",
                   "s_per_step": statistics.median(got["steps_s"][window]),
                   "boundary_s": statistics.median(got["boundary_s"][window]),
                   "commands_s": statistics.median(got["commands_s"][window])}
            results["runs"].append(row)
            print(f"{n:>10,} {row['variant']:>8} {row['s_per_step']:>8.3f} "
                  f"{row['boundary_s']:>11.4f} {row['commands_s']:>11.4f}")
    if args.llm_interview:
        status |= _llm_interview(args, results)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return status


def _llm_interview(args: argparse.Namespace, results: dict[str, Any]) -> int:
    """The interview of a language-model panel, against the test server in its own process."""
    server = subprocess.Popen(
        [sys.executable, "-m", "populace.simulator.testing.llm_server", "--port", "0",
         "--latency", str(args.llm_latency), "--capacity", str(args.llm_capacity)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        llm_url = server.stdout.readline().strip()
        n = args.sizes[0]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            proc = subprocess.run(
                [sys.executable, __file__, "--llm-child", str(n), str(args.llm_interview),
                 f"sqlite:///{Path(tmp) / 'run.sqlite'}", llm_url, str(out)],
                env=child_env(1), capture_output=True, text=True)
            if proc.returncode:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            got = json.loads(out.read_text())
    finally:
        server.terminate()
        server.wait()
    waves = -(-got["asked"] // args.llm_capacity)
    ideal = waves * args.llm_latency
    row = {"agents": n, "asked": got["asked"], "interview_s": got["interview_s"],
           "ideal_s": ideal, "steps_s": got["steps_s"], "latency_s": args.llm_latency,
           "capacity": args.llm_capacity}
    results["llm_interview"] = row
    print(f"LLM interview of {got['asked']:,} agents among {n:,}: {got['interview_s']:.2f} s at "
          f"the boundary (ideal {ideal:.2f} s: {waves} waves of {args.llm_capacity} at "
          f"{args.llm_latency:g} s); steps: " + ", ".join(f"{x:.2f}" for x in got["steps_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
