"""Layering rules and import hygiene that the whole code base relies on."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"simulator": "populace.simulator", "scenarios": "populace.scenarios",
            "storage": "populace.storage", "webui": "populace.webui"}


def module_files() -> dict[str, Path]:
    """Every Populace module by its absolute name."""
    out: dict[str, Path] = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [package, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path) -> set[str]:
    """Absolute names a module's file imports anywhere (relative imports resolved): for
    ``from x import y`` both ``x`` and ``x.y`` (y may be a submodule)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Absolute module names imported by each file of a code folder."""
    return {str(path.relative_to(ROOT)): imports_of(name, path)
            for name, path in module_files().items()
            if path.is_relative_to(ROOT / folder)}


def offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{file} imports {name}" for file, names in imported_modules(folder).items()
            for name in names if name.startswith(forbidden)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the Populace modules it imports anywhere in its file: at the top, under
    ``TYPE_CHECKING``, or inside a function. ``from package import name`` counts as an import
    of the package and, when ``name`` is a submodule, of the submodule; imports of a module's
    own parent packages are left out (Python runs those first anyway)."""
    files = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = imports_of(name, path)
        edges = set()
        for target in targets:
            parts = target.split(".")
            for i in range(3, len(parts) + 1):  # the module and the packages it is in
                module = ".".join(parts[:i])
                if module in files and module != name and not name.startswith(module + "."):
                    edges.add(module)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_anywhere() -> None:
    # Counting imports under TYPE_CHECKING and inside functions: an import moved into a
    # function (or behind TYPE_CHECKING) to dodge a cycle still closes it here. Lazy imports
    # that close no cycle (the command line's, for start-up time) are fine.
    graph = import_graph()
    assert len(graph) > 100 and "populace.simulator.engine" in graph
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_scenarios_narrow_no_signature() -> None:
    # The contract is generic over each scenario's types: an override never needs an ignore.
    problems = [f"{path.relative_to(ROOT)}:{i}" for path in sorted((ROOT / "scenarios").rglob("*.py"))
                for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if "type: ignore[override]" in line]
    assert problems == []


def test_storage_knows_nothing_above_it() -> None:
    assert offenders("storage", ("populace.simulator", "populace.scenarios",
                                 "populace.webui")) == []


def test_engine_names_no_scenario_and_nothing_imports_webui() -> None:
    assert offenders("simulator", ("populace.scenarios", "populace.webui")) == []
    assert offenders("scenarios", ("populace.webui",)) == []


def test_engine_does_not_import_its_testing_package() -> None:
    # simulator/testing holds test doubles (the LLM test server); the engine never needs them
    assert [o for o in offenders("simulator", ("populace.simulator.testing",))
            if not o.startswith("simulator/testing/")] == []


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


def scenario_names() -> set[str]:
    """What names a scenario: the class names it defines in any module (its scenario class,
    config models, observation, policies, ...) and its package's module path, read from the
    source."""
    names: set[str] = set()
    for package in (ROOT / "scenarios").iterdir():
        if not (package / "__init__.py").exists():
            continue
        names.add(f"scenarios.{package.name}")
        for path in package.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # compound names only: a table class called Follow or Message is also an English
            # word that starts a sentence
            names.update(node.name for node in tree.body if isinstance(node, ast.ClassDef)
                         and len(re.findall("[A-Z]", node.name)) > 1)
    return names


@pytest.mark.slow
def test_engine_text_names_no_scenario() -> None:
    # The engine documents and validates any scenario through its models (docgen reads their
    # Field descriptions and docstrings); text about one scenario belongs with the scenario.
    # Plain text counts too (docstrings, messages), where the import test cannot see it.
    names = scenario_names()
    assert {"SocialConfig", "SocialRuleParams", "FeedConfig", "MarketConfig", "SocialScenario",
            "scenarios.market"} <= names
    problems = [f"{path.relative_to(ROOT)} names {name}"
                for path in sorted((ROOT / "simulator").rglob("*.py"))
                for name in sorted(names)
                if re.search(rf"\b{re.escape(name)}\b", path.read_text(encoding="utf-8"))]
    assert problems == []
