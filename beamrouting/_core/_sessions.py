"""Validation of session registrations: ids, backends and metadata (section 8 of the contract)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from ._catalog import Catalog
from ._checks import is_text
from ._errors import InvalidRouteRequest, RoutingError, UnknownBackend
from ._request import RequestLimits
from ._types import SessionHandle

__all__ = ["check_metadata", "check_session_id", "session_handle"]


_DEFAULT_LIMITS: Final = RequestLimits()


def check_session_id(session_id: object, limits: RequestLimits = _DEFAULT_LIMITS) -> str:
    """``session_id`` as a plain ``str`` if it is non-empty text of at most ``max_key_length`` characters.

    Raises :class:`beamrouting.InvalidRouteRequest` (detail ``"session_id"``, or a dict
    naming the field and the limit) otherwise.
    """
    if not isinstance(session_id, str) or not session_id:
        raise InvalidRouteRequest("session_id")
    if len(session_id) > limits.max_key_length:
        raise InvalidRouteRequest(
            {"field": "session_id", "max_key_length": limits.max_key_length, "length": len(session_id)}
        )
    if not is_text(session_id):
        raise InvalidRouteRequest("session_id")
    return str.__str__(session_id)


def check_metadata(metadata: object, limits: RequestLimits = _DEFAULT_LIMITS) -> dict[str, Any]:
    """``metadata`` as a plain dict (``{}`` for ``None``).

    Raises :class:`beamrouting.InvalidRouteRequest` (detail ``"metadata"``) unless it is
    ``None`` or a mapping with ``str`` keys and plain-data values, and (detail naming the
    limit) when it encodes to more than ``max_metadata_bytes``.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidRouteRequest("metadata")
    limit = limits.max_metadata_bytes
    try:
        if len(metadata) > limit:  # every entry takes at least a byte: too big before copying it
            raise InvalidRouteRequest({"field": "metadata", "max_metadata_bytes": limit})
        plain = dict(metadata)
        if not all(type(key) is str for key in plain):
            raise InvalidRouteRequest("metadata")
        size = len(msgspec.msgpack.encode(plain))
    except RoutingError:
        raise
    except Exception:
        raise InvalidRouteRequest("metadata") from None
    if size > limit:
        raise InvalidRouteRequest({"field": "metadata", "max_metadata_bytes": limit, "bytes": size})
    return plain


def session_handle(
    catalog: Catalog,
    session_id: object,
    backend: object,
    metadata: object,
    limits: RequestLimits = _DEFAULT_LIMITS,
) -> SessionHandle:
    """A validated registration: the session id, the backend (canonical name) and the metadata.

    Raises :class:`beamrouting.InvalidRouteRequest` for a bad id or metadata and
    :class:`beamrouting.UnknownBackend` for a backend the catalogue does not name.
    """
    checked_id = check_session_id(session_id, limits)
    if isinstance(backend, str):
        backend = str.__str__(backend)
    try:
        name = catalog.canonical(backend)
    except Exception:  # a value whose hashing or comparison fails names no backend
        name = None
    if name is None:
        raise UnknownBackend(backend)
    return SessionHandle(checked_id, name, check_metadata(metadata, limits))
