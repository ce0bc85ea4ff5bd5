"""The public surface of the engine's types: exported names, the enums' contract values,
immutable decisions.
"""

from __future__ import annotations

import pytest

import beamrouting
from beamrouting import FallbackPolicy, Health, Policy, RouteDecision, RoutingEngine
from tests.core._support import ERROR_CLASSES


def test_public_names_are_exported() -> None:
    names = {
        "RoutingEngine",
        "Catalog",
        "BackendSpec",
        "RouteDecision",
        "RoutingError",
        "Policy",
        "FallbackPolicy",
        "Health",
        "SessionHandle",
        "BeamRoutingError",
        "CatalogError",
        *(cls.__name__ for cls in ERROR_CLASSES.values()),
    }
    assert names <= set(beamrouting.__all__)
    for name in beamrouting.__all__:
        assert hasattr(beamrouting, name), name


def test_enums_are_str_enums_with_the_contract_values() -> None:
    # The contract's six policies, then the two this package adds (a deliberate difference).
    assert [p.value for p in Policy] == [
        "explicit",
        "sticky",
        "round_robin",
        "failover",
        "capability_first",
        "preferred_then_fallback",
        "least_loaded",
        "weighted",
    ]
    assert [p.value for p in FallbackPolicy] == ["none", "available"]
    assert [h.value for h in Health] == ["healthy", "degraded", "unhealthy", "down"]
    assert Policy("sticky") is Policy.STICKY and str(Policy.STICKY) == "sticky"
    assert isinstance(Health.DOWN, str)


def test_route_decision_is_immutable(engine: RoutingEngine) -> None:
    decision = engine.select_backend({})
    assert isinstance(decision, RouteDecision)
    with pytest.raises(AttributeError):
        decision.backend = "codex"  # type: ignore[misc]
    assert isinstance(decision.candidates, tuple)
