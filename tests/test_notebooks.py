"""The notebooks of docs/notebooks/: committed without outputs, and each runs top to bottom.

Executing a notebook starts a Jupyter kernel on this Python (the venv's, whatever kernels the
machine has registered) in a temporary folder, so its runs and databases land there. Its
figures go to ``$POPULACE_FIGURES``: a temporary folder unless that variable is set already
(``POPULACE_FIGURES=docs/images/notebooks`` regenerates the figures of the docs), and each
figure it saves must have its copy in docs/images/notebooks/. A cell that raises fails the
test with the cell's error. Executing is slow (a kernel and whole runs each): those tests are
marked slow.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

from populace.simulator.docgen import slugify

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))
IMAGES = ROOT / "docs" / "images" / "notebooks"
KERNEL = "populace-tests"
CELL_TIMEOUT_S = 240

# the first cell of every executed notebook: fails unless the kernel runs this very Python
SAME_PYTHON = """\
import sys
assert sys.executable == {executable!r}, f"the kernel runs {{sys.executable}}"
"""


def by_name(path: Path) -> str:
    return path.stem


def test_every_notebook_is_listed_in_the_readme() -> None:
    assert NOTEBOOKS, "no notebooks in docs/notebooks/"
    readme = (ROOT / "docs" / "notebooks" / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if f"({p.name})" not in readme]
    assert not missing, f"docs/notebooks/README.md does not link {', '.join(missing)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=by_name)
def test_committed_without_outputs(path: Path) -> None:
    """Outputs stay out of git: the repository stays small and diffs stay readable."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    kept = [i for i, cell in enumerate(cells) if cell["cell_type"] == "code"
            and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not kept, (f"{path.name}: cells {kept} hold outputs or execution counts; strip them "
                      f"(jupyter nbconvert --clear-output --inplace {path.name})")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=by_name)
def test_relative_links_point_to_existing_files(path: Path) -> None:
    """Links in the Markdown cells (to the guides, the example files) resolve from the
    notebook's folder, headings included."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    text = re.sub(r"`[^`]*`", "", text)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve()
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+\s+(.*)$", linked.read_text(encoding="utf-8"), re.M)
            if anchor not in {slugify(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{path.name}: broken links {broken}"


def kernel_manager(folder: Path):
    """A kernel manager whose only kernel is this Python (``sys.executable``), talking over
    Unix sockets in ``folder``: with TCP, the client picks free ports that the kernel binds a
    moment later, and another process (the other test worker's servers) can take one between
    ("Address already in use", then "Kernel didn't respond")."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec = folder / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Populace tests", "language": "python"}), encoding="utf-8")
    specs = KernelSpecManager(kernel_dirs=[str(folder)])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs, transport="ipc",
                         ip=str(folder / "ipc"))


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=by_name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = Path(os.environ.get("POPULACE_FIGURES", tmp_path / "figures")).resolve()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("POPULACE_FIGURES", str(figures))
    monkeypatch.setenv("MPLBACKEND", "agg")  # no display; figures are saved, not shown
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SAME_PYTHON.format(executable=sys.executable)))
    client = nbclient.NotebookClient(
        nb, km=kernel_manager(tmp_path / "kernels"), timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(work)}})
    started = time.time()
    client.execute()  # raises CellExecutionError with the failing cell and its traceback

    # a notebook's figures are named after it: NAME.png, NAME_*.png
    saved = sorted(p.name for p in figures.glob(f"{path.stem}*.png")
                   if p.stat().st_mtime >= started)
    assert saved, f"{path.name} saved no figure {path.stem}*.png to $POPULACE_FIGURES"
    stale = [name for name in saved if not (IMAGES / name).is_file()]
    assert not stale, (f"{path.name} saves {', '.join(stale)}, missing from "
                       "docs/images/notebooks/ (docs/notebooks/README.md says how to make them)")
