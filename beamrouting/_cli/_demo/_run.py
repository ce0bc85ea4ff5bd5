"""The demo run itself: session-start coroutines, the scripted events, a monitor, and the report at the end."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio

from beamrouting import (
    ActorCrashed,
    BeamRoutingError,
    MemoryStore,
    NoBackendAvailable,
    RouteDecision,
    RouterSession,
    RoutingError,
    SubscriptionGap,
)

from .._backends import BACKENDS, run_on
from ._checks import _invariants, _sticky_check, _windows
from ._report import DemoReport
from ._setup import (
    _ATTEMPTS,
    _HEALTHY,
    _IDLE_STEP,
    COOLDOWN,
    PROFILE_ID,
    DemoConfig,
    _percentile,
    _Plan,
    _plans,
    _Setup,
    _setup,
)
from ._state import _Run

_T = TypeVar("_T")


async def _retrying(run: _Run, call: Callable[..., Awaitable[_T]], *args: Any, **kwargs: Any) -> _T:
    """``await call(*args, **kwargs)``, again after an ``ActorCrashed`` (the actor restarted)."""
    for attempt in range(_ATTEMPTS):
        try:
            return await call(*args, **kwargs)
        except ActorCrashed:
            _note_crash(run)
            if attempt + 1 == _ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _crash(router: Any, run: _Run) -> None:
    from beamrouting.testing import crash_actor

    crash_actor(router, "routing_table")
    run.event("routing_table actor told to crash on its next message")


async def _report_quota(router: Any, run: _Run) -> None:
    backend = run.quota_backend
    assert backend is not None
    at = (run.now(), run.next_index)
    try:
        state = await _retrying(run, router.report, backend, "quota", retry_after=COOLDOWN)
    except BeamRoutingError as exc:
        _count_error(run, exc)
        return
    run.event(
        f"{backend} refuses a session for its quota: report(quota, retry_after={COOLDOWN:.0f}), "
        f"reset at {run.rel(state.until)}",
        at,
    )


async def _script(router: Any, run: _Run, index: int) -> None:
    """The scripted events due at session ``index``."""
    marks = run.marks
    if index == marks["degraded"] and run.degraded_backend is not None:
        run.set_health(run.degraded_backend, "degraded")
        run.event(f"{run.degraded_backend} is degraded (still eligible)")
    if index == marks["quota"] and run.quota_backend is not None:
        await _report_quota(router, run)
    if index == marks["outage"]:
        run.set_health(run.outage_backend, "down")
        run.event(f"{run.outage_backend} is down")
    if index == marks["failing"] and run.failing_backend is not None:
        run.broken = run.failing_backend
        run.event(
            f"{run.failing_backend} starts failing until the router ejects it: "
            "sessions started there report failure and fail over"
        )
    if index == marks["recovery"]:
        run.set_health(run.outage_backend, None)
        run.event(f"{run.outage_backend} recovered")
    if index == marks["crash"] and run.crash_enabled:
        await _crash(router, run)
    if index == marks["healthy"]:
        for backend in list(run.health):
            run.set_health(backend, None)
        run.broken = None
        run.event("every backend healthy")


def _check_decision(run: _Run, decision: RouteDecision, health: Mapping[str, str], label: str) -> None:
    if health.get(decision.backend) in ("down", "unhealthy"):
        run.down_violations.append(
            f"{label} chose {decision.backend}, which its request marked {health[decision.backend]}"
        )


def _waits_for_a_slot(error: NoBackendAvailable) -> bool:
    """Whether a backend at its limit took part in ``error`` (so a freed slot may do)."""
    detail = error.detail
    return isinstance(detail, dict) and detail.get("reason") == "at_capacity"


async def _session(router: Any, run: _Run, index: int) -> None:
    """Start session ``index``: route it, let it run while it holds its slot, and end it.

    A start that finds every backend it may use at its limit tries again waiting for a slot
    (``wait=``); one the actor crashed on is retried; any other error is its outcome.
    """
    plan = run.plans[index]
    if index in run.due:
        await _script(router, run, index)
    health = run.health
    request = {**plan.request, "health": health}
    outage_down = health.get(run.outage_backend) == "down"
    clock = time.perf_counter
    routed = False
    wait: float | None = None
    for _attempt in range(_ATTEMPTS):
        run.routing_calls += 1
        started = clock()
        before = run.next_index, run.idle  # the clock before the call, read cheaply
        waiting = wait is not None
        if waiting:
            run.waiting += 1
        try:
            async with (
                router.session(request) if wait is None else router.session(request, wait=wait)
            ) as session:
                if waiting:
                    waiting = False
                    run.waiting -= 1
                run.latencies.append(clock() - started)
                decision = session.decision
                routed = True
                _record_session(run, plan, index, decision, health, outage_down)
                backend = decision.backend
                if backend in run.watched:
                    run.routed_watched.append((run.at(*before), run.now(), backend))
                if backend == run.broken or plan.start_fails or backend in run.doubtful:
                    await _started(router, run, plan, index, session, health, outage_down)
                await anyio.lowlevel.checkpoint()  # the session runs, holding its slot
            return
        except NoBackendAvailable as exc:
            if routed or wait is not None or not _waits_for_a_slot(exc):
                _count_error(run, exc)
                break
            run.waited += 1  # every backend it may use is full: wait for a slot
            wait = run.config.wait
            continue
        except ActorCrashed:
            _note_crash(run)
            if not routed:
                continue
        except BeamRoutingError as exc:
            _count_error(run, exc)
        except Exception as exc:
            run.untyped.append(f"session {index}: {type(exc).__name__}: {exc}")
        finally:
            if waiting:
                run.waiting -= 1
        break
    # Once routed, a later error (say, while unregistering) is counted above but the
    # session keeps its one outcome.
    if not routed:
        run.failed += 1


async def _started(
    router: Any,
    run: _Run,
    plan: _Plan,
    index: int,
    session: RouterSession,
    health: Mapping[str, str],
    outage_down: bool,
) -> None:
    """What became of the agent the session started: a failure moves it, a success may be news."""
    backend = session.backend
    if backend == run.broken:
        await _failed_start(run, plan, index, session, health, outage_down)
    elif plan.start_fails:
        await _fail_over(router, run, index, session.id)
    elif backend in run.doubtful:
        # The router holds this backend in doubt (a probe, or a session that started before
        # it was held out): its success is what brings it back.
        try:
            await _retrying(run, session.report, "success")
        except BeamRoutingError as exc:
            _count_error(run, exc)


async def _failed_start(
    run: _Run, plan: _Plan, index: int, session: RouterSession, health: Mapping[str, str], outage_down: bool
) -> None:
    """The agent failed to start on the failing backend: report it and move the session away."""
    failed = session.backend
    before = run.now()
    try:
        again = await _retrying(run, session.failover)
    except BeamRoutingError as exc:  # nowhere to go (an explicit request, or all full): it stays
        _count_error(run, exc)
        return
    run.failed_starts += 1
    run.failovers += 1
    run.routing_calls += 1
    _check_decision(run, again, health, f"failover of session {index} off {failed}")
    run.decisions["failover", again.backend] += 1
    if again.backend in run.watched:
        run.routed_watched.append((before, run.now(), again.backend))
    if plan.workspace is not None:
        run.sticky[plan.workspace].append((again.backend, again.reasons[0], outage_down, True))


def _record_session(
    run: _Run, plan: _Plan, index: int, decision: RouteDecision, health: Mapping[str, str], outage_down: bool
) -> None:
    _check_decision(run, decision, health, f"session {index}")
    run.decisions[plan.kind, decision.backend] += 1
    run.routed += 1
    if run.crash_done:
        run.routed_after_crash += 1
    if plan.workspace is not None:
        run.sticky[plan.workspace].append((decision.backend, decision.reasons[0], outage_down, False))


async def _fail_over(router: Any, run: _Run, index: int, session_id: str) -> None:
    """The agent did not start on the chosen backend: route the session again, away from it.

    The session is already counted as routed, so a crash here retries this call only; a
    failed failover is an error of its own, never a second outcome for the session.
    """
    for _attempt in range(_ATTEMPTS):
        now = run.health
        run.routing_calls += 1
        before = run.now()
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
        if again.backend in run.watched:
            run.routed_watched.append((before, run.now(), again.backend))
        return


def _note_crash(run: _Run) -> None:
    run.errors["actor_crashed"] += 1  # the supervisor restarted it: retry
    if not run.crash_done:
        run.crash_done = True
        run.event("routing_table crashed and was restarted; the caller in hand retries")


def _count_error(run: _Run, exc: BeamRoutingError) -> None:
    run.errors[exc.code if isinstance(exc, RoutingError) else type(exc).__name__] += 1


def _store(run: _Run, setup: _Setup) -> Any:
    """The store the run's router serves: in memory, or Redis under a prefix of its own."""
    options: dict[str, Any] = {
        **setup.store_options,
        "clock": run.now,
        "health": setup.health,
        "limits": setup.limits,
        "weights": setup.weights,
    }
    if setup.redis_url is None:
        return MemoryStore(setup.catalog, **options)
    from beamrouting import RedisStore

    prefix = f"beamrouting-demo:{run.config.seed}:{time.time_ns()}:"
    return RedisStore(setup.redis_url, prefix=prefix, catalog=setup.catalog, **options)


def _restricted_profile(last: str) -> dict[str, Any]:
    return {
        "default": "allow",
        "rules": [
            {
                "action": "backend",
                "decision": "deny",
                "match": ["eq", "backend", last],
                "reason": f"{last} is not allowed here",
            }
        ],
    }


async def _monitor(router: Any, run: _Run) -> None:
    """Sample the backends' live sessions throughout; let demo time pass while everyone only waits.

    Waiting callers sleep until the earliest reset time or until a change wakes them; if
    every starter waits and none of them makes progress, nobody would start a session to
    move the demo's clock on, so the monitor does (and its next sample journals whatever
    that time changed, which wakes the waiters).
    """
    last = (-1, -1)
    stalled = 0
    while not run.finished:
        try:
            states = await router.backend_states()
        except ActorCrashed:
            _note_crash(run)
            continue
        except BeamRoutingError as exc:
            _count_error(run, exc)
            await anyio.sleep(0.01)
            continue
        run.sample(states)
        progress = (run.next_index, run.done)
        if run.waiting and run.waiting >= run.active and progress == last:
            stalled += 1
            if stalled > 1:
                run.idle += _IDLE_STEP
        else:
            stalled = 0
        last = progress


async def _follow_health(events: Any, run: _Run) -> None:
    """Put every ``backend_health`` event on the timeline as it happens."""
    try:
        async for event in events:
            if isinstance(event, SubscriptionGap):
                run.health_missed += event.missed
                continue
            payload = event.payload
            run.transition(
                event.timestamp / 1000,
                str(payload.get("backend")),
                str(payload.get("status")),
                payload.get("until"),
                payload.get("reason"),
            )
    except BeamRoutingError as exc:  # a shared journal that went away
        _count_error(run, exc)


async def _main(config: DemoConfig, setup: _Setup, tick: Callable[[int, str], None] | None) -> DemoReport:
    from beamrouting import Router

    catalog = setup.catalog
    profile_ids = (PROFILE_ID, *(p for p in setup.profiles if p != PROFILE_ID))
    plans = _plans(config, catalog, profile_ids)
    run = _Run(config, catalog, plans, setup)
    store = _store(run, setup)
    restarts: dict[str, int] = {}
    remaining: list[Any] = []
    router = Router(store=store, **setup.router_options)
    async with router:
        for profile_id, profile in setup.profiles.items():
            await router.put_policy_profile(profile_id, profile)
        await router.put_policy_profile(PROFILE_ID, _restricted_profile(catalog.backends[-1]))
        events = router.subscribe(event_type="backend_health")
        await events.start()
        run.start = time.perf_counter()

        async def worker() -> None:
            total = len(plans)
            run.active += 1
            try:
                while run.next_index < total:
                    index = run.next_index
                    run.next_index += 1
                    await _session(router, run, index)
                    run.done += 1
            finally:
                run.active -= 1

        async def ticker() -> None:
            assert tick is not None
            while run.done < len(plans):
                tick(run.done, run.phase)
                await anyio.sleep(0.05)
            tick(run.done, run.phase)

        async with anyio.create_task_group() as outer:
            outer.start_soon(_follow_health, events, run)
            outer.start_soon(_monitor, router, run)
            if tick is not None:
                outer.start_soon(ticker)
            async with anyio.create_task_group() as tg:
                for _ in range(max(1, config.concurrency)):
                    tg.start_soon(worker)
            elapsed = time.perf_counter() - run.start
            run.finished = True
            run.final_states = await _retrying(run, router.backend_states)
            run.sample(run.final_states)
            with anyio.move_on_after(1.0):  # a shared journal: the last events may still be on their way
                while not _settled(run):
                    await anyio.sleep(0.01)
            events.close()
        stats = await router.statistics()
        restarts = _restart_counts(stats)
        remaining = list(await router.sessions())
        if setup.redis_url is not None:
            await router.clear()
    return _report(run, restarts, len(remaining), elapsed)


def _settled(run: _Run) -> bool:
    """Whether the events told every backend's final status."""
    return all(run.status.get(s.backend, _HEALTHY) == s.status.value for s in run.final_states)


def _history(run: _Run, backend: str) -> str:
    """What happened to ``backend``: request health and learned status, with demo times."""
    parts = []
    for health, start, end in run.health_spans.get(backend, []):
        parts.append(f"{health} (requests) at {run.rel(start)}" + (f" until {run.rel(end)}" if end else ""))
    for when, name, status, until, _ in sorted(run.transitions):
        if name != backend:
            continue
        if status == "cooling":
            parts.append(f"cooled down at {run.rel(when)} until {run.rel(until)}")
        elif status == "ejected":
            parts.append(f"ejected at {run.rel(when)} until {run.rel(until)}")
        elif status == "probing":
            parts.append(f"probed at {run.rel(when)}")
        else:
            parts.append(f"healthy at {run.rel(when)}")
    return ", ".join(parts) or "-"


def _report(run: _Run, restarts: dict[str, int], remaining: int, elapsed: float) -> DemoReport:
    config, catalog, setup = run.config, run.catalog, run.setup
    latencies = sorted(run.latencies)
    sticky, violations = _sticky_check(run)
    by_policy: dict[str, dict[str, int]] = defaultdict(dict)
    decided: Counter[str] = Counter()
    for (kind, backend), count in sorted(run.decisions.items()):
        by_policy[kind][backend] = count
        decided[backend] += count
    final = {state.backend: state.status.value for state in run.final_states}
    probes = 0
    for backend in run.watched:
        for status, start, end, _ in _windows(run.transitions, backend):
            if status == "probing":
                probes += sum(
                    1 for r in run.routed_watched if r[2] == backend and r[1] >= start and r[0] < end
                )
    health = setup.health
    return DemoReport(
        config={
            "sessions": config.sessions,
            "concurrency": config.concurrency,
            "seed": config.seed,
            "backend": config.backend,
            "catalog": list(catalog.backends),
            "redis": setup.redis_url is not None,
            "wait": config.wait,
            "config": None if config.config is None else (config.config.source or "(built in code)"),
        },
        sessions=len(run.plans),
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
        invariants=_invariants(run, restarts, remaining),
        outage_backend=run.outage_backend,
        events=[
            f"{run.rel(when):>8}  session {index:>7,}: {text}"
            for when, index, text in sorted(run.timeline, key=lambda e: e[0])
        ],
        limits=dict(setup.limits),
        peak_live={b: run.peak_live[b] for b in catalog.backends},
        waited=run.waited,
        quota_backend=run.quota_backend,
        failing_backend=run.failing_backend,
        failed_starts=run.failed_starts,
        probes=probes,
        transitions=[
            {
                "at": round(when - run.start_time, 3),
                "backend": backend,
                "status": status,
                "until": None if until is None else round(until - run.start_time, 3),
                "reason": reason,
            }
            for when, backend, status, until, reason in sorted(run.transitions)
        ],
        backends={
            b: {
                "decisions": decided[b],
                "peak_live": run.peak_live[b],
                "limit": setup.limits.get(b),
                "status": final.get(b, _HEALTHY),
                "history": _history(run, b),
            }
            for b in catalog.backends
        },
        demo_seconds=run.now() - run.start_time,
        seconds_per_session=run.step,
        health_policy=None
        if health is None
        else {
            "failure_threshold": health.failure_threshold,
            "base_ejection": health.base_ejection,
            "max_ejection": health.max_ejection,
            "probe_sessions": health.probe_sessions,
        },
    )


def _restart_counts(stats: Any) -> dict[str, int]:
    """Restarts per actor from ``Router.statistics()``."""
    restarts = getattr(stats, "restarts", None)
    if isinstance(restarts, dict):
        return {str(name): int(count) for name, count in restarts.items()}
    actors = getattr(stats, "actors", None) or {}
    return {str(name): int(actor.restarts) for name, actor in actors.items()}


def run_demo(config: DemoConfig, tick: Callable[[int, str], None] | None = None) -> DemoReport:
    """Run the demo on ``config.backend``; ``tick(done, phase)`` reports progress now and then.

    Returns the :class:`DemoReport` (its invariants say whether the run held up). Raises
    :class:`ValueError` for an unknown async backend, a size below 1, a negative ``wait``
    or ``limit``, a ``catalog`` that differs from ``config``'s, or Redis on trio;
    :class:`TypeError` for a ``config`` that is not a :class:`beamrouting.Config`;
    :class:`ImportError` for Redis without the ``redis`` extra; and what the router raises
    when it cannot run (:class:`beamrouting.StoreUnavailable`, ...).
    """
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown backend {config.backend!r}")
    if config.sessions < 1 or config.concurrency < 1:
        raise ValueError("sessions and concurrency must be >= 1")
    if config.limit < 0:
        raise ValueError("limit must be >= 0 (0: room for a quarter more sessions than starters)")
    if not (0 <= config.wait < math.inf):
        raise ValueError("wait must be a finite number of seconds >= 0")
    setup = _setup(config)
    if setup.redis_url is not None and config.backend == "trio":
        raise ValueError("the Redis store needs the asyncio or uvloop backend")
    return run_on(config.backend, _main, config, setup, tick)
