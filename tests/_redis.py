"""A private redis-server for the test-suite, and what the Redis tests share.

:class:`RedisServer` runs one ``redis-server`` process on a loopback port; the fixtures of
``tests/conftest.py`` and ``tests/stores/redis/conftest.py`` build on it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests._helpers import wait_until

__all__ = ["RedisServer", "free_port", "import_redis_or_skip", "redis_binary", "redis_required"]


def redis_required() -> bool:
    """Whether a missing redis-server (or redis package) fails the tests (``BEAMROUTING_REQUIRE_REDIS=1``)."""
    return os.environ.get("BEAMROUTING_REQUIRE_REDIS", "").strip().lower() in {"1", "true", "yes"}


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
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


def redis_binary() -> str | None:
    """The redis-server to run (``BEAMROUTING_REDIS_SERVER`` or the one on ``PATH``), if any."""
    return shutil.which(os.environ.get("BEAMROUTING_REDIS_SERVER") or "redis-server")


def import_redis_or_skip() -> Any:
    """The ``redis`` package, or skip the calling module (a failure when Redis is required)."""
    try:
        import redis
    except ImportError:  # pragma: no cover - the dev extra installs it
        if redis_required():
            raise
        pytest.skip(
            "the redis package is not installed (pip install 'beamrouting[redis]')", allow_module_level=True
        )
    return redis
