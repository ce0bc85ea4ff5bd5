"""The exception tree of beamrouting.

Every exception the library raises on purpose derives from :class:`BeamRoutingError`::

    BeamRoutingError
    ├── RoutingError                    a request cannot be routed (has ``code`` and ``detail``)
    │   ├── UnsupportedRouteKey           unsupported_route_key
    │   ├── InvalidPolicy                 invalid_policy
    │   ├── UnknownBackend                unknown_backend
    │   ├── InvalidRouteRequest           invalid_route_request
    │   ├── UnknownCapability             unknown_capability
    │   ├── InvalidFallbackPolicy         invalid_fallback_policy
    │   ├── InvalidAffinityKey            invalid_affinity_key
    │   ├── InvalidHealthStatus           invalid_health_status
    │   ├── BackendNotEligible            backend_not_eligible
    │   ├── NoBackendSupportsCapabilities no_backend_supports_capabilities
    │   ├── NoBackendAvailable            no_backend_available
    │   ├── PolicyDenied                  policy_denied
    │   └── InvalidPolicyProfile          invalid_policy_profile
    ├── CatalogError (also ValueError)  a catalogue definition is malformed
    ├── ConfigError (also ValueError)   a configuration is invalid, or cannot be applied by reload
    ├── ActorCrashed                    the actor handling this call crashed (it was restarted)
    ├── RouterUnavailable               the supervisor gave up after too many crashes
    ├── RouterClosed                    the router is shut down or shutting down
    ├── CallTimeout                     no reply (or no mailbox room) within the call timeout
    ├── StoreUnavailable                the shared state store cannot be reached
    ├── StoreDataError                  the shared store holds a value it would not have written
    ├── SessionExists                   router.session() was given the id of a live session
    ├── TooManySessions                 one more session would pass max_sessions
    └── BackendAtCapacity               a new session would pass its backend's limit

``RoutingError.detail`` is always JSON-compatible, so errors can be logged, compared and
sent over the wire as they are.
"""

from __future__ import annotations

import reprlib
from typing import Any, ClassVar, TypeAlias

__all__ = [
    "ActorCrashed",
    "BackendAtCapacity",
    "BackendNotEligible",
    "BeamRoutingError",
    "CallTimeout",
    "CatalogError",
    "ConfigError",
    "InvalidAffinityKey",
    "InvalidFallbackPolicy",
    "InvalidHealthStatus",
    "InvalidPolicy",
    "InvalidPolicyProfile",
    "InvalidRouteRequest",
    "JSONValue",
    "NoBackendAvailable",
    "NoBackendSupportsCapabilities",
    "PolicyDenied",
    "RouterClosed",
    "RouterUnavailable",
    "RoutingError",
    "SessionExists",
    "StoreDataError",
    "StoreUnavailable",
    "TooManySessions",
    "UnknownBackend",
    "UnknownCapability",
    "UnsupportedRouteKey",
    "error_for_code",
    "json_detail",
]

JSONValue: TypeAlias = Any
"""A value made only of ``str``, ``int``, ``float``, ``bool``, ``None``, lists and str-keyed dicts."""

_SCALARS = (str, int, float, bool, type(None))


_MAX_DEPTH = 16
_MAX_ITEMS = 1024
_CONTAINERS = (list, tuple, dict, set, frozenset)


def json_detail(value: object, _depth: int = 0) -> JSONValue:
    """Return ``value`` as a JSON-compatible error detail.

    Scalars are kept as they are (subclasses such as a ``StrEnum`` member become the plain
    base value), tuples and lists become lists, dicts with ``str`` keys keep their shape,
    and anything else becomes its ``repr()``. A list, tuple, dict or set of more than 1,024
    entries becomes ``"<list of N entries>"`` (its type and size, none of its entries read),
    so an oversized value costs no more to reject than a small one.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, _CONTAINERS):
        size = _base_len(value)
        if size > _MAX_ITEMS:
            return f"<{kind.__name__} of {size} entries>"
    # The base types' own methods: a subclass may override __str__ or __repr__ to raise.
    if isinstance(value, bool):
        return bool(int.__int__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if _depth < _MAX_DEPTH:  # deeper (or cyclic) values are given as their repr()
        try:
            if kind is list or kind is tuple:
                return [json_detail(item, _depth + 1) for item in value]  # type: ignore[attr-defined]
            if kind is dict and all(type(key) is str for key in value):  # type: ignore[attr-defined]
                return {key: json_detail(item, _depth + 1) for key, item in value.items()}  # type: ignore[attr-defined]
        except Exception:
            pass
    try:
        return repr(value)
    except Exception:  # a hostile __repr__ must not turn a typed error into a crash
        return f"<unrepresentable {type(value).__name__}>"


def _message_repr() -> reprlib.Repr:
    """A ``repr()`` for messages that shows at most the first characters and entries of a detail."""
    bounded = reprlib.Repr()
    bounded.maxstring = bounded.maxother = 1024
    bounded.maxlist = bounded.maxtuple = bounded.maxdict = bounded.maxset = bounded.maxfrozenset = 64
    bounded.maxlevel = _MAX_DEPTH
    return bounded


_MESSAGE_REPR = _message_repr()
"""How a detail is shown in an error's message: a huge detail costs no more than a small one."""


def _base_len(value: object) -> int:
    """The length of a built-in container by its base type's own method (a subclass may override ``__len__``)."""
    if isinstance(value, list):
        return list.__len__(value)
    if isinstance(value, tuple):
        return tuple.__len__(value)
    if isinstance(value, dict):
        return dict.__len__(value)
    if isinstance(value, set):
        return set.__len__(value)
    if isinstance(value, frozenset):
        return frozenset.__len__(value)
    return 0


class BeamRoutingError(Exception):
    """Root of every exception beamrouting raises on purpose.

    ``code`` names the kind of failure (a class attribute, the same for every instance), as
    counted by :meth:`beamrouting.Router.statistics`.
    """

    code: ClassVar[str] = "beamrouting_error"
    """The kind of failure, the same for every instance of the class (``policy_denied``, ``call_timeout``, ...)."""


class RoutingError(BeamRoutingError):
    """A request cannot be routed.

    ``RoutingError(detail=None)``: ``code`` names the failure (one of the contract's error
    codes) and ``detail`` carries the offending value, always JSON-compatible (other values
    become their ``repr()``).
    """

    code = "routing_error"
    _summary: ClassVar[str] = "the request cannot be routed"

    def __init__(self, detail: object = None) -> None:
        self.detail: JSONValue = json_detail(detail)
        """The offending value (JSON-compatible: a name, a list, a mapping of what failed)."""
        super().__init__(f"{self.code}: {self._summary} ({_MESSAGE_REPR.repr(self.detail)})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.detail,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RoutingError):
            return NotImplemented
        return self.code == other.code and self.detail == other.detail

    __hash__ = BeamRoutingError.__hash__

    def to_dict(self) -> dict[str, JSONValue]:
        """Return ``{"code": ..., "detail": ...}``."""
        return {"code": self.code, "detail": self.detail}


class UnsupportedRouteKey(RoutingError):
    """The request has a key the contract does not accept."""

    code = "unsupported_route_key"
    _summary = "the request has a key that is not supported"


class InvalidPolicy(RoutingError):
    """``policy`` is not one of the six routing policies."""

    code = "invalid_policy"
    _summary = "policy is not a known routing policy"


class UnknownBackend(RoutingError):
    """A backend name is not in the catalogue (nor one of its aliases)."""

    code = "unknown_backend"
    _summary = "no backend of the catalogue has this name"


class InvalidRouteRequest(RoutingError):
    """The request (or one of its parts) has the wrong shape."""

    code = "invalid_route_request"
    _summary = "the request is malformed"


class UnknownCapability(RoutingError):
    """A requested capability id is not in the catalogue."""

    code = "unknown_capability"
    _summary = "the capability id is not known"


class InvalidFallbackPolicy(RoutingError):
    """``fallback_policy`` is neither ``none`` nor ``available``."""

    code = "invalid_fallback_policy"
    _summary = "fallback_policy must be 'none' or 'available'"


class InvalidAffinityKey(RoutingError):
    """``affinity_key`` is not a non-empty string within ``max_key_length`` characters."""

    code = "invalid_affinity_key"
    _summary = "affinity_key must be a non-empty string within the key length limit"


class InvalidHealthStatus(RoutingError):
    """A health value is not ``healthy``, ``degraded``, ``unhealthy`` or ``down``."""

    code = "invalid_health_status"
    _summary = "health must be healthy, degraded, unhealthy or down"


class BackendNotEligible(RoutingError):
    """The explicitly requested backend is excluded, unhealthy or lacks a capability."""

    code = "backend_not_eligible"
    _summary = "the requested backend is not eligible for this request"


class NoBackendSupportsCapabilities(RoutingError):
    """No eligible backend supports every requested capability."""

    code = "no_backend_supports_capabilities"
    _summary = "no eligible backend supports all requested capabilities"


class NoBackendAvailable(RoutingError):
    """Nothing is left to choose from once exclusions, health and capabilities apply."""

    code = "no_backend_available"
    _summary = "no backend is available for this request"


class PolicyDenied(RoutingError):
    """The request's policy profile denied the selected backend."""

    code = "policy_denied"
    _summary = "the policy profile denied the decision"


class InvalidPolicyProfile(RoutingError):
    """A policy profile is malformed (raised when it is stored)."""

    code = "invalid_policy_profile"
    _summary = "the policy profile is malformed"


class CatalogError(BeamRoutingError, ValueError):
    """A catalogue definition is malformed (duplicate names, bad aliases, unknown capabilities)."""

    code = "catalog_error"


class ConfigError(BeamRoutingError, ValueError):
    """A configuration is invalid, or :meth:`beamrouting.Router.reload` cannot apply it.

    ``ConfigError(reason, *, field=None, source=None, line=None)``: ``reason`` says what is
    wrong; ``field`` names the setting in dotted form (``"store.url"``,
    ``"catalog.backends[1].name"``); ``source`` is the file read and ``line`` the line of
    the file it is on, where known. The message puts them together:
    ``beamrouting.toml:12: store.url: ...``.
    """

    code = "config_error"

    def __init__(
        self, reason: str, *, field: str | None = None, source: str | None = None, line: int | None = None
    ) -> None:
        self.reason = reason
        """What is wrong."""
        self.field = field
        """The setting, in dotted form (``None``: the file as a whole)."""
        self.source = source
        """The file read (``None``: a configuration built in code)."""
        self.line = line
        """The line of ``source`` the setting is on (1-based), where known."""
        where = "" if source is None else f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{field}: {reason}" if field else f"{where}{reason}")


class ActorCrashed(BeamRoutingError):
    """The actor crashed while handling this call; it has been restarted with its state."""

    code = "actor_crashed"


class RouterUnavailable(BeamRoutingError):
    """The supervisor gave up after too many crashes; the router no longer serves calls."""

    code = "router_unavailable"


class RouterClosed(BeamRoutingError):
    """The router is shut down, or shutting down, and takes no more calls."""

    code = "router_closed"


class CallTimeout(BeamRoutingError, TimeoutError):
    """No reply arrived (or no mailbox room was found) within the call timeout."""

    code = "call_timeout"


class StoreUnavailable(BeamRoutingError):
    """The shared state store (Redis) cannot be reached or did not answer in time."""

    code = "store_unavailable"


class SessionExists(BeamRoutingError):
    """:meth:`beamrouting.Router.session` was given the id of a live session."""

    code = "session_exists"


class BackendAtCapacity(BeamRoutingError):
    """Registering a new session on a backend would pass its limit of live sessions."""

    code = "backend_at_capacity"


class TooManySessions(BeamRoutingError):
    """Registering one more session would pass the store's ``max_sessions`` (live sessions are never evicted)."""

    code = "too_many_sessions"


class StoreDataError(BeamRoutingError):
    """A value read from the shared store is not one the store would have written.

    Raised only by the calls that need that value; its message names the key and what was
    wrong. The store stays up: it is not an outage, and other calls go on.
    """

    code = "store_data_error"


_BY_CODE: dict[str, type[BeamRoutingError]] = {
    cls.code: cls
    for cls in (
        UnsupportedRouteKey,
        InvalidPolicy,
        UnknownBackend,
        InvalidRouteRequest,
        UnknownCapability,
        InvalidFallbackPolicy,
        InvalidAffinityKey,
        InvalidHealthStatus,
        BackendNotEligible,
        NoBackendSupportsCapabilities,
        NoBackendAvailable,
        PolicyDenied,
        InvalidPolicyProfile,
        SessionExists,
        TooManySessions,
        BackendAtCapacity,
        ActorCrashed,
        RouterUnavailable,
        RouterClosed,
        CallTimeout,
        StoreUnavailable,
        StoreDataError,
    )
}


def error_for_code(code: str, detail: object = None) -> BeamRoutingError:
    """Rebuild the error whose class has ``code`` (used to rebuild errors from messages).

    A routing error gets ``detail`` as its detail; any other error gets it as its message.
    An unknown code gives a plain :class:`RoutingError`.
    """
    return _BY_CODE.get(code, RoutingError)(detail)
