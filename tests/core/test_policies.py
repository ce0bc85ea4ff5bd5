"""The selection policies (routing.md sections 4 to 6): candidates, reasons, rotation,
sticky bindings, failover, and what a decision carries.
"""

from __future__ import annotations

import pytest

from beamrouting import Catalog, NoBackendAvailable, Policy, RoutingEngine
from tests._helpers import BACKENDS
from tests.core._support import RR, backends, error_of


@pytest.mark.parametrize("policy", [p.value for p in Policy if p is not Policy.CAPABILITY_FIRST])
def test_no_backend_available_detail(engine: RoutingEngine, policy: str) -> None:
    request = {
        "policy": policy,
        "affinity_key": "k",
        "preferred_backends": ["codex_cli", "codex", "gemini"],
        "excluded_backends": ["claude", "codex", "copilot"],
        "capabilities": ["hooks", "hooks"],
        "health": {"gemini": "unhealthy", "opencode_client": "down"},
    }
    error = error_of(lambda: engine.select_backend(request))
    assert isinstance(error, NoBackendAvailable)
    assert error.detail == {
        "policy": policy,
        "requested_capabilities": ["hooks"],
        "preferred_backends": ["codex", "gemini"],
        "excluded_backends": ["claude", "codex", "copilot"],
        "eligible_backends": [],
    }


def test_capability_first_without_capabilities_and_nothing_eligible(engine: RoutingEngine) -> None:
    request = {"policy": "capability_first", "excluded_backends": list(BACKENDS)}
    error = error_of(lambda: engine.select_backend(request))
    assert error.code == "no_backend_available"
    assert error.detail["policy"] == "capability_first"


def test_explicit_without_backend_takes_the_first_ordered(engine: RoutingEngine) -> None:
    decision = engine.select_backend(
        {"policy": "explicit", "preferred_backends": ["opencode"], "fallback_backends": ["copilot"]}
    )
    assert decision.to_dict() == {
        "backend": "opencode",
        "candidates": ["opencode", "copilot", "claude", "codex", "gemini"],
        "policy": "explicit",
        "reasons": ["selected first explicit candidate"],
        "fallback_chain": ["copilot", "claude", "codex", "gemini"],
    }


def test_preferred_then_fallback_reasons(engine: RoutingEngine) -> None:
    base = {"preferred_backends": ["gemini"], "fallback_backends": ["codex"]}
    assert engine.select_backend(base).reasons == ("selected preferred backend",)
    fallback = {**base, "excluded_backends": ["gemini"]}
    assert engine.select_backend(fallback).reasons == ("selected fallback backend",)
    remaining = {**fallback, "health": {"codex": "down"}}
    decision = engine.select_backend(remaining)
    assert (decision.backend, decision.reasons) == ("claude", ("selected first eligible backend",))


def test_fallback_policy_none_limits_candidates_unless_both_lists_are_empty(engine: RoutingEngine) -> None:
    request = {"preferred_backends": ["gemini"], "fallback_backends": ["codex"], "fallback_policy": "none"}
    assert engine.select_backend(request).candidates == ("gemini", "codex")
    everything_named_is_out = {**request, "excluded_backends": ["gemini", "codex"]}
    assert engine.select_backend(everything_named_is_out).candidates == ("claude", "copilot", "opencode")


def test_capability_first_ignores_preferences() -> None:
    catalog = Catalog.default().with_support("claude", "hooks", False)
    engine = RoutingEngine(catalog)
    decision = engine.select_backend(
        {
            "policy": "capability_first",
            "capabilities": ["hooks"],
            "preferred_backends": ["opencode"],
            "fallback_policy": "none",
        }
    )
    assert decision.backend == "codex"
    assert decision.candidates == ("codex", "opencode")
    assert decision.reasons == ("selected backend satisfying capabilities [hooks]",)


def test_round_robin_cycles_and_counts_per_candidate_set(engine: RoutingEngine) -> None:
    assert backends(engine, RR, 6) == [*BACKENDS, "claude"]
    narrow = {**RR, "excluded_backends": ["claude", "codex"]}
    assert backends(engine, narrow, 4) == ["copilot", "gemini", "opencode", "copilot"]
    # the first set's counter continued where it was
    assert engine.select_backend(RR).backend == "codex"


def test_round_robin_counter_key_includes_request_lists(engine: RoutingEngine) -> None:
    # Same ordered candidates, different normalised request lists: separate counters.
    assert engine.select_backend(RR).backend == "claude"
    assert engine.select_backend({**RR, "fallback_backends": ["claude"]}).backend == "claude"
    assert engine.select_backend({**RR, "preferred_backends": ["claude"]}).backend == "claude"
    assert engine.select_backend({**RR, "capabilities": ["memory"]}).backend == "claude"
    assert engine.select_backend(RR).backend == "codex"
    # Spellings normalise to the same key.
    assert engine.select_backend({**RR, "fallback_backends": ["claude_code"]}).backend == "codex"


def test_round_robin_rotation_shape(engine: RoutingEngine) -> None:
    engine.select_backend(RR)
    decision = engine.select_backend(RR)
    assert decision.to_dict() == {
        "backend": "codex",
        "candidates": ["codex", "copilot", "gemini", "opencode", "claude"],
        "policy": "round_robin",
        "reasons": ["selected by round robin policy"],
        "fallback_chain": ["copilot", "gemini", "opencode", "claude"],
    }


def test_sticky_binds_then_reuses_while_eligible(engine: RoutingEngine) -> None:
    first = engine.select_backend({"policy": "sticky", "affinity_key": "ws"})
    assert (first.backend, first.reasons) == ("claude", ("selected backend and bound sticky affinity",))
    again = engine.select_backend(
        {"policy": "sticky", "affinity_key": "ws", "preferred_backends": ["gemini"]}
    )
    assert again.to_dict() == {
        "backend": "claude",
        "candidates": ["claude", "gemini", "codex", "copilot", "opencode"],
        "policy": "sticky",
        "reasons": ["reused sticky affinity backend"],
        "fallback_chain": ["gemini", "codex", "copilot", "opencode"],
        "affinity_key": "ws",
    }
    moved = engine.select_backend({"policy": "sticky", "affinity_key": "ws", "excluded_backends": ["claude"]})
    assert moved.backend != "claude"
    assert moved.reasons == ("selected backend and bound sticky affinity",)
    # The new binding holds even once claude is back.
    back = engine.select_backend({"policy": "sticky", "affinity_key": "ws"})
    assert (back.backend, back.reasons) == (moved.backend, ("reused sticky affinity backend",))


def test_sticky_reuse_touches_no_counter(engine: RoutingEngine) -> None:
    engine.select_backend({"policy": "sticky", "affinity_key": "a"})
    for _ in range(3):
        engine.select_backend({"policy": "sticky", "affinity_key": "a"})
    assert engine.select_backend({"policy": "sticky", "affinity_key": "b"}).backend == "codex"


def test_sticky_reused_backend_outside_ordered_goes_in_front(engine: RoutingEngine) -> None:
    engine.select_backend({"policy": "sticky", "affinity_key": "k"})
    decision = engine.select_backend(
        {"policy": "sticky", "affinity_key": "k", "preferred_backends": ["gemini"], "fallback_policy": "none"}
    )
    assert decision.candidates == ("claude", "gemini")


def test_failover_moves_last_backend_to_the_end(engine: RoutingEngine) -> None:
    decision = engine.select_backend({"policy": "failover", "last_backend": "claude", "affinity_key": "k"})
    assert decision.to_dict() == {
        "backend": "codex",
        "candidates": ["codex", "copilot", "gemini", "opencode", "claude"],
        "policy": "failover",
        "reasons": ["skipped last backend and selected failover candidate"],
        "fallback_chain": ["copilot", "gemini", "opencode", "claude"],
    }
    only_last = {
        "policy": "failover",
        "last_backend": "codex",
        "excluded_backends": ["claude", "copilot"],
        "health": {"gemini": "down", "opencode": "down"},
    }
    assert engine.select_backend(only_last).reasons == (
        "reused last backend because no failover candidate remained",
    )
    assert engine.select_backend({"policy": "failover"}).reasons == ("selected first failover candidate",)
    not_a_candidate = {"policy": "failover", "last_backend": "claude", "excluded_backends": ["claude"]}
    decision = engine.select_backend(not_a_candidate)
    assert decision.backend == "codex"
    assert decision.reasons == ("skipped last backend and selected failover candidate",)


def test_decision_carries_affinity_key_and_profile_id(engine: RoutingEngine) -> None:
    decision = engine.select_backend({"affinity_key": "k", "policy_profile_id": "team-a"})
    assert decision.affinity_key == "k"
    assert decision.policy_profile_id == "team-a"
    assert decision.to_dict()["policy_profile_id"] == "team-a"
    plain = engine.select_backend({}).to_dict()
    assert "affinity_key" not in plain and "policy_profile_id" not in plain
