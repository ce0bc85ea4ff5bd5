"""Fixtures of the engine's unit tests: an engine with the scenario profiles stored."""

from __future__ import annotations

import pytest

from beamrouting import RoutingEngine
from tests._helpers import profiles_for_scenarios


@pytest.fixture
def engine() -> RoutingEngine:
    """A fresh engine on the default catalogue with the scenario profiles (section 11) stored."""
    engine = RoutingEngine()
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    return engine
