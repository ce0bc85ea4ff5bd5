"""The state store: what the supervisor keeps across actor restarts.

State outlives the task that owns it, as an ETS table passes to its heir: the supervisor
holds one :class:`Store` for the router's lifetime and hands it to every incarnation of
both actors. The routing-table actor uses the routing half (bindings, counters, profiles,
journal), the session-registry actor the session half; no other task touches a store.
Both halves are batch-oriented: an actor hands the store everything it drained from its
mailbox at once (:meth:`Store.select_batch`, :meth:`Store.session_batch`), so a shared
store can serve a whole batch in one round trip.

:class:`MemoryStore` is the embedded default (a :class:`~beamrouting.RoutingEngine` and a
dict of sessions). A shared store (Redis) implements the same protocol so several
processes share bindings, counters and sessions.

Live journal subscriptions (:meth:`Router.subscribe <beamrouting.Router.subscribe>`)
listen to the store's in-process journal (:attr:`Store.local_journal`). A store whose
journal lives elsewhere answers ``None`` there and may offer a ``journal_feed()`` method
instead, returning a :class:`JournalFeed` that reads the shared journal live (as
:meth:`RedisStore.journal_feed <beamrouting.RedisStore.journal_feed>` does); that method
is optional, so a store without it still implements :class:`Store` and only cannot be
subscribed to.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias, runtime_checkable

from .._core._catalog import Catalog
from .._core._engine import RoutingEngine
from .._core._errors import RoutingError, StoreUnavailable
from .._core._explain import Explanation
from .._core._journal import Journal, JournalRecord
from .._core._profiles import PolicyProfile
from .._core._request import RequestNormalizer, RouteRequest
from .._core._types import JournalEvent, RouteDecision, SessionHandle
from .._runtime._messages import ListSessions, LookupSession, Register, Unregister

__all__ = [
    "JournalFeed",
    "MemoryStore",
    "SelectResult",
    "SessionOp",
    "SessionResult",
    "Store",
    "StoreCrash",
]


class StoreCrash:
    """The crash marker of :meth:`Store.select_batch`: selecting this request raised ``error``.

    ``error`` is an exception that is not a :class:`RoutingError` answer (a bug, a broken
    invariant). The actor answers the requests before the marker, crashes on the marked
    one (its caller gets :class:`~beamrouting.ActorCrashed`) and the restarted actor serves
    the requests after it.
    """

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"StoreCrash({self.error!r})"


SelectResult = RouteDecision | RoutingError | StoreCrash
"""One entry of :meth:`Store.select_batch`'s answer."""

SessionOp: TypeAlias = Register | Unregister | LookupSession | ListSessions
"""One operation of :meth:`Store.session_batch`, already validated by the actor."""

SessionResult: TypeAlias = str | list[SessionHandle] | RoutingError | StoreUnavailable | StoreCrash | None
"""One entry of :meth:`Store.session_batch`'s answer.

By operation: ``Register`` and ``Unregister`` answer ``None``, ``LookupSession`` the
backend (``str``) or ``None``, ``ListSessions`` the handles in registration order. Any of
them may answer a :class:`RoutingError` or :class:`~beamrouting.StoreUnavailable` (the
caller's error) or a :class:`StoreCrash`.
"""


@runtime_checkable
class JournalFeed(Protocol):
    """A live read of a journal kept outside this process, for one :class:`~beamrouting.Subscription`.

    A store whose journal is shared (``local_journal`` is ``None``) returns a new one from
    its optional ``journal_feed()`` method, such as
    :meth:`RedisStore.journal_feed <beamrouting.RedisStore.journal_feed>`. The subscription
    makes one call at a time and keeps the buffering, filtering and gap reporting; the feed
    only reads.

    Contract for implementations:

    - :meth:`open` starts listening: every record appended to the journal after it returns
      is read, nothing older. It may be called again after :meth:`aclose` or a failure, and
      starts afresh.
    - :meth:`read` waits for records appended after the last one it returned (or after
      :meth:`open`) and returns at most ``count``, oldest first; it may return an empty list
      when nothing arrived within its waiting interval (the caller reads again).
    - Records are :class:`~beamrouting._journal.JournalRecord` tuples with the journal's
      strictly increasing event sequence: a record holds two events (``routing_selected``,
      ``audit``) or one (a deny), so the next record's sequence is this one's plus 2 or 1.
      Records the feed cannot return (trimmed from a capped journal before they were read,
      unreadable) show as a jump in the sequence; the subscription reports it as a gap.
    - Both raise :class:`~beamrouting.StoreUnavailable` when the journal cannot be reached
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


@runtime_checkable
class Store(Protocol):
    """The routing state behind a :class:`~beamrouting.Router`, batch-oriented and async.

    Contract for implementations:

    - Every method is called from one actor task at a time (the routing half from the
      routing-table actor, the session half from the session-registry actor), never
      concurrently with itself; the two halves may run concurrently with each other.
    - Requests arrive normalised (:class:`RouteRequest`) and re-validated by the actor
      with :meth:`validate`; profiles arrive parsed (:class:`PolicyProfile`).
    - A method raises :class:`RoutingError` for a request it cannot serve, and
      :class:`~beamrouting.StoreUnavailable` when shared state cannot be reached; the actor
      turns both into the caller's error. Any other exception is a crash: the actor is
      restarted with this same store, so the store must stay usable.
    - :meth:`select_batch` serves a whole drained batch at once (a shared store can use one
      round trip for it) and reports per request, in order; it stops at the first crash.
      :meth:`session_batch` does the same for the session half.
    - :meth:`start` runs before either actor starts and :meth:`aclose` after both stopped;
      a store may be started again after it was closed.
    """

    @property
    def catalog(self) -> Catalog:
        """The catalogue requests are validated against."""
        ...

    @property
    def normalizer(self) -> RequestNormalizer:
        """The request normaliser callers use before sending (the engine's own)."""
        ...

    @property
    def local_journal(self) -> Journal | None:
        """The in-process journal decisions are recorded into, or ``None`` if it lives elsewhere.

        :meth:`Router.subscribe <beamrouting.Router.subscribe>` listens to it. A store whose
        journal is shared (in Redis, say) answers ``None``; it can be subscribed to if it
        also has a ``journal_feed()`` method returning a :class:`JournalFeed` (optional,
        not part of this protocol: see the module docstring).
        """
        ...

    def validate(self, request: RouteRequest) -> None:
        """Re-check a decoded request against the catalogue; raise :class:`RoutingError`."""
        ...

    async def start(self) -> None:
        """Acquire resources (connections); called once per router start."""
        ...

    async def aclose(self) -> None:
        """Release resources; the state itself may persist (a shared store keeps it)."""
        ...

    async def select_batch(self, requests: list[RouteRequest]) -> list[SelectResult]:
        """Select for each request, in order, applying each one's side effects (section 7).

        The answer has one entry per request: the decision, or the :class:`RoutingError`
        the engine would raise. At the first request whose selection raises anything else
        the answer ends with a :class:`StoreCrash` for it, and later requests are not
        applied (so the answer is shorter than ``requests``).
        """
        ...

    async def explain(self, request: RouteRequest) -> Explanation:
        """How ``request`` would route now (:meth:`RoutingEngine.explain`), changing no state."""
        ...

    async def clear(self) -> None:
        """Forget every sticky binding and round-robin counter (profiles, journal and sessions stay)."""
        ...

    async def ensure_tables(self) -> None:
        """Create whatever the store needs to exist; idempotent."""
        ...

    async def put_policy_profile(self, profile_id: str, profile: PolicyProfile) -> None:
        """Store (or replace) a validated policy profile."""
        ...

    async def delete_policy_profile(self, profile_id: str) -> bool:
        """Remove a policy profile; return whether it existed."""
        ...

    async def journal(self, event_type: str | None, limit: int | None) -> list[JournalEvent]:
        """The most recent journal events, oldest first (optionally one type, at most ``limit``)."""
        ...

    async def session_batch(self, ops: list[SessionOp]) -> list[SessionResult]:
        """Apply each session operation, in order; one :data:`SessionResult` per operation.

        The session-registry actor hands over everything it drained at once (a shared
        store can use one round trip for it). An operation that raises anything but a
        :class:`RoutingError` or :class:`~beamrouting.StoreUnavailable` answers a
        :class:`StoreCrash`. If a crash happens before an operation was applied, the answer
        ends with that crash and the later operations are not applied (the answer is
        shorter than ``ops``); a crash in reading an applied operation's outcome answers
        only that operation, and the later ones are answered as usual. Raising
        :class:`~beamrouting.StoreUnavailable` (or a :class:`RoutingError`) answers every
        operation with it.
        """
        ...

    async def register_session(self, handle: SessionHandle) -> None:
        """Register a live session, replacing one with the same id."""
        ...

    async def unregister_session(self, session_id: str) -> None:
        """Forget a session; a no-op for an unknown id."""
        ...

    async def session_backend(self, session_id: str) -> str | None:
        """The backend of a live session, or ``None``."""
        ...

    async def sessions(self) -> list[SessionHandle]:
        """Every live session, in registration order."""
        ...


class MemoryStore:
    """The in-memory :class:`Store`: one :class:`RoutingEngine` plus a dict of sessions.

    ``MemoryStore(catalog, **engine_options)`` builds the engine (options as
    :class:`RoutingEngine`'s); ``MemoryStore(engine=engine)`` serves an existing one.
    The state lives as long as the store object, across actor restarts and router restarts.
    """

    def __init__(
        self, catalog: Catalog | None = None, *, engine: RoutingEngine | None = None, **engine_options: Any
    ) -> None:
        if engine is None:
            engine = RoutingEngine(catalog, **engine_options)
        elif catalog is not None or engine_options:
            raise TypeError("pass either an engine or a catalogue and engine options, not both")
        self.engine = engine
        self._sessions: dict[str, SessionHandle] = {}

    @property
    def catalog(self) -> Catalog:
        """The engine's catalogue."""
        return self.engine.catalog

    @property
    def normalizer(self) -> RequestNormalizer:
        """The engine's request normaliser."""
        return self.engine.normalizer

    @property
    def local_journal(self) -> Journal:
        """The engine's journal (:attr:`RoutingEngine.journal_ring`): subscriptions listen to it."""
        return self.engine.journal_ring

    def validate(self, request: RouteRequest) -> None:
        """:meth:`RoutingEngine.validate`."""
        self.engine.validate(request)

    async def start(self) -> None:
        """Nothing to acquire."""

    async def aclose(self) -> None:
        """Nothing to release; the state stays for the next start."""

    async def select_batch(self, requests: list[RouteRequest]) -> list[SelectResult]:
        """Select for each request with the engine, stopping at the first crash."""
        select = self.engine.select_normalized
        results: list[SelectResult] = []
        append = results.append
        for request in requests:
            try:
                append(select(request))
            except RoutingError as exc:
                append(exc)
            except Exception as exc:
                append(StoreCrash(exc))
                break
        return results

    async def explain(self, request: RouteRequest) -> Explanation:
        """:meth:`RoutingEngine.explain_normalized`."""
        return self.engine.explain_normalized(request)

    async def clear(self) -> None:
        """:meth:`RoutingEngine.clear`."""
        self.engine.clear()

    async def ensure_tables(self) -> None:
        """:meth:`RoutingEngine.ensure_tables`."""
        self.engine.ensure_tables()

    async def put_policy_profile(self, profile_id: str, profile: PolicyProfile) -> None:
        """:meth:`RoutingEngine.put_policy_profile`."""
        self.engine.put_policy_profile(profile_id, profile)

    async def delete_policy_profile(self, profile_id: str) -> bool:
        """:meth:`RoutingEngine.delete_policy_profile`."""
        return self.engine.delete_policy_profile(profile_id)

    async def journal(self, event_type: str | None, limit: int | None) -> list[JournalEvent]:
        """:meth:`RoutingEngine.journal`."""
        return self.engine.journal(event_type, limit)

    async def session_batch(self, ops: list[SessionOp]) -> list[SessionResult]:
        """Apply each operation in order with the single-operation methods; stop at a crash."""
        results: list[SessionResult] = []
        append = results.append
        for op in ops:
            try:
                match op:
                    case Register(handle):
                        await self.register_session(handle)
                        append(None)
                    case Unregister(session_id):
                        await self.unregister_session(session_id)
                        append(None)
                    case LookupSession(session_id):
                        append(await self.session_backend(session_id))
                    case ListSessions():
                        append(await self.sessions())
                    case _:
                        raise TypeError(f"not a session operation: {op!r}")
            except (RoutingError, StoreUnavailable) as exc:
                append(exc)
            except Exception as exc:
                append(StoreCrash(exc))
                break
        return results

    async def register_session(self, handle: SessionHandle) -> None:
        """Register ``handle`` (replacing and moving to the end any session with its id)."""
        self._sessions.pop(handle.session_id, None)
        self._sessions[handle.session_id] = handle

    async def unregister_session(self, session_id: str) -> None:
        """Forget ``session_id``."""
        self._sessions.pop(session_id, None)

    async def session_backend(self, session_id: str) -> str | None:
        """The session's backend, or ``None``."""
        handle = self._sessions.get(session_id)
        return None if handle is None else handle.backend

    async def sessions(self) -> list[SessionHandle]:
        """Every live session, in registration order."""
        return list(self._sessions.values())
