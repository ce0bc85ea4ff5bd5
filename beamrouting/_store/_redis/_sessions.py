"""The session registry on Redis: a drained batch of session operations in one atomic script call.

Sessions are a hash of encoded handles plus a sorted set for registration order; each
session's backend is also in ``<prefix>live:of``, and ``<prefix>live`` counts the live
sessions per backend, so a limit is checked in the same atomic step that registers (see
``sessions.lua`` and ``lib.lua``). With ``session_ttl`` a session expires that long after its
last registration; an expired session no longer counts once purged, and with limits every
expired session is purged before a count is read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec

from ..._core._errors import BackendAtCapacity, StoreDataError
from ..._core._types import SessionHandle
from .._protocol import ListSessionsOp, LookupOp, RegisterOp, SessionOp, SessionResult, UnregisterOp
from ._calls import Script
from ._codec import SessionCodec, UnreadableValue
from ._connection import MalformedReply
from ._keys import KeyLayout
from ._settle import exists
from ._view import View

__all__ = ["Sessions", "at_capacity"]

logger: Final = logging.getLogger("beamrouting.redis")


def at_capacity(backend: str, live: int, limit: int) -> BackendAtCapacity:
    """The error of registering a new session on a full backend."""
    return BackendAtCapacity(f"{backend} has {live} of {limit} live sessions")


class Sessions:
    """Runs batches of session operations for one :class:`RedisStore` (see the module docstring)."""

    def __init__(
        self,
        view: View,
        keys: KeyLayout,
        codec: SessionCodec,
        *,
        session_ttl_ms: int,
        purge: int,
        limits: Mapping[str, int],
    ) -> None:
        self._view = view
        self._keys = keys
        self._codec = codec
        self._meta: dict[str, Any] = {
            "ttl": session_ttl_ms,
            "purge": purge,
            "limits": dict(limits),
            "known": list(view.catalog.backends),
            "channel": keys.changes,
        }
        self._encode = msgspec.msgpack.Encoder().encode

    def configure(self, limits: Mapping[str, int]) -> None:
        """This process's new backend limits."""
        self._meta = {**self._meta, "limits": dict(limits)}

    async def batch(self, ops: Sequence[SessionOp], script: Script) -> list[SessionResult]:
        """Apply ``ops`` with one call of ``sessions.lua``; one answer each.

        A stored session that is not one this store wrote answers
        :class:`beamrouting.StoreDataError` for the lookup or listing that read it only.
        """
        meta = self._meta
        view = self._view
        if view.clock is not None:
            meta = {**meta, "clock": int(view.now() * 1000)}
        args: list[Any] = [self._encode(meta)]
        encode = self._codec.encode
        for op in ops:
            match op:
                case RegisterOp(handle, exclusive):
                    args += (b"n" if exclusive else b"r", handle.session_id, encode(handle), handle.backend)
                case UnregisterOp(session_id):
                    args += (b"u", session_id)
                case LookupOp(session_id):
                    args += (b"g", session_id)
                case ListSessionsOp():
                    args.append(b"l")
                case _:
                    raise TypeError(f"not a session operation: {op!r}")
        answers: Any = await script(keys=self._keys.session_keys, args=args)
        if type(answers) is not list or len(answers) != len(ops) + 2:
            raise MalformedReply("sessions.lua")
        live = answers.pop()
        repaired = answers.pop()
        view.take_live(live)
        if repaired:
            logger.warning(
                "replaced session keys the store would not have written: %s",
                b", ".join(repaired).decode(errors="replace"),
            )
        results: list[SessionResult] = []
        for op, answer in zip(ops, answers, strict=True):
            try:
                results.append(self._result(op, answer))
            except UnreadableValue as exc:
                results.append(
                    StoreDataError(f"{self._keys.sessions} holds {exc}; not a session this store wrote")
                )
        return results

    def _result(self, op: SessionOp, answer: Any) -> SessionResult:
        """What one operation answers, from the script's reply."""
        handle = self._codec.handle
        if type(op) is LookupOp:
            return None if answer is None else handle(op.session_id, answer).backend
        if type(op) is ListSessionsOp:
            if type(answer) is not list or len(answer) < 2:
                raise MalformedReply("a session listing")
            order, flat, *expired = answer
            stored: dict[bytes, Any] = dict(zip(flat[::2], flat[1::2], strict=True))
            for session_id in expired[0] if expired else ():
                stored.pop(session_id, None)  # past its deadline, not yet purged
            handles: list[SessionHandle] = []
            for session_id in order:
                data = stored.pop(session_id, None)
                if data is not None:
                    handles.append(handle(session_id, data))
            handles.extend(handle(session_id, data) for session_id, data in stored.items())
            return handles
        if type(op) is RegisterOp:
            if answer == 0:
                return exists(op.handle.session_id)
            if type(answer) is list and len(answer) == 3 and answer[0] == 3:
                return at_capacity(op.handle.backend, answer[1], answer[2])
        return None
