"""``populace run X.yaml --monitor``: a real run subprocess starts the real monitor (Streamlit)
on its database once the run exists, keeps it up after the run ends, and stops it on Ctrl-C
with the run's exit code."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from populace.storage import open_run

from .test_steering import steered
from .test_webui_service import free_port

POPULACE = [sys.executable, "-m", "populace.simulator.cli"]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 0), (signal.SIGTERM, 143)])
def test_a_run_with_monitor_serves_it_until_ctrl_c(tmp_path: Path, sent: int,
                                                   code: int) -> None:
    """Ctrl-C ends the monitor and the run's process with the run's code; SIGTERM (a
    scheduler's) ends both too, with 143."""
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(steered([], steps=5)))
    db, port = tmp_path / "run.sqlite", free_port()
    proc = subprocess.Popen([*POPULACE, "run", "exp.yaml", "--db", str(db), "--quiet",
                             "--monitor", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        said = []
        assert proc.stderr is not None
        for line in proc.stderr:  # the run's own lines, then the monitor's farewell
            said.append(line)
            if "the monitor stays up" in line:
                break
        text = "".join(said)
        assert f"monitor of run 1 at http://127.0.0.1:{port}" in text, text
        assert open_run(f"sqlite:///{db}").info["status"] == "completed"
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/_stcore/health"):
            assert time.monotonic() < deadline and proc.poll() is None, text
            time.sleep(0.3)
        proc.send_signal(sent)
        assert proc.wait(timeout=30) == code
        deadline = time.monotonic() + 20
        while _answers(f"http://127.0.0.1:{port}/_stcore/health"):
            assert time.monotonic() < deadline, "the monitor outlived the run's process"
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
