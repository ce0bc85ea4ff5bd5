"""Helpers of the engine's unit tests (tests/core): the error classes by code, the default
catalogue's spellings, and short ways to read a decision or an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from beamrouting import (
    BackendNotEligible,
    InvalidAffinityKey,
    InvalidFallbackPolicy,
    InvalidHealthStatus,
    InvalidPolicy,
    InvalidPolicyProfile,
    InvalidRouteRequest,
    NoBackendAvailable,
    NoBackendSupportsCapabilities,
    PolicyDenied,
    RoutingEngine,
    RoutingError,
    UnknownBackend,
    UnknownCapability,
    UnsupportedRouteKey,
)

__all__ = ["ALIASES", "ERROR_CLASSES", "RR", "backends", "error_of", "outcome"]


ALIASES = {
    "claude": ("claude", "claude_code", "claude_agent_sdk"),
    "codex": ("codex", "codex_cli", "codex_app_server"),
    "gemini": ("gemini", "gemini_cli", "gemini_cli_client"),
    "opencode": ("opencode", "opencode_client"),
    "copilot": ("copilot", "copilot_client"),
}
"""Every accepted spelling of each backend of the default catalogue."""


ERROR_CLASSES: dict[str, type[RoutingError]] = {
    "unsupported_route_key": UnsupportedRouteKey,
    "invalid_policy": InvalidPolicy,
    "unknown_backend": UnknownBackend,
    "invalid_route_request": InvalidRouteRequest,
    "unknown_capability": UnknownCapability,
    "invalid_fallback_policy": InvalidFallbackPolicy,
    "invalid_affinity_key": InvalidAffinityKey,
    "invalid_health_status": InvalidHealthStatus,
    "backend_not_eligible": BackendNotEligible,
    "no_backend_supports_capabilities": NoBackendSupportsCapabilities,
    "no_backend_available": NoBackendAvailable,
    "policy_denied": PolicyDenied,
    "invalid_policy_profile": InvalidPolicyProfile,
}
"""Each routing error class by its code."""


RR = {"policy": "round_robin"}


def error_of(call: Callable[[], object]) -> RoutingError:
    """The RoutingError ``call`` raises (fails the test if it returns)."""
    with pytest.raises(RoutingError) as info:
        call()
    return info.value


def outcome(engine: RoutingEngine, *args: Any) -> Any:
    """A decision as a dict, or ``(code, detail)`` of the error."""
    try:
        return engine.select_backend(*args).to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


def backends(engine: RoutingEngine, request: Mapping[str, Any], times: int) -> list[str]:
    """The backends of ``times`` selections of ``request``, in order."""
    return [engine.select_backend(request).backend for _ in range(times)]
