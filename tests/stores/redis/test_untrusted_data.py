"""Redis data is untrusted input: what the store did not write never crashes an actor or opens an outage.

A value in Redis the store did not write (a buggy or older writer, a hand edit, a partial
write) is either repaired, when that loses nothing (logged at WARNING on
``beamrouting.redis``), or fails only the calls that need it, with a typed error
(:class:`~beamrouting.StoreDataError`, or :class:`~beamrouting.InvalidPolicyProfile` for a
stored profile). Only a server that cannot be reached or does not answer is an outage
(:class:`~beamrouting.StoreUnavailable`, and the fail-fast window).

- the fuzz test damages every key a router's store writes, one at a time, with every kind of
  garbage, and drives every router call against it;
- one test per repair rule and per :class:`~beamrouting.StoreDataError` rule;
- a fresh router starts and routes on a prefix whose every key holds garbage;
- fake servers (tiny TCP servers started here) answer with malformed or error replies;
- Redis URLs are checked when the store is constructed.

Runs on asyncio and uvloop (the Redis store's backends), on the session's redis-server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio
import anyio.abc
import msgspec
import pytest

from beamrouting import (
    BeamRoutingError,
    InvalidPolicyProfile,
    JournalEvent,
    Policy,
    PolicyDenied,
    RedisStore,
    RouteDecision,
    Router,
    RoutingEngine,
    SessionHandle,
    StoreDataError,
    StoreUnavailable,
    Subscription,
    SubscriptionGap,
)
from beamrouting._store._redis._feed import RedisJournalFeed
from beamrouting._store._redis._keys import KeyLayout
from beamrouting.store import SelectOp
from tests._redis import RedisServer, import_redis_or_skip

import_redis_or_skip()

LOGGER: Final = "beamrouting.redis"
BOUND: Final = "selected backend and bound sticky affinity"
REUSED: Final = "reused sticky affinity backend"

RR: Final[dict[str, Any]] = {"policy": "round_robin"}
RR_OTHER: Final[dict[str, Any]] = {"policy": "round_robin", "excluded_backends": ["claude"]}
EXPLICIT: Final[dict[str, Any]] = {"policy": "explicit", "backend": "codex"}
PROFILE: Final[dict[str, Any]] = {
    "rules": [{"action": "backend", "match": ["eq", "backend", "opencode"], "reason": "no opencode"}]
}
NAMING_PROFILE: Final[dict[str, Any]] = {"backend": "codex", "policy_profile_id": "p"}


def sticky(key: str, **extra: Any) -> dict[str, Any]:
    return {"policy": "sticky", "affinity_key": key, **extra}


POLICY_REQUESTS: Final[dict[str, dict[str, Any]]] = {
    "explicit": EXPLICIT,
    "sticky": sticky("k"),
    "round_robin": RR,
    "failover": {"policy": "failover", "last_backend": "claude"},
    "capability_first": {"policy": "capability_first", "capabilities": ["hooks"]},
    "preferred_then_fallback": {"policy": "preferred_then_fallback", "preferred_backends": ["gemini"]},
    "least_loaded": {"policy": "least_loaded"},
    "weighted": {"policy": "weighted"},
}
"""A request of every policy."""


def counter_key(prefix: str, request: dict[str, Any]) -> str:
    engine = RoutingEngine()
    return KeyLayout(prefix).counter(engine.plan(engine.normalize(request)).counter_key)


def least_loaded_key(prefix: str) -> str:
    """The counter ``least_loaded`` turns while no backend has a live session (all are tied)."""
    engine = RoutingEngine()
    plan = engine.plan(engine.normalize({"policy": "least_loaded"}))
    return KeyLayout(prefix).counter(plan.tie_key(plan.ordered))


def binding_key(prefix: str, affinity_key: str) -> str:
    return KeyLayout(prefix).binding(affinity_key)


def named_keys(prefix: str) -> dict[str, str]:
    """Every key the populated prefix holds, by the name the fuzz gives it."""
    keys = KeyLayout(prefix)
    return {
        "counter:round_robin": counter_key(prefix, RR),
        "counter:round_robin_other": counter_key(prefix, RR_OTHER),
        "counter:sticky": counter_key(prefix, sticky("k")),
        "binding:k": binding_key(prefix, "k"),
        "binding:k2": binding_key(prefix, "k2"),
        "profiles": keys.profiles,
        "journal": keys.journal,
        "journal:seq": keys.journal_seq,
        "journal:base": keys.journal_base,
        "sessions": keys.sessions,
        "sessions:order": keys.sessions_order,
        "sessions:seq": keys.sessions_seq,
        "sessions:expiry": keys.sessions_expiry,
        "live": keys.live,
        "live:of": keys.live_of,
        "profiles:v": keys.profiles_version,
        "health": keys.health,
        "health:v": keys.health_version,
        "counter:least_loaded": least_loaded_key(prefix),
        "counter:weighted": counter_key(prefix, {"policy": "weighted"}),
    }


async def restarts(router: Router) -> dict[str, int]:
    return dict((await router.statistics()).restarts)


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    """The WARNING records of ``beamrouting.redis``, one a line."""
    return "\n".join(
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
    )


def stored_record(when: float, event_type: str = "outcome", payload: Any = None) -> bytes:
    """The ``r`` field of a one-event journal record, as the store encodes it."""
    return msgspec.msgpack.encode([when, None, None, None, event_type, payload or {}])


DEEP_MSGPACK: Final = b"\x91" * 100_000 + b"\x01"
"""A msgpack array nested 100,000 deep: decoding it recurses past any limit."""


def deep_handle(session_id: str) -> bytes:
    """An encoded session handle whose metadata nests 100,000 deep."""
    head = msgspec.msgpack.encode({"session_id": session_id, "backend": "codex", "metadata": {"m": None}})
    return head[:-1] + DEEP_MSGPACK


def deep_record() -> bytes:
    """A journal record whose payload nests 100,000 deep."""
    return stored_record(1.0, payload={"m": None})[:-1] + DEEP_MSGPACK


# --------------------------------------------------------------------------- 1. the fuzz test

VALUE_KINDS: Final = (
    "garbage",
    "non_utf8",
    "msgpack_shape",
    "json_shape",
    "huge",
    "near_overflow",
    "minus_one",
    "empty",
    "inf",
    "deep",
)
"""Garbage values: written into a string key, a hash key's field, a zset's score or member, a stream entry."""
TYPE_KINDS: Final = ("string", "hash", "list", "set", "zset", "stream")
"""A key of the wrong Redis type: the key is replaced by one of this type (when it has another)."""

_PLAIN: Final[dict[str, bytes]] = {
    "garbage": b"garbage",
    "non_utf8": b"\xff\xfe\x00",
    "msgpack_shape": msgspec.msgpack.encode({"session_id": 7, "backend": ["codex"], "x": [1.5]}),
    "json_shape": b'[{"rules": "none"}, 3]',
    "huge": b"9223372036854775807",
    "near_overflow": b"9223372036854775806",
    "minus_one": b"-1",
    "empty": b"",
    "inf": b"inf",
    "deep": DEEP_MSGPACK,
}
_SCORES: Final[dict[str, float]] = {
    "huge": 9223372036854775807.0,
    "near_overflow": 9223372036854775806.0,
    "minus_one": -1.0,
    "inf": float("inf"),
}


def damage(client: Any, key: str, key_type: str, kind: str) -> None:
    """Write garbage of ``kind`` into ``key`` (a key of ``key_type``)."""
    if kind in TYPE_KINDS:
        client.delete(key)
        match kind:
            case "string":
                client.set(key, b"garbage")
            case "hash":
                client.hset(key, "field", b"garbage")
            case "list":
                client.rpush(key, b"garbage")
            case "set":
                client.sadd(key, b"garbage")
            case "zset":
                client.zadd(key, {b"garbage": 1})
            case _:
                client.xadd(key, {"field": b"garbage"})
        return
    value = _PLAIN[kind]
    match key_type:
        case "string":
            client.set(key, value, keepttl=True)
        case "hash":  # the profile ``p`` or the session ``s-victim``
            if key.endswith("sessions"):
                client.hset(key, "s-victim", deep_handle("s-victim") if kind == "deep" else value)
            else:
                client.hset(key, "p", b"[" * 100_000 + b"]" * 100_000 if kind == "deep" else value)
        case "zset":  # the order or deadline of ``s-victim``, or a member that is no session
            if kind in _SCORES:
                client.zadd(key, {"s-victim": _SCORES[kind]})
            else:
                client.zadd(key, {value: 1})
        case "stream":  # an entry at the stream's end
            if kind in ("msgpack_shape", "deep", "inf"):
                record = {"msgpack_shape": value, "deep": deep_record(), "inf": stored_record(float("inf"))}
                client.xadd(key, {"s": b"999", "e": b"1", "r": record[kind]})
            else:
                client.xadd(key, {"s": value, "e": value, "r": value})
        case _:
            raise AssertionError(f"a key of type {key_type} in the fuzz")


async def populate(url: str, prefix: str) -> None:
    """Route so the store writes every kind of key it uses."""
    async with Router(store=RedisStore(url, prefix=prefix, session_ttl=600)) as router:
        await router.put_policy_profile("p", PROFILE)
        for request in (*POLICY_REQUESTS.values(), RR_OTHER, sticky("k2"), NAMING_PROFILE):
            await router.select_backend(request)
        await router.register_session("s-victim", "codex", {"n": 1})
        await router.register_session("s-other", "claude")
        await router.report("gemini", "failure")
    async with Router(store=RedisStore(url, prefix=prefix)) as router:  # no session_ttl: no deadline
        await router.register_session("s-forever", "gemini")


Snapshot = dict[str, tuple[str, bytes, int]]


def snapshot(client: Any, prefix: str) -> Snapshot:
    """Every key of the prefix (found with SCAN), without the prefix: its type, DUMP and time to live."""
    found: Snapshot = {}
    for raw in client.scan_iter(match=prefix + "*", count=1000):
        key = raw.decode()
        found[key.removeprefix(prefix)] = (
            client.type(key).decode(),
            client.dump(key),
            max(0, client.pttl(key)),
        )
    return found


def restore(client: Any, prefix: str, saved: Snapshot) -> None:
    """Write the keys of ``saved`` under ``prefix`` (no key name depends on the prefix but by it)."""
    for name, (_, dumped, ttl) in saved.items():
        client.restore(prefix + name, ttl, dumped, replace=True)


async def _subscribe_and_read(router: Router) -> JournalEvent:
    """Start a subscription, route once and read that decision's event."""
    async with router.subscribe() as events:
        decision = await router.select_backend(EXPLICIT)
        async for item in events:
            if isinstance(item, JournalEvent):
                assert item.payload["decision"] == decision.to_dict(), item
                return item
    raise AssertionError("the subscription ended without an event")


async def _open_session(router: Router) -> str:
    async with router.session(RR, session_id="s-fresh") as session:
        return session.backend


Call = tuple[str, Callable[[], Awaitable[Any]]]


def _selecting(router: Router, request: dict[str, Any]) -> Callable[[], Awaitable[RouteDecision]]:
    return lambda: router.select_backend(request)


def fuzz_calls(router: Router) -> tuple[list[Call], list[Call]]:
    """Every router call, by name: the reads (made concurrently, as a busy router batches
    them), then the writes, one after the other.
    """
    reads: list[Call] = [
        (f"select {name}", _selecting(router, request)) for name, request in POLICY_REQUESTS.items()
    ]
    reads += [
        ("select round_robin_other", lambda: router.select_backend(RR_OTHER)),
        ("select sticky_other", lambda: router.select_backend(sticky("k2"))),
        ("select naming profile", lambda: router.select_backend(NAMING_PROFILE)),
        ("explain round_robin", lambda: router.explain(RR)),
        ("explain sticky", lambda: router.explain(sticky("k"))),
        ("explain naming profile", lambda: router.explain(NAMING_PROFILE)),
        ("journal", lambda: router.journal()),
        ("session_backend s-victim", lambda: router.session_backend("s-victim")),
        ("session_backend s-other", lambda: router.session_backend("s-other")),
        ("select by session s-victim", lambda: router.select_backend("s-victim", RR)),
        ("sessions", lambda: router.sessions()),
    ]
    writes: list[Call] = [
        ("subscribe", lambda: _subscribe_and_read(router)),
        ("register_session", lambda: router.register_session("s-new", "copilot")),
        ("session()", lambda: _open_session(router)),
        ("unregister_session", lambda: router.unregister_session("s-forever")),
        ("put_policy_profile", lambda: router.put_policy_profile("q", PROFILE)),
        ("delete_policy_profile", lambda: router.delete_policy_profile("q")),
        ("clear", lambda: router.clear()),
        ("ensure_tables", lambda: router.ensure_tables()),
    ]
    return reads, writes


async def _settle(outcomes: dict[str, Any], name: str, call: Callable[[], Awaitable[Any]]) -> None:
    """``outcomes[name]``: what ``call()`` returned or raised (a hang fails it with TimeoutError)."""
    try:
        with anyio.fail_after(10):
            outcomes[name] = await call()
    except Exception as exc:  # every outcome is judged by the caller
        outcomes[name] = exc


def expected_failures(name: str, kind: str) -> dict[str, type[BeamRoutingError]]:
    """The calls that must fail when key ``name`` holds garbage of ``kind``, and how; the rest succeed."""
    value = kind in VALUE_KINDS
    if name == "sessions" and value:  # the stored session s-victim cannot be read
        reads = ("session_backend s-victim", "select by session s-victim", "sessions")
        return dict.fromkeys(reads, StoreDataError)
    if name == "profiles":  # malformed, or (a key of the wrong type, replaced) gone: which denies
        return {"select naming profile": InvalidPolicyProfile if value else PolicyDenied}
    return {}


async def fuzz_one(url: str, prefix: str, name: str, key: str, kind: str) -> list[str]:
    """Drive every router call with ``key`` damaged; what went wrong, one line each.

    The operation timeout is long: a busy test machine must not pass for an outage.
    """
    problems: list[str] = []
    outcomes: dict[str, Any] = {}
    store = RedisStore(url, prefix=prefix, session_ttl=600, operation_timeout=5.0)
    async with Router(store=store) as router:
        reads, writes = fuzz_calls(router)
        async with anyio.create_task_group() as tg:
            for call_name, call in reads:
                tg.start_soon(_settle, outcomes, call_name, call)
        for call_name, call in writes:
            await _settle(outcomes, call_name, call)
        must_fail = expected_failures(name, kind)
        for call_name, outcome in outcomes.items():
            expected = must_fail.get(call_name)
            if isinstance(outcome, StoreUnavailable):
                problems.append(f"{call_name}: an outage while Redis is up: {outcome!r}")
            elif isinstance(outcome, BaseException) and not isinstance(outcome, BeamRoutingError):
                problems.append(f"{call_name}: an untyped error {outcome!r}")
            elif expected is None and isinstance(outcome, BaseException):
                problems.append(f"{call_name}: failed, though it does not need {key}: {outcome!r}")
            elif expected is not None and not isinstance(outcome, expected):
                problems.append(f"{call_name}: {outcome!r} instead of {expected.__name__}")
            elif expected is StoreDataError and (key not in str(outcome) or "'s-victim'" not in str(outcome)):
                problems.append(f"{call_name}: {outcome!r} names neither {key} nor the session")
        for call_name in ("explain round_robin", "explain sticky"):
            explained = outcomes[call_name]
            if not isinstance(explained, BaseException) and explained.error is not None:
                problems.append(f"{call_name}: explained an error {explained.error}")
        decision = outcomes["select round_robin"]
        if (
            name == "counter:round_robin"
            and isinstance(decision, RouteDecision)
            and decision.backend != "claude"
        ):
            problems.append(f"the damaged counter did not start again: {decision.backend}")
        decision = outcomes["select sticky"]
        if isinstance(decision, RouteDecision):
            wanted = BOUND if name == "binding:k" else REUSED
            if decision.reasons != (wanted,):
                problems.append(f"select sticky: {decision.reasons} instead of {wanted!r}")
        if name == "journal" and kind in VALUE_KINDS and store.unreadable_entries < 1:
            problems.append("journal: the unreadable entry was not counted")
        # Whatever was damaged, writing good values over it brings everything back.
        try:
            await router.put_policy_profile("p", PROFILE)
            assert (await router.select_backend(NAMING_PROFILE)).backend == "codex"
            await router.register_session("s-victim", "codex")
            listed = {handle.session_id for handle in await router.sessions()}
            assert "s-victim" in listed, listed
            if not (name == "sessions" and kind in TYPE_KINDS):  # the replaced hash held s-other
                assert await router.session_backend("s-other") == "claude", "s-other was lost"
            assert await router.journal(limit=1), "the journal is empty"
        except Exception as exc:  # an AssertionError above, or the call's own error
            problems.append(f"no recovery after good values were written: {exc!r}")
        restarted = await restarts(router)
        if any(restarted.values()):
            problems.append(f"actors restarted: {restarted}")
    return [f"{name} ({key}) holding {kind}: {problem}" for problem in problems]


def test_the_fuzz_knows_every_policy() -> None:
    """The fuzz drives every policy."""
    served = {Policy(request["policy"]) for request in POLICY_REQUESTS.values()}
    assert served == set(Policy), "add a request of the new policy to POLICY_REQUESTS"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", VALUE_KINDS + TYPE_KINDS)
async def test_fuzz_every_key_with_every_kind_of_garbage(
    redis_url: str, prefix: str, inspect: Any, kind: str
) -> None:
    """Each key the store wrote (found by SCAN) holds garbage of ``kind`` in turn, and every
    router call is made on it by a fresh router: no actor restarts, no untyped error, no
    outage, and only the calls that need the damaged value fail (:func:`expected_failures`).
    Writing good values afterwards brings everything back.

    Each key is damaged in a copy of the populated prefix of its own, and the copies are
    driven concurrently (as routers of a fleet would be).
    """
    await populate(redis_url, prefix)
    saved = snapshot(inspect, prefix)
    names = {key.removeprefix(prefix): name for name, key in named_keys(prefix).items()}
    unknown = sorted(set(saved) - set(names))
    assert not unknown, f"the store wrote keys the fuzz does not know (add them to named_keys): {unknown}"
    assert sorted(saved) == sorted(names), "the routing above no longer writes every kind of key"
    problems: list[str] = []

    async def fuzz(index: int, suffix: str, key_type: str) -> None:
        copy = f"{prefix[:-1]}-{index}:"
        restore(inspect, copy, saved)
        damage(inspect, copy + suffix, key_type, kind)
        problems.extend(await fuzz_one(redis_url, copy, names[suffix], copy + suffix, kind))

    async with anyio.create_task_group() as tg:
        for index, (suffix, (key_type, _, _)) in enumerate(sorted(saved.items())):
            if kind != key_type:
                tg.start_soon(fuzz, index, suffix, key_type)
    assert not problems, "\n".join(sorted(problems))


# --------------------------------------------------------------------------- 2. repairs: logged, and the call succeeds


@pytest.mark.anyio
@pytest.mark.parametrize("value", [b"garbage", b"\xff\xfe\x00", b"", b"-1", b"CODEX", b"nobody"])
async def test_a_binding_that_names_no_backend_is_unbound_and_removed(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    key = binding_key(prefix, "k")
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        await router.select_backend(RR)
        inspect.set(key, value)
        explained = await router.explain(sticky("k"))  # reads it as unbound, changes nothing
        assert explained.decision is not None and explained.decision.reasons == (BOUND,)
        assert inspect.get(key) == value and not warnings_of(caplog)
        decision = await router.select_backend(sticky("k"))
        assert decision.reasons == (BOUND,) and decision.backend == explained.decision.backend
        assert inspect.get(key) == decision.backend.encode()
        assert key in warnings_of(caplog)
        assert (await router.select_backend(sticky("k"))).reasons == (REUSED,)
        assert not any((await restarts(router)).values())


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value",
    [
        b"garbage",
        b"1.5",
        b"",
        b"-1",
        b"\xff\xfe\x00",
        b"9223372036854775807",  # INCRBY overflows
        b"9223372036854775806",  # INCRBY reaches 2**63 - 1, which Lua rounds to 2.0**63
        b"9007199254740992",  # 2**53: past what Lua's numbers hold exactly
    ],
)
@pytest.mark.parametrize("policy", ["round_robin", "sticky"])
async def test_a_counter_that_is_no_integer_or_would_overflow_starts_again(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture, value: bytes, policy: str
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    request = RR if policy == "round_robin" else sticky("new")
    key = counter_key(prefix, request)
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        for key_name in ("a", "b"):  # move the counter on: a restart shows
            await router.select_backend(RR if policy == "round_robin" else sticky(key_name))
        inspect.set(key, value)
        explained = await router.explain(request)  # explain reads it as a selection repairs it
        assert explained.decision is not None and explained.decision.backend == "claude"
        decision = await router.select_backend(request)
        assert decision.backend == "claude", "the counter did not start again at 1"
        assert inspect.get(key) == b"1"
        assert key in warnings_of(caplog)
        assert (await router.select_backend(RR_OTHER)).backend == "codex"  # another counter: untouched
        assert not any((await restarts(router)).values())


@pytest.mark.anyio
@pytest.mark.parametrize(
    "value", [b"garbage", b"-1", b"1.5", b"", b"\xff\xfe\x00", b"9223372036854775807", b"9007199254740992"]
)
async def test_a_journal_seq_that_is_no_integer_is_rebuilt_from_the_stream(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    key = prefix + "journal:seq"
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        for _ in range(3):
            await router.select_backend(RR)
        inspect.set(key, value)
        await router.select_backend(RR)
        assert [event.sequence for event in await router.journal()] == list(range(1, 9))
        assert inspect.get(key) == b"8"
        assert key in warnings_of(caplog)


@pytest.mark.anyio
@pytest.mark.parametrize("count", [b"1e300", b"-5", b"nan", b"3", b"9007199254740992"])
async def test_the_rebuild_skips_entries_the_store_would_not_have_written(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture, count: bytes
) -> None:
    # The newest entry has a sequence but an event count no record has: the sequence is rebuilt
    # from the entry before it, not from that count (which made every later entry unreadable).
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = RedisStore(redis_url, prefix=prefix)
    async with Router(store=store) as router:
        await router.select_backend(EXPLICIT)
        inspect.xadd(prefix + "journal", {"s": b"3", "e": count, "r": b"garbage"})
        inspect.set(prefix + "journal:seq", b"garbage")
        for _ in range(2):
            await router.select_backend(EXPLICIT)
        assert [event.sequence for event in await router.journal()] == list(range(1, 7))
        assert store.unreadable_entries == 1
        assert inspect.get(prefix + "journal:seq") == b"6"


@pytest.mark.anyio
@pytest.mark.parametrize("value", [b"garbage", b"\xff\xfe\x00", b"", b"-1", b"1.5", b"9223372036854775808"])
async def test_a_journal_base_that_is_no_integer_is_replaced(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    key = prefix + "journal:base"
    inspect.set(key, value)
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:  # starting repairs it
        assert key in warnings_of(caplog)
        base = int(inspect.get(key))
        assert 0 <= base < 2**63
        await router.select_backend(RR)
        (selected, _) = await router.journal()
        assert selected.event_id == f"event_{(base + 1) & (2**64 - 1):016x}"
        caplog.clear()
        inspect.set(key, value)
        await router.ensure_tables()  # and so does ensure_tables, at any time
        assert key in warnings_of(caplog)
        assert 0 <= int(inspect.get(key)) < 2**63
        caplog.clear()
        inspect.set(key, value)
        async with router.subscribe() as events:  # and a subscription's start
            assert key in warnings_of(caplog)
            decision = await router.select_backend(RR)
            with anyio.fail_after(5):
                event = await events.__anext__()
            assert isinstance(event, JournalEvent) and event.payload["decision"] == decision.to_dict()
        assert not any((await restarts(router)).values())


UNREADABLE_ENTRIES: Final[list[Any]] = [
    pytest.param({"s": b"garbage", "r": b"garbage"}, id="garbage"),
    pytest.param({"s": b"\xff\xfe\x00", "e": b"\xff", "r": b"\xff\xfe\x00"}, id="non-utf8"),
    pytest.param({"s": b"5"}, id="no-record"),
    pytest.param({"r": stored_record(1.0)}, id="no-sequence"),
    pytest.param({"s": b"-1", "r": stored_record(1.0)}, id="negative-sequence"),
    pytest.param({"s": b"5", "r": msgspec.msgpack.encode({"time": 1})}, id="wrong-msgpack-shape"),
    pytest.param(
        {"s": b"5", "r": msgspec.msgpack.encode([1.0, None, None, None, None, None])}, id="no-event"
    ),
    pytest.param({"s": b"5", "r": stored_record(float("inf"))}, id="infinite-time"),
    pytest.param({"s": b"5", "r": stored_record(1e306)}, id="time-past-milliseconds"),
    pytest.param({"s": b"5", "r": stored_record(float("nan"))}, id="nan-time"),
    pytest.param({"s": b"5", "r": deep_record()}, id="deeply-nested"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("fields", UNREADABLE_ENTRIES)
async def test_an_unreadable_journal_entry_is_skipped_and_counted(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture, fields: dict[str, bytes]
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = RedisStore(redis_url, prefix=prefix)
    feed = store.journal_source()
    assert isinstance(feed, RedisJournalFeed)
    async with Router(store=store) as router:
        await feed.open()
        try:
            first = await router.select_backend(RR)
            inspect.xadd(prefix + "journal", fields)
            second = await router.select_backend(RR)
            events = await router.journal()
            assert [event.payload.get("decision") for event in events[::2]] == [
                first.to_dict(),
                second.to_dict(),
            ]
            assert store.unreadable_entries == 1
            assert "skipped 1 unreadable entries" in warnings_of(caplog)
            records = await feed.read(10)  # the live feed skips it too
            assert [record.decision for record in records] == [first, second]
            assert feed.unreadable_entries == 1
        finally:
            await feed.aclose()
        assert not any((await restarts(router)).values())


@pytest.mark.anyio
@pytest.mark.parametrize("fields", UNREADABLE_ENTRIES[5:])
async def test_an_unreadable_entry_that_took_sequence_numbers_is_a_subscription_gap(
    redis_url: str, prefix: str, inspect: Any, fields: dict[str, bytes]
) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router, router.subscribe() as events:
        await router.select_backend(RR)
        sequence = int(inspect.get(prefix + "journal:seq"))
        # A writer that took two sequence numbers and wrote an entry nobody can read.
        inspect.xadd(prefix + "journal", {**fields, "s": str(sequence + 1).encode(), "e": b"2"})
        inspect.incrby(prefix + "journal:seq", 2)
        decision = await router.select_backend(RR)
        with anyio.fail_after(5):
            items = [await events.__anext__() for _ in range(4)]
        assert [type(item) for item in items] == [JournalEvent, JournalEvent, SubscriptionGap, JournalEvent]
        assert items[2] == SubscriptionGap(2)
        assert isinstance(items[3], JournalEvent) and items[3].payload["decision"] == decision.to_dict()
        assert items[3].sequence == sequence + 3


WRONG_TYPES: Final[list[Any]] = [
    pytest.param("counter", "list", id="counter"),
    pytest.param("binding", "hash", id="binding"),
    pytest.param("profiles", "string", id="profiles"),
    pytest.param("journal-read", "string", id="journal-read"),
    pytest.param("journal-commit", "zset", id="journal-commit"),
    pytest.param("journal:seq", "hash", id="journal-seq"),
    pytest.param("journal:base", "set", id="journal-base"),
    pytest.param("sessions", "string", id="sessions"),
    pytest.param("sessions:order", "list", id="sessions-order"),
    pytest.param("sessions:seq", "zset", id="sessions-seq"),
    pytest.param("sessions:expiry", "hash", id="sessions-expiry"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("what", "wrong_type"), WRONG_TYPES)
async def test_a_key_of_the_wrong_type_is_replaced(
    redis_url: str,
    prefix: str,
    inspect: Any,
    caplog: pytest.LogCaptureFixture,
    what: str,
    wrong_type: str,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    keys = KeyLayout(prefix)
    store = RedisStore(redis_url, prefix=prefix, session_ttl=600)
    async with Router(store=store) as router:
        await router.register_session("s-1", "codex")
        await router.select_backend(sticky("k"))
        calls: dict[str, tuple[str, str, Callable[[], Awaitable[Any]]]] = {
            "counter": (counter_key(prefix, RR), "string", lambda: router.select_backend(RR)),
            "binding": (binding_key(prefix, "k"), "string", lambda: router.select_backend(sticky("k"))),
            "profiles": (keys.profiles, "hash", lambda: router.put_policy_profile("p", PROFILE)),
            "journal-read": (keys.journal, "none", lambda: router.journal()),
            "journal-commit": (keys.journal, "stream", lambda: router.select_backend(EXPLICIT)),
            "journal:seq": (keys.journal_seq, "string", lambda: router.select_backend(EXPLICIT)),
            "journal:base": (keys.journal_base, "string", lambda: router.ensure_tables()),
            "sessions": (keys.sessions, "hash", lambda: router.register_session("s-2", "gemini")),
            "sessions:order": (keys.sessions_order, "zset", lambda: router.register_session("s-2", "gemini")),
            "sessions:seq": (keys.sessions_seq, "string", lambda: router.register_session("s-2", "gemini")),
            "sessions:expiry": (
                keys.sessions_expiry,
                "zset",
                lambda: router.register_session("s-2", "gemini"),
            ),
        }
        key, right_type, call = calls[what]
        damage(inspect, key, right_type, wrong_type)
        result = await call()
        if what == "journal-read":
            assert result == []  # the key held no journal
        assert inspect.type(key).decode() == right_type
        assert key in warnings_of(caplog)
        assert (await router.select_backend(RR_OTHER)).backend == "codex"
        assert await router.session_backend("s-2" if what.startswith("sessions") else "s-1") is not None
        assert not any((await restarts(router)).values())


@pytest.mark.anyio
@pytest.mark.parametrize("deadline", [9223372036854775807.0, float("inf")], ids=["huge", "inf"])
async def test_a_deadline_no_registration_sets_keeps_the_session_keys(
    redis_url: str, prefix: str, inspect: Any, deadline: float
) -> None:
    # The keys take the latest deadline as their expiry; one past what a registration sets
    # once made them expire at once (a negative PEXPIREAT), losing every session.
    keys = KeyLayout(prefix)
    async with Router(store=RedisStore(redis_url, prefix=prefix, session_ttl=600)) as router:
        await router.register_session("s-1", "codex")
        await router.register_session("s-2", "claude")
        inspect.zadd(keys.sessions_expiry, {"s-1": deadline})
        await router.register_session("s-3", "gemini")
        assert [h.session_id for h in await router.sessions()] == ["s-1", "s-2", "s-3"]
        assert all(inspect.pttl(key) == -1 for key in keys.session_keys)  # kept, without an expiry
        await router.register_session("s-1", "codex")  # a registration sets a real deadline again
        assert all(0 < inspect.pttl(key) <= 600_000 for key in keys.session_keys)


# --------------------------------------------------------------------------- 2. StoreDataError: only the calls that need the value fail

BAD_SESSIONS: Final[list[Any]] = [
    pytest.param(b"garbage", id="garbage"),
    pytest.param(b"\xff\xfe\x00", id="non-utf8"),
    pytest.param(b"", id="empty"),
    pytest.param(msgspec.msgpack.encode(-1), id="msgpack-int"),
    pytest.param(msgspec.msgpack.encode({"session_id": 7, "backend": ["codex"]}), id="wrong-msgpack-shape"),
    pytest.param(msgspec.msgpack.encode(SessionHandle("s-other", "codex")), id="another-sessions-handle"),
    pytest.param(msgspec.msgpack.encode(SessionHandle("s-victim", "nobody")), id="no-such-backend"),
    pytest.param(deep_handle("s-victim"), id="deeply-nested-metadata"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("value", BAD_SESSIONS)
async def test_a_stored_session_that_is_no_handle_fails_its_lookup_and_listings_only(
    redis_url: str, prefix: str, inspect: Any, value: bytes
) -> None:
    key = prefix + "sessions"
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        await router.register_session("s-victim", "codex")
        await router.register_session("s-other", "claude")
        inspect.hset(key, "s-victim", value)
        failing: list[Callable[[], Awaitable[Any]]] = [
            lambda: router.session_backend("s-victim"),
            lambda: router.sessions(),
            lambda: router.select_backend("s-victim", RR),  # routing by the session looks it up
        ]
        for call in failing:
            with pytest.raises(StoreDataError) as caught:
                await call()
            assert caught.value.code == "store_data_error"
            assert key in str(caught.value) and "'s-victim'" in str(caught.value)
        assert await router.session_backend("s-other") == "claude"
        await router.register_session("s-new", "gemini")
        await router.unregister_session("s-new")
        assert (await router.select_backend("s-other", RR)).backend == "claude"
        assert (await router.select_backend(EXPLICIT)).backend == "codex"
        statistics = await router.statistics()
        assert statistics.errors == {"store_data_error": 3}  # no store_unavailable: no outage
        assert not any(statistics.restarts.values())
        await router.register_session("s-victim", "opencode")  # writing a good value over it repairs it
        assert [h.session_id for h in await router.sessions()] == ["s-other", "s-victim"]


BAD_PROFILES: Final[list[Any]] = [
    pytest.param(b"\xff\xfe\x00", id="non-utf8"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b'{"default": "maybe"}', id="invalid-profile"),
    pytest.param(b"[1, 2]", id="json-list"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("value", BAD_PROFILES)
async def test_a_malformed_stored_profile_fails_only_the_requests_naming_it(
    redis_url: str, prefix: str, inspect: Any, value: bytes
) -> None:
    async with Router(store=RedisStore(redis_url, prefix=prefix)) as router:
        await router.put_policy_profile("q", PROFILE)
        inspect.hset(prefix + "profiles", "p", value)
        outcomes: dict[str, Any] = {}
        requests = {
            "p explicit": NAMING_PROFILE,
            "p sticky": sticky("w", policy_profile_id="p"),
            "q explicit": {**NAMING_PROFILE, "policy_profile_id": "q"},
            "q sticky": sticky("w", policy_profile_id="q"),
            "none": RR,
        }
        async with anyio.create_task_group() as tg:  # in one batch
            for name, request in requests.items():
                tg.start_soon(_settle, outcomes, name, _selecting(router, request))
        for name in ("p explicit", "p sticky"):
            error = outcomes.pop(name)
            assert isinstance(error, InvalidPolicyProfile), error
            assert "'p'" in error.detail and "malformed" in error.detail
        assert all(isinstance(outcome, RouteDecision) for outcome in outcomes.values()), outcomes
        explained = await router.explain(NAMING_PROFILE)
        assert explained.error is not None and explained.error["code"] == "invalid_policy_profile"
        assert (await router.explain({**NAMING_PROFILE, "policy_profile_id": "q"})).error is None
        assert await router.delete_policy_profile("p") is True  # it can be removed
        await router.put_policy_profile("p", PROFILE)  # or replaced
        assert (await router.select_backend(NAMING_PROFILE)).backend == "codex"
        statistics = await router.statistics()
        assert statistics.errors == {"invalid_policy_profile": 2}
        assert not any(statistics.restarts.values())


# --------------------------------------------------------------------------- 3. a fresh router on garbage


@pytest.mark.anyio
async def test_a_fresh_router_starts_and_routes_on_garbage_everywhere(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    keys = KeyLayout(prefix)
    garbage = {
        keys.journal_base: b"garbage",
        keys.journal_seq: b"\xff\xfe\x00",
        counter_key(prefix, RR): b"9223372036854775807",
        counter_key(prefix, sticky("k")): b"-1",
        binding_key(prefix, "k"): b"nobody",
        keys.sessions_seq: b"garbage",
    }
    for key, value in garbage.items():
        inspect.set(key, value)
    inspect.hset(keys.sessions, "s-junk", b"\xc1 not msgpack")
    inspect.set(keys.sessions_order, b"garbage")
    inspect.hset(keys.sessions_expiry, "s-junk", b"garbage")
    inspect.xadd(keys.journal, {"s": b"garbage", "e": b"1e300", "r": b"garbage"})
    inspect.xadd(keys.journal, {"s": b"7", "e": b"nan", "r": stored_record(float("inf"))})
    inspect.set(keys.profiles, b"garbage")
    store = RedisStore(redis_url, prefix=prefix, session_ttl=600)
    async with Router(store=store) as router:
        assert (await router.select_backend(RR)).backend == "claude"
        bound = await router.select_backend(sticky("k"))
        assert (bound.backend, bound.reasons) == ("claude", (BOUND,))
        assert (await router.select_backend(EXPLICIT)).backend == "codex"
        with pytest.raises(PolicyDenied):  # the profiles key held no profile
            await router.select_backend(NAMING_PROFILE)
        events = await router.journal()
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        assert len(events) == 7 and store.unreadable_entries == 2
        async with router.subscribe() as subscription:
            decision = await router.select_backend(RR)
            with anyio.fail_after(5):
                event = await subscription.__anext__()
            assert isinstance(event, JournalEvent) and event.payload["decision"] == decision.to_dict()
            assert event.sequence == 8
        await router.register_session("s-1", "codex")
        with pytest.raises(StoreDataError, match="s-junk"):
            await router.sessions()
        await router.unregister_session("s-junk")
        assert [h.session_id for h in await router.sessions()] == ["s-1"]
        assert not any((await restarts(router)).values())
    logged = warnings_of(caplog)
    for key in [*garbage, keys.sessions_order, keys.sessions_expiry, keys.profiles]:
        assert key in logged, f"no warning names {key}"


# --------------------------------------------------------------------------- 4. fake servers


def _commands(buffer: bytearray) -> list[list[bytes]]:
    """Take the complete RESP commands (arrays of bulk strings) off the front of ``buffer``."""
    commands: list[list[bytes]] = []
    while True:
        end = buffer.find(b"\r\n")
        if end < 0 or buffer[:1] != b"*":
            return commands
        count, at, args = int(buffer[1:end]), end + 2, []
        for _ in range(count):
            end = buffer.find(b"\r\n", at)
            if end < 0:
                return commands
            size = int(buffer[at + 1 : end])
            if len(buffer) < end + 2 + size + 2:
                return commands
            args.append(bytes(buffer[end + 2 : end + 2 + size]))
            at = end + 2 + size + 2
        del buffer[:at]
        commands.append(args)


@asynccontextmanager
async def fake_redis(answer: Callable[[list[bytes]], bytes]) -> AsyncIterator[str]:
    """A TCP server on a free loopback port answering each command with ``answer(command)``; yields its URL."""

    async def serve(stream: anyio.abc.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            try:
                while True:
                    buffer += await stream.receive()
                    for command in _commands(buffer):
                        await stream.send(answer(command))
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            tg.cancel_scope.cancel()


MALFORMED_REPLIES: Final[list[Any]] = [
    pytest.param(b"*1\r\n" * 100_000 + b":1\r\n", id="nested-100000-deep"),
    pytest.param(b":abc\r\n", id="integer-not-a-number"),
    pytest.param(b"*x\r\n", id="array-length-not-a-number"),
    pytest.param(b"$abc\r\n", id="string-length-not-a-number"),
    pytest.param(b"\x00\x01garbage\r\n", id="no-reply-type"),
]


@pytest.mark.anyio
@pytest.mark.parametrize("reply", MALFORMED_REPLIES)
async def test_a_malformed_reply_is_an_outage_never_a_crash(reply: bytes) -> None:
    async with fake_redis(lambda command: reply) as url:
        with anyio.fail_after(5), pytest.raises(StoreUnavailable):
            async with Router(store=RedisStore(url)):
                pytest.fail("the router started on a server that is not Redis")
        subscription = Subscription(RedisStore(url).journal_source())
        with anyio.fail_after(5), pytest.raises(StoreUnavailable):
            await subscription.start()
        assert subscription.closed


WRONGTYPE: Final = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"


class _Scripted:
    """What a fake server answers: ``+PONG`` to PING, ``42`` to GET, ``+OK`` to the rest, unless told otherwise."""

    def __init__(self) -> None:
        self.errors: set[bytes] = set()
        """Commands answered with a WRONGTYPE error reply."""
        self.seen: list[bytes] = []

    def __call__(self, command: list[bytes]) -> bytes:
        name = command[0].upper()
        self.seen.append(name)
        if name in self.errors:
            return WRONGTYPE
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"GET":
            return b"$2\r\n42\r\n"
        return b"+OK\r\n"


@pytest.mark.anyio
async def test_an_error_reply_is_a_data_error_and_opens_no_outage() -> None:
    scripted = _Scripted()
    async with fake_redis(scripted) as url:
        store = RedisStore(url, retry_interval=60.0)  # an outage would fail every later call for a minute
        async with Router(store=store) as router:
            scripted.errors = {b"EVALSHA"}
            for attempt in (1, 2):
                with pytest.raises(StoreDataError, match="WRONGTYPE"):
                    await router.select_backend(RR)
                assert scripted.seen.count(b"EVALSHA") == attempt  # the call reached the server
            with pytest.raises(StoreDataError, match="WRONGTYPE"):
                await router.register_session("s", "codex")
            scripted.errors = {b"PING"}
            for _ in range(2):
                before = scripted.seen.count(b"PING")
                with pytest.raises(StoreDataError, match="WRONGTYPE"):
                    await router.ensure_tables()
                assert scripted.seen.count(b"PING") == before + 1
            scripted.errors = set()
            await router.ensure_tables()  # and nothing else is wrong
            statistics = await router.statistics()
            assert statistics.errors == {"store_data_error": 5}
            assert not any(statistics.restarts.values())
        scripted.errors = {b"PING"}
        with pytest.raises(StoreDataError, match="WRONGTYPE"):
            async with Router(store=RedisStore(url)):
                pytest.fail("the router started though PING failed")
        scripted.errors = {b"SET", b"GET"}
        subscription = Subscription(RedisStore(url).journal_source())
        with anyio.fail_after(5), pytest.raises(StoreDataError, match="WRONGTYPE"):
            await subscription.start()


@pytest.mark.anyio
async def test_a_subscription_waits_while_the_stream_key_has_the_wrong_type(
    private_redis: RedisServer, prefix: str
) -> None:
    # XREAD on a key of the wrong type fails at once: the feed waits as XREAD BLOCK would, instead
    # of asking again and again until a commit replaces the key.
    client = import_redis_or_skip().Redis.from_url(private_redis.url)
    try:
        client.set(prefix + "journal", b"garbage")
        store = RedisStore(private_redis.url, prefix=prefix, operation_timeout=0.2)
        async with Router(store=store) as router, router.subscribe() as events:
            client.config_resetstat()
            with anyio.move_on_after(1.0):
                await events.__anext__()
            reads = client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0)
            assert reads <= 8, f"{reads} XREADs in one second"
            decision = await router.select_backend(RR)  # its commit replaces the key
            with anyio.fail_after(5):
                event = await events.__anext__()
            assert isinstance(event, JournalEvent) and event.payload["decision"] == decision.to_dict()
    finally:
        client.close()


# --------------------------------------------------------------------------- 5. URLs checked at construction


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "must be a redis://, rediss:// or unix:// URL"),
        ("not a url", "must be a redis://, rediss:// or unix:// URL"),
        ("redis://host/abc", "the database must be a number, not 'abc'"),
        ("redis://127.0.0.1:99999/0", "is not a valid Redis URL: Port out of range"),
        ("redis://host:port/0", "is not a valid Redis URL"),
        ("redis:///0", "names no host"),
        ("unix://", "names no socket path"),
        ("unix:///tmp/x.sock?db=two", "the database must be a number, not 'two'"),
        ("redis://host/0?db=x", "the database must be a number, not 'x'"),
        ("redis://host/0?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis://user:secret@host/abc", "the database must be a number"),
    ],
)
def test_a_bad_url_fails_at_construction(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="url") as caught:
        RedisStore(url)
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_url_that_is_no_text_is_a_type_error() -> None:
    for url in (5, None, b"redis://host"):
        with pytest.raises(TypeError, match="url must be a str"):
            RedisStore(url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0",
        "redis://h",
        "redis://[::1]:6379/2",
        "rediss://user:secret@h:6380/1",
        "rediss://h/0?ssl_check_hostname=false&ssl_cert_reqs=none",
        "unix:///tmp/x.sock?db=2",
        "unix://user:secret@/tmp/x.sock",
        "redis://h:6379/0?socket_timeout=0.5&max_connections=10",
    ],
)
def test_a_good_url_is_accepted(url: str) -> None:
    store = RedisStore(url)
    assert store.url == url
    assert "secret" not in repr(store)


@pytest.mark.anyio
@pytest.mark.parametrize("count", [2, 3, 6])
@pytest.mark.parametrize("start", [2**53 - 4, 2**53 - 3, 2**53 - 2, 2**53 - 1])
async def test_a_batch_of_round_robins_that_passes_2_to_the_53_starts_again_where_one_by_one_would(
    redis_url: str, prefix: str, inspect: Any, caplog: pytest.LogCaptureFixture, start: int, count: int
) -> None:
    # A run of plain selections advances its counter in one step (one INCR and one INCRBY,
    # in one round trip); crossing the limit on the way, the values must be those one INCR at
    # a time gives.
    caplog.set_level(logging.WARNING, logger=LOGGER)
    key = counter_key(prefix, RR)
    store = RedisStore(redis_url, prefix=prefix)
    await store.start()
    try:
        request = RoutingEngine().normalize(RR)
        await store.routing_batch([SelectOp(request)])  # the store's view of the fleet is current now
        state_calls = 0
        fleet = store._settler._fleet
        state = fleet.state

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal state_calls
            state_calls += 1
            return await state(*args, **kwargs)

        fleet.state = counted  # type: ignore[method-assign]
        inspect.set(key, str(start).encode())
        answers = await store.routing_batch([SelectOp(request)] * count)
        assert state_calls == 0, "the run was not settled in one round trip"
        values, value = [], start
        for _ in range(count):
            value += 1
            if value >= 2**53:
                value = 1
            values.append(value)
        order = ("claude", "codex", "copilot", "gemini", "opencode")
        assert [a.backend for a in answers if isinstance(a, RouteDecision)] == [
            order[(v - 1) % 5] for v in values
        ]
        assert inspect.get(key) == str(values[-1]).encode()
        if 2**53 - start <= count:
            assert key in warnings_of(caplog)
    finally:
        await store.aclose()
