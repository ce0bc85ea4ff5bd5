"""The connection to Redis and the outage policy: deadlines, fail-fast windows, reconnection.

Every store operation runs inside :meth:`Connection.operation`: it has its own deadline
(``operation_timeout``), and Redis unreachable, too slow, or answering with something that
is not a well-formed reply raises :class:`beamrouting.StoreUnavailable`: an outage. An
error reply about a value (a key of the wrong type, say) is no outage: it raises
:class:`beamrouting.StoreDataError` for that operation only. After an outage, operations fail at once for
``retry_interval`` seconds (so callers queued behind a hung Redis do not each wait a full
timeout), then the next one tries again: service resumes by itself when Redis is back. A
connection idle for a while is pinged before use, since the server may have restarted.
No command is retried inside redis-py: one re-sent after a lost reply could run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit, urlunsplit

import msgspec

from ..._core._errors import StoreDataError, StoreUnavailable
from .._environment import current_async_library

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "Connection",
    "MalformedReply",
    "check_asyncio",
    "check_url",
    "error_reply",
    "import_redis",
    "raised_by_redis",
    "redact",
]

INSTALL_HINT: Final = "RedisStore needs the redis package: pip install 'beamrouting[redis]'"
TRIO_ERROR: Final = (
    "RedisStore runs on asyncio or uvloop only (it uses redis.asyncio); it cannot run under trio. "
    "Run the router with anyio's asyncio backend, or use the in-memory store under trio."
)
_IDLE_CHECK: Final = 1.0
"""After this many idle seconds a connection is pinged before use (it may be stale)."""
_SERVER_CONDITIONS: Final = (
    "BUSY",
    "CLUSTERDOWN",
    "LOADING",
    "MASTERDOWN",
    "MISCONF",
    "NOREPLICAS",
    "OOM",
    "READONLY",
    "TRYAGAIN",
)
"""Error replies that say the server cannot serve now (an outage), not that a value is wrong."""


_SCHEMES: Final = ("redis", "rediss", "unix")


class _NoSuchError(Exception):
    """Stands for redis-py's ResponseError until the client is imported."""


class MalformedReply(Exception):
    """A reply that a working Redis running the store's scripts would not send (treated as an outage)."""


def raised_by_redis(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside redis-py, as its reply parser does for a malformed reply.

    A reply header that is not a number (``:abc``, ``*x``, ``$?``) makes the parser's
    ``int()`` raise :class:`ValueError`: something that is not a working Redis answered.
    """
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__")
    return isinstance(module, str) and (module == "redis" or module.startswith("redis."))


def error_reply(url: str, what: str, exc: BaseException) -> StoreDataError | StoreUnavailable:
    """The error for Redis's error reply ``exc`` to ``what``: an outage only if the server cannot serve now.

    Any other error reply means the server is up and answered: a value it holds is not what
    the store wrote (:class:`beamrouting.StoreDataError`).
    """
    if str(exc).startswith(_SERVER_CONDITIONS):
        error: StoreDataError | StoreUnavailable = StoreUnavailable(
            f"Redis at {redact(url)} cannot serve {what} now: {exc}"
        )
    else:
        error = StoreDataError(f"Redis at {redact(url)} refused {what}: {exc}")
    error.__cause__ = exc
    return error


def check_url(url: object) -> str:
    """``url`` if it is a usable Redis URL; :class:`TypeError` or :class:`ValueError` saying what is wrong.

    Accepted: ``redis://[user:password@]host[:port][/db]``, ``rediss://...`` (TLS) and
    ``unix://[user:password@]/path/to/socket[?db=N]``; ``db`` is a number.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    text = str.__str__(url)
    shown = redact(text)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
        query = parse_qs(parts.query, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ValueError(f"url {shown!r} is not a valid Redis URL: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, not {shown!r}")
    database = parts.path.strip("/") if parts.scheme != "unix" else ""
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"url {shown!r} names no socket path (unix:///path/to/redis.sock)")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"url {shown!r} names no host (redis://host:port/db)")
    for value in ([database] if database else []) + query.get("db", []):
        if not value.isdigit():
            raise ValueError(f"url {shown!r}: the database must be a number, not {value!r}")
    _check_options(text, shown)
    return text


def _check_options(text: str, shown: str) -> None:
    """Read the URL's query options as redis-py will when the store starts (``?socket_timeout=soon`` fails)."""
    try:
        from redis.asyncio.connection import parse_url
    except ImportError:  # pragma: no cover - RedisStore imports redis before checking its URL
        return
    try:
        parse_url(text)
    except ValueError as exc:
        raise ValueError(f"url {shown!r} is not a valid Redis URL: {exc}") from None


def import_redis() -> Any:
    """The ``redis`` package; :class:`ImportError` naming the extra to install without it."""
    try:
        import redis.asyncio
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return redis


def check_asyncio(*, running: bool) -> None:
    """Raise :class:`RuntimeError` under trio (and, if ``running``, outside an asyncio loop)."""
    library = current_async_library()
    if library == "trio" or (running and library != "asyncio"):
        raise RuntimeError(TRIO_ERROR)


def redact(url: str) -> str:
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


def new_client(
    url: str, *, timeout: float, socket_timeout: float | None = None, blocking: bool = False, **options: Any
) -> aioredis.Redis:
    """A redis-py client that never retries by itself and never pings on its own.

    ``blocking``: reads wait as long as it takes (for a subscription), not ``socket_timeout``.
    """
    redis = import_redis()
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client: aioredis.Redis = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=None if blocking else timeout if socket_timeout is None else socket_timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
        **options,
    )
    return client


class Connection:
    """The store's client and its outage state (see the module docstring)."""

    def __init__(self, url: str, *, operation_timeout: float, retry_interval: float) -> None:
        self.url = url
        self.operation_timeout = operation_timeout
        self.retry_interval = retry_interval
        self._client: aioredis.Redis | None = None
        self._outage: str | None = None
        """Why Redis is considered unavailable (``None`` while it answers)."""
        self._retry_at = 0.0
        self._last_ok = 0.0
        self._redis_errors: tuple[type[BaseException], ...] = (OSError,)
        self._connection_error: type[BaseException] = OSError
        self._response_error: type[BaseException] = _NoSuchError

    @property
    def client(self) -> aioredis.Redis | None:
        """The client while connected (between :meth:`open` and :meth:`close`)."""
        return self._client

    def open(self) -> aioredis.Redis:
        """Create the client (connections are made on first use) and forget any outage."""
        import_redis()
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError, ResponseError

        self._redis_errors = (RedisError, OSError)
        self._connection_error = RedisConnectionError
        self._response_error = ResponseError
        client = self._client = new_client(self.url, timeout=self.operation_timeout)
        self._outage = None
        return client

    async def close(self) -> None:
        """Close the client's connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @asynccontextmanager
    async def operation(
        self, what: str, *, check_idle: bool = True, probe: bool = False
    ) -> AsyncIterator[aioredis.Redis]:
        """Run one store operation under the operation timeout, as :class:`StoreUnavailable` on failure.

        ``what`` names the operation in error messages; ``probe`` tries Redis even inside
        the fail-fast window; ``check_idle`` pings a connection that has been idle first.
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
                f"Redis at {redact(self.url)} did not answer {what} within {self.operation_timeout} s"
            )
        except (RecursionError, msgspec.DecodeError, MalformedReply):
            error = StoreUnavailable(f"Redis at {redact(self.url)} sent a malformed reply to {what}")
        except ValueError as exc:
            if not raised_by_redis(exc):
                raise
            error = StoreUnavailable(f"Redis at {redact(self.url)} sent a malformed reply to {what}")
            error.__cause__ = exc
        except self._response_error as exc:
            if not str(exc).startswith(_SERVER_CONDITIONS):
                # The server is up and answered: a value it holds is not what the store wrote.
                raise StoreDataError(f"Redis at {redact(self.url)} refused {what}: {exc}") from exc
            error = StoreUnavailable(f"Redis at {redact(self.url)} cannot serve {what} now: {exc}")
            error.__cause__ = exc
        except self._redis_errors as exc:
            error = StoreUnavailable(f"Redis at {redact(self.url)} failed {what}: {exc}")
            error.__cause__ = exc
        else:
            self._last_ok = time.monotonic()
            self._outage = None
            return
        with contextlib.suppress(Exception):  # closing a broken socket may itself fail
            await client.connection_pool.disconnect(inuse_connections=False)
        self._outage = f"{error} (retrying after {self.retry_interval} s)"
        self._retry_at = time.monotonic() + self.retry_interval
        raise error
