"""The store protocol: where a :class:`beamrouting.Router` keeps its state (``beamrouting.store``).

State outlives the task that owns it, as an ETS table passes to its heir: the supervisor
holds one :class:`Store` for the router's lifetime and hands it to every incarnation of
both actors. The routing-table actor serves the routing half (bindings, counters,
profiles, journal) through :meth:`Store.routing_batch`, the session-registry actor the
session half through :meth:`Store.session_batch`. Each actor hands the store everything it
drained from its mailbox at once, as typed operations, so a shared store can serve a whole
batch in one round trip.

A store implements nine members, built from public types only. The operations are frozen
structs; what each one answers is documented on its class. :func:`run_batch` applies a
batch one operation at a time with the protocol's error rules, for stores that need no
more. :class:`beamrouting.MemoryStore` is the embedded default;
:class:`beamrouting.RedisStore` shares the state of a fleet.
:func:`beamrouting.testing.check_store` is the conformance suite every implementation
should pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

import msgspec

from .._core._catalog import Catalog
from .._core._errors import BeamRoutingError
from .._core._explain import Explanation
from .._core._health import BackendState, Outcome
from .._core._journal import Journal, JournalRecord
from .._core._profiles import PolicyProfile
from .._core._request import RequestLimits, RouteRequest
from .._core._settings import RoutingSettings
from .._core._types import JournalEvent, RouteDecision, SessionHandle

__all__ = [
    "ClearOp",
    "DeleteProfileOp",
    "EnsureTablesOp",
    "ExplainOp",
    "JournalFeed",
    "ListSessionsOp",
    "LookupOp",
    "PutProfileOp",
    "ReadJournalOp",
    "ReadStatesOp",
    "ReconfigureOp",
    "RegisterOp",
    "ReleaseOp",
    "ReportOp",
    "RestoreOp",
    "RoutingOp",
    "RoutingResult",
    "SelectOp",
    "SessionOp",
    "SessionResult",
    "Store",
    "StoreCrash",
    "UnregisterOp",
    "run_batch",
]


class StoreCrash:
    """An answer of a batch: applying this operation raised ``error``, which is not a typed answer.

    ``error`` is an exception that is neither a :class:`beamrouting.RoutingError` nor
    :class:`beamrouting.StoreUnavailable` (a bug, a broken invariant). The actor answers
    every other operation of the batch, crashes on the marked one (its caller gets
    :class:`beamrouting.ActorCrashed`) and its restarted incarnation serves the operations
    the answer left out.
    """

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error
        """The exception applying the operation raised."""

    def __repr__(self) -> str:
        return f"StoreCrash({self.error!r})"


# --------------------------------------------------------------------------- routing operations


class SelectOp(msgspec.Struct, frozen=True):
    """Select a backend for ``request``, with every side effect a selection has (binding, counter, journal).

    Answers the :class:`beamrouting.RouteDecision`, or the :class:`beamrouting.RoutingError`
    the engine raises for the same request and state. Backends held out by learned state,
    by their limit of live sessions or by a filtering profile are ineligible (see
    :meth:`beamrouting.RoutingEngine.select_and_register`).

    With ``session_id``, the store registers that session (with ``metadata``) on the chosen
    backend in the same atomic step, taking one of its session slots; nothing changes when
    it cannot (``exclusive`` and a live session has the id:
    :class:`beamrouting.SessionExists`; past the store's session cap:
    :class:`beamrouting.TooManySessions`). Without ``exclusive`` a live session with the id
    moves to the chosen backend.
    """

    request: RouteRequest
    """The normalised request."""
    session_id: str | None = None
    """The session to register on the chosen backend in the same step (``None``: none)."""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    """The session's metadata (with ``session_id``)."""
    exclusive: bool = True
    """Refuse a live session with the same id (:class:`beamrouting.SessionExists`) instead of moving it."""


class ExplainOp(msgspec.Struct, frozen=True):
    """Explain how ``request`` would route now, changing nothing; answers an :class:`beamrouting.Explanation`."""

    request: RouteRequest
    """The normalised request."""


class ClearOp(msgspec.Struct, frozen=True):
    """Forget every sticky binding and round-robin counter (profiles, journal and sessions stay); answers ``None``."""


class EnsureTablesOp(msgspec.Struct, frozen=True):
    """Create whatever the store needs to exist (idempotent); answers ``None``."""


class PutProfileOp(msgspec.Struct, frozen=True):
    """Store (or replace) a validated policy profile; answers ``None``."""

    profile_id: str
    """The profile's id."""
    profile: PolicyProfile
    """The validated profile."""


class DeleteProfileOp(msgspec.Struct, frozen=True):
    """Remove a policy profile; answers whether it existed (``bool``)."""

    profile_id: str
    """The profile's id."""


class ReadJournalOp(msgspec.Struct, frozen=True):
    """Read the most recent journal events, oldest first; answers a ``list`` of :class:`beamrouting.JournalEvent`.

    ``event_type`` keeps one type only; ``limit`` caps how many (both already validated).
    """

    event_type: str | None = None
    """Only events of this type (``None``: every type)."""
    limit: int | None = None
    """At most this many, the most recent (``None``: the whole journal)."""


class ReportOp(msgspec.Struct, frozen=True):
    """Learn what became of a session on ``backend``; answers its :class:`beamrouting.BackendState` after.

    ``retry_at`` (UNIX seconds) or ``retry_after`` (seconds from the store's now) date a
    quota's reset; both are validated already. Journals an ``outcome`` event and, when the
    status changes, a ``backend_health`` event (see :meth:`beamrouting.RoutingEngine.report`).
    """

    backend: str
    """The backend (canonical name)."""
    outcome: Outcome
    """What became of the session."""
    retry_at: float | None = None
    """When a quota resets, in UNIX seconds."""
    retry_after: float | None = None
    """When a quota resets, in seconds from the store's now."""


class RestoreOp(msgspec.Struct, frozen=True):
    """Forget what was learned about ``backend``; answers its :class:`beamrouting.BackendState` after."""

    backend: str
    """The backend (canonical name)."""


class ReleaseOp(msgspec.Struct, frozen=True):
    """Forget an affinity key's sticky binding (and temporary backend); answers whether it had one (``bool``)."""

    affinity_key: str
    """The sticky affinity key."""


class ReadStatesOp(msgspec.Struct, frozen=True):
    """Read what is known of every backend; answers a ``list`` of :class:`beamrouting.BackendState`, catalogue order."""


class ReconfigureOp(msgspec.Struct, frozen=True):
    """Apply ``settings`` (validated already) in one atomic step; answers ``None``.

    Afterwards the store's policy profiles are exactly ``settings.profiles`` (a shared
    store changes them for every process), and its health policy, backend limits and
    weights are ``settings``' (a shared store keeps those per process). Learned state, live
    sessions, bindings and counters stay. See :meth:`beamrouting.RoutingEngine.reconfigure`.
    """

    settings: RoutingSettings
    """The settings to apply (profiles, health policy, limits, weights)."""


RoutingOp: TypeAlias = (
    SelectOp
    | ExplainOp
    | ClearOp
    | EnsureTablesOp
    | PutProfileOp
    | DeleteProfileOp
    | ReadJournalOp
    | ReportOp
    | RestoreOp
    | ReleaseOp
    | ReadStatesOp
    | ReconfigureOp
)
"""An operation of :meth:`Store.routing_batch`."""

RoutingResult: TypeAlias = (
    RouteDecision
    | Explanation
    | bool
    | list[JournalEvent]
    | BackendState
    | list[BackendState]
    | BeamRoutingError
    | StoreCrash
    | None
)
"""One answer of :meth:`Store.routing_batch` (what each operation answers is on its class)."""


# --------------------------------------------------------------------------- session operations


class RegisterOp(msgspec.Struct, frozen=True):
    """Register a live session, replacing (and moving to the end of the order) one with its id; answers ``None``.

    With ``exclusive``, a live session with the same id is not replaced: the operation
    answers :class:`beamrouting.SessionExists` instead. A store that bounds how many
    sessions it holds answers :class:`beamrouting.TooManySessions` for a new one past it.
    """

    handle: SessionHandle
    """The session as it is to be registered."""
    exclusive: bool = False
    """Refuse a live session with the same id instead of replacing it."""


class UnregisterOp(msgspec.Struct, frozen=True):
    """Forget a session (a no-op for an unknown id); answers ``None``."""

    session_id: str
    """The session's id."""


class LookupOp(msgspec.Struct, frozen=True):
    """Ask for a session's backend; answers the backend (``str``) or ``None`` for an unknown id."""

    session_id: str
    """The session's id."""


class ListSessionsOp(msgspec.Struct, frozen=True):
    """Ask for every live session; answers a ``list`` of :class:`beamrouting.SessionHandle`, in registration order."""


SessionOp: TypeAlias = RegisterOp | UnregisterOp | LookupOp | ListSessionsOp
"""An operation of :meth:`Store.session_batch`."""

SessionResult: TypeAlias = str | list[SessionHandle] | BeamRoutingError | StoreCrash | None
"""One answer of :meth:`Store.session_batch` (what each operation answers is on its class)."""


# --------------------------------------------------------------------------- journal feeds


@runtime_checkable
class JournalFeed(Protocol):
    """A live read of a journal kept outside this process, for one :class:`beamrouting.Subscription`.

    A store whose journal is shared returns a new one from :meth:`Store.journal_source`,
    as :class:`beamrouting.RedisStore` does. The subscription makes one call at a time and
    keeps the buffering, filtering and gap reporting; the feed only reads.

    Contract for implementations:

    - :meth:`open` starts listening: every record appended to the journal after it returns
      is read, nothing older. It may be called again after :meth:`aclose` or a failure, and
      starts afresh.
    - :meth:`read` waits for records appended after the last one it returned (or after
      :meth:`open`) and returns at most ``count``, oldest first; it may return an empty list
      when nothing arrived within its waiting interval (the caller reads again).
    - Records are :class:`beamrouting.store.JournalRecord` tuples with the journal's
      strictly increasing event sequence: a record holds two events (``routing_selected``,
      ``audit``) or one (a deny), so the next record's sequence is this one's plus 2 or 1.
      Records the feed cannot return (trimmed from a capped journal before they were read,
      unreadable) show as a jump in the sequence; the subscription reports it as a gap.
    - Both raise :class:`beamrouting.StoreUnavailable` when the journal cannot be reached
      or does not answer in time, never hang. A cancelled call leaves the feed usable: the
      next :meth:`read` goes on after the last record returned.
    - :meth:`close` releases the feed's connection without waiting (at once, or as soon as
      the event loop runs) and :meth:`aclose` waits until it is released; neither is called
      while a call is in progress. Both are idempotent.
    """

    @property
    def base(self) -> int:
        """The random origin of the journal's event ids (known once :meth:`open` returned)."""
        ...

    async def open(self) -> int:
        """Start listening; return the sequence number the next journal event will have."""
        ...

    async def read(self, count: int) -> list[JournalRecord]:
        """Wait for the next records, at most ``count`` of them, oldest first (maybe none)."""
        ...

    def close(self) -> None:
        """Release the connection without waiting."""
        ...

    async def aclose(self) -> None:
        """Release the connection and wait until it is released."""
        ...


# --------------------------------------------------------------------------- the store


@runtime_checkable
class Store(Protocol):
    """The routing state behind a :class:`beamrouting.Router`, batch-oriented and async.

    Contract for implementations:

    - :meth:`routing_batch` is called only from the routing-table actor and
      :meth:`session_batch` only from the session-registry actor, each never concurrently
      with itself; the two may run concurrently with each other.
    - Operations arrive validated: requests normalised against :attr:`catalog` and
      :attr:`limits`, profiles parsed, session ids and handles checked.
    - A batch is applied in order and answered with one entry per operation, in order. An
      operation the store cannot serve answers a :class:`beamrouting.BeamRoutingError`
      (its caller's error: a :class:`beamrouting.RoutingError`,
      :class:`beamrouting.StoreUnavailable` or :class:`beamrouting.StoreDataError`);
      raising one from the batch call answers every operation with it. An operation whose application
      raised anything else answers a :class:`StoreCrash`; the answer may end at that entry,
      and then the operations after it must not have been applied. The actor crashes on
      the first :class:`StoreCrash` and is restarted with this same store, which must stay
      usable; its next incarnation serves the operations left unanswered.
    - :meth:`start` runs before either actor starts and :meth:`aclose` after both stopped;
      a store may be started again after it was closed.
    """

    @property
    def catalog(self) -> Catalog:
        """The catalogue requests are validated against."""
        ...

    @property
    def limits(self) -> RequestLimits:
        """The size limits requests and sessions are validated against."""
        ...

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock (UNIX seconds) the store measures deadlines on, such as a quota's reset."""
        ...

    async def start(self) -> None:
        """Acquire resources (connections); called once per router start."""
        ...

    async def aclose(self) -> None:
        """Release resources; the state itself may persist (a shared store keeps it)."""
        ...

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        """Apply ``ops``, a drained batch of routing operations, in order; return one :data:`RoutingResult` per operation.

        A typed error (a :class:`beamrouting.RoutingError`,
        :class:`beamrouting.StoreUnavailable`, ...) is an answer, not raised; an operation
        that raises anything else is answered by a :class:`StoreCrash`. Raises only what
        makes the whole batch fail (the store cannot be reached: every caller gets it).
        """
        ...

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        """Apply ``ops``, a drained batch of session operations, in order; return one :data:`SessionResult` per operation.

        Errors are answered as :meth:`routing_batch` answers them.
        """
        ...

    async def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed()`` whenever a backend may have come free; run until cancelled.

        "Free" means a session slot freed (a session unregistered or expired) or a backend's
        learned status changed, in this process or, for a shared store, anywhere in the
        fleet. The router runs it for its whole life and wakes its waiting callers on each
        call (they select again), so it must not poll: it waits for news. ``changed`` is
        cheap and never raises. A store that cannot tell (or lost its connection) may
        return early; the waiting callers then wake only at their deadlines.
        """
        ...

    def journal_source(self) -> Journal | JournalFeed | None:
        """What :meth:`beamrouting.Router.subscribe` listens to.

        The in-process :class:`beamrouting.store.Journal` decisions are recorded into, a
        new :class:`JournalFeed` reading a journal kept elsewhere, or ``None`` when the
        store's journal cannot be followed live.
        """
        ...


_Op = TypeVar("_Op")
_Result = TypeVar("_Result")


def run_batch(
    ops: Sequence[_Op], apply: Callable[[_Op], _Result]
) -> list[_Result | BeamRoutingError | StoreCrash]:
    """Apply ``apply`` to each operation in order, with the protocol's error rules.

    A :class:`beamrouting.BeamRoutingError` raised by ``apply`` answers its operation;
    any other exception answers a :class:`StoreCrash` and ends the answer (later
    operations are not applied). For stores whose operations are synchronous; returns the
    answer list.
    """
    results: list[_Result | BeamRoutingError | StoreCrash] = []
    append = results.append
    for op in ops:
        try:
            append(apply(op))
        except BeamRoutingError as exc:
            append(exc)
        except Exception as exc:
            append(StoreCrash(exc))
            break
    return results
