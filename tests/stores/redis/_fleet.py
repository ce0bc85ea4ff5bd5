"""What the Redis fleet tests share: an injected clock, round-trip counts and worker processes.

Nothing here sleeps to wait for time: clocks are moved by hand, and workers are waited for
with a timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

__all__ = ["START", "WORKER", "Clock", "finish", "run_workers", "script_calls", "spawn"]

WORKER = Path(__file__).with_name("_fleet_worker.py")
START = 1_800_000_000.0
"""Where injected clocks start (UNIX seconds)."""


class Clock:
    """A wall clock a test moves by hand (UNIX seconds)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def script_calls(client: Any) -> int:
    """How many scripts the Redis server ran so far (``EVALSHA`` and ``EVAL``), from its command stats."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


def spawn(
    url: str, prefix: str, mode: str, calls: int, concurrency: int, barrier: str, parties: int, extra: Any
) -> Any:
    """Start one worker process (see ``_fleet_worker.py``); ``extra`` is its spec (JSON) or key."""
    argument = extra if isinstance(extra, str) else json.dumps(extra)
    return subprocess.Popen(
        [
            sys.executable,
            str(WORKER),
            url,
            prefix,
            mode,
            str(calls),
            str(concurrency),
            barrier,
            str(parties),
            argument,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(processes: list[Any], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Wait for ``processes`` and return what each printed; kill what is left if one fails."""
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, f"worker failed:\n{err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def run_workers(
    url: str, prefix: str, mode: str, calls: int, concurrency: int, spec: Any, workers: int = 2
) -> list[dict[str, Any]]:
    """Run ``workers`` workers of one mode to the end, released together by a barrier."""
    barrier = f"{prefix}test-barrier:{uuid.uuid4().hex}"
    return finish(
        [spawn(url, prefix, mode, calls, concurrency, barrier, workers, spec) for _ in range(workers)]
    )
