"""The in-process vLLM backend on a real GPU.

Runs only where vLLM is installed, a CUDA GPU is visible and ``POPULACE_VLLM_MODEL`` names a
model folder on local disk (nothing is downloaded), e.g.::

    POPULACE_VLLM_MODEL=/models/Qwen2.5-0.5B-Instruct pytest -q tests/test_llm_vllm_gpu.py
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from populace.simulator import Simulation, experiment_from_dict

from .test_llm_policy import llm_experiment

MODEL = os.environ.get("POPULACE_VLLM_MODEL")


def _gpu_ready() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'populace[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if not MODEL or not Path(MODEL).is_dir():
        return "POPULACE_VLLM_MODEL does not name a local model folder"
    return None


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_gpu_ready() is not None,
                                                  reason=str(_gpu_ready()))]


def test_vllm_engine_answers_a_step_with_guided_json(sqlite_url: str) -> None:
    data = llm_experiment(None, steps=2, share=0.5, backend="vllm", model=MODEL,
                          max_tokens=120, temperature=0.0)
    result = Simulation(experiment_from_dict(data), db_url=sqlite_url).run()
    assert result.info["status"] == "completed"
    calls = result.table("llm_calls")
    decisions = calls[calls["kind"] == "decision"]
    assert len(decisions) > 0
    assert (decisions["endpoint"] == "vllm").all()
    # guided decoding: every answer parses and validates against the decision schema
    assert decisions["valid"].astype(bool).mean() > 0.95
    assert (decisions["completion_tokens"] > 0).all()
