"""The session-registry actor (owns the map of live session ids to their backend) and its client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from .._core._sessions import check_session_id, session_handle
from .._core._types import SessionHandle
from .._store._protocol import (
    ListSessionsOp,
    LookupOp,
    RegisterOp,
    SessionOp,
    SessionResult,
    Store,
    UnregisterOp,
)
from ._actor import Actor, ActorClient, ActorControl
from ._mailbox import Answer, Mailbox
from ._messages import (
    Backend,
    Handle,
    Handles,
    ListSessions,
    LookupSession,
    Ok,
    Register,
    SessionMessage,
    Unregister,
)

__all__ = ["SessionRegistry", "SessionRegistryClient"]


class SessionRegistry(Actor[SessionMessage, SessionOp]):
    """Serves :data:`~._messages.SessionMessage` from its store's session half.

    Every message of a drained batch is validated, then the valid ones go to
    :meth:`beamrouting.store.Store.session_batch` in one call (one
    round trip for a shared store) and are answered in order.
    """

    name: ClassVar[str] = "session_registry"
    message_type: ClassVar[Any] = SessionMessage

    def __init__(self, mailbox: Mailbox, store: Store, control: ActorControl) -> None:
        super().__init__(mailbox, store, control)
        self._catalog = store.catalog
        self._limits = store.limits
        self._ok = self.encode(Ok())

    def operation(self, message: SessionMessage) -> SessionOp:
        """The operation ``message`` asks for, validated again (never trust the bytes)."""
        match message:
            case Register(handle, exclusive):
                checked = session_handle(
                    self._catalog, handle.session_id, handle.backend, handle.metadata, self._limits
                )
                return RegisterOp(checked, exclusive)
            case Unregister(session_id):
                return UnregisterOp(check_session_id(session_id, self._limits))
            case LookupSession(session_id):
                return LookupOp(check_session_id(session_id, self._limits))
            case ListSessions():
                return ListSessionsOp()
        raise AssertionError(f"unhandled message {message!r}")

    def store_call(self) -> Callable[[Sequence[SessionOp]], Awaitable[list[SessionResult]]]:
        """:meth:`beamrouting.store.Store.session_batch`."""
        return self.store.session_batch

    def reply(self, op: SessionOp, result: Any) -> Answer:
        """The encoded reply to ``op`` whose store result is ``result``."""
        match op:
            case RegisterOp(handle, _) if result is None:
                return self.encode(Handle(handle))
            case UnregisterOp() if result is None:
                return self._ok
            case LookupOp() if result is None or type(result) is str:
                return self.encode(Backend(result))
            case ListSessionsOp() if type(result) is list:
                return self.encode(Handles(result))
        raise TypeError(f"the store answered {result!r} to {op!r}")


class SessionRegistryClient(ActorClient):
    """The caller's side of the session-registry actor; arguments arrive validated."""

    __slots__ = ()

    async def register(self, handle: SessionHandle, *, exclusive: bool = False) -> SessionHandle:
        """Register a session (with ``exclusive``, only if its id is not live); the handle as registered."""
        return (await self.ask(Register(handle, exclusive), Handle)).handle

    async def unregister(self, session_id: str) -> None:
        """Forget a session."""
        await self.ask(Unregister(session_id), Ok)

    async def lookup(self, session_id: str) -> str | None:
        """A session's backend, or ``None``."""
        return (await self.ask(LookupSession(session_id), Backend)).backend

    async def list(self) -> list[SessionHandle]:
        """Every live session."""
        return (await self.ask(ListSessions(), Handles)).handles
