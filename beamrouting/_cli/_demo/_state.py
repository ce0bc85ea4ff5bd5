"""The shared state of one demo run: its clock, counters, timeline and what it saw of the backends."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable

from beamrouting import (
    BackendState,
    Catalog,
    HealthPolicy,
)

from ._setup import _HEALTHY, _MARKS, COOLDOWN, DemoConfig, _Plan, _Setup, _setup

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
        # Each scripted fault has a backend of its own; a smaller catalogue skips the later ones.
        self.quota_backend = backends[2] if learning and len(backends) > 2 else None
        self.failing_backend = backends[3] if learning and len(backends) > 3 else None
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
