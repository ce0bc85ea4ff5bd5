"""RedisStore in a fleet of OS processes: learned state, probe slots, limits, weights and watch.

Each test runs workers (``_fleet_worker.py``) in processes of their own, sharing the
session's redis-server and a key prefix with the test. Injected clocks are fixed times
passed to the workers; conditions are waited for with a timeout, never a sleep.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from typing import Any

import anyio
import pytest

from beamrouting import BackendStatus, HealthPolicy, RedisStore, RoutingEngine
from beamrouting._runtime._router import Router
from beamrouting._store._redis._keys import stable_digest
from tests._helpers import BACKENDS, wait_for
from tests._redis import import_redis_or_skip
from tests.stores.redis._fleet import START, Clock, finish, run_workers, spawn

import_redis_or_skip()

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the workers run on uvloop")

RR: dict[str, Any] = {"policy": "round_robin"}


def only(*backends: str) -> dict[str, Any]:
    """Round robin among ``backends`` alone (the others excluded)."""
    return {"policy": "round_robin", "excluded_backends": [b for b in BACKENDS if b not in backends]}


def test_a_report_in_one_process_routes_the_other_away(redis_url: str, prefix: str) -> None:
    signal = f"{prefix}test-reported:{uuid.uuid4().hex}"
    barrier = f"{prefix}test-barrier:{uuid.uuid4().hex}"
    follower = spawn(redis_url, prefix, "select", 20, 4, barrier, 2, {"request": RR, "after": signal})
    reporter = spawn(redis_url, prefix, "report", 1, 1, barrier, 2, {"backend": "codex", "signal": signal})
    routed, reported = finish([follower, reporter])
    assert reported == {"status": "cooling"}
    assert not routed["errors"] and len(routed["backends"]) == 20
    assert "codex" not in routed["backends"] and set(routed["backends"]) == {
        "claude",
        "copilot",
        "gemini",
        "opencode",
    }


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [("asyncio", {})])
async def test_probe_slots_go_to_exactly_probe_sessions_callers_of_the_fleet(
    redis_url: str, prefix: str
) -> None:
    health: dict[str, Any] = {"failure_threshold": 2, "base_ejection": 10.0, "probe_sessions": 3}
    policy = HealthPolicy(**health)  # the fleet's, in every process
    async with Router(store=RedisStore(redis_url, prefix=prefix, clock=Clock(), health=policy)) as router:
        for _ in range(2):
            await router.report("gemini", "failure")  # ejected until START + 10
    spec = {"request": {"backend": "gemini"}, "store": {"clock": START + 11, "health": health}}
    results = await anyio.to_thread.run_sync(lambda: run_workers(redis_url, prefix, "select", 40, 40, spec))
    backends = [b for r in results for b in r["backends"]]
    errors = Counter(e for r in results for e in r["errors"])
    assert backends == ["gemini"] * 3 and errors == {"backend_not_eligible": 77}
    store = RedisStore(redis_url, prefix=prefix, clock=Clock(START + 11), health=policy)
    async with Router(store=store) as router:
        gemini = (await router.backend_states())[3]
        assert (gemini.status, gemini.reason) == (BackendStatus.PROBING, "probing: 3 of 3 slots in use")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [("asyncio", {})])
async def test_a_thousand_sessions_of_two_processes_never_pass_the_limits(
    redis_url: str, prefix: str
) -> None:
    limits = dict.fromkeys(BACKENDS, 10)
    spec = {"request": RR, "wait": 90, "hold": 0.01, "store": {"limits": limits}}
    barrier = f"{prefix}test-barrier:{uuid.uuid4().hex}"
    workers = [spawn(redis_url, prefix, "sessions", 500, 500, barrier, 2, spec) for _ in range(2)]
    peak: Counter[str] = Counter()
    samples = 0
    try:
        async with Router(store=RedisStore(redis_url, prefix=prefix, limits=limits)) as router:
            while any(worker.poll() is None for worker in workers):
                for state in await router.backend_states():
                    assert state.live_sessions <= 10, state
                    peak[state.backend] = max(peak[state.backend], state.live_sessions)
                samples += 1
                await anyio.sleep(0.005)  # the next sample
            final = await router.backend_states()
    finally:
        results = await anyio.to_thread.run_sync(finish, workers)
    assert [r["errors"] for r in results] == [[], []]
    assert [r["admitted"] for r in results] == [500, 500]  # every call ended admitted
    assert all(Counter(r["backends"]).keys() == set(BACKENDS) for r in results)
    assert peak == dict.fromkeys(BACKENDS, 10) and samples > 10  # full at times, never past
    assert [state.live_sessions for state in final] == [0] * 5


def test_weighted_sequences_are_exact_across_two_processes(redis_url: str, prefix: str, inspect: Any) -> None:
    weights = {
        "claude": 3,
        "codex": 1,
        "gemini": 2,
    }  # a period of 8: 3 claude, 1 codex, 1 copilot, 2 gemini, 1 opencode
    spec = {"request": {"policy": "weighted"}, "store": {"weights": weights}}
    results = run_workers(redis_url, prefix, "select", 400, 50, spec)
    assert [r["errors"] for r in results] == [[], []]
    assert all(len(set(r["backends"])) == 5 for r in results)  # both took part in one sequence
    assert Counter(b for r in results for b in r["backends"]) == {
        "claude": 300,
        "codex": 100,
        "copilot": 100,
        "gemini": 200,
        "opencode": 100,
    }
    engine = RoutingEngine(weights=weights)
    counter = engine.plan(engine.normalize({"policy": "weighted"})).counter_key
    assert inspect.get(f"{prefix}c:{stable_digest(counter)}") == b"800"  # each pick took its own turn


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", [("asyncio", {})])
async def test_watch_wakes_a_waiter_in_one_process_when_another_unregisters(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    signal = f"{prefix}test-waiting:{uuid.uuid4().hex}"
    limits = {"claude": 1}
    spec = {"request": only("claude"), "wait": 60, "signal": signal, "store": {"limits": limits}}
    async with Router(store=RedisStore(redis_url, prefix=prefix, limits=limits)) as router:
        await router.register_session("held", "claude")
        waiter = spawn(redis_url, prefix, "wait", 1, 1, f"{prefix}test-barrier", 1, spec)
        try:
            await wait_for(lambda: inspect.exists(signal) == 1, timeout=30, message="the worker never waited")
            # Both routers' watches are subscribed (this test's and the worker's).
            await wait_for(lambda: inspect.pubsub_numsub(prefix + "changes")[0][1] >= 2, timeout=10)
            freed = time.monotonic()
            await router.unregister_session("held")
        finally:
            (result,) = await anyio.to_thread.run_sync(finish, [waiter])
        assert result["backend"] == "claude"
        assert time.monotonic() - freed < 10  # woken by the news, long before its 60 s
        assert result["calls_while_waiting"] <= 3  # one selection after the wake: it did not poll
