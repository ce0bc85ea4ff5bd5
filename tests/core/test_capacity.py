"""Capacity on the engine: live sessions against per-backend limits, admission with
selection, ``at_capacity`` errors, the ``least_loaded`` policy and bad limits.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from beamrouting import (
    BackendAtCapacity,
    BackendNotEligible,
    Catalog,
    NoBackendAvailable,
    RoutingEngine,
)
from tests._edges import engine_error
from tests._helpers import BACKENDS, FakeClock
from tests._learning import reasons_in, state_of

LEAST = {"policy": "least_loaded"}


def fill(engine: RoutingEngine, backend: str, count: int, prefix: str | None = None) -> list[str]:
    ids = [f"{prefix or backend}-{i}" for i in range(count)]
    for session_id in ids:
        engine.register_session(session_id, backend)
    return ids


def live(engine: RoutingEngine) -> dict[str, int]:
    return {s.backend: s.live_sessions for s in engine.backend_states() if s.live_sessions}


# --------------------------------------------------------------------------- live sessions


def test_backend_states_report_live_sessions_and_limits() -> None:
    engine = RoutingEngine(limits={"claude_code": 10, "gemini": 3})
    states = engine.backend_states()
    assert [(s.backend, s.live_sessions, s.limit) for s in states] == [
        ("claude", 0, 10),
        ("codex", 0, None),
        ("copilot", 0, None),
        ("gemini", 0, 3),
        ("opencode", 0, None),
    ]
    fill(engine, "claude", 2)
    engine.register_session("x", "codex_cli")
    assert live(engine) == {"claude": 2, "codex": 1}
    assert state_of(engine.backend_states(), "claude").limit == 10


def test_live_sessions_are_those_registered_and_not_unregistered() -> None:
    engine = RoutingEngine()
    fill(engine, "claude", 3)
    engine.unregister_session("claude-1")
    engine.unregister_session("claude-1")  # twice: still one fewer
    engine.unregister_session("never-registered")
    assert live(engine) == {"claude": 2}
    engine.register_session("claude-0", "codex")  # moves to codex
    assert live(engine) == {"claude": 1, "codex": 1}
    engine.register_session("claude-0", "codex")  # a heartbeat: no change
    assert live(engine) == {"claude": 1, "codex": 1}


def test_select_and_register_counts_the_session_on_the_chosen_backend() -> None:
    engine = RoutingEngine(limits={"claude": 10})
    decision = engine.select_and_register(engine.normalize({}), "s1", {"user": "u"})
    assert decision.backend == "claude"
    assert live(engine) == {"claude": 1}
    assert engine.sessions()[0].metadata == {"user": "u"}


# --------------------------------------------------------------------------- admission


def test_a_full_backend_is_ineligible_for_selection() -> None:
    engine = RoutingEngine(limits={"claude": 10})
    fill(engine, "claude", 9)
    assert engine.select_backend({}).backend == "claude"  # selecting alone takes no slot
    fill(engine, "claude", 1, prefix="last")
    assert engine.select_backend({}).backend == "codex"
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "claude"})
    explanation = engine.explain({})
    assert reasons_in(explanation, "claude") == ("at capacity 10/10",)
    assert explanation.eligible == ("codex", "copilot", "gemini", "opencode")


def test_unregistering_frees_a_slot() -> None:
    engine = RoutingEngine(limits={"claude": 1})
    engine.register_session("s1", "claude")
    assert engine.select_backend({}).backend == "codex"
    engine.unregister_session("s1")
    assert engine.select_backend({}).backend == "claude"
    engine.register_session("s2", "claude")


def test_admission_never_passes_the_limit() -> None:
    engine = RoutingEngine(limits={b: 2 for b in BACKENDS})
    request = engine.normalize({"policy": "round_robin"})
    for i in range(10):
        engine.select_and_register(request, f"s{i}", {})
    assert live(engine) == dict.fromkeys(BACKENDS, 2)
    with pytest.raises(NoBackendAvailable) as info:
        engine.select_and_register(request, "s10", {})
    assert info.value.detail["reason"] == "at_capacity"
    assert len(engine.sessions()) == 10


def test_registering_a_new_session_on_a_full_backend_raises_backend_at_capacity() -> None:
    engine = RoutingEngine(limits={"claude": 2})
    fill(engine, "claude", 2)
    with pytest.raises(BackendAtCapacity) as info:
        engine.register_session("s3", "claude")
    assert info.value.code == "backend_at_capacity"
    assert engine.session_backend("s3") is None
    assert live(engine) == {"claude": 2}


def test_moving_a_live_session_onto_a_full_backend_raises_and_keeps_it_where_it_was() -> None:
    engine = RoutingEngine(limits={"claude": 1})
    engine.register_session("s1", "claude")
    engine.register_session("s2", "codex")
    with pytest.raises(BackendAtCapacity):
        engine.register_session("s2", "claude")
    assert engine.session_backend("s2") == "codex"
    assert live(engine) == {"claude": 1, "codex": 1}


def test_re_registering_a_live_session_on_its_own_full_backend_never_counts_twice() -> None:
    engine = RoutingEngine(limits={"claude": 2})
    fill(engine, "claude", 2)
    for _ in range(3):
        engine.register_session("claude-0", "claude_code", {"beat": 1})
    assert live(engine) == {"claude": 2}
    assert [s.session_id for s in engine.sessions()] == ["claude-1", "claude-0"]


def test_a_sticky_key_bound_to_a_full_backend_keeps_its_binding_with_a_temporary_backend() -> None:
    engine = RoutingEngine(limits={"claude": 1})
    sticky = {"policy": "sticky", "affinity_key": "workspace"}
    assert engine.select_backend(sticky).backend == "claude"
    engine.register_session("s1", "claude")
    meanwhile = engine.select_backend(sticky)
    assert (meanwhile.backend, meanwhile.reasons) == (
        "codex",
        ("selected temporary backend while bound backend is out",),
    )
    assert engine.state.binding_entry("workspace") == ("claude", "codex")
    engine.unregister_session("s1")
    back = engine.select_backend(sticky)
    assert (back.backend, back.reasons) == ("claude", ("reused sticky affinity backend",))


def test_at_capacity_is_given_only_when_limits_emptied_the_set() -> None:
    clock = FakeClock()
    engine = RoutingEngine(limits={"claude": 1}, clock=clock)
    engine.register_session("s1", "claude")
    only_claude = {"excluded_backends": ["codex", "copilot", "gemini", "opencode"]}
    code, detail = engine_error(lambda: engine.select_backend(only_claude))
    assert code == "no_backend_available"
    assert detail["reason"] == "at_capacity"
    assert "retry_at" not in detail
    assert detail["eligible_backends"] == []
    _, detail = engine_error(lambda: engine.select_backend({"excluded_backends": list(BACKENDS)}))
    assert "reason" not in detail
    only_codex = {"excluded_backends": ["claude", "copilot", "gemini", "opencode"]}
    engine.report("codex", "quota", retry_after=60)
    _, detail = engine_error(lambda: engine.select_backend(only_codex))
    assert "reason" not in detail
    assert detail["retry_at"] == clock() + 60
    both = {"excluded_backends": ["copilot", "gemini", "opencode"]}
    _, detail = engine_error(lambda: engine.select_backend(both))
    assert (detail["reason"], detail["retry_at"]) == ("at_capacity", clock() + 60)


def test_a_full_backend_is_held_out_as_if_down() -> None:
    full = RoutingEngine(limits={"codex": 1})
    full.register_session("s1", "codex")
    marked = RoutingEngine()
    marked.register_session("s1", "codex")
    for request in (
        {"policy": "round_robin"},
        {"policy": "round_robin"},
        {"policy": "failover", "last_backend": "claude"},
        {"preferred_backends": ["codex", "gemini"]},
        {"policy": "capability_first", "capabilities": ["hooks"]},
    ):
        down: dict[str, Any] = {**request, "health": {"codex": "down"}}
        assert full.select_backend(request) == marked.select_backend(down), request


# --------------------------------------------------------------------------- least_loaded


def test_least_loaded_picks_the_backend_with_fewest_live_sessions() -> None:
    engine = RoutingEngine()
    for backend, count in (("claude", 3), ("codex", 1), ("copilot", 2), ("gemini", 1), ("opencode", 4)):
        fill(engine, backend, count)
    decision = engine.select_backend(LEAST)
    assert decision.backend in ("codex", "gemini")
    assert decision.reasons == ("selected least loaded backend",)
    assert decision.candidates[0] == decision.backend
    engine.register_session("extra", "codex")
    assert engine.select_backend(LEAST).backend == "gemini"


def test_least_loaded_rotates_among_equally_loaded_backends() -> None:
    engine = RoutingEngine()
    picks = [engine.select_backend(LEAST).backend for _ in range(10)]
    assert picks == [*BACKENDS, *BACKENDS]  # no sessions registered: all tie, in turn


def test_least_loaded_spreads_sessions_evenly() -> None:
    engine = RoutingEngine()
    request = engine.normalize(LEAST)
    counts = Counter(engine.select_and_register(request, f"s{i}", {}).backend for i in range(500))
    assert counts == dict.fromkeys(BACKENDS, 100)


def test_least_loaded_keeps_to_the_requests_candidates() -> None:
    engine = RoutingEngine()
    fill(engine, "gemini", 5)
    request = {**LEAST, "preferred_backends": ["gemini", "opencode"], "fallback_policy": "none"}
    assert [engine.select_backend(request).backend for _ in range(3)] == ["opencode"] * 3
    fill(engine, "opencode", 6)
    assert engine.select_backend(request).backend == "gemini"
    excluded = {**LEAST, "excluded_backends": ["claude", "codex"]}
    assert engine.select_backend(excluded).backend == "copilot"


def test_least_loaded_with_nothing_eligible_is_no_backend_available() -> None:
    engine = RoutingEngine()
    assert engine_error(lambda: engine.select_backend({**LEAST, "excluded_backends": list(BACKENDS)}))[0] == (
        "no_backend_available"
    )


def test_least_loaded_skips_full_backends() -> None:
    engine = RoutingEngine(limits={"claude": 1, "codex": 1})
    engine.register_session("s1", "claude")
    engine.register_session("s2", "codex")
    request = engine.normalize(LEAST)
    picks = [engine.select_and_register(request, f"n{i}", {}).backend for i in range(3)]
    assert picks == ["copilot", "gemini", "opencode"]


def test_explain_of_least_loaded_does_not_move_the_rotation() -> None:
    engine = RoutingEngine()
    for _ in range(3):
        explained = engine.explain(LEAST).decision
        assert explained is not None and explained.backend == "claude"
    assert engine.select_backend(LEAST).backend == "claude"
    assert engine.select_backend(LEAST).backend == "codex"


# --------------------------------------------------------------------------- bad limits


@pytest.mark.parametrize(
    ("limits", "error"),
    [
        ({"nope": 1}, ValueError),
        ({"claude": 0}, ValueError),
        ({"claude": -5}, ValueError),
        ({"claude": 1.5}, TypeError),
        ({"claude": "10"}, TypeError),
        ({"claude": True}, TypeError),
        ({"claude": None}, TypeError),
        ({"claude": 1, "claude_code": 2}, ValueError),
        ([("claude", 1)], TypeError),
        ("claude", TypeError),
    ],
)
def test_bad_limits_are_refused_at_construction(limits: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        RoutingEngine(limits=limits)


def test_limits_name_backends_of_a_custom_catalogue() -> None:
    catalog = Catalog(["alpha", "beta"])
    engine = RoutingEngine(catalog, limits={"beta": 1})
    engine.register_session("s1", "beta")
    assert engine.select_backend({"backend": None, "preferred_backends": ["beta"]}).backend == "alpha"
    with pytest.raises(ValueError):
        RoutingEngine(catalog, limits={"claude": 1})
