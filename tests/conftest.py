"""Shared fixtures: the anyio backends every async test runs on, a private redis-server,
and the Hypothesis profiles."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests._helpers import wait_until

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

_NO_UVLOOP = sys.platform == "win32"


ASYNCIO_BACKENDS = [
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="uvloop",
        marks=pytest.mark.skipif(_NO_UVLOOP, reason="uvloop does not exist on Windows"),
    ),
]
"""asyncio and uvloop: what a module whose tests need the Redis store runs on."""


@pytest.fixture(scope="module", params=[*ASYNCIO_BACKENDS, pytest.param(("trio", {}), id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Run every ``@pytest.mark.anyio`` test on asyncio, asyncio with uvloop and trio."""
    backend: tuple[str, dict[str, object]] = request.param
    return backend


# --------------------------------------------------------------------------- redis-server


def _redis_required() -> bool:
    return os.environ.get("BEAMROUTING_REQUIRE_REDIS", "").strip().lower() in {"1", "true", "yes"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _encode_command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisServer:
    """A redis-server process of the test session, on a fixed loopback port and data dir.

    ``stop()`` shuts it down, ``kill()`` kills it (SIGKILL, as in a crash) and ``start()``
    starts it again on the same port with the same data directory. It is started without
    persistence (``--save "" --appendonly no``), so a restarted server is empty.
    """

    host = "127.0.0.1"

    def __init__(self, binary: str, port: int, data_dir: Path) -> None:
        self.binary = binary
        self.port = port
        self.data_dir = data_dir
        self.log_path = data_dir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self, *args: str, timeout: float = 2.0) -> bytes:
        """Send one command and return the raw first reply line (e.g. ``b"+PONG"``)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.sendall(_encode_command(*args))
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return reply.split(b"\r\n", 1)[0]

    def ping(self) -> bool:
        """Whether the server answers ``PING`` with ``PONG`` right now."""
        try:
            return self.command("PING", timeout=0.5) == b"+PONG"
        except OSError:
            return False

    def flushall(self) -> None:
        reply = self.command("FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def start(self, timeout: float = 15.0) -> None:
        """Start the server (no-op when running) and wait until it answers ``PING``."""
        if self.running:
            return
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--port",
                    str(self.port),
                    "--bind",
                    self.host,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.data_dir),
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()

        def ready() -> bool:
            if not self.running:
                raise RuntimeError(f"redis-server exited early:\n{self.log_tail()}")
            return self.ping()

        try:
            wait_until(
                ready, timeout, interval=0.02, message=f"redis-server did not answer PING:\n{self.log_tail()}"
            )
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (SIGTERM) and wait for the process to exit."""
        self._end(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """Kill the server (SIGKILL, like a crash) and wait for the process to exit."""
        self._end(signal.SIGKILL, timeout)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it keeps its connections but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server go on (SIGCONT); a no-op when it is not running."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        wait_until(lambda: not self.ping(), timeout, message=f"port {self.port} still answers after stop")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _redis_binary() -> str | None:
    return shutil.which(os.environ.get("BEAMROUTING_REDIS_SERVER") or "redis-server")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session (``.url``, ``.port``, ``.stop()``, ``.start()``).

    Missing ``redis-server`` skips the test, or fails it when ``BEAMROUTING_REQUIRE_REDIS=1``
    (CI sets it, so Redis tests cannot silently not run).
    """
    binary = _redis_binary()
    if binary is None:
        reason = "redis-server not found on PATH (install it, or set BEAMROUTING_REDIS_SERVER)"
        if _redis_required():
            pytest.fail(f"BEAMROUTING_REQUIRE_REDIS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    server = RedisServer(binary, _free_port(), tmp_path_factory.mktemp("redis"))
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


# --------------------------------------------------------------------------- Redis test helpers


def import_redis_or_skip() -> Any:
    """The ``redis`` package, or skip the calling module (a failure when Redis is required)."""
    try:
        import redis
    except ImportError:  # pragma: no cover - the dev extra installs it
        if _redis_required():
            raise
        pytest.skip(
            "the redis package is not installed (pip install 'beamrouting[redis]')", allow_module_level=True
        )
    return redis


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
    server = RedisServer(redis_server.binary, _free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.kill()
