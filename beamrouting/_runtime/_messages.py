"""The messages the router's actors exchange with their callers.

Every message and every reply is a tagged, frozen :class:`msgspec.Struct`, msgpack-encoded
on the way into a mailbox and on the way back, so a caller and an actor never share a
mutable object (the copy semantics of BEAM messages). Each side decodes with one typed
:class:`msgspec.msgpack.Decoder` over a tagged union, which validates the shape of what it
reads; the actors re-validate the content (catalogue names, profiles) as well.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

from .._core._errors import BeamRoutingError, RoutingError, error_for_code
from .._core._explain import Explanation
from .._core._health import BackendState, Outcome
from .._core._profiles import PolicyProfile
from .._core._request import RouteRequest
from .._core._settings import RoutingSettings
from .._core._types import JournalEvent, RouteDecision, SessionHandle

__all__ = [
    "Backend",
    "Clear",
    "Decided",
    "DeleteProfile",
    "Deleted",
    "EnsureTables",
    "Events",
    "Explain",
    "Explained",
    "Failed",
    "GetJournal",
    "GetStates",
    "Handle",
    "Handles",
    "ListSessions",
    "LookupSession",
    "Ok",
    "PutProfile",
    "Reconfigure",
    "Register",
    "Release",
    "Released",
    "Reply",
    "Report",
    "Restore",
    "RoutingMessage",
    "Select",
    "SessionMessage",
    "State",
    "States",
    "Unregister",
    "error_from_reply",
    "failed",
    "new_encoder",
    "reply_decoder",
]


class _Message(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Base of every message: frozen, encoded as a msgpack array led by its tag."""


# --------------------------------------------------------------------------- routing table


class Select(_Message, frozen=True, tag="select"):
    """Route one request (already normalised by the caller); with ``session_id``, register that
    session on the chosen backend in the same step."""

    request: RouteRequest
    session_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    exclusive: bool = True


class Clear(_Message, frozen=True, tag="clear"):
    """Forget every sticky binding and round-robin counter."""


class EnsureTables(_Message, frozen=True, tag="ensure_tables"):
    """Make sure the store's tables exist (idempotent)."""


class PutProfile(_Message, frozen=True, tag="put_profile"):
    """Store (or replace) a policy profile."""

    profile_id: str
    profile: PolicyProfile


class DeleteProfile(_Message, frozen=True, tag="delete_profile"):
    """Remove a policy profile."""

    profile_id: str


class GetJournal(_Message, frozen=True, tag="journal"):
    """Read the most recent journal events."""

    event_type: str | None
    limit: int | None


class Explain(_Message, frozen=True, tag="explain"):
    """Explain how a request (already normalised) would route now, changing nothing."""

    request: RouteRequest


class Report(_Message, frozen=True, tag="report"):
    """Report what became of a session on a backend."""

    backend: str
    outcome: Outcome
    retry_at: float | None = None
    retry_after: float | None = None


class Restore(_Message, frozen=True, tag="restore"):
    """Forget what was learned about a backend."""

    backend: str


class Release(_Message, frozen=True, tag="release"):
    """Forget an affinity key's sticky binding."""

    affinity_key: str


class GetStates(_Message, frozen=True, tag="get_states"):
    """Read what is known of every backend."""


class Reconfigure(_Message, frozen=True, tag="reconfigure"):
    """Apply new routing settings in one step (exactly these profiles)."""

    settings: RoutingSettings


RoutingMessage: TypeAlias = (
    Select
    | Clear
    | EnsureTables
    | PutProfile
    | DeleteProfile
    | GetJournal
    | Explain
    | Report
    | Restore
    | Release
    | GetStates
    | Reconfigure
)
"""What the routing-table actor accepts."""


# --------------------------------------------------------------------------- session registry


class Register(_Message, frozen=True, tag="register"):
    """Register (or replace) a live session; with ``exclusive``, only if its id is not live."""

    handle: SessionHandle
    exclusive: bool = False


class Unregister(_Message, frozen=True, tag="unregister"):
    """Forget a session (a no-op for an unknown id)."""

    session_id: str


class LookupSession(_Message, frozen=True, tag="lookup"):
    """Ask for a session's backend."""

    session_id: str


class ListSessions(_Message, frozen=True, tag="list"):
    """Ask for every live session."""


SessionMessage: TypeAlias = Register | Unregister | LookupSession | ListSessions
"""What the session-registry actor accepts."""


# --------------------------------------------------------------------------- replies


class Ok(_Message, frozen=True, tag="ok"):
    """The call succeeded and returns nothing."""


class Decided(_Message, frozen=True, tag="decided"):
    """The decision of a :class:`Select`."""

    decision: RouteDecision


class Deleted(_Message, frozen=True, tag="deleted"):
    """Whether a deleted profile existed."""

    existed: bool


class Events(_Message, frozen=True, tag="events"):
    """Journal events, oldest first."""

    events: list[JournalEvent]


class Explained(_Message, frozen=True, tag="explained"):
    """The answer to :class:`Explain`."""

    explanation: Explanation


class Handle(_Message, frozen=True, tag="handle"):
    """The session as registered."""

    handle: SessionHandle


class Backend(_Message, frozen=True, tag="backend"):
    """A session's backend (``None`` when the session is unknown)."""

    backend: str | None


class Handles(_Message, frozen=True, tag="handles"):
    """Every live session, in registration order."""

    handles: list[SessionHandle]


class State(_Message, frozen=True, tag="state"):
    """One backend's state."""

    state: BackendState


class States(_Message, frozen=True, tag="states"):
    """Every backend's state, in catalogue order."""

    states: list[BackendState]


class Released(_Message, frozen=True, tag="released"):
    """Whether a released affinity key had a binding."""

    existed: bool


class Failed(_Message, frozen=True, tag="failed"):
    """The call failed with a typed error: its ``code``, and a routing error's detail or the error's message."""

    code: str
    detail: Any


Reply: TypeAlias = (
    Ok
    | Decided
    | Deleted
    | Events
    | Explained
    | Handle
    | Backend
    | Handles
    | State
    | States
    | Released
    | Failed
)
"""Every reply an actor sends."""


def failed(exc: BeamRoutingError) -> Failed:
    """The reply that carries ``exc`` back to the caller (a routing error's detail, or the message)."""
    if isinstance(exc, RoutingError):
        return Failed(exc.code, exc.detail)
    return Failed(exc.code, str(exc))


def error_from_reply(reply: Reply) -> BeamRoutingError:
    """The exception a caller raises for a reply that is not the one it expected."""
    if type(reply) is Failed:
        return error_for_code(reply.code, reply.detail)
    # An actor only answers a call with the reply type of that call or Failed.
    return BeamRoutingError(f"unexpected reply {type(reply).__name__}")


def new_encoder() -> msgspec.msgpack.Encoder:
    """A msgpack encoder for messages and replies (one per actor, one per router)."""
    return msgspec.msgpack.Encoder()


def reply_decoder() -> msgspec.msgpack.Decoder[Reply]:
    """A decoder for every reply (used on the caller's side)."""
    return msgspec.msgpack.Decoder(Reply)
