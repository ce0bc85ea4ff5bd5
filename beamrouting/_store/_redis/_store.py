"""A :class:`beamrouting.store.Store` on Redis, so a fleet of orchestrators routes as one router.

Several worker processes, on several hosts, each run their own :class:`beamrouting.Router`
with ``store=RedisStore(url)``. Inside a process the actors still serialise everything;
across processes Redis does, with scripts that run atomically. This module holds the store
itself; its concerns live beside it:

- :mod:`._keys`: the key layout of a deployment (one prefix);
- :mod:`._view`, :mod:`._calls`: what a process caches of the fleet's state (learned state,
  profiles, live counts) and the script calls that check and refresh it;
- :mod:`._settle`: selections, a drained batch settled in two round trips (a plain one in one), and explanations;
- :mod:`._learning`: reports, restores and backend states;
- :mod:`._sessions`: the session registry, with live counts and limits;
- :mod:`._watch`: waking waiting callers when a backend may have come free;
- :mod:`._connection`: deadlines, the outage policy and reconnection;
- :mod:`._feed`: the live journal feed behind ``Router.subscribe()``;
- ``*.lua``: the scripts, shipped as package data (``lib.lua`` is what they share).

- **Round-robin counters** are ``INCR`` on a key derived from the contract's counter key
  with a stable digest, so every process finds the same counter. Each counter has a
  time-to-live (``idle_ttl``), refreshed on use, so forgotten counters do not pile up. The
  ``least_loaded`` and ``weighted`` policies use such counters too (keyed by the tied set,
  or by the candidates whose smooth weighted sequence they index).
- **Sticky bindings** are compare-and-set in Lua, first writer wins (see :mod:`._settle`),
  and so is a key's temporary backend while its bound backend is held out.
- **Policy profiles** are a hash of JSON documents with a version; each process caches them
  (a filtering profile must be known before planning). What is read back is validated
  again; a malformed stored profile fails only the requests that name it, with
  :class:`beamrouting.InvalidPolicyProfile` (they journal and bind nothing).
- **Learned state** (quota cooldowns, ejections, probe slots) is a hash of each backend's
  ledger with a version (:mod:`._learning`): a report in one process changes the next
  selection in every process; a probe slot is taken in the atomic step that commits the
  selection returning it.
- **Sessions** are a hash plus a sorted set for registration order, and a count of live
  sessions per backend; a drained batch of session operations is one script call, applied
  atomically in order. A backend at its limit is held out of selections, and a selection
  with a session id registers it in the same atomic step (:mod:`._sessions`). With
  ``session_ttl`` (off by default), a session expires ``session_ttl`` seconds after it was
  last registered, judged by the store's clock, so a worker that dies without unregistering
  (SIGKILL, host lost) does not leave its sessions listed (and counted) forever.
  Re-registering a session is its heartbeat: it sets a new deadline (and, like any
  registration, moves the session to the end of the order). Nothing else extends it:
  lookups, listings and ``select_backend(session_id, ...)`` read a session, never keep it
  alive. An expired session is absent for every lookup and listing at once, and each
  session call purges a bounded number of them (100, plus one per registration it makes);
  with ``limits``, every expired session is purged before a count is read. Each session has
  the deadline its last registration gave it, so give every worker of a deployment the same
  ``session_ttl``.
- **The journal** is a capped stream (``XADD MAXLEN ~ journal_size``) with one fleet-wide,
  strictly increasing event sequence; decisions, reported outcomes and health changes all
  go there. ``Router.journal()`` reads its newest events; ``Router.subscribe()`` follows it
  live (:mod:`._feed`).

Round trips: a batch of selections costs two (one when no policy needs a counter or a
binding), and one more when the fleet's learned state, profiles or the fullness of a
limited backend changed since the process last saw them; an explanation, a report, a
restore, a release and a read of the backend states cost one (one more after such a
change); a batch of session operations costs one.

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from ..._core._catalog import MAX_WEIGHT, Catalog, backend_numbers
from ..._core._checks import check_callable, check_count, check_instance, check_seconds, check_text, optional
from ..._core._errors import BeamRoutingError
from ..._core._health import HealthPolicy
from ..._core._journal import render_events
from ..._core._planner import Planner
from ..._core._profiles import PolicyProfile
from ..._core._request import RequestLimits
from ..._core._settings import RoutingSettings
from ..._core._types import JournalEvent
from .._protocol import (
    ClearOp,
    DeleteProfileOp,
    EnsureTablesOp,
    ExplainOp,
    JournalFeed,
    PutProfileOp,
    ReadJournalOp,
    ReadStatesOp,
    ReconfigureOp,
    ReleaseOp,
    ReportOp,
    RestoreOp,
    RoutingOp,
    RoutingResult,
    SelectOp,
    SessionOp,
    SessionResult,
    StoreCrash,
)
from . import _scripts
from ._calls import Fleet
from ._codec import RecordCodec, SessionCodec, UnreadableValue, journal_base
from ._connection import Connection, MalformedReply, check_asyncio, check_url, import_redis, redact
from ._feed import RedisJournalFeed
from ._keys import KeyLayout
from ._learning import Learning
from ._profiles import StoredProfiles
from ._sessions import Sessions
from ._settle import Settler
from ._view import View
from ._watch import watch

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
_DEFAULT_HEALTH: Final = HealthPolicy()


class RedisStore:
    """Routing state in Redis, shared by every :class:`beamrouting.Router` that uses the same prefix.

    ``RedisStore(url, *, prefix="beamrouting:", binding_ttl=None, catalog=None,
    journal_size=10_000, idle_ttl=DEFAULT_IDLE_TTL, session_ttl=None,
    operation_timeout=1.0, retry_interval=None, max_key_length=1024,
    max_list_entries=256, max_metadata_bytes=65_536, health=HealthPolicy(), limits=None,
    weights=None, clock=None)``:

    - ``url``: a redis-py URL (``redis://host:port/db``, ``rediss://`` for TLS,
      ``unix://`` for a socket).
    - ``prefix``: every key this store touches starts with it; one prefix per deployment.
      Prefixes of different deployments on one Redis must not be prefixes of each other.
    - ``binding_ttl``: seconds a sticky binding lives after its last use (a reuse slides
      it), judged by Redis's own clock; ``None`` gives bindings the ``idle_ttl`` instead.
    - ``catalog``: the catalogue requests are validated against (the default one if
      ``None``).
    - ``journal_size``: roughly how many journal records the stream keeps (``MAXLEN ~``).
    - ``idle_ttl``: seconds an unused round-robin counter (and a binding, when
      ``binding_ttl`` is ``None``) lives, so Redis keys stay bounded (``None``: forever).
    - ``session_ttl``: seconds a registered session lives after its last registration,
      judged by the store's clock (``None``, the default: until it is unregistered).
      ``router.session()`` registers once, on entry: a session that runs longer must
      re-register (``router.register_session(session.id, session.backend, metadata)``)
      more often than that, say every ``session_ttl / 3``; that is its heartbeat. Lookups
      and listings never extend it. Set it so a dead worker's sessions drop out of
      ``router.sessions()`` (and stop counting against ``limits``) for the rest of the
      fleet. A non-number raises :class:`TypeError`, a value that is not positive and
      finite :class:`ValueError`.
    - ``operation_timeout``: seconds one store operation (one batch of selections, one
      journal read, ...) may take before it fails with
      :class:`beamrouting.StoreUnavailable`.
    - ``retry_interval``: after a failure, operations fail at once for this many seconds
      (default: ``operation_timeout``), so callers queued behind a hung Redis do not each
      wait a timeout; the first operation after it tries Redis again.
    - ``max_key_length``, ``max_list_entries``, ``max_metadata_bytes``: the size limits of
      :class:`beamrouting.RequestLimits`.
    - ``health``: how reported outcomes change eligibility (a
      :class:`beamrouting.HealthPolicy`; ``None`` turns learning off: reports are
      journaled and change nothing).
    - ``limits``: the most live sessions each backend may have, a mapping of any accepted
      backend spelling to a positive int (absent backends are unlimited). A backend at its
      limit is held out of selections; a registration past it raises
      :class:`beamrouting.BackendAtCapacity`.
    - ``weights``: each backend's weight for the ``weighted`` policy, a mapping of any
      accepted spelling to an int from 1 to 10,000 (1 when absent).
    - ``clock``: the wall clock deadlines are judged by (a callable answering UNIX
      seconds). By default it is Redis's own clock, so a fleet compares deadlines on one
      clock: the scripts read ``TIME``, and :attr:`clock` is this process's estimate of it,
      kept from their answers. With a clock, its value is passed to the scripts instead
      (tests drive an injected clock rather than sleep).

    Every process of a deployment must use the same ``catalog``, ``health``, ``limits``,
    ``weights`` and ``session_ttl``: they decide what the shared state means (a limit is
    checked by whichever process registers, a ledger is judged by the policy of whichever
    process reads it). Bad options raise :class:`TypeError` (wrong type) or
    :class:`ValueError` (out of range).

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
        health: HealthPolicy | None = _DEFAULT_HEALTH,
        limits: Mapping[str, int] | None = None,
        weights: Mapping[str, int] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import_redis()
        check_asyncio(running=False)
        url = check_url(url)
        self.prefix = check_text("prefix", prefix)
        """The prefix of every key the store writes (processes sharing it share the state)."""
        # TTLs become whole milliseconds in Redis, so they must be finite (None: no TTL).
        self.binding_ttl = optional(check_seconds, "binding_ttl", binding_ttl, finite=True)
        """Seconds a sticky binding lives after its last use (``None``: ``idle_ttl``)."""
        self.idle_ttl = optional(check_seconds, "idle_ttl", idle_ttl, finite=True)
        """Seconds an unused counter or binding lives (``None``: until cleared)."""
        self.session_ttl = optional(check_seconds, "session_ttl", session_ttl, finite=True)
        """Seconds a session lives after its last registration (``None``: until unregistered)."""
        self.journal_size = check_count("journal_size", journal_size, 0)
        """About how many journal events the shared stream keeps."""
        timeout = check_seconds("operation_timeout", operation_timeout)
        retry = optional(check_seconds, "retry_interval", retry_interval, minimum=0.0)
        catalog = optional(check_instance, "catalog", catalog, Catalog) or Catalog.default()
        self.health: HealthPolicy | None = optional(check_instance, "health", health, HealthPolicy)
        """How reported outcomes change eligibility (``None``: learning is off)."""
        self.limits_of = backend_numbers("limits", limits, catalog)
        """The most live sessions each limited backend may have."""
        self.weights = backend_numbers("weights", weights, catalog, maximum=MAX_WEIGHT)
        """Each weighted backend's weight for the ``weighted`` policy (1 when absent)."""
        injected: Callable[[], float] | None = optional(check_callable, "clock", clock)
        self._limits = RequestLimits(max_key_length, max_list_entries, max_metadata_bytes)
        self._connection = Connection(
            url, operation_timeout=timeout, retry_interval=timeout if retry is None else retry
        )
        self._planner = Planner(catalog, self.weights)
        self._keys = KeyLayout(self.prefix)
        self._codec = RecordCodec()
        self._profiles = StoredProfiles()
        self._view = View(
            self._planner, self._profiles, policy=self.health, limits=self.limits_of, clock=injected
        )
        self._clock: Callable[[], float] = self._view.now
        binding_lifetime = self.idle_ttl if self.binding_ttl is None else self.binding_ttl
        session_ttl_ms = 0 if self.session_ttl is None else max(1, math.ceil(self.session_ttl * 1000))
        self._fleet = Fleet(
            self._view,
            self._keys,
            self._codec,
            counter_ttl_s=0 if self.idle_ttl is None else max(1, math.ceil(self.idle_ttl)),
            binding_ttl_ms=0 if binding_lifetime is None else max(1, math.ceil(binding_lifetime * 1000)),
            journal_size=self.journal_size,
            session_ttl_ms=session_ttl_ms,
            purge=SESSION_PURGE,
        )
        self._sessions = SessionCodec(catalog)
        self._settler = Settler(self._planner, self._fleet, self._sessions)
        self._learning = Learning(self._fleet)
        self._registry = Sessions(
            self._view,
            self._keys,
            self._sessions,
            session_ttl_ms=session_ttl_ms,
            purge=SESSION_PURGE,
            limits=self.limits_of,
        )
        self._scripts: dict[str, AsyncScript] = {}
        self._journal_base: int | None = None
        self._users = 0
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
        """The wall clock (UNIX seconds) deadlines are measured on: the injected one, or Redis's as estimated."""
        return self._clock

    @property
    def planner(self) -> Planner:
        """The planner selections share with every other store."""
        return self._planner

    async def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed()`` whenever a session slot frees or a backend's learned state changes, fleet-wide.

        Holds a ``SUBSCRIBE`` to ``<prefix>changes`` on a connection of its own (see
        :mod:`._watch`); runs until cancelled, and keeps trying quietly while Redis is lost.
        """
        await watch(
            self.url,
            self._keys.changes,
            changed,
            timeout=self.operation_timeout,
            retry_interval=self.retry_interval,
        )

    def journal_source(self) -> JournalFeed:
        """A new live read of the whole fleet's journal (a :class:`beamrouting.store.JournalFeed`).

        Each feed has a connection of its own, never one of the pool routing uses (see
        :mod:`._feed`); the store need not be started. A process with ``journal_size=0``
        journals nothing, so its decisions are not seen. Runs on asyncio and uvloop.
        """
        return RedisJournalFeed(self.url, self._keys, self.operation_timeout, self._codec)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis and check it answers (the first call reads the fleet's state).

        Raises :class:`beamrouting.StoreUnavailable` when it does not, and
        :class:`RuntimeError` when not running on asyncio (for example under trio).
        """
        check_asyncio(running=True)
        if self._connection.client is not None:
            self._users += 1  # another router shares this store (and its connections)
            return
        client = self._connection.open()
        self._users = 1
        self._scripts = {name: client.register_script(_scripts.source(name)) for name in _scripts.SCRIPTS}
        self._fleet.state_script = self._scripts[_scripts.STATE]
        self._fleet.commit_script = self._scripts[_scripts.COMMIT]
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
        """Apply the drained batch ``ops`` in order: each run of selections settled together, the rest one by one.

        A run of selections costs two Redis round trips, a run of plain ones one (see :mod:`._settle`). The answer
        ends at the first :class:`beamrouting.store.StoreCrash`.
        """
        results: list[RoutingResult] = []
        index = 0
        count = len(ops)
        while index < count:
            op = ops[index]
            if type(op) is SelectOp:
                end = index + 1
                while end < count and type(ops[end]) is SelectOp:
                    end += 1
                selections: list[SelectOp] = ops[index:end]  # type: ignore[assignment]
                async with self._connection.operation("select"):
                    results.extend(await self._settler.select(selections))
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

    async def _apply(self, op: RoutingOp) -> RoutingResult:
        match op:
            case ExplainOp(request):
                async with self._connection.operation("explain"):
                    return await self._settler.explain(request)
            case ClearOp():
                await self._clear()
            case EnsureTablesOp():
                await self._prepare("ensure_tables")
            case PutProfileOp(profile_id, profile):
                await self._write_profile(profile_id, profile)
            case DeleteProfileOp(profile_id):
                return await self._write_profile(profile_id, None)
            case ReadJournalOp(event_type, limit):
                return await self._journal(event_type, limit)
            case ReportOp(backend, outcome, retry_at, retry_after):
                async with self._connection.operation("report"):
                    return await self._learning.report(backend, outcome, retry_at, retry_after)
            case RestoreOp(backend):
                async with self._connection.operation("restore"):
                    return await self._learning.restore(backend)
            case ReconfigureOp(settings):
                await self._reconfigure(settings)
            case ReadStatesOp():
                async with self._connection.operation("backend_states"):
                    return await self._learning.states()
            case ReleaseOp(affinity_key):
                keys = self._keys
                async with self._connection.operation("release") as client:
                    pipe = client.pipeline(transaction=True)
                    pipe.delete(keys.binding(affinity_key))
                    pipe.delete(keys.temporary(affinity_key))
                    released, _ = await pipe.execute()
                return bool(released)
            case _:
                raise TypeError(f"not a routing operation: {op!r}")
        return None

    async def _reconfigure(self, settings: RoutingSettings) -> None:
        """Store exactly ``settings.profiles`` for the fleet (one script call); take its health policy, limits and weights.

        Those three are this process's own (give every process the same); learned state,
        live sessions, bindings and counters stay.
        """
        settings = settings.recheck(self.catalog)
        documents = {
            profile_id: self._profiles.encode(profile) for profile_id, profile in settings.profiles.items()
        }
        args: list[Any] = [b"x", self._keys.changes, *(item for pair in documents.items() for item in pair)]
        _, before, after = await self._profiles_script("reload", args)
        self.health = settings.health
        self.limits_of = dict(settings.limits)
        if settings.weights != self.weights:
            self.weights = dict(settings.weights)
            self._planner = Planner(self.catalog, self.weights)
            self._settler.configure(self._planner)
        self._fleet.configure(self.limits_of)
        self._registry.configure(self.limits_of)
        self._view.configure(self._planner, self.health, self.limits_of, documents, before, after)

    async def _profiles_script(self, operation: str, args: list[Any]) -> tuple[int, int, int]:
        """Run ``profiles.lua`` with ``args`` as ``operation``: ``(done, version before, version after)``.

        Raises :class:`MalformedReply` for a reply the script does not give; a profiles key
        of the wrong type that the script replaced is logged.
        """
        keys = [self._keys.profiles, self._keys.profiles_version]
        async with self._connection.operation(operation):
            reply: Any = await self._scripts[_scripts.PROFILES](keys=keys, args=args)
        if (
            type(reply) is not list
            or len(reply) != 4
            or not all(type(value) is int for value in (reply[0], *reply[2:]))
        ):
            raise MalformedReply("profiles.lua")
        done, repaired, before, after = reply
        if repaired:
            logger.warning("replaced %s, which held a value of the wrong type", self._keys.profiles)
        return done, before, after

    async def _write_profile(self, profile_id: str, profile: PolicyProfile | None) -> bool:
        """Store (or, for ``None``, delete) a profile; whether it existed (deleting) or ``True``."""
        args: list[Any] = (
            [b"d", profile_id] if profile is None else [b"p", profile_id, self._profiles.encode(profile)]
        )
        done, before, after = await self._profiles_script(
            "delete_policy_profile" if profile is None else "put_policy_profile", args
        )
        self._view.profile_written(profile_id, None if profile is None else args[2], before, after)
        return bool(done)

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
        """Every stored profile by id; raises :class:`beamrouting.InvalidPolicyProfile` for a malformed one."""
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
        """Apply the drained batch of session operations ``ops`` in one script call, atomically and in order.

        A stored session that is not one this store wrote answers
        :class:`beamrouting.StoreDataError` for the lookup or listing that read it only; a
        session key of the wrong type is replaced. A registration that would take a slot
        past its backend's limit answers :class:`beamrouting.BackendAtCapacity` (a live
        session re-registered on its own backend, its heartbeat, takes none). Redis
        unreachable or too slow raises :class:`beamrouting.StoreUnavailable` for the whole
        batch.

        With ``session_ttl``, a registration sets the session's deadline (now plus
        ``session_ttl``); a session past it is absent for every lookup and listing, and
        each call purges a bounded number of such sessions.
        """
        if not ops:
            return []
        async with self._connection.operation("session operations"):
            return await self._registry.batch(ops, self._scripts[_scripts.SESSIONS])
