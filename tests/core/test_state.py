"""The engine's bounded state: LRU eviction of counters and bindings, binding TTLs, bounds
checks, clear() and ensure_tables().
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from beamrouting import RouteDecision, RoutingEngine
from tests._helpers import BACKENDS
from tests.core._support import RR, backends, outcome


def test_counters_are_evicted_least_recently_used_first() -> None:
    engine = RoutingEngine(max_counters=2)
    a, b, c = RR, {**RR, "excluded_backends": ["opencode"]}, {**RR, "excluded_backends": ["gemini"]}
    assert backends(engine, a, 2) == ["claude", "codex"]
    engine.select_backend(b)
    assert engine.select_backend(a).backend == "copilot"  # a is now the most recently used
    engine.select_backend(c)  # evicts b
    assert engine.select_backend(a).backend == "gemini"
    assert engine.select_backend(b).backend == "claude"  # b starts over; c is evicted
    assert engine.select_backend(c).backend == "claude"


def test_bindings_are_evicted_least_recently_used_first() -> None:
    engine = RoutingEngine(max_bindings=2)

    def sticky(key: str) -> RouteDecision:
        return engine.select_backend({"policy": "sticky", "affinity_key": key})

    assert [sticky(k).backend for k in ("k1", "k2")] == ["claude", "codex"]
    assert sticky("k1").reasons == ("reused sticky affinity backend",)  # k1 most recently used
    assert sticky("k3").backend == "copilot"  # evicts k2
    assert sticky("k1").backend == "claude"
    k2 = sticky("k2")
    assert (k2.backend, k2.reasons) == ("gemini", ("selected backend and bound sticky affinity",))


def test_state_never_exceeds_its_caps() -> None:
    engine = RoutingEngine(max_counters=3, max_bindings=4)
    for i in range(50):
        engine.select_backend(
            {"policy": "sticky", "affinity_key": f"k{i}", "excluded_backends": [BACKENDS[i % 5]]}
        )
        engine.select_backend({**RR, "excluded_backends": [BACKENDS[i % 5]]})
    assert engine.state.counter_count <= 3
    assert engine.state.binding_count <= 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_binding_ttl_expires_and_is_refreshed_by_every_sticky_decision() -> None:
    clock = FakeClock()
    engine = RoutingEngine(binding_ttl=10.0, clock=clock)
    sticky = {"policy": "sticky", "affinity_key": "ws"}
    assert engine.select_backend(sticky).backend == "claude"
    clock.now += 9.0
    assert engine.select_backend(sticky).reasons == ("reused sticky affinity backend",)
    clock.now += 9.0  # 18 s after binding, 9 s after the refresh
    assert engine.select_backend(sticky).reasons == ("reused sticky affinity backend",)
    clock.now += 10.5
    expired = engine.select_backend(sticky)
    assert expired.reasons == ("selected backend and bound sticky affinity",)
    assert expired.backend == "codex"


def test_binding_ttl_is_refreshed_by_a_rebind_too() -> None:
    clock = FakeClock()
    engine = RoutingEngine(binding_ttl=5.0, clock=clock)
    engine.select_backend({"policy": "sticky", "affinity_key": "ws"})
    clock.now += 4.0
    rebound = engine.select_backend(
        {"policy": "sticky", "affinity_key": "ws", "excluded_backends": ["claude"]}
    )
    clock.now += 4.0
    reused = engine.select_backend({"policy": "sticky", "affinity_key": "ws"})
    assert (reused.backend, reused.reasons) == (rebound.backend, ("reused sticky affinity backend",))


def test_bindings_without_ttl_do_not_expire() -> None:
    clock = FakeClock()
    engine = RoutingEngine(clock=clock)
    engine.select_backend({"policy": "sticky", "affinity_key": "ws"})
    clock.now += 1e9
    assert engine.select_backend({"policy": "sticky", "affinity_key": "ws"}).reasons == (
        "reused sticky affinity backend",
    )


@pytest.mark.parametrize(
    "kwargs", [{"max_counters": 0}, {"max_bindings": 0}, {"binding_ttl": 0}, {"binding_ttl": -1.0}]
)
def test_nonsensical_bounds_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RoutingEngine(**kwargs)


def test_clear_forgets_counters_and_bindings_but_keeps_profiles(engine: RoutingEngine) -> None:
    engine.select_backend(RR)
    engine.select_backend({"policy": "sticky", "affinity_key": "k", "excluded_backends": ["claude"]})
    clear: Callable[[], object] = engine.clear
    assert clear() is None
    assert engine.select_backend(RR).backend == "claude"
    assert engine.select_backend({"policy": "sticky", "affinity_key": "k"}).reasons == (
        "selected backend and bound sticky affinity",
    )
    assert outcome(engine, {"policy_profile_id": "deny-claude"}) == (
        "policy_denied",
        "claude backend blocked",
    )


def test_ensure_tables_is_idempotent_and_keeps_state(engine: RoutingEngine) -> None:
    engine.select_backend({"policy": "sticky", "affinity_key": "k"})
    engine.ensure_tables()
    engine.ensure_tables()
    assert engine.select_backend({"policy": "sticky", "affinity_key": "k"}).reasons == (
        "reused sticky affinity backend",
    )
