"""Layering rules and import hygiene that the whole code base relies on."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"simulator": "populace.simulator", "scenarios": "populace.scenarios",
            "storage": "populace.storage", "webui": "populace.webui"}


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Absolute module names imported by each file of a code folder (relative imports resolved)."""
    out: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        rel = path.relative_to(ROOT / folder).with_suffix("")
        parts = [PACKAGES[folder], *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        package = parts if path.name == "__init__.py" else parts[:-1]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    names.add(".".join([*base, node.module] if node.module else base))
                else:
                    names.add(node.module or "")
        out[str(path.relative_to(ROOT))] = names
    return out


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{file} imports {name}" for file, names in imported_modules(folder).items()
            for name in names if name.startswith(forbidden)]


def test_storage_knows_nothing_above_it() -> None:
    assert offenders("storage", ("populace.simulator", "populace.scenarios",
                                 "populace.webui")) == []


def test_engine_names_no_scenario_and_nothing_imports_webui() -> None:
    assert offenders("simulator", ("populace.scenarios", "populace.webui")) == []
    assert offenders("scenarios", ("populace.webui",)) == []


def test_scenarios_do_not_import_each_other() -> None:
    scenario_dirs = [p.name for p in (ROOT / "scenarios").iterdir()
                     if p.is_dir() and (p / "__init__.py").exists()]
    problems = []
    for name in scenario_dirs:
        others = tuple(f"populace.scenarios.{o}" for o in scenario_dirs if o != name)
        for file, names in imported_modules("scenarios").items():
            if file.startswith(f"scenarios/{name}/"):
                problems += [f"{file} imports {n}" for n in names if n.startswith(others)]
    assert problems == []


@pytest.mark.slow
def test_importing_populace_writes_no_files(tmp_path: Path) -> None:
    code = ("import populace.simulator, populace.storage, populace.scenarios.social, "
            "populace.webui; from populace.simulator import available_scenarios; "
            "assert 'social' in available_scenarios()")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=120,
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert list(tmp_path.iterdir()) == []


def scenario_model_names() -> set[str]:
    """Class names of every model a scenario defines in its config.py (its `scenario:` section,
    its rule parameters and their sub-models), read from the source."""
    names: set[str] = set()
    for path in (ROOT / "scenarios").glob("*/config.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names.update(node.name for node in tree.body if isinstance(node, ast.ClassDef))
    return names


def test_engine_text_names_no_scenario_model() -> None:
    # The engine documents and validates any scenario through its models (docgen reads their
    # Field descriptions and docstrings); text about one scenario's keys belongs on its models.
    names = scenario_model_names()
    assert {"SocialConfig", "SocialRuleParams", "FeedConfig", "MarketConfig"} <= names
    problems = [f"{path.relative_to(ROOT)} names {name}"
                for path in sorted((ROOT / "simulator").rglob("*.py"))
                for name in sorted(names) if name in path.read_text(encoding="utf-8")]
    assert problems == []
