"""Hardening on the Router (memory store): size limits with the engine's errors, live-session
caps, subscribers that keep up, hostile values, and sessions whose unregistration fails.

Every test runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import logging
import tracemalloc
from typing import Any

import anyio
import pytest

from beamrouting import (
    InvalidAffinityKey,
    InvalidPolicyProfile,
    InvalidRouteRequest,
    JournalEvent,
    Router,
    RoutingEngine,
    RoutingError,
    SessionExists,
    StoreUnavailable,
    Subscription,
    SubscriptionGap,
    TooManySessions,
)
from tests._edges import (
    HostileObject,
    HostileStr,
    UntouchableDict,
    UntouchableList,
    UntouchableStr,
    hostile_profile,
)
from tests._helpers import wait_for
from tests._stores import UnregisterOutageStore

pytestmark = pytest.mark.anyio

HUGE = 5_000_000
ROUND_ROBIN = {"policy": "round_robin"}


def too_many(field: str, entries: int, limit: int = 256) -> dict[str, Any]:
    return {"field": field, "max_list_entries": limit, "entries": entries}


def too_long(field: str, length: int, limit: int = 1024) -> dict[str, Any]:
    return {"field": field, "max_key_length": limit, "length": length}


def engine_outcome(call: Any) -> Any:
    try:
        return call().to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


async def router_outcome(call: Any) -> Any:
    try:
        return (await call()).to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


OVERSIZED: list[Any] = [
    pytest.param(lambda: {"policy": "sticky", "affinity_key": "k" * 1025}, id="affinity_key"),
    pytest.param(lambda: {"policy": "sticky", "affinity_key": UntouchableStr("k" * 1_000_000)}, id="1MB-key"),
    pytest.param(lambda: {"policy_profile_id": "p" * 1025}, id="policy_profile_id"),
    pytest.param(lambda: {"preferred_backends": ["claude"] * 257}, id="preferred_backends"),
    pytest.param(lambda: {"excluded_backends": ("codex",) * 300}, id="excluded_backends"),
    pytest.param(lambda: {"fallback_backends": UntouchableList([None] * HUGE)}, id="fallback_backends-5M"),
    pytest.param(lambda: {"capabilities": UntouchableList([None] * HUGE)}, id="capabilities-5M"),
    pytest.param(lambda: {"health": UntouchableDict.fromkeys(range(1000), "down")}, id="health"),
    pytest.param(lambda: UntouchableDict.fromkeys(range(1000)), id="request"),
    pytest.param(lambda: {"policy": "bogus", "preferred_backends": ["claude"] * 1000}, id="policy-first"),
    pytest.param(lambda: {"backend": UntouchableList([None] * HUGE)}, id="backend-5M"),
]


@pytest.mark.parametrize(
    "make_request",
    [
        lambda: {"preferred_backends": [[None] * HUGE]},
        lambda: {"health": {"claude": [None] * HUGE}},
        lambda: {"backend": "x" * HUGE},
    ],
    ids=["in-list", "health-value", "long-name"],
)
async def test_router_rejects_a_huge_nested_value_without_encoding_it(make_request: Any) -> None:
    async with Router() as router:
        await router.select_backend({})  # warm up
        request = make_request()
        tracemalloc.start()
        try:
            with pytest.raises(RoutingError):
                await router.select_backend(request)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4_000_000, f"{peak:,} bytes allocated to reject it"


@pytest.mark.parametrize("make_request", OVERSIZED)
async def test_router_rejects_oversized_requests_as_the_engine_does(make_request: Any) -> None:
    engine = RoutingEngine()
    expected = engine_outcome(lambda: engine.select_backend(make_request()))
    assert isinstance(expected, tuple)
    async with Router() as router:
        assert await router_outcome(lambda: router.select_backend(make_request())) == expected
        assert await router_outcome(lambda: router.select_backend(make_request(), wait=1)) == expected
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"  # nothing moved


async def test_router_affinity_key_limit_names_field_and_limit() -> None:
    async with Router(max_key_length=16) as router:
        with pytest.raises(InvalidAffinityKey) as info:
            await router.select_backend({"policy": "sticky", "affinity_key": "k" * 17})
        assert info.value.detail == too_long("affinity_key", 17, 16)
        with pytest.raises(InvalidAffinityKey):
            await router.release("k" * 17)
        assert (
            await router.select_backend({"policy": "sticky", "affinity_key": "k" * 16})
        ).backend == "claude"


async def test_router_list_limit_is_configurable() -> None:
    async with Router(max_list_entries=3) as router:
        with pytest.raises(InvalidRouteRequest) as info:
            await router.select_backend({"excluded_backends": ["claude"] * 4})
        assert info.value.detail == too_many("excluded_backends", 4, 3)
        with pytest.raises(InvalidRouteRequest) as info:
            await router.select_backend({"routing": {"a": 1, "b": 2, "c": 3, "d": 4}}, {})
        assert info.value.detail == too_many("routing", 4, 3)


@pytest.mark.parametrize("call", ["register", "unregister", "lookup", "select_backend", "session"])
async def test_router_session_ids_over_the_limit_are_invalid_route_request(call: str) -> None:
    session_id = UntouchableStr("s" * 1025)
    async with Router() as router:
        with pytest.raises(InvalidRouteRequest) as info:
            if call == "register":
                await router.register_session(session_id, "claude")
            elif call == "unregister":
                await router.unregister_session(session_id)
            elif call == "lookup":
                await router.session_backend(session_id)
            elif call == "select_backend":
                await router.select_backend(session_id, {})
            else:
                async with router.session({}, session_id=session_id):
                    pytest.fail("an oversized session id was registered")
        assert info.value.detail == too_long("session_id", 1025)
        assert await router.sessions() == []


async def test_router_metadata_over_the_limit_is_refused_before_routing() -> None:
    async with Router(max_metadata_bytes=1000) as router:
        with pytest.raises(InvalidRouteRequest) as info:
            await router.register_session("s1", "claude", {"blob": "x" * 2000})
        assert info.value.detail["max_metadata_bytes"] == 1000
        with pytest.raises(InvalidRouteRequest) as info:
            async with router.session(ROUND_ROBIN, metadata={"blob": "x" * 2000}):
                pytest.fail("oversized metadata was registered")
        assert info.value.detail["field"] == "metadata"
        with pytest.raises(InvalidRouteRequest) as info:
            await router.register_session("s1", "claude", UntouchableDict({f"k{i}": i for i in range(1001)}))
        assert info.value.detail == {"field": "metadata", "max_metadata_bytes": 1000}
        assert await router.sessions() == []
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"  # no counter moved


async def test_router_refuses_sessions_past_max_sessions_and_evicts_none() -> None:
    async with Router(max_sessions=2) as router:
        async with router.session({}, session_id="a"), router.session({}, session_id="b"):
            with pytest.raises(TooManySessions) as info:
                async with router.session({}, session_id="c"):
                    pytest.fail("a third session was registered")
            assert info.value.code == "too_many_sessions"
            with pytest.raises(TooManySessions):
                await router.register_session("d", "claude")
            assert [s.session_id for s in await router.sessions()] == ["a", "b"]
            await router.register_session("a", "gemini")  # a live id: a heartbeat, not a new session
            assert {s.session_id for s in await router.sessions()} == {"a", "b"}
        assert await router.sessions() == []
        async with router.session({}, session_id="c") as session:
            assert session.id == "c"


# --------------------------------------------------------------------------- subscriptions


async def test_a_subscriber_that_keeps_up_loses_nothing() -> None:
    received: list[JournalEvent] = []
    gaps: list[SubscriptionGap] = []

    async def consume(subscription: Subscription) -> None:
        async for item in subscription:
            if isinstance(item, SubscriptionGap):
                gaps.append(item)
            else:
                received.append(item)

    async def caller(router: Router) -> None:
        for _ in range(20):
            await router.select_backend(ROUND_ROBIN)

    async with Router() as router:
        subscription = router.subscribe(maxlen=1000)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, subscription)
            async with anyio.create_task_group() as callers:
                for _ in range(200):
                    callers.start_soon(caller, router)
            await wait_for(lambda: len(received) + sum(g.missed for g in gaps) >= 8000, timeout=30)
            subscription.close()
    assert gaps == []
    assert subscription.missed == 0
    assert len(received) == 8000
    sequences = [event.sequence for event in received]
    assert sequences == list(range(sequences[0], sequences[0] + 8000))
    assert {event.event_type for event in received} == {"routing_selected", "audit"}


async def test_a_subscriber_that_does_not_read_loses_the_oldest_behind_a_gap() -> None:
    async with Router() as router, router.subscribe(maxlen=10) as subscription:
        for _ in range(50):
            await router.select_backend(ROUND_ROBIN)
        first = subscription.get_nowait()
        assert first == SubscriptionGap(90)
        rest = []
        while (item := subscription.get_nowait()) is not None:
            assert isinstance(item, JournalEvent)
            rest.append(item)
        latest = await router.journal(limit=10)
        assert [e.sequence for e in rest] == [e.sequence for e in latest]
        assert subscription.missed == 90


async def test_one_batch_larger_than_maxlen_drops_its_oldest_events() -> None:
    async with Router() as router:
        subscription = router.subscribe(maxlen=10)
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(router.select_backend, ROUND_ROBIN)
        items = []
        while (item := subscription.get_nowait()) is not None:
            items.append(item)
        assert isinstance(items[0], SubscriptionGap) and items[0].missed == 90
        assert len(items) == 11
        subscription.close()


async def test_subscribe_refuses_a_hostile_event_type() -> None:
    async with Router() as router:
        with pytest.raises(TypeError):
            router.subscribe(event_type=HostileObject())  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            router.subscribe(event_type="routing")
        async with router.subscribe(event_type=HostileStr("audit")) as audits:
            await router.select_backend({})
            item = audits.get_nowait()
            assert isinstance(item, JournalEvent) and item.event_type == "audit"
            assert audits.get_nowait() is None


# --------------------------------------------------------------------------- hostile values


async def test_router_stores_hostile_profile_strings_as_plain_strings() -> None:
    async with Router() as router:
        await router.put_policy_profile("p", hostile_profile())
        with pytest.raises(RoutingError) as info:
            await router.select_backend({"backend": "claude", "policy_profile_id": "p"})
        assert (info.value.code, info.value.detail) == ("policy_denied", "claude is out")
        decision = await router.select_backend({"backend": "codex", "policy_profile_id": "p"})
        assert decision.backend == "codex"
        assert (await router.statistics()).restarts == {"routing_table": 0, "session_registry": 0}


@pytest.mark.parametrize(
    "profile",
    [
        {"default": HostileStr("maybe")},
        {"mode": HostileStr("sieve")},
        {"rules": [{"decision": HostileStr("perhaps")}]},
        {"rules": [{"action": HostileStr("")}]},
        {"rules": [{"match": [HostileStr("like"), "backend", "x"]}]},
        {"rules": [{"match": HostileObject()}]},
        {"rules": [{"reason": HostileObject()}]},
        {"default": HostileObject()},
    ],
)
async def test_hostile_profiles_that_say_nothing_valid_are_invalid(profile: dict[str, Any]) -> None:
    engine = RoutingEngine()
    with pytest.raises(InvalidPolicyProfile):
        engine.put_policy_profile("p", profile)
    async with Router() as router:
        with pytest.raises(InvalidPolicyProfile):
            await router.put_policy_profile("p", profile)
        assert await router.delete_policy_profile("p") is False


async def test_an_oversized_journal_is_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        RoutingEngine(journal_size=2**70)
    with pytest.raises(ValueError):
        Router(journal_size=2**70)


# --------------------------------------------------------------------------- sessions


async def test_a_failed_unregister_does_not_hide_the_body_exception(caplog: pytest.LogCaptureFixture) -> None:
    store = UnregisterOutageStore()
    caplog.set_level(logging.WARNING, logger="beamrouting")
    async with Router(store=store) as router:
        with pytest.raises(KeyError) as info:
            async with router.session(ROUND_ROBIN, session_id="s1") as session:
                assert session.backend == "claude"
                raise KeyError("the body failed")
        assert info.value.args == ("the body failed",)
        notes = getattr(info.value, "__notes__", [])
        assert any("'s1' could not be unregistered" in note and "StoreUnavailable" in note for note in notes)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "s1" in r.getMessage()]
        assert warnings and "could not be unregistered" in warnings[0].getMessage()
        assert store.refused >= 1
        store.failing = False
        assert await router.session_backend("s1") == "claude"  # it could not be forgotten
        await router.unregister_session("s1")


async def test_a_failed_unregister_after_a_clean_body_is_raised() -> None:
    store = UnregisterOutageStore()
    async with Router(store=store) as router:
        with pytest.raises(StoreUnavailable):
            async with router.session(ROUND_ROBIN, session_id="s1"):
                pass
        store.failing = False
        await router.unregister_session("s1")
        assert await router.sessions() == []


async def test_a_nested_session_with_the_same_id_is_refused() -> None:
    async with Router() as router:
        async with router.session(ROUND_ROBIN, session_id="dup") as outer:
            with pytest.raises(SessionExists) as info:
                async with router.session({"backend": "gemini"}, session_id="dup"):
                    pytest.fail("the live session was taken over")
            assert info.value.code == "session_exists"
            assert await router.session_backend("dup") == outer.backend == "claude"
            assert [s.session_id for s in await router.sessions()] == ["dup"]
            states = {s.backend: s.live_sessions for s in await router.backend_states()}
            assert states["claude"] == 1 and states["gemini"] == 0
        assert await router.sessions() == []


async def test_register_session_with_a_live_id_replaces_it() -> None:
    async with Router() as router:
        await router.register_session("beat", "claude", {"n": 1})
        await router.register_session("beat", "codex_cli", {"n": 2})
        sessions = await router.sessions()
        assert [(s.session_id, s.backend, s.metadata) for s in sessions] == [("beat", "codex", {"n": 2})]
        live = {s.backend: s.live_sessions for s in await router.backend_states()}
        assert (live["claude"], live["codex"]) == (0, 1)
