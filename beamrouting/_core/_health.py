"""What the router learns from reported outcomes: quota cooldowns, ejections and half-open probes.

Each backend has a :class:`Ledger`, an immutable record of what was reported about it.
Transitions are pure functions of a ledger, an outcome, the time and the
:class:`HealthPolicy`, so every store computes them the same way; a store only keeps the
ledgers (in memory, or in Redis for a fleet). A backend without a ledger is healthy, and a
router to which nothing was reported keeps no ledger at all.

- ``quota``: the backend cools down until ``retry_at`` (or now + ``retry_after``, or now +
  ``base_ejection``); a later quota report only extends the deadline. Only the deadline or
  :meth:`beamrouting.Router.restore` ends a cooldown.
- ``failure``: counts a consecutive failure (while cooling too); ``success`` resets the
  count. At ``failure_threshold`` the backend is ejected for ``base_ejection * 2**(n-1)``
  (capped at ``max_ejection``), ``n`` counting consecutive ejections. When an ejection ends
  the backend is probing: a selection returning it takes one of ``probe_sessions`` slots,
  and while all are taken it is ineligible. A success or failure report frees one slot (and
  a slot frees itself after ``base_ejection``); a success while probing makes the backend
  healthy again, a failure ejects it again for twice as long.
- ``rejected``: the request's own fault; it changes nothing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from ._checks import check_count, check_seconds
from ._errors import InvalidRouteRequest
from ._journal import BACKEND_HEALTH, OUTCOME

__all__ = [
    "FRESH",
    "LATEST_RESET",
    "LONGEST_RESET_DELAY",
    "BackendState",
    "BackendStatus",
    "HealthEvent",
    "HealthPolicy",
    "Ledger",
    "Outcome",
    "check_outcome",
    "check_reset",
    "format_time",
    "held_out",
    "observe",
    "reported",
    "restored",
    "retry_at",
    "took_probe",
    "unlearned",
]


class Outcome(enum.StrEnum):
    """What became of a session started on a backend (what :meth:`Router.report` reports)."""

    SUCCESS = "success"
    """The session started."""
    FAILURE = "failure"
    """The session failed to start there."""
    QUOTA = "quota"
    """The backend refused it for a usage limit; it cools down until the limit resets."""
    REJECTED = "rejected"
    """The request's own fault (bad input): it says nothing about the backend."""


_OUTCOMES: Final[dict[str, Outcome]] = {o.value: o for o in Outcome}


class BackendStatus(enum.StrEnum):
    """What was learned about a backend."""

    HEALTHY = "healthy"
    """Eligible (nothing learned, or it recovered)."""
    COOLING = "cooling"
    """Ineligible until its quota resets."""
    EJECTED = "ejected"
    """Ineligible after too many consecutive failures, until the ejection ends."""
    PROBING = "probing"
    """Its ejection ended: eligible while a probe slot is free."""


class HealthPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How reported outcomes change a backend's eligibility (validated when built).

    Raises :class:`TypeError` for a value of the wrong type and :class:`ValueError` for one
    that is not positive (or ``max_ejection`` below ``base_ejection``).
    """

    failure_threshold: int = 5
    """Consecutive failures that eject a backend."""
    base_ejection: float = 30.0
    """Seconds of the first ejection (doubled for each consecutive one), of a quota cooldown
    reported without a reset time, and after which an unreported probe slot frees itself."""
    max_ejection: float = 600.0
    """The longest ejection, in seconds."""
    probe_sessions: int = 1
    """Selections a probing backend may take at once."""

    def __post_init__(self) -> None:
        check_count("failure_threshold", self.failure_threshold, 1)
        check_seconds("base_ejection", self.base_ejection, finite=True)
        check_seconds("max_ejection", self.max_ejection, finite=True)
        check_count("probe_sessions", self.probe_sessions, 1)
        if self.max_ejection < self.base_ejection:
            raise ValueError(
                f"max_ejection must be >= base_ejection ({self.base_ejection}), not {self.max_ejection}"
            )

    def ejection(self, ejections: int) -> float:
        """Seconds the ``ejections``-th consecutive ejection lasts."""
        return min(self.base_ejection * 2.0 ** min(ejections - 1, 64), self.max_ejection)


class BackendState(msgspec.Struct, frozen=True):
    """What the router knows of one backend now (:meth:`Router.backend_states`)."""

    backend: str
    """The backend (canonical name)."""
    status: BackendStatus
    """What was learned about it."""
    until: float | None
    """When the status ends (UNIX seconds), if it ends by itself."""
    reason: str | None
    """Why the backend is not healthy (``None`` when it is)."""
    consecutive_failures: int
    """Failures reported since its last success."""
    ejections: int
    """Consecutive ejections (reset by a success)."""
    live_sessions: int = 0
    """Sessions registered on the backend and not yet unregistered."""
    limit: int | None = None
    """The most live sessions it may have (``None``: unlimited)."""


LATEST_RESET: Final = 253_402_300_799.0
"""The latest reset time a report may give: 9999-12-31T23:59:59Z (UNIX seconds)."""
LONGEST_RESET_DELAY: Final = 366 * 86_400.0
"""The longest ``retry_after`` a report may give: 366 days, in seconds."""


def format_time(when: float) -> str:
    """``when`` (UNIX seconds) as UTC ISO 8601 to the second, e.g. ``2026-12-02T17:00:00Z``.

    A time no calendar date can show (a value read from a shared store, say) is shown as
    its number of seconds.
    """
    try:
        return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{when!r} (UNIX seconds)"


def check_outcome(outcome: object) -> Outcome:
    """``outcome`` as an :class:`Outcome`; :class:`beamrouting.InvalidRouteRequest` (detail ``"outcome"``) otherwise."""
    try:
        return _OUTCOMES[outcome]  # type: ignore[index]
    except Exception:  # unhashable or hostile values name no outcome either
        raise InvalidRouteRequest("outcome") from None


def check_reset(retry_at: object, retry_after: object, now: float) -> float | None:
    """The reset time a report gives: ``retry_at`` (UNIX seconds), ``now + retry_after``, or ``None``.

    Raises :class:`beamrouting.InvalidRouteRequest` (detail ``"retry_at"`` or
    ``"retry_after"``) for a value that is not a number, a ``retry_at`` that is not finite
    or later than :data:`LATEST_RESET` (the year 9999), a negative ``retry_after`` or one
    longer than :data:`LONGEST_RESET_DELAY` (366 days), or both given.
    """
    if retry_at is not None:
        if retry_after is not None or isinstance(retry_at, bool) or not isinstance(retry_at, (int, float)):
            raise InvalidRouteRequest("retry_at")
        if not (-LATEST_RESET <= retry_at <= LATEST_RESET):  # NaN and infinities fail this too
            raise InvalidRouteRequest("retry_at")
        return float(retry_at)
    if retry_after is not None:
        if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)):
            raise InvalidRouteRequest("retry_after")
        if not (0 <= retry_after <= LONGEST_RESET_DELAY):
            raise InvalidRouteRequest("retry_after")
        return now + float(retry_after)
    return None


class Ledger(msgspec.Struct, frozen=True, array_like=True):
    """What was reported about one backend; every transition returns a new ledger."""

    cooling_until: float | None = None
    """End of a quota cooldown."""
    ejected_until: float | None = None
    """End of the current ejection (probing follows it while ``ejections`` is not 0)."""
    consecutive_failures: int = 0
    ejections: int = 0
    probes: tuple[float, ...] = ()
    """When each probe slot in use frees itself."""
    announced: BackendStatus = BackendStatus.HEALTHY
    """The status last journaled as a ``backend_health`` event."""

    # -- reading ----------------------------------------------------------------------------

    def status(self, now: float, policy: HealthPolicy) -> tuple[BackendStatus, float | None, str | None]:
        """``(status, until, reason)`` at ``now``."""
        cooling = self.cooling_until is not None and self.cooling_until > now
        ejected = self.ejected_until is not None and self.ejected_until > now
        if cooling and ejected:
            assert self.cooling_until is not None and self.ejected_until is not None
            if self.ejected_until > self.cooling_until:
                return BackendStatus.EJECTED, self.ejected_until, self._ejected_reason()
            return BackendStatus.COOLING, self.cooling_until, "quota"
        if cooling:
            return BackendStatus.COOLING, self.cooling_until, "quota"
        if ejected:
            return BackendStatus.EJECTED, self.ejected_until, self._ejected_reason()
        if self.ejections:
            used = self.probes_in_use(now)
            return BackendStatus.PROBING, None, f"probing: {used} of {policy.probe_sessions} slots in use"
        return BackendStatus.HEALTHY, None, None

    def _ejected_reason(self) -> str:
        return f"ejected after {self.consecutive_failures} consecutive failures"

    def probes_in_use(self, now: float) -> int:
        """Probe slots taken and not yet freed at ``now``."""
        return sum(1 for deadline in self.probes if deadline > now)

    def available(self, now: float, policy: HealthPolicy) -> bool:
        """Whether the backend may be selected at ``now``."""
        if self.cooling_until is not None and self.cooling_until > now:
            return False
        if self.ejected_until is not None and self.ejected_until > now:
            return False
        return not self.ejections or self.probes_in_use(now) < policy.probe_sessions

    def back_at(self, now: float) -> float:
        """When an unavailable backend is next eligible (the earliest it can be)."""
        ends = [t for t in (self.cooling_until, self.ejected_until) if t is not None and t > now]
        if ends:
            return max(ends)
        slots = [deadline for deadline in self.probes if deadline > now]
        return min(slots) if slots else now

    def next_change(self, now: float) -> float:
        """The earliest deadline after ``now`` (a cooldown's or ejection's end, a probe slot freed); infinite if none.

        Until then, time alone changes nothing about the backend's status or eligibility.
        """
        change = math.inf
        for deadline in (self.cooling_until, self.ejected_until, *self.probes):
            if deadline is not None and now < deadline < change:
                change = deadline
        return change

    def explain(self, now: float, policy: HealthPolicy) -> str | None:
        """Why the backend is ineligible at ``now`` (``None`` when it is eligible)."""
        if self.available(now, policy):
            return None
        status, until, reason = self.status(now, policy)
        if status is BackendStatus.COOLING:
            return f"cooling until {format_time(until or now)} (quota)"
        if status is BackendStatus.EJECTED:
            return f"{reason} until {format_time(until or now)}"
        return reason

    def state(
        self, backend: str, now: float, policy: HealthPolicy, live_sessions: int = 0, limit: int | None = None
    ) -> BackendState:
        """The public :class:`BackendState` of ``backend`` at ``now`` (with its live sessions and limit)."""
        status, until, reason = self.status(now, policy)
        return BackendState(
            backend, status, until, reason, self.consecutive_failures, self.ejections, live_sessions, limit
        )

    # -- transitions -----------------------------------------------------------------------------

    def report(self, outcome: Outcome, now: float, policy: HealthPolicy, reset_at: float | None) -> Ledger:
        """The ledger after ``outcome`` was reported at ``now`` (``reset_at`` for a quota)."""
        if outcome is Outcome.REJECTED:
            return self
        if outcome is Outcome.QUOTA:
            until = reset_at if reset_at is not None else now + policy.base_ejection
            if self.cooling_until is not None and self.cooling_until > until:
                until = self.cooling_until
            return msgspec.structs.replace(self, cooling_until=until)
        probing = self.ejections > 0 and not (self.ejected_until is not None and self.ejected_until > now)
        probes = self._free_one(now)
        if outcome is Outcome.SUCCESS:
            if probing:
                return msgspec.structs.replace(
                    self, consecutive_failures=0, ejections=0, ejected_until=None, probes=()
                )
            return msgspec.structs.replace(self, consecutive_failures=0, probes=probes)
        failures = self.consecutive_failures + 1
        ejected_now = self.ejected_until is not None and self.ejected_until > now
        if probing or (not ejected_now and failures >= policy.failure_threshold):
            ejections = self.ejections + 1
            return msgspec.structs.replace(
                self,
                consecutive_failures=failures,
                ejections=ejections,
                ejected_until=now + policy.ejection(ejections),
                probes=(),
            )
        return msgspec.structs.replace(self, consecutive_failures=failures, probes=probes)

    def _free_one(self, now: float) -> tuple[float, ...]:
        """The probe slots in use, one fewer (the oldest), expired ones dropped."""
        live = sorted(deadline for deadline in self.probes if deadline > now)
        return tuple(live[1:])

    def take_probe(self, now: float, policy: HealthPolicy) -> Ledger:
        """The ledger after a selection took a probe slot (when the backend is probing)."""
        live = tuple(deadline for deadline in self.probes if deadline > now)
        return msgspec.structs.replace(self, probes=(*live, now + policy.base_ejection))

    def announce(self, status: BackendStatus) -> Ledger:
        """The ledger once ``status`` is journaled."""
        return msgspec.structs.replace(self, announced=status)

    @property
    def is_fresh(self) -> bool:
        """Whether it holds nothing a new ledger would not (so it can be forgotten)."""
        return self == FRESH


FRESH: Final = Ledger()
"""A ledger with nothing learned: a backend without a ledger has this one."""


HealthEvent = tuple[str, dict[str, Any], float]
"""A journal event a transition produces: ``(event_type, payload, when)``."""


def _health_event(backend: str, ledger: Ledger, now: float, policy: HealthPolicy, when: float) -> HealthEvent:
    status, until, reason = ledger.status(now, policy)
    return (
        BACKEND_HEALTH,
        {"backend": backend, "status": status.value, "until": until, "reason": reason},
        when,
    )


def observe(
    backend: str, ledger: Ledger, now: float, policy: HealthPolicy
) -> tuple[Ledger, list[HealthEvent]]:
    """``ledger`` once a change of status that time brought (a cooldown or ejection ending) is journaled.

    The change is dated at the deadline that ended the old status, so the first operation
    to observe it journals it, once, with the time it happened.
    """
    status = ledger.status(now, policy)[0]
    if status is ledger.announced:
        return ledger, []
    passed = [t for t in (ledger.cooling_until, ledger.ejected_until) if t is not None and t <= now]
    when = max(passed) if passed else now
    return ledger.announce(status), [_health_event(backend, ledger, now, policy, when)]


def reported(
    backend: str, ledger: Ledger, outcome: Outcome, reset_at: float | None, now: float, policy: HealthPolicy
) -> tuple[Ledger, list[HealthEvent]]:
    """``ledger`` after ``outcome`` was reported at ``now``, and the events to journal.

    Always an ``outcome`` event (with ``retry_at`` for a quota), then a ``backend_health``
    event if the status changed.
    """
    ledger, events = observe(backend, ledger, now, policy)
    after = ledger.report(outcome, now, policy, reset_at)
    payload: dict[str, Any] = {"backend": backend, "outcome": outcome.value}
    if outcome is Outcome.QUOTA:
        payload["retry_at"] = after.cooling_until
    events.append((OUTCOME, payload, now))
    status = after.status(now, policy)[0]
    if status is not after.announced:
        after = after.announce(status)
        events.append(_health_event(backend, after, now, policy, now))
    return after, events


def restored(
    backend: str, ledger: Ledger, now: float, policy: HealthPolicy
) -> tuple[Ledger, list[HealthEvent]]:
    """A fresh ledger (the operator forgot what was learned), and the events to journal."""
    ledger, events = observe(backend, ledger, now, policy)
    if ledger.announced is not BackendStatus.HEALTHY:
        events.append(_health_event(backend, FRESH, now, policy, now))
    return FRESH, events


def unlearned(backend: str, outcome: Outcome, reset_at: float | None, now: float) -> HealthEvent:
    """The ``outcome`` event of a report while learning is off (it changes nothing else)."""
    payload: dict[str, Any] = {"backend": backend, "outcome": outcome.value}
    if outcome is Outcome.QUOTA and reset_at is not None:
        payload["retry_at"] = reset_at
    return OUTCOME, payload, now


def took_probe(ledger: Ledger, now: float, policy: HealthPolicy) -> Ledger:
    """``ledger`` after a selection returned its backend: a probe slot taken if it is probing."""
    if ledger.status(now, policy)[0] is BackendStatus.PROBING:
        return ledger.take_probe(now, policy)
    return ledger


def held_out(ledgers: Mapping[str, Ledger], now: float, policy: HealthPolicy) -> frozenset[str]:
    """The backends learned state makes ineligible at ``now``."""
    return frozenset(backend for backend, ledger in ledgers.items() if not ledger.available(now, policy))


def retry_at(ledgers: Mapping[str, Ledger], backends: Iterable[str], now: float) -> float | None:
    """The earliest time one of ``backends`` (held out by ``ledgers``) is back, or ``None``."""
    times = [ledgers[b].back_at(now) for b in backends if b in ledgers]
    return min(times) if times else None
