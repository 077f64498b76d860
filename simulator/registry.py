"""Finding scenarios by name.

Core objects:
    register_scenario: add a scenario class (used by tests and plug-ins without packaging).
    get_scenario, available_scenarios: look scenarios up; installed packages advertise theirs
        through the ``populace.scenarios`` entry-point group, so the engine names none of them.
    headline_metrics: the metrics that sum up a run of a scenario.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib.metadata import entry_points

from .scenario import Scenario

_registry: dict[str, type[Scenario]] = {}
_broken: dict[str, str] = {}  # installed scenarios that failed to import -> why
_entry_points_loaded = False


class UnknownScenarioError(KeyError):
    """No scenario of that name is registered or installed."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_scenario(cls: type[Scenario]) -> type[Scenario]:
    """Register ``cls`` under ``cls.name``; usable as a class decorator."""
    _registry[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="populace.scenarios"):
        if ep.name in _registry:
            continue
        try:
            _registry[ep.name] = ep.load()
        except Exception as exc:  # one broken plug-in must not hide every other scenario
            _broken[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"


def available_scenarios() -> list[str]:
    """Names of every registered or installed scenario."""
    _load_entry_points()
    return sorted(_registry)


def get_scenario(name: str) -> type[Scenario]:
    """The scenario class called ``name``; a clear error with suggestions if there is none."""
    _load_entry_points()
    if name in _broken and name not in _registry:
        raise UnknownScenarioError(f"scenario {name!r} is installed but failed to import "
                                   f"({_broken[name]})")
    try:
        return _registry[name]
    except KeyError:
        names = sorted(_registry)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownScenarioError(
            f"unknown scenario {name!r}{hint} (available: {', '.join(names) or 'none'})"
        ) from None


def headline_metrics(scenario: str, recorded: Iterable[str]) -> list[str]:
    """The metrics that sum a run up (``populace run``'s final line, ``populace sweep``'s
    table): those its scenario declares as headline (``Scenario.headline_metrics``) that the
    run recorded, else the first 8 by name that are not counters (dotted names, e.g.
    ``actions.like``)."""
    names = list(recorded)
    present = set(names)
    declared = [m for m in get_scenario(scenario).headline_metrics if m in present]
    return declared or [k for k in names if "." not in k][:8]
