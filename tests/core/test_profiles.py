"""Policy profiles (routing.md section 8): match forms, rule defaults and precedence,
validation when stored, and what a deny leaves behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from beamrouting import InvalidPolicyProfile, PolicyDenied, RoutingEngine
from tests.core._support import RR, error_of, outcome


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
