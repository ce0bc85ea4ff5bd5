"""RedisStore: the reference scenarios through Redis, fleet-wide atomicity, outages, trio.

Every test that needs Redis uses the session's private ``redis-server`` (the ``redis_url``
fixture of tests/conftest.py; skipped when the binary is missing unless
``BEAMROUTING_REQUIRE_REDIS=1``), a unique key prefix, and runs on asyncio and uvloop only
(the Redis store does not run on trio; that it says so clearly is tested too). The outage
tests start their own server so they can kill, pause and restart it.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from beamrouting import (
    ActorCrashed,
    InvalidPolicyProfile,
    JournalEvent,
    PolicyDenied,
    RedisStore,
    RouteDecision,
    RoutingEngine,
    SessionHandle,
    StoreDataError,
    StoreUnavailable,
)
from beamrouting._runtime._router import Router
from beamrouting._store._protocol import Store
from beamrouting._store._redis._keys import stable_digest
from beamrouting.store import (
    JournalFeed,
    ListSessionsOp,
    LookupOp,
    RegisterOp,
    SelectOp,
    UnregisterOp,
)
from tests._helpers import (
    BACKENDS,
    REPO_ROOT,
    UNUSED_FILTER_PROFILE,
    every_feature,
    format_mismatches,
    profiles_for_scenarios,
    record_batch_sizes,
    run_scenario_async,
    scenario_params,
    scenarios_path,
    settle_into,
    wait_for,
)
from tests._redis import RedisServer, free_port, import_redis_or_skip
from tests.stores.redis._fleet import finish

import_redis_or_skip()

WORKER = Path(__file__).with_name("_fleet_worker.py")
RR: dict[str, Any] = {"policy": "round_robin"}
BOUND = "selected backend and bound sticky affinity"
REUSED = "reused sticky affinity backend"


def sticky(key: str, **extra: Any) -> dict[str, Any]:
    return {"policy": "sticky", "affinity_key": key, **extra}


def _counter_key(prefix: str, request: dict[str, Any]) -> str:
    engine = RoutingEngine()
    plan = engine.plan(engine.normalize(request))
    digest = hashlib.blake2b(msgspec.msgpack.encode(plan.counter_key), digest_size=16).hexdigest()
    return f"{prefix}c:{digest}"


def _binding_key(prefix: str, affinity_key: str) -> str:
    return f"{prefix}b:{stable_digest(affinity_key)}"


async def _restarts(router: Router) -> dict[str, int]:
    """How many times the supervisor restarted each actor."""
    return dict((await router.statistics()).restarts)


# --------------------------------------------------------------------------- the contract


@pytest.mark.anyio
@pytest.mark.parametrize("features", [False, True], ids=["defaults", "every-feature-on"])
@pytest.mark.parametrize("scenario", scenario_params())
async def test_reference_scenario_through_redis(
    scenario: dict[str, Any] | None, redis_url: str, prefix: str, features: bool
) -> None:
    if scenario is None:
        pytest.fail(f"reference scenarios not found at {scenarios_path()}", pytrace=False)
    options = every_feature() if features else {}
    async with Router(store=RedisStore(redis_url, prefix=prefix, **options)) as router:
        for profile_id, profile in profiles_for_scenarios():
            await router.put_policy_profile(profile_id, profile)
        if features:
            await router.put_policy_profile(*UNUSED_FILTER_PROFILE)
        mismatches = await run_scenario_async(
            scenario, router.select_backend, router.select_backend, router.clear
        )
    assert not mismatches, format_mismatches(scenario, mismatches)


@pytest.mark.anyio
async def test_journal_matches_the_engine_and_is_recorded_before_return(redis_url: str, prefix: str) -> None:
    requests = [RR, RR, sticky("a"), sticky("a"), {"policy": "explicit", "backend": "gemini"}]
    denied = {"policy": "round_robin", "policy_profile_id": "no-copilot"}
    profile = {"rules": [{"action": "backend", "match": ["eq", "backend", "copilot"], "reason": "no"}]}
    engine = RoutingEngine()
    engine.put_policy_profile("no-copilot", profile)
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        await router.put_policy_profile("no-copilot", profile)
        for request in requests:
            assert await router.select_backend(request) == engine.select_backend(request)
        with pytest.raises(PolicyDenied) as denial:
            await router.select_backend(denied)  # the shared counter moves to 3: copilot
        await router.select_backend(RR)
        await router.select_backend(RR)
        with pytest.raises(PolicyDenied):
            engine.select_backend(denied)
        engine.select_backend(RR)
        engine.select_backend(RR)
        assert denial.value.detail == "no"
        events = await router.journal()
        expected = engine.journal()
        assert [e.payload for e in events] == [e.payload for e in expected]
        assert [e.event_type for e in events] == [e.event_type for e in expected]
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert all(e.event_id.startswith("event_") and len(e.event_id) == 22 for e in events)
        assert len({e.event_id for e in events}) == len(events)
        assert await router.journal("audit", 2) == [e for e in events if e.event_type == "audit"][-2:]
        assert await router.journal(limit=1) == events[-1:]
        assert await router.journal(limit=0) == []


@pytest.mark.anyio
async def test_journal_is_capped(redis_url: str, prefix: str, inspect: Any) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, journal_size=10)) as router:
        for _ in range(500):
            await router.select_backend(RR)
        events = await router.journal()
        assert len(events) == 10
        assert events[-1].sequence == 1000
        assert [e.sequence for e in events] == list(range(991, 1001))
    assert inspect.xlen(prefix + "journal") < 500  # MAXLEN ~ trims whole stream nodes


@pytest.mark.anyio
async def test_counter_key_is_a_stable_hash_with_a_ttl(redis_url: str, prefix: str, inspect: Any) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, idle_ttl=600)) as router:
        for _ in range(3):
            await router.select_backend(RR)
    key = _counter_key(prefix, RR)
    assert inspect.get(key) == b"3"
    assert 0 < inspect.ttl(key) <= 600
    assert stable_digest(("round_robin", False)) == stable_digest(("round_robin", False))


@pytest.mark.anyio
async def test_explain_reads_the_shared_state_and_changes_nothing(redis_url: str, prefix: str) -> None:
    profile = {"rules": [{"action": "backend", "match": ["eq", "backend", "codex"], "reason": "no codex"}]}
    engine = RoutingEngine()
    engine.put_policy_profile("no-codex", profile)
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        await router.put_policy_profile("no-codex", profile)
        for request in (RR, sticky("a"), sticky("b", excluded_backends=["claude"])):
            assert await router.select_backend(request) == engine.select_backend(request)
        questions: list[dict[str, Any]] = [
            RR,
            {"policy": "round_robin", "policy_profile_id": "no-codex"},
            sticky("a"),
            sticky("a", excluded_backends=["claude"]),
            sticky("new"),
            sticky("b", policy_profile_id="no-codex"),
            {"backend": "codex", "policy_profile_id": "no-codex"},
            {"backend": "codex", "policy_profile_id": "missing"},
            {"policy": "round_robin", "excluded_backends": list(BACKENDS)},
            {"policy": "sticky"},
        ]
        for request in questions:
            assert (await router.explain(request)).to_dict() == engine.explain(request).to_dict(), request
        for request in (RR, sticky("a"), sticky("new")):  # nothing moved
            assert await router.select_backend(request) == engine.select_backend(request)


# --------------------------------------------------------------------------- sticky bindings


@pytest.mark.anyio
async def test_bindings_without_their_own_ttl_expire_after_the_idle_ttl(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, idle_ttl=600)) as router:
        await router.select_backend({"policy": "sticky", "affinity_key": "ws-idle"})
    assert 0 < inspect.pttl(_binding_key(prefix, "ws-idle")) <= 600_000
    forever = prefix + "forever:"
    async with Router(store=RedisStore(redis_url, prefix=forever, idle_ttl=None)) as router:
        await router.select_backend({"policy": "sticky", "affinity_key": "ws-idle"})
    assert inspect.pttl(_binding_key(forever, "ws-idle")) == -1


@pytest.mark.anyio
async def test_binding_ttl_slides_on_reuse_and_denials_store_nothing(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    deny_codex = {"rules": [{"action": "backend", "match": ["eq", "backend", "codex"], "reason": "no codex"}]}
    key = _binding_key(prefix, "w")
    async with Router(store=RedisStore(redis_url, prefix=prefix, binding_ttl=5.0)) as router:
        await router.put_policy_profile("no-codex", deny_codex)
        first = await router.select_backend(sticky("w"))
        assert first.backend == "claude" and first.reasons == (BOUND,)
        assert 0 < inspect.pttl(key) <= 5000
        await wait_for(lambda: inspect.pttl(key) < 4700, message="the binding's ttl does not run")
        assert (await router.select_backend(sticky("w"))).reasons == (REUSED,)
        assert inspect.pttl(key) > 4700  # the reuse slid it

        # A denied first bind stores no binding (the counter stays advanced: codex next).
        with pytest.raises(PolicyDenied):
            await router.select_backend(sticky("v", policy_profile_id="no-codex"))
        assert not inspect.exists(_binding_key(prefix, "v"))
        assert (await router.select_backend(sticky("v"))).backend == "copilot"

        # A denied reuse neither rebinds nor slides the binding.
        codex_key = _binding_key(prefix, "c")
        inspect.set(codex_key, "codex", px=5000)
        await wait_for(lambda: inspect.pttl(codex_key) < 4900)
        with pytest.raises(PolicyDenied):
            await router.select_backend(sticky("c", policy_profile_id="no-codex"))
        assert inspect.get(codex_key) == b"codex"
        assert inspect.pttl(codex_key) < 4900


@pytest.mark.anyio
async def test_bindings_expire(redis_url: str, prefix: str, inspect: Any) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, binding_ttl=0.15)) as router:
        assert (await router.select_backend(sticky("e"))).reasons == (BOUND,)
        await wait_for(lambda: not inspect.exists(_binding_key(prefix, "e")), timeout=5)
        assert (await router.select_backend(sticky("e"))).reasons == (BOUND,)


@pytest.mark.anyio
async def test_rebinding_away_from_an_ineligible_backend(redis_url: str, prefix: str, inspect: Any) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        assert (await router.select_backend(sticky("r"))).backend == "claude"
        moved = await router.select_backend(sticky("r", excluded_backends=["claude"]))
        assert moved.reasons == (BOUND,) and moved.backend != "claude"
        assert inspect.get(_binding_key(prefix, "r")) == moved.backend.encode()
        again = await router.select_backend(sticky("r"))
        assert (again.backend, again.reasons) == (moved.backend, (REUSED,))


def _race(
    monkeypatch: pytest.MonkeyPatch, store: RedisStore, rival: Router, request: dict[str, Any]
) -> list[RouteDecision]:
    """Make ``rival`` route ``request`` between ``store``'s state read and its commit, once."""
    fleet = store._fleet
    original = fleet.state
    rival_decisions: list[RouteDecision] = []

    async def read_then_rival(*args: Any, **options: Any) -> Any:
        outcome = await original(*args, **options)
        if outcome.fresh and not rival_decisions:  # a read that advanced the state (not a refresh)
            rival_decisions.append(await rival.select_backend(request))
        return outcome

    monkeypatch.setattr(fleet, "state", read_then_rival)
    return rival_decisions


@pytest.mark.anyio
async def test_a_lost_race_reuses_the_winners_backend(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    async with Router(store=store) as router, Router(store=RedisStore(redis_url, prefix=prefix)) as rival:
        winner = _race(monkeypatch, store, rival, sticky("k"))
        decision = await router.select_backend(sticky("k"))
        # Our read advanced the counter to 1 (claude), the rival's to 2 and it bound codex first.
        assert winner[0].backend == "codex" and winner[0].reasons == (BOUND,)
        assert (decision.backend, decision.reasons) == ("codex", (REUSED,))
        bound = [
            e for e in await router.journal("routing_selected") if e.payload["decision"]["reasons"] == [BOUND]
        ]
        assert len(bound) == 1  # the loser's lost attempt was never recorded


@pytest.mark.anyio
async def test_a_lost_race_checks_the_profile_against_the_winner(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    async with Router(store=store) as router, Router(store=RedisStore(redis_url, prefix=prefix)) as rival:
        await router.put_policy_profile(
            "no-codex",
            {"rules": [{"action": "backend", "match": ["eq", "backend", "codex"], "reason": "no codex"}]},
        )
        _race(monkeypatch, store, rival, sticky("k"))
        with pytest.raises(PolicyDenied) as denial:
            await router.select_backend(sticky("k", policy_profile_id="no-codex"))
        assert denial.value.detail == "no codex"
        assert (await rival.select_backend(sticky("k"))).backend == "codex"


@pytest.mark.anyio
async def test_a_lost_race_to_an_ineligible_winner_rebinds(
    redis_url: str, prefix: str, inspect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    async with Router(store=store) as router, Router(store=RedisStore(redis_url, prefix=prefix)) as rival:
        winner = _race(monkeypatch, store, rival, sticky("k", preferred_backends=["codex"]))
        decision = await router.select_backend(sticky("k", excluded_backends=["codex"]))
        # The rival bound codex, excluded here: we rebind (compare-and-set) with our counter's next value.
        assert winner[0].backend == "codex"
        assert (decision.backend, decision.reasons) == ("copilot", (BOUND,))
        assert inspect.get(_binding_key(prefix, "k")) == b"copilot"


@pytest.mark.anyio
async def test_concurrent_first_binds_from_two_routers_agree(redis_url: str, prefix: str) -> None:
    decisions: list[RouteDecision] = []
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix)) as two,
    ):

        async def call(router: Router) -> None:
            decisions.append(await router.select_backend(sticky("shared")))

        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(call, one if i % 2 else two)
        assert len({d.backend for d in decisions}) == 1
        assert Counter(d.reasons[0] for d in decisions) == {BOUND: 1, REUSED: 499}
        # Every decision returned was journaled, and nothing else.
        selected = await one.journal("routing_selected")
        assert len(selected) == 500


@pytest.mark.anyio
async def test_first_binds_in_one_batch_advance_the_counter_once(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    decisions: list[RouteDecision] = []
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:

        async def call() -> None:
            decisions.append(await router.select_backend(sticky("hot")))

        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(call)
        assert {d.backend for d in decisions} == {"claude"}
        assert Counter(d.reasons[0] for d in decisions) == {BOUND: 1, REUSED: 199}
        assert inspect.get(_counter_key(prefix, sticky("hot"))) == b"1"  # as in one process's memory
        assert (await router.select_backend(sticky("cold"))).backend == "codex"


@pytest.mark.anyio
async def test_concurrent_binds_behind_a_denied_one_behave_as_in_memory(redis_url: str, prefix: str) -> None:
    profile = {"rules": [{"action": "backend", "match": ["eq", "backend", "claude"], "reason": "no claude"}]}
    outcomes: list[str] = []
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        await router.put_policy_profile("no-claude", profile)

        async def call() -> None:
            try:
                decision = await router.select_backend(sticky("d", policy_profile_id="no-claude"))
                outcomes.append(f"{decision.backend}: {decision.reasons[0]}")
            except PolicyDenied as exc:
                outcomes.append(f"denied: {exc.detail}")

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(call)
    assert Counter(outcomes) == {"denied: no claude": 1, f"codex: {BOUND}": 1, f"codex: {REUSED}": 48}


@pytest.mark.anyio
async def test_a_batch_shares_its_round_trips(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    commits = 0
    async with Router(store=store) as router:
        original = store._settler._commit

        async def counted(*args: Any, **options: Any) -> Any:
            nonlocal commits
            commits += 1
            return await original(*args, **options)

        monkeypatch.setattr(store._settler, "_commit", counted)
        backends: list[str] = []

        async def call() -> None:
            backends.append((await router.select_backend(RR)).backend)

        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(call)
    assert Counter(backends) == {backend: 100 for backend in BACKENDS}
    assert commits <= 50, f"{commits} commit round trips for 500 concurrent calls"


@pytest.mark.anyio
async def test_a_crash_while_planning_blames_one_caller(
    redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    original = store.planner.plan

    def plan(request: Any) -> Any:
        if request.affinity_key == "boom":
            raise RuntimeError("planted bug")
        return original(request)

    monkeypatch.setattr(store.planner, "plan", plan)
    async with Router(store=store) as router:
        with pytest.raises(ActorCrashed):
            await router.select_backend(sticky("boom"))
        assert (await router.select_backend(sticky("fine"))).backend == "claude"
        assert await _restarts(router) == {"routing_table": 1, "session_registry": 0}


MALFORMED_PROFILES = [
    pytest.param(b'{"default": "maybe"}', id="invalid-profile"),
    pytest.param(b"not json", id="not-json"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("stored", MALFORMED_PROFILES)
async def test_a_malformed_stored_profile_fails_only_the_requests_naming_it(
    redis_url: str, prefix: str, inspect: Any, stored: bytes
) -> None:
    inspect.hset(prefix + "profiles", "bad", stored)
    store = RedisStore(redis_url, prefix=prefix)
    await store.start()
    try:
        requests = [
            RR,
            {"policy_profile_id": "bad"},
            RR,
            {"backend": "codex"},
            sticky("w", policy_profile_id="bad"),
            sticky("w"),
        ]
        normalize = RoutingEngine().normalize
        results = await store.routing_batch([SelectOp(normalize(r)) for r in requests])
    finally:
        await store.aclose()
    assert len(results) == len(requests)
    for index in (1, 4):
        error = results[index]
        assert isinstance(error, InvalidPolicyProfile), error
        assert "'bad'" in error.detail and "malformed" in error.detail
    decisions = [result for result in results if isinstance(result, RouteDecision)]
    assert len(decisions) == 4, results
    assert [d.backend for d in decisions[:3]] == ["claude", "codex", "codex"]
    # Bound by the request without a profile (the failed one's state read spent a counter
    # step, as a denied request's does).
    assert inspect.get(_binding_key(prefix, "w")) == decisions[3].backend.encode()
    assert decisions[3].reasons == (BOUND,)
    assert inspect.xlen(prefix + "journal") == 4  # the failed requests journal nothing


@pytest.mark.anyio
@pytest.mark.parametrize("stored", MALFORMED_PROFILES)
async def test_a_malformed_stored_profile_crashes_nothing_in_a_router(
    redis_url: str, prefix: str, inspect: Any, stored: bytes
) -> None:
    inspect.hset(prefix + "profiles", "bad", stored)
    store = RedisStore(redis_url, prefix=prefix)
    batches = record_batch_sizes(store, "routing_batch")
    async with Router(store=store) as router:
        requests = [RR, {"policy_profile_id": "bad"}, RR, {"backend": "codex"}] * 10
        outcomes: dict[int, Any] = {}
        async with anyio.create_task_group() as tg:
            for index, request in enumerate(requests):
                tg.start_soon(settle_into, outcomes, index, router.select_backend(request))
        for index, request in enumerate(requests):
            if "policy_profile_id" in request:
                assert isinstance(outcomes[index], InvalidPolicyProfile), outcomes[index]
            else:
                assert isinstance(outcomes[index], RouteDecision), outcomes[index]
        explained = await router.explain({"policy_profile_id": "bad"})
        assert explained.error is not None and explained.error["code"] == "invalid_policy_profile"
        assert await _restarts(router) == {"routing_table": 0, "session_registry": 0}
    assert max(batches) > 1  # bad and good requests shared batches


@pytest.mark.anyio
async def test_subscribe_follows_the_journal_in_redis(redis_url: str, prefix: str) -> None:
    # More in test_subscribe.py.
    store = RedisStore(redis_url, prefix=prefix)
    assert isinstance(store.journal_source(), JournalFeed)
    async with Router(store=store) as router, router.subscribe() as events:
        decision = await router.select_backend(RR)
        with anyio.fail_after(5):
            event = await events.__anext__()
        assert event == (await router.journal())[0]
        assert isinstance(event, JournalEvent) and event.payload["decision"] == decision.to_dict()


@pytest.mark.anyio
async def test_a_session_batch_is_applied_in_order(redis_url: str, prefix: str, inspect: Any) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    one, two = SessionHandle("s-1", "codex", {"k": "v"}), SessionHandle("s-2", "claude", {})
    await store.start()
    try:
        results = await store.session_batch(
            [
                RegisterOp(one),
                LookupOp("s-1"),
                RegisterOp(two),
                UnregisterOp("s-1"),
                LookupOp("s-1"),
                UnregisterOp("never-registered"),
                RegisterOp(one),
                ListSessionsOp(),
            ]
        )
        assert results == [None, "codex", None, None, None, None, None, [two, one]]
        assert await store.session_batch([ListSessionsOp(), LookupOp("s-2")]) == [[two, one], "claude"]
        assert await store.session_batch([]) == []
    finally:
        await store.aclose()
    assert inspect.zrange(prefix + "sessions:order", 0, -1) == [b"s-2", b"s-1"]


@pytest.mark.anyio
async def test_concurrent_session_calls_share_round_trips(redis_url: str, prefix: str) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    round_trips: Counter[str] = Counter()
    original = store._connection.operation

    def counted(what: str, **options: Any) -> Any:
        round_trips[what] += 1
        return original(what, **options)

    store._connection.operation = counted  # type: ignore[method-assign]
    async with Router(store=store) as router:
        round_trips.clear()
        async with anyio.create_task_group() as tg:
            for index in range(500):
                tg.start_soon(router.register_session, f"s-{index}", BACKENDS[index % 5])
        backends: dict[str, str | None] = {}

        async def lookup(session_id: str) -> None:
            backends[session_id] = await router.session_backend(session_id)

        async with anyio.create_task_group() as tg:
            for index in range(500):
                tg.start_soon(lookup, f"s-{index}")
                tg.start_soon(router.unregister_session, f"s-{index + 250}")
        for index in range(250):
            assert backends[f"s-{index}"] == BACKENDS[index % 5]
        assert [h.session_id for h in await router.sessions()] == [f"s-{index}" for index in range(250)]
    calls = sum(round_trips.values())
    assert calls <= 100, f"{calls} round trips for 1,500 concurrent session calls"


@pytest.mark.anyio
async def test_an_undecodable_stored_session_fails_only_its_reader(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    inspect.hset(prefix + "sessions", "corrupt", b"\xc1 not msgpack")
    store = RedisStore(redis_url, prefix=prefix)
    sizes = record_batch_sizes(store, "session_batch")
    async with Router(store=store) as router:
        outcomes: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(settle_into, outcomes, "register a", router.register_session("a", "codex"))
            tg.start_soon(settle_into, outcomes, "lookup corrupt", router.session_backend("corrupt"))
            tg.start_soon(settle_into, outcomes, "register b", router.register_session("b", "gemini"))
            tg.start_soon(settle_into, outcomes, "lookup a", router.session_backend("a"))
        corrupt = outcomes.pop("lookup corrupt")
        assert isinstance(corrupt, StoreDataError), corrupt
        assert f"{prefix}sessions" in str(corrupt) and "'corrupt'" in str(corrupt)
        assert outcomes == {
            "register a": SessionHandle("a", "codex", {}),
            "register b": SessionHandle("b", "gemini", {}),
            "lookup a": "codex",
        }
        assert await router.session_backend("b") == "gemini"
        assert await _restarts(router) == {"routing_table": 0, "session_registry": 0}  # no crash
    assert sizes[0] == 4  # one batch: the error went to its caller alone


# --------------------------------------------------------------------------- shared state


@pytest.mark.anyio
async def test_two_routers_share_counters_bindings_profiles_sessions_and_journal(
    redis_url: str, prefix: str
) -> None:
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix)) as two,
    ):
        rotation = [(await (one if i % 2 else two).select_backend(RR)).backend for i in range(10)]
        assert rotation == list(BACKENDS) * 2

        first = await one.select_backend(sticky("s"))
        reused = await two.select_backend(sticky("s"))
        assert (reused.backend, reused.reasons) == (first.backend, (REUSED,))

        await one.put_policy_profile("deny-all", {"default": "deny"})
        with pytest.raises(PolicyDenied):
            await two.select_backend(
                {"policy": "explicit", "backend": "codex", "policy_profile_id": "deny-all"}
            )
        assert await two.delete_policy_profile("deny-all") is True
        assert await one.delete_policy_profile("deny-all") is False
        with pytest.raises(PolicyDenied, match="unknown policy profile"):
            await one.select_backend(
                {"policy": "explicit", "backend": "codex", "policy_profile_id": "deny-all"}
            )

        await one.register_session("s-1", "codex_cli", {"host": "a"})
        await two.register_session("s-2", "claude")
        await one.register_session("s-3", "gemini")
        await two.register_session("s-1", "opencode")  # replaced, and now the latest
        assert [(h.session_id, h.backend) for h in await one.sessions()] == [
            ("s-2", "claude"),
            ("s-3", "gemini"),
            ("s-1", "opencode"),
        ]
        assert await two.session_backend("s-3") == "gemini"
        failover = await one.select_backend("s-1", {"policy": "failover"})
        assert failover.fallback_chain[-1] == "opencode"  # the registry's backend became last_backend
        await one.unregister_session("s-3")
        await one.unregister_session("never-registered")
        assert await two.session_backend("s-3") is None
        assert [h.session_id for h in await two.sessions()] == ["s-2", "s-1"]

        sequences = [e.sequence for e in await two.journal()]
        assert sequences == list(range(1, len(sequences) + 1))
        assert await one.journal() == await two.journal()


@pytest.mark.anyio
async def test_clear_forgets_only_this_prefixs_counters_and_bindings(redis_url: str, prefix: str) -> None:
    other = prefix + "other-deployment-"
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix)) as router,
        Router(store=RedisStore(redis_url, prefix=other)) as neighbour,
    ):
        for r in (router, neighbour):
            await r.select_backend(RR)
            await r.select_backend(sticky("k", excluded_backends=["claude"]))
            await r.put_policy_profile("p", {"default": "deny"})
            await r.register_session("s", "codex")
        journal = await router.journal()
        await router.clear()
        assert (await router.select_backend(RR)).backend == "claude"
        assert (await router.select_backend(sticky("k"))).reasons == (BOUND,)
        assert (await neighbour.select_backend(RR)).backend == "codex"
        assert (await neighbour.select_backend(sticky("k", excluded_backends=["claude"]))).reasons == (
            REUSED,
        )
        with pytest.raises(PolicyDenied, match="default"):
            await router.select_backend({"policy_profile_id": "p"})
        assert await router.session_backend("s") == "codex"
        assert (await router.journal())[: len(journal)] == journal
        await router.ensure_tables()


# --------------------------------------------------------------------------- several processes


def _spawn(url: str, prefix: str, mode: str, calls: int, concurrency: int, barrier: str, parties: int) -> Any:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, prefix, mode, str(calls), str(concurrency), barrier, str(parties)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_fleet(
    url: str, prefix: str, mode: str, calls: int, concurrency: int, workers: int
) -> list[dict[str, Any]]:
    barrier = f"{prefix}test-barrier:{uuid.uuid4().hex}"
    processes = [_spawn(url, prefix, mode, calls, concurrency, barrier, workers) for _ in range(workers)]
    return finish(processes, timeout=90)


def test_fleet_round_robin_spreads_exactly_evenly(redis_url: str, prefix: str) -> None:
    results = _run_fleet(redis_url, prefix, "round_robin", 1000, 100, 2)
    assert all(not r["errors"] for r in results), results[0]["errors"][:3]
    assert all(len(r["backends"]) == 1000 for r in results)
    assert all(len(set(r["backends"])) == 5 for r in results)  # both took part in one rotation
    assert Counter(b for r in results for b in r["backends"]) == {backend: 400 for backend in BACKENDS}


def test_fleet_first_binds_agree_and_bindings_are_reused_across_processes(
    redis_url: str, prefix: str
) -> None:
    results = _run_fleet(redis_url, prefix, "sticky", 250, 250, 2)
    assert all(not r["errors"] for r in results), results[0]["errors"][:3]
    backends = {b for r in results for b in r["backends"]}
    assert len(backends) == 1 and sum(len(r["backends"]) for r in results) == 500
    assert Counter(reason for r in results for reason in r["reasons"]) == {BOUND: 1, REUSED: 499}

    (later,) = _run_fleet(redis_url, prefix, "sticky", 1, 1, 1)
    assert later == {"backends": list(backends), "reasons": [REUSED], "errors": []}


# --------------------------------------------------------------------------- failures


@pytest.mark.anyio
async def test_unreachable_redis_fails_router_start() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
        async with Router(store=RedisStore(url)):
            pytest.fail("the router started without Redis")
    assert time.monotonic() - start < 2.0


async def _outage_calls(router: Router, call_timeout: float) -> list[float | str]:
    """30 concurrent calls of every kind; each is ``"ok"`` or the seconds it took to fail."""
    outcomes: list[float | str] = []
    calls: list[Callable[[], Any]] = [
        lambda: router.select_backend(RR),
        lambda: router.select_backend(sticky("w")),
        lambda: router.select_backend(sticky("new")),
        lambda: router.journal(),
        lambda: router.register_session("x", "codex"),
        lambda: router.session_backend("x"),
    ]

    async def one(call: Callable[[], Any]) -> None:
        started = anyio.current_time()
        with anyio.fail_after(call_timeout + 1):  # a hang fails the test instead of blocking it
            try:
                await call()
                outcomes.append("ok")
            except StoreUnavailable:
                outcomes.append(anyio.current_time() - started)

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(one, calls[i % len(calls)])
    return outcomes


@pytest.mark.anyio
async def test_redis_killed_and_restarted(private_redis: RedisServer, prefix: str) -> None:
    store = RedisStore(private_redis.url, prefix=prefix, operation_timeout=0.5)
    async with Router(store=store, call_timeout=5.0) as router:
        bound = await router.select_backend(sticky("w"))
        for _ in range(3):
            await router.select_backend(RR)
        assert private_redis.command("SAVE") == b"+OK"  # what a persistent deployment keeps
        private_redis.kill()

        outcomes = await _outage_calls(router, 5.0)
        assert "ok" not in outcomes
        assert max(outcome for outcome in outcomes if not isinstance(outcome, str)) < 2.0
        assert await _restarts(router) == {"routing_table": 0, "session_registry": 0}  # not crashes

        private_redis.start()

        async def back() -> bool:
            try:
                await router.select_backend(sticky("w"))
            except StoreUnavailable:
                return False
            return True

        await wait_for(back, timeout=10, message="routing did not resume after Redis came back")
        again = await router.select_backend(sticky("w"))
        assert (again.backend, again.reasons) == (bound.backend, (REUSED,))
        assert (await router.select_backend(RR)).backend == "gemini"  # the counter kept its value, 3
        assert await _restarts(router) == {"routing_table": 0, "session_registry": 0}


@pytest.mark.anyio
@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="pausing a process needs SIGSTOP")
async def test_redis_not_answering_fails_calls_in_time(private_redis: RedisServer, prefix: str) -> None:
    store = RedisStore(private_redis.url, prefix=prefix, operation_timeout=0.3)
    async with Router(store=store, call_timeout=3.0) as router:
        before = await router.select_backend(sticky("w"))
        private_redis.pause()
        try:
            outcomes = await _outage_calls(router, 3.0)
        finally:
            private_redis.resume()
        assert "ok" not in outcomes
        assert max(outcome for outcome in outcomes if not isinstance(outcome, str)) < 1.5

        async def back() -> bool:
            try:
                await router.select_backend(sticky("w"))
            except StoreUnavailable:
                return False
            return True

        await wait_for(back, timeout=10)
        assert (await router.select_backend(sticky("w"))).backend == before.backend
        assert await _restarts(router) == {"routing_table": 0, "session_registry": 0}
        # No decision was returned that was not recorded (some recorded ones may not have been returned).
        assert len(await router.journal("routing_selected")) >= 3


# --------------------------------------------------------------------------- environment


def test_trio_is_refused_clearly() -> None:
    async def construct() -> None:
        RedisStore("redis://127.0.0.1:1/0")

    with pytest.raises(RuntimeError, match="trio"):
        anyio.run(construct, backend="trio")

    store = RedisStore("redis://127.0.0.1:1/0")

    async def enter() -> None:
        async with Router(store=store):
            pass

    with pytest.raises(RuntimeError, match="trio"):
        anyio.run(enter, backend="trio")


def test_ttls_must_be_finite_numbers_of_seconds() -> None:
    url = "redis://127.0.0.1:1/0"
    for name in ("binding_ttl", "idle_ttl", "session_ttl"):
        infinite: dict[str, Any] = {name: math.inf}
        with pytest.raises(ValueError, match=f"{name} must be a finite"):
            RedisStore(url, **infinite)
        text: dict[str, Any] = {name: "60"}
        with pytest.raises(TypeError, match=name):
            RedisStore(url, **text)
    with pytest.raises(TypeError, match="journal_size"):
        RedisStore(url, journal_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="operation_timeout"):
        RedisStore(url, operation_timeout="1")  # type: ignore[arg-type]
    assert RedisStore(url, idle_ttl=None, binding_ttl=None).idle_ttl is None


def test_arguments_are_checked() -> None:
    for kwargs in (
        {"prefix": ""},
        {"binding_ttl": 0},
        {"idle_ttl": -1},
        {"journal_size": -1},
        {"operation_timeout": 0},
    ):
        with pytest.raises(ValueError):
            RedisStore("redis://127.0.0.1:1/0", **kwargs)
    with pytest.raises(ValueError):
        RedisStore("")
    store = RedisStore("redis://user:secret@127.0.0.1:1/0", prefix="p:")
    assert "secret" not in repr(store) and "p:" in repr(store)
    assert isinstance(store, Store)


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ImportError, match=r"pip install 'beamrouting\[redis\]'"):
        RedisStore("redis://127.0.0.1:1/0")


def test_the_package_imports_without_redis() -> None:
    code = (
        "import sys; sys.modules['redis'] = None; sys.modules['redis.asyncio'] = None\n"
        "import beamrouting, beamrouting._store._redis._store as m\n"
        "try:\n    m.RedisStore('redis://localhost')\n"
        "except ImportError as e:\n    print(e)\n"
    )
    root = str(REPO_ROOT)
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'beamrouting[redis]'" in done.stdout
