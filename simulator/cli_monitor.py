"""``populace run X.yaml --monitor``: the web monitor beside a run, as a child process.

Core objects:
    require_monitor: refuse ``--monitor`` up front when the monitor is not installed.
    MonitorProcess: ``populace monitor DB --run ID`` started once the run exists, kept up after
        the run ends until Ctrl-C, then stopped.

The monitor comes with the ``webui`` extra and adds itself to the ``populace`` command through
the ``populace.commands`` entry point; the simulator never imports it (imports point one way),
it starts that command as a child process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from importlib.metadata import entry_points

from .cli_steering import UsageError

DEFAULT_PORT = 8501
"""The monitor's port when ``--monitor`` names none (Streamlit's own default)."""
INSTALL_HINT = "pip install 'populace[webui]'"


def require_monitor() -> None:
    """Raise ``UsageError`` unless ``populace monitor`` is installed (the webui extra)."""
    for ep in entry_points(group="populace.commands", name="monitor"):
        try:
            ep.load()
        except ImportError as err:
            raise UsageError(f"--monitor needs the web monitor, and {err.name} is not "
                             f"installed: {INSTALL_HINT}") from None
        return
    raise UsageError(f"--monitor needs the web monitor, which is not installed: {INSTALL_HINT}")


class MonitorProcess:
    """The monitor of run ``run_id`` of ``url``, served at ``http://host:port``."""

    def __init__(self, url: str, run_id: int, port: int, host: str = "127.0.0.1") -> None:
        self.address = f"http://{host}:{port}"
        # a process group of its own: closing it stops Streamlit's processes too, and Ctrl-C
        # reaches this process only (which then closes the monitor)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "populace.simulator.cli", "monitor", url,
             "--run", str(run_id), "--port", str(port), "--host", host],
            start_new_session=True)
        # a run ended by SIGTERM (a scheduler, `kill`) must still close the monitor: make the
        # signal an exit that runs our `finally` (committed steps are kept either way)
        self._before = signal.signal(signal.SIGTERM, _exit_on_term)
        print(f"populace: monitor of run {run_id} at {self.address}", file=sys.stderr,
              flush=True)

    def linger(self) -> None:
        """After the run: keep the monitor up for exploring the run until Ctrl-C (or until it
        ends by itself)."""
        if self.proc.poll() is not None:
            return
        print(f"populace: the run is over; the monitor stays up at {self.address} "
              "(Ctrl-C to stop it)", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the monitor, not us
            self.proc.wait()

    def close(self) -> None:
        """Stop the monitor and every process it started."""
        signal.signal(signal.SIGTERM, self._before)
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _exit_on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


__all__ = ["DEFAULT_PORT", "MonitorProcess", "require_monitor"]
