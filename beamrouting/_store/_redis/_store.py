"""A :class:`~beamrouting.store.Store` on Redis, so a fleet of orchestrators routes as one router.

Several worker processes, on several hosts, each run their own :class:`~beamrouting.Router`
with ``store=RedisStore(url)``. Inside a process the actors still serialise everything;
across processes Redis does, with scripts that run atomically. This module holds the store
itself; its concerns live beside it:

- :mod:`._keys`: the key layout of a deployment (one prefix);
- :mod:`._settle`: selections, a drained batch settled in two round trips;
- :mod:`._connection`: deadlines, the outage policy and reconnection;
- :mod:`._feed`: the live journal feed behind ``Router.subscribe()``;
- ``*.lua``: the scripts, shipped as package data.

- **Round-robin counters** are ``INCRBY`` on a key derived from the contract's counter key
  with a stable digest, so every process finds the same counter. Each counter has a
  time-to-live (``idle_ttl``), refreshed on use, so forgotten counters do not pile up.
- **Sticky bindings** are compare-and-set in Lua, first writer wins (see :mod:`._settle`).
- **Policy profiles** are a hash of JSON documents. What is read back is validated again;
  a malformed stored profile fails only the requests that name it, with
  :class:`~beamrouting.InvalidPolicyProfile` (they journal and bind nothing).
- **Sessions** are a hash plus a sorted set for registration order. A drained batch of
  session operations is one script call, applied atomically in order. With
  ``session_ttl`` (off by default), a session expires ``session_ttl`` seconds after it was
  last registered, judged by Redis's clock, so a worker that dies without unregistering
  (SIGKILL, host lost) does not leave its sessions listed forever. Re-registering a session
  is its heartbeat: it sets a new deadline (and, like any registration, moves the session to
  the end of the order). Nothing else extends it: lookups, listings and
  ``select_backend(session_id, ...)`` read a session, never keep it alive. An expired
  session is absent for every lookup and listing at once, and each session call purges a
  bounded number of them (100, plus one per registration it makes). Each session has the
  deadline its last registration gave it, so give every worker of a deployment the same
  ``session_ttl``.
- **The journal** is a capped stream (``XADD MAXLEN ~ journal_size``) with one fleet-wide,
  strictly increasing event sequence. ``Router.journal()`` reads its newest events;
  ``Router.subscribe()`` follows it live (:mod:`._feed`).

Bounds: counters expire after ``idle_ttl`` (default 7 days) unused, bindings after
``binding_ttl`` unused, or ``idle_ttl`` when it is not set, so every routing key expires.
With ``session_ttl``, the session keys themselves expire at the latest deadline of the
sessions they hold. The in-memory store's ``max_counters``/``max_bindings`` caps do not
apply to a shared Redis; its TTLs (and Redis's ``maxmemory`` policy) bound it.

The store runs on asyncio and uvloop (``redis.asyncio``). Under trio, constructing or
starting it raises :class:`RuntimeError`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from ..._core._catalog import Catalog
from ..._core._checks import check_count, check_instance, check_seconds, check_text, optional
from ..._core._errors import BeamRoutingError, PolicyDenied, RoutingError, SessionExists, StoreDataError
from ..._core._explain import Explanation
from ..._core._journal import render_events
from ..._core._planner import DONE, STICKY, Planner, StateOutcome
from ..._core._profiles import PolicyProfile
from ..._core._request import RequestLimits, RouteRequest
from ..._core._types import JournalEvent, RouteDecision, SessionHandle
from .._protocol import (
    ClearOp,
    DeleteProfileOp,
    EnsureTablesOp,
    ExplainOp,
    JournalFeed,
    ListSessionsOp,
    LookupOp,
    PutProfileOp,
    ReadJournalOp,
    RegisterOp,
    RoutingOp,
    RoutingResult,
    SelectOp,
    SessionOp,
    SessionResult,
    StoreCrash,
    UnregisterOp,
)
from . import _scripts
from ._codec import RecordCodec, SessionCodec, UnreadableValue, journal_base, stored_backend, stored_int
from ._connection import Connection, MalformedReply, check_asyncio, check_url, import_redis, redact
from ._feed import RedisJournalFeed
from ._keys import KeyLayout
from ._profiles import StoredProfiles
from ._settle import Settler

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

logger: Final = logging.getLogger("beamrouting.redis")
_T = TypeVar("_T")

__all__ = ["DEFAULT_IDLE_TTL", "DEFAULT_OPERATION_TIMEOUT", "SESSION_PURGE", "RedisStore"]

DEFAULT_IDLE_TTL: Final = 7 * 24 * 3600.0
"""Seconds an unused round-robin counter lives (refreshed on every use): one week."""
DEFAULT_OPERATION_TIMEOUT: Final = 1.0
"""Seconds one store operation may take before it fails with ``StoreUnavailable``."""
SESSION_PURGE: Final = 100
"""Expired sessions one session call purges, besides one per registration it makes (so they cannot pile up)."""
_CLEAR_BATCH: Final = 1000


class RedisStore:
    """Routing state in Redis, shared by every :class:`~beamrouting.Router` that uses the same prefix.

    ``RedisStore(url, *, prefix="beamrouting:", binding_ttl=None, catalog=None,
    journal_size=10_000, idle_ttl=DEFAULT_IDLE_TTL, session_ttl=None,
    operation_timeout=1.0, retry_interval=None)``:

    - ``url``: a redis-py URL (``redis://host:port/db``, ``rediss://`` for TLS,
      ``unix://`` for a socket).
    - ``prefix``: every key this store touches starts with it; one prefix per deployment.
      Prefixes of different deployments on one Redis must not be prefixes of each other.
    - ``binding_ttl``: seconds a sticky binding lives after its last use (a reuse slides
      it); ``None`` gives bindings the ``idle_ttl`` instead.
    - ``catalog``: the catalogue requests are validated against (the default one if
      ``None``); every process of a deployment should use the same.
    - ``journal_size``: roughly how many journal records the stream keeps (``MAXLEN ~``).
    - ``idle_ttl``: seconds an unused round-robin counter (and a binding, when
      ``binding_ttl`` is ``None``) lives, so Redis keys stay bounded (``None``: forever).
    - ``session_ttl``: seconds a registered session lives after its last registration,
      judged by Redis's clock (``None``, the default: until it is unregistered).
      ``router.session()`` registers once, on entry: a session that runs longer must
      re-register (``router.register_session(session.id, session.backend, metadata)``)
      more often than that, say every ``session_ttl / 3``; that is its heartbeat. Lookups
      and listings never extend it. Set it so a dead worker's sessions drop out of
      ``router.sessions()`` for the rest of the fleet; give every process of a deployment
      the same. A non-number raises :class:`TypeError`, a value that is not positive and
      finite :class:`ValueError`.
    - ``operation_timeout``: seconds one store operation (one batch of selections, one
      journal read, ...) may take before it fails with
      :class:`~beamrouting.StoreUnavailable`.
    - ``retry_interval``: after a failure, operations fail at once for this many seconds
      (default: ``operation_timeout``), so callers queued behind a hung Redis do not each
      wait a timeout; the first operation after it tries Redis again.

    Use it as ``Router(store=RedisStore(url))``; the router starts and closes it. Raises
    :class:`ImportError` without the ``redis`` extra and :class:`RuntimeError` under trio.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "beamrouting:",
        binding_ttl: float | None = None,
        catalog: Catalog | None = None,
        journal_size: int = 10_000,
        idle_ttl: float | None = DEFAULT_IDLE_TTL,
        session_ttl: float | None = None,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        retry_interval: float | None = None,
        max_key_length: int = 1024,
        max_list_entries: int = 256,
        max_metadata_bytes: int = 65_536,
    ) -> None:
        import_redis()
        check_asyncio(running=False)
        url = check_url(url)
        self.prefix = check_text("prefix", prefix)
        # TTLs become whole milliseconds in Redis, so they must be finite (None: no TTL).
        self.binding_ttl = optional(check_seconds, "binding_ttl", binding_ttl, finite=True)
        self.idle_ttl = optional(check_seconds, "idle_ttl", idle_ttl, finite=True)
        self.session_ttl = optional(check_seconds, "session_ttl", session_ttl, finite=True)
        self.journal_size = check_count("journal_size", journal_size, 0)
        timeout = check_seconds("operation_timeout", operation_timeout)
        retry = optional(check_seconds, "retry_interval", retry_interval, minimum=0.0)
        catalog = optional(check_instance, "catalog", catalog, Catalog) or Catalog.default()
        self._limits = RequestLimits(max_key_length, max_list_entries, max_metadata_bytes)
        self._connection = Connection(
            url, operation_timeout=timeout, retry_interval=timeout if retry is None else retry
        )
        self._planner = Planner(catalog)
        self._keys = KeyLayout(self.prefix)
        self._codec = RecordCodec()
        self._profiles = StoredProfiles()
        binding_lifetime = self.idle_ttl if self.binding_ttl is None else self.binding_ttl
        self._settler = Settler(
            self._planner,
            self._keys,
            self._profiles,
            self._codec,
            counter_ttl_s=0 if self.idle_ttl is None else max(1, math.ceil(self.idle_ttl)),
            binding_ttl_ms=0 if binding_lifetime is None else max(1, math.ceil(binding_lifetime * 1000)),
            journal_size=self.journal_size,
        )
        self._session_ttl_ms = 0 if self.session_ttl is None else max(1, math.ceil(self.session_ttl * 1000))
        self._scripts: dict[str, AsyncScript] = {}
        self._journal_base: int | None = None
        self._users = 0
        self._sessions = SessionCodec(catalog)
        self.unreadable_entries = 0
        """Journal entries :meth:`Router.journal` skipped because they could not be read."""

    def __repr__(self) -> str:
        return f"RedisStore({redact(self.url)!r}, prefix={self.prefix!r})"

    # -- configuration ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Redis URL."""
        return self._connection.url

    @property
    def operation_timeout(self) -> float:
        """Seconds one store operation may take."""
        return self._connection.operation_timeout

    @property
    def retry_interval(self) -> float:
        """Seconds operations fail fast after a failure."""
        return self._connection.retry_interval

    @property
    def catalog(self) -> Catalog:
        """The catalogue requests are validated against."""
        return self._planner.catalog

    @property
    def limits(self) -> RequestLimits:
        """The size limits requests and sessions are validated against."""
        return self._limits

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock (UNIX seconds) deadlines are measured on."""
        return time.time

    @property
    def planner(self) -> Planner:
        """The planner selections share with every other store."""
        return self._planner

    async def watch(self, changed: Callable[[], None]) -> None:
        """Not yet told of freed backends: waiting callers wake at their deadlines."""

    def journal_source(self) -> JournalFeed:
        """A new live read of the whole fleet's journal (a :class:`~beamrouting.store.JournalFeed`).

        Each feed has a connection of its own, never one of the pool routing uses (see
        :mod:`._feed`); the store need not be started. A process with ``journal_size=0``
        journals nothing, so its decisions are not seen. Runs on asyncio and uvloop.
        """
        return RedisJournalFeed(self.url, self._keys, self.operation_timeout, self._codec)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis and check it answers.

        Raises :class:`~beamrouting.StoreUnavailable` when it does not, and
        :class:`RuntimeError` when not running on asyncio (for example under trio).
        """
        check_asyncio(running=True)
        if self._connection.client is not None:
            self._users += 1  # another router shares this store (and its connections)
            return
        client = self._connection.open()
        self._users = 1
        self._scripts = {
            name: client.register_script(_scripts.source(name))
            for name in (_scripts.STATE, _scripts.COMMIT, _scripts.SESSIONS)
        }
        try:
            await self._prepare("start")
        except BaseException:
            self._users = 0
            with anyio.CancelScope(shield=True):
                await self._connection.close()
            raise

    async def aclose(self) -> None:
        """Close the connections (when the last router using this store closes); the state stays in Redis."""
        self._users = max(0, self._users - 1)
        if not self._users:
            await self._connection.close()

    async def _prepare(self, what: str) -> None:
        async with self._connection.operation(what, check_idle=False, probe=True) as client:
            await client.ping()
            self._journal_base = await journal_base(client, self._keys.journal_base)

    async def _tolerant(self, client: aioredis.Redis, key: str, command: Callable[[], Awaitable[_T]]) -> _T:
        """``command()``; if ``key`` holds a value of the wrong type, replace it and run ``command()`` again.

        A key of the wrong type holds nothing the store wrote, so replacing it loses nothing.
        """
        from redis.exceptions import ResponseError

        try:
            return await command()
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
        logger.warning("replaced %s, which held a value of the wrong type", key)
        await client.delete(key)
        return await command()

    # -- the routing half -------------------------------------------------------------------------

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        """Apply a drained batch in order: each run of selections settled together, the rest one by one.

        A run of selections costs two Redis round trips (see :mod:`._settle`). The answer
        ends at the first :class:`~beamrouting.store.StoreCrash`.
        """
        results: list[RoutingResult] = []
        index = 0
        count = len(ops)
        while index < count:
            op = ops[index]
            if type(op) is SelectOp and op.session_id is None:
                end = index + 1
                while end < count and type(ops[end]) is SelectOp and ops[end].session_id is None:  # type: ignore[union-attr]
                    end += 1
                run = [select.request for select in ops[index:end]]  # type: ignore[union-attr]
                answers = await self._select(run)
                results.extend(answers)
                index = end
            else:
                try:
                    results.append(await self._apply(op))
                except BeamRoutingError as exc:
                    results.append(exc)
                except Exception as exc:
                    results.append(StoreCrash(exc))
                index += 1
            if results and isinstance(results[-1], StoreCrash):
                break
        return results

    async def _select(self, requests: list[RouteRequest]) -> list[Any]:
        scripts = self._scripts
        async with self._connection.operation("select"):
            return await self._settler.select(requests, scripts[_scripts.STATE], scripts[_scripts.COMMIT])

    async def _apply(self, op: RoutingOp) -> RoutingResult:
        match op:
            case SelectOp(request, session_id, metadata, exclusive) if session_id is not None:
                return await self._select_session(request, session_id, metadata, exclusive)
            case ExplainOp(request):
                return await self._explain(request)
            case ClearOp():
                await self._clear()
            case EnsureTablesOp():
                await self._prepare("ensure_tables")
            case PutProfileOp(profile_id, profile):
                text = self._profiles.encode(profile)
                key = self._keys.profiles
                async with self._connection.operation("put_policy_profile") as client:
                    await self._tolerant(client, key, lambda: client.hset(key, profile_id, text))
            case DeleteProfileOp(profile_id):
                key = self._keys.profiles
                async with self._connection.operation("delete_policy_profile") as client:
                    return bool(await self._tolerant(client, key, lambda: client.hdel(key, profile_id)))
            case ReadJournalOp(event_type, limit):
                return await self._journal(event_type, limit)
            case _:
                raise TypeError(f"not a routing operation: {op!r}")
        return None

    async def _select_session(
        self, request: RouteRequest, session_id: str, metadata: dict[str, Any], exclusive: bool
    ) -> RouteDecision:
        """Select for ``request``, then register the session on the chosen backend."""
        if exclusive:
            (found,) = await self.session_batch([LookupOp(session_id)])
            if isinstance(found, BaseException | StoreCrash):
                raise found if isinstance(found, BaseException) else found.error
            if found is not None:
                raise SessionExists(f"session {session_id!r} is live; choose another id")
        (decision,) = await self._select([request])
        if not isinstance(decision, RouteDecision):
            raise decision if isinstance(decision, BaseException) else decision.error
        (registered,) = await self.session_batch(
            [RegisterOp(SessionHandle(session_id, decision.backend, metadata))]
        )
        if isinstance(registered, BaseException):
            raise registered
        return decision

    async def _explain(self, request: RouteRequest) -> Explanation:
        """How ``request`` would route now, from the shared state, changing nothing.

        Reads the binding, the counter and the profile the request needs in one round trip;
        the decision is the one a selection would make if nobody else routed first. A
        stored value the store would not have written reads as absent (as a selection would
        repair it), except a malformed profile, which fails the request as it would.
        """
        planner = self._planner
        try:
            plan = planner.plan(request)
        except RoutingError as exc:
            return planner.explanation(request, None, exc.to_dict())
        kind = plan.kind
        replies: list[Any] = []
        profile_id = request.policy_profile_id
        if kind != DONE or profile_id is not None:
            async with self._connection.operation("explain") as client:
                pipe = client.pipeline(transaction=False)
                if kind == STICKY:
                    assert request.affinity_key is not None
                    pipe.get(self._keys.binding(request.affinity_key))
                if kind != DONE:
                    pipe.get(self._keys.counter(plan.counter_key))
                if profile_id is not None:
                    pipe.hget(self._keys.profiles, profile_id)
                replies = list(await pipe.execute(raise_on_error=False))
        # What the pipeline read; a key of the wrong type answered an error: nothing usable.
        values = [None if isinstance(reply, Exception) else reply for reply in replies]
        bound = values.pop(0) if kind == STICKY else None
        counter = stored_int(values.pop(0)) if kind != DONE else None
        stored = values.pop(0) if profile_id is not None else None
        try:
            backend = stored_backend(self.catalog, bound)
            outcome: StateOutcome = None
            if kind == STICKY and plan.reusable(backend):
                outcome = backend
            elif kind != DONE:
                outcome = (counter or 0) + 1
            profile = None if stored is None else self._profiles.load(profile_id or "", stored)
            decision, deny = Planner.settle(plan, outcome, profile)
            if deny is not None:
                raise PolicyDenied(deny)
        except RoutingError as exc:
            return planner.explanation(request, None, exc.to_dict())
        return planner.explanation(request, decision, None)

    async def _clear(self) -> None:
        """Forget every sticky binding and round-robin counter of this prefix (SCAN + UNLINK).

        Profiles, sessions and the journal stay. Each SCAN step has its own deadline.
        """
        for pattern in self._keys.routing_patterns:
            cursor = 0
            while True:
                async with self._connection.operation("clear") as client:
                    cursor, found = await client.scan(cursor, match=pattern, count=_CLEAR_BATCH)
                    if found:
                        await client.unlink(*found)
                if cursor == 0:
                    break

    async def _journal(self, event_type: str | None, limit: int | None) -> list[JournalEvent]:
        """The most recent journal events of the whole fleet, oldest first.

        An entry that cannot be read is skipped, counted in :attr:`unreadable_entries` and
        logged; a stream key of the wrong type is replaced.
        """
        size = self.journal_size
        if size == 0 or (limit is not None and limit <= 0):
            return []
        count = size if event_type is not None or limit is None else min(size, limit)
        key = self._keys.journal
        async with self._connection.operation("journal") as client:
            entries: list[Any] = await self._tolerant(client, key, lambda: client.xrevrange(key, count=count))  # type: ignore[arg-type, return-value]
        base = self._journal_base or 0
        events: list[JournalEvent] = []
        record = self._codec.record
        skipped = 0
        for entry in reversed(entries):
            try:
                events.extend(render_events(base, record(entry[1])))
            except UnreadableValue as exc:
                skipped += 1
                reason = str(exc)
        if skipped:
            self.unreadable_entries += skipped
            logger.warning("skipped %d unreadable entries of %s (the last: %s)", skipped, key, reason)
        events = events[-size:]
        if event_type is not None:
            events = [event for event in events if event.event_type == event_type]
        if limit is not None:
            events = events[-limit:]
        return events

    # -- for tools and tests (not part of the store protocol) ----------------------------------------

    async def policy_profiles(self) -> dict[str, PolicyProfile]:
        """Every stored profile by id; raises :class:`~beamrouting.InvalidPolicyProfile` for a malformed one."""
        key = self._keys.profiles
        async with self._connection.operation("policy_profiles") as client:
            stored: dict[bytes, bytes] = await self._tolerant(client, key, lambda: client.hgetall(key))  # type: ignore[arg-type, return-value]
        profiles = {}
        for raw_id, value in stored.items():
            profile_id = raw_id.decode("utf-8", "replace")
            profiles[profile_id] = self._profiles.load(profile_id, value)
        return profiles

    async def bindings(self) -> int:
        """How many sticky bindings this prefix holds (it scans)."""
        total = 0
        cursor = 0
        while True:
            async with self._connection.operation("bindings") as client:
                cursor, found = await client.scan(
                    cursor, match=self._keys.routing_patterns[1], count=_CLEAR_BATCH
                )
            total += len(found)
            if cursor == 0:
                return total

    # -- the session half ---------------------------------------------------------------------------

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        """Apply a drained batch of session operations in one script call, atomically and in order.

        A stored session that is not one this store wrote answers
        :class:`~beamrouting.StoreDataError` for the lookup or listing that read it only; a
        session key of the wrong type is replaced. Redis unreachable or too slow raises
        :class:`~beamrouting.StoreUnavailable` for the whole batch.

        With ``session_ttl``, a registration sets the session's deadline (Redis's clock, now
        plus ``session_ttl``); a session past it is absent for every lookup and listing, and
        each call purges a bounded number of such sessions.
        """
        args: list[Any] = [self._session_ttl_ms, SESSION_PURGE]
        encode = self._sessions.encode
        for op in ops:
            match op:
                case RegisterOp(handle, exclusive):
                    args += (b"n" if exclusive else b"r", handle.session_id, encode(handle))
                case UnregisterOp(session_id):
                    args += (b"u", session_id)
                case LookupOp(session_id):
                    args += (b"g", session_id)
                case ListSessionsOp():
                    args.append(b"l")
                case _:
                    raise TypeError(f"not a session operation: {op!r}")
        if not ops:
            return []
        script = self._scripts[_scripts.SESSIONS]
        async with self._connection.operation("session operations"):
            answers: Any = await script(keys=self._keys.session_keys, args=args)
            if type(answers) is not list or len(answers) != len(ops) + 1:
                raise MalformedReply("sessions.lua")
        repaired = answers.pop()
        if repaired:
            logger.warning(
                "replaced session keys of the wrong type: %s", b", ".join(repaired).decode(errors="replace")
            )
        results: list[SessionResult] = []
        for op, answer in zip(ops, answers, strict=True):
            try:
                results.append(self._session_result(op, answer))
            except UnreadableValue as exc:
                results.append(
                    StoreDataError(f"{self._keys.sessions} holds {exc}; not a session this store wrote")
                )
        return results

    def _session_result(self, op: SessionOp, answer: Any) -> SessionResult:
        """What one operation of :meth:`session_batch` answers, from the script's reply."""
        handle = self._sessions.handle
        if type(op) is LookupOp:
            return None if answer is None else handle(op.session_id, answer).backend
        if type(op) is ListSessionsOp:
            if type(answer) is not list or len(answer) < 2:
                raise MalformedReply("a session listing")
            order, flat, *expired = answer
            stored: dict[bytes, Any] = dict(zip(flat[::2], flat[1::2], strict=True))
            for session_id in expired[0] if expired else ():
                stored.pop(session_id, None)  # past its deadline, not yet purged
            handles: list[SessionHandle] = []
            for session_id in order:
                data = stored.pop(session_id, None)
                if data is not None:
                    handles.append(handle(session_id, data))
            handles.extend(handle(session_id, data) for session_id, data in stored.items())
            return handles
        if type(op) is RegisterOp and answer == 0:
            return SessionExists(f"session {op.handle.session_id!r} is live; choose another id")
        return None
