"""The session-registry actor: owns the map of live session ids to their backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec

from ._actor import Actor, ActorControl
from ._catalog import Catalog
from ._errors import InvalidRouteRequest, RoutingError, StoreUnavailable, UnknownBackend
from ._mailbox import Envelope, Mailbox
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
from ._store import Store
from ._types import SessionHandle

__all__ = ["SessionRegistry", "check_metadata", "check_session_id", "session_handle"]


def check_session_id(session_id: object) -> str:
    """Return ``session_id`` if it is a non-empty ``str``; else raise ``InvalidRouteRequest("session_id")``."""
    if not isinstance(session_id, str) or not session_id:
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
    """Serves :data:`~beamrouting._messages.SessionMessage` from its store's session half."""

    name: ClassVar[str] = "session_registry"

    def __init__(self, mailbox: Mailbox, store: Store, control: ActorControl) -> None:
        super().__init__(mailbox, store, control)
        self._decode = session_decoder().decode
        self._ok = self.encode(Ok())

    async def handle_batch(self, batch: list[Envelope]) -> None:
        """Apply each message in order and answer it."""
        deliver = self.mailbox.deliver
        for data, slot in batch:
            self.in_hand = slot
            try:
                message: SessionMessage = self._decode(data)
            except msgspec.DecodeError:
                deliver(slot, self.bad_message)
                continue
            deliver(slot, await self._apply(message))

    async def _apply(self, message: SessionMessage) -> bytes:
        store = self.store
        reply: Reply
        try:
            match message:
                case Register(handle):
                    # Never trust the bytes: validate as the caller did.
                    checked = session_handle(
                        store.catalog, handle.session_id, handle.backend, handle.metadata
                    )
                    await store.register_session(checked)
                    reply = Handle(checked)
                case Unregister(session_id):
                    await store.unregister_session(check_session_id(session_id))
                    return self._ok
                case LookupSession(session_id):
                    reply = Backend(await store.session_backend(check_session_id(session_id)))
                case ListSessions():
                    reply = Handles(await store.sessions())
                case _:
                    raise AssertionError(f"unhandled message {message!r}")
        except (RoutingError, StoreUnavailable) as exc:
            reply = failed(exc)
        return self.encode(reply)
