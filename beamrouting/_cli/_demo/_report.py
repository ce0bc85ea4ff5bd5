"""What a demo run reports (:class:`DemoReport`, one :class:`Invariant` per self-check) and how it is printed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .._console import Output


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
    """Selections of the failing backend whose calls overlapped a probing stretch (calls in flight as it
    began or ended count too, so this is at least the number of probes)."""
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


def print_demo(report: DemoReport, out: Output) -> None:
    """Print ``report`` to ``out``: the timeline, tables of decisions, backends and errors, a summary and the invariants.

    Tables go through :meth:`beamrouting._cli._console.Output.table`, so
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
    learned = []
    if report.quota_backend is not None:
        learned.append(f"{report.quota_backend} cooled down for its quota")
    if report.failing_backend is not None:
        learned.append(
            f"{report.failing_backend} failed {report.failed_starts:,} session start(s) (each moved by "
            f"failover), was ejected, and was probed back to health"
        )
    if learned:
        lines.append(("learned", "; ".join(learned)))
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
