"""The LLM benchmark (benchmarks/llm.py): a tiny run against test servers in their own processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "llm.py"


@pytest.mark.slow
def test_llm_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "llm.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--agents", "300", "--single", "8:0.05", "--dual", "none",
         "--cpu-agents", "300", "--cpu-modes", "foreground", "--cpu-repeat", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.exists(), proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%ideal" in proc.stdout and "ms/decision" in proc.stdout
    assert "memory: enabled True" in proc.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert "llm.py" in data["environment"]["command"]

    [run] = data["throughput"]
    assert run["ok"] and run["requests"] == 300 and run["decisions"] == 300
    assert run["ideal_rps"] == pytest.approx(8 / 0.05)
    assert run["throughput_rps"] > 0
    assert run["share_of_ideal"] == pytest.approx(run["throughput_rps"] / run["ideal_rps"])
    # the client may keep 2*C requests outstanding: the server never processes more than C
    [server] = run["servers"]
    assert server["peak"] == 8 and server["requests"] == 300 and server["share"] == 1.0
    assert run["client_peak"] == [16]
    assert run["first_answer_s"] > 0
    # slot_s estimates a request's time in a slot from sampled occupancy (busy slots x window
    # / answered): at least the server's 0.05 s, less the sampling error (once 0.0496)
    assert 0 < server["busy_slots"] <= 8 and server["slot_s"] >= 0.05 * 0.95
    assert run["problems"] == {"invalid": 0, "repairs": 0, "fallbacks": 0, "errors": 0}

    [cpu] = data["cpu"]
    assert cpu["ok"] and cpu["measured_step"] == 2 and cpu["decisions"] == 300
    assert cpu["cpu_ms_per_decision"] > 0
    assert cpu["phases_ms"]["decide"] > 0
    assert len(cpu["repeats_cpu_ms"]) == 1
    split = cpu["decide_ms"]
    for key in ("prompt building (sum)", "prompt: memory retrieval (query + retrieve)",
                "requests: backend.generate (HTTP client)",
                "answers: parse + validate (pydantic)"):
        assert split[key] > 0, key
    # the phases and the rest add up to the measured CPU
    assert sum(cpu["phases_ms"].values()) == pytest.approx(cpu["cpu_ms_per_decision"])
    assert cpu["prompt_tokens"] > cpu["completion_tokens"] > 0
    assert 0 < cpu["shared_prefix_share"] < 1
