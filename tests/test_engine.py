"""Unit tests of RoutingEngine against routing.md: every failure mode, state bounds, the
journal, policy profiles, the catalogue and the error tree."""

from __future__ import annotations

import json
import pickle
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pytest

import beamrouting
import beamrouting._core._errors as errors_module
from beamrouting import (
    BackendNotEligible,
    BackendSpec,
    BeamRoutingError,
    Catalog,
    CatalogError,
    FallbackPolicy,
    Health,
    InvalidAffinityKey,
    InvalidFallbackPolicy,
    InvalidHealthStatus,
    InvalidPolicy,
    InvalidPolicyProfile,
    InvalidRouteRequest,
    NoBackendAvailable,
    NoBackendSupportsCapabilities,
    Policy,
    PolicyDenied,
    RouteDecision,
    RoutingEngine,
    RoutingError,
    SessionHandle,
    UnknownBackend,
    UnknownCapability,
    UnsupportedRouteKey,
)
from tests._helpers import BACKENDS, profiles_for_scenarios

ALL_CAPABILITIES = (
    "session_lifecycle",
    "session_info",
    "runtime_model_switch",
    "interrupt",
    "permission_mode",
    "session_history",
    "session_mutation",
    "thread_management",
    "metadata_accessors",
    "in_process_mcp",
    "mcp_management",
    "hooks",
    "checkpointing",
    "thinking_budget",
    "task_stop",
    "command_execution",
    "approval_callbacks",
    "user_input_callbacks",
    "realtime_review",
    "config_management",
    "provider_management",
    "attachments",
    "event_streaming",
    "memory",
)

ALIASES = {
    "claude": ("claude", "claude_code", "claude_agent_sdk"),
    "codex": ("codex", "codex_cli", "codex_app_server"),
    "gemini": ("gemini", "gemini_cli", "gemini_cli_client"),
    "opencode": ("opencode", "opencode_client"),
    "copilot": ("copilot", "copilot_client"),
}

ERROR_CLASSES: dict[str, type[RoutingError]] = {
    "unsupported_route_key": UnsupportedRouteKey,
    "invalid_policy": InvalidPolicy,
    "unknown_backend": UnknownBackend,
    "invalid_route_request": InvalidRouteRequest,
    "unknown_capability": UnknownCapability,
    "invalid_fallback_policy": InvalidFallbackPolicy,
    "invalid_affinity_key": InvalidAffinityKey,
    "invalid_health_status": InvalidHealthStatus,
    "backend_not_eligible": BackendNotEligible,
    "no_backend_supports_capabilities": NoBackendSupportsCapabilities,
    "no_backend_available": NoBackendAvailable,
    "policy_denied": PolicyDenied,
    "invalid_policy_profile": InvalidPolicyProfile,
}

RR = {"policy": "round_robin"}


@pytest.fixture
def engine() -> RoutingEngine:
    engine = RoutingEngine()
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    return engine


def error_of(call: Callable[[], object]) -> RoutingError:
    """The RoutingError ``call`` raises (fails the test if it returns)."""
    with pytest.raises(RoutingError) as info:
        call()
    return info.value


def outcome(engine: RoutingEngine, *args: Any) -> Any:
    """A decision as a dict, or ``(code, detail)`` of the error."""
    try:
        return engine.select_backend(*args).to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


def backends(engine: RoutingEngine, request: Mapping[str, Any], times: int) -> list[str]:
    return [engine.select_backend(request).backend for _ in range(times)]


# --------------------------------------------------------------------------- public surface


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
    assert [p.value for p in Policy] == [
        "explicit",
        "sticky",
        "round_robin",
        "failover",
        "capability_first",
        "preferred_then_fallback",
    ]
    assert [p.value for p in FallbackPolicy] == ["none", "available"]
    assert [h.value for h in Health] == ["healthy", "degraded", "unhealthy", "down"]
    assert Policy("sticky") is Policy.STICKY and str(Policy.STICKY) == "sticky"
    assert isinstance(Health.DOWN, str)


def test_enum_members_and_plain_strings_route_alike(engine: RoutingEngine) -> None:
    as_enums = {
        "policy": Policy.PREFERRED_THEN_FALLBACK,
        "preferred_backends": ["gemini"],
        "fallback_policy": FallbackPolicy.NONE,
        "health": {"gemini": Health.DEGRADED, "codex": Health.DOWN},
    }
    as_strings = {
        "policy": "preferred_then_fallback",
        "preferred_backends": ["gemini"],
        "fallback_policy": "none",
        "health": {"gemini": "degraded", "codex": "down"},
    }
    assert outcome(engine, as_enums) == outcome(engine, as_strings)
    assert engine.select_backend(as_enums).candidates == ("gemini",)


# --------------------------------------------------------------------------- error tree


def test_every_routing_error_is_a_beamrouting_error_with_its_code() -> None:
    for code, cls in ERROR_CLASSES.items():
        assert issubclass(cls, RoutingError)
        assert issubclass(cls, BeamRoutingError)
        assert cls.code == code
        error = cls("x")
        assert (error.code, error.detail) == (code, "x")
    assert set(RoutingError.__subclasses__()) == set(ERROR_CLASSES.values())


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, BeamRoutingError)
    assert issubclass(CatalogError, ValueError)
    assert not issubclass(CatalogError, RoutingError)


def test_errors_module_docstring_draws_the_whole_tree() -> None:
    doc = errors_module.__doc__
    assert doc is not None
    tree = [line.strip() for line in doc.splitlines() if "──" in line or line.strip() == "BeamRoutingError"]
    drawn = " ".join(tree)
    for name in errors_module.__all__:
        obj = getattr(errors_module, name)
        if isinstance(obj, type) and issubclass(obj, BeamRoutingError):
            assert re.search(rf"\b{name}\b", drawn), f"{name} is missing from the tree"
    for code in ERROR_CLASSES:
        assert code in drawn


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("s", "s"),
        (3, 3),
        (2.5, 2.5),
        (True, True),
        (None, None),
        (("a", 1), ["a", 1]),
        (["a", ("b",)], ["a", ["b"]]),
        (b"raw", repr(b"raw")),
        ({1, 2}, repr({1, 2})),
    ],
)
def test_error_detail_is_json_compatible(value: object, detail: object) -> None:
    error = UnknownBackend(value)
    assert error.detail == detail
    assert json.loads(json.dumps(error.detail)) == detail
    assert error.to_dict() == {"code": "unknown_backend", "detail": detail}


def test_error_detail_of_an_arbitrary_object_is_its_repr() -> None:
    thing = object()
    assert UnknownBackend(thing).detail == repr(thing)


def test_errors_pickle_and_compare_by_code_and_detail() -> None:
    error = NoBackendAvailable({"policy": "sticky", "eligible_backends": []})
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is NoBackendAvailable
    assert clone == error
    assert UnknownBackend("a") != UnknownBackend("b")
    assert UnknownBackend("a") != InvalidPolicy("a")


# --------------------------------------------------------------------------- validation


def test_validation_order_follows_section_3_1(engine: RoutingEngine) -> None:
    """Fix the first failing key each time: the next check in the list fails next."""
    request: dict[Any, Any] = {
        "zzz": 1,
        "policy": "nope",
        "backend": "nope",
        "preferred_backends": ["bad-preferred"],
        "excluded_backends": ["bad-excluded"],
        "fallback_backends": ["bad-fallback"],
        "capabilities": ["bad-capability"],
        "last_backend": "bad-last",
        "fallback_policy": "bad-fallback-policy",
        "affinity_key": "",
        "policy_profile_id": "",
        "health": "bad-health",
    }
    expected = [
        ("zzz", ("unsupported_route_key", "zzz")),
        ("policy", ("invalid_policy", "nope")),
        ("backend", ("unknown_backend", "nope")),
        ("preferred_backends", ("unknown_backend", "bad-preferred")),
        ("excluded_backends", ("unknown_backend", "bad-excluded")),
        ("fallback_backends", ("unknown_backend", "bad-fallback")),
        ("capabilities", ("unknown_capability", "bad-capability")),
        ("last_backend", ("unknown_backend", "bad-last")),
        ("fallback_policy", ("invalid_fallback_policy", "bad-fallback-policy")),
        ("affinity_key", ("invalid_affinity_key", "")),
        ("policy_profile_id", ("invalid_route_request", "policy_profile_id")),
        ("health", ("invalid_route_request", ["health", "bad-health"])),
    ]
    for key, error in expected:
        assert outcome(engine, request) == error, f"while {key!r} is bad"
        del request[key]
    assert outcome(engine, request)["backend"] == "claude"


@pytest.mark.parametrize(
    ("request_", "code", "detail"),
    [
        # the request itself
        ([], "invalid_route_request", "request"),
        ("claude", "invalid_route_request", "request"),
        (None, "invalid_route_request", "request"),
        (42, "invalid_route_request", "request"),
        # keys
        ({"model": "x"}, "unsupported_route_key", "model"),
        ({1: "x"}, "unsupported_route_key", 1),
        ({("a", 1): "x"}, "unsupported_route_key", ["a", 1]),
        ({"zeta": 1, "alpha": 2}, "unsupported_route_key", "alpha"),
        ({"b": 1, 10: 2}, "unsupported_route_key", 10),
        ({"policy": "explicit", "Policy": "explicit"}, "unsupported_route_key", "Policy"),
        # policy
        ({"policy": None}, "invalid_policy", None),
        ({"policy": "Explicit"}, "invalid_policy", "Explicit"),
        ({"policy": ["sticky"]}, "invalid_policy", ["sticky"]),
        ({"policy": 1}, "invalid_policy", 1),
        # backends
        ({"backend": "Claude"}, "unknown_backend", "Claude"),
        ({"backend": 1}, "unknown_backend", 1),
        ({"backend": True}, "unknown_backend", True),
        ({"backend": ["claude"]}, "unknown_backend", ["claude"]),
        ({"backend": ("claude",)}, "unknown_backend", ["claude"]),
        ({"backend": {"name": "claude"}}, "unknown_backend", {"name": "claude"}),
        ({"preferred_backends": None}, "unknown_backend", None),
        ({"preferred_backends": ["claude", "auto"]}, "unknown_backend", "auto"),
        ({"preferred_backends": ["claude", None]}, "unknown_backend", None),
        ({"preferred_backends": ["claude", ["codex"]]}, "unknown_backend", ["codex"]),
        ({"excluded_backends": "bogus"}, "unknown_backend", "bogus"),
        ({"fallback_backends": [1.5]}, "unknown_backend", 1.5),
        ({"fallback_backends": {"codex": 1}}, "unknown_backend", {"codex": 1}),
        ({"last_backend": "Codex"}, "unknown_backend", "Codex"),
        # capabilities
        ({"capabilities": "hooks"}, "invalid_route_request", "capabilities"),
        ({"capabilities": None}, "invalid_route_request", "capabilities"),
        ({"capabilities": {"hooks": True}}, "invalid_route_request", "capabilities"),
        ({"capabilities": ["hooks", "teleport"]}, "unknown_capability", "teleport"),
        ({"capabilities": ["hooks", None]}, "unknown_capability", None),
        ({"capabilities": [["hooks"]]}, "unknown_capability", ["hooks"]),
        # fallback policy, affinity key, profile id
        ({"fallback_policy": None}, "invalid_fallback_policy", None),
        ({"fallback_policy": "None"}, "invalid_fallback_policy", "None"),
        ({"affinity_key": ""}, "invalid_affinity_key", ""),
        ({"affinity_key": 7}, "invalid_affinity_key", 7),
        ({"affinity_key": ["k"]}, "invalid_affinity_key", ["k"]),
        ({"policy_profile_id": ""}, "invalid_route_request", "policy_profile_id"),
        ({"policy_profile_id": 3}, "invalid_route_request", "policy_profile_id"),
        # health
        ({"health": ["claude"]}, "invalid_route_request", ["health", ["claude"]]),
        ({"health": None}, "invalid_route_request", ["health", None]),
        ({"health": {"bogus": "down"}}, "unknown_backend", "bogus"),
        ({"health": {"claude": "sick"}}, "invalid_health_status", "sick"),
        ({"health": {"claude": None}}, "invalid_health_status", None),
        ({"health": {"claude": "sick", "bogus": "down"}}, "invalid_health_status", "sick"),
        ({"health": {"bogus": "down", "claude": "sick"}}, "unknown_backend", "bogus"),
        # selection
        ({"policy": "sticky"}, "invalid_route_request", "affinity_key_required"),
        ({"policy": "sticky", "affinity_key": None}, "invalid_route_request", "affinity_key_required"),
        ({"backend": "claude_code", "excluded_backends": ["claude"]}, "backend_not_eligible", "claude"),
        ({"backend": "gemini_cli", "health": {"gemini": "down"}}, "backend_not_eligible", "gemini"),
        (
            {
                "policy": "capability_first",
                "capabilities": ("hooks", "memory"),
                "excluded_backends": list(BACKENDS),
            },
            "no_backend_supports_capabilities",
            ["hooks", "memory"],
        ),
        ({"policy_profile_id": "deny-claude"}, "policy_denied", "claude backend blocked"),
        ({"policy_profile_id": "no-such-profile"}, "policy_denied", "unknown policy profile"),
        ({"policy_profile_id": "default-deny"}, "policy_denied", "denied by policy profile default"),
    ],
)
def test_error_codes_and_details(engine: RoutingEngine, request_: Any, code: str, detail: Any) -> None:
    error = error_of(lambda: engine.select_backend(request_))
    assert isinstance(error, ERROR_CLASSES[code])
    assert (error.code, error.detail) == (code, detail)


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


def test_absent_and_none_values_differ(engine: RoutingEngine) -> None:
    assert outcome(engine, {})["policy"] == "preferred_then_fallback"
    assert outcome(engine, {"policy": None}) == ("invalid_policy", None)
    assert outcome(engine, {"fallback_policy": None}) == ("invalid_fallback_policy", None)
    assert outcome(engine, {"preferred_backends": None}) == ("unknown_backend", None)
    # For these keys None means "none".
    for key in ("backend", "last_backend", "affinity_key", "policy_profile_id"):
        assert outcome(engine, {key: None}) == outcome(engine, {}), key


def test_default_policy_depends_on_backend(engine: RoutingEngine) -> None:
    assert engine.select_backend({"backend": "gemini_cli_client"}).to_dict() == {
        "backend": "gemini",
        "candidates": ["gemini"],
        "policy": "explicit",
        "reasons": ["selected explicit backend override"],
        "fallback_chain": [],
    }
    for no_backend in ({}, {"backend": None}, {"backend": "auto"}):
        assert engine.select_backend(no_backend).policy == "preferred_then_fallback"


@pytest.mark.parametrize(("canonical", "spellings"), sorted(ALIASES.items()))
def test_every_accepted_spelling_names_its_backend(
    engine: RoutingEngine, canonical: str, spellings: tuple[str, ...]
) -> None:
    for spelling in spellings:
        assert engine.select_backend({"backend": spelling}).backend == canonical
        assert engine.select_backend({"preferred_backends": spelling}).backend == canonical
        assert engine.select_backend({"policy": "failover", "last_backend": spelling}).backend != canonical


def test_lists_are_normalised_and_deduplicated(engine: RoutingEngine) -> None:
    decision = engine.select_backend(
        {
            "preferred_backends": ("gemini_cli", "gemini", "claude_code", "gemini_cli_client"),
            "fallback_backends": ["claude", "opencode_client", "opencode"],
            "fallback_policy": "none",
        }
    )
    assert decision.candidates == ("gemini", "claude", "opencode")
    event = engine.journal("routing_selected")[-1]
    assert event.payload["request"]["preferred_backends"] == ["gemini", "claude"]
    assert event.payload["request"]["fallback_backends"] == ["claude", "opencode"]


def test_bare_backend_names_are_wrapped(engine: RoutingEngine) -> None:
    assert engine.select_backend({"excluded_backends": "claude_agent_sdk"}).candidates == (
        "codex",
        "copilot",
        "gemini",
        "opencode",
    )


def test_capabilities_are_deduplicated_in_order(engine: RoutingEngine) -> None:
    decision = engine.select_backend(
        {"policy": "capability_first", "capabilities": ["memory", "hooks", "memory", "hooks"]}
    )
    assert decision.reasons == ("selected backend satisfying capabilities [memory,hooks]",)


def test_health_duplicate_spellings_later_entry_wins(engine: RoutingEngine) -> None:
    down_then_healthy = {"claude": "down", "claude_agent_sdk": "healthy"}
    healthy_then_down = {"claude_agent_sdk": "healthy", "claude": "down"}
    assert engine.select_backend({"health": down_then_healthy}).backend == "claude"
    assert engine.select_backend({"health": healthy_then_down}).backend == "codex"


def test_degraded_backends_stay_eligible(engine: RoutingEngine) -> None:
    request = {"backend": "codex", "health": {"codex": "degraded"}}
    assert engine.select_backend(request).backend == "codex"
    assert outcome(engine, {**request, "health": {"codex": "unhealthy"}}) == ("backend_not_eligible", "codex")


# --------------------------------------------------------------------------- policies


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


def test_route_decision_is_immutable(engine: RoutingEngine) -> None:
    decision = engine.select_backend({})
    assert isinstance(decision, RouteDecision)
    with pytest.raises(AttributeError):
        decision.backend = "codex"  # type: ignore[misc]
    assert isinstance(decision.candidates, tuple)


# --------------------------------------------------------------------------- sessions


def test_session_id_becomes_the_affinity_key(engine: RoutingEngine) -> None:
    decision = engine.select_backend("sess-1", {"policy": "sticky"})
    assert decision.affinity_key == "sess-1"
    override = engine.select_backend("sess-1", {"policy": "sticky", "affinity_key": "other"})
    assert override.affinity_key == "other"
    assert outcome(engine, "", {}) == ("invalid_route_request", "session_id")


def test_session_handle_supplies_last_backend(engine: RoutingEngine) -> None:
    handle = SessionHandle("s1", "claude")
    decision = engine.select_backend(handle, {"policy": "failover"})
    assert decision.backend == "codex"
    assert decision.reasons == ("skipped last backend and selected failover candidate",)
    own = engine.select_backend(handle, {"policy": "failover", "last_backend": "codex"})
    assert own.backend == "claude"


def test_session_options_routing_and_backend(engine: RoutingEngine) -> None:
    opts = {"routing": {"preferred_backends": ["gemini"]}, "model": "ignored"}
    assert engine.select_backend(opts, {}).backend == "gemini"
    explicit = engine.select_backend({"backend": "codex", "routing": {"policy": "sticky"}}, {})
    assert (explicit.backend, explicit.policy) == ("codex", "explicit")
    request_wins = engine.select_backend({"backend": "codex"}, {"policy": "round_robin"})
    assert request_wins.policy == "round_robin"
    assert engine.select_backend({"backend": "auto"}, {}).policy == "preferred_then_fallback"
    assert outcome(engine, {"routing": "nope"}, {}) == ("invalid_route_request", ["routing", "nope"])
    assert outcome(engine, {"routing": {"bad": 1}}, {}) == ("unsupported_route_key", "bad")


@pytest.mark.parametrize("session", [42, None, 1.5, ["s"], ("s",), b"s", object()])
def test_other_sessions_are_rejected(engine: RoutingEngine, session: object) -> None:
    assert outcome(engine, session, {}) == ("invalid_route_request", "session")


@pytest.mark.parametrize("request_", [None, "x", ["policy"], 3])
def test_session_request_must_be_a_mapping(engine: RoutingEngine, request_: object) -> None:
    assert outcome(engine, "sess", request_) == ("invalid_route_request", "request")


# --------------------------------------------------------------------------- bounded state


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


# --------------------------------------------------------------------------- journal

EVENT_ID = re.compile(r"^event_[0-9a-f]{16}$")


def test_success_journals_routing_selected_then_audit(engine: RoutingEngine) -> None:
    before = int(time.time() * 1000)
    decision = engine.select_backend(
        {
            "policy": "sticky",
            "affinity_key": "ws",
            "preferred_backends": ["codex_cli"],
            "health": {"gemini": "down"},
            "policy_profile_id": "team-a",
        }
    )
    after = int(time.time() * 1000)
    selected, audit = engine.journal()
    assert selected.event_type == "routing_selected"
    assert selected.tags == ("routing",)
    assert selected.payload == {
        "request": {
            "policy": "sticky",
            "affinity_key": "ws",
            "preferred_backends": ["codex"],
            "excluded_backends": [],
            "fallback_backends": [],
            "capabilities": [],
            "fallback_policy": "available",
        },
        "decision": decision.to_dict(),
    }
    assert audit.event_type == "audit"
    assert audit.tags == ("audit", "routing")
    assert audit.payload == {
        "category": "routing",
        "action": "decision",
        "decision": "allow",
        "backend": "codex",
        "policy": "sticky",
        "candidates": ["codex", "claude", "copilot", "opencode"],
        "fallback_chain": ["claude", "copilot", "opencode"],
        "reasons": ["selected backend and bound sticky affinity"],
        "profile_id": "team-a",
    }
    for event in (selected, audit):
        assert EVENT_ID.match(event.event_id)
        assert before <= event.timestamp <= after
    assert selected.sequence < audit.sequence
    assert selected.event_id != audit.event_id


def test_journal_request_lists_every_set_field(engine: RoutingEngine) -> None:
    engine.select_backend(
        {
            "backend": "codex_app_server",
            "last_backend": "gemini",
            "capabilities": ("memory",),
            "fallback_policy": "none",
        }
    )
    assert engine.journal("routing_selected")[-1].payload["request"] == {
        "policy": "explicit",
        "backend": "codex",
        "last_backend": "gemini",
        "preferred_backends": [],
        "excluded_backends": [],
        "fallback_backends": [],
        "capabilities": ["memory"],
        "fallback_policy": "none",
    }


def test_deny_journals_only_an_audit_event(engine: RoutingEngine) -> None:
    with pytest.raises(PolicyDenied):
        engine.select_backend({"policy_profile_id": "deny-claude"})
    (audit,) = engine.journal()
    assert audit.event_type == "audit"
    assert audit.payload == {
        "category": "routing",
        "action": "decision",
        "decision": "deny",
        "reason": "claude backend blocked",
        "backend": "claude",
        "policy": "preferred_then_fallback",
        "candidates": list(BACKENDS),
        "fallback_chain": list(BACKENDS[1:]),
        "reasons": ["selected first eligible backend"],
        "profile_id": "deny-claude",
    }


def test_failed_requests_journal_nothing(engine: RoutingEngine) -> None:
    for bad in ({"bogus": 1}, {"policy": "sticky"}, {"excluded_backends": list(BACKENDS)}, {"backend": "x"}):
        with pytest.raises(RoutingError):
            engine.select_backend(bad)
    assert engine.journal() == []


def test_journal_sequence_ids_filter_and_limit(engine: RoutingEngine) -> None:
    for _ in range(3):
        engine.select_backend(RR)
    with pytest.raises(PolicyDenied):
        engine.select_backend({"policy_profile_id": "default-deny"})
    events = engine.journal()
    assert [e.event_type for e in events] == ["routing_selected", "audit"] * 3 + ["audit"]
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences))
    assert len({e.event_id for e in events}) == len(events)
    assert all(EVENT_ID.match(e.event_id) for e in events)
    audits = engine.journal(event_type="audit")
    assert [e.sequence for e in audits] == [e.sequence for e in events if e.event_type == "audit"]
    assert (
        engine.journal(event_type="routing_selected", limit=2)
        == [e for e in events if e.event_type == "routing_selected"][-2:]
    )
    assert engine.journal(limit=1) == events[-1:]
    assert engine.journal(event_type="nothing") == []
    json.dumps([e.to_dict() for e in events])


def test_journal_is_a_bounded_ring() -> None:
    engine = RoutingEngine(journal_size=5)
    for _ in range(4):
        engine.select_backend(RR)
    events = engine.journal()
    assert len(events) == 5
    assert [e.sequence for e in events] == list(range(events[0].sequence, events[0].sequence + 5))
    assert events[-1].payload["backend"] == "gemini"  # the newest events are kept


def test_journal_event_to_dict(engine: RoutingEngine) -> None:
    engine.select_backend({})
    event = engine.journal()[0]
    data = event.to_dict()
    assert set(data) == {"event_id", "sequence", "timestamp", "event_type", "tags", "payload"}
    assert data["tags"] == ["routing"]
    assert json.loads(json.dumps(data)) == data


# --------------------------------------------------------------------------- policy profiles


def deny_when(match: Any, **rule: Any) -> dict[str, Any]:
    return {"rules": [{"action": "backend", "decision": "deny", "match": match, "reason": "matched", **rule}]}


def denied(engine: RoutingEngine, profile: Mapping[str, Any], request: Mapping[str, Any]) -> str | None:
    """Store ``profile`` as "p" and return the deny reason for ``request`` (None when allowed)."""
    engine.put_policy_profile("p", profile)
    try:
        engine.select_backend({**request, "policy_profile_id": "p"})
    except PolicyDenied as exc:
        assert isinstance(exc.detail, str)
        return exc.detail
    return None


@pytest.mark.parametrize(
    ("match", "request_", "matched"),
    [
        ("*", {}, True),
        (["exists", ["request", "affinity_key"]], {"affinity_key": "k"}, True),
        (["exists", ["request", "affinity_key"]], {}, False),
        (["exists", ["request", "no", "such", "path"]], {}, False),
        (["exists", "backend"], {}, True),
        (["eq", "backend", "codex"], {"backend": "codex_cli"}, True),
        (["eq", "backend", "codex"], {}, False),
        (["eq", ["decision", "policy"], "round_robin"], RR, True),
        (["eq", ["request", "policy"], "round_robin"], {}, False),
        (["eq", ["request", "missing"], None], {}, True),
        (["eq", ["request", "capabilities"], ["memory"]], {"capabilities": ("memory",)}, True),
        (["member", "backend", ["gemini", "claude"]], {}, True),
        (["member", "backend", ["gemini", "codex"]], {}, False),
        (["member", ["request", "last_backend"], ["gemini"]], {"last_backend": "gemini_cli"}, True),
        (["prefix", ["request", "affinity_key"], "tenant-"], {"affinity_key": "tenant-7"}, True),
        (["prefix", ["request", "affinity_key"], "tenant-"], {"affinity_key": "other-7"}, False),
        (["prefix", ["request", "affinity_key"], "tenant-"], {}, False),
        (["path_prefix", ["request", "affinity_key"], "C:\\work\\"], {"affinity_key": "C:/work/repo"}, True),
        (["path_prefix", ["request", "affinity_key"], "C:/work"], {"affinity_key": "C:\\work\\repo"}, True),
        (["path_prefix", ["request", "affinity_key"], "C:/work/"], {"affinity_key": "D:\\work\\repo"}, False),
        (["prefix", ["request", "affinity_key"], "C:/work"], {"affinity_key": "C:\\work\\repo"}, False),
    ],
)
def test_profile_match_forms(
    engine: RoutingEngine, match: Any, request_: dict[str, Any], matched: bool
) -> None:
    assert denied(engine, deny_when(match), request_) == ("matched" if matched else None)


def test_profile_rule_defaults(engine: RoutingEngine) -> None:
    assert denied(engine, {"rules": [{}]}, {}) == "denied by policy profile"
    assert denied(engine, {"rules": [{"decision": "allow"}], "default": "deny"}, {}) is None


def test_profile_rules_for_other_actions_are_skipped(engine: RoutingEngine) -> None:
    assert denied(engine, deny_when("*", action="tool_use"), {}) is None
    assert denied(engine, deny_when("*", action="*"), {}) == "matched"
    assert denied(engine, deny_when("*", action="backend"), {}) == "matched"


def test_profile_deny_rules_win_over_allow_rules(engine: RoutingEngine) -> None:
    profile = {
        "default": "allow",
        "rules": [
            {"decision": "allow", "match": ["eq", "backend", "claude"]},
            {"decision": "deny", "match": "*", "reason": "everything"},
        ],
    }
    assert denied(engine, profile, {}) == "everything"


def test_profile_default_deny_with_allow_rules(engine: RoutingEngine) -> None:
    profile = {"default": "deny", "rules": [{"decision": "allow", "match": ["eq", "backend", "codex"]}]}
    assert denied(engine, profile, {"backend": "codex"}) is None
    assert denied(engine, profile, {"backend": "claude"}) == "denied by policy profile default"


def test_profiles_can_be_replaced_and_deleted(engine: RoutingEngine) -> None:
    engine.put_policy_profile("p", {"default": "deny"})
    assert outcome(engine, {"policy_profile_id": "p"}) == (
        "policy_denied",
        "denied by policy profile default",
    )
    engine.put_policy_profile("p", {"default": "allow"})
    assert outcome(engine, {"policy_profile_id": "p"})["policy_profile_id"] == "p"
    engine.delete_policy_profile("p")
    assert outcome(engine, {"policy_profile_id": "p"}) == ("policy_denied", "unknown policy profile")
    engine.delete_policy_profile("p")  # deleting twice is harmless


@pytest.mark.parametrize(
    "profile",
    [
        None,
        "allow",
        ["default", "allow"],
        {"default": "maybe"},
        {"default": None},
        {"default": True},
        {"colour": "red"},
        {"rules": "deny everything"},
        {"rules": {"decision": "deny"}},
        {"rules": ["deny"]},
        {"rules": [{"verdict": "deny"}]},
        {"rules": [{"decision": "perhaps"}]},
        {"rules": [{"decision": None}]},
        {"rules": [{"action": 5}]},
        {"rules": [{"action": ""}]},
        {"rules": [{"reason": 5}]},
        {"rules": [{"match": "everything"}]},
        {"rules": [{"match": []}]},
        {"rules": [{"match": ["like", "backend", "c%"]}]},
        {"rules": [{"match": ["eq", "backend"]}]},
        {"rules": [{"match": ["exists", "backend", "extra"]}]},
        {"rules": [{"match": ["member", "backend", "claude"]}]},
        {"rules": [{"match": ["prefix", "backend", 5]}]},
        {"rules": [{"match": ["path_prefix", "backend", None]}]},
        {"rules": [{"match": ["eq", 5, "claude"]}]},
        {"rules": [{"match": ["eq", [], "claude"]}]},
        {"rules": [{"match": ["eq", ["request", 1], "claude"]}]},
        {"rules": [{"match": ["eq", "backend", object()]}]},
    ],
)
def test_malformed_profiles_are_rejected_when_stored(engine: RoutingEngine, profile: Any) -> None:
    engine.put_policy_profile("p", {"default": "deny"})
    error = error_of(lambda: engine.put_policy_profile("p", profile))
    assert isinstance(error, InvalidPolicyProfile)
    assert error.code == "invalid_policy_profile"
    assert isinstance(error.detail, str) and error.detail
    # the previous profile is still in force
    assert outcome(engine, {"policy_profile_id": "p"}) == (
        "policy_denied",
        "denied by policy profile default",
    )


@pytest.mark.parametrize("profile_id", ["", None, 5])
def test_profile_ids_must_be_non_empty_strings(engine: RoutingEngine, profile_id: Any) -> None:
    error = error_of(lambda: engine.put_policy_profile(profile_id, {}))
    assert isinstance(error, InvalidPolicyProfile)


def test_round_robin_counter_stays_advanced_after_a_deny(engine: RoutingEngine) -> None:
    assert outcome(engine, {**RR, "policy_profile_id": "deny-claude"}) == (
        "policy_denied",
        "claude backend blocked",
    )
    assert engine.select_backend(RR).backend == "codex"


def test_denied_sticky_decision_stores_no_binding(engine: RoutingEngine) -> None:
    sticky = {"policy": "sticky", "affinity_key": "ws"}
    assert outcome(engine, {**sticky, "policy_profile_id": "deny-claude"}) == (
        "policy_denied",
        "claude backend blocked",
    )
    decision = engine.select_backend(sticky)
    assert (decision.backend, decision.reasons) == ("codex", ("selected backend and bound sticky affinity",))
    # A deny of a reuse keeps the earlier binding.
    assert outcome(engine, {**sticky, "policy_profile_id": "deny-codex"}) == (
        "policy_denied",
        "codex backend blocked",
    )
    assert engine.select_backend(sticky).reasons == ("reused sticky affinity backend",)


def test_profile_context_decision_sees_the_final_candidates(engine: RoutingEngine) -> None:
    profile = deny_when(["eq", ["decision", "fallback_chain"], ["codex"]])
    request = {"preferred_backends": ["claude", "codex"], "fallback_policy": "none"}
    assert denied(engine, profile, request) == "matched"
    assert (
        denied(engine, profile, {"preferred_backends": ["claude", "gemini"], "fallback_policy": "none"})
        is None
    )


# --------------------------------------------------------------------------- catalogue


def test_default_catalogue() -> None:
    catalog = Catalog.default()
    assert catalog.backends == BACKENDS
    assert catalog.capabilities == ALL_CAPABILITIES
    assert len(catalog.capabilities) == 24
    expected_aliases = {spelling: name for name, spellings in ALIASES.items() for spelling in spellings}
    assert dict(catalog.aliases) == expected_aliases
    for backend in BACKENDS:
        assert catalog.supported(backend) == frozenset(ALL_CAPABILITIES)
        assert catalog.canonical(backend) == backend
    assert catalog.canonical("Claude") is None
    assert catalog.canonical("auto") is None
    assert catalog.canonical(["claude"]) is None
    assert Catalog.default() is Catalog.default()


def test_catalogue_is_immutable() -> None:
    catalog = Catalog.default()
    with pytest.raises(AttributeError):
        catalog._backends = ("x",)
    with pytest.raises(TypeError):
        catalog.aliases["new"] = "claude"  # type: ignore[index]
    assert isinstance(catalog.backends, tuple) and isinstance(catalog.capabilities, tuple)
    assert catalog.backends == BACKENDS


def test_with_support_derives_a_new_catalogue() -> None:
    catalog = Catalog.default()
    derived = catalog.with_support("codex_cli", "hooks", False)
    assert not derived.supports("codex", "hooks")
    assert catalog.supports("codex", "hooks")
    assert derived != catalog
    assert derived.with_support("codex", "hooks", True) == catalog
    engine = RoutingEngine(derived)
    assert outcome(engine, {"backend": "codex", "capabilities": ["hooks"]}) == (
        "backend_not_eligible",
        "codex",
    )
    assert engine.select_backend({"backend": "codex", "capabilities": ["memory"]}).backend == "codex"
    with pytest.raises(CatalogError):
        catalog.with_support("bogus", "hooks", True)
    with pytest.raises(CatalogError):
        catalog.with_support("codex", "teleport", True)


def test_a_custom_catalogue_is_routable() -> None:
    catalog = Catalog([BackendSpec("alpha", aliases=("a1",)), BackendSpec("beta", capabilities=("hooks",))])
    engine = RoutingEngine(catalog)
    assert engine.select_backend({"backend": "a1"}).backend == "alpha"
    assert engine.select_backend({}).candidates == ("alpha", "beta")
    assert outcome(engine, {"backend": "claude"}) == ("unknown_backend", "claude")
    # beta supports only hooks; alpha supports every capability
    assert engine.select_backend({"policy": "capability_first", "capabilities": ["memory"]}).candidates == (
        "alpha",
    )
    assert engine.select_backend({"excluded_backends": ["a1"], "capabilities": ["hooks"]}).backend == "beta"
    assert outcome(engine, {"backend": "beta", "capabilities": ["memory"]}) == (
        "backend_not_eligible",
        "beta",
    )
    assert backends(engine, RR, 3) == ["alpha", "beta", "alpha"]
    sticky = engine.select_backend({"policy": "sticky", "affinity_key": "k", "health": {"a1": "down"}})
    assert sticky.backend == "beta"
    assert engine.select_backend({"policy": "sticky", "affinity_key": "k"}).backend == "beta"


def test_catalogue_capability_ids_are_its_own() -> None:
    catalog = Catalog([BackendSpec("x", capabilities=("fly",))], capabilities=("fly", "swim"))
    engine = RoutingEngine(catalog)
    assert engine.select_backend({"capabilities": ["fly"]}).backend == "x"
    assert outcome(engine, {"capabilities": ["swim"]})[0] == "no_backend_available"
    assert outcome(engine, {"capabilities": ["hooks"]}) == ("unknown_capability", "hooks")


@pytest.mark.parametrize(
    ("backends_", "capabilities"),
    [
        ([], ALL_CAPABILITIES),
        ([BackendSpec("a"), BackendSpec("a")], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("b",)), BackendSpec("b")], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("x",)), BackendSpec("b", aliases=("x",))], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("x", "x"))], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("",))], ALL_CAPABILITIES),
        ([BackendSpec("auto")], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("auto",))], ALL_CAPABILITIES),
        ([BackendSpec("")], ALL_CAPABILITIES),
        ([BackendSpec("a", capabilities=("teleport",))], ALL_CAPABILITIES),
        ([BackendSpec("a")], ("x", "x")),
        ([BackendSpec("a")], "hooks"),
        ("alpha", ALL_CAPABILITIES),
    ],
)
def test_malformed_catalogues_raise_catalog_error(backends_: Any, capabilities: Any) -> None:
    with pytest.raises(CatalogError):
        Catalog(backends_, capabilities)


def test_catalogue_dict_round_trip() -> None:
    catalog = Catalog([BackendSpec("alpha", aliases=("a1",)), BackendSpec("beta", capabilities=("hooks",))])
    assert Catalog.from_dict(catalog.to_dict()) == catalog
    assert Catalog.from_dict(Catalog.default().to_dict()) == Catalog.default()
    with pytest.raises(CatalogError):
        Catalog.from_dict({"backends": [{"name": "a", "colour": "red"}]})


def test_backend_spec_is_frozen() -> None:
    spec = BackendSpec("alpha", aliases=("a1",))
    with pytest.raises(AttributeError):
        spec.name = "beta"  # type: ignore[misc]
    assert msgspec.structs.asdict(spec) == {"name": "alpha", "aliases": ("a1",), "capabilities": None}
