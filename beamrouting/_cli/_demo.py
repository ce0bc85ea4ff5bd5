"""``beamrouting demo``: an orchestrator starting tens of thousands of agent sessions.

A few hundred session-start coroutines share one :class:`~beamrouting.Router` and route a
realistic mix: sticky by workspace, round robin, capability first, explicit, preferred
then fallback, some under a restrictive policy profile, and a failover whenever a session
fails to start on its backend. Midway one backend goes ``down`` (the health every request
carries says so) and later recovers, and the routing-table actor is crashed and restarted
by its supervisor.

Every backend has a limit of live sessions. A session holds its slot while it runs, and a
start that finds every backend it may use full waits for a slot (``wait=``). The router
also learns from outcomes: one backend refuses a session for its quota and cools down
until its reset time, while the fleet routes around it; another starts failing, is ejected
after ``failure_threshold`` consecutive failures (each failed start moves its session with
:meth:`RouterSession.failover <beamrouting.RouterSession.failover>`) and is probed back in
when its ejection ends. Time is the demo's own: a clock that advances with every session
started, handed to the store (``clock=``), so a 60-second cooldown passes within a run of a
few seconds and a seed routes alike on every run. A monitor samples
:meth:`Router.backend_states <beamrouting.Router.backend_states>` throughout, and a
subscription to the journal's ``backend_health`` events dates every status change.

The run then checks its own invariants:

* every session was routed or failed with a typed error;
* no decision chose a backend its request marked down;
* every sticky workspace stayed on one backend, except those an outage or a failover moved;
* the crashed actor was restarted, and routing went on after it with its state intact;
* every session was unregistered at the end;
* no backend ever had more live sessions than its limit;
* no session went to the cooling backend before its reset time;
* the ejected backend took no session while ejected, and at most ``probe_sessions`` probes
  while probing;
* the cooled and the ejected backends were healthy again at the end.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio

from beamrouting import (
    ActorCrashed,
    BackendState,
    BeamRoutingError,
    Catalog,
    Config,
    HealthPolicy,
    MemoryStore,
    NoBackendAvailable,
    PolicyProfile,
    RouteDecision,
    RouterSession,
    RoutingError,
    SubscriptionGap,
)

from ._backends import BACKENDS, run_on
from ._console import Output

__all__ = ["COOLDOWN", "PROFILE_ID", "DemoConfig", "DemoReport", "Invariant", "print_demo", "run_demo"]

PROFILE_ID: Final = "restricted"
"""The policy profile some sessions run under: it denies the catalogue's last backend."""
COOLDOWN: Final = 60.0
"""Seconds (of demo time) the quota refusal asks its backend to cool down for (``retry_after``)."""

_T = TypeVar("_T")

_BOUND: Final = "selected backend and bound sticky affinity"
_REUSED: Final = "reused sticky affinity backend"
_MIX: Final = (
    ("sticky", 40),
    ("round_robin", 18),
    ("capability_first", 14),
    ("explicit", 10),
    ("preferred_then_fallback", 12),
    ("restricted", 6),
)
_MARKS: Final = {
    "degraded": 0.10,
    "quota": 0.15,
    "outage": 0.25,
    "failing": 0.40,
    "recovery": 0.55,
    "crash": 0.70,
    "healthy": 0.85,
}
"""When each scripted event happens, as a share of the sessions started."""
_ATTEMPTS: Final = 3
"""Tries per call; only ``ActorCrashed`` (a restarted actor) is retried."""
_IDLE_STEP: Final = 1.0
"""Demo seconds that pass per monitor sample while every starter waits and nothing else runs."""
_HEALTHY: Final = "healthy"


@dataclass(frozen=True)
class DemoConfig:
    """The size and shape of a demo run.

    ``config`` (a :class:`~beamrouting.Config`, from :func:`~beamrouting.load_config`)
    supplies the catalogue, the store (kind, URL and options; a Redis store still gets a
    key prefix of its own per run), the router's options, the health policy, and the
    limits and weights of the backends it names; the demo's defaults stand for what it
    leaves out (``limit`` for a backend without a limit). Its policy profiles are stored
    besides the demo's own, and the restricted sessions run under each of them in turn.
    """

    sessions: int = 30_000
    concurrency: int = 300
    seed: int = 7
    backend: str = "asyncio"
    workspaces: int = 0
    """Distinct sticky workspaces (0: one per 40 sessions, at least 10)."""
    failure_rate: float = 0.03
    """Share of sessions whose first start fails for a reason of their own, so they fail over."""
    catalog: Catalog | None = None
    """The backends (the default catalogue if ``None``); with ``config``, it must be the file's."""
    redis_url: str | None = None
    """Share the state through a :class:`~beamrouting.RedisStore` at this URL (overrides ``config``'s store)."""
    limit: int = 0
    """Live sessions each backend may have; 0 leaves room for a quarter more sessions than
    starters, spread evenly: ``ceil(1.25 * concurrency / backends)`` (75 for 300 starters
    on the five default backends). The busiest backend reaches its limit, and once a backend
    or two are out the rest cannot hold every starter, so starts wait for slots."""
    wait: float = 60.0
    """Seconds (of demo time) a session start waits for a slot when every backend it may use is full."""
    config: Config | None = None
    """A configuration to run with (see above); ``None``: the demo's own settings."""


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
    """What a demo run did and whether its invariants held.

    Times (``timeline``, ``backends``) are seconds of demo time since the run started.
    """

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
    """The timeline, one line per event, in demo-time order."""
    limits: dict[str, int] = field(default_factory=dict)
    """The most live sessions each limited backend may have."""
    peak_live: dict[str, int] = field(default_factory=dict)
    """The most live sessions :meth:`Router.backend_states` showed on each backend."""
    waited: int = 0
    """Session starts that found every backend they may use full and waited for a slot."""
    quota_backend: str | None = None
    """The backend refused for its quota (``None``: not scripted)."""
    failing_backend: str | None = None
    """The backend that failed until it was ejected (``None``: not scripted)."""
    failed_starts: int = 0
    """Sessions that failed to start on the failing backend and moved (``RouterSession.failover``)."""
    probes: int = 0
    """Sessions routed to a probing backend."""
    transitions: list[dict[str, Any]] = field(default_factory=list)
    """Every ``backend_health`` status change: ``at``, ``backend``, ``status``, ``until``, ``reason``."""
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per backend: ``decisions``, ``peak_live``, ``limit``, ``status`` at the end, ``history`` (text)."""
    demo_seconds: float = 0.0
    """How much demo time the run spanned."""
    seconds_per_session: float = 0.0
    """Demo time each session started moves the clock on by."""
    health_policy: dict[str, Any] | None = None
    """The health policy in force (``None``: learning off)."""

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
            "limits": self.limits,
            "peak_live": self.peak_live,
            "waited": self.waited,
            "quota_backend": self.quota_backend,
            "failing_backend": self.failing_backend,
            "failed_starts": self.failed_starts,
            "probes": self.probes,
            "transitions": self.transitions,
            "backends": self.backends,
            "demo_seconds": round(self.demo_seconds, 3),
            "seconds_per_session": self.seconds_per_session,
            "health_policy": self.health_policy,
        }


# --------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class _Setup:
    """What a run routes with: :class:`DemoConfig` and its ``config`` resolved."""

    catalog: Catalog
    health: HealthPolicy | None
    limits: dict[str, int]
    weights: dict[str, int]
    redis_url: str | None
    store_options: dict[str, Any]
    router_options: dict[str, Any]
    profiles: dict[str, PolicyProfile]
    """The configuration's policy profiles (the demo's own is added to them)."""


def _setup(config: DemoConfig) -> _Setup:
    """Resolve ``config`` (and its ``config``); :class:`ValueError` for a contradiction."""
    file = config.config
    if file is not None and not isinstance(file, Config):
        raise TypeError(f"config must be a beamrouting.Config, not {type(file).__name__}")
    catalog = config.catalog if config.catalog is not None else Catalog.default()
    if file is not None:
        if config.catalog is not None and config.catalog != file.catalog:
            raise ValueError("catalog and config name different catalogues; give one of them")
        catalog = file.catalog
    limit = config.limit or max(1, math.ceil(1.25 * config.concurrency / len(catalog.backends)))
    limits = dict.fromkeys(catalog.backends, limit)
    if file is None:
        return _Setup(catalog, HealthPolicy(), limits, {}, config.redis_url, {}, {}, {})
    settings = file.settings
    limits.update(settings.limits)
    store = file.store
    redis_url = config.redis_url or (store.url if store.kind == "redis" else None)
    options = store.options() if (store.kind == "redis") == (redis_url is not None) else {}
    options.pop("prefix", None)  # each run keeps its keys under a prefix of its own
    router = file.router
    router_options = {
        "max_restarts": router.max_restarts,
        "restart_period": router.restart_period,
        "mailbox_size": router.mailbox_size,
        "call_timeout": router.call_timeout,
        "max_waiters": router.max_waiters,
    }
    return _Setup(
        catalog,
        settings.health,
        limits,
        dict(settings.weights),
        redis_url,
        options,
        router_options,
        dict(settings.profiles),
    )


def _plans(config: DemoConfig, catalog: Catalog, profile_ids: Sequence[str] = (PROFILE_ID,)) -> list[_Plan]:
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
            profile = profile_ids[0] if len(profile_ids) == 1 else rng.choice(profile_ids)
            request = {"policy": "round_robin", "policy_profile_id": profile}
        plans.append(_Plan(kind, request, workspace, rng.random() < config.failure_rate))
    return plans


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --------------------------------------------------------------------------- the run's state

_Transition = tuple[float, str, str, float | None, str | None]
"""A status change: ``(when, backend, status, until, reason)``, times in UNIX seconds."""
_Routed = tuple[float, float, str]
"""A decision for a watched backend: ``(clock before the call, clock after it, backend)``."""


class _Run:
    """The shared state of one run (one event loop, so plain attributes are safe)."""

    def __init__(
        self, config: DemoConfig, catalog: Catalog, plans: list[_Plan], setup: _Setup | None = None
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.plans = plans
        self.setup = setup if setup is not None else _setup(config)
        backends = catalog.backends
        n = len(plans)
        self.outage_backend = backends[1] if len(backends) > 1 else backends[0]
        self.degraded_backend = backends[-1] if len(backends) > 2 else None
        learning = self.setup.health is not None and len(backends) > 1
        # The first backend is never scripted out, so every request that may use it can always route.
        self.quota_backend = (backends[2] if len(backends) > 2 else backends[-1]) if learning else None
        self.failing_backend = (backends[3] if len(backends) > 3 else backends[-1]) if learning else None
        self.watched = frozenset(b for b in (self.quota_backend, self.failing_backend) if b is not None)
        self.marks = {name: int(n * share) for name, share in _MARKS.items()}
        self.due = frozenset(self.marks.values())
        """The sessions at which something is scripted."""
        health = self.setup.health or HealthPolicy()
        self.demo_seconds = max(5 * COOLDOWN, 6 * health.base_ejection)
        """The demo time the run spans: the cooldown and an ejection fit in their stretches."""
        self.step = self.demo_seconds / max(1, n)
        self.start_time = float(math.floor(time.time()))
        self.idle = 0.0
        self.crash_enabled = self.setup.router_options.get("max_restarts", 3) >= 1
        self.health: dict[str, str] = {}
        self.health_spans: dict[str, list[tuple[str, float, float | None]]] = defaultdict(list)
        """Request-health spans per backend: ``(health, from, to)``."""
        self.next_index = 0
        self.done = 0
        self.active = 0
        self.waiting = 0
        self.finished = False
        self.routed = 0
        self.failed = 0
        self.failovers = 0
        self.failed_starts = 0
        self.waited = 0
        self.routing_calls = 0
        self.latencies: list[float] = []
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.errors: Counter[str] = Counter()
        self.sticky: dict[str, list[tuple[str, str, bool, bool]]] = defaultdict(list)
        """workspace -> [(backend, reason, outage backend down in the request, a failover's)]."""
        self.down_violations: list[str] = []
        self.untyped: list[str] = []
        self.timeline: list[tuple[float, int, str]] = []
        self.phase = "routing sessions"
        self.crash_done = False
        self.routed_after_crash = 0
        self.start = 0.0
        self.peak_live: Counter[str] = Counter()
        self.over_limit: list[str] = []
        self.samples = 0
        self.broken: str | None = None
        """The backend sessions fail to start on now (until the router ejects it)."""
        self.status: dict[str, str] = {}
        """Each backend's status as the ``backend_health`` events told it."""
        self.doubtful: set[str] = set()
        """The backends those events say are not healthy: their sessions report success."""
        self.transitions: list[_Transition] = []
        self.routed_watched: list[_Routed] = []
        self.health_missed = 0
        self.final_states: tuple[BackendState, ...] = ()

    def now(self) -> float:
        """The demo's clock (UNIX seconds): the start, plus a step per session started, plus idle time."""
        return self.start_time + self.next_index * self.step + self.idle

    def at(self, started: int, idle: float) -> float:
        """What :meth:`now` said when ``started`` sessions had started and ``idle`` seconds had passed idle."""
        return self.start_time + started * self.step + idle

    def rel(self, when: float | None) -> str:
        """``when`` as demo time since the start (``+45.0s``)."""
        return "-" if when is None else f"+{when - self.start_time:.1f}s"

    def event(self, text: str, at: tuple[float, int] | None = None) -> None:
        """Add a scripted event to the timeline: ``at`` (time, session), else now."""
        when, index = at if at is not None else (self.now(), self.next_index)
        self.timeline.append((when, index, text))
        self.phase = text

    def sample(self, states: Iterable[BackendState]) -> None:
        """Note what :meth:`Router.backend_states` said: live sessions against limits."""
        self.samples += 1
        peak = self.peak_live
        for state in states:
            live = state.live_sessions
            if live > peak[state.backend]:
                peak[state.backend] = live
            if state.limit is not None and live > state.limit:
                self.over_limit.append(f"{state.backend}: {live} live sessions sampled (limit {state.limit})")

    def set_health(self, backend: str, health: str | None) -> None:
        """Change the health the requests carry for ``backend`` (``None``: healthy)."""
        now = self.now()
        spans = self.health_spans[backend]
        if spans and spans[-1][2] is None:
            spans[-1] = (spans[-1][0], spans[-1][1], now)
        if health is None:
            self.health = {b: h for b, h in self.health.items() if b != backend}
        else:
            self.health = {**self.health, backend: health}
            spans.append((health, now, None))

    def transition(
        self, when: float, backend: str, status: str, until: float | None, reason: str | None
    ) -> None:
        """A ``backend_health`` event: note it, and clear a fault the router has ejected."""
        self.transitions.append((when, backend, status, until, reason))
        self.status[backend] = status
        if status == _HEALTHY:
            self.doubtful.discard(backend)
        else:
            self.doubtful.add(backend)
        if status == "ejected" and backend == self.broken:
            self.broken = None  # the fault clears while the backend is out
        if status == "cooling":
            text = f"{backend} is cooling down until {self.rel(until)} ({reason})"
        elif status == "ejected":
            text = f"{backend} is ejected until {self.rel(until)} ({reason})"
        elif status == "probing":
            text = f"{backend} is probing: its ejection ended, the next session on it is a probe"
        else:
            text = f"{backend} is healthy again"
        index = min(len(self.plans), max(0, round((when - self.start_time - self.idle) / self.step)))
        self.timeline.append((when, index, text))


# --------------------------------------------------------------------------- the sessions


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


# --------------------------------------------------------------------------- the checks


def _sticky_check(run: _Run) -> tuple[dict[str, int], list[str]]:
    """Sticky workspaces: each stays on its backend, except where an outage or a failover rebinds it.

    A decision on a temporary backend (the bound one is held out: full, cooling, ejected)
    does not move a workspace. A bind is explained when the request marked the outage
    backend down or the decision moved a failed session; each extra backend a workspace
    was bound to needs one, and besides those a workspace is bound once.
    """
    options = run.setup.store_options
    may_expire = "binding_ttl" in options or "max_bindings" in options
    consistent = moved_outage = moved_failover = temporary = 0
    violations = []
    for workspace, records in sorted(run.sticky.items()):
        home = {backend for backend, reason, _, _ in records if reason in (_BOUND, _REUSED)}
        binds = [(down, moved) for _, reason, down, moved in records if reason == _BOUND]
        unexplained = sum(1 for down, moved in binds if not down and not moved)
        explained = len(binds) - unexplained
        if any(reason not in (_BOUND, _REUSED) for _, reason, _, _ in records):
            temporary += 1
        if (unexplained > 1 and not may_expire) or len(home) > 1 + explained + (
            unexplained if may_expire else 0
        ):
            violations.append(
                f"{workspace}: bound to {sorted(home)}, {unexplained} bind(s) without an outage or a failover"
            )
        elif len(home) <= 1:
            consistent += 1
        elif any(down for down, _ in binds):
            moved_outage += 1
        else:
            moved_failover += 1
    return {
        "workspaces": len(run.sticky),
        "consistent": consistent,
        "moved_by_outage": moved_outage,
        "moved_by_failover": moved_failover,
        "used_temporary": temporary,
    }, violations


def _windows(
    transitions: Iterable[_Transition], backend: str
) -> list[tuple[str, float, float, float | None]]:
    """``backend``'s statuses in time order: ``(status, from, to, until)`` (``to`` is infinite for the last)."""
    mine = sorted((t for t in transitions if t[1] == backend), key=lambda t: t[0])
    windows = []
    for i, (when, _, status, until, _) in enumerate(mine):
        end = mine[i + 1][0] if i + 1 < len(mine) else math.inf
        windows.append((status, when, end, until))
    return windows


_EVENT_RESOLUTION: Final = 0.001
"""Journal times are whole milliseconds (rounded down): a status began at most this much after its time."""


def _inside(routed: _Routed, start: float, end: float) -> bool:
    """Whether the decision certainly happened within ``[start, end)``.

    It was made at a time between the clock read before the call and the one after it, so
    it lies inside when the first is past the (millisecond-rounded) start and the second
    before the end.
    """
    before, after, _ = routed
    return before >= start + _EVENT_RESOLUTION and after < end


def _cooling_check(
    transitions: Sequence[_Transition], routed: Sequence[_Routed], backend: str
) -> tuple[bool, str]:
    """No decision went to ``backend`` while it cooled down, and it cooled down and came back at its reset time."""
    windows = _windows(transitions, backend)
    cooling = [w for w in windows if w[0] == "cooling"]
    if not cooling:
        return False, f"{backend} never cooled down"
    inside = [r for r in routed if r[2] == backend and any(_inside(r, w[1], w[2]) for w in cooling)]
    problems = [f"{len(inside)} session(s) routed to {backend} while it cooled down"] if inside else []
    for _, start, end, until in cooling:
        if end == math.inf:
            problems.append(f"{backend} was still cooling at the end")
        elif until is not None and abs(end - until) > _EVENT_RESOLUTION:
            problems.append(
                f"{backend} came back at {end - start:.3f}s into its cooldown, not at its reset time"
            )
    if problems:
        return False, "; ".join(problems)
    first = cooling[0]
    return (
        True,
        f"{backend} cooled {first[2] - first[1]:.1f} s and came back at its reset time; no session meanwhile",
    )


def _ejection_check(
    transitions: Sequence[_Transition], routed: Sequence[_Routed], backend: str, probe_sessions: int
) -> tuple[bool, str]:
    """No decision went to ``backend`` while ejected, at most ``probe_sessions`` per probing stretch."""
    windows = _windows(transitions, backend)
    ejected = [w for w in windows if w[0] == "ejected"]
    probing = [w for w in windows if w[0] == "probing"]
    if not ejected:
        return False, f"{backend} was never ejected"
    if not probing:
        return False, f"{backend} was ejected but never probed"
    mine = [r for r in routed if r[2] == backend]
    during = [r for r in mine if any(_inside(r, w[1], w[2]) for w in ejected)]
    problems = [f"{len(during)} session(s) routed to {backend} while it was ejected"] if during else []
    for _, start, end, _ in probing:
        probes = sum(1 for r in mine if _inside(r, start, end))
        if probes > probe_sessions:
            problems.append(
                f"{probes} sessions routed to {backend} while probing (probe_sessions={probe_sessions})"
            )
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"{backend} ejected {len(ejected)} time(s), probed {len(probing)} time(s); "
        f"no session while ejected, at most {probe_sessions} probe(s) at once"
    )


def _limit_check(run: _Run) -> tuple[bool, str]:
    """No backend had more live sessions than its limit, sampled or counted."""
    limits = run.setup.limits
    peaks = ", ".join(f"{b} {run.peak_live[b]}/{limits.get(b, '-')}" for b in run.catalog.backends)
    if run.over_limit:
        return False, "; ".join(run.over_limit[:3])
    return True, f"peak live/limit: {peaks}; {run.samples:,} samples"


def _recovered_check(run: _Run) -> tuple[bool, str]:
    """The cooled and the ejected backends were healthy at the end."""
    final = {state.backend: state for state in run.final_states}
    sick = [
        f"{backend} {final[backend].status.value}" if backend in final else f"{backend} unknown"
        for backend in sorted(run.watched)
        if backend not in final or final[backend].status.value != _HEALTHY
    ]
    if sick:
        return False, "not healthy at the end: " + ", ".join(sick)
    return True, ", ".join(f"{b} healthy" for b in sorted(run.watched))


def _invariants(run: _Run, restarts: Mapping[str, int], remaining: int) -> list[Invariant]:
    sticky, violations = _sticky_check(run)
    restart_total = sum(restarts.values())
    plans = run.plans
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
            "sticky workspaces stayed on one backend (outages and failovers move aside)",
            not violations,
            f"{sticky['consistent']:,} consistent, {sticky['moved_by_outage']:,} moved by the outage, "
            f"{sticky['moved_by_failover']:,} by a failover"
            + (f"; violations: {violations[:3]}" if violations else ""),
        ),
        Invariant(
            "the crashed actor was restarted and routing recovered",
            not run.crash_enabled
            or (
                restarts.get("routing_table", restart_total) >= 1
                and run.crash_done
                and run.routed_after_crash > 0
            ),
            f"{restart_total} restart(s), {run.routed_after_crash:,} sessions routed after it"
            if run.crash_enabled
            else "skipped: the configuration allows no restart (max_restarts = 0)",
        ),
        Invariant("every session was unregistered", not remaining, f"{remaining} still registered"),
        Invariant("no backend had more live sessions than its limit", *_limit_check(run)),
    ]
    health = run.setup.health
    skipped = (
        "skipped: learning is off (the configuration has no health policy)"
        if health is None
        else "skipped: a catalogue of one backend"
    )
    cooling: tuple[bool, str] = (True, skipped)
    ejection: tuple[bool, str] = (True, skipped)
    recovered: tuple[bool, str] = (True, skipped)
    if health is not None and run.watched:
        assert run.quota_backend is not None and run.failing_backend is not None
        cooling = _cooling_check(run.transitions, run.routed_watched, run.quota_backend)
        ejection = _ejection_check(
            run.transitions, run.routed_watched, run.failing_backend, health.probe_sessions
        )
        recovered = _recovered_check(run)
    invariants += [
        Invariant("no session went to the cooling backend before its reset time", *cooling),
        Invariant("the ejected backend took no session while ejected, only probes after", *ejection),
        Invariant("the cooled and the ejected backends came back healthy", *recovered),
    ]
    return invariants


# --------------------------------------------------------------------------- the run


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
    :class:`TypeError` for a ``config`` that is not a :class:`~beamrouting.Config`;
    :class:`ImportError` for Redis without the ``redis`` extra; and what the router raises
    when it cannot run (:class:`~beamrouting.StoreUnavailable`, ...).
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


# --------------------------------------------------------------------------- printing


def print_demo(report: DemoReport, out: Output) -> None:
    """Print ``report`` to ``out``: the timeline, tables of decisions, backends and errors, a summary and the invariants.

    Tables go through :meth:`Output.table <beamrouting._cli._console.Output.table>`, so
    they are rich tables on a terminal with rich and aligned plain text otherwise. Returns
    nothing and raises nothing of its own.
    """
    seconds = report.seconds_per_session
    out.heading("Timeline")
    if seconds:
        out.line(f"(demo time: the clock moves {seconds * 1000:,.1f} ms per session started)")
    for event in report.events:
        out.line(event)
    backends = list(report.config["catalog"])
    rows = []
    totals = dict.fromkeys(backends, 0)
    for kind, counts in report.by_policy_backend.items():
        rows.append((kind, *(f"{counts.get(b, 0):,}" for b in backends), f"{sum(counts.values()):,}"))
        for b in backends:
            totals[b] += counts.get(b, 0)
    rows.append(("total", *(f"{totals[b]:,}" for b in backends), f"{sum(totals.values()):,}"))
    out.table(
        ("policy", *backends, "total"),
        rows,
        title="Decisions per policy and backend",
        right=tuple(range(1, len(backends) + 2)),
    )
    if report.backends:
        out.table(
            ("backend", "decisions", "peak live / limit", "at the end", "what happened"),
            [
                (
                    b,
                    f"{info['decisions']:,}",
                    f"{info['peak_live']:,} / {'-' if info['limit'] is None else format(info['limit'], ',')}",
                    info["status"],
                    info["history"],
                )
                for b, info in report.backends.items()
            ],
            title="Backends",
            right=(1, 2),
        )
    errors = list(report.errors.items()) or [("(none)", 0)]
    out.table(
        ("error code", "count"), [(code, f"{n:,}") for code, n in errors], title="Errors by code", right=(1,)
    )
    out.line("actor_crashed calls were retried; the other errors are typed routing failures.")
    out.heading("Summary")
    restarts = ", ".join(f"{k} {v}" for k, v in report.restarts.items()) or "none"
    sticky = report.sticky
    lines = [
        (
            "sessions",
            f"{report.sessions:,} ({report.routed:,} routed, {report.failed:,} failed, {report.failovers:,} failovers)",
        ),
        ("restarts", restarts),
        (
            "throughput",
            f"{report.sessions_per_second:,.0f} sessions/s, {report.calls_per_second:,.0f} routing calls/s",
        ),
        ("session start latency", f"p50 {report.p50_us:,.0f} µs, p99 {report.p99_us:,.0f} µs"),
        (
            "sticky workspaces",
            f"{sticky['workspaces']:,}: {sticky['consistent']:,} on one backend, "
            f"{sticky['moved_by_outage']:,} moved off {report.outage_backend} by the outage, "
            f"{sticky.get('moved_by_failover', 0):,} by a failover, "
            f"{sticky.get('used_temporary', 0):,} used a temporary backend meanwhile, "
            f"{sticky['violations']} violations",
        ),
    ]
    if report.limits:
        distinct = sorted(set(report.limits.values()))
        limit = (
            f"{distinct[0]:,} live sessions per backend"
            if len(distinct) == 1
            else "per backend (see Backends)"
        )
        lines.append(("capacity", f"limit {limit}; {report.waited:,} session starts waited for a slot"))
    if report.quota_backend is not None or report.failing_backend is not None:
        lines.append(
            (
                "learned",
                f"{report.quota_backend} cooled down for its quota; {report.failing_backend} failed "
                f"{report.failed_starts:,} session start(s) (each moved by failover), was ejected "
                f"and came back through {report.probes:,} probe(s)",
            )
        )
    elif report.health_policy is None:
        lines.append(("learned", "nothing: learning is off"))
    lines += [
        ("demo time", f"{report.demo_seconds:,.1f} s"),
        ("elapsed", f"{report.elapsed:.2f} s"),
    ]
    for label, value in lines:
        out.line(f"{label:>22}: {value}")
    out.table(
        ("invariant", "result", "detail"),
        [(inv.name, "PASS" if inv.ok else "FAIL", inv.detail) for inv in report.invariants],
        title="Invariants",
    )
