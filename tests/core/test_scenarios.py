"""The reference scenarios (shared/scenarios/reference_scenarios.jsonl), one test per scenario.

Each scenario runs on a fresh engine with the profiles of section 11 stored. The same data
also checks the reference model that the property tests use as an oracle.
"""

from __future__ import annotations

from typing import Any

import pytest

from beamrouting import RoutingEngine
from tests._helpers import (
    UNUSED_FILTER_PROFILE,
    Scenario,
    every_feature,
    format_mismatches,
    profiles_for_scenarios,
    require_scenario,
    run_scenario,
    scenario_params,
)
from tests._model import ModelEngine

SCENARIOS = scenario_params()


def test_scenario_file_is_complete() -> None:
    scenarios = [require_scenario(param.values[0]) for param in SCENARIOS]
    ids = [scenario["id"] for scenario in scenarios]
    assert len(ids) == len(set(ids)), "scenario ids must be unique"
    assert len(ids) >= 71
    checked = sum(1 for s in scenarios for step in s["steps"] if "expect" in step)
    assert checked >= 300


@pytest.mark.parametrize("features", [False, True], ids=["defaults", "every-feature-on"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_engine_matches_scenario(scenario: Scenario | None, features: bool) -> None:
    scenario = require_scenario(scenario)
    engine = RoutingEngine(**every_feature()) if features else RoutingEngine()
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    if features:
        engine.put_policy_profile(*UNUSED_FILTER_PROFILE)

    mismatches = run_scenario(
        scenario,
        engine.select_backend,
        engine.select_backend,
        engine.clear,
    )

    assert not mismatches, format_mismatches(scenario, mismatches)


class _ModelDecision:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_reference_model_matches_scenario(scenario: Scenario | None) -> None:
    """The oracle of test_engine_properties.py agrees with the reference data."""
    scenario = require_scenario(scenario)
    model = ModelEngine()
    for profile_id, profile in profiles_for_scenarios():
        model.put_policy_profile(profile_id, profile)

    mismatches = run_scenario(
        scenario,
        lambda request: _ModelDecision(model.select_backend(request)),
        lambda session, request: _ModelDecision(model.select_backend(session, request)),
        model.clear,
    )

    assert not mismatches, format_mismatches(scenario, mismatches)
