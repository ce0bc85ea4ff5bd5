"""Routing that learns from outcomes, on the Router (memory store): reports, restores,
backend states, waiting for a backend to come back, sticky keys through outages, the
journal and its subscribers, crash safety, bad input and ``RouterSession``.

Time moves only through an injected clock; waiters are woken by ``backend_states()`` (which
observes the time change) or ``restore()``, and the tests wait on conditions. Every test
runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import anyio
import pytest

from beamrouting import (
    ActorCrashed,
    BackendNotEligible,
    BackendStatus,
    HealthPolicy,
    InvalidRouteRequest,
    JournalEvent,
    NoBackendAvailable,
    RouteDecision,
    Router,
    RouterSession,
    RoutingEngine,
    RoutingError,
    SubscriptionGap,
    UnknownBackend,
)
from beamrouting.testing import crash_actor
from tests._edges import HostileObject, HostileStr
from tests._helpers import BACKENDS, FakeClock, profiles_for_scenarios, settle_into, wait_for
from tests._learning import START, at, mixed_requests, reasons_in, state_of

pytestmark = pytest.mark.anyio

STICKY = {"policy": "sticky", "affinity_key": "workspace"}


def only(*backends: str) -> dict[str, Any]:
    """A request whose candidates are only ``backends``."""
    return {"excluded_backends": [b for b in BACKENDS if b not in backends]}


async def status(router: Router, backend: str) -> BackendStatus:
    return state_of(await router.backend_states(), backend).status


async def eject(router: Router, backend: str, failures: int = 5) -> None:
    for _ in range(failures):
        await router.report(backend, "failure")


def waiting(router: Router) -> int:
    return router._waiters.waiting


def engine_outcome(engine: RoutingEngine, request: Any) -> Any:
    try:
        return engine.select_backend(request).to_dict()
    except RoutingError as exc:
        return exc.to_dict()


async def router_outcome(router: Router, request: Any) -> Any:
    try:
        return (await router.select_backend(request)).to_dict()
    except RoutingError as exc:
        return exc.to_dict()


# --------------------------------------------------------------------------- no report, no change


async def test_router_with_and_without_learning_decides_as_the_engine_does() -> None:
    engine = RoutingEngine(health=None)
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    async with Router() as learning, Router(health=None) as plain:
        for router in (learning, plain):
            for profile_id, profile in profiles_for_scenarios():
                await router.put_policy_profile(profile_id, profile)
        for request in mixed_requests(300, seed=11):
            expected = engine_outcome(engine, request)
            assert await router_outcome(learning, request) == expected, request
            assert await router_outcome(plain, request) == expected, request
        assert all(s.status is BackendStatus.HEALTHY for s in await learning.backend_states())


# --------------------------------------------------------------------------- reports and states


async def test_quota_cools_a_backend_until_retry_at() -> None:
    clock = FakeClock()
    async with Router(clock=clock) as router:
        state = await router.report("claude_code", "quota", retry_at=at(17))
        assert (state.backend, state.status, state.until) == ("claude", BackendStatus.COOLING, at(17))
        assert (await router.select_backend({})).backend == "codex"
        explanation = await router.explain({})
        assert reasons_in(explanation, "claude") == ("cooling until 2026-12-02T17:00:00Z (quota)",)
        assert (await router.report("claude", "success")).status is BackendStatus.COOLING
        assert (await router.report("claude", "quota", retry_after=60)).until == at(17)  # only extends
        clock.set(at(17))
        assert (await router.select_backend({})).backend == "claude"


async def test_failures_eject_then_probe_then_recover() -> None:
    clock = FakeClock()
    async with Router(clock=clock) as router:
        await eject(router, "codex", 4)
        assert await status(router, "codex") is BackendStatus.HEALTHY
        state = await router.report("codex", "failure")
        assert (state.status, state.until, state.ejections) == (BackendStatus.EJECTED, START + 30, 1)
        with pytest.raises(BackendNotEligible):
            await router.select_backend({"backend": "codex"})
        clock.advance(30)
        assert await status(router, "codex") is BackendStatus.PROBING
        async with router.session({"backend": "codex"}) as session:  # takes the probe slot
            assert session.backend == "codex"
            reasons = reasons_in(await router.explain({}), "codex")
            assert reasons == ("probing: 1 of 1 slots in use",)
            with pytest.raises(BackendNotEligible):
                await router.select_backend({"backend": "codex"})
            state = await session.report("success")
        assert (state.status, state.consecutive_failures, state.ejections) == (BackendStatus.HEALTHY, 0, 0)


async def test_a_failed_probe_ejects_for_twice_as_long() -> None:
    clock = FakeClock()
    async with Router(clock=clock, health=HealthPolicy(base_ejection=10, max_ejection=15)) as router:
        await eject(router, "gemini")
        clock.advance(10)
        await router.select_backend({"backend": "gemini"})
        state = await router.report("gemini", "failure")
        assert (state.status, state.until) == (BackendStatus.EJECTED, clock() + 15)  # 20, capped at 15


async def test_restore_forgets_what_was_learned() -> None:
    async with Router(clock=FakeClock()) as router:
        await router.report("claude", "quota", retry_after=600)
        await eject(router, "claude")
        state = await router.restore("claude_agent_sdk")
        assert (state.backend, state.status, state.consecutive_failures) == (
            "claude",
            BackendStatus.HEALTHY,
            0,
        )
        assert (await router.select_backend({})).backend == "claude"


async def test_backend_states_cover_every_backend_in_catalogue_order() -> None:
    async with Router(clock=FakeClock(), limits={"copilot": 4}) as router:
        await router.report("codex", "quota", retry_after=5)
        states = await router.backend_states()
        assert [s.backend for s in states] == list(BACKENDS)
        assert [s.status for s in states] == [
            BackendStatus.HEALTHY,
            BackendStatus.COOLING,
            BackendStatus.HEALTHY,
            BackendStatus.HEALTHY,
            BackendStatus.HEALTHY,
        ]
        assert state_of(states, "copilot").limit == 4


async def test_a_held_out_backend_is_ineligible_as_if_down() -> None:
    async with Router(clock=FakeClock()) as learned, Router() as marked:
        await learned.report("codex", "quota", retry_after=60)
        for request in ({"policy": "round_robin"},) * 6 + ({"policy": "failover", "last_backend": "claude"},):
            down = {**request, "health": {"codex": "down"}}
            assert await learned.select_backend(request) == await marked.select_backend(down)
        with pytest.raises(BackendNotEligible):
            await learned.select_backend({"backend": "codex", "health": {"codex": "healthy"}})


# --------------------------------------------------------------------------- waiting


async def test_no_backend_available_carries_retry_at() -> None:
    async with Router(clock=FakeClock()) as router:
        await router.report("claude", "quota", retry_at=at(16, 10))
        await router.report("codex", "quota", retry_at=at(16, 5))
        with pytest.raises(NoBackendAvailable) as info:
            await router.select_backend(only("claude", "codex"))
        assert info.value.detail["retry_at"] == at(16, 5)
        with pytest.raises(NoBackendAvailable) as info:
            await router.select_backend({"excluded_backends": list(BACKENDS)})
        assert "retry_at" not in info.value.detail


async def test_waiting_raises_at_once_when_nothing_comes_back_in_time() -> None:
    async with Router(clock=FakeClock()) as router:
        await router.report("claude", "quota", retry_after=60)
        with anyio.fail_after(2):  # at once: it does not sleep through the 59 s it may wait
            with pytest.raises(NoBackendAvailable) as info:
                await router.select_backend(only("claude"), wait=59)
            assert info.value.detail["retry_at"] == START + 60
            with pytest.raises(NoBackendAvailable):
                async with router.session(only("claude"), wait=59):
                    pytest.fail("admitted while cooling")
            with pytest.raises(NoBackendAvailable):  # nothing learned keeps it out: no waiting either
                await router.select_backend({"excluded_backends": list(BACKENDS)}, wait=600)
        assert waiting(router) == 0
        assert await router.sessions() == []


async def test_a_waiter_selects_once_the_clock_passes_retry_at() -> None:
    clock = FakeClock()
    outcomes: dict[str, Any] = {}
    async with Router(clock=clock) as router:
        await router.report("claude", "quota", retry_after=60)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    settle_into, outcomes, "waiter", router.select_backend(only("claude"), wait=120)
                )
                await wait_for(lambda: waiting(router) == 1)
                clock.advance(59)
                await router.backend_states()
                assert "waiter" not in outcomes  # still cooling: it goes on waiting
                clock.advance(1)
                await router.backend_states()  # observes the change, which wakes the waiter
        decision = outcomes["waiter"]
        assert isinstance(decision, RouteDecision) and decision.backend == "claude"
        assert waiting(router) == 0


async def test_restore_wakes_a_waiting_session() -> None:
    clock = FakeClock()
    outcomes: dict[str, Any] = {}

    async def start_session() -> str:
        async with router.session(only("codex"), session_id="s1", wait=300) as session:
            return session.backend

    async with Router(clock=clock) as router:
        await eject(router, "codex")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(settle_into, outcomes, "session", start_session())
                await wait_for(lambda: waiting(router) == 1)
                await router.restore("codex")
        assert outcomes["session"] == "codex"


async def test_a_report_wakes_a_waiter_whose_backend_probes_again() -> None:
    clock = FakeClock()
    outcomes: dict[str, Any] = {}
    async with Router(clock=clock) as router:
        await eject(router, "codex")
        clock.advance(30)
        await router.select_backend({"backend": "codex"})  # the probe slot is taken
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(settle_into, outcomes, "waiter", router.select_backend(only("codex"), wait=60))
                await wait_for(lambda: waiting(router) == 1)
                await router.report("codex", "success")
        assert outcomes["waiter"].backend == "codex"


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async with Router(clock=FakeClock()) as router:
        await router.report("claude", "quota", retry_after=60)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(router.select_backend, only("claude"), wait=120))
                await wait_for(lambda: waiting(router) == 1)
                tg.cancel_scope.cancel()
        assert waiting(router) == 0
        assert await router.sessions() == []
        await router.restore("claude")
        assert (await router.select_backend(only("claude"))).backend == "claude"


@pytest.mark.parametrize("wait", [-1, math.nan, math.inf])
async def test_a_bad_wait_is_refused(wait: float) -> None:
    async with Router(clock=FakeClock()) as router:
        await router.report("claude", "quota", retry_after=60)
        with pytest.raises(ValueError):
            await router.select_backend(only("claude"), wait=wait)


async def test_a_wait_of_the_wrong_type_is_refused() -> None:
    async with Router(clock=FakeClock()) as router:
        await router.report("claude", "quota", retry_after=60)
        with pytest.raises(TypeError):
            await router.select_backend(only("claude"), wait="5")  # type: ignore[call-overload]


# --------------------------------------------------------------------------- sticky through outages


async def test_a_sticky_key_rides_out_an_outage_on_a_temporary_backend() -> None:
    clock = FakeClock()
    async with Router(clock=clock) as router:
        assert (await router.select_backend(STICKY)).backend == "claude"
        await router.report("claude", "quota", retry_after=60)
        for _ in range(3):
            meanwhile = await router.select_backend(STICKY)
            assert (meanwhile.backend, meanwhile.reasons) == (
                "codex",
                ("selected temporary backend while bound backend is out",),
            )
        clock.advance(60)
        back = await router.select_backend(STICKY)
        assert (back.backend, back.reasons) == ("claude", ("reused sticky affinity backend",))


async def test_release_forgets_a_binding_and_says_whether_there_was_one() -> None:
    async with Router(clock=FakeClock()) as router:
        await router.select_backend(STICKY)
        await router.report("claude", "quota", retry_after=60)
        await router.select_backend(STICKY)
        assert await router.release("workspace") is True
        assert await router.release("workspace") is False
        fresh = await router.select_backend(STICKY)
        assert fresh.reasons == ("selected backend and bound sticky affinity",)
        assert fresh.backend != "claude"


async def test_a_bound_backend_the_request_excludes_rebinds() -> None:
    async with Router() as router:
        await router.select_backend(STICKY)
        moved = await router.select_backend({**STICKY, "health": {"claude": "down"}})
        assert (moved.backend, moved.reasons) == ("codex", ("selected backend and bound sticky affinity",))
        assert (await router.select_backend(STICKY)).backend == "codex"


# --------------------------------------------------------------------------- journal


async def test_reports_and_changes_of_status_are_journaled() -> None:
    clock = FakeClock()
    async with Router(clock=clock) as router:
        await router.report("claude", "quota", retry_at=at(17))
        await router.report("claude", "rejected")
        outcomes = [e.payload for e in await router.journal("outcome")]
        assert outcomes == [
            {"backend": "claude", "outcome": "quota", "retry_at": at(17)},
            {"backend": "claude", "outcome": "rejected"},
        ]
        health = [e.payload for e in await router.journal("backend_health")]
        assert health == [{"backend": "claude", "status": "cooling", "until": at(17), "reason": "quota"}]


async def test_a_time_driven_change_is_journaled_once_by_the_first_to_see_it() -> None:
    clock = FakeClock()
    async with Router(clock=clock) as router:
        await router.report("claude", "quota", retry_at=at(17))
        clock.set(at(18))
        await router.explain({})  # explaining journals nothing
        assert len(await router.journal("backend_health")) == 1
        await router.select_backend({})
        await router.backend_states()
        await router.select_backend({})
        events = await router.journal("backend_health")
        assert [e.payload["status"] for e in events] == ["cooling", "healthy"]
        assert events[-1].timestamp == int(at(17) * 1000)


async def test_a_subscription_sees_outcomes_and_health_changes() -> None:
    async with Router(clock=FakeClock()) as router:
        async with router.subscribe() as events:
            await eject(router, "gemini")
            await router.select_backend({})
            seen: list[str] = []
            with anyio.fail_after(5):
                async for item in events:
                    assert not isinstance(item, SubscriptionGap)
                    seen.append(item.event_type)
                    if len(seen) == 8:
                        break
        assert seen == ["outcome"] * 5 + ["backend_health", "routing_selected", "audit"]
        async with router.subscribe(event_type="backend_health") as health:
            await router.restore("gemini")
            event = health.get_nowait()
            assert isinstance(event, JournalEvent)
            assert event.payload == {"backend": "gemini", "status": "healthy", "until": None, "reason": None}


# --------------------------------------------------------------------------- crash safety


async def test_nothing_learned_is_lost_when_the_routing_table_crashes() -> None:
    clock = FakeClock()
    async with Router(clock=clock) as router:
        await router.report("claude", "quota", retry_at=at(17))
        await eject(router, "codex")
        await eject(router, "gemini", 3)
        await router.select_backend(STICKY)  # binds to copilot
        await router.report("copilot", "quota", retry_after=30)
        before = await router.backend_states()
        crash_actor(router, "routing_table")
        with pytest.raises(ActorCrashed):
            await router.backend_states()
        assert await router.backend_states() == before
        meanwhile = await router.select_backend(STICKY)
        assert meanwhile.reasons == ("selected temporary backend while bound backend is out",)
        assert state_of(before, "gemini").consecutive_failures == 3
        assert (await router.report("gemini", "failure")).consecutive_failures == 4
        assert (await router.statistics()).restarts["routing_table"] == 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("backend", ["Claude", "auto", "", None, 7, ["codex"], HostileObject()])
async def test_reports_for_unknown_backends_are_unknown_backend(backend: Any) -> None:
    async with Router() as router:
        with pytest.raises(UnknownBackend):
            await router.report(backend, "failure")
        with pytest.raises(UnknownBackend):
            await router.restore(backend)
        assert await router.journal() == []


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"outcome": "exploded"}, "outcome"),
        ({"outcome": HostileStr("failure")}, "outcome"),
        ({"outcome": HostileObject()}, "outcome"),
        ({"retry_at": math.nan}, "retry_at"),
        ({"retry_at": math.inf}, "retry_at"),
        ({"retry_after": -5}, "retry_after"),
        ({"retry_after": math.inf}, "retry_after"),
        ({"retry_at": 1.0, "retry_after": 1.0}, "retry_at"),
    ],
)
async def test_bad_report_arguments_change_nothing(kwargs: dict[str, Any], detail: str) -> None:
    engine = RoutingEngine()
    arguments = {"outcome": "quota", **kwargs}
    async with Router() as router:
        with pytest.raises(InvalidRouteRequest) as info:
            await router.report("claude", **arguments)
        assert info.value.detail == detail
        with pytest.raises(InvalidRouteRequest) as engine_info:
            engine.report("claude", **arguments)
        assert engine_info.value == info.value
        assert await router.journal() == []
        assert await status(router, "claude") is BackendStatus.HEALTHY


async def test_router_rejects_a_health_option_that_is_not_a_policy() -> None:
    with pytest.raises(TypeError):
        Router(health="strict")
    with pytest.raises(TypeError):
        Router(health={"failure_threshold": 2})


# --------------------------------------------------------------------------- RouterSession


async def test_router_session_attributes_are_read_only() -> None:
    async with Router() as router, router.session(STICKY, session_id="s1") as session:
        assert isinstance(session, RouterSession)
        assert (session.id, session.backend, session.tried) == ("s1", "claude", ("claude",))
        assert session.handle.session_id == "s1" and session.handle.backend == "claude"
        assert session.decision.backend == "claude"
        for name in ("id", "backend", "decision", "handle", "tried"):
            with pytest.raises(AttributeError):
                setattr(session, name, None)
        assert "s1" in repr(session)


async def test_session_report_reports_for_its_backend() -> None:
    async with Router(clock=FakeClock()) as router, router.session({"backend": "gemini"}) as session:
        state = await session.report("quota", retry_after=120)
        assert (state.backend, state.status, state.until) == ("gemini", BackendStatus.COOLING, START + 120)


async def test_failover_moves_the_session_to_another_backend() -> None:
    async with Router(clock=FakeClock(), limits={"codex": 5}) as router:
        async with router.session({"policy": "round_robin"}, session_id="s1", metadata={"m": 1}) as session:
            assert session.backend == "claude"
            decision = await session.failover()
            assert decision.backend == "codex"
            assert decision.candidates == ("codex", "copilot", "gemini", "opencode")
            assert (session.backend, session.decision, session.tried) == (
                "codex",
                decision,
                ("claude", "codex"),
            )
            assert session.handle.backend == "codex" and session.handle.metadata == {"m": 1}
            assert [(s.session_id, s.backend, s.metadata) for s in await router.sessions()] == [
                ("s1", "codex", {"m": 1})
            ]
            live = {s.backend: s.live_sessions for s in await router.backend_states()}
            assert (live["claude"], live["codex"]) == (0, 1)
            assert state_of(await router.backend_states(), "claude").consecutive_failures == 1
            again = await session.failover("quota", retry_after=60)
            assert again.backend == "copilot" and session.tried == ("claude", "codex", "copilot")
            assert await status(router, "codex") is BackendStatus.COOLING
        assert await router.sessions() == []
        assert all(s.live_sessions == 0 for s in await router.backend_states())


async def test_failover_keeps_the_original_requests_exclusions() -> None:
    async with Router() as router:
        request = {"policy": "round_robin", "excluded_backends": ["codex", "copilot"]}
        async with router.session(request) as session:
            assert session.backend == "claude"
            assert (await session.failover()).backend == "gemini"
            assert (await session.failover()).backend == "opencode"


async def test_failover_with_nothing_left_raises_and_keeps_the_session() -> None:
    async with Router() as router:
        async with router.session(
            {**only("claude", "codex"), "policy": "round_robin"}, session_id="s1"
        ) as session:
            await session.failover()
            assert session.backend == "codex"
            decision = session.decision
            with pytest.raises(NoBackendAvailable):
                await session.failover()
            assert (session.backend, session.decision, session.tried) == (
                "codex",
                decision,
                ("claude", "codex"),
            )
            assert await router.session_backend("s1") == "codex"
        assert await router.sessions() == []
