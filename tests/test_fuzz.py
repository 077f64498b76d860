"""Property-based fuzzing of the config loader and the CLI: bad input is refused with a message.

Any byte string and any mutation of the example experiments (byte flips, deletions, duplicated
or deleted lines, numbers replaced by huge, negative or float values, deep nesting, aliases)
must give ``populace validate`` exit 0 or 2 and a message: never a traceback, another exit
code or a hang. The in-process CLI keeps each example fast; a few real processes check the
same from the outside. The hypothesis profile is derandomized so that CI cannot flake.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from populace.simulator import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in ROOT.glob("scenarios/*/examples/*.yaml")
                  if not p.name.startswith("_"))
TEXTS = {path.name: path.read_text(encoding="utf-8") for path in EXAMPLES}

# 200 examples per property in CI (a few seconds); POPULACE_FUZZ_EXAMPLES=5000 for a long hunt.
FUZZ = settings(max_examples=int(os.environ.get("POPULACE_FUZZ_EXAMPLES", "200")),
                derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NUMBER = re.compile(r"(?<![\w.])\d+(\.\d+)?")
ODD_NUMBERS = ["1e308", "1.0e+308", "-1", "0", "-0.5", "2.5", ".nan", ".inf", "-.inf",
               "99999999999999999999", "9223372036854775808", "1000000000000", "0x7fffffffffff"]
ODD_PREFIXES = ["\x00", "\x07", "\x1b", "\ufeff", "\t", "\x85", "{", "[", "&x ", "*x ", "- ",
                "? ", "<<: *x\n", "!!python/object:os.system ", "%YAML 1.1\n---\n", "---\n"]


def validate(path: Path) -> tuple[int, str]:
    """``populace validate PATH`` in this process: (exit code, stdout + stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["validate", str(path)])
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue() + err.getvalue()


def assert_refused_or_valid(path: Path) -> None:
    code, text = validate(path)
    assert code in (0, 2), f"exit {code} for {path.read_bytes()[:300]!r}:\n{text}"
    assert "Traceback" not in text and "a bug in populace" not in text, text
    assert text.strip(), "no message at all"
    if code == 0:
        assert ": OK" in text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the examples' data files, so that mutated examples still find them."""
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(ROOT / "scenarios" / "social" / "examples" / "data", folder / "data")
    return folder


# --------------------------------------------------------------------------- mutations


@st.composite
def mutation(draw: st.DrawFn, text: str) -> str:
    """One random change to a YAML text."""
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["flip", "delete", "dup_line", "del_line", "number", "deep",
                                 "alias", "prefix", "value"]))
    at = draw(st.integers(0, max(len(text) - 1, 0)))
    line = draw(st.integers(0, max(len(lines) - 1, 0)))
    if kind == "flip" and text:
        char = chr(draw(st.integers(0, 0x2FF)))
        return text[:at] + char + text[at + 1:]
    if kind == "delete":
        return text[:at] + text[at + draw(st.integers(1, 40)):]
    if kind == "dup_line" and lines:
        return "".join(lines[: line + 1] + lines[line:])
    if kind == "del_line" and lines:
        return "".join(lines[:line] + lines[line + 1:])
    if kind == "number":
        numbers = list(NUMBER.finditer(text))
        if numbers:
            found = numbers[draw(st.integers(0, len(numbers) - 1))]
            return text[: found.start()] + draw(st.sampled_from(ODD_NUMBERS)) + text[found.end():]
    if kind == "deep":
        depth = draw(st.sampled_from([10, 70, 500, 5000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        return text + f"\nnested: {opener * depth}1{closer * depth}\n"
    if kind == "alias":
        width = draw(st.integers(2, 12))
        levels = draw(st.integers(1, 8))
        bomb = "bomb:\n  l0: &l0 [lol, lol]\n" + "".join(
            f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]\n" for i in range(1, levels))
        return text + "\n" + bomb
    if kind == "prefix" and lines:
        lines[line] = draw(st.sampled_from(ODD_PREFIXES)) + lines[line]
        return "".join(lines)
    if kind == "value" and lines and ":" in lines[line]:
        key = lines[line].split(":", 1)[0]
        value = draw(st.sampled_from(["[]", "{}", "null", "true", "'x'", "[1, 2]", "-5",
                                      "1e400", "*nowhere", "&a", "!!binary AAAA"]))
        lines[line] = f"{key}: {value}\n"
        return "".join(lines)
    return text


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    text = TEXTS[draw(st.sampled_from(sorted(TEXTS)))]
    for _ in range(draw(st.integers(1, 4))):
        text = draw(mutation(text))
    return text


# --------------------------------------------------------------------------- properties


@FUZZ
@given(data=st.binary(max_size=2000))
@pytest.mark.slow
def test_any_bytes_are_refused_or_valid(workdir: Path, data: bytes) -> None:
    path = workdir / "bytes.yaml"
    path.write_bytes(data)
    assert_refused_or_valid(path)


@FUZZ
@given(text=mutated_example())
@pytest.mark.slow
def test_mutated_examples_are_refused_or_valid(workdir: Path, text: str) -> None:
    path = workdir / "mutated.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_refused_or_valid(path)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_valid(example: Path) -> None:
    code, text = validate(example)
    assert code == 0, text


# --------------------------------------------------------------------------- real processes

NASTY = {
    "nul.yaml": b"name: x\x00\nsteps: 1\n",
    "deep.yaml": b"name: x\nsteps: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "bomb.yaml": b"name: x\nsteps: 1\nscenario: {type: social}\npopulation: {size: 5}\n"
                 b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                 + b"".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n".encode()
                            for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
    "latin1.yaml": "name: café\n".encode("latin-1"),
    "huge.yaml": b"name: x\nsteps: 100000000000\nseed: 100000000000000000000000\n"
                 b"scenario: {type: market, wallet: 1.0e+300}\n"
                 b"population: {size: 1000000000000}\n",
}


@pytest.mark.parametrize("name", sorted(NASTY))
@pytest.mark.slow
def test_nasty_files_in_a_real_process(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(NASTY[name])
    proc = subprocess.run([sys.executable, "-m", "populace.simulator.cli", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "problem" in proc.stderr, proc.stderr


ARG_TOKENS = ["validate", "run", "resume", "runs", "export", "scenarios", "profiles", "generate",
              "--db", "--steps", "--seed", "--shards", "--runtime", "--out", "--format", "--quiet",
              "ray", "local", "csv", "0", "-1", "99999999999999999999", "x", "nothing.yaml",
              "empty.sqlite", "sqlite:///nowhere/x.sqlite", "postgresql+psycopg://h:1/x", ""]


@settings(max_examples=int(os.environ.get("POPULACE_FUZZ_EXAMPLES", "100")), derandomize=True,
          deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow
@given(argv=st.lists(st.sampled_from(ARG_TOKENS), max_size=6))
def test_any_command_line_gives_a_message_and_an_exit_code(
        tmp_path_factory: pytest.TempPathFactory, argv: list[str]) -> None:
    folder = tmp_path_factory.mktemp("argv")
    (folder / "empty.sqlite").touch()
    out, err = io.StringIO(), io.StringIO()
    cwd = Path.cwd()
    os.chdir(folder)  # nothing may land in the checkout
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    except SystemExit as exc:  # argparse: usage errors and --help
        code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(cwd)
    text = out.getvalue() + err.getvalue()
    assert code in (0, 1, 2), (argv, code, text)
    assert "a bug in populace" not in text and "Traceback" not in text, (argv, text)
    if code:
        assert text.strip(), argv


# --------------------------------------------------------------------------- extreme settings

SCENARIO_BASES = {"social": "scenarios/social/examples/quickstart.yaml",
                  "market": "scenarios/market/examples/quickstart.yaml",
                  "economy": "scenarios/economy/examples/macro.yaml"}


def _numeric_fields(model: type,
                    prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type]]:
    """Paths of the int and float fields of a config model, nested models included (not
    through lists or mappings)."""
    import typing

    from pydantic import BaseModel

    found = []
    for name, info in model.model_fields.items():  # type: ignore[attr-defined]
        if typing.get_origin(info.annotation) in (list, dict, tuple):
            continue
        for tp in typing.get_args(info.annotation) or (info.annotation,):
            if tp in (int, float):
                found.append(((*prefix, name), tp))
                break
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                found += _numeric_fields(tp, (*prefix, name))
                break
    return found


def _extreme_cases() -> list[tuple[str, tuple[str, ...], object]]:
    from populace.simulator.registry import get_scenario

    cases = []
    for name in SCENARIO_BASES:
        cls = get_scenario(name)
        fields = [(("scenario", *p), t) for p, t in _numeric_fields(cls.config_model)]
        fields += [(("policy", "params", *p), t) for p, t in _numeric_fields(cls.rule_params_model)]
        for loc, tp in fields:
            values = (10**15, -(10**15)) if tp is int else (1e300, -1e15, 1e-300)
            cases += [(name, loc, v) for v in values]
    return cases


def _run_in_process(path: Path, db: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["run", str(path), "--steps", "3", "--quiet", "--db", str(db)])
    return code, out.getvalue() + err.getvalue()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings are expected
def test_a_run_whose_prices_explode_still_completes(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load((ROOT / SCENARIO_BASES["economy"]).read_text())
    data["population"]["size"] = 100
    data["scenario"]["initial_consume_share"] = 1e-300  # annualised inflation overflowed
    path = tmp_path / "macro.yaml"
    path.write_text(yaml.safe_dump(data))
    code, text = _run_in_process(path, tmp_path / "r.sqlite")
    assert code == 0, text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_every_numeric_setting_at_extremes_is_refused_or_runs(tmp_path: Path) -> None:
    """Each int/float field of each scenario and rule model (defaults included) set to huge,
    negative and tiny values: validate refuses it (2) or a 3-step run ends with 0 or a
    message (1), never an unexpected exception."""
    import yaml

    failures = []
    for i, (name, loc, value) in enumerate(_extreme_cases()):
        data = yaml.safe_load((ROOT / SCENARIO_BASES[name]).read_text())
        data["population"]["size"] = 100
        node = data
        for key in loc[:-1]:
            node = node.setdefault(key, {})
        node[loc[-1]] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        code, text = validate(path)
        if code == 0:
            code, text = _run_in_process(path, tmp_path / f"r{i}.sqlite")
        if code not in (0, 1, 2) or "a bug in populace" in text or "Traceback" in text:
            failures.append(f"{name} {'.'.join(loc)}={value}: exit {code}: {text[-300:]}")
    assert not failures, "\n".join(failures)
