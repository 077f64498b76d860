"""scripts/setup installs into the project's own venv, and nowhere else.

Issue 11 (item 2): it used to pip-install uv into whatever ``python3`` it found (a user's global
Python) and made a venv without pip, so the README's ``pip install -e '.[postgres]'`` with the
venv active went to the global Python. Here the real script runs on a tiny project through a
``python3`` wrapper that logs every call; the base interpreter's site-packages must not change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "setup-probe"
version = "0.1"

[project.optional-dependencies]
extra = []

[tool.setuptools]
py-modules = ["probe"]
"""


def _base_python() -> str:
    """The interpreter this test's venv was made from (a user's 'global' Python)."""
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def _site_packages(python: str) -> set[str]:
    path = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    return set(os.listdir(path)) if os.path.isdir(path) else set()


@pytest.mark.slow
def test_setup_makes_a_venv_with_pip_and_installs_nothing_outside_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "setup", project / "scripts" / "setup")
    (project / "pyproject.toml").write_text(PROJECT, encoding="utf-8")
    (project / "probe.py").write_text("VALUE = 1\n", encoding="utf-8")
    base = _base_python()
    log = tmp_path / "python3.log"
    wrapper = tmp_path / "bin" / "python3"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {base} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    before = _site_packages(base)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PYTHON"] = str(wrapper)
    out = subprocess.run([str(project / "scripts" / "setup"), "extra"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    venv_python = project / ".venv" / "bin" / "python"
    assert subprocess.run([str(venv_python), "-c", "import probe"]).returncode == 0
    # the venv has pip, so `pip install` with it activated lands in it
    pip = subprocess.run(["bash", "-c", "source .venv/bin/activate && pip --version"],
                         cwd=project, env=env, capture_output=True, text=True)
    assert pip.returncode == 0 and str(project / ".venv") in pip.stdout, pip.stdout + pip.stderr
    # the base interpreter only made the venv (or lent its uv, aimed at the venv)
    calls = log.read_text(encoding="utf-8").splitlines()
    installs = [c for c in calls if "install" in c]
    assert all("--python .venv/bin/python" in c for c in installs), calls
    assert _site_packages(base) == before, "scripts/setup changed the base Python's packages"
