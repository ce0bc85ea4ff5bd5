"""Filtering policy profiles (``"mode": "filter"``): denied backends leave the candidates
before selection, so selection goes on among the rest. The reference's veto mode stays the
default.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from beamrouting import (
    InvalidPolicyProfile,
    PolicyDenied,
    PolicyProfile,
    RoutingEngine,
)
from beamrouting._core._profiles import parse_profile
from tests._edges import engine_error
from tests._helpers import BACKENDS, profiles_for_scenarios
from tests._learning import reasons_in

DENY_COPILOT_RULE = {
    "action": "backend",
    "decision": "deny",
    "match": ["eq", "backend", "copilot"],
    "reason": "copilot is not for team b",
}
TEAM_B = {"mode": "filter", "rules": [DENY_COPILOT_RULE]}
RR_B = {"policy": "round_robin", "policy_profile_id": "team-b"}


def make() -> RoutingEngine:
    engine = RoutingEngine()
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    engine.put_policy_profile("team-b", TEAM_B)
    return engine


def test_round_robin_with_a_filtering_profile_never_fails() -> None:
    engine = make()
    picks = [engine.select_backend(RR_B).backend for _ in range(40)]
    assert "copilot" not in picks
    assert picks[:4] == ["claude", "codex", "gemini", "opencode"]
    assert Counter(picks) == {"claude": 10, "codex": 10, "gemini": 10, "opencode": 10}


def test_a_veto_profile_fails_every_fifth_round_robin_call() -> None:
    engine = make()
    outcomes = []
    for _ in range(10):
        try:
            outcomes.append(
                engine.select_backend({"policy": "round_robin", "policy_profile_id": "deny-copilot"}).backend
            )
        except PolicyDenied as exc:
            outcomes.append(f"denied: {exc.detail}")
    assert outcomes == ["claude", "codex", "denied: copilot backend blocked", "gemini", "opencode"] * 2


def test_a_profile_without_mode_vetoes() -> None:
    engine = make()
    engine.put_policy_profile("veto-b", {"rules": [DENY_COPILOT_RULE]})
    assert engine.policy_profiles()["veto-b"].mode == "veto"
    assert engine_error(
        lambda: engine.select_backend({"backend": "copilot", "policy_profile_id": "veto-b"})
    ) == (
        "policy_denied",
        "copilot is not for team b",
    )
    request = {"preferred_backends": ["copilot"], "policy_profile_id": "veto-b"}
    assert engine_error(lambda: engine.select_backend(request))[0] == "policy_denied"
    request["policy_profile_id"] = "team-b"
    assert engine.select_backend(request).backend == "claude"  # filtered: the rest of the order


def test_explain_names_the_filtering_profile() -> None:
    engine = make()
    explanation = engine.explain(RR_B)
    assert reasons_in(explanation, "copilot") == ("denied by profile team-b",)
    assert "copilot" not in explanation.eligible
    assert explanation.decision is not None and explanation.decision.backend == "claude"


def test_a_filter_that_removes_every_candidate_denies_with_the_first_rules_reason() -> None:
    engine = make()
    engine.put_policy_profile(
        "nobody",
        {
            "mode": "filter",
            "rules": [
                {"match": ["member", "backend", ["codex", "claude"]], "reason": "first rule"},
                {"match": "*", "reason": "second rule"},
            ],
        },
    )
    assert engine_error(lambda: engine.select_backend({"policy_profile_id": "nobody"})) == (
        "policy_denied",
        "first rule",
    )
    request = {"policy_profile_id": "nobody", "excluded_backends": ["claude", "codex"]}
    assert engine_error(lambda: engine.select_backend(request)) == ("policy_denied", "second rule")
    explanation = engine.explain({"policy_profile_id": "nobody"})
    assert explanation.error == {"code": "policy_denied", "detail": "first rule"}


def test_a_filtering_default_deny_with_allow_rules_keeps_only_the_allowed() -> None:
    engine = make()
    engine.put_policy_profile(
        "gemini-only",
        {
            "mode": "filter",
            "default": "deny",
            "rules": [{"decision": "allow", "match": ["prefix", "backend", "gem"]}],
        },
    )
    for _ in range(3):
        assert (
            engine.select_backend({"policy": "round_robin", "policy_profile_id": "gemini-only"}).backend
            == "gemini"
        )
    assert engine_error(
        lambda: engine.select_backend({"backend": "claude", "policy_profile_id": "gemini-only"})
    ) == (
        "policy_denied",
        "denied by policy profile default",
    )


def test_an_explicit_backend_the_filter_denies_is_policy_denied() -> None:
    engine = make()
    assert engine_error(
        lambda: engine.select_backend({"backend": "copilot", "policy_profile_id": "team-b"})
    ) == (
        "policy_denied",
        "copilot is not for team b",
    )
    assert engine.select_backend({"backend": "codex", "policy_profile_id": "team-b"}).backend == "codex"


def test_a_filter_emptying_what_learning_left_denies() -> None:
    engine = make()
    engine.put_policy_profile(
        "only-claude",
        {
            "mode": "filter",
            "rules": [
                {
                    "match": ["member", "backend", ["codex", "copilot", "gemini", "opencode"]],
                    "reason": "claude only",
                }
            ],
        },
    )
    engine.report("claude", "quota", retry_after=60)
    code, detail = engine_error(lambda: engine.select_backend({"policy_profile_id": "only-claude"}))
    assert (code, detail) == ("policy_denied", "claude only")


def test_requests_without_the_profile_are_not_filtered() -> None:
    engine = make()
    picks = [engine.select_backend({"policy": "round_robin"}).backend for _ in range(5)]
    assert picks == list(BACKENDS)


def test_filtered_decisions_carry_the_profile_and_are_audited() -> None:
    engine = make()
    decision = engine.select_backend(RR_B)
    assert decision.policy_profile_id == "team-b"
    audit = engine.journal("audit")[-1].payload
    assert (audit["decision"], audit["profile_id"], audit["backend"]) == ("allow", "team-b", "claude")


def test_a_filtering_profile_with_sticky_keys() -> None:
    engine = make()
    request = {
        "policy": "sticky",
        "affinity_key": "w",
        "policy_profile_id": "team-b",
        "preferred_backends": ["copilot"],
    }
    first = engine.select_backend(request)
    assert first.backend == "claude"
    assert engine.select_backend(request).reasons == ("reused sticky affinity backend",)


# --------------------------------------------------------------------------- the profile value


def test_mode_round_trips_through_to_dict() -> None:
    engine = make()
    stored = engine.policy_profiles()["team-b"]
    assert stored.mode == "filter" and stored.filters
    data = stored.to_dict()
    assert data["mode"] == "filter"
    assert parse_profile(data) == stored
    veto = engine.policy_profiles()["deny-copilot"]
    assert veto.mode == "veto" and not veto.filters
    assert "mode" not in veto.to_dict()
    assert parse_profile(veto.to_dict()) == veto
    explicit_veto = parse_profile({"mode": "veto"})
    assert explicit_veto == PolicyProfile() and "mode" not in explicit_veto.to_dict()


@pytest.mark.parametrize("mode", ["Filter", "block", "", None, 1, ["filter"]])
def test_an_unknown_profile_mode_is_invalid(mode: Any) -> None:
    engine = make()
    with pytest.raises(InvalidPolicyProfile):
        engine.put_policy_profile("bad", {"mode": mode})
    assert "bad" not in engine.policy_profiles()


def test_deleting_the_last_filtering_profile_stops_filtering() -> None:
    engine = make()
    assert engine.delete_policy_profile("team-b") is True
    assert engine_error(lambda: engine.select_backend(RR_B)) == ("policy_denied", "unknown policy profile")
    engine.put_policy_profile("team-b", {"rules": [DENY_COPILOT_RULE]})  # now a veto profile
    outcomes = []
    for _ in range(5):
        try:
            outcomes.append(engine.select_backend(RR_B).backend)
        except PolicyDenied:
            outcomes.append("denied")
    # The deny of the unknown profile advanced the counter, as a deny does.
    assert outcomes == ["codex", "denied", "gemini", "opencode", "claude"]
