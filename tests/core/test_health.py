"""Routing that learns from reported outcomes, on the engine: quota cooldowns, ejections,
probes, eligibility, retry hints, sticky keys through outages, the journal and bad input.

Time moves only through an injected clock (``FakeClock``); nothing sleeps.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from beamrouting import (
    BackendNotEligible,
    BackendStatus,
    HealthPolicy,
    InvalidRouteRequest,
    NoBackendAvailable,
    Outcome,
    RoutingEngine,
    RoutingError,
    Subscription,
    SubscriptionGap,
    UnknownBackend,
)
from tests._edges import HostileObject, engine_error
from tests._helpers import BACKENDS, FakeClock, profiles_for_scenarios
from tests._learning import START, at, mixed_requests, reasons_in, state_of

STICKY = {"policy": "sticky", "affinity_key": "workspace"}
TEMPORARY = ("selected temporary backend while bound backend is out",)
REUSED = ("reused sticky affinity backend",)
BOUND = ("selected backend and bound sticky affinity",)


def make(clock: FakeClock | None = None, **options: Any) -> RoutingEngine:
    engine = RoutingEngine(clock=clock or FakeClock(), **options)
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    return engine


def status(engine: RoutingEngine, backend: str) -> BackendStatus:
    return state_of(engine.backend_states(), backend).status


def outcome_of(engine: RoutingEngine, request: Any) -> Any:
    try:
        return engine.select_backend(request).to_dict()
    except RoutingError as exc:
        return exc.to_dict()


def eject(engine: RoutingEngine, backend: str, failures: int = 5) -> None:
    for _ in range(failures):
        engine.report(backend, "failure")


def health_events(engine: RoutingEngine) -> list[dict[str, Any]]:
    return [e.payload for e in engine.journal("backend_health")]


# --------------------------------------------------------------------------- no report, no change


def test_learning_on_and_off_make_the_same_decisions_without_reports() -> None:
    learning, plain = make(), make(health=None)
    learning.register_session("s1", "gemini")
    plain.register_session("s1", "gemini")
    for request in mixed_requests(400):
        assert outcome_of(learning, request) == outcome_of(plain, request), request
    assert learning.state.ledgers == {}
    strip = [(e.event_type, e.payload) for e in learning.journal()]
    assert strip == [(e.event_type, e.payload) for e in plain.journal()]


def test_with_learning_off_a_report_is_journaled_and_changes_nothing() -> None:
    engine = make(health=None)
    state = engine.report("claude", "quota", retry_at=at(17))
    assert (state.status, state.until) == (BackendStatus.HEALTHY, None)
    eject(engine, "codex")
    assert engine.select_backend({"backend": "codex"}).backend == "codex"
    assert engine.select_backend({}).backend == "claude"
    outcomes = [e.payload for e in engine.journal("outcome")]
    assert outcomes[0] == {"backend": "claude", "outcome": "quota", "retry_at": at(17)}
    assert len(outcomes) == 6
    assert health_events(engine) == []


# --------------------------------------------------------------------------- quota


def test_quota_cools_a_backend_until_retry_at() -> None:
    clock = FakeClock()
    engine = make(clock)
    state = engine.report("claude", "quota", retry_at=at(17))
    assert (state.status, state.until, state.reason) == (BackendStatus.COOLING, at(17), "quota")
    assert state.consecutive_failures == 0 and state.ejections == 0
    assert engine.select_backend({}).backend == "codex"
    clock.set(at(16, 59, 59))
    assert engine.select_backend({}).backend == "codex"
    clock.set(at(17))
    assert engine.select_backend({}).backend == "claude"
    assert status(engine, "claude") is BackendStatus.HEALTHY


def test_quota_with_retry_after_cools_for_that_many_seconds() -> None:
    clock = FakeClock()
    engine = make(clock)
    state = engine.report("codex", "quota", retry_after=90)
    assert (state.status, state.until) == (BackendStatus.COOLING, START + 90)
    clock.advance(89)
    assert status(engine, "codex") is BackendStatus.COOLING
    clock.advance(1)
    assert status(engine, "codex") is BackendStatus.HEALTHY


def test_quota_without_a_reset_time_cools_for_base_ejection() -> None:
    engine = make(health=HealthPolicy(base_ejection=12.5))
    state = engine.report("gemini", Outcome.QUOTA)
    assert (state.status, state.until) == (BackendStatus.COOLING, START + 12.5)


def test_a_later_quota_report_only_extends_the_cooldown() -> None:
    engine = make()
    engine.report("claude", "quota", retry_at=at(17))
    assert engine.report("claude", "quota", retry_at=at(16, 30)).until == at(17)  # earlier: ignored
    assert engine.report("claude", "quota", retry_after=10).until == at(17)
    assert engine.report("claude", "quota", retry_at=at(18)).until == at(18)


def test_a_success_does_not_end_a_cooldown() -> None:
    engine = make()
    engine.report("claude", "quota", retry_at=at(17))
    state = engine.report("claude", "success")
    assert (state.status, state.until) == (BackendStatus.COOLING, at(17))
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "claude"})


def test_restore_ends_a_cooldown_at_once() -> None:
    engine = make()
    engine.report("claude", "quota", retry_at=at(17))
    state = engine.restore("claude_code")
    assert (state.backend, state.status, state.until) == ("claude", BackendStatus.HEALTHY, None)
    assert engine.select_backend({}).backend == "claude"
    assert engine.state.ledgers == {}


def test_a_quota_in_the_past_changes_no_status() -> None:
    engine = make()
    state = engine.report("claude", "quota", retry_at=at(15))
    assert state.status is BackendStatus.HEALTHY
    assert engine.select_backend({}).backend == "claude"


# --------------------------------------------------------------------------- failures


def test_consecutive_failures_eject_at_the_threshold() -> None:
    engine = make()
    for count in range(1, 5):
        state = engine.report("codex", "failure")
        assert (state.status, state.consecutive_failures) == (BackendStatus.HEALTHY, count)
    state = engine.report("codex", "failure")
    assert state.status is BackendStatus.EJECTED
    assert (state.until, state.ejections, state.consecutive_failures) == (START + 30, 1, 5)
    assert state.reason == "ejected after 5 consecutive failures"
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "codex"})


def test_the_threshold_is_configurable() -> None:
    engine = make(health=HealthPolicy(failure_threshold=2, base_ejection=5))
    engine.report("codex", "failure")
    state = engine.report("codex", "failure")
    assert (state.status, state.until) == (BackendStatus.EJECTED, START + 5)


def test_a_success_resets_the_failure_count() -> None:
    engine = make()
    eject(engine, "codex", 4)
    assert engine.report("codex", "success").consecutive_failures == 0
    eject(engine, "codex", 4)
    assert status(engine, "codex") is BackendStatus.HEALTHY
    assert engine.report("codex", "failure").status is BackendStatus.EJECTED


def test_rejected_changes_nothing() -> None:
    engine = make()
    eject(engine, "codex", 4)
    before = engine.state.ledgers["codex"]
    state = engine.report("codex", "rejected")
    assert state.consecutive_failures == 4
    assert engine.state.ledgers["codex"] == before
    assert engine.report("gemini", "rejected").status is BackendStatus.HEALTHY
    assert "gemini" not in engine.state.ledgers


def test_failures_while_cooling_count_and_eject() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("claude", "quota", retry_after=10)
    eject(engine, "claude")
    state = state_of(engine.backend_states(), "claude")
    assert (state.status, state.until) == (BackendStatus.EJECTED, START + 30)  # ejection ends last
    assert state.consecutive_failures == 5 and state.ejections == 1


def test_cooling_and_ejected_report_the_state_ending_last() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "claude")  # ejected until +30
    state = engine.report("claude", "quota", retry_after=600)
    assert (state.status, state.until, state.reason) == (BackendStatus.COOLING, START + 600, "quota")
    engine.report("codex", "quota", retry_after=5)
    eject(engine, "codex")
    state = state_of(engine.backend_states(), "codex")
    assert (state.status, state.until) == (BackendStatus.EJECTED, START + 30)
    clock.advance(30)  # the ejection is over, the cooldown goes on: no probing while cooling
    state = state_of(engine.backend_states(), "claude")
    assert (state.status, state.until) == (BackendStatus.COOLING, START + 600)
    assert status(engine, "codex") is BackendStatus.PROBING


def test_ejections_double_up_to_max_ejection() -> None:
    clock = FakeClock()
    engine = make(clock, health=HealthPolicy(base_ejection=10, max_ejection=35))
    eject(engine, "gemini")
    durations = []
    for _ in range(4):
        state = state_of(engine.backend_states(), "gemini")
        assert state.status is BackendStatus.EJECTED
        assert state.until is not None
        durations.append(state.until - clock())
        clock.set(state.until)
        assert status(engine, "gemini") is BackendStatus.PROBING
        engine.report("gemini", "failure")  # a failed probe ejects again, for twice as long
    assert durations == [10, 20, 35, 35]
    assert state_of(engine.backend_states(), "gemini").ejections == 5


def test_after_an_ejection_the_backend_probes() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(30)
    state = state_of(engine.backend_states(), "codex")
    assert (state.status, state.until, state.reason) == (
        BackendStatus.PROBING,
        None,
        "probing: 0 of 1 slots in use",
    )
    assert engine.select_backend({"backend": "codex"}).backend == "codex"  # takes the one slot
    assert state_of(engine.backend_states(), "codex").reason == "probing: 1 of 1 slots in use"
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "codex"})
    assert (
        engine.select_backend({"policy": "round_robin", "excluded_backends": ["claude"]}).backend == "copilot"
    )


def test_a_probe_slot_is_taken_by_a_session_registration() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(30)
    request = engine.normalize({"backend": "codex"})
    assert engine.select_and_register(request, "s1", {}).backend == "codex"
    with pytest.raises(BackendNotEligible):
        engine.select_and_register(request, "s2", {})
    assert [h.session_id for h in engine.sessions()] == ["s1"]


def test_a_probe_slot_is_taken_by_sticky_reuse() -> None:
    clock = FakeClock()
    engine = make(clock)
    assert engine.select_backend(STICKY).backend == "claude"
    eject(engine, "claude")
    clock.advance(30)
    reused = engine.select_backend(STICKY)
    assert (reused.backend, reused.reasons) == ("claude", REUSED)
    assert state_of(engine.backend_states(), "claude").reason == "probing: 1 of 1 slots in use"
    meanwhile = engine.select_backend(STICKY)
    assert (meanwhile.backend, meanwhile.reasons) == ("codex", TEMPORARY)


def test_more_probe_slots_admit_more_selections() -> None:
    clock = FakeClock()
    engine = make(clock, health=HealthPolicy(probe_sessions=3))
    eject(engine, "codex")
    clock.advance(30)
    for used in (1, 2, 3):
        engine.select_backend({"backend": "codex"})
        assert state_of(engine.backend_states(), "codex").reason == f"probing: {used} of 3 slots in use"
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "codex"})


def test_a_rejected_report_frees_no_probe_slot() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(30)
    engine.select_backend({"backend": "codex"})
    engine.report("codex", "rejected")
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "codex"})


def test_a_success_while_probing_makes_the_backend_healthy() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(30)
    engine.select_backend({"backend": "codex"})
    state = engine.report("codex", "success")
    assert (state.status, state.consecutive_failures, state.ejections) == (BackendStatus.HEALTHY, 0, 0)
    for _ in range(3):  # no probe slots any more
        assert engine.select_backend({"backend": "codex"}).backend == "codex"
    eject(engine, "codex")  # and the next ejection is a first one again
    assert state_of(engine.backend_states(), "codex").until == clock() + 30


def test_a_failure_while_probing_ejects_for_twice_as_long() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(30)
    engine.select_backend({"backend": "codex"})
    state = engine.report("codex", "failure")
    assert (state.status, state.until, state.ejections) == (BackendStatus.EJECTED, clock() + 60, 2)
    assert state.consecutive_failures == 6


def test_an_unreported_probe_slot_frees_itself_after_base_ejection() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(30)
    engine.select_backend({"backend": "codex"})
    clock.advance(29.5)
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "codex"})
    clock.advance(0.5)
    assert state_of(engine.backend_states(), "codex").reason == "probing: 0 of 1 slots in use"
    assert engine.select_backend({"backend": "codex"}).backend == "codex"


def test_restore_forgets_everything_learned() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("codex", "quota", retry_after=900)
    eject(engine, "codex")
    state = engine.restore("codex")
    assert (state.status, state.consecutive_failures, state.ejections) == (BackendStatus.HEALTHY, 0, 0)
    assert engine.select_backend({"backend": "codex"}).backend == "codex"
    assert engine.state.ledgers == {}
    eject(engine, "codex", 4)  # the count starts over
    assert status(engine, "codex") is BackendStatus.HEALTHY


# --------------------------------------------------------------------------- eligibility


@pytest.mark.parametrize("hold", ["cooling", "ejected", "probing-full"])
def test_a_held_out_backend_is_ineligible_exactly_as_if_down(hold: str) -> None:
    clock = FakeClock()
    learned, marked = make(clock), make(FakeClock())
    if hold == "cooling":
        learned.report("codex", "quota", retry_at=at(17))
    else:
        eject(learned, "codex")
        if hold == "probing-full":
            clock.advance(30)
            learned.select_backend({"backend": "codex"})
    requests: list[dict[str, Any]] = [
        {},
        {"policy": "round_robin"},
        {"policy": "round_robin"},
        {"policy": "failover", "last_backend": "claude"},
        {"policy": "capability_first"},
        {"preferred_backends": ["codex", "gemini"]},
        {"preferred_backends": ["codex"], "fallback_policy": "none"},
        {"policy": "round_robin", "preferred_backends": ["codex", "claude"]},
        {"backend": "codex"},
        {"policy": "explicit", "excluded_backends": ["claude"]},
        {"policy": "sticky", "affinity_key": "fresh"},
        {"policy": "least_loaded"},
        {"policy": "weighted"},
    ]
    for request in requests:
        down = {**request, "health": {"codex": "down"}}
        got, want = outcome_of(learned, request), outcome_of(marked, down)
        if "error" in want:
            assert got["code"] == want["code"]
            detail = got["detail"]
            if isinstance(detail, dict):
                detail = {k: v for k, v in detail.items() if k != "retry_at"}
            assert detail == want["detail"]
        else:
            assert got == want, request
        explained, expected = learned.explain(request), marked.explain(down)
        assert (explained.eligible, explained.ordered) == (expected.eligible, expected.ordered)


def test_an_explicit_held_out_backend_is_not_eligible() -> None:
    engine = make()
    engine.report("copilot", "quota", retry_after=60)
    assert engine_error(lambda: engine.select_backend({"backend": "copilot_client"})) == (
        "backend_not_eligible",
        "copilot",
    )


def test_the_requests_own_health_cannot_make_a_held_out_backend_eligible() -> None:
    engine = make()
    engine.report("claude", "quota", retry_after=60)
    eject(engine, "codex")
    request = {"health": {"claude": "healthy", "codex": "healthy"}}
    assert engine.select_backend(request).backend == "copilot"
    with pytest.raises(BackendNotEligible):
        engine.select_backend({"backend": "claude", "health": {"claude": "healthy"}})


def test_explain_gives_why_each_backend_is_held_out() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("claude", "quota", retry_at=at(17))
    eject(engine, "codex")
    eject(engine, "copilot")
    clock.advance(30)  # copilot probes; codex is ejected again by a failed probe
    eject(engine, "codex", 1)
    engine.select_backend({"backend": "copilot"})
    explanation = engine.explain({})
    assert reasons_in(explanation, "claude") == ("cooling until 2026-12-02T17:00:00Z (quota)",)
    assert reasons_in(explanation, "codex") == (
        "ejected after 6 consecutive failures until 2026-12-02T16:01:30Z",
    )
    assert reasons_in(explanation, "copilot") == ("probing: 1 of 1 slots in use",)
    assert reasons_in(explanation, "gemini") == ()
    assert explanation.eligible == ("gemini", "opencode")


def test_explain_of_a_first_ejection() -> None:
    engine = make()
    eject(engine, "codex")
    assert reasons_in(engine.explain({}), "codex") == (
        "ejected after 5 consecutive failures until 2026-12-02T16:00:30Z",
    )


def test_explain_joins_a_requests_reasons_with_learned_ones() -> None:
    engine = make()
    engine.report("claude", "quota", retry_at=at(17))
    explanation = engine.explain({"excluded_backends": ["claude"]})
    assert reasons_in(explanation, "claude") == ("excluded", "cooling until 2026-12-02T17:00:00Z (quota)")


def test_explain_changes_nothing_and_journals_nothing() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(30)
    before = len(engine.journal())
    for _ in range(3):
        assert engine.explain({"backend": "codex"}).decision is not None
    assert len(engine.journal()) == before
    assert engine.select_backend({"backend": "codex"}).backend == "codex"  # the slot was still free


# --------------------------------------------------------------------------- retry_at


def test_no_backend_available_says_when_the_first_one_is_back() -> None:
    engine = make()
    for backend, minutes in zip(BACKENDS, (50, 20, 40, 10, 30), strict=True):
        engine.report(backend, "quota", retry_at=at(16, minutes))
    with pytest.raises(NoBackendAvailable) as info:
        engine.select_backend({"policy": "round_robin"})
    assert info.value.detail["retry_at"] == at(16, 10)
    assert info.value.detail["eligible_backends"] == []


def only(*backends: str) -> dict[str, Any]:
    """A request whose candidates are only ``backends`` (every other one excluded)."""
    return {"excluded_backends": [b for b in BACKENDS if b not in backends]}


def test_retry_at_counts_only_backends_the_request_would_take() -> None:
    engine = make()
    engine.report("claude", "quota", retry_at=at(16, 5))
    engine.report("codex", "quota", retry_at=at(16, 10))
    assert engine_error(lambda: engine.select_backend(only("claude", "codex")))[1]["retry_at"] == at(16, 5)
    assert engine_error(lambda: engine.select_backend(only("codex")))[1]["retry_at"] == at(16, 10)
    marked_down = {**only("claude", "codex"), "health": {"claude": "down"}}
    assert engine_error(lambda: engine.select_backend(marked_down))[1]["retry_at"] == at(16, 10)


def test_retry_at_of_an_ejected_and_a_full_probing_backend() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "claude")
    request = only("claude")
    assert engine_error(lambda: engine.select_backend(request))[1]["retry_at"] == START + 30
    clock.advance(30)
    engine.select_backend(request)  # takes the probe slot, which frees itself 30 s from now
    clock.advance(5)
    assert engine_error(lambda: engine.select_backend(request))[1]["retry_at"] == START + 60


def test_retry_at_is_the_later_deadline_when_cooling_and_ejected() -> None:
    engine = make()
    engine.report("claude", "quota", retry_after=100)
    eject(engine, "claude")
    assert engine_error(lambda: engine.select_backend(only("claude")))[1]["retry_at"] == START + 100


def test_retry_at_is_absent_when_learning_did_not_empty_the_set() -> None:
    engine = make()
    engine.report("claude", "quota", retry_after=100)
    error = engine_error(lambda: engine.select_backend({"excluded_backends": list(BACKENDS)}))
    assert error[0] == "no_backend_available"
    assert "retry_at" not in error[1]
    down = {**only("codex"), "health": {"codex": "down"}}
    assert "retry_at" not in engine_error(lambda: engine.select_backend(down))[1]


def test_no_backend_available_without_learning_keeps_the_contract_detail() -> None:
    engine = make()
    error = engine_error(lambda: engine.select_backend({"excluded_backends": list(BACKENDS)}))
    assert set(error[1]) == {
        "policy",
        "requested_capabilities",
        "preferred_backends",
        "excluded_backends",
        "eligible_backends",
    }


# --------------------------------------------------------------------------- sticky through outages


def test_a_sticky_key_keeps_its_binding_and_uses_a_temporary_backend_while_it_cools() -> None:
    clock = FakeClock()
    engine = make(clock)
    assert engine.select_backend(STICKY).backend == "claude"
    engine.report("claude", "quota", retry_at=at(17))
    meanwhile = engine.select_backend(STICKY)
    assert (meanwhile.backend, meanwhile.reasons, meanwhile.affinity_key) == ("codex", TEMPORARY, "workspace")
    assert engine.state.binding_entry("workspace") == ("claude", "codex")
    for _ in range(3):  # kept while the outage lasts
        again = engine.select_backend(STICKY)
        assert (again.backend, again.reasons) == ("codex", TEMPORARY)
    clock.set(at(17))
    back = engine.select_backend(STICKY)
    assert (back.backend, back.reasons) == ("claude", REUSED)
    assert engine.state.binding_entry("workspace") == ("claude", None)


def test_a_temporary_backend_that_goes_out_is_replaced() -> None:
    engine = make()
    engine.select_backend(STICKY)
    engine.report("claude", "quota", retry_after=600)
    assert engine.select_backend(STICKY).backend == "codex"
    eject(engine, "codex")
    replaced = engine.select_backend(STICKY)
    assert replaced.reasons == TEMPORARY
    assert replaced.backend not in ("claude", "codex")
    assert engine.state.binding_entry("workspace") == ("claude", replaced.backend)


def test_a_sticky_key_bound_to_an_ejected_backend_returns_after_a_good_probe() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.select_backend(STICKY)
    eject(engine, "claude")
    assert engine.select_backend(STICKY).reasons == TEMPORARY
    clock.advance(30)
    probe = engine.select_backend(STICKY)
    assert (probe.backend, probe.reasons) == ("claude", REUSED)
    engine.report("claude", "success")
    assert engine.select_backend(STICKY).backend == "claude"


@pytest.mark.parametrize(
    "extra", [{"excluded_backends": ["claude"]}, {"health": {"claude": "down"}}], ids=["excluded", "down"]
)
def test_a_bound_backend_the_request_itself_rules_out_rebinds(extra: dict[str, Any]) -> None:
    engine = make()
    assert engine.select_backend(STICKY).backend == "claude"
    moved = engine.select_backend({**STICKY, **extra})
    assert (moved.backend, moved.reasons) == ("codex", BOUND)
    assert engine.state.binding_entry("workspace") == ("codex", None)
    assert engine.select_backend(STICKY).backend == "codex"


def test_a_bound_backend_both_cooling_and_excluded_by_the_request_rebinds() -> None:
    engine = make()
    engine.select_backend(STICKY)
    engine.report("claude", "quota", retry_after=60)
    moved = engine.select_backend({**STICKY, "excluded_backends": ["claude"]})
    assert moved.reasons == BOUND
    assert engine.state.binding_entry("workspace") == (moved.backend, None)


def test_release_forgets_the_binding_and_the_temporary_backend() -> None:
    engine = make()
    engine.select_backend(STICKY)
    engine.report("claude", "quota", retry_after=60)
    engine.select_backend(STICKY)
    assert engine.release("workspace") is True
    assert engine.state.binding_entry("workspace") == (None, None)
    assert engine.release("workspace") is False
    fresh = engine.select_backend(STICKY)
    assert fresh.reasons == BOUND and fresh.backend != "claude"
    assert engine.state.binding_entry("workspace") == (fresh.backend, None)


def test_release_of_a_key_never_bound() -> None:
    assert make().release("never") is False
    assert engine_error(lambda: make().release("")) == ("invalid_affinity_key", "")


# --------------------------------------------------------------------------- journal


def test_every_report_is_an_outcome_event() -> None:
    engine = make()
    engine.report("claude", "success")
    engine.report("codex_cli", "failure")
    engine.report("gemini", "rejected")
    engine.report("copilot", "quota", retry_at=at(17))
    events = engine.journal("outcome")
    assert [e.payload for e in events] == [
        {"backend": "claude", "outcome": "success"},
        {"backend": "codex", "outcome": "failure"},
        {"backend": "gemini", "outcome": "rejected"},
        {"backend": "copilot", "outcome": "quota", "retry_at": at(17)},
    ]
    assert all(e.timestamp == int(START * 1000) for e in events)


def test_every_change_of_status_is_a_backend_health_event() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("claude", "quota", retry_at=at(17))
    eject(engine, "codex")
    clock.advance(30)
    engine.select_backend({"backend": "codex"})
    engine.report("codex", "success")
    engine.restore("claude")
    assert health_events(engine) == [
        {"backend": "claude", "status": "cooling", "until": at(17), "reason": "quota"},
        {
            "backend": "codex",
            "status": "ejected",
            "until": START + 30,
            "reason": "ejected after 5 consecutive failures",
        },
        {"backend": "codex", "status": "probing", "until": None, "reason": "probing: 0 of 1 slots in use"},
        {"backend": "codex", "status": "healthy", "until": None, "reason": None},
        {"backend": "claude", "status": "healthy", "until": None, "reason": None},
    ]


def test_reports_that_change_no_status_journal_no_backend_health_event() -> None:
    engine = make()
    engine.report("claude", "quota", retry_at=at(17))
    engine.report("claude", "quota", retry_at=at(18))  # still cooling: no new status
    eject(engine, "codex", 4)
    engine.restore("gemini")
    assert [e["backend"] for e in health_events(engine)] == ["claude"]


def test_a_time_driven_change_is_journaled_once_dated_at_the_deadline() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("claude", "quota", retry_at=at(17))
    clock.set(at(17, 45))
    engine.explain({})  # explaining observes nothing
    assert len(health_events(engine)) == 1
    engine.select_backend({})  # the first operation to see the change journals it
    engine.select_backend({})
    engine.backend_states()
    events = engine.journal("backend_health")
    assert [e.payload["status"] for e in events] == ["cooling", "healthy"]
    assert events[1].timestamp == int(at(17) * 1000)
    assert events[1].payload == {"backend": "claude", "status": "healthy", "until": None, "reason": None}


def test_backend_states_observe_a_time_driven_change() -> None:
    clock = FakeClock()
    engine = make(clock)
    eject(engine, "codex")
    clock.advance(45)
    assert status(engine, "codex") is BackendStatus.PROBING
    assert status(engine, "codex") is BackendStatus.PROBING
    events = engine.journal("backend_health")
    assert [e.payload["status"] for e in events] == ["ejected", "probing"]
    assert events[-1].timestamp == int((START + 30) * 1000)


def test_a_report_after_a_deadline_journals_the_time_driven_change_first() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("claude", "quota", retry_after=10)
    clock.advance(20)
    engine.report("claude", "failure")
    kinds = [(e.event_type, e.payload.get("status") or e.payload.get("outcome")) for e in engine.journal()]
    assert kinds == [
        ("outcome", "quota"),
        ("backend_health", "cooling"),
        ("backend_health", "healthy"),
        ("outcome", "failure"),
    ]


def test_journal_timestamps_follow_the_injected_clock() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("claude", "quota", retry_after=10)
    clock.advance(3600)
    engine.select_backend({})
    events = engine.journal()
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert events[-1].timestamp == int(clock() * 1000)


def test_a_subscription_sees_outcome_and_backend_health_events() -> None:
    engine = make()
    subscription = Subscription(engine.journal_ring)
    eject(engine, "codex")
    engine.select_backend({})
    seen = []
    while (item := subscription.get_nowait()) is not None:
        assert not isinstance(item, SubscriptionGap)
        seen.append(item.event_type)
    assert seen == ["outcome"] * 5 + ["backend_health", "routing_selected", "audit"]
    only = Subscription(engine.journal_ring, event_type="backend_health")
    engine.restore("codex")
    item = only.get_nowait()
    assert item is not None and not isinstance(item, SubscriptionGap)
    assert item.payload["status"] == "healthy"
    assert only.get_nowait() is None


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", ["Claude", "auto", "", None, 3, ["claude"], HostileObject()])
def test_reports_for_unknown_backends_are_unknown_backend(backend: Any) -> None:
    engine = make()
    with pytest.raises(UnknownBackend):
        engine.report(backend, "failure")
    with pytest.raises(UnknownBackend):
        engine.restore(backend)
    assert engine.journal() == [] and engine.state.ledgers == {}


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"outcome": "crashed"}, "outcome"),
        ({"outcome": "Success"}, "outcome"),
        ({"outcome": None}, "outcome"),
        ({"outcome": ["failure"]}, "outcome"),
        ({"outcome": HostileObject()}, "outcome"),
        ({"retry_at": math.nan}, "retry_at"),
        ({"retry_at": math.inf}, "retry_at"),
        ({"retry_at": -math.inf}, "retry_at"),
        ({"retry_at": "17:00"}, "retry_at"),
        ({"retry_at": True}, "retry_at"),
        ({"retry_after": -1}, "retry_after"),
        ({"retry_after": -0.001}, "retry_after"),
        ({"retry_after": math.inf}, "retry_after"),
        ({"retry_after": math.nan}, "retry_after"),
        ({"retry_after": "60"}, "retry_after"),
        ({"retry_at": at(17), "retry_after": 60}, "retry_at"),
    ],
)
def test_bad_report_arguments_are_invalid_route_request_and_change_nothing(
    kwargs: dict[str, Any], detail: str
) -> None:
    engine = make()
    engine.report("claude", "failure")
    before = (dict(engine.state.ledgers), len(engine.journal()))
    arguments = {"outcome": "quota", **kwargs}
    with pytest.raises(InvalidRouteRequest) as info:
        engine.report("claude", **arguments)
    assert info.value.detail == detail
    assert (dict(engine.state.ledgers), len(engine.journal())) == before


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"failure_threshold": 0}, ValueError),
        ({"failure_threshold": -3}, ValueError),
        ({"base_ejection": 0}, ValueError),
        ({"base_ejection": -1.5}, ValueError),
        ({"base_ejection": math.inf}, ValueError),
        ({"base_ejection": math.nan}, ValueError),
        ({"max_ejection": 0}, ValueError),
        ({"max_ejection": 10}, ValueError),  # below base_ejection (30)
        ({"probe_sessions": 0}, ValueError),
        ({"probe_sessions": -1}, ValueError),
        ({"failure_threshold": "5"}, TypeError),
        ({"failure_threshold": 2.0}, TypeError),
        ({"failure_threshold": True}, TypeError),
        ({"base_ejection": "30"}, TypeError),
        ({"max_ejection": None}, TypeError),
        ({"probe_sessions": 1.5}, TypeError),
    ],
)
def test_health_policy_rejects_bad_values(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        HealthPolicy(**options)


def test_engine_rejects_a_health_option_that_is_not_a_policy() -> None:
    with pytest.raises(TypeError):
        RoutingEngine(health={"failure_threshold": 3})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- what selections reuse


def test_selections_reuse_what_was_learned_until_a_deadline_passes() -> None:
    """Selections between two deadlines reuse one observation; the first after a deadline sees it."""
    clock = FakeClock()
    engine = make(clock)
    engine.report("gemini", "quota", retry_after=10)
    only_gemini = {"backend": "gemini"}
    for _ in range(3):
        with pytest.raises(BackendNotEligible):
            engine.select_backend(only_gemini)
        clock.advance(3)  # 9 s in: still cooling
    assert engine.explain(only_gemini).error is not None
    clock.advance(1)  # the cooldown ended exactly now
    assert engine.explain(only_gemini).error is None  # an explanation sees it and journals nothing
    assert [e["status"] for e in health_events(engine)] == ["cooling"]
    assert engine.select_backend(only_gemini).backend == "gemini"
    assert [e["status"] for e in health_events(engine)] == ["cooling", "healthy"]


def test_a_report_or_a_reconfiguration_is_seen_by_the_next_selection() -> None:
    clock = FakeClock()
    engine = make(clock)
    request = {"policy": "preferred_then_fallback", "preferred_backends": ["codex"]}
    assert engine.select_backend(request).backend == "codex"
    engine.report("codex", "quota", retry_after=60)
    assert engine.select_backend(request).backend != "codex"
    engine.reconfigure(
        msgspec.structs.replace(engine.settings(), health=None)
    )  # learning off: nothing held out
    assert engine.select_backend(request).backend == "codex"
    engine.reconfigure(msgspec.structs.replace(engine.settings(), health=HealthPolicy()))
    assert engine.select_backend(request).backend != "codex"
    engine.restore("codex")
    assert engine.select_backend(request).backend == "codex"


@pytest.mark.parametrize(
    "reset",
    [{"retry_after": 366 * 86_400 + 1}, {"retry_after": 1e300}, {"retry_at": 1e18}, {"retry_at": -1e18}],
)
def test_a_reset_no_calendar_can_hold_is_refused_and_changes_nothing(reset: dict[str, float]) -> None:
    engine = make()
    with pytest.raises(InvalidRouteRequest) as caught:
        engine.report("codex", "quota", **reset)
    assert caught.value.detail == next(iter(reset))
    assert engine.state.ledgers == {}
    assert engine.select_backend({"backend": "codex"}).backend == "codex"


def test_the_longest_reset_is_accepted_and_explained() -> None:
    clock = FakeClock()
    engine = make(clock)
    engine.report("codex", "quota", retry_after=366 * 86_400)
    verdicts = {v.backend: v for v in engine.explain({"policy": "round_robin"}).backends}
    assert any(reason.startswith("cooling until 2027-12-") for reason in verdicts["codex"].reasons)


def test_a_deadline_no_date_can_show_is_shown_as_a_number() -> None:
    from beamrouting._core._health import format_time

    assert format_time(1_796_227_200.0) == "2026-12-02T16:00:00Z"
    assert format_time(1e300) == "1e+300 (UNIX seconds)"
