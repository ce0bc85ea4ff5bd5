"""Routing from a session: a session id, a SessionHandle or session options, merged with
the request.
"""

from __future__ import annotations

import pytest

from beamrouting import RoutingEngine, SessionHandle
from tests.core._support import outcome


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
