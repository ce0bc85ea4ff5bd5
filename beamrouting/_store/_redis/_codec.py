"""How journal records are stored in the Redis stream: an entry with fields ``s`` and ``r``.

``s`` is the record's first event sequence number (decimal text); ``r`` is the msgpack
encoding of ``(time, request, decision, deny_reason)``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..._core._journal import JournalRecord
from ..._core._request import RouteRequest
from ..._core._types import RouteDecision

__all__ = ["RecordCodec"]


class RecordCodec:
    """Encodes record payloads and decodes stream entries (one msgspec encoder and decoder each)."""

    __slots__ = ("_decode", "_encode")

    def __init__(self) -> None:
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(tuple[float, RouteRequest, RouteDecision, str | None]).decode

    def payload(
        self, when: float, request: RouteRequest, decision: RouteDecision, deny_reason: str | None
    ) -> bytes:
        """The ``r`` field of a record."""
        return self._encode((when, request, decision, deny_reason))

    def record(self, fields: dict[Any, Any]) -> JournalRecord:
        """The record a stream entry holds; raises :class:`KeyError`, :class:`ValueError` or
        :class:`msgspec.DecodeError` for an entry that does not hold one."""
        sequence = int(fields[b"s"])
        when, request, decision, deny = self._decode(fields[b"r"])
        return JournalRecord(sequence, when, request, decision, deny)
