"""The router benchmark: the engine's direct call beside ``Router.select_backend``.

For every policy and every async backend (asyncio, asyncio with uvloop, trio) it measures
the engine called directly (one caller, no event loop involved) and the router with 1, 10,
100 and 1,000 concurrent callers, all in one process. Repetitions are interleaved (each
repetition passes over every cell before the next starts) and medians are reported, since
machines are noisy. ``beamrouting bench`` and ``python -m benchmarks`` both run it.

The two headline ratios:

* **round trip**: the router's median time per call with one caller over the engine's
  median direct call; target at most 3.5x on uvloop. (Medians, because a busy machine's
  preemptions inflate means; the ratio of throughputs is reported beside it.)
* **100 callers**: the router's throughput with 100 concurrent callers as a share of the
  engine's single-caller rate; target at least 40%.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio

from beamrouting import Catalog, Policy, RoutingEngine

from ._argtypes import comma_separated, concurrency_levels, positive_float, positive_int
from ._backends import BACKENDS, MissingBackend, installed, require, run_on
from ._console import Output

__all__ = [
    "BACKENDS",
    "CONCURRENCY",
    "POLICIES",
    "BenchConfig",
    "BenchReport",
    "BenchResult",
    "BenchSetupError",
    "add_bench_arguments",
    "config_from_args",
    "headline_lines",
    "markdown_table",
    "plot_report",
    "print_report",
    "requests_for",
    "run_benchmark",
    "table_rows",
]

POLICIES: Final[tuple[str, ...]] = tuple(p.value for p in Policy)
CONCURRENCY: Final[tuple[int, ...]] = (1, 10, 100, 1000)
ROUND_TRIP_TARGET: Final = 3.5
"""Headline 1: one-caller router round trip over the engine's direct call, at most (uvloop)."""
CONCURRENT_TARGET: Final = 0.40
"""Headline 2: 100-caller router throughput over the engine's single-caller rate, at least."""
REDIS_CONCURRENCY: Final = 100
_MIN_CALLS_PER_CALLER: Final = 20
_WARMUP_CALLS: Final = 300
_STICKY_KEYS: Final = 1024
_LATENCY_SAMPLE: Final = 20_000

ENGINE: Final = "engine"
ANY_BACKEND: Final = "any"
"""The backend column of the engine's rows: its direct call runs outside any event loop."""
ROUTER: Final = "router"
ROUTER_REDIS: Final = "router+redis"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and for how long."""

    policies: tuple[str, ...] = POLICIES
    backends: tuple[str, ...] = BACKENDS
    concurrency: tuple[int, ...] = CONCURRENCY
    calls: int = 20_000
    """Calls per cell and repetition (at least 20 per caller)."""
    duration: float | None = None
    """Seconds per cell and repetition; when set it replaces ``calls``."""
    repeat: int = 3
    """Interleaved repetitions; the medians are reported."""
    catalog: Catalog | None = None
    redis_url: str | None = None

    def cells(self) -> int:
        """How many measurements one run takes (for progress bars)."""
        per_backend = len(self.policies) * (1 + len(self.concurrency))
        redis = sum(1 for b in self.backends if b != "trio") if self.redis_url else 0
        return self.repeat * (len(self.backends) * per_backend + redis)


@dataclass
class BenchResult:
    """One cell: medians over the repetitions."""

    target: str
    """``"engine"`` (direct call), ``"router"`` or ``"router+redis"``."""
    backend: str
    policy: str
    concurrency: int
    throughput: float
    """Calls per second."""
    p50_us: float
    p99_us: float
    ratio: float | None = None
    """Throughput over the engine's (same backend and policy); the router's share of it."""
    samples: list[float] = field(default_factory=list)
    """Throughput of each repetition."""


@dataclass
class BenchReport:
    """A benchmark run: its settings, the environment, every cell and the headline ratios."""

    config: dict[str, Any]
    environment: dict[str, Any]
    results: list[BenchResult]
    headline: dict[str, dict[str, float | None]]
    """Per backend, geometric means over the policies: ``round_trip`` (median one-caller router
    call over the median direct engine call; lower is better), ``round_trip_mean`` (the same
    from throughputs, so from mean times, which preemption on a busy machine inflates) and
    ``concurrent_100`` (100-caller router throughput as a share of the engine's)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data."""
        return {
            "config": self.config,
            "environment": self.environment,
            "headline": self.headline,
            "targets": {"round_trip_max": ROUND_TRIP_TARGET, "concurrent_100_min": CONCURRENT_TARGET},
            "results": [asdict(r) for r in self.results],
        }


# --------------------------------------------------------------------------- requests


def requests_for(policy: str, catalog: Catalog) -> list[dict[str, Any]]:
    """The requests one policy's cells cycle through (valid for ``catalog``)."""
    backends = catalog.backends
    first, last = backends[0], backends[-1]
    second = backends[1] if len(backends) > 1 else first
    if policy == Policy.EXPLICIT:
        return [{"policy": "explicit", "backend": first}]
    if policy == Policy.STICKY:
        return [{"policy": "sticky", "affinity_key": f"workspace-{i}"} for i in range(_STICKY_KEYS)]
    if policy == Policy.ROUND_ROBIN:
        return [{"policy": "round_robin"}]
    if policy == Policy.FAILOVER:
        return [{"policy": "failover", "last_backend": first}]
    if policy == Policy.CAPABILITY_FIRST:
        caps = [c for c in catalog.capabilities if c in catalog.supported(first)][:2]
        return [{"policy": "capability_first", "capabilities": caps}]
    if policy == Policy.PREFERRED_THEN_FALLBACK:
        return [{"preferred_backends": [last], "fallback_backends": [second]}]
    raise ValueError(f"unknown policy {policy!r}")


# --------------------------------------------------------------------------- measuring


def _percentile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class _Sample:
    throughput: float
    p50: float
    p99: float


def _measure_engine(engine: RoutingEngine, requests: list[dict[str, Any]], config: BenchConfig) -> _Sample:
    select = engine.select_backend
    m = len(requests)
    for j in range(_WARMUP_CALLS):
        select(requests[j % m])
    clock = time.perf_counter
    gc.collect()
    # Throughput: a tight loop, no timer per call.
    if config.duration is not None:
        deadline = clock() + config.duration
        n = 0
        start = clock()
        while True:
            for j in range(256):
                select(requests[(n + j) % m])
            n += 256
            if clock() >= deadline:
                break
        elapsed = clock() - start
    else:
        n = config.calls
        start = clock()
        for j in range(n):
            select(requests[j % m])
        elapsed = clock() - start
    # Latency: each call timed, separately so the timers do not slow the throughput loop.
    lat: list[float] = []
    append = lat.append
    for j in range(min(n, _LATENCY_SAMPLE)):
        t = clock()
        select(requests[j % m])
        append(clock() - t)
    lat.sort()
    return _Sample(n / elapsed, _percentile(lat, 0.5), _percentile(lat, 0.99))


async def _measure_router(
    router: Any, requests: list[dict[str, Any]], concurrency: int, config: BenchConfig
) -> _Sample:
    select = router.select_backend
    m = len(requests)
    for j in range(_WARMUP_CALLS):
        await select(requests[j % m])
    clock = time.perf_counter
    lat: list[float] = []
    append = lat.append
    go = anyio.Event()
    per_caller = max(config.calls // concurrency, _MIN_CALLS_PER_CALLER)
    deadline = math.inf
    counts = [0] * concurrency

    async def caller(index: int) -> None:
        await go.wait()
        offset = index * 7
        if config.duration is None:
            for j in range(per_caller):
                t = clock()
                await select(requests[(offset + j) % m])
                append(clock() - t)
            counts[index] = per_caller
        else:
            j = 0
            while True:
                t = clock()
                await select(requests[(offset + j) % m])
                done = clock()
                append(done - t)
                j += 1
                if done >= deadline:
                    break
            counts[index] = j

    gc.collect()
    async with anyio.create_task_group() as tg:
        for index in range(concurrency):
            tg.start_soon(caller, index)
        await anyio.lowlevel.checkpoint()
        start = clock()
        if config.duration is not None:
            deadline = start + config.duration
        go.set()
    elapsed = clock() - start
    lat.sort()
    return _Sample(sum(counts) / elapsed, _percentile(lat, 0.5), _percentile(lat, 0.99))


_Key = tuple[str, str, str, int]
"""``(target, backend, policy, concurrency)``."""


async def _round(
    backend: str,
    config: BenchConfig,
    catalog: Catalog,
    samples: dict[_Key, list[_Sample]],
    step: Callable[[str], None],
) -> None:
    from beamrouting import Router

    engine = RoutingEngine(catalog)
    async with Router(catalog) as router:
        for policy in config.policies:
            requests = requests_for(policy, catalog)
            # The engine's direct call involves no event loop: its samples from every backend's
            # rounds are pooled into one baseline per policy (more samples, less noise).
            samples.setdefault((ENGINE, ANY_BACKEND, policy, 1), []).append(
                _measure_engine(engine, requests, config)
            )
            step(f"{backend} {policy} engine")
            for concurrency in config.concurrency:
                sample = await _measure_router(router, requests, concurrency, config)
                samples.setdefault((ROUTER, backend, policy, concurrency), []).append(sample)
                step(f"{backend} {policy} x{concurrency}")
    if config.redis_url and backend != "trio":
        from beamrouting import RedisStore

        prefix = f"beamrouting-bench:{os.getpid()}:{time.time_ns()}:"
        store = RedisStore(config.redis_url, prefix=prefix, catalog=catalog)
        async with Router(store=store) as router:
            requests = requests_for(Policy.ROUND_ROBIN, catalog)
            sample = await _measure_router(router, requests, REDIS_CONCURRENCY, config)
            samples.setdefault(
                (ROUTER_REDIS, backend, Policy.ROUND_ROBIN.value, REDIS_CONCURRENCY), []
            ).append(sample)
            await router.clear()
        step(f"{backend} round_robin x{REDIS_CONCURRENCY} redis")


def _environment() -> dict[str, Any]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for dist in ("beamrouting", "anyio", "msgspec", "uvloop", "trio", "redis"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    if versions["beamrouting"] is None:  # running from a source tree that is not installed
        from beamrouting import __version__

        versions["beamrouting"] = __version__
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpus": os.cpu_count(),
        "versions": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _geomean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


def run_benchmark(config: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Run every cell ``config.repeat`` times, interleaved, and report the medians.

    ``progress`` is called once per finished cell with its description (``config.cells()``
    calls in all).
    """
    for backend in config.backends:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    for policy in config.policies:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r} (choose from {', '.join(POLICIES)})")
    if any(c < 1 for c in config.concurrency):
        raise ValueError("concurrency must be >= 1")
    catalog = config.catalog if config.catalog is not None else Catalog.default()
    samples: dict[_Key, list[_Sample]] = {}
    step = progress if progress is not None else (lambda _description: None)
    for _ in range(config.repeat):
        for backend in config.backends:
            run_on(backend, _round, backend, config, catalog, samples, step)
    results: list[BenchResult] = []
    engine_rate: dict[str, float] = {}
    engine_p50: dict[str, float] = {}
    for (target, backend, policy, concurrency), runs in samples.items():
        result = BenchResult(
            target,
            backend,
            policy,
            concurrency,
            statistics.median(s.throughput for s in runs),
            statistics.median(s.p50 for s in runs) * 1e6,
            statistics.median(s.p99 for s in runs) * 1e6,
            samples=[round(s.throughput, 1) for s in runs],
        )
        if target == ENGINE:
            engine_rate[policy] = result.throughput
            engine_p50[policy] = result.p50_us
            result.ratio = 1.0
        results.append(result)
    for result in results:
        base = engine_rate.get(result.policy)
        if result.target != ENGINE and base:
            result.ratio = result.throughput / base
    headline: dict[str, dict[str, float | None]] = {}
    for backend in config.backends:
        single = [r for r in results if r.target == ROUTER and r.backend == backend and r.concurrency == 1]
        one = [r.p50_us / engine_p50[r.policy] for r in single if engine_p50.get(r.policy)]
        one_mean = [engine_rate[r.policy] / r.throughput for r in single if r.policy in engine_rate]
        hundred = [
            r.ratio
            for r in results
            if r.target == ROUTER and r.backend == backend and r.concurrency == 100 and r.ratio
        ]
        headline[backend] = {
            "round_trip": _geomean(one),
            "round_trip_mean": _geomean(one_mean),
            "concurrent_100": _geomean(hundred),
        }
    config_dict = {
        "policies": list(config.policies),
        "backends": list(config.backends),
        "concurrency": list(config.concurrency),
        "calls": config.calls,
        "duration": config.duration,
        "repeat": config.repeat,
        "catalog": None if config.catalog is None else list(catalog.backends),
        "redis": config.redis_url is not None,
    }
    return BenchReport(config_dict, _environment(), results, headline)


# --------------------------------------------------------------------------- reporting

TABLE_HEADERS: Final = ("policy", "backend", "callers", "target", "calls/s", "p50 µs", "p99 µs", "vs engine")


def _fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def table_rows(report: BenchReport) -> list[tuple[str, ...]]:
    """The result table, one row per cell: per policy the engine's direct call, then each backend."""
    order = {ENGINE: 0, ROUTER: 1, ROUTER_REDIS: 2}
    backend_order = {b: i for i, b in enumerate((ANY_BACKEND, *BACKENDS))}
    policy_order = {p: i for i, p in enumerate(POLICIES)}
    rows: list[tuple[str, ...]] = []
    for r in sorted(
        report.results,
        key=lambda r: (
            policy_order.get(r.policy, 9),
            backend_order.get(r.backend, 9),
            order[r.target],
            r.concurrency,
        ),
    ):
        rows.append(
            (
                r.policy,
                r.backend,
                "direct" if r.target == ENGINE else str(r.concurrency),
                r.target,
                f"{r.throughput:,.0f}",
                f"{r.p50_us:.1f}",
                f"{r.p99_us:.1f}",
                _fmt_ratio(r.ratio),
            )
        )
    return rows


def headline_lines(report: BenchReport) -> list[str]:
    """The two headline ratios per backend, with their targets."""
    lines = []
    for backend, values in report.headline.items():
        rt, cc = values.get("round_trip"), values.get("concurrent_100")
        if rt is not None:
            verdict = "met" if rt <= ROUND_TRIP_TARGET else "not met"
            mean = values.get("round_trip_mean")
            beside = "" if mean is None else f"; from throughputs {mean:.2f}x"
            lines.append(
                f"{backend:8} 1-caller router round trip vs engine direct call: {rt:5.2f}x "
                f"(target <= {ROUND_TRIP_TARGET}x: {verdict}{beside})"
            )
        if cc is not None:
            verdict = "met" if cc >= CONCURRENT_TARGET else "not met"
            lines.append(
                f"{backend:8} 100-caller router throughput vs engine single caller: {cc:5.0%} "
                f"(target >= {CONCURRENT_TARGET:.0%}: {verdict})"
            )
    redis = [r for r in report.results if r.target == ROUTER_REDIS]
    for r in redis:
        memory = next(
            (
                m
                for m in report.results
                if m.target == ROUTER
                and m.backend == r.backend
                and m.policy == r.policy
                and m.concurrency == r.concurrency
            ),
            None,
        )
        beside = (
            ""
            if memory is None
            else f" (in memory: {memory.throughput:,.0f} calls/s, p99 {memory.p99_us:.0f} µs)"
        )
        lines.append(
            f"{r.backend:8} redis: {r.concurrency} round-robin callers {r.throughput:,.0f} calls/s, p99 {r.p99_us:.0f} µs{beside}"
        )
    return lines


def print_report(out: Output, report: BenchReport) -> None:
    """Print the result table and the headline ratios."""
    out.table(
        TABLE_HEADERS,
        table_rows(report),
        title="Engine direct call vs Router.select_backend",
        right=(2, 4, 5, 6, 7),
    )
    out.heading("Headline ratios")
    for line in headline_lines(report):
        out.line(line, style="bold")


def markdown_table(report: BenchReport) -> str:
    """The results as a markdown document: environment, headline ratios and the full table."""
    env = report.environment
    cfg = report.config
    out = [
        "# beamrouting benchmark",
        "",
        f"Python {env['python']} on {env['platform']} ({env['cpus']} CPUs), {env['date']}.",
        f"{cfg['repeat']} interleaved repetitions, medians reported; "
        + (f"{cfg['duration']} s per cell." if cfg["duration"] else f"{cfg['calls']:,} calls per cell."),
        "",
        "## Headline ratios",
        "",
        "| backend | 1-caller router round trip vs engine direct call (medians) | same, from throughputs "
        "| 100-caller router throughput vs engine single caller |",
        "|---|---|---|---|",
    ]

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    for backend, values in report.headline.items():
        out.append(
            f"| {backend} | {fmt(values.get('round_trip'), '.2f')}x (target ≤ {ROUND_TRIP_TARGET}x) "
            f"| {fmt(values.get('round_trip_mean'), '.2f')}x "
            f"| {fmt(values.get('concurrent_100'), '.0%')} (target ≥ {CONCURRENT_TARGET:.0%}) |"
        )
    out += [
        "",
        "The engine's direct call runs outside any event loop, so its rows pool the samples taken",
        "in every backend's rounds (backend `any`); `vs engine` is throughput relative to it.",
    ]
    out += [
        "",
        "## All cells",
        "",
        "| " + " | ".join(TABLE_HEADERS) + " |",
        "|" + "---|" * len(TABLE_HEADERS),
    ]
    for row in table_rows(report):
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    return "\n".join(out)


def plot_report(report: BenchReport, path: str | Path) -> None:
    """Draw throughput and p99 latency against concurrency (needs matplotlib, the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
    for backend in report.config["backends"]:
        router = [r for r in report.results if r.target == ROUTER and r.backend == backend]
        levels = sorted({r.concurrency for r in router})
        rates = [_geomean([r.throughput for r in router if r.concurrency == c]) or 0.0 for c in levels]
        p99s = [_geomean([r.p99_us for r in router if r.concurrency == c]) or 0.0 for c in levels]
        (line,) = ax_rate.plot(levels, rates, marker="o", label=f"router, {backend}")
        ax_p99.plot(levels, p99s, marker="o", color=line.get_color(), label=f"router, {backend}")
        for r in report.results:
            if r.target == ROUTER_REDIS and r.backend == backend:
                for ax, value in ((ax_rate, r.throughput), (ax_p99, r.p99_us)):
                    ax.plot(
                        [r.concurrency],
                        [value],
                        marker="s",
                        color=line.get_color(),
                        linestyle="none",
                        label=f"redis round_robin, {backend}",
                    )
    engine = _geomean([r.throughput for r in report.results if r.target == ENGINE])
    if engine:
        ax_rate.axhline(engine, linestyle="--", color="black", alpha=0.6, label="engine direct call")
    ax_rate.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent callers",
        ylabel="calls per second",
        title="Throughput (geometric mean over policies)",
    )
    ax_p99.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent callers",
        ylabel="p99 latency (µs)",
        title="p99 latency",
    )
    ax_rate.legend(fontsize="small")
    ax_p99.legend(fontsize="small")
    ax_rate.grid(True, which="both", alpha=0.3)
    ax_p99.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- command-line options


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by ``beamrouting bench`` and ``python -m benchmarks``)."""
    parser.add_argument(
        "--quick", action="store_true", help="a short run: 2,000 calls per cell, one repetition"
    )
    parser.add_argument(
        "--policies",
        type=comma_separated(POLICIES, "policy"),
        metavar="P,...",
        help=f"policies to measure (default: all: {','.join(POLICIES)})",
    )
    parser.add_argument(
        "--backends",
        type=comma_separated(BACKENDS, "backend"),
        metavar="B,...",
        help="async backends (default: asyncio,uvloop,trio)",
    )
    parser.add_argument(
        "--concurrency",
        type=concurrency_levels,
        metavar="N,...",
        help="concurrent callers (default: 1,10,100,1000)",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--calls", type=positive_int, metavar="N", help="calls per cell and repetition (default: 20000)"
    )
    size.add_argument(
        "--duration", type=positive_float, metavar="SECONDS", help="seconds per cell and repetition"
    )
    parser.add_argument(
        "--repeat", type=positive_int, metavar="N", help="interleaved repetitions (default: 3)"
    )
    parser.add_argument("--json", dest="json_path", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--plot", dest="plot_path", metavar="FILE", help="draw a PNG chart (needs the plot extra)"
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help=f"also measure {REDIS_CONCURRENCY} round-robin callers on a RedisStore at URL",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class BenchSetupError(ValueError):
    """The benchmark cannot run as asked (a backend not installed, an output that cannot be written)."""


def _check_output(option: str, path: str | None) -> None:
    if path is None:
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise BenchSetupError(f"cannot write {option} {path!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise BenchSetupError(f"cannot write {option} {path!r}: the folder {str(folder)!r} is not writable")


def config_from_args(args: argparse.Namespace, catalog: Catalog | None = None) -> BenchConfig:
    """A :class:`BenchConfig` from parsed :func:`add_bench_arguments` options.

    Checked before anything runs: a backend asked for by name must be installed (without
    ``--backends`` the installed ones are measured), and the ``--json`` and ``--plot``
    files must be writable. Raises :class:`BenchSetupError` saying what to do otherwise.
    """
    defaults = BenchConfig()
    quick = bool(args.quick)
    if args.backends is None:
        backends = tuple(b for b in defaults.backends if installed(b))
    else:
        try:
            backends = tuple(require(b) for b in args.backends)
        except MissingBackend as exc:
            raise BenchSetupError(str(exc)) from None
    _check_output("--json", args.json_path)
    _check_output("--plot", args.plot_path)
    return BenchConfig(
        policies=args.policies or defaults.policies,
        backends=backends,
        concurrency=args.concurrency or defaults.concurrency,
        calls=args.calls or (2_000 if quick else defaults.calls),
        duration=args.duration,
        repeat=args.repeat or (1 if quick else defaults.repeat),
        catalog=catalog,
        redis_url=args.redis,
    )
