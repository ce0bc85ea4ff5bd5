"""What a store holds out of a selection beyond the request's own exclusions, and why.

Three things make a backend ineligible although the request would take it: what was
learned from reported outcomes (a cooldown, an ejection, a full set of probe slots), its
limit of live sessions, and a filtering policy profile. Each is held out exactly as if the
request had marked the backend ``down``; :class:`Holds` collects them with their reasons,
for the planner (:meth:`Planner.plan_with <beamrouting._core._planner.Planner.plan_with>`),
for explanations and for the errors that say when to retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

from ._health import HealthPolicy, Ledger
from ._profiles import PolicyProfile
from ._request import RouteRequest

__all__ = ["NO_HOLDS", "Holds", "at_capacity", "collect_holds", "filter_denied"]


class Holds(NamedTuple):
    """Backends held out of one selection (each mapping: backend -> why)."""

    learned: Mapping[str, str]
    """Held out by what was learned (``"cooling until ... (quota)"``)."""
    back: Mapping[str, float]
    """When each learned-out backend is next eligible (UNIX seconds)."""
    full: Mapping[str, str]
    """At their limit of live sessions (``"at capacity 10/10"``)."""
    denied: Mapping[str, str]
    """Removed by a filtering profile: the deny reason of the rule that removed each."""
    profile_id: str | None = None
    """The filtering profile's id, when one took part."""

    @property
    def unavailable(self) -> frozenset[str]:
        """Every backend held out."""
        return frozenset((*self.learned, *self.full, *self.denied))

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
) -> Holds:
    """What a store's state holds out of selecting for ``req`` at ``now`` (pure; every store composes it the same way).

    ``ledgers`` are the backends' learned state (ignored when ``policy`` is ``None``),
    ``live`` and ``limits`` their live sessions and limits, ``profile`` the stored profile
    the request names (``None`` if it names none or none is stored): a filtering one
    removes the candidates it denies among ``eligible(req)``.
    """
    learned: dict[str, str] = {}
    back: dict[str, float] = {}
    if ledgers and policy is not None:
        for backend, ledger in ledgers.items():
            reason = ledger.explain(now, policy)
            if reason is not None:
                learned[backend] = reason
                back[backend] = ledger.back_at(now)
    full = at_capacity(live, limits) if limits else {}
    denied: dict[str, str] = {}
    if profile is not None and profile.filters:
        denied = filter_denied(profile, req, eligible(req))
    return Holds(learned, back, full, denied, req.policy_profile_id if denied else None)
