"""What a store holds out of a selection beyond the request's own exclusions, and why.

Three things make a backend ineligible although the request would take it: what was
learned from reported outcomes (a cooldown, an ejection, a full set of probe slots), its
limit of live sessions, and a filtering policy profile. Each is held out exactly as if the
request had marked the backend ``down``; :class:`Holds` collects them with their reasons,
for the planner (:meth:`beamrouting._core._planner.Planner.plan_with`),
for explanations and for the errors that say when to retry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

from ._health import HealthPolicy, Ledger
from ._profiles import PolicyProfile
from ._request import RouteRequest

__all__ = [
    "NO_HOLDS",
    "Holds",
    "LearnedHolds",
    "at_capacity",
    "collect_holds",
    "filter_denied",
    "learned_holds",
]


class Holds:
    """Backends held out of one selection (each mapping: backend -> why).

    ``Holds(learned, back, full, denied, profile_id=None)``; immutable by convention (the
    engine reuses one while the learned state stays the same).
    """

    __slots__ = ("back", "denied", "full", "learned", "profile_id", "unavailable")

    def __init__(
        self,
        learned: Mapping[str, str],
        back: Mapping[str, float],
        full: Mapping[str, str],
        denied: Mapping[str, str],
        profile_id: str | None = None,
    ) -> None:
        self.learned = learned
        """Held out by what was learned (``"cooling until ... (quota)"``)."""
        self.back = back
        """When each learned-out backend is next eligible (UNIX seconds)."""
        self.full = full
        """At their limit of live sessions (``"at capacity 10/10"``)."""
        self.denied = denied
        """Removed by a filtering profile: the deny reason of the rule that removed each."""
        self.profile_id = profile_id
        """The filtering profile's id, when one took part."""
        self.unavailable: frozenset[str] = frozenset((*learned, *full, *denied))
        """Every backend held out."""

    def __repr__(self) -> str:
        return (
            f"Holds(learned={self.learned!r}, back={self.back!r}, full={self.full!r}, "
            f"denied={self.denied!r}, profile_id={self.profile_id!r})"
        )

    def reasons(self) -> dict[str, str]:
        """Why each held-out backend is out, for an explanation (all reasons, joined)."""
        reasons: dict[str, list[str]] = {}
        for backend, reason in (*self.learned.items(), *self.full.items()):
            reasons.setdefault(backend, []).append(reason)
        for backend in self.denied:
            reasons.setdefault(backend, []).append(f"denied by profile {self.profile_id}")
        return {backend: "; ".join(why) for backend, why in reasons.items()}

    def retry_at(self, backends: Iterable[str]) -> float | None:
        """The earliest time one of ``backends`` held out by learned state is back, or ``None``."""
        times = [self.back[b] for b in backends if b in self.back]
        return min(times) if times else None


class LearnedHolds(NamedTuple):
    """What learned state holds out from ``since`` until ``until`` (nothing changes between).

    Statuses change only at a deadline (a cooldown's or an ejection's end, a probe slot
    freed) or when an outcome is reported, so a store may reuse this until ``until`` or
    until its ledgers change.
    """

    holds: Holds
    """The learned part of the holds (nothing full, nothing denied)."""
    since: float
    """When it was computed."""
    until: float
    """The earliest deadline after ``since`` (infinite when there is none)."""


def learned_holds(ledgers: Mapping[str, Ledger], now: float, policy: HealthPolicy) -> LearnedHolds:
    """What ``ledgers`` hold out at ``now`` under ``policy``, and until when that holds."""
    learned: dict[str, str] = {}
    back: dict[str, float] = {}
    until = math.inf
    for backend, ledger in ledgers.items():
        reason = ledger.explain(now, policy)
        if reason is not None:
            learned[backend] = reason
            back[backend] = ledger.back_at(now)
        change = ledger.next_change(now)
        if change < until:
            until = change
    return LearnedHolds(Holds(learned, back, {}, {}), now, until)


NO_HOLDS: Final = Holds({}, {}, {}, {})
"""Nothing held out (nothing reported, nothing limited, no filtering profile)."""


def filter_denied(profile: PolicyProfile, req: RouteRequest, backends: Iterable[str]) -> dict[str, str]:
    """The ``backends`` a filtering ``profile`` denies for ``req``, each with the deny reason.

    Each candidate is checked alone: the context holds the candidate ``backend`` and the
    ``request`` (no ``decision``, since there is none yet).
    """
    request: dict[str, Any] = req.summary()
    request["policy_profile_id"] = req.policy_profile_id
    denied = {}
    for backend in backends:
        reason = profile.evaluate(lambda backend=backend: {"backend": backend, "request": request})  # type: ignore[misc]
        if reason is not None:
            denied[backend] = reason
    return denied


def at_capacity(live: Mapping[str, int], limits: Mapping[str, int]) -> dict[str, str]:
    """Each backend of ``limits`` whose ``live`` sessions reached its limit, with why (``"at capacity 10/10"``)."""
    return {
        backend: f"at capacity {live.get(backend, 0)}/{limit}"
        for backend, limit in limits.items()
        if live.get(backend, 0) >= limit
    }


def collect_holds(
    req: RouteRequest,
    eligible: Callable[[RouteRequest], Iterable[str]],
    *,
    ledgers: Mapping[str, Ledger],
    now: float,
    policy: HealthPolicy | None,
    live: Mapping[str, int],
    limits: Mapping[str, int],
    profile: PolicyProfile | None,
    learned: Holds | None = None,
) -> Holds:
    """What a store's state holds out of selecting for ``req`` at ``now`` (pure; every store composes it the same way).

    ``ledgers`` are the backends' learned state (ignored when ``policy`` is ``None``),
    ``live`` and ``limits`` their live sessions and limits, ``profile`` the stored profile
    the request names (``None`` if it names none or none is stored): a filtering one
    removes the candidates it denies among ``eligible(req)``. ``learned``: what
    :func:`learned_holds` found at ``now``, when the caller kept it (else computed here).
    """
    if learned is None:
        learned = learned_holds(ledgers, now, policy).holds if ledgers and policy is not None else NO_HOLDS
    full = at_capacity(live, limits) if limits else {}
    denied: dict[str, str] = {}
    if profile is not None and profile.filters:
        denied = filter_denied(profile, req, eligible(req))
    if not full and not denied:
        return learned
    return Holds(learned.learned, learned.back, full, denied, req.policy_profile_id if denied else None)
