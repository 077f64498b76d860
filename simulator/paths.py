"""Where a path written in an experiment points: one rule for every file a run reads.

A path may start with ``~`` (the user's home); a relative path is read from the experiment
file's folder. Validation and the run-time loaders (population files, edge lists, menu files,
prompt templates) all resolve through :func:`experiment_path`, so ``validate`` accepts exactly
the paths a run can read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal


class MissingPathError(ValueError):
    """A file or folder an experiment names does not exist (or is not of the expected kind)."""


def experiment_path(path: str | Path, base_dir: Path) -> Path:
    """The absolute path ``path`` names: ``~`` expanded, relative to ``base_dir``.

    Args:
        path: the path as written in the experiment.
        base_dir: the experiment file's folder.
    """
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = Path(base_dir) / candidate
    return candidate.resolve()


def existing_path(path: str | Path, base_dir: Path,
                  kind: Literal["file", "folder"] = "file") -> Path:
    """:func:`experiment_path`, checked to be an existing file (or folder).

    Raises:
        MissingPathError: nothing of that kind is there; the message names the absolute path
            and the folder relative paths are read from.
    """
    resolved = experiment_path(path, base_dir)
    if not (resolved.is_file() if kind == "file" else resolved.is_dir()):
        what = "no such file" if kind == "file" else "no such folder"
        if resolved.exists():
            what = "not a file" if kind == "file" else "not a folder"
        raise MissingPathError(f"{what}: {resolved} (relative paths are read from the "
                               f"experiment file's folder, {Path(base_dir).resolve()})")
    return resolved
