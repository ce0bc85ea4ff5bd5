"""RedisStore: what the fleet learns (reports, probes, temporary backends), its clock, its journal, its checks.

Several stores on one prefix stand for the processes of a fleet (test_fleet_processes.py
runs real ones). Time is an injected clock moved by hand; nothing sleeps to wait for it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from beamrouting import (
    ActorCrashed,
    BackendNotEligible,
    BackendState,
    BackendStatus,
    HealthPolicy,
    JournalEvent,
    NoBackendAvailable,
    Outcome,
    RedisStore,
    RoutingEngine,
    StoreDataError,
)
from beamrouting._runtime._router import Router
from beamrouting._store._redis import _view
from beamrouting._store._redis._keys import stable_digest
from beamrouting.store import LookupOp, ReadStatesOp, RegisterOp, ReportOp, SelectOp, SessionHandle
from beamrouting.testing import crash_actor
from tests._helpers import REPO_ROOT
from tests._redis import import_redis_or_skip
from tests.stores.redis._fleet import START, Clock, script_calls

import_redis_or_skip()

pytestmark = pytest.mark.anyio

RR: dict[str, Any] = {"policy": "round_robin"}
TEMPORARY = "selected temporary backend while bound backend is out"


def sticky(key: str) -> dict[str, Any]:
    return {"policy": "sticky", "affinity_key": key}


def only(*backends: str) -> dict[str, Any]:
    """Round robin among ``backends`` alone (the others excluded)."""
    others = [b for b in ("claude", "codex", "copilot", "gemini", "opencode") if b not in backends]
    return {"policy": "round_robin", "excluded_backends": others}


async def restarts(router: Router) -> dict[str, int]:
    return dict((await router.statistics()).restarts)


# --------------------------------------------------------------------------- 1. options: the clock


async def test_the_clock_is_redis_s_own_unless_one_is_injected(
    redis_url: str, prefix: str, inspect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = time.time
    monkeypatch.setattr(_view, "wall", lambda: real() + 3600.0)  # this host's clock is an hour fast
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        await router.select_backend(RR)  # each script answers Redis's clock
        seconds, micros = inspect.time()
        assert abs(router.store.clock() - (seconds + micros / 1e6)) < 1.0  # Redis's, as estimated
        state = await router.report("codex", "quota", retry_after=60)
        seconds, _ = inspect.time()
        assert state.until is not None and abs(state.until - (seconds + 60)) < 2.0

    clock = Clock()
    store = RedisStore(
        redis_url, prefix=prefix + "injected:", clock=clock, session_ttl=60, limits={"codex": 1}
    )
    assert store.clock is clock or store.clock() == START
    async with Router(store=store) as router:
        await router.register_session("s", "codex")
        assert inspect.zscore(prefix + "injected:sessions:expiry", "s") == START * 1000 + 60_000
        clock.advance(61)  # the scripts judge the session's deadline by the injected clock
        assert await router.session_backend("s") is None
        assert (await router.backend_states())[1].live_sessions == 0
        await router.register_session("t", "codex")  # the slot is free again


# --------------------------------------------------------------------------- 2. learned state


async def test_a_report_in_one_process_changes_the_next_selection_in_every_process(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    clock = Clock()
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as two,
    ):
        assert (await two.select_backend(RR)).backend == "claude"  # it read the fleet's state
        state = await one.report("codex", "quota", retry_after=60)
        assert (state.status, state.until) == (BackendStatus.COOLING, START + 60)
        assert "codex" not in [(await two.select_backend(RR)).backend for _ in range(8)]
        verdicts = {v.backend: v for v in (await two.explain(RR)).backends}
        assert verdicts["codex"].reasons == ("cooling until 2027-01-15T08:01:00Z (quota)",)
        assert [s.status for s in await two.backend_states()][1] is BackendStatus.COOLING
        assert inspect.hexists(prefix + "health", "codex")  # in Redis, not in a process

        crash_actor(two, "routing_table")  # a restarted actor loses nothing
        with pytest.raises(ActorCrashed):
            await two.select_backend(RR)
        assert "codex" not in [(await two.select_backend(RR)).backend for _ in range(5)]
        clock.advance(61)
        assert "codex" in [(await two.select_backend(RR)).backend for _ in range(5)]
        assert await restarts(two) == {"routing_table": 1, "session_registry": 0}


async def test_a_report_costs_one_round_trip_and_a_batch_two_while_nothing_changes(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    clock = Clock()
    store = RedisStore(redis_url, prefix=prefix, clock=clock, limits={"opencode": 5})
    other = RedisStore(redis_url, prefix=prefix, clock=clock, limits={"opencode": 5})
    normalize = RoutingEngine().normalize
    batch = [
        SelectOp(normalize(request))
        for request in (RR, RR, sticky("k"), sticky("k"), {"policy": "weighted"}, {"policy": "least_loaded"})
    ]
    await store.start()
    await other.start()
    try:

        async def cost(operations: list[Any], on: RedisStore = store) -> int:
            before = script_calls(inspect)
            answers = await on.routing_batch(operations)
            assert not any(isinstance(answer, Exception) for answer in answers), answers
            return script_calls(inspect) - before

        await cost(batch)
        assert await cost(batch) == 2
        assert await cost([ReportOp("codex", Outcome.FAILURE)]) == 1
        assert await cost(batch) == 2  # its own report: its cache followed
        assert (
            await cost([ReportOp("gemini", Outcome.QUOTA, retry_after=30)], on=other) == 2
        )  # stale cache: once more
        assert await cost(batch) == 3  # another process's report: one more round trip, once
        assert await cost(batch) == 2
        assert await cost([SelectOp(normalize({"backend": "claude"}))]) == 1  # no counter, no binding
        assert await cost([ReadStatesOp()]) == 1
    finally:
        await other.aclose()
        await store.aclose()


async def test_a_change_of_status_that_time_brought_is_journaled_once_for_the_fleet(
    redis_url: str, prefix: str
) -> None:
    clock = Clock()
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as two,
    ):
        await one.report("codex", "quota", retry_after=30)
        clock.advance(45)
        async with anyio.create_task_group() as tg:
            for router in (one, two) * 10:
                tg.start_soon(router.select_backend, RR)
                tg.start_soon(router.backend_states)
        events = await two.journal("backend_health")
        assert [(e.payload["status"], e.timestamp) for e in events] == [
            ("cooling", START * 1000),
            ("healthy", (START + 30) * 1000),  # dated at the deadline, journaled once
        ]


async def test_probe_slots_are_granted_atomically_across_the_fleet(redis_url: str, prefix: str) -> None:
    clock = Clock()
    health = HealthPolicy(failure_threshold=2, base_ejection=10.0, probe_sessions=3)

    def store() -> RedisStore:
        return RedisStore(redis_url, prefix=prefix, clock=clock, health=health)

    async with Router(store=store()) as one, Router(store=store()) as two:
        for _ in range(2):
            await one.report("gemini", "failure")
        assert (await two.backend_states())[3].status is BackendStatus.EJECTED
        clock.advance(11)  # the ejection ended: probing, three slots
        outcomes: list[str] = []

        async def probe(router: Router) -> None:
            try:
                outcomes.append((await router.select_backend({"backend": "gemini"})).backend)
            except BackendNotEligible:
                outcomes.append("held out")

        async with anyio.create_task_group() as tg:
            for index in range(60):
                tg.start_soon(probe, one if index % 2 else two)
        assert outcomes.count("gemini") == 3 and outcomes.count("held out") == 57
        gemini = (await one.backend_states())[3]
        assert (gemini.status, gemini.reason) == (BackendStatus.PROBING, "probing: 3 of 3 slots in use")
        clock.advance(10)  # unreported probe slots free themselves after base_ejection
        assert (await two.select_backend({"backend": "gemini"})).backend == "gemini"
        assert (await two.report("gemini", "success")).status is BackendStatus.HEALTHY


async def test_a_sticky_key_keeps_a_temporary_backend_for_the_fleet_while_its_own_is_out(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    clock = Clock()
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as two,
    ):
        assert (await one.select_backend(sticky("repo"))).backend == "claude"
        await two.report("claude", "quota", retry_after=100)
        meanwhile = await two.select_backend(sticky("repo"))
        assert (meanwhile.backend, meanwhile.reasons) == ("codex", (TEMPORARY,))
        again = await one.select_backend(sticky("repo"))
        assert (again.backend, again.reasons) == ("codex", (TEMPORARY,))  # kept for the key
        assert inspect.get(f"{prefix}b:{stable_digest('repo')}") == b"claude"  # the binding stays
        assert inspect.get(f"{prefix}t:{stable_digest('repo')}") == b"codex"
        clock.advance(101)
        back = await two.select_backend(sticky("repo"))
        assert (back.backend, back.reasons) == ("claude", ("reused sticky affinity backend",))
        assert not inspect.exists(f"{prefix}t:{stable_digest('repo')}")

        await two.report("claude", "quota", retry_after=100)
        assert (await one.select_backend(sticky("repo"))).reasons == (TEMPORARY,)
        assert await one.release("repo") is True  # the binding and its temporary backend
        assert not inspect.exists(f"{prefix}b:{stable_digest('repo')}", f"{prefix}t:{stable_digest('repo')}")
        assert await two.release("repo") is False


async def test_an_empty_candidate_set_says_when_a_backend_is_back(redis_url: str, prefix: str) -> None:
    clock = Clock()
    async with Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as router:
        await router.report("codex", "quota", retry_after=40)
        await router.report("gemini", "quota", retry_at=START + 20)
        with pytest.raises(NoBackendAvailable) as raised:
            await router.select_backend(only("codex", "gemini"))
        assert raised.value.detail["retry_at"] == START + 20
        clock.advance(20)
        assert (await router.select_backend(only("codex", "gemini"))).backend == "gemini"


async def test_learning_off_journals_reports_and_changes_nothing(redis_url: str, prefix: str) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, health=None)) as router:
        state = await router.report("codex", "quota", retry_after=60)
        assert state.status is BackendStatus.HEALTHY
        assert [(await router.select_backend(RR)).backend for _ in range(2)] == ["claude", "codex"]
        assert [e.event_type for e in await router.journal("outcome")] == ["outcome"]


# --------------------------------------------------------------------------- 7. the journal


async def test_outcomes_and_health_changes_are_journaled_for_the_fleet(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    clock = Clock()
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as router,
        Router(store=RedisStore(redis_url, prefix=prefix, clock=clock)) as other,
        router.subscribe() as events,
    ):
        await router.select_backend(RR)
        await other.report("codex", "quota", retry_after=10)
        clock.advance(10)
        await router.select_backend(RR)
        seen: list[JournalEvent] = []
        with anyio.fail_after(5):
            for _ in range(7):
                event = await events.__anext__()
                assert isinstance(event, JournalEvent), event
                seen.append(event)
        assert [(e.sequence, e.event_type) for e in seen] == [
            (1, "routing_selected"),
            (2, "audit"),
            (3, "outcome"),
            (4, "backend_health"),
            (5, "backend_health"),
            (6, "routing_selected"),
            (7, "audit"),
        ]
        assert seen[2].payload == {"backend": "codex", "outcome": "quota", "retry_at": START + 10}
        start, later = int(START * 1000), int((START + 10) * 1000)  # the store's clock
        assert [e.timestamp for e in seen] == [start] * 4 + [later] * 3
        assert seen[4].payload["status"] == "healthy" and seen[4].tags == ("health",)
        assert seen == await other.journal()
    # A decision's entry holds two events, the default: no "e" field; a one-event entry says 1.
    assert [entry[1].get(b"e") for entry in inspect.xrange(prefix + "journal")] == [
        None,
        b"1",
        b"1",
        b"1",
        None,
    ]


# --------------------------------------------------------------------------- 8. what is read is checked


async def test_an_unreadable_ledger_fails_only_the_calls_that_need_it(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    inspect.hset(prefix + "health", "codex", b"\xc1 not a ledger")
    inspect.hset(prefix + "health", "nobody", b"a backend of no catalogue")  # removed: it loses nothing
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        with pytest.raises(StoreDataError, match="codex"):
            await router.select_backend(RR)
        with pytest.raises(StoreDataError):
            await router.backend_states()
        with pytest.raises(StoreDataError):
            await router.report("codex", "success")
        assert (
            await router.select_backend({"backend": "claude", "excluded_backends": ["codex"]})
        ).backend == "claude"
        await router.restore("codex")  # the operator's way out: forget it
        assert (await router.select_backend(RR)).backend == "claude"
        assert [s.status for s in await router.backend_states()] == [BackendStatus.HEALTHY] * 5
        assert await restarts(router) == {"routing_table": 0, "session_registry": 0}
    assert inspect.hkeys(prefix + "health") == []
    assert "nobody" not in str(inspect.hgetall(prefix + "health"))
    assert any(
        "health" in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING
    )


async def test_values_the_store_would_not_have_written_are_repaired_where_that_loses_nothing(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(redis_url, prefix=prefix, limits={"claude": 2})
    await store.start()
    try:
        handles = [
            SessionHandle(f"s-{i}", backend, {}) for i, backend in enumerate(("claude", "codex", "codex"))
        ]
        assert await store.session_batch([RegisterOp(h) for h in handles]) == [None] * 3
        inspect.hset(prefix + "live", "claude", "many")  # a count that is not one: counted again
        inspect.hset(prefix + "live", "nobody", 3)
        inspect.set(prefix + "health:v", "not a version")
        inspect.set(prefix + "profiles:v", "-1")
        (states,) = await store.routing_batch([ReadStatesOp()])
        assert isinstance(states, list)
        assert [(s.backend, s.live_sessions) for s in states[:2] if isinstance(s, BackendState)] == [
            ("claude", 1),
            ("codex", 2),
        ]
        assert inspect.hgetall(prefix + "live") == {b"claude": b"1", b"codex": b"2"}
        inspect.delete(prefix + "live")  # lost: counted again from the sessions' backends
        answers = await store.session_batch([RegisterOp(SessionHandle("s-9", "claude", {})), LookupOp("s-9")])
        assert answers == [None, "claude"]
        inspect.set(prefix + "health", "a string")  # a key of the wrong type holds nothing the store wrote
        (states,) = await store.routing_batch([ReadStatesOp()])
        assert (
            isinstance(states, list) and isinstance(states[0], BackendState) and states[0].live_sessions == 2
        )
    finally:
        await store.aclose()
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for key in ("live", "health:v", "profiles:v", "health"):
        assert prefix + key in warnings, key


# --------------------------------------------------------------------------- 9. size


def test_every_module_of_the_redis_store_stays_under_800_lines() -> None:
    folder = REPO_ROOT / "beamrouting" / "_store" / "_redis"
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines()) for path in sorted(folder.iterdir())
    }
    assert {name: size for name, size in sizes.items() if size >= 800} == {}
    assert all(Path(folder, name).suffix in (".py", ".lua") for name in sizes if not name.startswith("__"))
