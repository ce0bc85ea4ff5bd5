"""beamrouting: choose the backend a new agent session starts on.

The engine (:class:`RoutingEngine`) is pure and synchronous; :class:`Router` serves it from
supervised actors for async orchestrators. :class:`RedisStore` (the ``redis`` extra) shares
the routing state of a fleet; redis-py is imported when the first one is made, so
``import beamrouting`` works without the extra. The store protocol is in :mod:`beamrouting.store`, test helpers in
:mod:`beamrouting.testing`.
"""

import sys as _sys
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from ._core._catalog import DEFAULT_CAPABILITIES as _DEFAULT_CAPABILITIES
from ._core._catalog import BackendSpec, Catalog
from ._core._engine import RoutePlan, RoutingEngine
from ._core._errors import (
    ActorCrashed,
    BackendAtCapacity,
    BackendNotEligible,
    BeamRoutingError,
    CallTimeout,
    CatalogError,
    ConfigError,
    InvalidAffinityKey,
    InvalidFallbackPolicy,
    InvalidHealthStatus,
    InvalidPolicy,
    InvalidPolicyProfile,
    InvalidRouteRequest,
    NoBackendAvailable,
    NoBackendSupportsCapabilities,
    PolicyDenied,
    RouterClosed,
    RouterUnavailable,
    RoutingError,
    SessionExists,
    StoreDataError,
    StoreUnavailable,
    TooManySessions,
    UnknownBackend,
    UnknownCapability,
    UnsupportedRouteKey,
)
from ._core._explain import BackendVerdict, Explanation
from ._core._health import BackendState, BackendStatus, HealthPolicy, Outcome
from ._core._profiles import PolicyProfile, ProfileRule
from ._core._request import RequestLimits, RequestNormalizer, RouteRequest
from ._core._settings import RoutingSettings
from ._core._types import FallbackPolicy, Health, JournalEvent, Policy, RouteDecision, SessionHandle
from ._runtime._config import Config, RouterOptions, StoreConfig, load_config
from ._runtime._observability import RouterObserver
from ._runtime._router import Router, RouterSession, RouterState, RouterStatistics
from ._runtime._subscription import Subscription, SubscriptionGap
from ._store._memory import MemoryStore
from ._store._protocol import JournalFeed, Store, StoreCrash

if TYPE_CHECKING or "pdoc" in _sys.modules:
    # Imported on first use otherwise (see __getattr__); the API reference documents it here.
    from ._store._redis import RedisStore

DEFAULT_CAPABILITIES: tuple[str, ...] = _DEFAULT_CAPABILITIES
"""The capabilities of the default catalogue; every built-in backend supports all of them."""

__version__: str
"""The installed distribution's version (defined once, in ``pyproject.toml``)."""
try:
    __version__ = _metadata.version("beamrouting")
except _metadata.PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_CAPABILITIES",
    "ActorCrashed",
    "BackendAtCapacity",
    "BackendNotEligible",
    "BackendSpec",
    "BackendState",
    "BackendStatus",
    "BackendVerdict",
    "BeamRoutingError",
    "CallTimeout",
    "Catalog",
    "CatalogError",
    "Config",
    "ConfigError",
    "Explanation",
    "FallbackPolicy",
    "Health",
    "HealthPolicy",
    "InvalidAffinityKey",
    "InvalidFallbackPolicy",
    "InvalidHealthStatus",
    "InvalidPolicy",
    "InvalidPolicyProfile",
    "InvalidRouteRequest",
    "JournalEvent",
    "JournalFeed",
    "MemoryStore",
    "NoBackendAvailable",
    "NoBackendSupportsCapabilities",
    "Outcome",
    "Policy",
    "PolicyDenied",
    "PolicyProfile",
    "ProfileRule",
    "RedisStore",
    "RequestLimits",
    "RequestNormalizer",
    "RouteDecision",
    "RoutePlan",
    "RouteRequest",
    "Router",
    "RouterClosed",
    "RouterObserver",
    "RouterOptions",
    "RouterSession",
    "RouterState",
    "RouterStatistics",
    "RouterUnavailable",
    "RoutingEngine",
    "RoutingError",
    "RoutingSettings",
    "SessionExists",
    "SessionHandle",
    "Store",
    "StoreConfig",
    "StoreCrash",
    "StoreDataError",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionGap",
    "TooManySessions",
    "UnknownBackend",
    "UnknownCapability",
    "UnsupportedRouteKey",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    """``RedisStore``, imported on first use (so ``import beamrouting`` loads no Redis code)."""
    if name == "RedisStore":
        from ._store._redis import RedisStore

        globals()["RedisStore"] = RedisStore  # found directly from now on
        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
