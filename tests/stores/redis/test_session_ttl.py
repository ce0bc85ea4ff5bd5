"""RedisStore's ``session_ttl``: sessions of a worker that died without unregistering expire.

A session expires ``session_ttl`` seconds after its last registration, judged by Redis's
clock; re-registering is its heartbeat, lookups and listings never extend it. Expired
sessions are hidden at once and purged a bounded number per session call; the session keys
expire with their last session. Without ``session_ttl`` nothing of this is written.

Every test uses the session's private ``redis-server`` (``redis_url`` of tests/conftest.py) and a
unique key prefix, on asyncio and uvloop (the Redis store does not run on trio). Nothing
waits a fixed time for state: expiry is waited for with ``wait_for``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
import pytest

from beamrouting import RedisStore, SessionHandle
from beamrouting._runtime._router import Router
from beamrouting._store._redis._store import SESSION_PURGE
from beamrouting.store import ListSessionsOp, LookupOp, RegisterOp, UnregisterOp
from tests._helpers import wait_for
from tests._redis import import_redis_or_skip

import_redis_or_skip()

SHORT = 0.3
"""A session ttl short enough to wait for."""
LONG = 60.0
"""A session ttl no test outlives."""


def session_keys(prefix: str) -> list[str]:
    return [prefix + name for name in ("sessions", "sessions:order", "sessions:seq", "sessions:expiry")]


def redis_ms(client: Any) -> int:
    """Redis's clock, in ms (the clock deadlines are judged by)."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def ids(handles: list[SessionHandle]) -> list[str]:
    return [handle.session_id for handle in handles]


async def wait_past(client: Any, deadline: float) -> None:
    """Wait until Redis's clock is past ``deadline`` (ms), touching no session."""
    await wait_for(lambda: redis_ms(client) > deadline, timeout=5.0)


# --------------------------------------------------------------------------- arguments


def test_bad_session_ttl_values_raise_typed_errors() -> None:
    url = "redis://127.0.0.1:1/0"
    for value in ("1", b"1", True, [1], object()):
        with pytest.raises(TypeError, match="session_ttl"):
            RedisStore(url, session_ttl=value)  # type: ignore[arg-type]
    for bad in (0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="session_ttl"):
            RedisStore(url, session_ttl=bad)
    assert RedisStore(url).session_ttl is None
    assert RedisStore(url, session_ttl=2).session_ttl == 2.0
    assert isinstance(RedisStore(url, session_ttl=2).session_ttl, float)
    assert RedisStore(url, session_ttl=0.25).session_ttl == 0.25


# --------------------------------------------------------------------------- expiry


@pytest.mark.anyio
async def test_a_session_vanishes_after_its_ttl(redis_url: str, prefix: str, inspect: Any) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=SHORT)) as router:
        before = redis_ms(inspect)
        await router.register_session("s-1", "codex", {"host": "a"})
        after = redis_ms(inspect)
        deadline = inspect.zscore(prefix + "sessions:expiry", "s-1")
        assert before + SHORT * 1000 <= deadline <= after + SHORT * 1000
        assert await router.session_backend("s-1") == "codex"
        assert ids(await router.sessions()) == ["s-1"]
        # The keys expire with their last session: each carries that deadline.
        for key in session_keys(prefix):
            assert 0 < inspect.pttl(key) <= SHORT * 1000, key

        async def gone() -> bool:
            return await router.session_backend("s-1") is None

        await wait_for(gone, timeout=5.0)
        assert redis_ms(inspect) >= deadline  # not a moment before its deadline
        assert await router.sessions() == []
        # The lookup that found it expired also purged it (or the keys expired with it).
        assert not inspect.hexists(prefix + "sessions", "s-1")
        assert inspect.zscore(prefix + "sessions:order", "s-1") is None


@pytest.mark.anyio
async def test_the_session_keys_expire_by_themselves(redis_url: str, prefix: str, inspect: Any) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=SHORT)) as router:
        await router.register_session("s-1", "codex")
        await router.register_session("s-2", "gemini")
        assert inspect.exists(*session_keys(prefix)) == 4
        # No session call from here on: an abandoned prefix's registry disappears anyway.
        await wait_for(lambda: inspect.exists(*session_keys(prefix)) == 0, timeout=5.0)
        assert await router.sessions() == []


@pytest.mark.anyio
async def test_re_registering_refreshes_the_deadline(redis_url: str, prefix: str, inspect: Any) -> None:
    ttl = 0.5
    async with Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=ttl)) as router:
        await router.register_session("beat", "codex")
        first = inspect.zscore(prefix + "sessions:expiry", "beat")
        started = time.monotonic()
        beats = 0
        while time.monotonic() - started < 3 * ttl:
            await anyio.sleep(ttl / 10)  # the heartbeat interval
            now = redis_ms(inspect)
            await router.register_session("beat", "codex")
            beats += 1
            deadline = inspect.zscore(prefix + "sessions:expiry", "beat")
            assert now + ttl * 1000 <= deadline
            assert await router.session_backend("beat") == "codex", f"expired after {beats} heartbeats"
        assert inspect.zscore(prefix + "sessions:expiry", "beat") >= first + 2 * ttl * 1000
        # Lookups and listings do not extend it: once the heartbeat stops, it expires.
        last = inspect.zscore(prefix + "sessions:expiry", "beat")

        async def gone() -> bool:
            listed = await router.sessions()
            backend = await router.session_backend("beat")
            return listed == [] and backend is None

        await wait_for(gone, timeout=5.0)
        assert redis_ms(inspect) >= last


@pytest.mark.anyio
async def test_lookups_and_listings_do_not_extend_a_session(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=LONG)) as router:
        await router.register_session("s-1", "codex")
        deadline = inspect.zscore(prefix + "sessions:expiry", "s-1")
        for _ in range(5):
            assert await router.session_backend("s-1") == "codex"
            assert ids(await router.sessions()) == ["s-1"]
            await router.select_backend("s-1", {"policy": "failover"})  # looks up last_backend
        assert inspect.zscore(prefix + "sessions:expiry", "s-1") == deadline
        now = redis_ms(inspect)
        for key in session_keys(prefix):
            assert 0 < inspect.pttl(key) <= deadline - now, key  # the keys' expiry did not move either


@pytest.mark.anyio
async def test_a_dead_workers_sessions_expire_for_the_survivor(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    ttl = 0.5
    async with Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=ttl)) as survivor:
        async with Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=ttl)) as worker:
            # Registered directly, so leaving the block does not unregister it: a worker killed
            # mid-session leaves exactly this behind.
            await worker.register_session("dead-1", "codex")
            await worker.register_session("dead-2", "gemini")
        async with survivor.session({"policy": "round_robin"}, session_id="alive") as mine:
            assert ids(await survivor.sessions()) == ["dead-1", "dead-2", "alive"]
            assert await survivor.session_backend("dead-1") == "codex"

            async def dead_gone() -> bool:
                await survivor.register_session(mine.id, mine.backend)  # the survivor's heartbeat
                return await survivor.session_backend("dead-2") is None  # the later of the two

            await wait_for(dead_gone, timeout=5.0)
            assert ids(await survivor.sessions()) == ["alive"]
            assert await survivor.session_backend("dead-1") is None
        assert await survivor.sessions() == []
    # Unregistering the last session left no session key behind.
    assert inspect.exists(*session_keys(prefix)) == 0


# --------------------------------------------------------------------------- without a ttl


@pytest.mark.anyio
async def test_without_a_ttl_nothing_expires_and_no_expiry_is_written(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    assert store.session_ttl is None

    def expiry_commands() -> int:
        """How often Redis ran the commands only expiry needs (the clock, deadline reads)."""
        stats = inspect.info("commandstats")
        names = ("time", "zscore", "zrangebyscore", "pexpireat", "persist")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)

    async with Router(store=store) as router:
        before = expiry_commands()
        await router.register_session("s-1", "codex")
        await router.register_session("s-2", "gemini")
        await router.register_session("s-1", "claude")
        await router.unregister_session("s-2")
        assert await router.session_backend("s-1") == "claude"
        assert ids(await router.sessions()) == ["s-1"]
        assert expiry_commands() == before  # not even the clock is read
    assert not inspect.exists(prefix + "sessions:expiry")
    for key in session_keys(prefix)[:3]:
        assert inspect.pttl(key) == -1, key  # exists, with no time-to-live
    assert sorted(inspect.keys(prefix + "sessions*")) == sorted(k.encode() for k in session_keys(prefix)[:3])


@pytest.mark.anyio
async def test_a_session_keeps_the_deadline_of_its_last_registration(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=SHORT)) as timed,
        Router(store=RedisStore(redis_url, prefix=prefix)) as untimed,
    ):
        await timed.register_session("kept", "codex")
        await untimed.register_session("kept", "codex")  # re-registered without a ttl: permanent
        assert inspect.zscore(prefix + "sessions:expiry", "kept") is None
        await timed.register_session("brief", "gemini")
        deadline = inspect.zscore(prefix + "sessions:expiry", "brief")
        # A session without a deadline keeps the keys from expiring.
        for key in session_keys(prefix):
            assert inspect.pttl(key) == -1, key
        await wait_past(inspect, deadline)
        assert ids(await untimed.sessions()) == ["kept"]  # a store without a ttl hides it too
        assert await untimed.session_backend("brief") is None
        assert ids(await timed.sessions()) == ["kept"]
        assert inspect.hkeys(prefix + "sessions") == [b"kept"]
        await untimed.unregister_session("kept")
        assert inspect.exists(*session_keys(prefix)[:2], session_keys(prefix)[3]) == 0


# --------------------------------------------------------------------------- bounds


@pytest.mark.anyio
async def test_expired_sessions_are_purged_a_bounded_number_per_call(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    expired = 4 * SESSION_PURGE
    short = RedisStore(redis_url, prefix=prefix, session_ttl=SHORT)
    long = RedisStore(redis_url, prefix=prefix, session_ttl=LONG)
    await short.start()
    await long.start()
    try:
        await long.session_batch([RegisterOp(SessionHandle("long", "codex", {}))])
        handles = [SessionHandle(f"short-{index}", "gemini", {}) for index in range(expired)]
        assert await short.session_batch([RegisterOp(handle) for handle in handles]) == [None] * expired
        deadline = inspect.zscore(prefix + "sessions:expiry", "short-0")
        await wait_past(inspect, deadline)
        assert inspect.hlen(prefix + "sessions") == 1 + expired  # nothing purged without a call

        # A lookup purges SESSION_PURGE of them; the expired rest is hidden all the same.
        assert await long.session_batch([LookupOp("long")]) == ["codex"]
        stragglers = {key.decode() for key in inspect.hkeys(prefix + "sessions")} - {"long"}
        assert len(stragglers) == expired - SESSION_PURGE
        straggler = min(stragglers)
        assert inspect.zscore(prefix + "sessions:expiry", straggler) < redis_ms(inspect)
        assert await long.session_batch([LookupOp(straggler)]) == [None]  # expired, not yet purged: absent
        remaining = expired - 2 * SESSION_PURGE
        assert inspect.hlen(prefix + "sessions") == 1 + remaining
        assert inspect.zcard(prefix + "sessions:order") == 1 + remaining
        assert inspect.zcard(prefix + "sessions:expiry") == 1 + remaining

        # A call purges one more per registration it makes.
        fresh = [SessionHandle(f"fresh-{index}", "claude", {}) for index in range(3)]
        await long.session_batch([RegisterOp(handle) for handle in fresh])
        remaining -= SESSION_PURGE + 3
        assert remaining > 0
        assert inspect.hlen(prefix + "sessions") == 1 + 3 + remaining

        assert await long.session_batch([ListSessionsOp()]) == [[SessionHandle("long", "codex", {}), *fresh]]
        assert inspect.hlen(prefix + "sessions") == 4
        assert inspect.zcard(prefix + "sessions:expiry") == 4
        # The keys now expire with the latest deadline (LONG from now), not the expired ones'.
        assert (LONG - 5) * 1000 < inspect.pttl(prefix + "sessions") <= LONG * 1000
    finally:
        await short.aclose()
        await long.aclose()


@pytest.mark.anyio
async def test_clear_leaves_sessions_and_their_deadlines(redis_url: str, prefix: str, inspect: Any) -> None:
    store = RedisStore(redis_url, prefix=prefix, session_ttl=LONG)
    async with Router(store=store) as router:
        await router.select_backend({"policy": "sticky", "affinity_key": "k"})
        await router.register_session("s-1", "codex")
        deadline = inspect.zscore(prefix + "sessions:expiry", "s-1")
        assert await store.bindings() == 1
        await router.clear()
        assert await store.bindings() == 0
        assert ids(await router.sessions()) == ["s-1"]
        assert inspect.zscore(prefix + "sessions:expiry", "s-1") == deadline
        assert inspect.exists(*session_keys(prefix)) == 4


# --------------------------------------------------------------------------- order and batches


@pytest.mark.anyio
async def test_sessions_stay_in_registration_order(redis_url: str, prefix: str, inspect: Any) -> None:
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=LONG)) as router,
        Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=SHORT)) as brief,
    ):
        await router.register_session("a", "codex")
        await brief.register_session("x", "gemini")
        await router.register_session("b", "claude")
        await brief.register_session("y", "gemini")
        await router.register_session("c", "opencode")
        assert ids(await router.sessions()) == ["a", "x", "b", "y", "c"]
        await router.register_session("a", "codex")  # a heartbeat is a registration: a moves last
        assert ids(await router.sessions()) == ["x", "b", "y", "c", "a"]
        deadline = max(inspect.zscore(prefix + "sessions:expiry", name) for name in ("x", "y"))
        await wait_past(inspect, deadline)
        assert ids(await router.sessions()) == ["b", "c", "a"]
        assert [h.backend for h in await brief.sessions()] == ["claude", "opencode", "codex"]


@pytest.mark.anyio
async def test_a_mixed_batch_is_one_atomic_call_in_order(redis_url: str, prefix: str, inspect: Any) -> None:
    brief = RedisStore(redis_url, prefix=prefix, session_ttl=SHORT)
    store = RedisStore(redis_url, prefix=prefix, session_ttl=LONG)
    one, two = SessionHandle("s-1", "codex", {"k": "v"}), SessionHandle("s-2", "claude", {})
    old, revived = SessionHandle("old", "gemini", {}), SessionHandle("old", "opencode", {})
    await brief.start()
    await store.start()
    try:
        await brief.session_batch([RegisterOp(old)])
        await wait_past(inspect, inspect.zscore(prefix + "sessions:expiry", "old"))

        def script_calls() -> int:
            stats = inspect.info("commandstats")
            return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))

        calls = script_calls()
        results = await store.session_batch(
            [
                LookupOp("old"),  # expired: absent
                RegisterOp(one),
                LookupOp("s-1"),
                RegisterOp(two),
                UnregisterOp("s-1"),
                LookupOp("s-1"),
                UnregisterOp("never-registered"),
                ListSessionsOp(),  # "old" is not listed
                RegisterOp(revived),  # re-registering an expired session brings it back
                LookupOp("old"),
                RegisterOp(one),
                ListSessionsOp(),
            ]
        )
        assert script_calls() == calls + 1
        assert results == [
            None,
            None,
            "codex",
            None,
            None,
            None,
            None,
            [two],
            None,
            "opencode",
            None,
            [two, revived, one],
        ]
        assert inspect.zrange(prefix + "sessions:order", 0, -1) == [b"s-2", b"old", b"s-1"]
        # One script call, one clock reading: every registration of the batch has the same deadline.
        deadlines = inspect.zrange(prefix + "sessions:expiry", 0, -1, withscores=True)
        assert [member for member, _ in deadlines] == [b"old", b"s-1", b"s-2"]
        assert len({score for _, score in deadlines}) == 1
    finally:
        await store.aclose()
        await brief.aclose()
