"""The documentation stays true to the code.

Checks that docs/yaml-reference.md is what the generator writes, that every key of every example
experiment is documented, that the README's quick start exists, that the Python snippets and shell
commands marked ``<!-- runnable -->`` run (and the commands print the output shown after them,
marked ``<!-- output -->``; see MARKER below), that getting-started quotes quickstart.yaml as it
is, and that every relative link points at an existing file and heading.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from populace.simulator import load_experiment
from populace.simulator.docgen import COMMAND, model_anchors, render_reference, slugify
from populace.simulator.llm.config import LLMParams

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "yaml-reference.md"
DOCS = sorted([README, *(ROOT / "docs").rglob("*.md")])
EXAMPLES = sorted(ROOT.glob("scenarios/*/examples/*.yaml"))
QUICKSTART = ROOT / "scenarios" / "social" / "examples" / "quickstart.yaml"
RUNNABLE = "<!-- runnable -->"


def _installed_scenarios() -> list[str]:
    """The scenarios a fresh ``python -m populace.simulator.docgen`` sees (entry points only).

    Scenarios registered by other tests in this process must not leak into the comparison.
    """
    return sorted({ep.name for ep in entry_points(group="populace.scenarios")})


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --------------------------------------------------------------------------- Markdown helpers


def _without_code(text: str) -> str:
    """The text with fenced blocks blanked out (line count kept) and inline code removed."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def _anchors(text: str) -> set[str]:
    """The heading anchors of a Markdown document, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    anchors = set()
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if fenced:
            continue
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = slugify(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _sections(text: str) -> dict[str, str]:
    """Heading anchor -> the text up to the next heading."""
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            current = slugify(match.group(1))
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


# Markers, each on the line right before a fenced block:
#   <!-- runnable -->          a ```python block (run in a folder where the quick start ran) or a
#                              ```bash block (run with bash in a scratch folder per document, in
#                              document order, `scenarios/` at hand; `populace` on PATH)
#   <!-- runnable: exit N -->  a ```bash block expected to exit with code N (default 0)
#   <!-- output -->            a ```text block: lines the previous runnable bash block prints, in
#                              order; every number matches any number and `...` matches anything
#   <!-- output: exact -->     the same, but numbers must be as shown (for figures the text cites)
#   <!-- file: NAME -->        a block whose text is written to NAME in the scratch folder
MARKER = re.compile(
    r"^<!--\s*(runnable(?::\s*exit\s+(\d+))?|output(:\s*exact)?|file:\s*(\S+))\s*-->$")


def _marked_blocks(text: str) -> list[dict[str, Any]]:
    """The fenced blocks right after a marker: kind, lang, first line number, code, options."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
        assert fence.startswith("```") and len(fence) > 3, (
            f"line {i + 1}: {line.strip()} must be followed by a fenced block with a language")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
        kind = match.group(1).split(":")[0]
        blocks.append({"kind": kind, "lang": fence[3:].strip(), "line": i + 3,
                       "code": "\n".join(lines[i + 2:end]),
                       "exit": int(match.group(2) or 0), "exact": bool(match.group(3)),
                       "name": match.group(4)})
    return blocks


def _runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block right after a runnable marker."""
    blocks = _marked_blocks(text)
    for block in blocks:
        assert block["kind"] != "runnable" or block["lang"] in ("python", "bash"), (
            f"line {block['line'] - 2}: {RUNNABLE} must be followed by a ```python or "
            f"```bash block, not ```{block['lang']}")
    return [(b["line"], b["code"]) for b in blocks
            if b["kind"] == "runnable" and b["lang"] == "python"]


# --------------------------------------------------------------------------- (1) reference


def test_yaml_reference_is_generated_from_the_code() -> None:
    expected = render_reference(_installed_scenarios())
    actual = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(
            actual.splitlines(keepends=True), expected.splitlines(keepends=True),
            "docs/yaml-reference.md (committed)", "generated", n=1))[:60])
        pytest.fail("docs/yaml-reference.md is out of date with the configuration models; "
                    f"regenerate it from the repository root with\n    {COMMAND}\n\n{diff}")


def test_generated_reference_is_deterministic_and_its_anchors_resolve() -> None:
    text = render_reference(_installed_scenarios())
    assert text == render_reference(_installed_scenarios())
    anchors = _anchors(text)
    targets = re.findall(r"\]\(#([^)]+)\)", text)
    assert targets, "the reference should link its nested sections"
    missing = sorted({t for t in targets if t not in anchors})
    assert not missing, f"links to missing headings: {missing}"


# --------------------------------------------------------------------------- (2) example keys


def _model_keys(value: Any) -> Iterator[tuple[type[BaseModel], str]]:
    """(model class, key) for every key given explicitly in a validated config, recursively."""
    if isinstance(value, BaseModel):
        for key in sorted(value.model_fields_set):
            yield type(value), key
            yield from _model_keys(getattr(value, key))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _model_keys(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _model_keys(item)


@pytest.mark.parametrize("example", EXAMPLES, ids=[_rel(p) for p in EXAMPLES])
def test_every_key_of_the_examples_is_in_the_reference(example: Path) -> None:
    exp = load_experiment(example)
    scenario = exp.scenario_cls
    pairs = list(_model_keys(exp.config)) + list(_model_keys(exp.scenario_config))
    policy = exp.config.policy
    parts = [(policy.type, policy.params), *((part.type, part.params) for part in policy.parts)]
    for kind, params in parts:
        if kind == "mixed":
            continue
        model = LLMParams if kind == "llm" else scenario.rule_params_model
        pairs += _model_keys(model.model_validate(params))
    anchors = model_anchors(_installed_scenarios())
    sections = _sections(REFERENCE.read_text(encoding="utf-8"))
    missing = []
    for model, key in pairs:
        if model.__name__ == "ScenarioSection" and key != "type":
            continue  # the scenario's own keys, checked against its config model above
        slug = anchors.get(model)
        if slug is None or f"| `{key}` |" not in sections.get(slug, ""):
            missing.append(f"{model.__name__}.{key} (section #{slug})")
    assert not missing, f"{_rel(example)}: keys missing from docs/yaml-reference.md: {missing}"


def test_examples_exist() -> None:
    assert QUICKSTART in EXAMPLES


def test_getting_started_quotes_the_quickstart_file_as_it_is() -> None:
    """The 'Anatomy' section walks through quickstart.yaml block by block: each block must be
    the file's text."""
    text = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    section = text.split("## Anatomy of an experiment file", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```yaml\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) >= 6, "the section should quote the file in blocks"
    source = QUICKSTART.read_text(encoding="utf-8")
    stale = [b.splitlines()[0] for b in blocks if b not in source]
    assert not stale, f"blocks of getting-started.md not in {_rel(QUICKSTART)}: {stale}"


# --------------------------------------------------------------------------- (3) quick start


def test_readme_quick_start_is_the_two_scripts() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Quick start\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md needs a '## Quick start' section"
    commands = re.findall(r"```(?:bash|sh|console)?\n\s*(\S[^\n]*)\n\s*```", match.group(1))
    assert commands[:2] == ["scripts/quickstart", "scripts/test"], commands
    steps = re.findall(r"^(\d+)\. ", match.group(1), flags=re.M)
    assert steps == ["1", "2"], "the quick start has exactly two numbered steps"
    for name in ("quickstart", "test"):
        script = ROOT / "scripts" / name
        assert script.is_file(), f"{script} is missing"
        assert os.access(script, os.X_OK), f"{script} is not executable"
    assert "scenarios/social/examples/quickstart.yaml" in (ROOT / "scripts/quickstart").read_text()


# --------------------------------------------------------------------------- (4) snippets


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the quick start ran (3 steps) through the ``populace`` command."""
    from populace.simulator.cli import main

    folder = tmp_path_factory.mktemp("quickstart")
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        assert main(["run", str(QUICKSTART), "--steps", "3", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    assert (folder / "populace_runs" / "quickstart.sqlite").is_file()
    return folder


RUNNABLE_DOCS = [p for p in DOCS if RUNNABLE in p.read_text(encoding="utf-8")]
# docs whose runnable blocks run sweeps or many runs (several seconds each): the slow lane
HEAVY_DOCS = {ROOT / "docs" / "sweeps.md", ROOT / "docs" / "analysis.md",
              ROOT / "docs" / "scenarios" / "economy.md"}


def _params(docs: list[Path]) -> list[Any]:
    """``docs`` as parameters, the heavy ones marked slow (the fast lane stays under a
    minute)."""
    return [pytest.param(p, id=_rel(p), marks=[pytest.mark.slow] if p in HEAVY_DOCS else [])
            for p in docs]


def test_readme_and_getting_started_have_runnable_snippets() -> None:
    assert README in RUNNABLE_DOCS
    assert ROOT / "docs" / "getting-started.md" in RUNNABLE_DOCS


@pytest.mark.parametrize("doc", _params(RUNNABLE_DOCS))
def test_runnable_snippets_run(doc: Path, quickstart_dir: Path,
                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil

    from populace.scenarios.social.feeds import FEEDS
    from populace.simulator import registry
    from populace.storage import Base

    work = tmp_path / "work"
    shutil.copytree(quickstart_dir, work)
    monkeypatch.chdir(work)
    # Snippets may register scenarios, feeds and tables; undo that for the other tests.
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    feeds_before = dict(FEEDS)
    tables_before = set(Base.metadata.tables)
    namespace: dict[str, Any] = {"__name__": f"doc_{doc.stem}"}
    try:
        for line, code in _runnable_blocks(doc.read_text(encoding="utf-8")):
            # Pad so that tracebacks give the line number in the Markdown file.
            code = "\n" * (line - 1) + code
            exec(compile(code, str(doc), "exec", dont_inherit=True), namespace)  # noqa: S102
    finally:
        FEEDS.clear()
        FEEDS.update(feeds_before)
        for name in set(Base.metadata.tables) - tables_before:
            Base.metadata.remove(Base.metadata.tables[name])


# --------------------------------------------------------------------------- (4b) commands

NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?"


def _line_pattern(expected: str, exact: bool = False) -> re.Pattern[str]:
    """A shown output line as a regex: numbers match any number (unless ``exact``), `...`
    anything, spaces any run of spaces (tables pad their columns to their contents)."""
    parts = []
    for chunk in " ".join(expected.split()).split("..."):
        pieces = [chunk] if exact else re.split(NUMBER, chunk)
        parts.append(NUMBER.join(re.escape(p).replace(r"\ ", " +") for p in pieces))
    return re.compile(".*".join(parts))


def _shows(output: str, expected: str, exact: bool = False) -> list[str]:
    """The shown lines that the output lacks (they must appear in order, as whole lines)."""
    actual = [" ".join(line.split()) for line in re.split(r"[\r\n]+", output)]
    missing, at = [], 0
    for line in (x for x in expected.splitlines() if x.strip()):
        pattern = _line_pattern(line, exact)
        found = next((i for i in range(at, len(actual)) if pattern.fullmatch(actual[i])), None)
        if found is None:
            missing.append(line)
        else:
            at = found + 1
    return missing


SHELL_DOCS = [p for p in DOCS if any(
    b["kind"] == "runnable" and b["lang"] == "bash"
    for b in _marked_blocks(p.read_text(encoding="utf-8")))]


def test_getting_started_commands_are_runnable() -> None:
    assert ROOT / "docs" / "getting-started.md" in SHELL_DOCS


def _run_line(line: str, folder: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run one command line in ``folder``: exit code and output (stdout and stderr together).

    ``populace`` commands run in this process through the CLI's ``main`` (a new interpreter
    would spend seconds importing for each); anything else runs in bash.
    """
    import contextlib
    import io
    import shlex
    import subprocess

    words = shlex.split(line, comments=True)
    if not words:
        return 0, ""
    if words[0] != "populace":
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", line], cwd=folder, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=120)
        return proc.returncode, proc.stdout
    from populace.simulator.cli import main

    out = io.StringIO()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(words[1:])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(cwd)
    return int(code or 0), out.getvalue()


@pytest.mark.parametrize("doc", _params(SHELL_DOCS))
def test_runnable_commands_run_and_print_what_is_shown(doc: Path, tmp_path: Path) -> None:
    """The document's runnable shell blocks, in order, in one scratch folder; each block's exit
    code and the output shown after it (``<!-- output -->``) are checked."""
    import sys

    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    last: tuple[int, str] | None = None
    failures = []
    for block in _marked_blocks(doc.read_text(encoding="utf-8")):
        where = f"{_rel(doc)}:{block['line']}"
        if block["kind"] == "file":
            (tmp_path / block["name"]).write_text(block["code"] + "\n", encoding="utf-8")
        elif block["kind"] == "runnable" and block["lang"] == "bash":
            code, output = 0, ""
            for line in block["code"].replace("\\\n", " ").splitlines():
                code, printed = _run_line(line, tmp_path, env)
                output += printed
                if code:
                    break  # as bash -e would
            last = (block["line"], output)
            if code != block["exit"]:
                failures.append(f"{where}: exit {code}, expected {block['exit']}; "
                                f"output:\n{output[-3000:]}")
        elif block["kind"] == "output":
            assert last is not None, f"{where}: an output block needs a runnable block before it"
            missing = _shows(last[1], block["code"], block["exact"])
            if missing:
                failures.append(f"{where}: the commands at line {last[0]} do not print "
                                f"{missing}; they print:\n{last[1][-3000:]}")
    assert not failures, "\n\n".join(failures)


# --------------------------------------------------------------------------- (5) links


@pytest.mark.parametrize("doc", DOCS, ids=[_rel(p) for p in DOCS])
def test_relative_links_point_to_existing_files_and_headings(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _without_code(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(f"{target} (no file {path})")
            continue
        if anchor and path.suffix == ".md" and anchor not in _anchors(
                path.read_text(encoding="utf-8")):
            broken.append(f"{target} (no heading #{anchor} in {_rel(path)})")
    assert not broken, f"{_rel(doc)}: broken links: {broken}"
