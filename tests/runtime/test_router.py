"""The async Router: the reference scenarios, the API, backpressure, timeouts and cancellation.

Every test runs on asyncio, uvloop and trio. Nothing here sleeps to wait for state: tests
wait on conditions (``wait_for``) or on events the test controls.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest

from beamrouting import (
    CallTimeout,
    Catalog,
    InvalidPolicyProfile,
    InvalidRouteRequest,
    MemoryStore,
    Policy,
    RouteDecision,
    Router,
    RouterClosed,
    RouteRequest,
    RouterSession,
    RouterStatistics,
    RoutingEngine,
    RoutingError,
    SessionExists,
    SessionHandle,
    UnknownBackend,
)
from beamrouting._runtime._messages import Failed, Select, new_encoder, reply_decoder
from tests._helpers import (
    UNUSED_FILTER_PROFILE,
    every_feature,
    format_mismatches,
    profiles_for_scenarios,
    require_scenario,
    run_scenario_async,
    scenario_params,
    wait_for,
)
from tests._stores import GatedStore

pytestmark = pytest.mark.anyio

ROUND_ROBIN = {"policy": "round_robin"}
SCENARIOS = scenario_params()


@asynccontextmanager
async def scenario_router(features: bool = False) -> AsyncIterator[Router]:
    async with Router(**every_feature()) if features else Router() as router:
        for profile_id, profile in profiles_for_scenarios():
            await router.put_policy_profile(profile_id, profile)
        if features:
            await router.put_policy_profile(*UNUSED_FILTER_PROFILE)
        yield router


def outcome(call: Any) -> Any:
    """A decision as a dict, or ``(code, detail)`` for a routing error."""
    try:
        return call().to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


async def encoded_call(mailbox: Any, data: bytes) -> bytes:
    """Send raw bytes to an actor's mailbox; return its reply, which must be encoded."""
    answer = await mailbox.call(data)
    assert type(answer) is bytes
    return answer


async def router_outcome(router: Router, *args: Any) -> Any:
    try:
        return (await router.select_backend(*args)).to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


# --------------------------------------------------------------------------- the contract


@pytest.mark.parametrize("features", [False, True], ids=["defaults", "every-feature-on"])
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_scenario_through_router(scenario: dict[str, Any] | None, features: bool) -> None:
    scenario = require_scenario(scenario)
    async with scenario_router(features) as router:
        mismatches = await run_scenario_async(
            scenario, router.select_backend, router.select_backend, router.clear
        )
    assert not mismatches, format_mismatches(scenario, mismatches)


class _Unhashable(dict[str, Any]):
    __hash__ = None


BAD_REQUESTS: list[Any] = [
    None,
    42,
    "round_robin",
    ["policy"],
    {"policy": None},
    {"policy": "nope"},
    {"bogus": 1, "another": 2},
    {1: "x"},
    {"backend": "Claude"},
    {"backend": ["claude"]},
    {"preferred_backends": None},
    {"preferred_backends": [{"a": 1}]},
    {"excluded_backends": [_Unhashable()]},
    {"capabilities": "hooks"},
    {"capabilities": ["nope"]},
    {"last_backend": 3},
    {"fallback_policy": None},
    {"affinity_key": ""},
    {"affinity_key": 5},
    {"policy_profile_id": ""},
    {"health": []},
    {"health": {"claude": "sick"}},
    {"health": {"nobody": "down"}},
    {"policy": "sticky"},
    {"backend": "codex", "excluded_backends": ["codex"]},
    {
        "policy": "capability_first",
        "capabilities": ["hooks"],
        "health": {b: "down" for b in Catalog.default().backends},
    },
    {"excluded_backends": list(Catalog.default().backends)},
    {"policy_profile_id": "deny-claude", "backend": "claude"},
]


async def test_bad_input_gets_the_engines_typed_error_and_the_router_keeps_serving() -> None:
    engine = RoutingEngine()
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    async with scenario_router() as router:
        for request in BAD_REQUESTS:
            expected = outcome(lambda request=request: engine.select_backend(request))
            assert isinstance(expected, tuple), request
            assert await router_outcome(router, request) == expected, request
        for session, request in [("", {}), (7, {}), ({"routing": 5}, {}), ("s", None), (None, {})]:
            expected = outcome(lambda s=session, r=request: engine.select_backend(s, r))
            assert await router_outcome(router, session, request) == expected, (session, request)
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"
        stats = await router.statistics()
    assert stats.restarts == {"routing_table": 0, "session_registry": 0}
    assert sum(stats.errors.values()) == len(BAD_REQUESTS) + 5


async def test_wrong_number_of_arguments_is_a_type_error() -> None:
    async with Router() as router:
        with pytest.raises(TypeError):
            await router.select_backend()  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            await router.select_backend({}, {}, {})  # type: ignore[call-overload]


async def test_actor_never_trusts_the_bytes() -> None:
    """Bytes that do not decode, or decode to a request the catalogue rejects, get typed errors."""
    async with Router() as router:
        assert router._supervisor is not None
        mailbox = router._supervisor.child("routing_table").mailbox
        decode = reply_decoder().decode
        encode = new_encoder().encode
        forged = [
            b"\xc1",  # never valid msgpack
            encode(["select"]),
            encode(["no_such_message"]),
            encode({"not": "an array"}),
            encode(Select(RouteRequest(Policy.EXPLICIT, backend="no-such-backend"))),
            encode(Select(RouteRequest(Policy.ROUND_ROBIN, capabilities=("no-such-capability",)))),
            encode(Select(RouteRequest(Policy.STICKY, affinity_key=""))),
        ]
        replies = [decode(await encoded_call(mailbox, data)) for data in forged]
        assert all(type(reply) is Failed for reply in replies)
        codes = [reply.code for reply in replies if type(reply) is Failed]
        assert codes[:4] == ["invalid_route_request"] * 4
        assert codes[4:] == ["unknown_backend", "unknown_capability", "invalid_route_request"]
        session_mailbox = router._supervisor.child("session_registry").mailbox
        reply = decode(
            await encoded_call(session_mailbox, encode(["register", {"session_id": "s", "backend": "nope"}]))
        )
        assert type(reply) is Failed and reply.code == "unknown_backend"
        assert await router.sessions() == []
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"
        assert (await router.statistics()).restarts == {"routing_table": 0, "session_registry": 0}


async def test_select_backend_with_session_and_options() -> None:
    async with Router() as router:
        await router.register_session("s1", "codex_cli")
        # A registered session id: its id is the affinity key, its backend the last one.
        decision = await router.select_backend("s1", {"policy": "failover"})
        assert decision.backend == "claude"
        assert decision.reasons == ("skipped last backend and selected failover candidate",)
        decision = await router.select_backend("s1", {"policy": "sticky"})
        assert decision.affinity_key == "s1"
        # An unknown id only contributes the affinity key.
        decision = await router.select_backend("unknown", {"policy": "failover"})
        assert decision.reasons == ("selected first failover candidate",)
        handle = SessionHandle("whatever", "gemini")
        decision = await router.select_backend(handle, {"policy": "failover"})
        assert decision.backend == "claude" and decision.candidates[-1] == "gemini"
        decision = await router.select_backend(
            {"backend": "copilot", "routing": {"policy": "round_robin"}}, {}
        )
        assert decision.backend == "copilot" and decision.policy is Policy.EXPLICIT


async def test_profiles_journal_and_explain() -> None:
    engine = RoutingEngine()
    async with Router() as router:
        for bad in [None, {"default": "maybe"}, {"rules": [{"match": ["nope", "x"]}]}, {"rules": "x"}]:
            with pytest.raises(InvalidPolicyProfile) as caught:
                await router.put_policy_profile("p", bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidPolicyProfile) as expected:
                engine.put_policy_profile("p", bad)  # type: ignore[arg-type]
            assert caught.value == expected.value
        with pytest.raises(InvalidPolicyProfile):
            await router.put_policy_profile("", {})
        await router.put_policy_profile(
            "no-codex", {"rules": [{"match": ["eq", "backend", "codex"], "reason": "no"}]}
        )
        await router.ensure_tables()
        assert (
            await router.select_backend({"policy_profile_id": "no-codex", "backend": "claude"})
        ).backend == "claude"
        with pytest.raises(RoutingError) as denied:
            await router.select_backend({"policy_profile_id": "no-codex", "backend": "codex"})
        assert (denied.value.code, denied.value.detail) == ("policy_denied", "no")
        assert await router.delete_policy_profile("no-codex") is True
        assert await router.delete_policy_profile("no-codex") is False
        with pytest.raises(InvalidPolicyProfile):  # as the engine: no profile has such an id
            await router.delete_policy_profile(["unhashable"])  # type: ignore[arg-type]

        events = await router.journal()
        assert [e.event_type for e in events] == ["routing_selected", "audit", "audit"]
        assert [e.sequence for e in events] == [1, 2, 3]
        assert events[2].payload["decision"] == "deny"
        assert [e.event_type for e in await router.journal("audit", 1)] == ["audit"]
        assert await router.journal(limit=0) == []
        for bad_type in [1, b"audit"]:
            with pytest.raises(InvalidRouteRequest):
                await router.journal(bad_type)  # type: ignore[arg-type]
        for bad_limit in ["1", 1.5, True]:
            with pytest.raises(InvalidRouteRequest):
                await router.journal(limit=bad_limit)  # type: ignore[arg-type]

        await router.select_backend(ROUND_ROBIN)
        explanation = await router.explain(ROUND_ROBIN)
        assert explanation.decision is not None and explanation.decision.backend == "codex"
        assert (await router.select_backend(ROUND_ROBIN)).backend == "codex"  # explain moved nothing
        with pytest.raises(UnknownBackend):
            await router.explain({"backend": "nope"})


async def test_clear_forgets_bindings_and_counters() -> None:
    async with Router() as router:
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"
        assert (await router.select_backend(ROUND_ROBIN)).backend == "codex"
        await router.clear()
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"


# --------------------------------------------------------------------------- sessions


async def test_session_registry() -> None:
    async with Router() as router:
        handle = await router.register_session("s1", "claude_code", {"workspace": "/w", "n": [1, 2]})
        assert handle == SessionHandle("s1", "claude", {"workspace": "/w", "n": [1, 2]})
        await router.register_session("s2", "opencode_client")
        assert await router.session_backend("s1") == "claude"
        assert await router.session_backend("nope") is None
        assert [h.session_id for h in await router.sessions()] == ["s1", "s2"]
        await router.register_session("s1", "codex")  # replaces
        assert await router.session_backend("s1") == "codex"
        await router.unregister_session("s1")
        await router.unregister_session("s1")  # a no-op
        assert [h.session_id for h in await router.sessions()] == ["s2"]

        for session_id in ["", 5, None, b"s"]:
            with pytest.raises(InvalidRouteRequest) as caught:
                await router.register_session(session_id, "claude")  # type: ignore[arg-type]
            assert caught.value.detail == "session_id"
            with pytest.raises(InvalidRouteRequest):
                await router.session_backend(session_id)  # type: ignore[arg-type]
            with pytest.raises(InvalidRouteRequest):
                await router.unregister_session(session_id)  # type: ignore[arg-type]
        for backend in ["auto", None, "Claude", ["claude"], _Unhashable()]:
            with pytest.raises(UnknownBackend):
                await router.register_session("s3", backend)  # type: ignore[arg-type]
        for metadata in [[1], {1: "x"}, {"x": object()}, {"x": 2**70}]:
            with pytest.raises(InvalidRouteRequest) as caught:
                await router.register_session("s3", "claude", metadata)  # type: ignore[arg-type]
            assert caught.value.detail == "metadata"
        assert [h.session_id for h in await router.sessions()] == ["s2"]


async def test_session_context_registers_then_unregisters() -> None:
    async with Router() as router:
        async with router.session({"policy": "round_robin"}, metadata={"who": "me"}) as session:
            assert isinstance(session, RouterSession)
            assert session.backend == session.decision.backend == "claude"
            assert session.handle == SessionHandle(session.id, "claude", {"who": "me"})
            assert len(session.id) == 32
            assert await router.session_backend(session.id) == "claude"
        assert await router.sessions() == []

        await router.register_session("s1", "gemini")
        with pytest.raises(SessionExists):  # a live id is refused; the live session is untouched
            async with router.session({"policy": "failover"}, session_id="s1"):
                pytest.fail("a live session id was taken over")
        assert await router.session_backend("s1") == "gemini"
        await router.unregister_session("s1")
        async with router.session({"policy": "failover"}, session_id="s1") as session:
            assert session.id == "s1"
            assert session.decision.reasons == ("selected first failover candidate",)
            assert await router.session_backend("s1") == session.backend == "claude"
        assert await router.session_backend("s1") is None

        async with router.session({}, opts={"backend": "copilot_client"}, session_id="s2") as session:
            assert (session.id, session.backend, session.decision.policy) == (
                "s2",
                "copilot",
                Policy.EXPLICIT,
            )

        async with router.session() as session:
            assert session.decision.policy is Policy.PREFERRED_THEN_FALLBACK


async def test_session_context_unregisters_on_error_and_cancellation() -> None:
    async with Router() as router:
        with pytest.raises(ZeroDivisionError):
            async with router.session(session_id="boom"):
                assert await router.session_backend("boom") == "claude"
                raise ZeroDivisionError
        assert await router.sessions() == []

        entered = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def start_session() -> None:
                async with router.session(session_id="cancelled"):
                    entered.set()
                    await anyio.sleep_forever()

            tg.start_soon(start_session)
            await entered.wait()
            assert await router.session_backend("cancelled") == "claude"
            tg.cancel_scope.cancel()
        assert await router.sessions() == []

        with pytest.raises(InvalidRouteRequest):
            async with router.session(session_id=""):
                pass
        with pytest.raises(InvalidRouteRequest):
            async with router.session(metadata={"x": object()}):
                pass
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"  # no counter moved
        assert await router.sessions() == []


# --------------------------------------------------------------------------- lifecycle


async def test_calls_outside_the_block_raise_router_closed() -> None:
    router = Router()
    with pytest.raises(RouterClosed):
        await router.select_backend(ROUND_ROBIN)
    async with router:
        await router.select_backend(ROUND_ROBIN)
    for call in [
        router.select_backend(ROUND_ROBIN),
        router.select_backend("s", ROUND_ROBIN),
        router.clear(),
        router.sessions(),
        router.register_session("s", "claude"),
    ]:
        with pytest.raises(RouterClosed):
            await call
    assert (await router.statistics()).state == "closed"
    with pytest.raises(RuntimeError):
        async with router:
            pass


async def test_constructor_arguments_are_checked() -> None:
    bad: list[dict[str, Any]] = [
        {"max_restarts": -1},
        {"restart_period": 0},
        {"mailbox_size": 0},
        {"call_timeout": 0},
        {"call_timeout": math.nan},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            Router(**kwargs)
    with pytest.raises(TypeError):  # a wrong type is a TypeError, as for every option
        Router(max_restarts=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Router(Catalog.default(), store=MemoryStore())
    with pytest.raises(TypeError):
        Router(store=MemoryStore(), journal_size=3)


async def test_state_lives_in_the_store_across_routers() -> None:
    store = MemoryStore(journal_size=100)
    async with Router(store=store) as router:
        await router.select_backend(ROUND_ROBIN)
        await router.register_session("s1", "codex")
    async with Router(store=store) as router:
        assert (await router.select_backend(ROUND_ROBIN)).backend == "codex"
        assert await router.session_backend("s1") == "codex"
        assert len(await router.journal()) == 4


async def test_a_custom_catalogue_is_routable() -> None:
    catalog = Catalog(["alpha", "beta"], ["x"])
    async with Router(catalog, max_bindings=10) as router:
        assert router.catalog is catalog
        assert (await router.select_backend({"backend": "beta"})).backend == "beta"
        assert (await router.register_session("s", "alpha")).backend == "alpha"
        with pytest.raises(UnknownBackend):
            await router.select_backend({"backend": "claude"})


async def test_statistics() -> None:
    async with Router(mailbox_size=64) as router:
        await router.select_backend(ROUND_ROBIN)
        with pytest.raises(RoutingError):
            await router.select_backend({"policy": "nope"})
        await router.register_session("s", "claude")
        stats = await router.statistics()
    assert isinstance(stats, RouterStatistics)
    assert stats.state == "running"
    assert stats.calls == 3
    assert stats.errors == {"invalid_policy": 1}
    assert stats.mailbox_depths == {"routing_table": 0, "session_registry": 0}
    assert stats.mailbox_size == 64
    assert stats.restarts == {"routing_table": 0, "session_registry": 0}
    assert msgspec.json.decode(msgspec.json.encode(stats), type=RouterStatistics) == stats


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_first_sticky_requests_get_one_backend() -> None:
    async with Router() as router:
        decisions: list[RouteDecision] = []

        async def call() -> None:
            decisions.append(await router.select_backend({"policy": "sticky", "affinity_key": "workspace"}))

        async with anyio.create_task_group() as tg:
            for _ in range(1_000):
                tg.start_soon(call)
    assert len(decisions) == 1_000
    assert {d.backend for d in decisions} == {"claude"}
    assert sum(d.reasons == ("selected backend and bound sticky affinity",) for d in decisions) == 1


async def test_concurrent_round_robin_is_spread_exactly_evenly() -> None:
    backends = Catalog.default().backends
    async with Router() as router:
        counts: Counter[str] = Counter()

        async def call() -> None:
            counts[(await router.select_backend(ROUND_ROBIN)).backend] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(10_000):
                tg.start_soon(call)
    assert counts == dict.fromkeys(backends, 10_000 // len(backends))


async def test_concurrent_round_robin_over_three_candidates() -> None:
    request = {
        "policy": "round_robin",
        "preferred_backends": ["gemini", "codex"],
        "fallback_backends": "claude",
        "fallback_policy": "none",
    }
    async with Router() as router:
        counts: Counter[str] = Counter()

        async def call() -> None:
            counts[(await router.select_backend(request)).backend] += 1

        async with anyio.create_task_group() as tg:
            for _ in range(3_000):
                tg.start_soon(call)
    assert counts == {"gemini": 1_000, "codex": 1_000, "claude": 1_000}


# --------------------------------------------------------------------------- backpressure and timeouts


async def test_a_full_mailbox_makes_callers_wait_then_serves_them_all() -> None:
    store = GatedStore()
    async with Router(store=store, mailbox_size=4) as router:
        store.close_gate()
        results: list[str] = []

        async def call() -> None:
            results.append((await router.select_backend(ROUND_ROBIN)).backend)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await wait_for(lambda: store.waiting == 1)  # one message in hand, held by the store
            for _ in range(19):
                tg.start_soon(call)
            # 4 queued, 15 callers blocked on the full mailbox.
            await wait_for(lambda: _depth(router) == 19)
            store.open_gate()
        assert Counter(results) == dict.fromkeys(Catalog.default().backends, 4)
        assert _depth(router) == 0


def _depth(router: Router) -> int:
    assert router._supervisor is not None
    return router._supervisor.child("routing_table").mailbox.depth


async def test_no_reply_within_the_call_timeout_raises_call_timeout() -> None:
    store = GatedStore()
    async with Router(store=store, call_timeout=0.1) as router:
        store.close_gate()
        with anyio.fail_after(5), pytest.raises(CallTimeout):
            await router.select_backend(ROUND_ROBIN)
        store.open_gate()
        # The timed-out message may still be applied (as in Erlang); the router goes on.
        assert (await router.select_backend(ROUND_ROBIN)).backend in ("claude", "codex")
        assert (await router.statistics()).errors == {"call_timeout": 1}


async def test_a_mailbox_that_stays_full_raises_call_timeout() -> None:
    store = GatedStore()
    async with Router(store=store, call_timeout=0.2, mailbox_size=1) as router:
        store.close_gate()
        outcomes: list[str] = []

        async def call() -> None:
            try:
                await router.select_backend(ROUND_ROBIN)
                outcomes.append("ok")
            except CallTimeout:
                outcomes.append("timeout")

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(call)
                await wait_for(lambda: store.waiting == 1)
                tg.start_soon(call)  # queued
                await wait_for(lambda: _depth(router) == 1)
                tg.start_soon(call)  # blocked: the mailbox is full
                await wait_for(lambda: _depth(router) == 2)
        assert outcomes == ["timeout"] * 3
        assert _depth(router) == 1  # the queued message is still there, its caller gone
        store.open_gate()
        await router.select_backend(ROUND_ROBIN)
        assert _depth(router) == 0


async def test_a_cancelled_caller_leaves_nothing_behind() -> None:
    store = GatedStore()
    async with Router(store=store, mailbox_size=2) as router:
        store.close_gate()
        async with anyio.create_task_group() as tg:
            tg.start_soon(router.select_backend, ROUND_ROBIN)
            await wait_for(lambda: store.waiting == 1)  # in hand
            for _ in range(4):  # 2 queued, 2 blocked on the full mailbox
                tg.start_soon(router.select_backend, ROUND_ROBIN)
            await wait_for(lambda: _depth(router) == 4)
            tg.cancel_scope.cancel()
        assert _depth(router) == 2  # the blocked senders withdrew; the queued messages stay
        store.open_gate()
        # Messages of cancelled callers may still be applied: the three sent ones were.
        assert (await router.select_backend(ROUND_ROBIN)).backend == "gemini"
        assert _depth(router) == 0
        assert router._supervisor is not None
        mailbox = router._supervisor.child("routing_table").mailbox
        assert all(mailbox.answered(slot) for _, slot in mailbox._pending)
        assert (await router.statistics()).errors == {}


class HostileStr(str):
    """A str whose own methods all raise: only its characters may be used."""

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __repr__(self) -> str:
        raise RuntimeError("repr")


async def test_hostile_strings_get_typed_errors_or_plain_copies() -> None:
    engine = RoutingEngine()
    async with Router() as router:
        session = HostileStr("k1")
        expected = outcome(lambda: engine.select_backend(session, {"policy": "sticky"}))
        assert expected["affinity_key"] == "k1"  # routed on a plain copy of the characters
        assert await router_outcome(router, session, {"policy": "sticky"}) == expected
        with pytest.raises(InvalidRouteRequest):  # metadata must be plain data
            await router.register_session("s1", "codex", {"k": HostileStr("v")})
        handle = await router.register_session(HostileStr("s1"), HostileStr("codex_cli"), {"k": "v"})
        assert handle == SessionHandle("s1", "codex", {"k": "v"})
        assert type(handle.session_id) is str
        assert await router.session_backend(HostileStr("s1")) == "codex"
        await router.unregister_session(HostileStr("s1"))
        await router.put_policy_profile(HostileStr("p"), {})
        assert await router.delete_policy_profile(HostileStr("p")) is True
        audits = await router.journal(HostileStr("audit"))
        assert [event.payload["backend"] for event in audits] == [expected["backend"]]
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"
        assert (await router.statistics()).restarts == {"routing_table": 0, "session_registry": 0}
