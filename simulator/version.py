"""The installed Populace version (standard library only: the CLI reads it for ``--version``
before it imports anything heavy)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed Populace version (``0+unknown`` when run from a tree that is not installed)."""
    try:
        return version("populace")
    except PackageNotFoundError:
        return "0+unknown"
