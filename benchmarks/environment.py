"""What every benchmark records about the machine and the software it ran on."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def package_version(dist: str) -> str:
    """The installed version of ``dist``, or "not installed"."""
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def environment(packages: list[str]) -> dict[str, Any]:
    """The command line, Python and ``packages`` versions, platform, CPUs and load."""
    argv = getattr(sys, "orig_argv", [sys.executable, *sys.argv])
    return {
        "command": shlex.join(argv),
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        **{name: package_version(name) for name in packages},
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
