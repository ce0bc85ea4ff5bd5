"""The benchmark's cells: the bare-Python yardstick, and what each cell measures.

Every figure of the benchmark is a ratio between two timings taken in one process, back to
back: shared machines make absolute times drift from minute to minute, ratios measured
together much less. Most cells compare with :func:`bare`, a few lines of plain Python
that make the yardstick requests' decision with no validation, no journal and no state
beyond one counter.

A **probe** measures several named series together (the ones the cells of one group
compare) and returns each one's seconds per operation. Its calls are split into
:data:`ROUNDS` chunks per series, taken in turn (ABBA order), so that the series of a
probe share the machine's slow and quick moments. Probes on an event loop run inside one
``anyio.run`` each (see :func:`~._backends.run_on`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import anyio

from beamrouting import Catalog, HealthPolicy, Router, RoutingEngine

__all__ = [
    "AV",
    "CALLERS",
    "CAPS",
    "CELLS",
    "GROUPS",
    "PROBES",
    "PTF",
    "ROUNDS",
    "ROUTER_CAP",
    "RR",
    "Budget",
    "Cell",
    "Probe",
    "bare",
    "cells_for",
    "probes_for",
]

# --------------------------------------------------------------------------- the yardstick

# The yardstick, exactly as specified (so the formatter leaves it alone).
# fmt: off
PTF = {"policy": "preferred_then_fallback", "preferred_backends": ["gemini", "codex"],
       "excluded_backends": ["claude"], "health": {"opencode": "degraded"}}
RR = {"policy": "round_robin", "preferred_backends": ["gemini", "codex"], "excluded_backends": ["claude"]}
AV = ["claude", "codex", "copilot", "gemini", "opencode"]

def bare(req, counters={}):  # type: ignore[no-untyped-def]  # noqa: B006
    excl = req.get("excluded_backends", [])
    health = req.get("health", {})
    elig = [b for b in AV if b not in excl and health.get(b, "healthy") in ("healthy", "degraded")]
    pref = [b for b in req.get("preferred_backends", []) if b in elig]
    ordered = pref + [b for b in elig if b not in pref]
    if req["policy"] == "round_robin":
        key = (tuple(ordered), tuple(excl))
        n = counters[key] = counters.get(key, 0) + 1
        i = (n - 1) % len(ordered)
        ordered = ordered[i:] + ordered[:i]
    return {"backend": ordered[0], "candidates": ordered, "policy": req["policy"],
            "reasons": ["selected preferred backend"], "fallback_chain": ordered[1:]}
# fmt: on

_bare: Callable[[Mapping[str, Any]], dict[str, Any]] = bare
"""The yardstick, typed (it is left unannotated on purpose)."""

# --------------------------------------------------------------------------- settings

CALLERS: Final = 100
"""Concurrent callers of the many-callers cells."""
CAPS: Final[tuple[int, ...]] = (10_000, 100_000, 1_000_000)
"""The engine's ``max_bindings`` / ``max_counters`` caps of the state-cap cells."""
ROUTER_CAP: Final = 100_000
"""The router's cap of its state-cap cell."""
ROUNDS: Final = 4
"""Chunks each series of a probe is split into, taken in turn with the other series."""
WARMUP: Final = 300
"""Calls of each series before a probe measures (also the pilot of ``--duration``)."""
_MIN_PER_CALLER: Final = 1
_SESSION_SHARE: Final = 10
"""The session cell runs a tenth of the operations (each is two round trips and some 400 calls)."""
_CATALOGUE_SIZE: Final = 500
_LIVE_SESSIONS: Final = {"claude": 12, "codex": 8, "copilot": 6, "gemini": 3, "opencode": 1}
"""The live sessions of the capacity cells (30, unevenly spread)."""
_WEIGHTS: Final = {"claude": 4, "codex": 3, "copilot": 2, "gemini": 1, "opencode": 1}
_GENEROUS: Final = 10_000
"""A session limit per backend that the capacity cell never reaches."""
_OUT: Final = "gemini"
"""The backend the learning cell reports out (quota): 1 of 5, the first preferred one of PTF."""
_FAR: Final = 30 * 86_400.0
"""How far ahead the quota's ``retry_at`` lies (seconds)."""
_REPORT: Final = ("gemini", "success")
"""What the report round trip reports."""


@dataclass(frozen=True)
class Budget:
    """How long one probe measures each series."""

    calls: int
    """Operations per series (in :data:`ROUNDS` chunks)."""
    duration: float | None = None
    """Seconds per series instead (sized from the warm-up's pace)."""
    flip: bool = False
    """Take the series in reverse order first (alternated between repetitions)."""
    redis_url: str | None = None
    redis_prefix: str = "beamrouting-bench:"
    """The key prefix of the Redis cells (one fresh prefix per run, removed afterwards)."""

    def share(self, divisor: int) -> Budget:
        """This budget with ``1/divisor`` of the calls (``duration`` unchanged)."""
        return replace(self, calls=max(ROUNDS, self.calls // divisor))

    def count(self, seconds_per_op: float) -> int:
        """Operations per series: ``calls``, or what ``duration`` holds at ``seconds_per_op``."""
        if self.duration is None:
            return self.calls
        return max(ROUNDS, int(self.duration / max(seconds_per_op, 1e-9)))


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One figure of the benchmark: a series, and its ratio to another one of the same probe."""

    key: str
    """Stable identifier, ``<group>.<name>`` (the JSON's key)."""
    label: str
    """What is measured."""
    versus: str
    """What the ratio compares it with (``""`` for the yardsticks themselves)."""
    probe: str
    subject: str
    """The probe's series measured."""
    reference: str | None
    """The probe's series compared with (``None``: a yardstick, ratio 1)."""
    target: float | None = None
    throughput: bool = False
    """``True``: the ratio is throughput over the reference's, the target its minimum;
    else it is cost (time per operation) over the reference's, the target its maximum."""

    @property
    def group(self) -> str:
        return self.key.partition(".")[0]

    def ratio(self, subject: float, reference: float | None) -> float:
        """The ratio from two times per operation."""
        if reference is None:
            return 1.0
        return reference / subject if self.throughput else subject / reference

    def met(self, ratio: float | None) -> bool | None:
        """Whether ``ratio`` meets the target (``None`` without a target or a ratio)."""
        if self.target is None or ratio is None:
            return None
        return ratio >= self.target if self.throughput else ratio <= self.target


@dataclass(frozen=True)
class Probe:
    """A measurement of several series together, once per repetition."""

    name: str
    backend: str | None
    """The async backend it runs on (``None``: synchronous, no event loop)."""
    measure: Callable[[Budget], Any]
    """``measure(budget)``: series name -> seconds per operation (a coroutine function when
    ``backend`` is set)."""
    description: str


# --------------------------------------------------------------------------- measuring helpers

_Run = Callable[[int], tuple[float, int]]
"""``run(n)``: about ``n`` operations; returns ``(seconds, operations done)``."""
_AsyncRun = Callable[[int], Awaitable[tuple[float, int]]]


def _loop(call: Callable[[Any], object], argument: object) -> _Run:
    def run(n: int) -> tuple[float, int]:
        clock = time.perf_counter
        start = clock()
        for _ in range(n):
            call(argument)
        return clock() - start, n

    return run


def _aloop(call: Callable[[Any], Awaitable[object]], argument: object) -> _AsyncRun:
    async def run(n: int) -> tuple[float, int]:
        clock = time.perf_counter
        start = clock()
        for _ in range(n):
            await call(argument)
        return clock() - start, n

    return run


def _sync(run: _Run) -> _AsyncRun:
    """A synchronous series inside an async probe."""

    async def arun(n: int) -> tuple[float, int]:
        return run(n)

    return arun


def _orders(names: list[str], flip: bool) -> Iterable[list[str]]:
    for index in range(ROUNDS):
        yield names if (index % 2 == 0) != flip else names[::-1]


def _interleave(series: Mapping[str, _Run], budget: Budget) -> dict[str, float]:
    """Seconds per operation of each series, measured in alternating chunks."""
    per_round = {}
    for name, run in series.items():
        seconds, done = run(WARMUP)
        per_round[name] = max(1, budget.count(seconds / done) // ROUNDS)
    totals = dict.fromkeys(series, 0.0)
    ops = dict.fromkeys(series, 0)
    gc.collect()
    for order in _orders(list(series), budget.flip):
        for name in order:
            seconds, done = series[name](per_round[name])
            totals[name] += seconds
            ops[name] += done
    return {name: totals[name] / ops[name] for name in series}


async def _ainterleave(series: Mapping[str, _AsyncRun], budget: Budget) -> dict[str, float]:
    """:func:`_interleave` for series that await."""
    per_round = {}
    for name, run in series.items():
        seconds, done = await run(WARMUP)
        per_round[name] = max(1, budget.count(seconds / done) // ROUNDS)
    totals = dict.fromkeys(series, 0.0)
    ops = dict.fromkeys(series, 0)
    gc.collect()
    for order in _orders(list(series), budget.flip):
        for name in order:
            seconds, done = await series[name](per_round[name])
            totals[name] += seconds
            ops[name] += done
    return {name: totals[name] / ops[name] for name in series}


def _callers(select: Callable[[Any], Awaitable[object]], request: object) -> _AsyncRun:
    """:data:`CALLERS` concurrent callers: wall time over selections (their start excluded)."""

    async def run(n: int) -> tuple[float, int]:
        per_caller = max(n // CALLERS, _MIN_PER_CALLER)
        go = anyio.Event()
        clock = time.perf_counter

        async def caller() -> None:
            await go.wait()
            for _ in range(per_caller):
                await select(request)

        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller)
            await anyio.lowlevel.checkpoint()  # every caller now waits for go
            start = clock()
            go.set()
        return clock() - start, per_caller * CALLERS

    return run


# --------------------------------------------------------------------------- probes


def _engine(budget: Budget) -> dict[str, float]:
    engine = RoutingEngine()
    select = engine.select_backend
    return _interleave(
        {
            "bare_ptf": _loop(_bare, PTF),
            "engine_ptf": _loop(select, PTF),
            "bare_rr": _loop(_bare, RR),
            "engine_rr": _loop(select, RR),
        },
        budget,
    )


def _catalogue(budget: Budget) -> dict[str, float]:
    request = {"policy": "round_robin"}
    small = RoutingEngine()
    large = RoutingEngine(Catalog([f"b{i}" for i in range(_CATALOGUE_SIZE)]))
    return _interleave(
        {"rr_5": _loop(small.select_backend, request), "rr_500": _loop(large.select_backend, request)},
        budget,
    )


async def _router(budget: Budget) -> dict[str, float]:
    engine = RoutingEngine()
    async with Router() as router:
        return await _ainterleave(
            {
                "bare_ptf": _sync(_loop(_bare, PTF)),
                "engine_ptf": _sync(_loop(engine.select_backend, PTF)),
                "router_ptf": _aloop(router.select_backend, PTF),
            },
            budget,
        )


async def _many_callers(budget: Budget) -> dict[str, float]:
    async with Router() as router:
        return await _ainterleave(
            {"bare_ptf": _sync(_loop(_bare, PTF)), "router_ptf": _callers(router.select_backend, PTF)},
            budget,
        )


async def _redis(budget: Budget) -> dict[str, float]:
    from beamrouting import RedisStore

    url = budget.redis_url
    if url is None:
        raise ValueError("the Redis cells need a Redis URL")
    prefix = f"{budget.redis_prefix}{time.time_ns()}:"
    try:
        async with Router() as memory, Router(store=RedisStore(url, prefix=prefix)) as shared:
            return await _ainterleave(
                {
                    "memory_rr": _callers(memory.select_backend, RR),
                    "redis_rr": _callers(shared.select_backend, RR),
                },
                budget,
            )
    finally:
        with anyio.CancelScope(shield=True):
            await delete_keys(url, prefix)


async def delete_keys(url: str, prefix: str) -> int:
    """Delete every key of ``prefix`` at ``url``; return how many there were."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


def _sticky_run(select: Callable[[Any], object]) -> Callable[[int, int], float]:
    """``run(first, n)``: ``n`` sticky selections, each with a new affinity key; seconds taken."""

    def run(first: int, n: int) -> float:
        clock = time.perf_counter
        start = clock()
        for i in range(first, first + n):
            select({"policy": "sticky", "affinity_key": f"k{i}"})
        return clock() - start

    return run


def _engine_cap(cap: int) -> Callable[[Budget], dict[str, float]]:
    def measure(budget: Budget) -> dict[str, float]:
        _sticky_run(RoutingEngine(max_bindings=cap, max_counters=cap).select_backend)(0, WARMUP)
        run = _sticky_run(RoutingEngine(max_bindings=cap, max_counters=cap).select_backend)
        gc.collect()
        below = run(0, cap)  # fills the state up to its cap
        full = run(cap, cap)  # every selection evicts the least recently used binding
        return {"below": below / cap, "full": full / cap}

    return measure


def _router_cap(cap: int) -> Callable[[Budget], Awaitable[dict[str, float]]]:
    async def run(select: Callable[[Any], Awaitable[object]], first: int, n: int) -> float:
        clock = time.perf_counter
        start = clock()
        for i in range(first, first + n):
            await select({"policy": "sticky", "affinity_key": f"k{i}"})
        return clock() - start

    async def measure(budget: Budget) -> dict[str, float]:
        async with Router(max_bindings=cap, max_counters=cap) as warm:
            await run(warm.select_backend, 0, WARMUP)
        async with Router(max_bindings=cap, max_counters=cap) as router:
            gc.collect()
            below = await run(router.select_backend, 0, cap)
            full = await run(router.select_backend, cap, cap)
        return {"below": below / cap, "full": full / cap}

    return measure


def _learning(budget: Budget) -> dict[str, float]:
    off = RoutingEngine(health=None)
    idle = RoutingEngine(health=HealthPolicy())
    out = RoutingEngine(health=HealthPolicy())
    out.report(_OUT, "quota", retry_at=time.time() + _FAR)
    return _interleave(
        {
            "health_none": _loop(off.select_backend, PTF),
            "nothing_reported": _loop(idle.select_backend, PTF),
            "one_out": _loop(out.select_backend, PTF),
        },
        budget,
    )


async def _report(budget: Budget) -> dict[str, float]:
    backend, outcome = _REPORT

    async def report(_: object) -> object:
        return await router.report(backend, outcome)

    async with Router() as router:
        return await _ainterleave(
            {"select": _aloop(router.select_backend, PTF), "report": _aloop(report, None)}, budget
        )


def _capacity(budget: Budget) -> dict[str, float]:
    engine = RoutingEngine(weights=_WEIGHTS)
    for backend, count in _LIVE_SESSIONS.items():
        for i in range(count):
            engine.register_session(f"{backend}-{i}", backend)
    select = engine.select_backend
    return _interleave(
        {
            "round_robin": _loop(select, {"policy": "round_robin"}),
            "least_loaded": _loop(select, {"policy": "least_loaded"}),
            "weighted": _loop(select, {"policy": "weighted"}),
        },
        budget,
    )


async def _sessions(budget: Budget) -> dict[str, float]:
    def enter_exit(router: Router) -> _AsyncRun:
        async def once(_: object) -> None:
            async with router.session(PTF):
                pass

        return _aloop(once, None)

    limits = dict.fromkeys(AV, _GENEROUS)
    async with Router() as plain, Router(limits=limits) as limited:
        return await _ainterleave(
            {"without_limits": enter_exit(plain), "with_limits": enter_exit(limited)},
            budget.share(_SESSION_SHARE),
        )


# --------------------------------------------------------------------------- the cells

GROUPS: Final[tuple[str, ...]] = (
    "yardstick",
    "engine",
    "catalogue",
    "router",
    "callers",
    "redis",
    "cap",
    "learning",
    "capacity",
)
"""The groups of cells, in the table's order (``--cells`` selects among them)."""

_CALLER_TARGETS: Final = {"uvloop": 3.0, "asyncio": 3.5, "trio": 5.0}


def _cap_name(cap: int) -> str:
    return (
        f"{cap // 1_000_000}m" if cap % 1_000_000 == 0 else f"{cap // 1000}k" if cap % 1000 == 0 else str(cap)
    )


def cells_for(caps: Iterable[int] = CAPS, router_cap: int = ROUTER_CAP) -> list[Cell]:
    """Every cell, in the table's order (the state-cap cells at ``caps`` and ``router_cap``)."""
    cells = [
        Cell("yardstick.ptf", "bare Python, PTF", "", "engine", "bare_ptf", None),
        Cell("yardstick.rr", "bare Python, RR", "", "engine", "bare_rr", None),
        Cell("engine.ptf", "engine select_backend(PTF)", "bare PTF", "engine", "engine_ptf", "bare_ptf", 1.6),
        Cell("engine.rr", "engine select_backend(RR)", "bare RR", "engine", "engine_rr", "bare_rr", 1.6),
        Cell(
            "catalogue.rr500",
            "engine round robin, 500-backend catalogue",
            "same, 5 backends",
            "catalogue",
            "rr_500",
            "rr_5",
            2.0,
        ),
        Cell(
            "router.bare",
            "Router round trip, 1 caller, PTF",
            "bare PTF",
            "router",
            "router_ptf",
            "bare_ptf",
            4.0,
        ),
        Cell(
            "router.engine",
            "Router round trip, 1 caller, PTF",
            "engine PTF",
            "router",
            "router_ptf",
            "engine_ptf",
        ),
    ]
    for backend in ("uvloop", "asyncio", "trio"):
        cells.append(
            Cell(
                f"callers.{backend}",
                f"Router, {CALLERS} callers, PTF, per selection",
                "bare PTF",
                f"callers:{backend}",
                "router_ptf",
                "bare_ptf",
                _CALLER_TARGETS[backend],
            )
        )
    for backend in ("asyncio", "uvloop"):
        cells.append(
            Cell(
                f"redis.{backend}",
                f"Router + RedisStore, {CALLERS} callers, RR, throughput",
                "same in memory",
                f"redis:{backend}",
                "redis_rr",
                "memory_rr",
                0.5,
                throughput=True,
            )
        )
    for cap in caps:
        cells.append(
            Cell(
                f"cap.engine_{_cap_name(cap)}",
                f"engine sticky at its cap of {cap:,}, throughput",
                "below the cap",
                f"cap:engine:{cap}",
                "full",
                "below",
                0.8,
                throughput=True,
            )
        )
    cells += [
        Cell(
            f"cap.router_{_cap_name(router_cap)}",
            f"Router sticky at its cap of {router_cap:,}, 1 caller, throughput",
            "below the cap",
            f"cap:router:{router_cap}",
            "full",
            "below",
            0.8,
            throughput=True,
        ),
        Cell(
            "learning.idle",
            "engine PTF, HealthPolicy(), nothing reported",
            "health=None",
            "learning",
            "nothing_reported",
            "health_none",
            1.10,
        ),
        Cell(
            "learning.out",
            f"engine PTF, 1 of 5 backends out ({_OUT}: quota)",
            "nothing reported",
            "learning",
            "one_out",
            "nothing_reported",
            1.25,
        ),
        Cell(
            "learning.report", "Router report round trip", "select round trip", "report", "report", "select"
        ),
        Cell(
            "capacity.least_loaded",
            "engine least_loaded, 30 live sessions",
            "round_robin",
            "capacity",
            "least_loaded",
            "round_robin",
        ),
        Cell(
            "capacity.weighted",
            "engine weighted, 30 live sessions",
            "round_robin",
            "capacity",
            "weighted",
            "round_robin",
        ),
        Cell(
            "capacity.session",
            "router.session() enter+exit, limits (never full)",
            "without limits",
            "sessions",
            "with_limits",
            "without_limits",
        ),
    ]
    return cells


CELLS: Final[tuple[Cell, ...]] = tuple(cells_for())
"""The cells of a full run."""


def probes_for(cells: Iterable[Cell]) -> list[Probe]:
    """The probes ``cells`` need, in order."""
    wanted = list(dict.fromkeys(cell.probe for cell in cells))
    return [_probe(name) for name in wanted]


def _probe(name: str) -> Probe:
    kind, _, rest = name.partition(":")
    if kind == "engine":
        return Probe(name, None, _engine, "engine and bare")
    if kind == "catalogue":
        return Probe(name, None, _catalogue, "500-backend catalogue")
    if kind == "router":
        return Probe(name, "uvloop", _router, "router round trip")
    if kind == "callers":
        return Probe(name, rest, _many_callers, f"{CALLERS} callers on {rest}")
    if kind == "redis":
        return Probe(name, rest, _redis, f"Redis on {rest}")
    if kind == "cap":
        where, _, size = rest.partition(":")
        cap = int(size)
        if where == "engine":
            return Probe(name, None, _engine_cap(cap), f"engine at the cap of {cap:,}")
        return Probe(name, "uvloop", _router_cap(cap), f"router at the cap of {cap:,}")
    if kind == "learning":
        return Probe(name, None, _learning, "learning")
    if kind == "report":
        return Probe(name, "uvloop", _report, "report round trip")
    if kind == "capacity":
        return Probe(name, None, _capacity, "capacity")
    if kind == "sessions":
        return Probe(name, "uvloop", _sessions, "sessions with limits")
    raise ValueError(f"unknown probe {name!r}")


PROBES: Final[tuple[str, ...]] = tuple(dict.fromkeys(cell.probe for cell in CELLS))
"""The probes of a full run, in order."""
