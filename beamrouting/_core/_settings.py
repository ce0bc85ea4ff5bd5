"""What a running router can change at once: policy profiles, health policy, limits and weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ._catalog import MAX_WEIGHT, Catalog, backend_numbers
from ._health import HealthPolicy
from ._profiles import PolicyProfile, check_profile_id, parse_profile

__all__ = ["RoutingSettings"]

_DEFAULT_HEALTH: Final = HealthPolicy()


class RoutingSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The settings :meth:`beamrouting.Router.reload` applies in one step.

    Build it with :meth:`checked` (or take :attr:`beamrouting.Config.settings`): the profile set a router keeps exactly, the health policy
    (``None`` turns learning off), each limited backend's most live sessions and each
    weighted backend's weight, keyed by canonical backend names.
    """

    profiles: dict[str, PolicyProfile] = msgspec.field(default_factory=dict)
    """The policy profiles by id: after applying, exactly these are stored."""
    health: HealthPolicy | None = _DEFAULT_HEALTH
    """How reported outcomes change eligibility (``None``: learning is off)."""
    limits: dict[str, int] = msgspec.field(default_factory=dict)
    """The most live sessions each limited backend may have."""
    weights: dict[str, int] = msgspec.field(default_factory=dict)
    """Each weighted backend's weight for the ``weighted`` policy (1 when absent)."""

    @classmethod
    def checked(
        cls,
        catalog: Catalog,
        *,
        profiles: Mapping[str, Any] | None = None,
        health: HealthPolicy | None = _DEFAULT_HEALTH,
        limits: Mapping[str, int] | None = None,
        weights: Mapping[str, int] | None = None,
    ) -> RoutingSettings:
        """Validated settings for ``catalog``, with backends under their canonical names.

        ``profiles`` maps ids to profiles (mappings or :class:`beamrouting.PolicyProfile`);
        ``health`` is the :class:`beamrouting.HealthPolicy` (``None`` turns learning off);
        ``limits`` and ``weights`` map any accepted backend spelling to a positive ``int``
        (weights at most 10,000). Returns the :class:`RoutingSettings`. Raises
        :class:`beamrouting.InvalidPolicyProfile` for a malformed profile or id,
        :class:`TypeError` for a value of the wrong type and :class:`ValueError` for an
        unknown backend or a number out of range.
        """
        if profiles is not None and not isinstance(profiles, Mapping):
            raise TypeError(f"profiles must be a mapping of id to profile, not {type(profiles).__name__}")
        if health is not None and not isinstance(health, HealthPolicy):
            raise TypeError(f"health must be a HealthPolicy or None, not {type(health).__name__}")
        return cls(
            {check_profile_id(pid): parse_profile(profile) for pid, profile in (profiles or {}).items()},
            health,
            backend_numbers("limits", limits, catalog),
            backend_numbers("weights", weights, catalog, maximum=MAX_WEIGHT),
        )

    def recheck(self, catalog: Catalog) -> RoutingSettings:
        """These settings validated again for ``catalog`` (they may have been built directly).

        Returns settings equal to ``checked(catalog, ...)`` of these fields; raises what
        :meth:`checked` raises.
        """
        return self.checked(
            catalog, profiles=self.profiles, health=self.health, limits=self.limits, weights=self.weights
        )
