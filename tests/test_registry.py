"""Scenario lookup: installed plug-ins, and one that fails to import."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from populace.simulator import registry


def test_a_broken_plugin_is_reported_by_name_and_hides_no_other(monkeypatch) -> None:
    broken = EntryPoint(name="broken_demo", value="populace.no_such_module:Scenario",
                        group="populace.scenarios")
    real = list(registry.entry_points(group="populace.scenarios"))
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real, broken])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_registry", {})
    monkeypatch.setattr(registry, "_broken", {})
    assert {"social", "market"} <= set(registry.available_scenarios())
    assert registry.get_scenario("market").name == "market"
    with pytest.raises(registry.UnknownScenarioError,
                       match=r"'broken_demo' is installed but failed to import .*no_such_module"):
        registry.get_scenario("broken_demo")
    with pytest.raises(registry.UnknownScenarioError, match="did you mean 'market'"):
        registry.get_scenario("markte")
