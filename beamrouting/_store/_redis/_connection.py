"""The connection to Redis and the outage policy: deadlines, fail-fast windows, reconnection.

Every store operation runs inside :meth:`Connection.operation`: it has its own deadline
(``operation_timeout``), and Redis unreachable or too slow raises
:class:`~beamrouting.StoreUnavailable`. After such a failure, operations fail at once for
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
from urllib.parse import urlsplit, urlunsplit

from ..._core._errors import StoreUnavailable
from .._environment import current_async_library

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Connection", "check_asyncio", "import_redis", "redact"]

INSTALL_HINT: Final = "RedisStore needs the redis package: pip install 'beamrouting[redis]'"
TRIO_ERROR: Final = (
    "RedisStore runs on asyncio or uvloop only (it uses redis.asyncio); it cannot run under trio. "
    "Run the router with anyio's asyncio backend, or use the in-memory store under trio."
)
_IDLE_CHECK: Final = 1.0
"""After this many idle seconds a connection is pinged before use (it may be stale)."""


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
    url: str, *, timeout: float, socket_timeout: float | None = None, **options: Any
) -> aioredis.Redis:
    """A redis-py client that never retries by itself and never pings on its own."""
    redis = import_redis()
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client: aioredis.Redis = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=timeout if socket_timeout is None else socket_timeout,
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

    @property
    def client(self) -> aioredis.Redis | None:
        """The client while connected (between :meth:`open` and :meth:`close`)."""
        return self._client

    def open(self) -> aioredis.Redis:
        """Create the client (connections are made on first use) and forget any outage."""
        import_redis()
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        self._redis_errors = (RedisError, OSError)
        self._connection_error = RedisConnectionError
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
