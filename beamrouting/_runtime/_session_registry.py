"""The session-registry actor: owns the map of live session ids to their backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from .._core._catalog import Catalog
from .._core._checks import is_text
from .._core._errors import InvalidRouteRequest, RoutingError, StoreUnavailable, UnknownBackend
from .._core._types import SessionHandle
from .._store._protocol import SessionOp, SessionResult, Store, StoreCrash
from ._actor import Actor, ActorControl
from ._mailbox._base import Envelope, Mailbox
from ._messages import (
    Backend,
    Handle,
    Handles,
    ListSessions,
    LookupSession,
    Ok,
    Register,
    Reply,
    SessionMessage,
    Unregister,
    failed,
    plain_str,
    session_decoder,
)

__all__ = ["SessionRegistry", "check_metadata", "check_session_id", "session_handle"]


def check_session_id(session_id: object) -> str:
    """Return ``session_id`` if it is non-empty text; else raise ``InvalidRouteRequest("session_id")``."""
    if not isinstance(session_id, str) or not session_id or not is_text(session_id):
        raise InvalidRouteRequest("session_id")
    return plain_str(session_id)


def check_metadata(metadata: object) -> dict[str, Any]:
    """Return ``metadata`` as a plain dict; raise ``InvalidRouteRequest("metadata")`` unless it
    is ``None`` or a mapping with ``str`` keys and plain-data values."""
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
    """Validate a registration: the session id, the backend (canonical name) and the metadata."""
    checked_id = check_session_id(session_id)
    if isinstance(backend, str):
        backend = plain_str(backend)
    try:
        name = catalog.canonical(backend)
    except Exception:  # a value whose hashing or comparison fails names no backend
        name = None
    if name is None:
        raise UnknownBackend(backend)
    return SessionHandle(checked_id, name, check_metadata(metadata))


class SessionRegistry(Actor):
    """Serves :data:`~beamrouting._messages.SessionMessage` from its store's session half.

    Every message of a drained batch is validated, then the valid ones go to the store in
    one :meth:`~beamrouting._store.Store.session_batch` call (one round trip for a shared
    store) and are answered in order.
    """

    name: ClassVar[str] = "session_registry"

    def __init__(self, mailbox: Mailbox, store: Store, control: ActorControl) -> None:
        super().__init__(mailbox, store, control)
        self._decode = session_decoder().decode
        self._session_batch = store.session_batch
        self._deliver = mailbox.deliver
        self._ok = self.encode(Ok())

    async def handle_batch(self, batch: list[Envelope]) -> None:
        """Validate each message, apply the valid ones in one store call, answer each."""
        deliver = self._deliver
        ops: list[SessionOp] = []
        slots: list[Any] = []
        for data, slot in batch:
            self.in_hand = slot
            try:
                ops.append(self._check(self._decode(data)))
            except msgspec.DecodeError:
                deliver(slot, self.bad_message)
                continue
            except RoutingError as exc:
                deliver(slot, self.encode(failed(exc)))
                continue
            slots.append(slot)
        if ops:
            await self._apply(ops, slots)

    def _check(self, message: SessionMessage) -> SessionOp:
        """The operation ``message`` asks for, validated again (never trust the bytes)."""
        match message:
            case Register(handle):
                catalog = self.store.catalog
                return Register(session_handle(catalog, handle.session_id, handle.backend, handle.metadata))
            case Unregister(session_id):
                return Unregister(check_session_id(session_id))
            case LookupSession(session_id):
                return LookupSession(check_session_id(session_id))
            case ListSessions():
                return message
            case _:
                raise AssertionError(f"unhandled message {message!r}")

    async def _apply(self, ops: list[SessionOp], slots: list[Any]) -> None:
        """Apply ``ops`` in one store call and answer each; crash where the store did."""
        self.in_hand = slots[0]
        results: list[SessionResult]
        try:
            results = await self._session_batch(ops)
        except (RoutingError, StoreUnavailable) as exc:
            results = [exc] * len(ops)
        if len(results) > len(ops):
            raise RuntimeError(f"the store answered {len(results)} results for {len(ops)} operations")
        deliver = self._deliver
        crash: int | None = None
        for index, result in enumerate(results):
            if isinstance(result, StoreCrash):
                if crash is None:
                    crash = index
                continue  # the first crash is blamed below; a later one is served again
            slot = self.in_hand = slots[index]
            if isinstance(result, (RoutingError, StoreUnavailable)):
                deliver(slot, self.encode(failed(result)))
            else:
                deliver(slot, self._reply(ops[index], result))
        if crash is not None:
            self.in_hand = slots[crash]
            error = results[crash]
            assert isinstance(error, StoreCrash)
            raise error.error
        if len(results) < len(ops):
            self.in_hand = slots[len(results)]
            raise RuntimeError(f"the store answered {len(results)} of {len(ops)} session operations")

    def _reply(self, op: SessionOp, result: SessionResult) -> bytes:
        """The encoded reply to ``op`` whose store result is ``result``."""
        reply: Reply
        match op:
            case Register(handle) if result is None:
                reply = Handle(handle)
            case Unregister() if result is None:
                return self._ok
            case LookupSession() if result is None or isinstance(result, str):
                reply = Backend(result)
            case ListSessions() if isinstance(result, list):
                reply = Handles(result)
            case _:
                raise TypeError(f"the store answered {result!r} to {op!r}")
        return self.encode(reply)
