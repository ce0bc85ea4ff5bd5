"""Round-robin throughput of ``Router.select_backend`` on a :class:`RedisStore`, beside the in-memory store.

::

    python -m beamrouting._bench_redis redis://127.0.0.1:6379/0 --callers 100 --seconds 3

or from code (on asyncio or uvloop)::

    result = await measure_redis_throughput("redis://127.0.0.1:6379/0", callers=100, seconds=3)
    print(result.redis_per_second, result.memory_per_second)

Both figures come from the same run, the same event loop and the same request: ``callers``
tasks each call ``select_backend({"policy": "round_robin"})`` in a loop for ``seconds``
seconds, first against a router on the in-memory store, then against one on the Redis store
(under a fresh key prefix, whose keys are removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any, Final

import anyio
import msgspec

from ._catalog import Catalog

__all__ = ["RedisThroughput", "main", "measure_redis_throughput"]

_REQUEST: Final = {"policy": "round_robin"}
_WARMUP: Final = 0.2


class RedisThroughput(msgspec.Struct, frozen=True):
    """What :func:`measure_redis_throughput` measured."""

    callers: int
    """Concurrent callers."""
    seconds: float
    """Measured seconds per store (after a short warm-up)."""
    redis_calls: int
    redis_per_second: float
    """Selections per second through ``Router(store=RedisStore(url))``."""
    memory_calls: int
    memory_per_second: float
    """Selections per second through ``Router()`` (the in-memory store), same run."""
    event_loop: str
    """``"asyncio"`` or ``"uvloop"``."""

    @property
    def ratio(self) -> float:
        """Redis throughput as a share of the in-memory throughput."""
        return self.redis_per_second / self.memory_per_second if self.memory_per_second else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data, with the ratio."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out["ratio"] = self.ratio
        return out


async def _drive(router: Any, callers: int, seconds: float) -> tuple[int, float]:
    select = router.select_backend
    calls = 0
    stop = time.perf_counter() + _WARMUP
    measuring = False

    async def caller() -> None:
        nonlocal calls
        while time.perf_counter() < stop:
            await select(_REQUEST)
            if measuring:
                calls += 1

    async with anyio.create_task_group() as tg:  # warm-up: connections, scripts, caches
        for _ in range(callers):
            tg.start_soon(caller)
    measuring = True
    started = time.perf_counter()
    stop = started + seconds
    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(caller)
    return calls, time.perf_counter() - started


def _event_loop_name() -> str:
    import asyncio

    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


async def measure_redis_throughput(
    url: str,
    callers: int = 100,
    seconds: float = 3.0,
    *,
    catalog: Catalog | None = None,
    prefix: str | None = None,
) -> RedisThroughput:
    """Measure round-robin selections per second on a RedisStore at ``url`` and on the in-memory store.

    Runs on asyncio or uvloop (whichever is running). ``prefix`` defaults to a fresh
    ``beamrouting-bench:<uuid>:``; the counters and bindings made under it are cleared after.
    """
    from ._redis_store import RedisStore
    from ._router import Router

    if callers < 1 or not seconds > 0:
        raise ValueError("callers must be >= 1 and seconds > 0")
    async with Router(catalog) as router:
        memory_calls, memory_seconds = await _drive(router, callers, seconds)
    store = RedisStore(url, prefix=prefix or f"beamrouting-bench:{uuid.uuid4().hex}:", catalog=catalog)
    async with Router(store=store) as router:
        redis_calls, redis_seconds = await _drive(router, callers, seconds)
        await router.clear()
    return RedisThroughput(
        callers,
        seconds,
        redis_calls,
        redis_calls / redis_seconds,
        memory_calls,
        memory_calls / memory_seconds,
        _event_loop_name(),
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: print both throughputs (``--json`` for one line of JSON)."""
    parser = argparse.ArgumentParser(
        prog="python -m beamrouting._bench_redis", description=__doc__.split("\n")[0]
    )
    parser.add_argument("url", help="redis URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = anyio.run(
        measure_redis_throughput,
        args.url,
        args.callers,
        args.seconds,
        backend="asyncio",
        backend_options={"use_uvloop": args.loop == "uvloop"},
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"{result.event_loop}, {result.callers} round-robin callers, {result.seconds:g} s each:\n"
            f"  redis store:     {result.redis_per_second:>10,.0f} selections/s\n"
            f"  in-memory store: {result.memory_per_second:>10,.0f} selections/s\n"
            f"  redis / memory:  {result.ratio:>10.0%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
