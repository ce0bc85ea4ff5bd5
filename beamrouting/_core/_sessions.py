"""Validation of session registrations: ids, backends and metadata (section 8 of the contract)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ._catalog import Catalog
from ._checks import is_text
from ._errors import InvalidRouteRequest, RoutingError, UnknownBackend
from ._types import SessionHandle

__all__ = ["check_metadata", "check_session_id", "session_handle"]


def check_session_id(session_id: object) -> str:
    """``session_id`` as a plain ``str`` if it is non-empty text.

    Raises :class:`~beamrouting.InvalidRouteRequest` (detail ``"session_id"``) otherwise.
    """
    if not isinstance(session_id, str) or not session_id or not is_text(session_id):
        raise InvalidRouteRequest("session_id")
    return str.__str__(session_id)


def check_metadata(metadata: object) -> dict[str, Any]:
    """``metadata`` as a plain dict (``{}`` for ``None``).

    Raises :class:`~beamrouting.InvalidRouteRequest` (detail ``"metadata"``) unless it is
    ``None`` or a mapping with ``str`` keys and plain-data values.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidRouteRequest("metadata")
    try:
        plain = dict(metadata)
        if not all(type(key) is str for key in plain):
            raise InvalidRouteRequest("metadata")
        msgspec.msgpack.encode(plain)
    except RoutingError:
        raise
    except Exception:
        raise InvalidRouteRequest("metadata") from None
    return plain


def session_handle(catalog: Catalog, session_id: object, backend: object, metadata: object) -> SessionHandle:
    """A validated registration: the session id, the backend (canonical name) and the metadata.

    Raises :class:`~beamrouting.InvalidRouteRequest` for a bad id or metadata and
    :class:`~beamrouting.UnknownBackend` for a backend the catalogue does not name.
    """
    checked_id = check_session_id(session_id)
    if isinstance(backend, str):
        backend = str.__str__(backend)
    try:
        name = catalog.canonical(backend)
    except Exception:  # a value whose hashing or comparison fails names no backend
        name = None
    if name is None:
        raise UnknownBackend(backend)
    return SessionHandle(checked_id, name, check_metadata(metadata))
