"""RedisStore: live sessions against limits, least_loaded and weighted, filtering profiles, and watch.

Several stores on one prefix stand for the processes of a fleet (test_fleet_processes.py
runs real ones). Time is an injected clock moved by hand; conditions are waited for with
``wait_for``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from beamrouting import (
    BackendAtCapacity,
    NoBackendAvailable,
    PolicyDenied,
    RedisStore,
    RoutingSettings,
    SessionExists,
)
from beamrouting._runtime._router import Router
from beamrouting.store import ReconfigureOp
from tests._helpers import wait_for
from tests._redis import RedisServer, import_redis_or_skip
from tests.stores.redis._fleet import Clock

import_redis_or_skip()

pytestmark = pytest.mark.anyio

RR: dict[str, Any] = {"policy": "round_robin"}
BACKENDS = ("claude", "codex", "copilot", "gemini", "opencode")


def only(*backends: str, **extra: Any) -> dict[str, Any]:
    """Round robin among ``backends`` alone (the others excluded)."""
    return {"policy": "round_robin", "excluded_backends": [b for b in BACKENDS if b not in backends], **extra}


# --------------------------------------------------------------------------- 3. capacity


async def test_a_full_backend_is_held_out_for_the_whole_fleet(redis_url: str, prefix: str) -> None:
    limits = {"claude": 1, "codex_cli": 2}  # any accepted spelling
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, limits=limits)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix, limits=limits)) as two,
    ):
        assert (await two.select_backend(RR)).backend == "claude"  # it read the fleet's state
        await one.register_session("s-1", "claude")
        verdicts = {v.backend: v for v in (await two.explain(RR)).backends}
        assert verdicts["claude"].reasons == ("at capacity 1/1",) and not verdicts["claude"].eligible
        assert "claude" not in [(await two.select_backend(RR)).backend for _ in range(5)]
        await one.register_session("s-2", "codex")
        await two.register_session("s-3", "codex")
        with pytest.raises(NoBackendAvailable) as raised:
            await two.select_backend(only("claude", "codex"))
        assert raised.value.detail["reason"] == "at_capacity"
        states = await one.backend_states()
        assert [(s.live_sessions, s.limit) for s in states] == [
            (1, 1),
            (2, 2),
            (0, None),
            (0, None),
            (0, None),
        ]
        await two.unregister_session("s-2")
        assert (await one.select_backend(only("claude", "codex"))).backend == "codex"


async def test_registrations_respect_limits_and_heartbeats_take_no_new_slot(
    redis_url: str, prefix: str
) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, limits={"claude": 1})) as router:
        await router.register_session("s-1", "claude")
        with pytest.raises(BackendAtCapacity, match="claude has 1 of 1 live sessions"):
            await router.register_session("s-2", "claude")
        assert await router.session_backend("s-2") is None  # nothing changed
        for _ in range(3):
            await router.register_session("s-1", "claude", {"beat": True})  # the heartbeat
        with pytest.raises(SessionExists):
            async with router.session(RR, session_id="s-1"):
                pytest.fail("a live id was registered twice")
        await router.register_session("s-1", "codex")  # moving frees its slot
        await router.register_session("s-2", "claude")
        assert [s.live_sessions for s in await router.backend_states()][:2] == [1, 1]


async def test_a_selection_with_a_session_id_registers_it_in_the_same_step(
    redis_url: str, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix, limits={"claude": 1})
    async with Router(store=store) as router:
        async with router.session(only("claude", "codex"), session_id="mine", metadata={"k": 1}) as mine:
            assert mine.backend == "claude"
            assert await router.session_backend("mine") == "claude"
            with pytest.raises(NoBackendAvailable):
                await router.select_backend(only("claude"))
            moved = await mine.failover()  # moves the registration, freeing claude's slot
            assert moved.backend == "codex" and await router.session_backend("mine") == "codex"
            assert (await router.select_backend(only("claude"))).backend == "claude"
        assert await router.sessions() == []
        assert sum(s.live_sessions for s in await router.backend_states()) == 0


async def test_an_expired_session_frees_its_slot(redis_url: str, prefix: str) -> None:
    clock = Clock()

    def store() -> RedisStore:
        return RedisStore(redis_url, prefix=prefix, limits={"claude": 1}, session_ttl=30, clock=clock)

    async with Router(store=store()) as one, Router(store=store()) as two:
        await one.register_session("dead-worker's", "claude")
        with pytest.raises(NoBackendAvailable):
            await two.select_backend(only("claude"))
        clock.advance(31)  # it expired: it no longer counts
        assert (await two.select_backend(only("claude"))).backend == "claude"
        assert (await two.backend_states())[0].live_sessions == 0
        await two.register_session("alive", "claude")


async def test_concurrent_sessions_from_two_routers_never_pass_a_limit(redis_url: str, prefix: str) -> None:
    limits = dict.fromkeys(BACKENDS, 3)
    peak: Counter[str] = Counter()
    admitted: list[str] = []
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, limits=limits)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix, limits=limits)) as two,
    ):
        running = True

        async def sample() -> None:
            while running:
                for state in await one.backend_states():
                    peak[state.backend] = max(peak[state.backend], state.live_sessions)
                await anyio.sleep(0.002)

        async def session(router: Router) -> None:
            async with router.session(RR, wait=30) as mine:
                admitted.append(mine.backend)
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as sampling:
            sampling.start_soon(sample)
            async with anyio.create_task_group() as tg:
                for index in range(200):
                    tg.start_soon(session, one if index % 2 else two)
            running = False
        assert len(admitted) == 200
        assert max(peak.values()) <= 3 and sum(peak.values()) > 5
        assert sum(s.live_sessions for s in await two.backend_states()) == 0


# --------------------------------------------------------------------------- 4. least_loaded and weighted


async def _least_loaded_story(one: Router, two: Router) -> list[str]:
    """Sessions registered by ``one``, least_loaded selections by ``two``: where they go."""
    least = {"policy": "least_loaded"}
    for index, backend in enumerate(("claude", "codex", "codex", "gemini", "opencode")):
        await one.register_session(f"s-{index}", backend)
    chosen = [(await two.select_backend(least)).backend for _ in range(2)]
    await one.unregister_session("s-0")
    chosen += [(await two.select_backend(least)).backend for _ in range(4)]  # ties take turns
    for index in range(4):
        async with two.session(least, session_id=f"n-{index}") as mine:
            chosen.append(mine.backend)
            await one.register_session(f"kept-{index}", mine.backend)
    return chosen


async def test_least_loaded_counts_the_fleet_s_live_sessions(redis_url: str, prefix: str) -> None:
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix)) as two,
    ):
        fleet = await _least_loaded_story(one, two)
    async with Router() as alone:
        assert fleet == await _least_loaded_story(alone, alone)  # as one process's engine
    assert fleet[:6] == ["copilot", "copilot", "claude", "copilot", "claude", "copilot"]


async def test_weighted_follows_the_exact_sequence_across_routers(redis_url: str, prefix: str) -> None:
    weights = {"claude": 3, "codex": 1, "gemini_cli": 2}
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, weights=weights)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix, weights=weights)) as two,
    ):
        picks = [
            (await (one if i % 2 else two).select_backend({"policy": "weighted"})).backend for i in range(16)
        ]
    period = ["claude", "gemini", "codex", "claude", "copilot", "opencode", "gemini", "claude"]
    assert picks == period * 2


# --------------------------------------------------------------------------- 5. filtering profiles


async def test_a_filtering_profile_stored_by_one_process_filters_in_another(
    redis_url: str, prefix: str
) -> None:
    rule = {
        "action": "backend",
        "decision": "deny",
        "match": ["eq", "backend", "claude"],
        "reason": "no claude",
    }
    filtering = {"mode": "filter", "rules": [rule]}
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix)) as one,
        Router(store=RedisStore(redis_url, prefix=prefix)) as two,
    ):
        with pytest.raises(PolicyDenied, match="unknown policy profile"):
            await two.select_backend({"policy_profile_id": "f"})
        await one.put_policy_profile("f", filtering)
        routed = [(await two.select_backend({**RR, "policy_profile_id": "f"})).backend for _ in range(4)]
        assert routed == ["codex", "copilot", "gemini", "opencode"]  # claude filtered out before selection
        with pytest.raises(PolicyDenied, match="no claude"):
            await two.select_backend({"backend": "claude", "policy_profile_id": "f"})
        explained = await two.explain({"policy_profile_id": "f"})
        assert explained.decision is not None and explained.decision.backend == "codex"
        assert {v.backend: v.reasons for v in explained.backends}["claude"] == ("denied by profile f",)
        await one.delete_policy_profile("f")
        with pytest.raises(PolicyDenied, match="unknown policy profile"):
            await two.select_backend({"policy_profile_id": "f"})


async def test_a_reconfiguration_sets_the_fleet_s_profiles_and_this_process_s_limits(
    redis_url: str, prefix: str
) -> None:
    one, two = RedisStore(redis_url, prefix=prefix), RedisStore(redis_url, prefix=prefix)
    async with Router(store=one) as first, Router(store=two) as second:
        await first.put_policy_profile("old", {"default": "deny"})
        assert (await second.select_backend({"backend": "codex"})).backend == "codex"  # it read the profiles
        rule = {"action": "backend", "decision": "deny", "match": ["eq", "backend", "claude"], "reason": "no"}
        settings = RoutingSettings.checked(
            first.catalog,
            profiles={"new": {"mode": "filter", "rules": [rule]}},
            limits={"codex": 1},
            weights={"gemini": 3},
        )
        assert await one.routing_batch([ReconfigureOp(settings)]) == [None]
        with pytest.raises(
            PolicyDenied, match="unknown policy profile"
        ):  # exactly the new profiles, fleet-wide
            await second.select_backend({"policy_profile_id": "old"})
        assert (await second.select_backend({**RR, "policy_profile_id": "new"})).backend != "claude"
        await first.register_session("s", "codex")
        with pytest.raises(BackendAtCapacity):  # this process's limit
            await first.register_session("t", "codex")
        await second.register_session("t", "codex")  # the other kept its own settings
        picks = [(await first.select_backend({"policy": "weighted"})).backend for _ in range(6)]
        assert picks.count("gemini") == 3 and "codex" not in picks  # its weights; codex is full


# --------------------------------------------------------------------------- 6. watch


async def test_watch_hears_of_freed_slots_and_learned_changes_from_anywhere(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    heard: list[int] = []
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as other:
        await store.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.watch, lambda: heard.append(1))
                await wait_for(lambda: inspect.pubsub_numsub(prefix + "changes")[0][1] >= 2, timeout=5)
                await other.register_session("s", "codex")
                await other.unregister_session("s")  # a slot freed
                await wait_for(lambda: len(heard) == 1, timeout=5)
                await other.report("codex", "failure")  # the learned state changed
                await wait_for(lambda: len(heard) == 2, timeout=5)
                await other.unregister_session("never-registered")  # nothing freed: nothing said
                await other.report("codex", "success")
                await wait_for(lambda: len(heard) == 3, timeout=5)
                tg.cancel_scope.cancel()
            # Cancelled, it released its connection: only the router's own subscription is left.
            await wait_for(lambda: inspect.pubsub_numsub(prefix + "changes")[0][1] == 1, timeout=5)
        finally:
            await store.aclose()


async def test_watch_keeps_trying_quietly_while_redis_is_lost(
    private_redis: RedisServer, prefix: str
) -> None:
    store = RedisStore(private_redis.url, prefix=prefix, operation_timeout=0.3, retry_interval=0.1)
    heard: list[int] = []
    await store.start()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.watch, lambda: heard.append(1))
            client = import_redis_or_skip().Redis.from_url(private_redis.url)
            try:
                await wait_for(lambda: client.pubsub_numsub(prefix + "changes")[0][1] == 1, timeout=5)
            finally:
                client.close()
            private_redis.kill()
            private_redis.start()
            await wait_for(lambda: len(heard) == 1, timeout=10)  # back: news may have been missed
            tg.cancel_scope.cancel()
    finally:
        await store.aclose()
