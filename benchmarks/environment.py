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


BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def child_env(blas_threads: int) -> dict[str, str]:
    """A benchmark child's environment: the BLAS thread pools pinned to ``blas_threads``
    (0: as they are)."""
    env = dict(os.environ)
    if blas_threads > 0:
        env.update(dict.fromkeys(BLAS_VARS, str(blas_threads)))
    return env
