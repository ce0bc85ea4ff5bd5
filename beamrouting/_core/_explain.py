"""Why a request routes where it does: a typed, side-effect-free explanation."""

from __future__ import annotations

from typing import Any

import msgspec

from ._types import Health, RouteDecision

__all__ = ["BackendVerdict", "Explanation"]


class BackendVerdict(msgspec.Struct, frozen=True):
    """One backend of the catalogue and whether (and why not) it is eligible."""

    backend: str
    """The backend (canonical name)."""
    eligible: bool
    """Whether the request may choose it."""
    health: Health
    """Its health as the request gives it."""
    reasons: tuple[str, ...]
    """Why it is out: ``"excluded"``, ``"health is down"``, ``"missing capabilities [a,b]"``."""


class Explanation(msgspec.Struct, frozen=True):
    """What :meth:`RoutingEngine.explain` found, without changing any state.

    ``decision`` is what ``select_backend`` would return now; when it would fail instead,
    ``decision`` is ``None`` and ``error`` holds ``{"code": ..., "detail": ...}``. For
    ``round_robin`` and ``sticky`` the decision reflects the current counters and
    bindings without advancing them.
    """

    request: dict[str, Any]
    """The normalised request, as the journal shows it."""
    backends: tuple[BackendVerdict, ...]
    """Every backend of the catalogue, in available order, with its verdict."""
    eligible: tuple[str, ...]
    """The eligible backends, in available order."""
    preferred: tuple[str, ...]
    """The eligible preferred backends, in the request's order."""
    fallback: tuple[str, ...]
    """The eligible fallback backends, in the request's order."""
    remaining: tuple[str, ...]
    """The other eligible backends, when the fallback policy allows them."""
    ordered: tuple[str, ...]
    """The candidates in the order the policy considers them."""
    decision: RouteDecision | None = None
    """What ``select_backend`` would return now (``None`` when it would fail)."""
    error: dict[str, Any] | None = None
    """``{"code": ..., "detail": ...}`` of the error it would raise instead."""

    def to_dict(self) -> dict[str, Any]:
        """Return the explanation as plain JSON-compatible data."""
        return {
            "request": self.request,
            "backends": [
                {
                    "backend": v.backend,
                    "eligible": v.eligible,
                    "health": v.health.value,
                    "reasons": list(v.reasons),
                }
                for v in self.backends
            ],
            "eligible": list(self.eligible),
            "preferred": list(self.preferred),
            "fallback": list(self.fallback),
            "remaining": list(self.remaining),
            "ordered": list(self.ordered),
            "decision": None if self.decision is None else self.decision.to_dict(),
            "error": self.error,
        }
