"""``beamrouting demo``: an orchestrator starting tens of thousands of agent sessions.

A few hundred session-start coroutines share one :class:`~beamrouting.Router` and route a
realistic mix: sticky by workspace, round robin, capability first, explicit, preferred
then fallback, some under a restrictive policy profile, and a failover whenever a session
fails to start on its backend. Midway one backend goes ``down`` (the health every request
carries says so) and later recovers, and the routing-table actor is crashed and restarted
by its supervisor. The run then checks its own invariants:

* every session was routed or failed with a typed error;
* no decision chose a backend its request marked down;
* every sticky workspace stayed on one backend, except those the outage moved off it;
* the crashed actor was restarted, and routing went on after it with its state intact;
* every session was unregistered at the end.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio

from beamrouting import ActorCrashed, BeamRoutingError, Catalog, RouteDecision, RoutingError

from ._backends import BACKENDS, run_on

__all__ = ["DemoConfig", "DemoReport", "run_demo"]

PROFILE_ID: Final = "restricted"
"""The policy profile some sessions run under: it denies the catalogue's last backend."""

_BOUND: Final = "selected backend and bound sticky affinity"
_MIX: Final = (
    ("sticky", 40),
    ("round_robin", 18),
    ("capability_first", 14),
    ("explicit", 10),
    ("preferred_then_fallback", 12),
    ("restricted", 6),
)
_OUTAGE_START: Final = 0.25
_OUTAGE_END: Final = 0.55
_DEGRADED_START: Final = 0.10
_DEGRADED_END: Final = 0.85
_CRASH_AT: Final = 0.70
_ATTEMPTS: Final = 3
"""Tries per routing call; only ``ActorCrashed`` (a restarted actor) is retried."""


@dataclass(frozen=True)
class DemoConfig:
    """The size and shape of a demo run."""

    sessions: int = 30_000
    concurrency: int = 300
    seed: int = 7
    backend: str = "asyncio"
    workspaces: int = 0
    """Distinct sticky workspaces (0: one per 40 sessions, at least 10)."""
    failure_rate: float = 0.03
    """Share of sessions whose first start fails, so they fail over."""
    catalog: Catalog | None = None
    redis_url: str | None = None


@dataclass
class _Plan:
    kind: str
    request: dict[str, Any]
    workspace: str | None
    start_fails: bool


@dataclass
class Invariant:
    """One self-check of the run."""

    name: str
    ok: bool
    detail: str


@dataclass
class DemoReport:
    """What a demo run did and whether its invariants held."""

    config: dict[str, Any]
    sessions: int
    routed: int
    failed: int
    failovers: int
    by_policy_backend: dict[str, dict[str, int]]
    """Decisions per request kind (policy) and backend, failovers included as ``failover``."""
    errors: dict[str, int]
    """Errors by code (``actor_crashed`` are retried and not failures)."""
    restarts: dict[str, int]
    elapsed: float
    routing_calls: int
    p50_us: float
    p99_us: float
    sticky: dict[str, int]
    invariants: list[Invariant] = field(default_factory=list)
    outage_backend: str | None = None
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every invariant held."""
        return all(inv.ok for inv in self.invariants)

    @property
    def sessions_per_second(self) -> float:
        """Sessions routed or failed per second of the run."""
        return self.sessions / self.elapsed if self.elapsed > 0 else math.inf

    @property
    def calls_per_second(self) -> float:
        """Routing calls (first routes, retries and failovers) per second."""
        return self.routing_calls / self.elapsed if self.elapsed > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible data."""
        return {
            "ok": self.ok,
            "config": self.config,
            "sessions": self.sessions,
            "routed": self.routed,
            "failed": self.failed,
            "failovers": self.failovers,
            "by_policy_backend": self.by_policy_backend,
            "errors": self.errors,
            "restarts": self.restarts,
            "elapsed_s": round(self.elapsed, 4),
            "sessions_per_second": round(self.sessions_per_second, 1),
            "routing_calls": self.routing_calls,
            "calls_per_second": round(self.calls_per_second, 1),
            "p50_us": round(self.p50_us, 1),
            "p99_us": round(self.p99_us, 1),
            "sticky": self.sticky,
            "outage_backend": self.outage_backend,
            "events": self.events,
            "invariants": [{"name": i.name, "ok": i.ok, "detail": i.detail} for i in self.invariants],
        }


def _plans(config: DemoConfig, catalog: Catalog) -> list[_Plan]:
    rng = random.Random(config.seed)
    backends = catalog.backends
    aliases = {b: catalog.aliases_of(b) for b in backends}
    capabilities = catalog.capabilities
    workspaces = config.workspaces or max(10, config.sessions // 40)
    kinds = [k for k, _ in _MIX]
    weights = [w for _, w in _MIX]
    plans = []
    for _ in range(config.sessions):
        kind = rng.choices(kinds, weights)[0]
        workspace = None
        request: dict[str, Any]
        if kind == "sticky":
            workspace = f"workspace-{rng.randrange(workspaces):05d}"
            request = {"policy": "sticky", "affinity_key": workspace}
        elif kind == "round_robin":
            request = {"policy": "round_robin"}
        elif kind == "capability_first":
            caps = rng.sample(capabilities, k=min(len(capabilities), rng.randint(1, 3)))
            request = {"policy": "capability_first", "capabilities": caps}
        elif kind == "explicit":
            backend = rng.choice(backends)
            spellings = (backend, *aliases[backend])
            request = {"backend": rng.choice(spellings)}
        elif kind == "preferred_then_fallback":
            request = {
                "preferred_backends": [rng.choice(backends)],
                "fallback_backends": rng.sample(backends, k=min(2, len(backends))),
                "fallback_policy": rng.choice(("available", "available", "none")),
            }
        else:
            request = {"policy": "round_robin", "policy_profile_id": PROFILE_ID}
        plans.append(_Plan(kind, request, workspace, rng.random() < config.failure_rate))
    return plans


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class _Run:
    """The shared state of one run (one event loop, so plain attributes are safe)."""

    def __init__(self, config: DemoConfig, catalog: Catalog, plans: list[_Plan]) -> None:
        self.config = config
        self.catalog = catalog
        self.plans = plans
        backends = catalog.backends
        self.outage_backend = backends[1] if len(backends) > 1 else backends[0]
        self.degraded_backend = backends[-1] if len(backends) > 2 else None
        n = len(plans)
        self.marks = {
            "degraded": int(n * _DEGRADED_START),
            "outage": int(n * _OUTAGE_START),
            "crash": int(n * _CRASH_AT),
            "recovery": int(n * _OUTAGE_END),
            "healthy": int(n * _DEGRADED_END),
        }
        self.health: dict[str, str] = {}
        self.next_index = 0
        self.done = 0
        self.routed = 0
        self.failed = 0
        self.failovers = 0
        self.routing_calls = 0
        self.latencies: list[float] = []
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.sticky: dict[str, list[tuple[str, bool, bool]]] = defaultdict(list)
        """workspace -> [(backend, bound (not reused), outage backend down in the request)]."""
        self.down_violations: list[str] = []
        self.untyped: list[str] = []
        self.events: list[str] = []
        self.phase = "routing sessions"
        self.crash_done = False
        self.routed_after_crash = 0
        self.start = 0.0

    def event(self, text: str) -> None:
        self.events.append(f"{time.perf_counter() - self.start:7.3f}s  session {self.next_index:>7,}: {text}")
        self.phase = text


async def _crash(router: Any, run: _Run) -> None:
    from beamrouting.testing import crash_actor

    crash_actor(router, "routing_table")
    run.event("routing_table actor told to crash on its next message")


def _check_decision(run: _Run, decision: RouteDecision, health: dict[str, str], label: str) -> None:
    if health.get(decision.backend) in ("down", "unhealthy"):
        run.down_violations.append(
            f"{label} chose {decision.backend}, which its request marked {health[decision.backend]}"
        )


async def _session(router: Any, run: _Run, index: int) -> None:
    plan = run.plans[index]
    marks = run.marks
    if index == marks["degraded"] and run.degraded_backend is not None:
        run.health = {**run.health, run.degraded_backend: "degraded"}
        run.event(f"{run.degraded_backend} is degraded (still eligible)")
    if index == marks["outage"]:
        run.health = {**run.health, run.outage_backend: "down"}
        run.event(f"{run.outage_backend} is down")
    if index == marks["recovery"]:
        run.health = {b: h for b, h in run.health.items() if b != run.outage_backend}
        run.event(f"{run.outage_backend} recovered")
    if index == marks["healthy"]:
        run.health = {}
        run.event("every backend healthy")
    if index == marks["crash"]:
        await _crash(router, run)
    health = run.health
    request = {**plan.request, "health": health}
    outage_down = health.get(run.outage_backend) == "down"
    clock = time.perf_counter
    routed = False
    for _attempt in range(_ATTEMPTS):
        run.routing_calls += 1
        started = clock()
        try:
            async with router.session(request) as session:
                run.latencies.append(clock() - started)
                _record_session(run, plan, index, session.decision, health, outage_down)
                routed = True
                if plan.start_fails:
                    await _fail_over(router, run, index, session.id)
                await anyio.lowlevel.checkpoint()  # the session runs
            return
        except ActorCrashed:
            _note_crash(run)
            if not routed:
                continue
        except BeamRoutingError as exc:
            _count_error(run, exc)
        except Exception as exc:
            run.untyped.append(f"session {index}: {type(exc).__name__}: {exc}")
        break
    # Once routed, a later error (say, while unregistering) is counted above but the
    # session keeps its one outcome.
    if not routed:
        run.failed += 1


def _record_session(
    run: _Run, plan: _Plan, index: int, decision: RouteDecision, health: dict[str, str], outage_down: bool
) -> None:
    _check_decision(run, decision, health, f"session {index}")
    run.decisions[plan.kind, decision.backend] += 1
    run.routed += 1
    if run.crash_done:
        run.routed_after_crash += 1
    if plan.workspace is not None:
        run.sticky[plan.workspace].append((decision.backend, decision.reasons[0] == _BOUND, outage_down))


async def _fail_over(router: Any, run: _Run, index: int, session_id: str) -> None:
    """The agent did not start on the chosen backend: route the session again, away from it.

    The session is already counted as routed, so a crash here retries this call only; a
    failed failover is an error of its own, never a second outcome for the session.
    """
    for _attempt in range(_ATTEMPTS):
        now = run.health
        run.routing_calls += 1
        try:
            again = await router.select_backend(session_id, {"policy": "failover", "health": now})
        except ActorCrashed:
            _note_crash(run)
            continue
        except BeamRoutingError as exc:
            _count_error(run, exc)
            return
        run.failovers += 1
        _check_decision(run, again, now, f"failover of session {index}")
        run.decisions["failover", again.backend] += 1
        return


def _note_crash(run: _Run) -> None:
    run.errors["actor_crashed"] += 1  # the supervisor restarted it: retry
    if not run.crash_done:
        run.crash_done = True
        run.event("routing_table crashed and was restarted; the caller in hand retries")


def _count_error(run: _Run, exc: BeamRoutingError) -> None:
    run.errors[exc.code if isinstance(exc, RoutingError) else type(exc).__name__] += 1


def _sticky_check(run: _Run) -> tuple[dict[str, int], list[str]]:
    outage = run.outage_backend
    consistent = moved = 0
    violations = []
    for workspace, records in sorted(run.sticky.items()):
        backends = {backend for backend, _, _ in records}
        bound_healthy = sum(1 for _, bound, down in records if bound and not down)
        bound_outage = sum(1 for _, bound, down in records if bound and down)
        if len(backends) == 1 and bound_healthy <= 1:
            consistent += 1
        elif len(backends) == 2 and outage in backends and bound_outage >= 1 and bound_healthy <= 1:
            moved += 1
        else:
            violations.append(
                f"{workspace}: backends {sorted(backends)}, bound {bound_healthy} time(s) without an outage"
            )
    return {"workspaces": len(run.sticky), "consistent": consistent, "moved_by_outage": moved}, violations


async def _main(config: DemoConfig, catalog: Catalog, tick: Callable[[int, str], None] | None) -> DemoReport:
    from beamrouting import Router

    plans = _plans(config, catalog)
    run = _Run(config, catalog, plans)
    store = None
    if config.redis_url is not None:
        from beamrouting import RedisStore

        prefix = f"beamrouting-demo:{config.seed}:{time.time_ns()}:"
        store = RedisStore(config.redis_url, prefix=prefix, catalog=catalog)
    last = catalog.backends[-1]
    restarts: dict[str, int] = {}
    remaining: list[Any] = []
    router = Router(catalog) if store is None else Router(store=store)
    async with router:
        await router.put_policy_profile(
            PROFILE_ID,
            {
                "default": "allow",
                "rules": [
                    {
                        "action": "backend",
                        "decision": "deny",
                        "match": ["eq", "backend", last],
                        "reason": f"{last} is not allowed here",
                    }
                ],
            },
        )
        run.start = time.perf_counter()

        async def worker() -> None:
            total = len(plans)
            while run.next_index < total:
                index = run.next_index
                run.next_index += 1
                await _session(router, run, index)
                run.done += 1

        async def ticker() -> None:
            assert tick is not None
            while run.done < len(plans):
                tick(run.done, run.phase)
                await anyio.sleep(0.05)
            tick(run.done, run.phase)

        async with anyio.create_task_group() as outer:
            if tick is not None:
                outer.start_soon(ticker)
            async with anyio.create_task_group() as tg:
                for _ in range(max(1, config.concurrency)):
                    tg.start_soon(worker)
        elapsed = time.perf_counter() - run.start
        stats = await router.statistics()
        restarts = _restart_counts(stats)
        remaining = list(await router.sessions())
        if store is not None:
            await router.clear()
    latencies = sorted(run.latencies)
    sticky, violations = _sticky_check(run)
    restart_total = sum(restarts.values())
    by_policy: dict[str, dict[str, int]] = defaultdict(dict)
    for (kind, backend), count in sorted(run.decisions.items()):
        by_policy[kind][backend] = count
    invariants = [
        Invariant(
            "every session routed or failed with a typed error",
            run.routed + run.failed == len(plans) and not run.untyped,
            f"{run.routed:,} routed + {run.failed:,} failed of {len(plans):,}"
            + (f"; untyped: {run.untyped[:3]}" if run.untyped else ""),
        ),
        Invariant(
            "no backend chosen while its request marked it down",
            not run.down_violations,
            "none" if not run.down_violations else "; ".join(run.down_violations[:3]),
        ),
        Invariant(
            "sticky workspaces stayed on one backend (outage moves aside)",
            not violations,
            f"{sticky['consistent']:,} consistent, {sticky['moved_by_outage']:,} moved by the outage"
            + (f"; violations: {violations[:3]}" if violations else ""),
        ),
        Invariant(
            "the crashed actor was restarted and routing recovered",
            restarts.get("routing_table", restart_total) >= 1
            and run.crash_done
            and run.routed_after_crash > 0,
            f"{restart_total} restart(s), {run.routed_after_crash:,} sessions routed after it",
        ),
        Invariant(
            "every session was unregistered",
            not remaining,
            f"{len(remaining)} still registered",
        ),
    ]
    return DemoReport(
        config={
            "sessions": config.sessions,
            "concurrency": config.concurrency,
            "seed": config.seed,
            "backend": config.backend,
            "catalog": list(catalog.backends),
            "redis": config.redis_url is not None,
        },
        sessions=len(plans),
        routed=run.routed,
        failed=run.failed,
        failovers=run.failovers,
        by_policy_backend=dict(by_policy),
        errors=dict(run.errors.most_common()),
        restarts=restarts,
        elapsed=elapsed,
        routing_calls=run.routing_calls,
        p50_us=_percentile(latencies, 0.5) * 1e6,
        p99_us=_percentile(latencies, 0.99) * 1e6,
        sticky={**sticky, "violations": len(violations)},
        invariants=invariants,
        outage_backend=run.outage_backend,
        events=run.events,
    )


def _restart_counts(stats: Any) -> dict[str, int]:
    """Restarts per actor from ``Router.statistics()``."""
    restarts = getattr(stats, "restarts", None)
    if isinstance(restarts, dict):
        return {str(name): int(count) for name, count in restarts.items()}
    actors = getattr(stats, "actors", None) or {}
    return {str(name): int(actor.restarts) for name, actor in actors.items()}


def run_demo(config: DemoConfig, tick: Callable[[int, str], None] | None = None) -> DemoReport:
    """Run the demo on ``config.backend``; ``tick(done, phase)`` reports progress now and then."""
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown backend {config.backend!r}")
    if config.sessions < 1 or config.concurrency < 1:
        raise ValueError("sessions and concurrency must be >= 1")
    catalog = config.catalog if config.catalog is not None else Catalog.default()
    return run_on(config.backend, _main, config, catalog, tick)
