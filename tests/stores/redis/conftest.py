"""Fixtures of the Redis store's tests: asyncio and uvloop only, key prefixes, a client,
and a redis-server a test may kill.

The session's redis-server (``redis_server``, ``redis_url``) is in ``tests/conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import ASYNCIO_BACKENDS
from tests._redis import RedisServer, free_port, import_redis_or_skip


@pytest.fixture(scope="module", params=ASYNCIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """The Redis store runs on asyncio and uvloop only (it refuses trio, which test_store.py checks)."""
    backend: tuple[str, dict[str, object]] = request.param
    return backend


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests sharing one server never meet."""
    return f"beamrouting-test:{uuid.uuid4().hex}:"


@pytest.fixture
def inspect(redis_url: str) -> Iterator[Any]:
    """A plain (synchronous) client to look at what the store wrote."""
    client = import_redis_or_skip().Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def private_redis(redis_server: RedisServer, tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill, pause and restart."""
    server = RedisServer(redis_server.binary, free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.kill()
