"""The request normaliser (routing.md section 3): validation order, every error code and
detail, accepted spellings and forms, and normalised lists.
"""

from __future__ import annotations

import copy
from collections import UserString
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beamrouting import FallbackPolicy, Health, Policy, RequestNormalizer, RoutingEngine, RoutingError
from tests._helpers import BACKENDS
from tests._strategies import requests
from tests.core._support import ALIASES, ERROR_CLASSES, error_of, outcome


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


# -- one request dict routed again --------------------------------------------------------------


def _normalized_or_error(normalizer: RequestNormalizer, request: dict[str, Any]) -> Any:
    try:
        return normalizer.normalize(request)
    except RoutingError as exc:
        return (exc.code, exc.detail)


def test_a_request_dict_changed_in_place_routes_its_new_contents(engine: RoutingEngine) -> None:
    request: dict[str, Any] = {"preferred_backends": ["gemini"], "health": {"codex": "down"}}
    assert engine.select_backend(request).backend == "gemini"
    request["preferred_backends"].append("codex")  # the same list, one entry longer
    request["preferred_backends"][0] = "opencode"
    assert engine.select_backend(request).candidates[0] == "opencode"
    request["health"]["opencode"] = "down"  # the same mapping, one entry more
    assert engine.select_backend(request).backend == "claude"
    request["affinity_key"] = "k1"
    request["policy"] = "sticky"
    assert engine.select_backend(request).backend == "claude"


def test_a_request_dict_whose_health_entries_swap_order_routes_the_later_spelling(
    engine: RoutingEngine,
) -> None:
    request: dict[str, Any] = {"health": {"claude": "down", "claude_agent_sdk": "healthy"}}
    assert engine.select_backend(request).backend == "claude"
    request["health"] = {"claude_agent_sdk": "healthy", "claude": "down"}  # equal, but in another order
    assert engine.select_backend(request).backend == "codex"


class _BackendList(list[str]):
    """A list subclass: not a list of backends to the normaliser, whatever it holds."""


def test_a_value_replaced_by_an_equal_one_of_another_type_routes_as_that_type(engine: RoutingEngine) -> None:
    request: dict[str, Any] = {"preferred_backends": ["gemini"]}
    assert engine.select_backend(request).backend == "gemini"
    request["preferred_backends"] = _BackendList(["gemini"])  # equal to the list it replaces
    assert outcome(engine, request) == outcome(RoutingEngine(), request)
    request["preferred_backends"] = ("gemini",)  # a tuple is a list of backends, and not equal to one
    assert engine.select_backend(request).backend == "gemini"


class _EqualsAnything(str):
    """A str that claims to equal every value, and whose comparison may fail."""

    fail = False

    def __eq__(self, other: object) -> bool:
        if self.fail:
            raise RuntimeError("eq")
        return True

    __hash__ = str.__hash__


class _OwnHash(str):
    def __hash__(self) -> int:
        return 0


def _claims_equality() -> list[Any]:
    liar = _EqualsAnything("codex")
    failing = _EqualsAnything("codex")
    failing.fail = True
    return [liar, failing, mock.ANY, UserString("gemini"), _OwnHash("gemini"), Health.HEALTHY]


@pytest.mark.parametrize("value", _claims_equality(), ids=lambda value: type(value).__name__)
@pytest.mark.parametrize(
    ("first", "place"),
    [
        ({"backend": "gemini"}, lambda request, value: request.__setitem__("backend", value)),
        ({"backend": "auto"}, lambda request, value: request.__setitem__("backend", value)),
        (
            {"preferred_backends": ["gemini"]},
            lambda request, value: request["preferred_backends"].__setitem__(0, value),
        ),
        (
            {"health": {"gemini": "down"}},
            lambda request, value: request["health"].__setitem__("gemini", value),
        ),
        ({"policy": "sticky"}, lambda request, value: request.__setitem__("policy", value)),
    ],
    ids=["backend", "auto", "list entry", "health status", "policy"],
)
def test_a_value_equal_to_what_it_replaced_but_not_plain_routes_as_a_fresh_engine_routes_it(
    first: dict[str, Any], place: Any, value: Any
) -> None:
    engine = RoutingEngine()
    request = copy.deepcopy(first)
    outcome(engine, request)
    place(request, value)
    assert outcome(engine, request) == outcome(RoutingEngine(), request)


def test_a_new_dict_at_a_freed_ones_address_routes_as_itself() -> None:
    engine = RoutingEngine()
    fresh = RoutingEngine()
    for value in ["gemini", mock.ANY, "auto", UserString("auto"), "codex", _OwnHash("codex")] * 10:
        # A new dict each time, freed at once: CPython reuses the address of the one before.
        assert outcome(engine, {"backend": value}) == outcome(fresh, {"backend": value})


@settings(max_examples=150)
@given(st.lists(requests(profiles=False), min_size=2, max_size=6), st.data())
def test_one_dict_refilled_normalises_as_a_fresh_copy_would(
    contents: list[dict[str, Any]], data: st.DataObject
) -> None:
    """A dict routed, then changed (in place, nested lists and mappings included), normalises as its copy."""
    normalizer = RoutingEngine().normalizer
    request: dict[str, Any] = {}
    for new in contents:
        if data.draw(st.booleans(), label="change nested values in place"):
            for name, value in new.items():
                old = request.get(name)
                if type(old) is list and type(value) is list:
                    old[:] = value
                elif type(old) is dict and type(value) is dict:
                    old.clear()
                    old.update(value)
                else:
                    request[name] = copy.copy(value)
            for name in set(request) - set(new):
                del request[name]
        else:
            request.clear()
            request.update(copy.deepcopy(new))
        fresh = RequestNormalizer(normalizer.catalog, normalizer.limits)
        expected = _normalized_or_error(fresh, copy.deepcopy(request))
        assert _normalized_or_error(normalizer, request) == expected
