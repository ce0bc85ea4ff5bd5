"""The demo's invariants, each checked from what the run recorded."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from beamrouting import HealthPolicy

from ._report import Invariant
from ._setup import _BOUND, _HEALTHY, _REUSED
from ._state import _Routed, _Run, _Transition


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
    transitions: Sequence[_Transition], routed: Sequence[_Routed], backend: str, policy: HealthPolicy
) -> tuple[bool, str]:
    """No decision went to ``backend`` while ejected, and no more probes than its slots allow while probing.

    A probe slot is freed by a report, which ends the probing (a success makes the backend
    healthy, a failure ejects it again), or by itself ``base_ejection`` seconds after it
    was taken: so a probing stretch may see ``probe_sessions`` probes, and as many again
    for every ``base_ejection`` seconds it lasts.
    """
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
    last = max((r[1] for r in mine), default=0.0)
    for _, start, end, _ in probing:
        probes = sum(1 for r in mine if _inside(r, start, end))
        lasted = (end if end != math.inf else max(last, start)) - start
        allowed = policy.probe_sessions * (1 + int(lasted // policy.base_ejection))
        if probes > allowed:
            problems.append(
                f"{probes} sessions routed to {backend} in {lasted:.1f} s of probing "
                f"(at most {allowed} with probe_sessions={policy.probe_sessions})"
            )
    if problems:
        return False, "; ".join(problems)
    return True, (
        f"{backend} ejected {len(ejected)} time(s), probed {len(probing)} time(s); "
        f"no session while ejected, no more probes than its slots allowed"
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
    too_small = "skipped: the catalogue has no backend to spare for it"
    off = "skipped: learning is off (the configuration has no health policy)"
    cooling: tuple[bool, str] = (True, off if health is None else too_small)
    ejection: tuple[bool, str] = (True, off if health is None else too_small)
    recovered: tuple[bool, str] = (True, off if health is None else too_small)
    if health is not None:
        if run.quota_backend is not None:
            cooling = _cooling_check(run.transitions, run.routed_watched, run.quota_backend)
        if run.failing_backend is not None:
            ejection = _ejection_check(run.transitions, run.routed_watched, run.failing_backend, health)
        if run.watched:
            recovered = _recovered_check(run)
    invariants += [
        Invariant("no session went to the cooling backend before its reset time", *cooling),
        Invariant("the ejected backend took no session while ejected, only probes after", *ejection),
        Invariant("the cooled and the ejected backends came back healthy", *recovered),
    ]
    return invariants
