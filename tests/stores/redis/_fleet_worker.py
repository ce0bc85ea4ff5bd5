"""One worker of a fleet sharing a RedisStore: run by tests/stores/redis/test_store.py in its own process.

Usage::

    python tests/stores/redis/_fleet_worker.py URL PREFIX MODE CALLS CONCURRENCY BARRIER PARTIES [KEY]

It enters ``Router(store=RedisStore(URL, prefix=PREFIX))``, waits at a barrier until
``PARTIES`` workers are ready (an ``INCR`` on the Redis key ``BARRIER``, polled with a
timeout), then makes ``CALLS`` calls from ``CONCURRENCY`` concurrent tasks and prints one
line of JSON: ``{"backends": [...], "reasons": [...], "errors": [...]}``.

MODE is ``round_robin`` (``{"policy": "round_robin"}``) or ``sticky`` (``{"policy":
"sticky", "affinity_key": KEY}``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository's root

from beamrouting import RedisStore
from beamrouting._core._types import RouteDecision
from beamrouting._runtime._router import Router

BARRIER_TIMEOUT = 30.0


async def _barrier(url: str, key: str, parties: int) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.incr(key)
        deadline = time.monotonic() + BARRIER_TIMEOUT
        while int(await client.get(key) or 0) < parties:
            if time.monotonic() > deadline:
                raise TimeoutError(f"barrier {key!r}: fewer than {parties} workers arrived")
            await anyio.sleep(0.001)
    finally:
        await client.aclose()


async def main(argv: list[str]) -> dict[str, Any]:
    url, prefix, mode, calls, concurrency, barrier, parties = argv[:7]
    key = argv[7] if len(argv) > 7 else "fleet-key"
    if mode == "round_robin":
        request: dict[str, Any] = {"policy": "round_robin"}
    elif mode == "sticky":
        request = {"policy": "sticky", "affinity_key": key}
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    remaining = int(calls)
    decisions: list[RouteDecision] = []
    errors: list[str] = []

    async with Router(store=RedisStore(url, prefix=prefix)) as router:
        await _barrier(url, barrier, int(parties))

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                try:
                    decisions.append(await router.select_backend(request))
                except Exception as exc:
                    errors.append(repr(exc))

        async with anyio.create_task_group() as tg:
            for _ in range(int(concurrency)):
                tg.start_soon(caller)
    return {
        "backends": [d.backend for d in decisions],
        "reasons": [d.reasons[0] for d in decisions],
        "errors": errors,
    }


if __name__ == "__main__":
    result = anyio.run(
        main, sys.argv[1:], backend="asyncio", backend_options={"use_uvloop": sys.platform != "win32"}
    )
    print(json.dumps(result))
