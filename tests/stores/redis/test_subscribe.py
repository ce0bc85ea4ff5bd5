"""Live journal subscriptions on a RedisStore: the whole fleet's events, as they are appended.

A subscription follows the fleet's capped journal stream with ``XREAD BLOCK`` on a
connection of its own: it sees the decisions of every router (and process) sharing the
prefix in stream order, reports entries the cap trimmed before it read them as a gap,
never holds routing up, raises ``StoreUnavailable`` in time when Redis goes away, and
releases its connection however it ends. Tests that count connections or kill Redis use a
private redis-server, so nothing else shows in its ``CLIENT LIST``. Runs on asyncio and
uvloop (the Redis store refuses trio).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from beamrouting import (
    BeamRoutingError,
    JournalEvent,
    JournalFeed,
    PolicyDenied,
    RedisStore,
    Router,
    StoreUnavailable,
    Subscription,
    SubscriptionGap,
)
from tests._helpers import REPO_ROOT, wait_for
from tests._redis import RedisServer, free_port, import_redis_or_skip

redis = import_redis_or_skip()

RR: dict[str, Any] = {"policy": "round_robin"}
DENIED: dict[str, Any] = {"policy": "round_robin", "policy_profile_id": "no-such-profile"}

Item = JournalEvent | SubscriptionGap


@pytest.fixture
def clients(private_redis: RedisServer) -> Iterator[Any]:
    """A plain client of the private server (its own connection shows as ``cmd=client|list``)."""
    client = redis.Redis.from_url(private_redis.url, socket_timeout=2)
    try:
        yield client
    finally:
        client.close()


def subscribers(client: Any, *, blocked: bool = False) -> int:
    """Connections of subscriptions: the only ones whose last command is XREAD or a transaction.

    Routing never sends either (``journal()`` reads with XREVRANGE); a subscription starts
    with one transaction and then reads with XREAD. ``blocked``: only those waiting in XREAD.
    """
    listed = client.client_list()
    if blocked:
        return sum(1 for c in listed if c["cmd"] == "xread" and "b" in c["flags"])
    return sum(1 for c in listed if c["cmd"] in ("xread", "exec"))


async def take(events: Subscription, n: int, timeout: float = 5.0) -> list[Item]:
    """The next ``n`` items; fails the test if they do not come within ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        return [await events.__anext__() for _ in range(n)]


def only_events(items: list[Item]) -> list[JournalEvent]:
    assert all(isinstance(item, JournalEvent) for item in items), items
    return [item for item in items if isinstance(item, JournalEvent)]


def sticky(key: str) -> dict[str, Any]:
    return {"policy": "sticky", "affinity_key": key}


# --------------------------------------------------------------------------- the fleet's events


@pytest.mark.anyio
async def test_one_subscriber_sees_both_routers_decisions_in_order(redis_url: str, prefix: str) -> None:
    received: list[Item] = []
    decisions = []
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix)) as a,
        Router(store=RedisStore(redis_url, prefix=prefix)) as b,
    ):
        await b.select_backend(RR)  # before the subscription: not delivered
        async with a.subscribe() as events:

            async def consume() -> None:
                async for item in events:
                    received.append(item)

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume)  # it waits in XREAD while both routers route
                    for i in range(8):
                        router, name = (a, "a") if i % 2 == 0 else (b, "b")
                        decisions.append(await router.select_backend(sticky(f"{name}-{i}")))
                    with pytest.raises(PolicyDenied):
                        await b.select_backend(DENIED)
                    await wait_for(lambda: len(received) >= 17, message=f"got {len(received)} of 17")
                    events.close()
        journal = await a.journal()
    got = only_events(received)
    assert len(got) == 17
    assert [e.event_type for e in got] == ["routing_selected", "audit"] * 8 + ["audit"]
    assert [e.sequence for e in got] == list(range(3, 20))  # strictly increasing, fleet-wide
    selected = [e for e in got if e.event_type == "routing_selected"]
    assert [e.payload["request"]["affinity_key"] for e in selected] == [
        f"{'ab'[i % 2]}-{i}" for i in range(8)
    ]
    assert [e.payload["decision"] for e in selected] == [d.to_dict() for d in decisions]
    assert got[-1].payload["decision"] == "deny"
    # The very events the fleet's journal keeps (same ids, same origin).
    assert [e.to_dict() for e in got] == [e.to_dict() for e in journal[-17:]]


@pytest.mark.anyio
async def test_a_subscriber_sees_another_process_and_the_cli_is_unaffected(redis_url: str) -> None:
    # The command line routes through RedisStore's default prefix, in a process of its own.
    command = [sys.executable, "-m", "beamrouting", "select", json.dumps(RR), "--repeat", "3", "--json"]
    async with Router(store=RedisStore(redis_url)) as router, router.subscribe() as events:
        mine = await router.select_backend(RR)
        done = await anyio.run_process([*command, "--redis", redis_url], cwd=REPO_ROOT, check=False)
        assert done.returncode == 0, done.stderr.decode()
        theirs = [json.loads(line) for line in done.stdout.decode().splitlines()]
        after = await router.select_backend(RR)
        got = only_events(await take(events, 10))
    assert [d["backend"] for d in theirs] == ["codex", "copilot", "gemini"]  # the CLI's usual output
    selected = [e.payload["decision"] for e in got if e.event_type == "routing_selected"]
    assert selected == [mine.to_dict(), *theirs, after.to_dict()]
    assert [e.sequence for e in got] == list(range(1, 11))


@pytest.mark.anyio
async def test_listening_starts_when_the_subscription_starts(redis_url: str, prefix: str) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        events = router.subscribe()
        await router.select_backend(RR)  # created but not started: not delivered
        await events.start()
        await events.start()  # starting again changes nothing
        after = await router.select_backend(RR)
        got = only_events(await take(events, 2))
        assert events.buffered == 0
        await events.aclose()
        assert [item async for item in events] == []
    assert got[0].payload["decision"] == after.to_dict()
    assert [e.sequence for e in got] == [3, 4]


@pytest.mark.anyio
async def test_event_type_filter(redis_url: str, prefix: str) -> None:
    async with (
        Router(store=RedisStore(redis_url, prefix=prefix)) as router,
        router.subscribe(event_type="audit") as audits,
        router.subscribe(event_type="routing_selected") as selected,
    ):
        first = await router.select_backend(RR)
        with pytest.raises(PolicyDenied):
            await router.select_backend(DENIED)
        second = await router.select_backend(RR)
        got_audits = only_events(await take(audits, 3))
        got_selected = only_events(await take(selected, 2))
        third = await router.select_backend(RR)
        (next_selected,) = only_events(await take(selected, 1))  # the deny made none
    assert [e.event_type for e in got_audits] == ["audit"] * 3
    assert [e.payload["decision"] for e in got_audits] == ["allow", "deny", "allow"]
    assert [e.event_type for e in got_selected] == ["routing_selected"] * 2
    assert [e.payload["decision"] for e in got_selected] == [first.to_dict(), second.to_dict()]
    assert next_selected.payload["decision"] == third.to_dict()
    assert [e.sequence for e in [*got_selected, next_selected]] == [1, 4, 6]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"maxlen": 1}, ValueError),
        ({"maxlen": True}, TypeError),
        ({"maxlen": "10"}, TypeError),
        ({"event_type": "decision"}, ValueError),
        ({"event_type": 3}, TypeError),
    ],
)
async def test_options_are_checked_as_in_memory(
    redis_url: str, prefix: str, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    assert isinstance(store.journal_source(), JournalFeed)
    async with Router(store=store) as router:
        with pytest.raises(error):
            router.subscribe(**kwargs)
        with pytest.raises(error):
            Router().subscribe(**kwargs)


# --------------------------------------------------------------------------- falling behind


@pytest.mark.anyio
async def test_a_slow_subscriber_gets_a_gap_and_routing_does_not_wait(
    redis_url: str, prefix: str, inspect: Any
) -> None:
    calls = 400
    store = RedisStore(redis_url, prefix=prefix, journal_size=10)
    async with Router(store=store) as router, router.subscribe(maxlen=4) as events:
        await router.select_backend(RR)
        items = await take(events, 1)  # it read one record (two events) and stalls here

        async def caller(n: int) -> None:
            for _ in range(n):
                await router.select_backend(RR)

        with anyio.fail_after(20):  # every call completes while the subscriber reads nothing
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(caller, calls // 20)
        assert events.buffered == 1  # only what it had read: the backlog stays in Redis
        assert inspect.xlen(prefix + "journal") < calls  # the cap trimmed what it had not read
        ((_, oldest),) = inspect.xrange(prefix + "journal", count=1)
        total = 2 * (calls + 1)
        with anyio.fail_after(10):
            while not (isinstance(items[-1], JournalEvent) and items[-1].sequence == total):
                items.append(await events.__anext__())
                assert events.buffered <= 4  # it reads batches of at most maxlen events
        assert events.buffered == 0
    gaps = [i for i, item in enumerate(items) if isinstance(item, SubscriptionGap)]
    assert len(gaps) == 1
    gap, before, after = items[gaps[0]], items[gaps[0] - 1], items[gaps[0] + 1]
    assert isinstance(gap, SubscriptionGap)
    assert isinstance(before, JournalEvent) and isinstance(after, JournalEvent)
    assert before.sequence == 2  # the first decision was delivered whole
    assert after.sequence == int(oldest[b"s"])  # then the oldest entry the stream still held
    assert gap.missed == after.sequence - before.sequence - 1 > 0
    assert events.missed == gap.missed
    got = only_events([item for item in items if not isinstance(item, SubscriptionGap)])
    assert len(got) + gap.missed == total
    assert [e.sequence for e in got] == [1, 2, *range(after.sequence, total + 1)]


# --------------------------------------------------------------------------- ending


@pytest.mark.anyio
async def test_close_wakes_a_waiting_reader_and_releases_its_connection(
    private_redis: RedisServer, clients: Any, prefix: str
) -> None:
    # Each XREAD waits up to operation_timeout: 5 s, far longer than close() may take.
    store = RedisStore(private_redis.url, prefix=prefix, operation_timeout=5.0)
    outcome: list[Item] = []
    async with Router(store=store) as router:
        events = router.subscribe()
        assert subscribers(clients) == 0  # nothing connects before it starts

        async def reader() -> None:
            outcome.extend([item async for item in events])  # the first __anext__ starts it

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await wait_for(lambda: subscribers(clients, blocked=True) == 1)
                closed_at = anyio.current_time()
                events.close()
            assert anyio.current_time() - closed_at < 2.0
        assert outcome == []
        assert events.closed
        await wait_for(lambda: subscribers(clients) == 0, message="the connection was not released")
        assert (await router.select_backend(RR)).backend == "claude"  # routing carries on


@pytest.mark.anyio
async def test_every_way_of_ending_releases_the_connection(
    private_redis: RedisServer, clients: Any, prefix: str
) -> None:
    async with Router(store=RedisStore(private_redis.url, prefix=prefix)) as router:
        # Leaving `async with`.
        async with router.subscribe() as events:
            assert subscribers(clients) == 1
        assert events.closed
        await wait_for(lambda: subscribers(clients) == 0)
        # close() with no read under way: released as soon as the loop runs.
        events = router.subscribe()
        await events.start()
        assert subscribers(clients) == 1
        events.close()
        await wait_for(lambda: subscribers(clients) == 0)
        # The router closing ends every live subscription.
        events = router.subscribe()
        await events.start()
        await router.select_backend(RR)
        assert subscribers(clients) == 1
    assert events.closed
    await wait_for(lambda: subscribers(clients) == 0)
    with anyio.fail_after(5):
        assert [e.event_type for e in only_events([item async for item in events])] == []
    late = router.subscribe()  # on a closed router: closed at once, never connects
    assert late.closed
    async with late:
        assert [item async for item in late] == []
    assert subscribers(clients) == 0


@pytest.mark.anyio
async def test_a_cancelled_reader_loses_nothing(
    private_redis: RedisServer, clients: Any, prefix: str
) -> None:
    async with (
        Router(store=RedisStore(private_redis.url, prefix=prefix)) as router,
        router.subscribe() as events,
    ):
        first = await router.select_backend(RR)
        with anyio.CancelScope() as scope:

            async def cancel_once_waiting() -> None:
                await wait_for(lambda: subscribers(clients, blocked=True) == 1)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_once_waiting)
                assert len(only_events(await take(events, 2))) == 2
                await events.__anext__()  # waits in XREAD until cancelled
                pytest.fail("nothing was routed, yet an event came")
        assert scope.cancelled_caught
        assert not events.closed
        # The cancelled wait dropped its connection (a reply may have been on its way).
        await wait_for(lambda: subscribers(clients) == 0)
        second = await router.select_backend(RR)  # routed while nobody reads
        got = only_events(await take(events, 2))
        assert subscribers(clients) == 1  # the next read connected anew
    assert got[0].payload["decision"] == second.to_dict() != first.to_dict()
    assert [e.sequence for e in got] == [3, 4]
    assert events.missed == 0


# --------------------------------------------------------------------------- Redis lost


async def _read_until_error(events: Subscription, errors: list[tuple[BaseException, float]]) -> None:
    started = anyio.current_time()
    try:
        await events.__anext__()
    except StoreUnavailable as exc:
        errors.append((exc, anyio.current_time() - started))


@pytest.mark.anyio
async def test_redis_killed_mid_subscription_raises_store_unavailable(
    private_redis: RedisServer, clients: Any, prefix: str
) -> None:
    store = RedisStore(private_redis.url, prefix=prefix, operation_timeout=5.0)
    errors: list[tuple[BaseException, float]] = []
    async with Router(store=store) as router, router.subscribe() as events:
        await router.select_backend(RR)
        assert len(await take(events, 2)) == 2
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_until_error, events, errors)
                await wait_for(lambda: subscribers(clients, blocked=True) == 1)
                private_redis.kill()
        assert len(errors) == 1
        error, elapsed = errors[0]
        assert isinstance(error, BeamRoutingError)
        assert elapsed < 5.0  # the lost connection is noticed at once, not after the wait
        assert events.closed
        with anyio.fail_after(1):
            assert [item async for item in events] == []  # it ended: iteration stops


@pytest.mark.anyio
@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="pausing a process needs SIGSTOP")
async def test_redis_not_answering_raises_store_unavailable_in_time(
    private_redis: RedisServer, clients: Any, prefix: str
) -> None:
    store = RedisStore(private_redis.url, prefix=prefix, operation_timeout=0.3)
    errors: list[tuple[BaseException, float]] = []
    async with Router(store=store) as router:
        async with router.subscribe() as events:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_read_until_error, events, errors)
                    await wait_for(lambda: subscribers(clients, blocked=True) == 1)
                    private_redis.pause()
                    try:
                        await wait_for(lambda: bool(errors), timeout=5)
                    finally:
                        private_redis.resume()
            assert events.closed
        (error, elapsed), *_ = errors
        assert "did not answer" in str(error)
        assert elapsed < 2.0  # one wait (0.3 s) and its grace (0.3 s), not a hang
        await wait_for(lambda: subscribers(clients) == 0)
        assert (await router.select_backend(RR)).backend == "claude"


@pytest.mark.anyio
async def test_starting_without_redis_raises_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", operation_timeout=0.5)
    events = Subscription(store.journal_source())
    with anyio.fail_after(5), pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
        async with events:
            pytest.fail("the subscription started without Redis")
    assert events.closed


def test_trio_is_refused_clearly(redis_url: str) -> None:
    feed = RedisStore(redis_url).journal_source()

    async def main() -> None:
        async with Subscription(feed):
            pytest.fail("a Redis subscription started under trio")

    with pytest.raises(RuntimeError, match="trio"):
        anyio.run(main, backend="trio")
