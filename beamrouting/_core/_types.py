"""Public value types: the policy enums, the decision, journal events and session handles."""

from __future__ import annotations

import enum
from typing import Any

import msgspec

__all__ = [
    "FallbackPolicy",
    "Health",
    "JournalEvent",
    "Policy",
    "RouteDecision",
    "SessionHandle",
]


class Policy(enum.StrEnum):
    """How a backend is chosen among the eligible ones."""

    EXPLICIT = "explicit"
    """Use the requested ``backend`` (or the first candidate when none is given)."""
    STICKY = "sticky"
    """Keep every request with one ``affinity_key`` on one backend."""
    ROUND_ROBIN = "round_robin"
    """Rotate through the ordered candidates."""
    FAILOVER = "failover"
    """Move away from ``last_backend`` when another candidate remains."""
    CAPABILITY_FIRST = "capability_first"
    """First eligible backend that supports every requested capability."""
    PREFERRED_THEN_FALLBACK = "preferred_then_fallback"
    """Preferred backends first, then fallback ones, then (optionally) the rest."""
    LEAST_LOADED = "least_loaded"
    """The candidate with the fewest live sessions (ties take turns). Not in the reference engine."""
    WEIGHTED = "weighted"
    """Smooth weighted round robin over the candidates, by their weights. Not in the reference engine."""


class FallbackPolicy(enum.StrEnum):
    """Whether backends named neither preferred nor fallback may be chosen."""

    NONE = "none"
    """Only preferred and fallback backends are candidates."""
    AVAILABLE = "available"
    """Every other eligible backend follows the preferred and fallback ones."""


class Health(enum.StrEnum):
    """Per-request health of a backend; ``unhealthy`` and ``down`` make it ineligible."""

    HEALTHY = "healthy"
    """Eligible (the default for a backend the request does not mention)."""
    DEGRADED = "degraded"
    """Still eligible: the caller knows it is struggling."""
    UNHEALTHY = "unhealthy"
    """Ineligible for this request."""
    DOWN = "down"
    """Ineligible for this request."""


class RouteDecision(msgspec.Struct, frozen=True, omit_defaults=True):
    """The outcome of a successful selection.

    ``candidates`` starts with ``backend``; ``fallback_chain`` is ``candidates[1:]``, the
    order in which a caller should retry if the chosen backend fails to start.
    """

    backend: str
    """The chosen backend (canonical name)."""
    candidates: tuple[str, ...]
    """The ordered eligible backends the policy chose from, ``backend`` first."""
    policy: Policy
    """The policy that decided."""
    reasons: tuple[str, ...]
    """Why, in words (``"selected by round robin policy"``, ...)."""
    fallback_chain: tuple[str, ...]
    """``candidates[1:]``: where to retry, in order, if ``backend`` fails to start."""
    affinity_key: str | None = None
    """The request's sticky affinity key, if it had one."""
    policy_profile_id: str | None = None
    """The policy profile the decision was checked against, if any."""

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as plain JSON-compatible data, without unset optional fields."""
        out: dict[str, Any] = {
            "backend": self.backend,
            "candidates": list(self.candidates),
            "policy": self.policy.value,
            "reasons": list(self.reasons),
            "fallback_chain": list(self.fallback_chain),
        }
        if self.affinity_key is not None:
            out["affinity_key"] = self.affinity_key
        if self.policy_profile_id is not None:
            out["policy_profile_id"] = self.policy_profile_id
        return out


class JournalEvent(msgspec.Struct, frozen=True):
    """One entry of the decision journal (``routing_selected`` or ``audit``)."""

    event_id: str
    """A unique id (the journal's run id and the sequence number)."""
    sequence: int
    """The event's position in the journal, from 1, never reused."""
    timestamp: int
    """Wall-clock time in milliseconds since the Unix epoch."""
    event_type: str
    """``routing_selected``, ``audit``, ``outcome`` or ``backend_health``."""
    tags: tuple[str, ...]
    """Labels for filtering (``routing``, ``audit``, ``health``)."""
    payload: dict[str, Any]
    """The event's data (for a decision: the request's summary and the decision)."""

    def to_dict(self) -> dict[str, Any]:
        """Return the event as plain JSON-compatible data."""
        return {
            "event_id": self.event_id,
            "sequence": self.sequence,
            "timestamp": self.timestamp,
            "event_type": self.event_type,
            "tags": list(self.tags),
            "payload": self.payload,
        }


class SessionHandle(msgspec.Struct, frozen=True):
    """A live session as the session registry knows it.

    Passing a handle to ``select_backend(handle, request)`` routes with
    ``last_backend`` set to the session's backend.
    """

    session_id: str
    """The session's id."""
    backend: str
    """The backend the session runs on (canonical name)."""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    """What the orchestrator registered with it (plain data)."""
