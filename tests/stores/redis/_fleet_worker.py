"""One worker of a fleet sharing a RedisStore: run by the Redis tests in its own process.

Usage::

    python tests/stores/redis/_fleet_worker.py URL PREFIX MODE CALLS CONCURRENCY BARRIER PARTIES [EXTRA]

It enters ``Router(store=RedisStore(URL, prefix=PREFIX, ...))``, waits at a barrier until
``PARTIES`` workers are ready (an ``INCR`` on the Redis key ``BARRIER``, polled with a
timeout), then makes ``CALLS`` calls from ``CONCURRENCY`` concurrent tasks and prints one
line of JSON.

MODE is ``round_robin`` (``{"policy": "round_robin"}``) or ``sticky`` (``{"policy":
"sticky", "affinity_key": EXTRA}``), which print ``{"backends": [...], "reasons": [...],
"errors": [...]}``; or one of these, EXTRA being a JSON object (``spec``) whose ``"store"``
holds options of the RedisStore (``limits``, ``weights``, ``health``: HealthPolicy fields,
``clock``: a fixed UNIX time):

- ``select``: ``select_backend(spec["request"])``; prints backends, reasons and errors
  (error codes). With ``spec["after"]``, it first makes one selection (so it has read the
  fleet's state), then waits at the barrier and for the Redis key ``spec["after"]`` to exist.
- ``report``: after the barrier, ``report(spec["backend"], "quota", retry_after=3600)``,
  then sets the Redis key ``spec["signal"]``; prints the backend's status.
- ``sessions``: ``async with router.session(spec["request"], wait=spec["wait"])`` holding
  each for ``spec["hold"]`` seconds; prints ``{"admitted": n, "backends": [...], "errors": [...]}``.
- ``wait``: one ``select_backend(spec["request"], wait=spec["wait"])``; once its caller
  waits it sets the Redis key ``spec["signal"]``; prints the backend, the seconds it took,
  and how many script calls its store made while the caller waited.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository's root

from beamrouting import BeamRoutingError, HealthPolicy, RedisStore
from beamrouting._core._types import RouteDecision
from beamrouting._runtime._router import Router

BARRIER_TIMEOUT = 30.0


async def _until(url: str, ready: Any, what: str) -> None:
    """Poll Redis (a condition, with a timeout) until ``ready(client)``."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        deadline = time.monotonic() + BARRIER_TIMEOUT
        while not await ready(client):
            if time.monotonic() > deadline:
                raise TimeoutError(what)
            await anyio.sleep(0.001)
    finally:
        await client.aclose()


async def _barrier(url: str, key: str, parties: int) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.incr(key)
    finally:
        await client.aclose()

    async def arrived(client: Any) -> bool:
        return int(await client.get(key) or 0) >= parties

    await _until(url, arrived, f"barrier {key!r}: fewer than {parties} workers arrived")


def _store(url: str, prefix: str, spec: dict[str, Any]) -> RedisStore:
    options: dict[str, Any] = dict(spec.get("store", {}))
    if "health" in options:
        options["health"] = HealthPolicy(**options["health"])
    if "clock" in options:
        fixed = float(options["clock"])
        options["clock"] = lambda: fixed
    return RedisStore(url, prefix=prefix, **options)


async def _calls(calls: int, concurrency: int, call: Any) -> None:
    remaining = calls

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(caller)


async def main(argv: list[str]) -> dict[str, Any]:
    url, prefix, mode, calls, concurrency, barrier, parties = argv[:7]
    extra = argv[7] if len(argv) > 7 else "fleet-key"
    spec: dict[str, Any] = {}
    if mode == "round_robin":
        request: dict[str, Any] = {"policy": "round_robin"}
    elif mode == "sticky":
        request = {"policy": "sticky", "affinity_key": extra}
    else:
        spec = json.loads(extra)
        request = spec.get("request", {})
    decisions: list[RouteDecision] = []
    errors: list[str] = []
    store = _store(url, prefix, spec)

    async def select() -> None:
        try:
            decisions.append(await router.select_backend(request))
        except BeamRoutingError as exc:
            errors.append(exc.code)
        except Exception as exc:
            errors.append(repr(exc))

    async with Router(store=store) as router:
        if mode == "select" and "after" in spec:
            await router.select_backend({"policy": "round_robin"})  # it has read the fleet's state
            await _barrier(url, barrier, int(parties))

            async def signalled(client: Any) -> bool:
                return bool(await client.exists(spec["after"]))

            await _until(url, signalled, f"no signal at {spec['after']!r}")
        else:
            await _barrier(url, barrier, int(parties))
        if mode in ("round_robin", "sticky", "select"):
            await _calls(int(calls), int(concurrency), select)
        elif mode == "report":
            state = await router.report(spec["backend"], "quota", retry_after=3600)
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(url)
            try:
                await client.set(spec["signal"], 1)
            finally:
                await client.aclose()
            return {"status": state.status.value}
        elif mode == "sessions":
            admitted: list[str] = []

            async def session() -> None:
                try:
                    async with router.session(request, wait=spec["wait"]) as mine:
                        admitted.append(mine.backend)
                        await anyio.sleep(spec.get("hold", 0))
                except Exception as exc:
                    errors.append(repr(exc))

            await _calls(int(calls), int(concurrency), session)
            return {"admitted": len(admitted), "backends": admitted, "errors": errors}
        elif mode == "wait":
            return await _wait(router, store, url, spec)
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    return {
        "backends": [d.backend for d in decisions],
        "reasons": [d.reasons[0] for d in decisions],
        "errors": errors,
    }


async def _wait(router: Router, store: RedisStore, url: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One selection that waits; the signal says when its caller waits (see the module docstring)."""
    import redis.asyncio

    fleet = store._fleet
    calls = {"count": 0}
    for name in ("state", "commit"):
        original = getattr(fleet, name)

        async def counted(*args: Any, _original: Any = original, **options: Any) -> Any:
            calls["count"] += 1
            return await _original(*args, **options)

        setattr(fleet, name, counted)
    waited_from: dict[str, int] = {}
    result: dict[str, Any] = {}

    async def selection() -> None:
        started = time.monotonic()
        decision = await router.select_backend(spec["request"], wait=spec["wait"])
        result["elapsed"] = time.monotonic() - started
        result["backend"] = decision.backend
        result["calls_while_waiting"] = calls["count"] - waited_from["calls"]

    async with anyio.create_task_group() as tg:
        tg.start_soon(selection)
        deadline = time.monotonic() + BARRIER_TIMEOUT
        while router._waiters.waiting < 1:  # the caller joined the waiters
            if time.monotonic() > deadline:
                raise TimeoutError("the selection did not wait")
            await anyio.sleep(0.001)
        waited_from["calls"] = calls["count"]
        client = redis.asyncio.Redis.from_url(url)
        try:
            await client.set(spec["signal"], 1)
        finally:
            await client.aclose()
    return result


if __name__ == "__main__":
    result = anyio.run(
        main, sys.argv[1:], backend="asyncio", backend_options={"use_uvloop": sys.platform != "win32"}
    )
    print(json.dumps(result))
