"""Shared fixtures: the anyio backends every async test runs on, the session's private
redis-server, the ``redis`` marker and the Hypothesis profiles.

The Redis store's own fixtures (key prefixes, a client, a server a test may kill) and its
asyncio-only backends are in ``tests/stores/redis/conftest.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests._helpers import ANYIO_BACKENDS
from tests._redis import RedisServer, free_port, redis_binary, redis_required

# --------------------------------------------------------------------------- Hypothesis

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


# --------------------------------------------------------------------------- anyio backends


@pytest.fixture(scope="module", params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Run every ``@pytest.mark.anyio`` test on asyncio, asyncio with uvloop and trio."""
    backend: tuple[str, dict[str, object]] = request.param
    return backend


# --------------------------------------------------------------------------- redis-server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session (``.url``, ``.port``, ``.stop()``, ``.start()``).

    Missing ``redis-server`` skips the test, or fails it when ``BEAMROUTING_REQUIRE_REDIS=1``
    (CI sets it, so Redis tests cannot silently not run).
    """
    binary = redis_binary()
    if binary is None:
        reason = "redis-server not found on PATH (install it, or set BEAMROUTING_REDIS_SERVER)"
        if redis_required():
            pytest.fail(f"BEAMROUTING_REQUIRE_REDIS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    server = RedisServer(binary, free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server URL, running and emptied for this test."""
    redis_server.start()
    redis_server.flushall()
    return redis_server.url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the Redis fixtures carry the ``redis`` marker (``-m "not redis"``)."""
    for item in items:
        if {"redis_server", "redis_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)
