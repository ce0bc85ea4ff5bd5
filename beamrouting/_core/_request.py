"""The request normaliser: turns a caller's mapping into a typed, validated ``RouteRequest``.

It is pure and has no state, so the router runs it on the caller's side and raises exactly
the errors the engine would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ._catalog import Catalog
from ._checks import check_count, check_instance, is_text
from ._errors import (
    InvalidAffinityKey,
    InvalidFallbackPolicy,
    InvalidHealthStatus,
    InvalidPolicy,
    InvalidRouteRequest,
    RoutingError,
    UnknownBackend,
    UnknownCapability,
    UnsupportedRouteKey,
)
from ._types import FallbackPolicy, Health, Policy, SessionHandle

__all__ = ["ROUTE_KEYS", "RequestLimits", "RequestNormalizer", "RouteRequest", "merge_session"]

ROUTE_KEYS: Final = frozenset(
    {
        "policy",
        "backend",
        "preferred_backends",
        "excluded_backends",
        "fallback_backends",
        "capabilities",
        "last_backend",
        "fallback_policy",
        "affinity_key",
        "policy_profile_id",
        "health",
    }
)

_POLICIES: Final[dict[str, Policy]] = {p.value: p for p in Policy}
_FALLBACKS: Final[dict[str, FallbackPolicy]] = {p.value: p for p in FallbackPolicy}
_HEALTH: Final[dict[str, Health]] = {h.value: h for h in Health}
_INELIGIBLE: Final = frozenset({Health.UNHEALTHY, Health.DOWN})
_MISSING: Final = object()
_NORMALISED_CACHE_SIZE: Final = 1024
_REQUEST_CACHE_BYTES: Final = 1 << 22
"""Bytes of encoded requests the request cache may hold (4 MiB)."""
_PLAIN_TYPES: Final = frozenset({str, type(None), Policy, FallbackPolicy})
_RECENT_REQUESTS: Final = 64
_RECENT_BYTES: Final = 1 << 20
"""Bytes of encoded requests the identity memo of :meth:`RequestNormalizer.request_key` may hold (1 MiB)."""


def _refuse(value: object) -> object:
    raise TypeError(f"not plain data: {type(value).__name__}")


_encode_plain: Final = msgspec.msgpack.Encoder(enc_hook=_refuse).encode
"""Encodes plain data only: a ``str`` subclass (or any other type) reaches the hook, which refuses it."""
_EMPTY: tuple[str, ...] = ()


class RequestLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Size limits on what callers send, checked before any work proportional to the size.

    These are deliberate differences from the reference engine, which has none: they keep
    one caller's oversized input from costing every other caller time and memory.
    """

    max_key_length: int = 1024
    """Characters in an ``affinity_key``, a ``policy_profile_id`` or a session id."""
    max_list_entries: int = 256
    """Entries in any list or mapping of a request (its raw length, before removing duplicates),
    and keys of the request itself."""
    max_metadata_bytes: int = 65_536
    """Bytes of a session's metadata, msgpack-encoded."""

    def __post_init__(self) -> None:
        for name in ("max_key_length", "max_list_entries", "max_metadata_bytes"):
            check_count(name, getattr(self, name), 1)


class RouteRequest(msgspec.Struct, frozen=True, array_like=True):
    """A validated request: canonical backend names, de-duplicated lists, enum values.

    ``health`` keeps only the backends that are not ``healthy``.
    """

    policy: Policy
    """How the backend is chosen."""
    backend: str | None = None
    """The explicitly requested backend (``explicit`` policy), if any."""
    preferred_backends: tuple[str, ...] = ()
    """Backends to try first, in order."""
    excluded_backends: tuple[str, ...] = ()
    """Backends never to choose."""
    fallback_backends: tuple[str, ...] = ()
    """Backends to try after the preferred ones, in order."""
    capabilities: tuple[str, ...] = ()
    """Capabilities the backend must support."""
    last_backend: str | None = None
    """Where the session ran before (``failover`` moves away from it)."""
    fallback_policy: FallbackPolicy = FallbackPolicy.AVAILABLE
    """Whether backends named neither preferred nor fallback may be chosen."""
    affinity_key: str | None = None
    """The sticky key: every request with it goes to one backend."""
    policy_profile_id: str | None = None
    """The policy profile the decision must satisfy."""
    health: dict[str, Health] = msgspec.field(default_factory=dict)
    """The caller's view of backends that are not healthy."""

    def summary(self) -> dict[str, Any]:
        """The journal's view of the request: every routing field, optional ones only when set."""
        out: dict[str, Any] = {
            "preferred_backends": list(self.preferred_backends),
            "excluded_backends": list(self.excluded_backends),
            "fallback_backends": list(self.fallback_backends),
            "capabilities": list(self.capabilities),
            "policy": self.policy.value,
            "fallback_policy": self.fallback_policy.value,
        }
        if self.backend is not None:
            out["backend"] = self.backend
        if self.affinity_key is not None:
            out["affinity_key"] = self.affinity_key
        if self.last_backend is not None:
            out["last_backend"] = self.last_backend
        return out

    def ineligible(self) -> frozenset[str]:
        """Backends this request's health marks unhealthy or down."""
        return frozenset(b for b, h in self.health.items() if h in _INELIGIBLE)


def _lookup(table: Mapping[str, Any], value: object) -> Any:
    try:
        return table.get(value)  # type: ignore[call-overload]
    except Exception:  # unhashable or hostile values name nothing
        return None


def _is_auto(value: object) -> bool:
    return value is None or (isinstance(value, str) and value == "auto")


def _first_unknown_key(request: Mapping[Any, Any]) -> object:
    unknown = [key for key in request if key not in ROUTE_KEYS]
    return min(unknown, key=_str_sort_key)


def _subclass_size(value: object) -> int | None:
    """The raw length of a ``list`` or ``tuple`` subclass (by the base type, never its own methods), else ``None``."""
    if isinstance(value, list):
        return list.__len__(value)
    if isinstance(value, tuple):
        return tuple.__len__(value)
    return None


def _str_sort_key(key: object) -> str:
    try:
        return str(key)
    except Exception:
        return repr(type(key))


class RequestNormalizer:
    """Validates and normalises requests against one catalogue, in the routing contract's order of checks.

    ``RequestNormalizer(catalog, limits=None)``: ``catalog`` is the
    :class:`beamrouting.Catalog` requests are checked against; ``limits`` bounds the sizes a request may have (:class:`RequestLimits`); each size is
    checked at its field's place in the validation order, before any work proportional to
    it. Raises :class:`TypeError` for a catalogue or limits of the wrong type.
    """

    __slots__ = (
        "_aliases",
        "_capabilities",
        "_capability_lists",
        "_healths",
        "_known_backends",
        "_lists",
        "_max_entries",
        "_max_key",
        "_recent",
        "_recent_bytes",
        "_request_bytes",
        "_requests",
        "catalog",
        "limits",
    )

    def __init__(self, catalog: Catalog, limits: RequestLimits | None = None) -> None:
        self.catalog = check_instance("catalog", catalog, Catalog)
        """The catalogue requests are checked against."""
        self.limits = RequestLimits() if limits is None else check_instance("limits", limits, RequestLimits)
        """The size limits of requests."""
        self._aliases: dict[str, str] = dict(catalog.aliases)
        self._capabilities = frozenset(catalog.capabilities)
        self._known_backends = frozenset(catalog.backends)
        self._max_key = self.limits.max_key_length
        self._max_entries = self.limits.max_list_entries
        # Normalised lists and health mappings by their raw contents: requests repeat them,
        # so most normalise with one lookup. Bounded: cleared when full.
        self._lists: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._capability_lists: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self._healths: dict[tuple[Any, ...], dict[str, Health]] = {}
        self._requests: dict[bytes, RouteRequest] = {}
        self._request_bytes = 0
        # Request dicts by identity, with a copy of their contents, their values' types and
        # their key: callers often route the same dict again, and comparing it with the copy
        # (in C, bounded by the copy's size) is cheaper than checking it entry by entry.
        # Bounded: cleared when full.
        self._recent: dict[int, tuple[dict[Any, Any], tuple[tuple[Any, type], ...], bytes]] = {}
        self._recent_bytes = 0

    def _too_many(self, field: str, count: int) -> InvalidRouteRequest:
        return InvalidRouteRequest({"field": field, "max_list_entries": self._max_entries, "entries": count})

    def _too_long(self, field: str, length: int) -> dict[str, Any]:
        return {"field": field, "max_key_length": self._max_key, "length": length}

    def _backends(self, value: object, field: str) -> tuple[str, ...]:
        if type(value) is not list and type(value) is not tuple:
            size = _subclass_size(value)
            if size is not None and size > self._max_entries:  # sized before anything reads it
                raise self._too_many(field, size)
            value = (value,)
        elif not value:
            return _EMPTY
        elif len(value) > self._max_entries:
            raise self._too_many(field, len(value))
        try:
            raw = tuple(value)
            known = self._lists.get(raw)
        except Exception:  # unhashable entries: not names anyway, the loop below says which
            raw, known = None, None
        if known is not None:
            return known
        names = self._canonical_names(value)
        if raw is not None and all(type(item) is str for item in raw):
            lists = self._lists
            if len(lists) >= _NORMALISED_CACHE_SIZE:
                lists.clear()
            lists[raw] = names
        return names

    def _canonical_names(self, value: Any) -> tuple[str, ...]:
        aliases = self._aliases
        out: list[str] = []
        for item in value:
            try:
                name = aliases[item]
            except Exception:
                raise UnknownBackend(item) from None
            if name not in out:
                out.append(name)
        return tuple(out)

    def _backend(self, value: object) -> str | None:
        if _is_auto(value):
            return None
        try:
            return self._aliases[value]  # type: ignore[index]
        except Exception:
            raise UnknownBackend(value) from None

    def normalize(self, request: object) -> RouteRequest:
        """Validate ``request`` and return it normalised; raise the first :class:`RoutingError`.

        Equal requests may be normalised to one shared :class:`RouteRequest`, which is
        immutable (its ``health`` mapping included: never change it).
        """
        if type(request) is dict:
            key = self.request_key(request)  # equal requests are normalised once
            if key is not None:
                known = self._requests.get(key)
                if known is not None:
                    return known
                normalized = self.normalize_fields(request)
                requests = self._requests
                if len(requests) >= _NORMALISED_CACHE_SIZE or self._request_bytes > _REQUEST_CACHE_BYTES:
                    requests.clear()
                    self._request_bytes = 0
                requests[key] = normalized
                self._request_bytes += len(key)
                return normalized
            return self.normalize_fields(request)
        try:
            return self._normalize(request)
        except RoutingError:
            raise
        except Exception:  # a mapping whose own methods fail is a malformed request
            raise InvalidRouteRequest("request") from None

    def request_key(self, request: dict[Any, Any]) -> bytes | None:
        """A key equal requests share: the request's msgpack encoding, or ``None`` when it has none.

        Requests without an affinity key repeat, so each distinct one need be normalised
        once. The encoding is made in C, and taken only when every value is of an exact
        plain type (no subclass with methods of its own), no list or mapping is longer than
        allowed and no string longer than a key may be, nested ones included, so that it
        costs nothing proportional to abuse. A request with an affinity key (unique per
        session, as a rule) has none.

        A dict routed again (the same object) skips most of those checks: once it equals a
        copy kept from last time (which bounds its size), its values are of the copy's
        exact types and it encodes to the same bytes (the encoding refuses every type but
        the plain ones, and keeps the order of entries), it is the request it was.
        """
        recent = self._recent.get(id(request))
        if recent is not None:
            try:
                copy, types, key = recent
                if copy == request:
                    for name, kind in types:
                        if type(request[name]) is not kind:
                            break
                    else:
                        if _encode_plain(request) == key:
                            return key
            except Exception:  # a value whose own comparison fails, or that is not plain data
                pass
        if "affinity_key" in request or len(request) > 11 or not self._small_and_plain(request):
            return None
        try:
            key = _encode_plain(request)
        except Exception:  # a str subclass inside (the encoder's hook refuses it)
            return None
        self._remember(request, key)
        return key

    def _remember(self, request: dict[Any, Any], key: bytes) -> None:
        """Keep a copy of ``request`` (checked plain data) and its key, by the request's identity."""
        recent = self._recent
        if len(recent) >= _RECENT_REQUESTS or self._recent_bytes > _RECENT_BYTES:
            recent.clear()
            self._recent_bytes = 0
        copy = {
            name: list(value) if type(value) is list else dict(value) if type(value) is dict else value
            for name, value in request.items()
        }
        recent[id(request)] = (copy, tuple((name, type(value)) for name, value in copy.items()), key)
        self._recent_bytes += len(key)

    def _small_and_plain(self, request: dict[Any, Any]) -> bool:
        """Whether every value of ``request`` is of an exact plain type and within the limits,
        down to the entries of its lists and mappings (which are one level deep in a valid request)."""
        max_entries = self._max_entries
        max_key = self._max_key
        for value in request.values():
            kind = type(value)
            if kind is str:
                if len(value) > max_key:
                    return False
            elif kind is list:
                if len(value) > max_entries:
                    return False
                for item in value:
                    if type(item) is not str or len(item) > max_key:
                        return False
            elif kind is dict:
                if len(value) > max_entries:
                    return False
                for name, status in value.items():
                    if type(name) is not str or len(name) > max_key:
                        return False
                    if (type(status) is not str and type(status) is not Health) or len(status) > max_key:
                        return False
            elif kind not in _PLAIN_TYPES:
                return False
        return True

    def normalize_fields(self, request: dict[Any, Any]) -> RouteRequest:
        """:meth:`normalize` of ``request``, a plain dict, field by field (lists and health cached by content)."""
        try:
            fast = self._fast(request)
        except Exception:  # whatever is unusual goes the exact way, which names the error
            fast = None
        if fast is not None:
            return fast
        try:
            return self._normalize(request)
        except RoutingError:
            raise
        except Exception:  # a mapping whose own methods fail is a malformed request
            raise InvalidRouteRequest("request") from None

    def _fast(self, request: dict[Any, Any]) -> RouteRequest | None:
        """The common case in one pass: a plain dict of known keys whose lists and health were
        normalised before (cached by content). ``None`` for anything else, which then takes
        the exact path in :meth:`_normalize` (so the contract's first error is the one raised)."""
        if len(request) > 11 or not ROUTE_KEYS.issuperset(request):
            return None
        get = request.get
        lists = self._lists
        max_entries = self._max_entries
        value = get("policy", _MISSING)
        raw_backend = get("backend")
        if value is _MISSING:
            policy = Policy.PREFERRED_THEN_FALLBACK if _is_auto(raw_backend) else Policy.EXPLICIT
        else:
            policy = _POLICIES[value]
        backend = None if raw_backend is None or _is_auto(raw_backend) else self._aliases[raw_backend]
        # The four lists are written out rather than looped over: every sticky request (a new
        # affinity key each time, so never in the request cache) comes this way.
        value = get("preferred_backends", _EMPTY)
        if value is _EMPTY:
            preferred = _EMPTY
        elif type(value) is list and len(value) <= max_entries:
            preferred = lists[tuple(value)]
        else:
            return None
        value = get("excluded_backends", _EMPTY)
        if value is _EMPTY:
            excluded = _EMPTY
        elif type(value) is list and len(value) <= max_entries:
            excluded = lists[tuple(value)]
        else:
            return None
        value = get("fallback_backends", _EMPTY)
        if value is _EMPTY:
            fallback = _EMPTY
        elif type(value) is list and len(value) <= max_entries:
            fallback = lists[tuple(value)]
        else:
            return None
        value = get("capabilities", _EMPTY)
        if value is _EMPTY:
            capabilities = _EMPTY
        elif type(value) is list and len(value) <= max_entries:
            capabilities = self._capability_lists[tuple(value)]
        else:
            return None
        value = get("last_backend")
        last_backend = None if value is None or _is_auto(value) else self._aliases[value]
        value = get("fallback_policy", _MISSING)
        fallback_policy = FallbackPolicy.AVAILABLE if value is _MISSING else _FALLBACKS[value]
        affinity_key = get("affinity_key")
        if affinity_key is not None and (
            type(affinity_key) is not str
            or not 0 < len(affinity_key) <= self._max_key
            or not is_text(affinity_key)
        ):
            return None
        profile_id = get("policy_profile_id")
        if profile_id is not None and (
            type(profile_id) is not str or not 0 < len(profile_id) <= self._max_key or not is_text(profile_id)
        ):
            return None
        value = get("health", _MISSING)
        if value is _MISSING:
            health = {}
        elif type(value) is dict and len(value) <= max_entries:
            health = dict(self._healths[tuple(value.items())])
        else:
            return None
        return RouteRequest(
            policy,
            backend,
            preferred,
            excluded,
            fallback,
            capabilities,
            last_backend,
            fallback_policy,
            affinity_key,
            profile_id,
            health,
        )

    def _normalize(self, request: object) -> RouteRequest:
        if type(request) is not dict and not isinstance(request, Mapping):
            raise InvalidRouteRequest("request")
        get = request.get
        if len(request) > self._max_entries:
            raise self._too_many("request", len(request))
        if not ROUTE_KEYS.issuperset(request):
            raise UnsupportedRouteKey(_first_unknown_key(request))
        raw_backend = get("backend")
        raw_policy = get("policy", _MISSING)
        if raw_policy is _MISSING:
            policy = Policy.PREFERRED_THEN_FALLBACK if _is_auto(raw_backend) else Policy.EXPLICIT
        else:
            try:
                policy = _POLICIES[raw_policy]
            except Exception:
                raise InvalidPolicy(raw_policy) from None
        backend = self._backend(raw_backend) if raw_backend is not None else None
        value = get("preferred_backends", _EMPTY)
        preferred = _EMPTY if value is _EMPTY else self._backends(value, "preferred_backends")
        value = get("excluded_backends", _EMPTY)
        excluded = _EMPTY if value is _EMPTY else self._backends(value, "excluded_backends")
        value = get("fallback_backends", _EMPTY)
        fallback = _EMPTY if value is _EMPTY else self._backends(value, "fallback_backends")
        value = get("capabilities", _EMPTY)
        capabilities = _EMPTY if value is _EMPTY else self._capability_list(value)
        value = get("last_backend")
        last_backend = None if value is None else self._backend(value)
        value = get("fallback_policy", _MISSING)
        if value is _MISSING:
            fallback_policy = FallbackPolicy.AVAILABLE
        else:
            try:
                fallback_policy = _FALLBACKS[value]
            except Exception:
                raise InvalidFallbackPolicy(value) from None
        affinity_key = get("affinity_key")
        if affinity_key is not None:
            affinity_key = self.affinity_key(affinity_key)
        profile_id = get("policy_profile_id")
        if profile_id is not None:
            if not isinstance(profile_id, str) or not profile_id:
                raise InvalidRouteRequest("policy_profile_id")
            if len(profile_id) > self._max_key:
                raise InvalidRouteRequest(self._too_long("policy_profile_id", len(profile_id)))
            if not is_text(profile_id):
                raise InvalidRouteRequest("policy_profile_id")
        value = get("health", _MISSING)
        health = {} if value is _MISSING else self._health(value)
        return RouteRequest(
            policy,
            backend,
            preferred,
            excluded,
            fallback,
            capabilities,
            last_backend,
            fallback_policy,
            affinity_key,
            None if profile_id is None else str.__str__(profile_id),
            health,
        )

    def affinity_key(self, key: object) -> str:
        """``key`` as a plain ``str`` if it is a valid affinity key; :class:`beamrouting.InvalidAffinityKey` otherwise."""
        if not isinstance(key, str) or not key:
            raise InvalidAffinityKey(key)
        if len(key) > self._max_key:
            raise InvalidAffinityKey(self._too_long("affinity_key", len(key)))
        if not is_text(key):
            raise InvalidAffinityKey(key)
        return str.__str__(key)

    def validate(self, req: RouteRequest) -> None:
        """Re-check a decoded :class:`RouteRequest` against the catalogue.

        A request built by :meth:`normalize` always passes; this
        guards actors against messages that were not. Raises the :class:`RoutingError` the
        normaliser would have raised.
        """
        known = self._known_backends
        superset = known.issuperset
        backend = req.backend
        last = req.last_backend
        preferred = req.preferred_backends
        excluded = req.excluded_backends
        fallback = req.fallback_backends
        health = req.health
        capabilities = req.capabilities
        if (
            (backend is None or backend in known)
            and (last is None or last in known)
            and (not preferred or superset(preferred))
            and (not excluded or superset(excluded))
            and (not fallback or superset(fallback))
            and (not health or superset(health))
            and (not capabilities or self._capabilities.issuperset(capabilities))
            and req.affinity_key != ""
            and req.policy_profile_id != ""
            and self._within_limits(req)
        ):
            return
        for name in (backend, last, *req.preferred_backends, *req.excluded_backends, *req.fallback_backends):
            if name is not None and name not in known:
                raise UnknownBackend(name)
        for name in req.health:
            if name not in known:
                raise UnknownBackend(name)
        for cap in req.capabilities:
            if cap not in self._capabilities:
                raise UnknownCapability(cap)
        if req.affinity_key == "":
            raise InvalidRouteRequest("affinity_key")
        if req.policy_profile_id == "":
            raise InvalidRouteRequest("policy_profile_id")
        raise InvalidRouteRequest("request")  # beyond the limits: only a forged message gets here

    def _within_limits(self, req: RouteRequest) -> bool:
        entries = self._max_entries
        key = self._max_key
        return (
            (req.affinity_key is None or len(req.affinity_key) <= key)
            and (req.policy_profile_id is None or len(req.policy_profile_id) <= key)
            and len(req.preferred_backends) <= entries
            and len(req.excluded_backends) <= entries
            and len(req.fallback_backends) <= entries
            and len(req.capabilities) <= entries
            and len(req.health) <= entries
        )

    def _capability_list(self, value: object) -> tuple[str, ...]:
        if type(value) is not list and type(value) is not tuple:
            size = _subclass_size(value)
            if size is not None and size > self._max_entries:
                raise self._too_many("capabilities", size)
            raise InvalidRouteRequest("capabilities")
        if len(value) > self._max_entries:
            raise self._too_many("capabilities", len(value))
        capabilities = self._capability_names(value)
        if all(type(item) is str for item in value):
            cache = self._capability_lists
            if len(cache) >= _NORMALISED_CACHE_SIZE:
                cache.clear()
            cache[tuple(value)] = capabilities
        return capabilities

    def _capability_names(self, value: Any) -> tuple[str, ...]:
        known = self._capabilities
        out: list[str] = []
        for item in value:
            try:
                ok = type(item) is str and item in known
            except Exception:
                ok = False
            if not ok:
                raise UnknownCapability(item)
            if item not in out:
                out.append(item)
        return tuple(out)

    def _health(self, value: object) -> dict[str, Health]:
        if not isinstance(value, Mapping):
            raise InvalidRouteRequest(["health", value])
        if len(value) > self._max_entries:
            raise self._too_many("health", len(value))
        if type(value) is dict:
            try:
                raw = tuple(value.items())
                known = self._healths.get(raw)
            except Exception:
                raw, known = None, None
            if known is not None:
                return dict(known)  # a copy: the request's own mapping
            health = self._health_of(value)
            if raw is not None and all(type(k) is str and type(v) is str for k, v in raw):
                healths = self._healths
                if len(healths) >= _NORMALISED_CACHE_SIZE:
                    healths.clear()
                healths[raw] = dict(health)
            return health
        return self._health_of(value)

    def _health_of(self, value: Mapping[Any, Any]) -> dict[str, Health]:
        aliases = self._aliases
        health: dict[str, Health] = {}
        for key, status in value.items():
            name = _lookup(aliases, key)
            if name is None:
                raise UnknownBackend(key)
            parsed = _lookup(_HEALTH, status)
            if parsed is None:
                raise InvalidHealthStatus(status)
            health.pop(name, None)
            if parsed is not Health.HEALTHY:
                health[name] = parsed
        return health


_DEFAULT_LIMITS: Final = RequestLimits()


def merge_session(
    session_or_opts: object,
    request: object,
    session_backend: str | None = None,
    limits: RequestLimits = _DEFAULT_LIMITS,
) -> dict[Any, Any]:
    """Build the request that ``select_backend(session_or_opts, request)`` routes.

    ``session_backend`` is what a session registry knows of a session id, if anything;
    ``limits`` bounds the session id and the sizes of the mappings merged. Raises
    :class:`beamrouting.InvalidRouteRequest` for a bad session, options or request.
    """
    try:
        base = _session_base(session_or_opts, session_backend, limits)
    except RoutingError:
        raise
    except Exception:  # options whose own methods fail are not usable options
        raise InvalidRouteRequest("session") from None
    if not isinstance(request, Mapping):
        raise InvalidRouteRequest("request")
    try:
        size = len(request)
    except Exception:
        raise InvalidRouteRequest("request") from None
    if size > limits.max_list_entries:
        raise InvalidRouteRequest(
            {"field": "request", "max_list_entries": limits.max_list_entries, "entries": size}
        )
    try:
        base.update(request)
    except Exception:
        raise InvalidRouteRequest("request") from None
    return base


def _session_base(
    session_or_opts: object, session_backend: str | None, limits: RequestLimits
) -> dict[Any, Any]:
    if isinstance(session_or_opts, str):
        if not session_or_opts:
            raise InvalidRouteRequest("session_id")
        if len(session_or_opts) > limits.max_key_length:
            raise InvalidRouteRequest(
                {
                    "field": "session_id",
                    "max_key_length": limits.max_key_length,
                    "length": len(session_or_opts),
                }
            )
        base: dict[Any, Any] = {"affinity_key": session_or_opts}
        if session_backend is not None:
            base["last_backend"] = session_backend
    elif isinstance(session_or_opts, SessionHandle):
        base = {"last_backend": session_or_opts.backend}
    elif isinstance(session_or_opts, Mapping):
        routing = session_or_opts.get("routing", {})
        if not isinstance(routing, Mapping):
            raise InvalidRouteRequest(["routing", routing])
        if len(routing) > limits.max_list_entries:
            raise InvalidRouteRequest(
                {"field": "routing", "max_list_entries": limits.max_list_entries, "entries": len(routing)}
            )
        base = dict(routing)
        backend = session_or_opts.get("backend")
        if not _is_auto(backend):
            base["backend"] = backend
            base["policy"] = "explicit"
    else:
        raise InvalidRouteRequest("session")
    return base
