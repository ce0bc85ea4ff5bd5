"""A :class:`~beamrouting._store.Store` on Redis, so a fleet of orchestrators routes as one router.

Several worker processes, on several hosts, each run their own :class:`~beamrouting.Router`
with ``store=RedisStore(url)``. Inside a process the actors still serialise everything;
across processes Redis does, with scripts that run atomically:

- **Round-robin counters** are ``INCRBY`` on ``<prefix>c:<hash>``, where ``<hash>`` is
  the BLAKE2b digest of the msgpack encoding of the contract's counter key (never Python's
  per-process ``hash()``), so every process finds the same counter. Each counter has a
  time-to-live (``idle_ttl``), refreshed on use, so forgotten counters do not pile up.
- **Sticky bindings** live at ``<prefix>b:<hash of the affinity key>``. Binding is
  compare-and-set in Lua: a first bind succeeds only if the key is still unbound (first
  writer wins), a re-bind away from an ineligible backend only if the key still holds that
  backend, and a reuse only if the key still holds the reused backend (which also slides
  the binding's time-to-live, ``binding_ttl``). A process that loses such a race routes
  again against what the winner stored: the winner's backend, reused if it is eligible for
  the request (and checked against the request's policy profile). A denied sticky decision
  stores no binding.
- **Policy profiles** are a hash (``<prefix>profiles``) of JSON documents. What is read
  back is validated again; a malformed stored profile fails only the requests that name
  it, with :class:`~beamrouting.InvalidPolicyProfile` (they journal and bind nothing).
- **Sessions** are a hash (``<prefix>sessions``) plus a sorted set for registration order.
  A drained batch of session operations is one script call, applied atomically in order.
  With ``session_ttl`` (off by default), a session expires ``session_ttl`` seconds after
  it was last registered, judged by Redis's clock (``TIME`` in the script), so a worker
  that dies without unregistering (SIGKILL, host lost) does not leave its sessions listed
  forever. Re-registering a session is its heartbeat: it sets a new deadline (and, like
  any registration, moves the session to the end of the order). Nothing else extends it:
  lookups, listings and ``select_backend(session_id, ...)`` read a session, never keep it
  alive, so another worker routing from a dead worker's session cannot revive it. Deadlines
  live in a sorted set (``<prefix>sessions:expiry``); an expired session is absent for
  every lookup and listing at once, and each session call purges a bounded number of them
  (100, plus one per registration it makes, so they cannot pile up while sessions are
  used). Each session has the deadline its last registration gave it, so a worker without
  ``session_ttl`` registers sessions that never expire; give every worker of a deployment
  the same value.
- **The journal** is a capped stream (``<prefix>journal``, ``XADD MAXLEN ~ journal_size``)
  with one fleet-wide, strictly increasing event sequence. ``Router.journal()`` reads its
  newest events; ``Router.subscribe()`` follows it live (:meth:`RedisStore.journal_feed`):
  ``XREAD BLOCK`` in batches on a connection of the subscription's own, so the events of
  every process of the fleet arrive in stream order and a subscriber never delays routing.
  A subscriber that falls so far behind that the cap trimmed entries it had not read gets
  a :class:`~beamrouting.SubscriptionGap` with their number, from the sequence numbers.

A drained batch of ``select`` messages costs two round trips, shared by every request of
the batch: one script call reads and advances the state every request needs (counters,
bindings, the profiles named), then the decisions are made in Python, then one script call
commits bindings and journal entries together, atomically. A decision is returned only
after its journal entry is in Redis.

Failures: every store operation has its own deadline (``operation_timeout``, default 1 s,
well below the router's ``call_timeout``). Redis unreachable or too slow raises
:class:`~beamrouting.StoreUnavailable`, which the actors hand to the callers as it is: it is
not a crash and restarts nothing. After a failure, operations fail at once for
``retry_interval`` seconds (so callers queued behind a hung Redis do not each wait a full
timeout), then the next one reconnects: service resumes by itself when Redis is back. A
decision whose commit did not complete is never returned (it may still have been recorded
if only the reply was lost).

Bounds: counters expire after ``idle_ttl`` (default 7 days) unused, bindings after
``binding_ttl`` unused, or ``idle_ttl`` when it is not set, so every routing key expires.
With ``session_ttl``, expired sessions are purged as sessions are used, and the session
keys themselves expire at the latest deadline of the sessions they hold, so the registry
of a prefix nobody uses any more disappears by itself; without it, a session stays until
it is unregistered (:meth:`~beamrouting.Router.session` does that on exit).
The in-memory store's ``max_counters``/``max_bindings`` caps do not apply to a shared
Redis; its TTLs (and Redis's ``maxmemory`` policy) bound it.

The store runs on asyncio and uvloop (``redis.asyncio``). Under trio, constructing or
starting it raises :class:`RuntimeError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

import anyio
import msgspec

from ..._core._catalog import Catalog
from ..._core._checks import check_count, check_seconds
from ..._core._engine import DONE, ROTATE, STICKY, RoutePlan, RoutingEngine
from ..._core._errors import InvalidPolicyProfile, PolicyDenied, RoutingError, StoreUnavailable
from ..._core._explain import Explanation
from ..._core._journal import Journal, JournalRecord, render_events
from ..._core._profiles import PolicyProfile, parse_profile
from ..._core._request import RequestNormalizer, RouteRequest
from ..._core._types import JournalEvent, RouteDecision, SessionHandle
from ..._runtime._messages import ListSessions, LookupSession, Register, Unregister
from .._protocol import JournalFeed, SelectResult, SessionOp, SessionResult, StoreCrash

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_IDLE_TTL", "DEFAULT_OPERATION_TIMEOUT", "RedisStore"]

DEFAULT_IDLE_TTL: Final = 7 * 24 * 3600.0
"""Seconds an unused round-robin counter lives (refreshed on every use): one week."""
DEFAULT_OPERATION_TIMEOUT: Final = 1.0
"""Seconds one store operation may take before it fails with ``StoreUnavailable``."""

_INSTALL_HINT: Final = "RedisStore needs the redis package: pip install 'beamrouting[redis]'"
_TRIO_ERROR: Final = (
    "RedisStore runs on asyncio or uvloop only (it uses redis.asyncio); it cannot run under trio. "
    "Run the router with anyio's asyncio backend, or use the in-memory store under trio."
)
_IDLE_CHECK: Final = 1.0
"""After this many idle seconds a connection is pinged before use (it may be stale)."""
_MAX_ROUNDS: Final = 32
"""Settling rounds of one batch before giving up (each lost race costs one more round)."""
_KEY_CACHE_SIZE: Final = 4096
_PROFILE_CACHE_SIZE: Final = 256
_CLEAR_BATCH: Final = 1000
_SESSION_PURGE: Final = 100
"""Expired sessions one session call purges, besides one per registration it makes (so they cannot pile up)."""

# --------------------------------------------------------------------------- Lua scripts

# KEYS[1] = profiles hash, KEYS[2..] = counter and binding keys.
# ARGV[1] = counter ttl (seconds, 0 = none), ARGV[2] = msgpack list of ops, ARGV[3] = number
# of profile ids, ARGV[4..] = the profile ids.
# op {1, counter, n}: INCRBY the counter by n, answer its new value.
# op {2, binding, counter, eligible...}: if the binding holds an eligible backend answer
#   {1, backend}; else INCR the counter and answer {0, value, current binding or false}.
# Answer: msgpack {answers, profiles}.
_STATE_SCRIPT: Final = """
local ttl = tonumber(ARGV[1])
local ops = cmsgpack.unpack(ARGV[2])
local out = {}
for i, op in ipairs(ops) do
  if op[1] == 1 then
    local key = KEYS[op[2]]
    out[i] = redis.call('INCRBY', key, op[3])
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  else
    local bound = redis.call('GET', KEYS[op[2]])
    local reuse = false
    if bound then
      for j = 4, #op do
        if op[j] == bound then reuse = true break end
      end
    end
    if reuse then
      out[i] = {1, bound}
    else
      local key = KEYS[op[3]]
      local value = redis.call('INCR', key)
      if ttl > 0 then redis.call('EXPIRE', key, ttl) end
      out[i] = {0, value, bound}
    end
  end
end
local profiles = {}
local n = tonumber(ARGV[3])
if n > 0 then profiles = redis.call('HMGET', KEYS[1], unpack(ARGV, 4, 3 + n)) end
return cmsgpack.pack({out, profiles})
"""

# KEYS[1] = journal stream, KEYS[2] = journal sequence, KEYS[3..] = binding keys.
# ARGV[1] = binding ttl (ms, 0 = none), ARGV[2] = journal maxlen (0 = no journal),
# ARGV[3] = msgpack list of records {condition, binding, expected, backend, events}, ARGV[3 + i]
# = the journal payload of record i (binary, so not inside the msgpack: cmsgpack has no bin type).
# condition 0: none; 1 (reuse): the binding must hold `expected`, its ttl slides;
# 2 (bind): the binding must hold `expected` (false = unbound), then it is set to `backend`.
# A record whose condition holds is journaled (`events` sequence numbers) and answered 1;
# one whose condition fails changes nothing and is answered {current binding or false}.
_COMMIT_SCRIPT: Final = """
local ttl = tonumber(ARGV[1])
local maxlen = tonumber(ARGV[2])
local records = cmsgpack.unpack(ARGV[3])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = seq
local out = {}
for i, r in ipairs(records) do
  local cond = r[1]
  local ok = true
  if cond ~= 0 then
    local key = KEYS[r[2]]
    local current = redis.call('GET', key)
    if current ~= r[3] then
      ok = false
      out[i] = {current}
    elseif cond == 1 then
      if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    elseif ttl > 0 then
      redis.call('SET', key, r[4], 'PX', ttl)
    else
      redis.call('SET', key, r[4])
    end
  end
  if ok then
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 's', string.format('%d', seq + 1), 'r', ARGV[3 + i])
    end
    seq = seq + r[5]
    out[i] = 1
  end
end
if seq ~= start then redis.call('SET', KEYS[2], string.format('%d', seq)) end
return cmsgpack.pack(out)
"""

# KEYS = sessions hash, order zset, order sequence, expiry zset (session id -> deadline, in
# ms of Redis's clock). ARGV[1] = session ttl (ms, 0 = none), ARGV[2] = how many expired
# sessions a call purges besides one per registration it makes; ARGV[3..] = the operations,
# one after the other: 'r', session id, encoded handle (register: replace, move to the end
# of the order, and set its deadline to now + ttl, or none without a ttl); 'u', session id
# (unregister); 'g', session id (get the encoded handle); 'l' (list). A session whose
# deadline has passed is absent for 'g' and 'l'; the call then purges a bounded number of
# them, and gives the keys the latest deadline as their own expiry (none while a session
# without a deadline is registered). Without a ttl and without an expiry zset none of this
# runs. Answer: one entry per operation: 1 (register, unregister), the encoded handle or nil
# (get), {ids in registration order, HGETALL of the hash} (list), plus the expired ids to
# leave out when an expiry zset exists.
_SESSIONS_SCRIPT: Final = """
local ttl = tonumber(ARGV[1])
local timed = ttl > 0 or redis.call('EXISTS', KEYS[4]) == 1
local now = 0
if timed then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local out = {}
local n = 0
local added = 0
local changed = false
local i = 3
while i <= #ARGV do
  local kind = ARGV[i]
  n = n + 1
  if kind == 'r' then
    local id = ARGV[i + 1]
    local seq = redis.call('INCR', KEYS[3])
    redis.call('HSET', KEYS[1], id, ARGV[i + 2])
    redis.call('ZADD', KEYS[2], seq, id)
    if ttl > 0 then
      redis.call('ZADD', KEYS[4], string.format('%d', now + ttl), id)
      added = added + 1
    elseif timed then
      redis.call('ZREM', KEYS[4], id)
    end
    changed = true
    out[n] = 1
    i = i + 3
  elseif kind == 'u' then
    local id = ARGV[i + 1]
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    if timed then redis.call('ZREM', KEYS[4], id) end
    changed = true
    out[n] = 1
    i = i + 2
  elseif kind == 'g' then
    local id = ARGV[i + 1]
    local handle = redis.call('HGET', KEYS[1], id)
    if handle and timed then
      local deadline = redis.call('ZSCORE', KEYS[4], id)
      if deadline and tonumber(deadline) <= now then handle = false end
    end
    out[n] = handle
    i = i + 2
  elseif kind == 'l' then
    local listed = {redis.call('ZRANGE', KEYS[2], 0, -1), redis.call('HGETALL', KEYS[1])}
    if timed then listed[3] = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', string.format('%d', now)) end
    out[n] = listed
    i = i + 1
  else
    return redis.error_reply('unknown session operation ' .. tostring(kind))
  end
end
if timed then
  local limit = tonumber(ARGV[2]) + added
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', string.format('%d', now), 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[4], id)
    changed = true
  end
  if changed then
    local live = redis.call('HLEN', KEYS[1])
    if live == 0 then
      redis.call('DEL', KEYS[3])
    elseif redis.call('ZCARD', KEYS[4]) == live then
      local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
      local at = string.format('%d', tonumber(last[2]))
      for k = 1, 4 do redis.call('PEXPIREAT', KEYS[k], at) end
    else
      for k = 1, 4 do redis.call('PERSIST', KEYS[k]) end
    end
  end
end
return out
"""

_GLOB_SPECIAL: Final = frozenset("*?[]\\")


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


def stable_digest(value: object) -> str:
    """32 hex digits of BLAKE2b over the msgpack encoding of ``value``: the same in every process."""
    return hashlib.blake2b(msgspec.msgpack.encode(value), digest_size=16).hexdigest()


class _DigestKeys:
    """Redis key names ``prefix + stable_digest(value)``, memoised in a bounded cache."""

    __slots__ = ("_cache", "_prefix")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._cache: dict[Hashable, str] = {}

    def __call__(self, value: Hashable) -> str:
        cache = self._cache
        key = cache.get(value)
        if key is None:
            if len(cache) >= _KEY_CACHE_SIZE:
                cache.clear()
            key = cache[value] = self._prefix + stable_digest(value)
        return key


def _redact(url: str) -> str:
    """``url`` without its password, for error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<redis url>"


def _running_under_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def _import_redis() -> Any:
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return redis


class _Pending:
    """One request of a batch on its way through the rounds of :meth:`RedisStore.select_batch`."""

    __slots__ = ("binding_key", "hint", "index", "plan")

    def __init__(self, index: int, plan: RoutePlan, binding_key: str | None) -> None:
        self.index = index
        self.plan = plan
        self.binding_key = binding_key
        self.hint: str | None = None
        """What the binding held when this request lost a race (reused without a state read if eligible)."""


def _index(entry: _Pending) -> int:
    return entry.index


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
    ) -> None:
        _import_redis()
        if _running_under_trio():
            raise RuntimeError(_TRIO_ERROR)
        if not isinstance(url, str) or not url:
            raise ValueError("url must be a non-empty redis URL string")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty string")
        # TTLs become whole milliseconds in Redis, so they must be finite (None: no TTL).
        if binding_ttl is not None:
            binding_ttl = check_seconds("binding_ttl", binding_ttl, finite=True)
        if idle_ttl is not None:
            idle_ttl = check_seconds("idle_ttl", idle_ttl, finite=True)
        if session_ttl is not None:
            session_ttl = check_seconds("session_ttl", session_ttl, finite=True)
        check_count("journal_size", journal_size, 0)
        check_seconds("operation_timeout", operation_timeout)
        if retry_interval is not None and not retry_interval >= 0:
            raise ValueError("retry_interval must be a number of seconds >= 0 or None")
        self.url = url
        self.prefix = prefix
        self.binding_ttl = binding_ttl
        self.journal_size = journal_size
        self.idle_ttl = idle_ttl
        self.session_ttl = session_ttl
        self.operation_timeout = float(operation_timeout)
        self.retry_interval = float(operation_timeout if retry_interval is None else retry_interval)
        self._engine = RoutingEngine(catalog)
        binding_lifetime = idle_ttl if binding_ttl is None else binding_ttl
        self._ttl_ms = 0 if binding_lifetime is None else max(1, math.ceil(binding_lifetime * 1000))
        self._idle_ttl_s = 0 if idle_ttl is None else max(1, math.ceil(idle_ttl))
        self._session_ttl_ms = 0 if session_ttl is None else max(1, math.ceil(session_ttl * 1000))
        self._profiles_key = prefix + "profiles"
        self._journal_key = prefix + "journal"
        self._journal_seq_key = prefix + "journal:seq"
        self._journal_base_key = prefix + "journal:base"
        self._sessions_key = prefix + "sessions"
        self._sessions_order_key = prefix + "sessions:order"
        self._sessions_seq_key = prefix + "sessions:seq"
        self._sessions_expiry_key = prefix + "sessions:expiry"
        self._counter_prefix = prefix + "c:"
        self._binding_prefix = prefix + "b:"
        digest_glob = "[0-9a-f]" * 32
        self._clear_patterns = (
            _glob_escape(self._counter_prefix) + digest_glob,
            _glob_escape(self._binding_prefix) + digest_glob,
        )
        self._client: aioredis.Redis | None = None
        self._state_script: AsyncScript | None = None
        self._commit_script: AsyncScript | None = None
        self._sessions_script: AsyncScript | None = None
        self._journal_base: int | None = None
        self._users = 0
        self._outage: str | None = None
        """Why Redis is considered unavailable (``None`` while it answers)."""
        self._retry_at = 0.0
        self._redis_errors: tuple[type[BaseException], ...] = (OSError,)
        self._connection_error: type[BaseException] = OSError
        self._last_ok = 0.0
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode_any = msgspec.msgpack.Decoder().decode
        self._decode_record = msgspec.msgpack.Decoder(
            tuple[float, RouteRequest, RouteDecision, str | None]
        ).decode
        self._decode_handle = msgspec.msgpack.Decoder(SessionHandle).decode
        self._counter_key = _DigestKeys(self._counter_prefix)
        """The Redis key of a round-robin counter key."""
        self._binding_key = _DigestKeys(self._binding_prefix)
        """The Redis key of a sticky binding's affinity key."""
        self._profile_cache: dict[bytes, PolicyProfile | str] = {}
        """Parsed stored profiles by their JSON text (or why the text is not a valid profile)."""

    def __repr__(self) -> str:
        return f"RedisStore({_redact(self.url)!r}, prefix={self.prefix!r})"

    # -- what the router reads ----------------------------------------------------------------------

    @property
    def engine(self) -> RoutingEngine:
        """The pure engine this store plans with (its own in-memory state, journal included, is not used)."""
        return self._engine

    @property
    def local_journal(self) -> Journal | None:
        """``None``: the journal lives in Redis; :meth:`journal_feed` follows it live (``Router.subscribe()``)."""
        return None

    @property
    def catalog(self) -> Catalog:
        """The catalogue requests are validated against."""
        return self._engine.catalog

    @property
    def normalizer(self) -> RequestNormalizer:
        """The engine's request normaliser."""
        return self._engine.normalizer

    def validate(self, request: RouteRequest) -> None:
        """:meth:`RoutingEngine.validate`."""
        self._engine.validate(request)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to Redis and check it answers; raise :class:`~beamrouting.StoreUnavailable` if not.

        Raises :class:`RuntimeError` when not running on asyncio (for example under trio).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(_TRIO_ERROR) from None
        if self._client is not None:
            self._users += 1  # another router shares this store (and its connections)
            return
        redis = _import_redis()
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        self._redis_errors = (RedisError, OSError)
        self._connection_error = RedisConnectionError

        timeout = self.operation_timeout
        # No retries inside redis-py: a command re-sent after a lost reply could run twice
        # (a counter advanced twice, a decision journaled twice). A failed call fails fast.
        client = redis.asyncio.Redis.from_url(
            self.url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._client = client
        self._users = 1
        self._outage = None
        self._state_script = client.register_script(_STATE_SCRIPT)
        self._commit_script = client.register_script(_COMMIT_SCRIPT)
        self._sessions_script = client.register_script(_SESSIONS_SCRIPT)
        try:
            await self._prepare("start")
        except BaseException:
            self._client = None
            self._users = 0
            with anyio.CancelScope(shield=True):
                await client.aclose()
            raise

    async def aclose(self) -> None:
        """Close the connections (when the last router using this store closes); the state stays in Redis."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _prepare(self, what: str) -> None:
        async with self._op(what, check_idle=False, probe=True) as client:
            await client.ping()
            base = int.from_bytes(os.urandom(8), "big") >> 1
            await client.set(self._journal_base_key, base, nx=True)
            stored = await client.get(self._journal_base_key)
            self._journal_base = int(stored) if stored is not None else base

    @asynccontextmanager
    async def _op(
        self, what: str, *, check_idle: bool = True, probe: bool = False
    ) -> AsyncIterator[aioredis.Redis]:
        """Run one store operation under the operation timeout, as :class:`StoreUnavailable` on failure.

        After a failure the store fails fast for ``retry_interval`` seconds (every caller
        queued behind a hung Redis would otherwise wait a full timeout of its own); the
        first operation after that tries Redis again, and a success ends the outage.
        """
        client = self._client
        if client is None:
            raise StoreUnavailable("the Redis store is not started")
        outage = self._outage
        if outage is not None and not probe and time.monotonic() < self._retry_at:
            raise StoreUnavailable(outage)
        try:
            async with asyncio.timeout(self.operation_timeout):
                if check_idle and time.monotonic() - self._last_ok > _IDLE_CHECK:
                    # The server may have restarted since: a stale connection fails the ping,
                    # which is safe to retry (it changes nothing), on a fresh connection.
                    try:
                        await client.ping()
                    except self._connection_error:
                        await client.connection_pool.disconnect(inuse_connections=False)
                yield client
        except TimeoutError:
            error = StoreUnavailable(
                f"Redis at {_redact(self.url)} did not answer {what} within {self.operation_timeout} s"
            )
        except self._redis_errors as exc:
            error = StoreUnavailable(f"Redis at {_redact(self.url)} failed {what}: {exc}")
            error.__cause__ = exc
        else:
            self._last_ok = time.monotonic()
            self._outage = None
            return
        await self._drop_idle()
        self._outage = f"{error} (retrying after {self.retry_interval} s)"
        self._retry_at = time.monotonic() + self.retry_interval
        raise error

    async def _drop_idle(self) -> None:
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken socket may itself fail
                await client.connection_pool.disconnect(inuse_connections=False)

    # -- routing ------------------------------------------------------------------------------------------

    async def select_batch(self, requests: list[RouteRequest]) -> list[SelectResult]:
        """Select for every request of a drained batch with two shared Redis round trips.

        Planning (validation, candidate sets) is pure; then one script call reads and
        advances the counters and bindings the plans need and fetches the profiles they
        name; then the decisions are made; then one script call commits bindings and journal
        entries atomically. Requests that lost a race for a binding go round again.
        """
        plan = self._engine.plan
        results: list[SelectResult | None] = [None] * len(requests)
        pending: list[_Pending] = []
        crash: StoreCrash | None = None
        limit = len(requests)
        for index, request in enumerate(requests):
            try:
                route_plan = plan(request)
                key = request.affinity_key if route_plan.kind == STICKY else None
                pending.append(_Pending(index, route_plan, None if key is None else self._binding_key(key)))
            except RoutingError as exc:
                results[index] = exc
            except Exception as exc:
                crash, limit = StoreCrash(exc), index
                break
        if pending:
            async with self._op("select"):
                crash_at = await self._settle(pending, results)
            if crash_at is not None and crash_at[0] < limit:
                limit = crash_at[0]
                crash = crash_at[1]
        answer: list[SelectResult] = []
        for result in results[:limit]:
            assert result is not None
            answer.append(result)
        if crash is not None:
            answer.append(crash)
        return answer

    async def _settle(
        self, pending: list[_Pending], results: list[SelectResult | None]
    ) -> tuple[int, StoreCrash] | None:
        """Decide and commit every pending request; return the first crash ``(index, marker)``.

        Each round reads the state for its requests, decides and commits. A request that
        lost a race for its binding goes round again, knowing what the binding now holds.
        Within a round, at most one request per affinity key that has no binding to reuse
        reads the state (and may advance the counter); later ones for that key wait for the
        next round and reuse what it bound, as they would have in one process's memory.
        """
        profiles: dict[str, PolicyProfile | RoutingError | None] = {}
        crash: tuple[int, StoreCrash] | None = None
        rounds = _MAX_ROUNDS + len(pending)  # every round settles at least one request per key
        while pending and rounds:
            rounds -= 1
            current: list[_Pending] = []
            waiting: list[_Pending] = []
            claimed: set[str] = set()
            for entry in pending:
                key = entry.binding_key
                if key is not None and not (entry.hint is not None and entry.plan.reusable(entry.hint)):
                    if key in claimed:
                        waiting.append(entry)
                        continue
                    claimed.add(key)
                current.append(entry)
            outcomes = await self._read_state(current, profiles)
            commits: list[list[Any]] = []
            committed: list[tuple[_Pending, SelectResult]] = []
            binding_keys: dict[str, int] = {}
            now = time.time()
            for entry, outcome in zip(current, outcomes, strict=True):
                if crash is not None and entry.index >= crash[0]:
                    break
                profile_id = entry.plan.request.policy_profile_id
                if profile_id is not None:
                    stored = profiles.get(profile_id)
                    if isinstance(stored, RoutingError):  # a malformed stored profile fails its requests only
                        results[entry.index] = stored
                        continue
                try:
                    record, result = self._decide(entry, outcome, profiles, binding_keys, now)
                except Exception as exc:
                    crash = (entry.index, StoreCrash(exc))
                    break
                commits.append(record)
                committed.append((entry, result))
            answers = await self._commit(commits, binding_keys) if commits else []
            again: list[_Pending] = []
            seen: dict[str, str | None] = {}
            for (entry, result), answer, record in zip(committed, answers, commits, strict=True):
                key = entry.binding_key
                if answer == 1:
                    results[entry.index] = result
                    if key is not None and record[0]:
                        seen[key] = record[3]  # it reused or bound this backend
                else:  # only a sticky request (it has a binding key) can lose a race
                    assert key is not None
                    entry.hint = seen[key] = answer[0] or None
                    again.append(entry)
            for entry in waiting:
                key = entry.binding_key
                if key is not None and key in seen:
                    entry.hint = seen[key]
            pending = sorted(again + waiting, key=_index)
            if crash is not None:
                pending = [entry for entry in pending if entry.index < crash[0]]
        if pending:
            raise StoreUnavailable(
                f"sticky bindings kept changing under {len(pending)} request(s); giving up"
            )
        return crash

    async def _read_state(
        self, pending: list[_Pending], profiles: dict[str, PolicyProfile | RoutingError | None]
    ) -> list[Any]:
        """One script call: advance counters, read bindings, fetch profiles. One outcome per entry.

        An outcome is the counter value (``ROTATE``), ``(True, backend)`` to reuse a binding
        or ``(False, counter, current binding or None)`` to bind anew (``STICKY``), or
        ``None`` (``DONE``, or a request whose profile is already known to be malformed).
        Each fetched profile lands in ``profiles``: parsed, ``None`` when there is no such
        profile, or the :class:`InvalidPolicyProfile` its requests fail with.
        """
        keys: list[str] = [self._profiles_key]
        key_index: dict[str, int] = {}

        def index_of(key: str) -> int:
            position = key_index.get(key)
            if position is None:
                keys.append(key)
                position = key_index[key] = len(keys)
            return position

        ops: list[list[Any]] = []
        rotations: dict[str, tuple[int, list[int]]] = {}
        outcomes: list[Any] = [None] * len(pending)
        positions: list[int] = []
        wanted: list[str] = []
        for position, entry in enumerate(pending):
            plan = entry.plan
            profile_id = plan.request.policy_profile_id
            if profile_id is not None:
                if isinstance(profiles.get(profile_id), RoutingError):
                    continue  # it fails anyway: advance nothing for it
                if profile_id not in profiles and profile_id not in wanted:
                    wanted.append(profile_id)
            kind = plan.kind
            if kind == DONE:
                continue
            counter = self._counter_key(plan.counter_key)
            if kind == ROTATE:
                group = rotations.get(counter)
                if group is None:
                    ops.append([1, index_of(counter), 0])
                    rotations[counter] = group = (len(ops) - 1, [])
                group[1].append(position)
                continue
            if entry.hint is not None and plan.reusable(entry.hint):
                outcomes[position] = (True, entry.hint)
                continue
            assert entry.binding_key is not None
            ops.append([2, index_of(entry.binding_key), index_of(counter), *plan.eligible])
            positions.append(position)
        for op_index, members in rotations.values():
            ops[op_index][2] = len(members)
        if not ops and not wanted:
            return outcomes
        assert self._state_script is not None
        raw = await self._state_script(
            keys=keys,
            args=[self._idle_ttl_s, self._encode(ops), len(wanted), *wanted],
        )
        answers, fetched = self._decode_any(raw)
        for op_index, members in rotations.values():
            last = answers[op_index]
            first = last - len(members) + 1
            for offset, position in enumerate(members):
                outcomes[position] = first + offset
        sticky_answers = [a for a in answers if type(a) is list]
        for position, answer in zip(positions, sticky_answers, strict=True):
            if answer[0] == 1:
                outcomes[position] = (True, answer[1])
            else:
                outcomes[position] = (False, answer[1], answer[2] or None)
        for profile_id, text in zip(wanted, fetched, strict=True):
            profiles[profile_id] = None if not text else self._stored_profile(profile_id, text)
        return outcomes

    def _decide(
        self,
        entry: _Pending,
        outcome: Any,
        profiles: dict[str, PolicyProfile | RoutingError | None],
        binding_keys: dict[str, int],
        now: float,
    ) -> tuple[list[Any], SelectResult]:
        """The commit record and the result of one request, from its plan and state outcome."""
        plan = entry.plan
        request = plan.request
        kind = plan.kind
        condition, expected = 0, False
        if kind == DONE:
            decision = plan.decision
            assert decision is not None
        elif kind == ROTATE:
            decision = plan.rotate(outcome)
        elif outcome[0]:
            decision = plan.reuse(outcome[1])
            condition, expected = 1, outcome[1]
        else:
            decision = plan.rotate(outcome[1])
            condition, expected = 2, outcome[2] or False
        result: SelectResult = decision
        deny = None
        profile_id = request.policy_profile_id
        if profile_id is not None:
            profile = profiles.get(profile_id)
            assert not isinstance(profile, RoutingError)  # _settle answered those requests
            deny = RoutingEngine.authorize(request, decision, profile)
            if deny is not None:
                condition = 0  # a denied sticky decision stores (and refreshes) no binding
                result = PolicyDenied(deny)
        binding = 0
        if condition:
            assert entry.binding_key is not None
            binding = binding_keys.setdefault(entry.binding_key, len(binding_keys) + 3)
        payload = self._encode((now, request, decision, deny))
        return [condition, binding, expected, decision.backend, 1 if deny is not None else 2, payload], result

    async def _commit(self, records: list[list[Any]], binding_keys: dict[str, int]) -> list[Any]:
        assert self._commit_script is not None
        keys = [self._journal_key, self._journal_seq_key, *binding_keys]
        payloads = [record.pop() for record in records]
        raw = await self._commit_script(
            keys=keys, args=[self._ttl_ms, self.journal_size, self._encode(records), *payloads]
        )
        answers: list[Any] = self._decode_any(raw)
        return answers

    def _stored_profile(self, profile_id: str, text: bytes | str) -> PolicyProfile | InvalidPolicyProfile:
        """The profile stored as ``text``, or the :class:`InvalidPolicyProfile` it is (never raises).

        Never trust what is in Redis: it is validated as if a user had just stored it. A
        malformed one (another process's bug, a hand edit) is an error for the requests
        that name it, not a crash.
        """
        data = text.encode() if isinstance(text, str) else text
        cache = self._profile_cache
        profile = cache.get(data)
        if profile is None:
            try:
                profile = parse_profile(msgspec.json.decode(data))
            except RoutingError as exc:
                profile = f"{exc.detail}"
            except (msgspec.DecodeError, UnicodeDecodeError):
                profile = "not a JSON document"
            except Exception as exc:  # any other failure to read it: still not a usable profile
                profile = f"unreadable ({type(exc).__name__})"
            if len(cache) >= _PROFILE_CACHE_SIZE:
                cache.clear()
            cache[data] = profile
        if isinstance(profile, str):
            return InvalidPolicyProfile(f"the stored policy profile {profile_id!r} is malformed: {profile}")
        return profile

    def _profile(self, profile_id: str, text: bytes | str) -> PolicyProfile:
        """:meth:`_stored_profile`, raising the :class:`InvalidPolicyProfile`."""
        profile = self._stored_profile(profile_id, text)
        if isinstance(profile, InvalidPolicyProfile):
            raise profile
        return profile

    async def explain(self, request: RouteRequest) -> Explanation:
        """How ``request`` would route now, from the shared state, changing nothing.

        Reads the binding, the counter and the profile the request needs in one round trip;
        the decision is the one :meth:`select_batch` would make if nobody else routed first.
        """
        engine = self._engine
        try:
            plan = engine.plan(request)
        except RoutingError as exc:
            return engine.explanation(request, None, exc.to_dict())
        kind = plan.kind
        bound: bytes | None = None
        counter: bytes | None = None
        stored: bytes | None = None
        profile_id = request.policy_profile_id
        if kind != DONE or profile_id is not None:
            async with self._op("explain") as client:
                pipe = client.pipeline(transaction=False)
                if kind == STICKY:
                    assert request.affinity_key is not None
                    pipe.get(self._binding_key(request.affinity_key))
                if kind != DONE:
                    pipe.get(self._counter_key(plan.counter_key))
                if profile_id is not None:
                    pipe.hget(self._profiles_key, profile_id)
                replies = list(await pipe.execute())
            if kind == STICKY:
                bound = replies.pop(0)
            if kind != DONE:
                counter = replies.pop(0)
            if profile_id is not None:
                stored = replies.pop(0)
        decision: RouteDecision | None
        error: dict[str, Any] | None = None
        try:
            backend = None if bound is None else bound.decode()
            if kind == DONE:
                decision = plan.decision
                assert decision is not None
            elif kind == STICKY and plan.reusable(backend):
                assert backend is not None
                decision = plan.reuse(backend)
            else:
                decision = plan.rotate(int(counter or 0) + 1)
            profile = None if stored is None else self._profile(profile_id or "", stored)
            deny = RoutingEngine.authorize(request, decision, profile)
            if deny is not None:
                raise PolicyDenied(deny)
        except RoutingError as exc:
            decision, error = None, exc.to_dict()
        return engine.explanation(request, decision, error)

    # -- the rest of the routing half -------------------------------------------------------------------

    async def clear(self) -> None:
        """Forget every sticky binding and round-robin counter of this prefix (SCAN + UNLINK).

        Profiles, sessions and the journal stay. Each SCAN step has its own deadline.
        """
        for pattern in self._clear_patterns:
            cursor = 0
            while True:
                async with self._op("clear") as client:
                    cursor, found = await client.scan(cursor, match=pattern, count=_CLEAR_BATCH)
                    if found:
                        await client.unlink(*found)
                if cursor == 0:
                    break

    async def ensure_tables(self) -> None:
        """Check Redis answers and the journal's id origin exists (keys are created on first use)."""
        await self._prepare("ensure_tables")

    async def put_policy_profile(self, profile_id: str, profile: PolicyProfile) -> None:
        """Store (or replace) a validated policy profile, as JSON, for every process."""
        text = msgspec.json.encode(profile.to_dict())
        async with self._op("put_policy_profile") as client:
            await client.hset(self._profiles_key, profile_id, text)

    async def delete_policy_profile(self, profile_id: str) -> bool:
        """Remove a policy profile; return whether it existed."""
        async with self._op("delete_policy_profile") as client:
            removed = await client.hdel(self._profiles_key, profile_id)
        return bool(removed)

    async def policy_profiles(self) -> dict[str, PolicyProfile]:
        """Every stored profile by id (not part of the store protocol; for tools and tests)."""
        async with self._op("policy_profiles") as client:
            stored: dict[bytes, bytes] = await client.hgetall(self._profiles_key)  # type: ignore[assignment]
        return {key.decode(): self._profile(key.decode(), value) for key, value in stored.items()}

    async def journal(self, event_type: str | None, limit: int | None) -> list[JournalEvent]:
        """The most recent journal events of the whole fleet, oldest first."""
        size = self.journal_size
        if size == 0 or (limit is not None and limit <= 0):
            return []
        count = size if event_type is not None or limit is None else min(size, limit)
        async with self._op("journal") as client:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrevrange(  # type: ignore[assignment]
                self._journal_key, count=count
            )
        base = self._journal_base or 0
        events: list[JournalEvent] = []
        decode = self._decode_record
        for _, fields in reversed(entries):
            when, request, decision, deny = decode(fields[b"r"])
            events.extend(render_events(base, (int(fields[b"s"]), when, request, decision, deny)))
        events = events[-size:]
        if event_type is not None:
            events = [event for event in events if event.event_type == event_type]
        if limit is not None:
            events = events[-limit:]
        return events

    def journal_feed(self) -> JournalFeed:
        """A live read of the whole fleet's journal (a :class:`~beamrouting.JournalFeed`), for ``Router.subscribe()``.

        Each feed has a connection of its own, never one of the pool routing uses, opened
        when it starts listening: in one transaction it takes the stream's newest entry as
        its starting point, then reads with ``XREAD BLOCK`` from the last entry it read, in
        batches. A wait lasts at most ``operation_timeout`` and must be answered within
        twice that, so a Redis that is lost or stops answering raises
        :class:`~beamrouting.StoreUnavailable` in time instead of hanging. The store need
        not be started. A process with ``journal_size=0`` journals nothing, so its decisions
        are not seen. Runs on asyncio and uvloop.
        """
        return _RedisJournalFeed(self)

    async def bindings(self) -> int:
        """How many sticky bindings this prefix holds (for tools and tests; it scans)."""
        total = 0
        cursor = 0
        while True:
            async with self._op("bindings") as client:
                cursor, found = await client.scan(cursor, match=self._clear_patterns[1], count=_CLEAR_BATCH)
            total += len(found)
            if cursor == 0:
                return total

    # -- the session half ---------------------------------------------------------------------------------

    async def session_batch(self, ops: list[SessionOp]) -> list[SessionResult]:
        """Apply a drained batch of session operations in one script call, atomically and in order.

        Operations are encoded first; one that cannot be encoded ends the answer with a
        :class:`StoreCrash` and neither it nor any later one is sent. A stored session that
        cannot be decoded answers a :class:`StoreCrash` for the lookup or listing that read
        it only. Redis unreachable or too slow raises
        :class:`~beamrouting.StoreUnavailable` for the whole batch.

        With ``session_ttl``, a registration sets the session's deadline (Redis's clock, now
        plus ``session_ttl``); a session past it is absent for every lookup and listing, and
        each call purges a bounded number of such sessions.
        """
        args: list[Any] = [self._session_ttl_ms, _SESSION_PURGE]
        sent: list[SessionOp] = []
        crash: StoreCrash | None = None
        for op in ops:
            try:
                match op:
                    case Register(handle):
                        args += (b"r", handle.session_id, self._encode(handle))
                    case Unregister(session_id):
                        args += (b"u", session_id)
                    case LookupSession(session_id):
                        args += (b"g", session_id)
                    case ListSessions():
                        args.append(b"l")
                    case _:
                        raise TypeError(f"not a session operation: {op!r}")
            except Exception as exc:
                crash = StoreCrash(exc)
                break
            sent.append(op)
        results: list[SessionResult] = []
        if sent:
            assert self._sessions_script is not None
            keys = [
                self._sessions_key,
                self._sessions_order_key,
                self._sessions_seq_key,
                self._sessions_expiry_key,
            ]
            async with self._op("session operations"):
                answers: list[Any] = await self._sessions_script(keys=keys, args=args)
            if len(answers) != len(sent):
                raise StoreUnavailable(f"Redis answered {len(answers)} of {len(sent)} session operations")
            for op, answer in zip(sent, answers, strict=True):
                try:
                    results.append(self._session_result(op, answer))
                except Exception as exc:
                    results.append(StoreCrash(exc))
        if crash is not None:
            results.append(crash)
        return results

    def _session_result(self, op: SessionOp, answer: Any) -> SessionResult:
        """What one operation of :meth:`session_batch` answers, from the script's reply."""
        if type(op) is LookupSession:
            return None if answer is None else self._decode_handle(answer).backend
        if type(op) is ListSessions:
            order, flat, *expired = answer
            stored: dict[bytes, bytes] = dict(zip(flat[::2], flat[1::2], strict=True))
            for session_id in expired[0] if expired else ():
                stored.pop(session_id, None)  # past its deadline, not yet purged
            handles: list[SessionHandle] = []
            for session_id in order:
                data = stored.pop(session_id, None)
                if data is not None:
                    handles.append(self._decode_handle(data))
            handles.extend(self._decode_handle(data) for data in stored.values())
            return handles
        return None

    async def _session_op(self, op: SessionOp) -> SessionResult:
        """One operation through :meth:`session_batch`, its error or crash raised."""
        (result,) = await self.session_batch([op])
        if isinstance(result, StoreCrash):
            raise result.error
        if isinstance(result, (RoutingError, StoreUnavailable)):
            raise result
        return result

    async def register_session(self, handle: SessionHandle) -> None:
        """Register a live session for the whole fleet, replacing one with the same id."""
        await self._session_op(Register(handle))

    async def unregister_session(self, session_id: str) -> None:
        """Forget a session; a no-op for an unknown id."""
        await self._session_op(Unregister(session_id))

    async def session_backend(self, session_id: str) -> str | None:
        """The backend of a live session, or ``None``."""
        backend = await self._session_op(LookupSession(session_id))
        assert backend is None or isinstance(backend, str)
        return backend

    async def sessions(self) -> list[SessionHandle]:
        """Every live session of the fleet, in registration order."""
        handles = await self._session_op(ListSessions())
        assert isinstance(handles, list)
        return handles


# --------------------------------------------------------------------------- journal feed


def _stream_entries(reply: Any) -> list[Any]:
    """The ``(id, fields)`` entries of an ``XREAD`` reply on one stream (RESP2 or RESP3 shape)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: [[entry, ...]]}
        return [entry for batches in reply.values() for batch in batches for entry in batch]
    return [entry for _, entries in reply for entry in entries]  # RESP2: [[stream, [entry, ...]]]


class _RedisJournalFeed:
    """:meth:`RedisStore.journal_feed`: the journal stream read live, on a connection of its own.

    The connection is opened by :meth:`open` (or a :meth:`read` after a cancelled one) and
    kept between reads. A call that fails or is cancelled drops it, since a reply may still
    be on its way; the next read connects anew and goes on after the last entry returned.
    """

    __slots__ = ("_base", "_client", "_last_id", "_releasing", "_store")

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._client: aioredis.Redis | None = None
        self._releasing: asyncio.Task[None] | None = None
        self._last_id: bytes | str = b"0-0"
        """The id of the last stream entry read (or the newest one when listening started)."""
        self._base = 0

    def __repr__(self) -> str:
        return f"<RedisStore journal feed {_redact(self._store.url)!r} prefix={self._store.prefix!r}>"

    @property
    def base(self) -> int:
        """The origin of the fleet's event ids (``<prefix>journal:base``), read by :meth:`open`."""
        return self._base

    def _connect(self) -> aioredis.Redis:
        client = self._client
        if client is None:
            redis = _import_redis()
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            timeout = self._store.operation_timeout
            # One connection, no retries inside redis-py (a failure is reported, never hidden),
            # and a socket timeout longer than the longest wait of an XREAD BLOCK.
            client = self._client = redis.asyncio.Redis.from_url(
                self._store.url,
                max_connections=1,
                socket_timeout=2 * timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
            )
        return client

    async def _call(
        self, what: str, deadline: float, command: Callable[[aioredis.Redis], Awaitable[Any]]
    ) -> Any:
        """``command`` on the feed's connection within ``deadline`` s, as :class:`StoreUnavailable` on failure."""
        from redis.exceptions import RedisError

        client = self._connect()
        url = _redact(self._store.url)
        try:
            async with asyncio.timeout(deadline):
                return await command(client)
        except TimeoutError:
            error = StoreUnavailable(f"Redis at {url} did not answer {what} within {deadline} s")
        except (RedisError, OSError) as exc:
            error = StoreUnavailable(f"Redis at {url} failed {what}: {exc}")
            error.__cause__ = exc
        except BaseException:  # cancelled: a reply may still come, so the connection is done for
            await self._drop(client)
            raise
        await self._drop(client)
        raise error

    async def open(self) -> int:
        """Connect and take the stream's current end as the starting point; return the next sequence.

        One transaction reads the newest entry's id, the fleet's last sequence number and
        the origin of event ids (creating it, as a starting store does, if nobody has yet).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(_TRIO_ERROR) from None
        store = self._store
        origin = int.from_bytes(os.urandom(8), "big") >> 1

        async def begin(client: aioredis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=True)
            pipe.set(store._journal_base_key, origin, nx=True)
            pipe.get(store._journal_base_key)
            pipe.xrevrange(store._journal_key, count=1)
            pipe.get(store._journal_seq_key)
            replies: list[Any] = await pipe.execute()
            return replies

        _, base, newest, sequence = await self._call("a subscription start", store.operation_timeout, begin)
        self._base = int(base)
        self._last_id = newest[0][0] if newest else b"0-0"
        return int(sequence or 0) + 1

    async def read(self, count: int) -> list[JournalRecord]:
        """``XREAD BLOCK``: the next entries after the last one read, at most ``count``, oldest first.

        Waits at most ``operation_timeout`` for an entry (then answers ``[]``). An entry that
        cannot be decoded is skipped: the sequence numbers report it as lost.
        """
        store = self._store
        wait = store.operation_timeout
        stream = store._journal_key

        async def xread(client: aioredis.Redis) -> Any:
            return await client.xread(
                {stream: self._last_id}, count=count, block=max(1, math.ceil(wait * 1000))
            )

        reply = await self._call("a journal read", 2 * wait, xread)
        decode = store._decode_record
        records: list[JournalRecord] = []
        for entry_id, fields in _stream_entries(reply):
            self._last_id = entry_id
            try:
                sequence = int(fields[b"s"])
                when, request, decision, deny = decode(fields[b"r"])
            except (KeyError, ValueError, TypeError, msgspec.DecodeError):
                continue
            records.append(JournalRecord(sequence, when, request, decision, deny))
        return records

    async def _drop(self, client: aioredis.Redis) -> None:
        if self._client is client:
            self._client = None
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await client.aclose()

    def close(self) -> None:
        """Release the connection without waiting: as soon as the event loop runs."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop any more: the socket goes with the client object
            return
        self._releasing = loop.create_task(self._drop(client))

    async def aclose(self) -> None:
        """Release the connection and wait until it is released."""
        client = self._client
        if client is not None:
            await self._drop(client)
        task, self._releasing = self._releasing, None
        if task is not None:
            await asyncio.shield(task)
