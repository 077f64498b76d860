"""Engine benchmark: Populace's social scenario against Mesa 3 and against compiled loops.

Usage::

    python benchmarks/engine.py --sizes 10000 100000 1000000 --steps 10 \\
        --mesa-sizes 10000 100000 --numba-sizes 10000 100000 1000000 --out results.json

Every (system, size) runs in a fresh subprocess, so its peak memory is its own. Populace runs
the ``social`` scenario through ``Simulation`` (population of N agents with opinion uniform(-1, 1)
and an interest among the 5 default topics, Barabasi-Albert follow graph m=5, activation
probability 0.1, rule policy with default parameters, default recording to a SQLite file,
metrics every step, one checkpoint at the end). Mesa runs ``benchmarks/mesa_opinion.py``, the
model written the idiomatic Mesa 3 way (the baseline); numba runs ``benchmarks/numba_opinion.py``,
the same step written as compiled loops over arrays with nothing recorded (the limit of the
machine; its compile time is reported apart and left out of s/step).
Children run with numpy's BLAS pinned to one thread (``--blas-threads``; see the README).

Figures (over the steps after ``--warmup`` steps):
    s/step: median seconds per step; for Populace compute_s + record_s of the ``StepReport``
        (record_s: preparing rows and waiting for the writer thread, which writes a step while
        the next is computed), the last step excluded: the last step (final checkpoint,
        end-of-run analysis, final write) is reported separately as ``last_step_s``; for Mesa
        and numba the wall time of the model's step (numba: its five compiled phases).
    agent-steps/s: N / (s/step), every agent of the population counted once per step (what a
        Mesa ``shuffle_do("step")`` visits), active or not.
    active decisions/s: active agents of the step / (s/step).
    peak RSS: the child's own ``ru_maxrss`` (and, as a check, the largest RSS seen by polling it).
    DB MB: size of the run's SQLite file at the end.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from environment import BLAS_VARS, child_env
from environment import environment as _environment

HERE = Path(__file__).resolve().parent
TOPICS = ["politics", "economy", "health", "technology", "sports"]
MB = 1e6
PHASES = ("activate", "observe", "decide", "apply", "metrics", "finish", "checkpoint")


# -- the experiment -------------------------------------------------------------------------------


def populace_experiment(n: int, steps: int, seed: int = 0, *, activation: float = 0.1,
                        m: int = 5, feed: str | None = None) -> dict[str, Any]:
    """The benchmark experiment as the dict a YAML file would give."""
    scenario: dict[str, Any] = {"type": "social"}
    if feed is not None:
        scenario["feed"] = {"algorithm": feed}
    return {
        "name": f"bench_{n}",
        "seed": seed,
        "steps": steps,
        "scenario": scenario,
        "population": {
            "size": n,
            "attributes": {
                "opinion": {"dist": "uniform", "low": -1, "high": 1},
                "interest": {"dist": "categorical", "values": TOPICS},
            },
        },
        "network": {"generator": "barabasi_albert", "m": m},
        "activation": {"probability": activation},
        "policy": {"type": "rule", "params": {}},
        "metrics": {"every": 1},
        "checkpoint_every": steps,
    }


# -- what runs in a child process -----------------------------------------------------------------


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class _PhaseTimer:
    """Wraps bound methods of the running simulation to time each phase of a step."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def wrap(self, obj: Any, method: str, phase: str) -> None:
        inner = getattr(obj, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.current[phase] = self.current.get(phase, 0.0) + time.perf_counter() - t0

        setattr(obj, method, timed)

    def take(self) -> dict[str, float]:
        out, self.current = self.current, {}
        return out


def run_populace(n: int, steps: int, seed: int, db_dir: Path, *, feed: str | None = None,
                 keep_db: bool = False, activation: float = 0.1) -> dict[str, Any]:
    """Run the experiment in this process and time it (what a Populace child does)."""
    from populace.simulator import Simulation, experiment_from_dict

    db_path = db_dir / f"bench_{n}.sqlite"
    for stale in _db_files(db_path):
        stale.unlink()
    exp = experiment_from_dict(populace_experiment(n, steps, seed, feed=feed,
                                                   activation=activation))
    sim = Simulation(exp, db_url=f"sqlite:///{db_path}")
    t0 = time.perf_counter()
    sim.start()
    start_s = time.perf_counter() - t0
    _log(f"populace N={n}: set-up {sim.setup_s:.2f}s, step 0 recorded in "
         f"{start_s - sim.setup_s:.2f}s")
    # time the phases of a step without touching the engine: wrap the bound methods it calls
    timer = _PhaseTimer()
    timer.wrap(sim.activation, "draw", "activate")
    timer.wrap(sim.scenario, "observe", "observe")
    timer.wrap(sim.policy, "decide", "decide")
    timer.wrap(sim.scenario, "apply", "apply")
    timer.wrap(sim.scenario, "metrics", "metrics")
    timer.wrap(sim.scenario, "finish", "finish")
    timer.wrap(sim, "_checkpoint_blob", "checkpoint")
    rows: list[dict[str, Any]] = []
    while sim.step < steps:
        t, c = time.perf_counter(), time.process_time()
        report = sim.advance()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        rows.append({"step": report.step, "n_active": report.n_active,
                     "n_actions": report.n_actions, "compute_s": report.compute_s,
                     "record_s": report.record_s, "wall_s": wall, "cpu_s": cpu, "phases_s": timer.take(),
                     "opinion_var": report.metrics.get("opinion_var")})
        _log(f"populace N={n}: step {report.step}/{steps} compute {report.compute_s:.3f}s "
             f"record {report.record_s:.3f}s ({report.n_active} active)")
    # the last step's transaction may still be in the writer thread: its wait counts
    t = time.perf_counter()
    sim.close()
    if rows:
        rows[-1]["wall_s"] += time.perf_counter() - t
        rows[-1]["record_s"] += time.perf_counter() - t
    assert sim.db is not None
    sim.db.dispose()
    db_bytes = sum(f.stat().st_size for f in _db_files(db_path))
    if not keep_db:
        for f in _db_files(db_path):
            f.unlink()
    return {"setup_s": sim.setup_s, "start_s": start_s,
            "initial_commit_s": start_s - sim.setup_s, "steps": rows, "db_bytes": db_bytes,
            "db_path": str(db_path) if keep_db else None}


def _db_files(path: Path) -> list[Path]:
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return [f for f in files if f.exists()]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child_main(args: argparse.Namespace) -> int:
    """Entry point of a child: run one (system, size) and write its JSON result."""
    # each child imports only its own system; the RSS then is what the interpreter and the
    # libraries take before any agent exists
    if args.child == "populace":
        import populace.scenarios.social  # noqa: F401
        import populace.simulator  # noqa: F401

        import_rss = _peak_rss_bytes()
        out = run_populace(args.size, args.steps, args.seed, Path(args.db_dir), feed=args.feed,
                           keep_db=args.keep_db, activation=args.activation)
    elif args.child == "mesa":
        sys.path.insert(0, str(HERE))
        import mesa_opinion

        import_rss = _peak_rss_bytes()
        out = mesa_opinion.run_mesa(args.size, args.steps, seed=args.seed,
                                    activation=args.activation)
    else:
        sys.path.insert(0, str(HERE))
        import numba_opinion

        import_rss = _peak_rss_bytes()
        out = numba_opinion.run_numba(args.size, args.steps, seed=args.seed,
                                      activation=args.activation)
    out["import_rss_bytes"] = import_rss
    out["peak_rss_bytes"] = _peak_rss_bytes()
    Path(args.result).write_text(json.dumps(out), encoding="utf-8")
    return 0


# -- the parent: children, summaries, table ------------------------------------------------------


def spawn(kind: str, n: int, steps: int, args: argparse.Namespace, db_dir: Path,
          work: Path) -> dict[str, Any]:
    """Run one (system, size) in a fresh subprocess; return its result or why it failed."""
    result = work / f"{kind}_{n}.json"
    err_path = work / f"{kind}_{n}.stderr"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--size", str(n),
           "--steps", str(steps), "--seed", str(args.seed), "--result", str(result),
           "--db-dir", str(db_dir), "--activation", str(args.activation)]
    if args.feed:
        cmd += ["--feed", args.feed]
    if args.keep_db:
        cmd.append("--keep-db")
    polled = 0
    t0 = time.perf_counter()
    with open(err_path, "w+", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err, env=child_env(args.blas_threads))
        watch = _watcher(proc.pid)
        timed_out = False
        while proc.poll() is None:
            polled = max(polled, watch())
            if time.perf_counter() - t0 > args.timeout:
                proc.kill()
                proc.wait()
                timed_out = True
                break
            time.sleep(0.1)
        err.seek(0)
        stderr = err.read()
    wall = time.perf_counter() - t0
    base = {"system": kind, "size": n, "steps_run": steps, "child_wall_s": wall,
            "peak_rss_polled_mb": polled / MB if polled else None}
    if proc.returncode != 0 or not result.exists():
        if timed_out:
            why = f"timed out after {args.timeout:.0f}s"
        elif proc.returncode is not None and proc.returncode < 0:
            why = f"killed by signal {-proc.returncode}"
            if proc.returncode == -9:
                why += " (out of memory?)"
        else:
            why = f"exit code {proc.returncode}"
        return {**base, "ok": False, "error": why, "stderr_tail": stderr[-6000:]}
    data = json.loads(result.read_text(encoding="utf-8"))
    return {**base, "ok": True, **data}


def _watcher(pid: int) -> Any:
    """A function returning the child's current RSS in bytes (0 without psutil)."""
    try:
        import psutil

        proc = psutil.Process(pid)
    except Exception:
        return lambda: 0

    def rss() -> int:
        try:
            return int(proc.memory_info().rss)
        except Exception:
            return 0

    return rss


def _timed(values: list[Any], warmup: int) -> list[Any]:
    return values[warmup:] if len(values) > warmup else values


def summarise_populace(raw: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Per-step figures after the warm-up.

    s/step is the median over the timed steps but the last (steady state: each step waits for
    the previous step's write, so writing is included); the last step, which also saves the
    final checkpoint, runs the end-of-run analysis and waits for the final write, is reported
    on its own, and the mean over all timed steps too.
    """
    if not raw["ok"]:
        return raw
    n = raw["size"]
    rows = _timed(raw["steps"], warmup)
    total = [r["compute_s"] + r["record_s"] for r in rows]
    seen = {k for r in rows for k in r["phases_s"]}
    phases = [k for k in PHASES if k in seen] + sorted(seen - set(PHASES))
    steady = total[:-1] if len(total) > 1 else total
    s = statistics.median(steady)
    compute = statistics.median(r["compute_s"] for r in rows)
    return {
        **raw,
        "timed_steps": [r["step"] for r in rows],
        "s_per_step": s,
        "mean_s_per_step": statistics.fmean(total),
        "last_step_s": total[-1],
        "compute_s": compute,
        "record_s": statistics.median(r["record_s"] for r in rows),
        "wall_s_per_step": statistics.median(r["wall_s"] for r in rows),
        "cpu_s_per_step": statistics.median(r["cpu_s"] for r in rows),
        "n_active": statistics.median(r["n_active"] for r in rows),
        "agent_steps_per_s": n / s,
        "compute_agent_steps_per_s": n / compute,
        "active_decisions_per_s": statistics.median(r["n_active"] / t
                                                    for r, t in zip(rows, total, strict=True)),
        "phases_s": {k: statistics.median(r["phases_s"].get(k, 0.0) for r in rows)
                     for k in phases},
        "peak_rss_mb": raw["peak_rss_bytes"] / MB,
        "import_rss_mb": raw["import_rss_bytes"] / MB,
        "db_mb": raw["db_bytes"] / MB,
    }


def summarise_mesa(raw: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Per-step medians after the warm-up (Mesa, and numba: see ``summarise_numba``)."""
    if not raw["ok"]:
        return raw
    n = raw["size"]
    idx = _timed(list(range(len(raw["step_s"]))), warmup)
    step_s = [raw["step_s"][i] for i in idx]
    s = statistics.median(step_s)
    return {
        **raw,
        "timed_steps": [i + 1 for i in idx],
        "s_per_step": s,
        "cpu_s_per_step": statistics.median(raw["cpu_s"][i] for i in idx),
        "n_active": statistics.median(raw["n_active"][i] for i in idx),
        "agent_steps_per_s": n / s,
        "active_decisions_per_s": statistics.median(raw["n_active"][i] / raw["step_s"][i]
                                                    for i in idx),
        "peak_rss_mb": raw["peak_rss_bytes"] / MB,
        "import_rss_mb": raw["import_rss_bytes"] / MB,
    }


def summarise_numba(raw: dict[str, Any], warmup: int) -> dict[str, Any]:
    """As Mesa's, plus the median seconds of each phase; compile time is ``compile_s``."""
    out = summarise_mesa(raw, warmup)
    if not out["ok"]:
        return out
    rows = _timed(raw["phases_s"], warmup)
    out["phases_s"] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out["compile_rss_mb"] = raw["compile_rss_bytes"] / MB
    return out


def ratios_to(populace: list[dict[str, Any]], other: list[dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """Populace's agent-steps/s over ``other``'s at every size both ran (also on compute time
    alone), and the two peak RSS."""
    done = {r["size"]: r for r in other if r["ok"]}
    out = []
    for r in populace:
        if r["ok"] and r["size"] in done:
            o = done[r["size"]]
            out.append({"size": r["size"],
                        "ratio": r["agent_steps_per_s"] / o["agent_steps_per_s"],
                        "compute_ratio": r["compute_agent_steps_per_s"] / o["agent_steps_per_s"],
                        "peak_rss_mb": r["peak_rss_mb"], "other_peak_rss_mb": o["peak_rss_mb"],
                        "rss_ratio": r["peak_rss_mb"] / o["peak_rss_mb"]})
    return out


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(populace: list[dict[str, Any]], mesa: list[dict[str, Any]],
                ratios: list[dict[str, Any]], numba: list[dict[str, Any]] | None = None,
                limit_ratios: list[dict[str, Any]] | None = None) -> None:
    """The table of every run, Populace's and numba's phases, and the ratios."""
    numba = numba or []
    head = (f"{'system':<9}{'N':>10}{'s/step':>10}{'compute':>10}{'record':>10}{'cpu s':>9}"
            f"{'agent-steps/s':>15}{'active dec/s':>14}{'peak RSS MB':>13}{'DB MB':>9}"
            f"{'setup s':>9}{'step0 s':>9}")
    print(head)
    print("-" * len(head))
    for r in [*populace, *mesa, *numba]:
        if not r["ok"]:
            print(f"{r['system']:<9}{r['size']:>10}  FAILED: {r['error']}")
            continue
        print(f"{r['system']:<9}{r['size']:>10}{r['s_per_step']:>10.4f}"
              f"{_fmt(r.get('compute_s'), '.4f'):>10}{_fmt(r.get('record_s'), '.4f'):>10}"
              f"{r['cpu_s_per_step']:>9.4f}"
              f"{r['agent_steps_per_s']:>15,.0f}{r['active_decisions_per_s']:>14,.0f}"
              f"{r['peak_rss_mb']:>13,.0f}{_fmt(r.get('db_mb'), ',.1f'):>9}"
              f"{r['setup_s']:>9.2f}{_fmt(r.get('initial_commit_s'), '.2f'):>9}")
    phased = [r for r in populace if r["ok"] and r.get("phases_s")]
    if phased:
        names = list(phased[0]["phases_s"])
        print("\nPopulace seconds per phase (medians; compute = activate..metrics (+finish on "
              "the last step), record includes checkpoint):")
        print(f"{'N':>10}" + "".join(f"{k:>12}" for k in names))
        for r in phased:
            print(f"{r['size']:>10}" + "".join(f"{r['phases_s'].get(k, 0.0):>12.4f}"
                                              for k in names))
    compiled = [r for r in numba if r["ok"]]
    if compiled:
        names = list(compiled[0]["phases_s"])
        print("\nnumba seconds per phase (medians; compiling the kernels, not in s/step, took "
              + ", ".join(f"{r['compile_s']:.1f}s" for r in compiled) + "; peak RSS once "
              "compiled, before the model: " + ", ".join(f"{r['compile_rss_mb']:,.0f} MB"
                                                          for r in compiled) + "):")
        print(f"{'N':>10}" + "".join(f"{k:>12}" for k in names))
        for r in compiled:
            print(f"{r['size']:>10}" + "".join(f"{r['phases_s'].get(k, 0.0):>12.5f}"
                                              for k in names))
    for q in ratios:
        print(f"\nPopulace / Mesa agent-steps/s at N={q['size']}: {q['ratio']:.1f}x "
              f"(compute only: {q['compute_ratio']:.1f}x)")
    for q in limit_ratios or []:
        print(f"\nPopulace / numba limit agent-steps/s at N={q['size']}: {q['ratio']:.3f} "
              f"(compute only: {q['compute_ratio']:.3f}; the limit is {1 / q['ratio']:.1f}x "
              f"faster); peak RSS {q['peak_rss_mb']:,.0f} MB against {q['other_peak_rss_mb']:,.0f}"
              f" MB ({q['rss_ratio']:.1f}x)")


def environment() -> dict[str, Any]:
    """The machine and software this benchmark ran on."""
    return _environment(["numpy", "mesa", "numba", "populace"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000],
                    help="Populace population sizes (default: 10000 100000)")
    ap.add_argument("--steps", type=int, default=10, help="Populace steps per size (default 10)")
    ap.add_argument("--mesa-sizes", type=int, nargs="*", default=[10_000],
                    help="Mesa population sizes (default: 10000; none: --mesa-sizes)")
    ap.add_argument("--mesa-steps", type=int, default=5, help="Mesa steps per size (default 5)")
    ap.add_argument("--numba-sizes", type=int, nargs="*", default=[10_000],
                    help="sizes of the compiled-loops limit (benchmarks/numba_opinion.py; "
                    "default: 10000; none: --numba-sizes)")
    ap.add_argument("--numba-steps", type=int, default=None,
                    help="numba steps per size (default: --steps)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="first steps left out of the medians (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--activation", type=float, default=0.1,
                    help="activation probability per step, for every system (default 0.1)")
    ap.add_argument("--feed", default=None,
                    help="Populace feed algorithm (default: the scenario's default, mix)")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="threads of numpy's BLAS in the children (default 1, as Mesa and the "
                    "rest of a step run on one core; 0: leave the environment as it is)")
    ap.add_argument("--out", type=Path, default=None, help="write every result as JSON here")
    ap.add_argument("--db-dir", type=Path, default=None,
                    help="folder for the SQLite files (default: a temporary folder)")
    ap.add_argument("--keep-db", action="store_true", help="keep the SQLite files")
    ap.add_argument("--timeout", type=float, default=7200.0,
                    help="seconds allowed to each child (default 7200)")
    # internal: what a child process runs
    ap.add_argument("--child", choices=["populace", "mesa", "numba"], help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is None:
        if args.numba_steps is None:
            args.numba_steps = args.steps
        if args.steps < 1 or args.mesa_steps < 1 or args.numba_steps < 1:
            ap.error("--steps, --mesa-steps and --numba-steps must be at least 1")
        if args.keep_db and args.db_dir is None:
            ap.error("--keep-db needs --db-dir")
        if any(n < 10 for n in [*args.sizes, *args.mesa_sizes, *args.numba_sizes]):
            ap.error("sizes must be at least 10 (the follow graph has m=5)")
    return args


def _experiment_template(args: argparse.Namespace) -> dict[str, Any]:
    exp = populace_experiment(1, args.steps, args.seed, feed=args.feed)
    exp["name"] = "bench_N"
    exp["population"]["size"] = "N"
    return exp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child_main(args)
    env = environment()
    print(f"command: {env['command']}")
    print(f"Python {env['python']}, numpy {env['numpy']}, mesa {env['mesa']}, numba "
          f"{env['numba']}, populace {env['populace']}; {env['cpu_count']} CPUs "
          f"({env['cpus_usable']} usable); {env['platform']}")
    blas = (f"BLAS threads {args.blas_threads}" if args.blas_threads > 0 else
            "BLAS threads as in the environment (" + ", ".join(
                f"{k}={os.environ[k]}" for k in BLAS_VARS if k in os.environ) + ")")
    print(f"Populace steps {args.steps}, Mesa steps {args.mesa_steps}, numba steps "
          f"{args.numba_steps}, medians after "
          f"{args.warmup} warm-up steps; seed {args.seed}; {blas}\n", flush=True)
    populace: list[dict[str, Any]] = []
    mesa: list[dict[str, Any]] = []
    numba: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="populace-bench-") as tmp:
        work = Path(tmp)
        db_dir = args.db_dir.resolve() if args.db_dir else work
        db_dir.mkdir(parents=True, exist_ok=True)
        for kind, sizes, steps, out, summarise in (
            ("populace", args.sizes, args.steps, populace, summarise_populace),
            ("mesa", args.mesa_sizes, args.mesa_steps, mesa, summarise_mesa),
            ("numba", args.numba_sizes, args.numba_steps, numba, summarise_numba),
        ):
            for n in sizes:
                print(f"running {kind} N={n} ({steps} steps) ...", flush=True)
                r = summarise(spawn(kind, n, steps, args, db_dir, work), args.warmup)
                out.append(r)
                if r["ok"]:
                    print(f"  {r['s_per_step']:.4f} s/step, {r['agent_steps_per_s']:,.0f} "
                          f"agent-steps/s, peak RSS {r['peak_rss_mb']:,.0f} MB (of which "
                          f"{r['import_rss_mb']:,.0f} MB after imports; child "
                          f"{r['child_wall_s']:.1f}s)", flush=True)
                else:
                    print(f"  FAILED: {r['error']}; its output:\n{r['stderr_tail']}", flush=True)
    ratios = ratios_to(populace, mesa)
    limit_ratios = ratios_to(populace, numba)
    print()
    print_table(populace, mesa, ratios, numba, limit_ratios)
    results = {
        "environment": env,
        "settings": {"sizes": args.sizes, "steps": args.steps, "mesa_sizes": args.mesa_sizes,
                     "mesa_steps": args.mesa_steps, "numba_sizes": args.numba_sizes,
                     "numba_steps": args.numba_steps, "warmup": args.warmup, "seed": args.seed,
                     "blas_threads": args.blas_threads or "environment",
                     "feed": args.feed or "mix (scenario default)", "activation": args.activation,
                     "network": "barabasi_albert m=5",
                     "experiment": _experiment_template(args)},
        "populace": populace,
        "mesa": mesa,
        "numba": numba,
        "ratios": ratios,
        "limit_ratios": limit_ratios,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"\nresults written to {args.out}")
    return 0 if all(r["ok"] for r in [*populace, *mesa, *numba]) else 1


if __name__ == "__main__":
    sys.exit(main())
