"""How values are stored in Redis, and how what is read back is checked before it is used.

Never trust what is in Redis: a buggy or older writer, a hand edit or a partial write can
leave anything there. Everything read goes through this module, which either returns a value
the store could have written or says what is wrong with it.

Journal records are stream entries with fields ``s`` (the record's first event sequence,
decimal), ``e`` (its number of events; absent for a decision's two) and ``r`` (the msgpack encoding of
``(time, request, decision, deny_reason)``). Sessions are msgpack-encoded
:class:`beamrouting.SessionHandle` values in a hash keyed by session id.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..._core._catalog import Catalog
from ..._core._journal import JournalRecord
from ..._core._request import RouteRequest
from ..._core._types import RouteDecision, SessionHandle

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RecordCodec", "SessionCodec", "UnreadableValue", "journal_base", "stored_backend", "stored_int"]

logger: Final = logging.getLogger("beamrouting.redis")

_MAX_SEQUENCE: Final = 2**53
"""Sequence numbers stay exact in Lua (whose numbers are doubles) below this."""


class UnreadableValue(ValueError):
    """A stored value is not one the store would have written (the message says why)."""


def stored_int(value: object, maximum: int = _MAX_SEQUENCE) -> int | None:
    """``value`` (bytes from Redis) as an integer from 0 to below ``maximum``, or ``None`` if it is not one."""
    if not isinstance(value, (bytes, str)) or len(value) > 20:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if 0 <= number < maximum else None


def stored_backend(catalog: Catalog, value: object) -> str | None:
    """``value`` (bytes from Redis) as the canonical name of a backend of ``catalog``, else ``None``."""
    if not isinstance(value, bytes):
        return None
    try:
        name = value.decode()
    except UnicodeDecodeError:
        return None
    return name if name in catalog.backends else None


class _StoredRecord(msgspec.Struct, frozen=True, array_like=True):
    """A journal record as stored in the ``r`` field (its sequence is the ``s`` field)."""

    time: float
    request: RouteRequest | None
    decision: RouteDecision | None
    deny_reason: str | None = None
    event_type: str | None = None
    payload: dict[str, Any] | None = None


class RecordCodec:
    """Encodes journal record payloads and reads stream entries back (one msgspec encoder and decoder)."""

    __slots__ = ("_decode", "_encode")

    def __init__(self) -> None:
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(_StoredRecord).decode

    def payload(
        self, when: float, request: RouteRequest, decision: RouteDecision, deny_reason: str | None
    ) -> bytes:
        """The ``r`` field of a decision record."""
        return self._encode(_StoredRecord(when, request, decision, deny_reason))

    def event_payload(self, when: float, event_type: str, payload: dict[str, Any]) -> bytes:
        """The ``r`` field of a one-event record (``outcome``, ``backend_health``)."""
        return self._encode(_StoredRecord(when, None, None, None, event_type, payload))

    def record(self, fields: object) -> JournalRecord:
        """The record a stream entry's fields hold; :class:`UnreadableValue` when they hold none."""
        if not isinstance(fields, dict):
            raise UnreadableValue("a stream entry without fields")
        sequence = stored_int(fields.get(b"s"))
        if sequence is None:
            raise UnreadableValue("a stream entry without a sequence number")
        data = fields.get(b"r")
        if not isinstance(data, bytes):
            raise UnreadableValue("a stream entry without a record")
        try:
            stored = self._decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:  # nested too deep: msgspec recurses
            raise UnreadableValue(f"a stream entry whose record does not decode ({exc})") from None
        if (stored.decision is None) != (stored.request is None) or (
            stored.decision is None and not stored.event_type
        ):
            raise UnreadableValue("a stream entry that is neither a decision nor an event")
        if not math.isfinite(stored.time * 1000):  # events carry it as whole milliseconds
            raise UnreadableValue(f"a stream entry recorded at no time ({stored.time!r})")
        return JournalRecord(
            sequence,
            stored.time,
            stored.request,
            stored.decision,
            stored.deny_reason,
            stored.event_type,
            stored.payload,
        )


class SessionCodec:
    """Encodes session handles and checks the ones read back against the catalogue."""

    __slots__ = ("_catalog", "_decode", "encode")

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._decode = msgspec.msgpack.Decoder(SessionHandle).decode
        self.encode = msgspec.msgpack.Encoder().encode

    def handle(self, session_id: bytes | str, data: Any) -> SessionHandle:
        """The handle stored for ``session_id``; :class:`UnreadableValue` when it is not one this store wrote."""
        if not isinstance(data, bytes):
            raise UnreadableValue(
                f"session {session_id!r} holds a {type(data).__name__}, not an encoded handle"
            )
        try:
            handle = self._decode(data)
        except (msgspec.DecodeError, RecursionError) as exc:  # nested too deep: msgspec recurses
            raise UnreadableValue(f"session {session_id!r}: not an encoded handle ({exc})") from None
        expected = session_id.decode("utf-8", "replace") if isinstance(session_id, bytes) else session_id
        if handle.session_id != expected:
            raise UnreadableValue(f"session {expected!r}: the handle of session {handle.session_id!r}")
        if handle.backend not in self._catalog.backends:
            raise UnreadableValue(
                f"session {expected!r} is on {handle.backend!r}, no backend of the catalogue"
            )
        return handle


async def journal_base(client: aioredis.Redis, key: str) -> int:
    """The origin of the fleet's event ids at ``key``, created if absent and replaced if unreadable.

    A value that is not an integer (or a key of the wrong type) is replaced by a new random
    origin and logged: event ids computed from it were meaningless anyway.
    """
    from redis.exceptions import ResponseError

    origin = int.from_bytes(os.urandom(8), "big") >> 1
    try:
        await client.set(key, origin, nx=True)
        stored = stored_int(await client.get(key), 2**63)
    except ResponseError:
        stored = None
    if stored is None:
        logger.warning("replaced %s, which held no journal origin", key)
        await client.set(key, origin)
        return origin
    return stored
