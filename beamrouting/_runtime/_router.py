"""The async facade: :class:`Router`, the service an orchestrator embeds.

::

    async with Router() as router:
        decision = await router.select_backend({"policy": "round_robin"})
        async with router.session({"policy": "sticky"}, session_id="s1") as session:
            ...  # start the agent session on session.backend

Behind it a supervisor task owns two actors, the routing table and the session registry,
reached through msgspec-encoded messages over bounded mailboxes. The caller validates and
normalises a request with the engine's own normaliser before sending it, so the router
raises exactly the engine's errors for the same input.
"""

from __future__ import annotations

import functools
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, TypeVar, overload

import anyio
import anyio.abc
import msgspec

from .._core._catalog import Catalog
from .._core._checks import check_count, check_seconds, is_text
from .._core._errors import (
    ActorCrashed,
    BeamRoutingError,
    CallTimeout,
    RouterClosed,
    RouterUnavailable,
    RoutingError,
    StoreUnavailable,
)
from .._core._explain import Explanation
from .._core._journal import check_journal_query
from .._core._profiles import PolicyProfile, check_profile_id, parse_profile
from .._core._request import merge_session
from .._core._types import JournalEvent, RouteDecision, SessionHandle
from .._store._protocol import MemoryStore, Store
from . import _observability as _obs
from ._mailbox._base import Answer, current_backend, open_mailbox
from ._messages import (
    Backend,
    Clear,
    Decided,
    Deleted,
    DeleteProfile,
    EnsureTables,
    Events,
    Explain,
    Explained,
    GetJournal,
    Handle,
    Handles,
    ListSessions,
    LookupSession,
    Ok,
    PutProfile,
    Register,
    Reply,
    Select,
    Unregister,
    error_from_reply,
    new_encoder,
    plain_str,
    reply_decoder,
)
from ._routing_table import RoutingTable
from ._session_registry import SessionRegistry, check_metadata, check_session_id, session_handle
from ._subscription import DEFAULT_MAXLEN, Subscription, journal_source
from ._supervisor import Child, Supervisor

__all__ = ["Router", "RouterSession", "RouterStatistics"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_ReplyT = TypeVar("_ReplyT", bound=Reply)

_RUNTIME_CODES: Final[dict[type[BeamRoutingError], str]] = {
    ActorCrashed: "actor_crashed",
    RouterUnavailable: "router_unavailable",
    RouterClosed: "router_closed",
    CallTimeout: "call_timeout",
    StoreUnavailable: "store_unavailable",
}


class RouterStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a router's counters (:meth:`Router.statistics`)."""

    state: str
    """``"new"``, ``"running"``, ``"closed"`` or ``"unavailable"`` (the supervisor gave up)."""
    calls: int
    """Calls made to the router's API."""
    errors: dict[str, int]
    """Failed calls by error code (a routing error's ``code``, or ``actor_crashed``,
    ``call_timeout``, ``router_closed``, ``router_unavailable``, ``store_unavailable``)."""
    mailbox_depths: dict[str, int]
    """Messages waiting per actor (``routing_table``, ``session_registry``), callers blocked
    on a full mailbox included."""
    mailbox_size: int
    """The bound of each mailbox."""
    restarts: dict[str, int]
    """How many times the supervisor restarted each actor."""


class RouterSession(msgspec.Struct, frozen=True):
    """A session routed and registered by :meth:`Router.session`."""

    id: str
    """The session id it is registered under."""
    backend: str
    """The backend to start the session on (``decision.backend``)."""
    decision: RouteDecision
    """The routing decision."""
    handle: SessionHandle
    """The registry's handle; ``select_backend(handle, request)`` routes with it as ``last_backend``."""


async def _not_running(data: bytes) -> Answer:
    raise RouterClosed("the router is not running (use it inside 'async with Router() as router')")


def _consequence_of_giving_up(exc: BaseException) -> bool:
    """Whether the block ended with what a supervisor giving up causes (alone or in a group)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_consequence_of_giving_up(inner) for inner in exc.exceptions)
    return isinstance(exc, (RouterUnavailable, ActorCrashed, anyio.get_cancelled_exc_class()))


def _api(
    method: Callable[Concatenate[Router, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[Router, _P], Coroutine[Any, Any, _R]]:
    """Count a public call and its error, if it fails with one of ours."""

    @functools.wraps(method)
    async def counted(self: Router, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        self._calls += 1
        try:
            return await method(self, *args, **kwargs)
        except BeamRoutingError as exc:
            self._count_error(exc)
            raise

    return counted


class Router:
    """Route agent sessions from supervised actors; an async context manager.

    ``Router(catalog=None, *, max_restarts=3, restart_period=5.0, mailbox_size=10_000,
    call_timeout=5.0, store=None, **engine_options)``: ``engine_options`` are
    :class:`~beamrouting.RoutingEngine`'s (``max_counters``, ``max_bindings``,
    ``binding_ttl``, ``journal_size``, ``clock``). With ``store`` (a
    :class:`~beamrouting.Store`, such as a shared one) the catalogue and engine options
    belong to the store instead. The default is a fresh :class:`~beamrouting.MemoryStore`.

    Supervision: a crashed actor restarts with all of its state; the caller whose message
    it was handling gets :class:`~beamrouting.ActorCrashed` and every other message is
    served. More than ``max_restarts`` restarts within ``restart_period`` seconds and the
    router gives up: calls fail with :class:`~beamrouting.RouterUnavailable`, the code
    inside ``async with`` is cancelled and the block raises ``RouterUnavailable``.

    Every call waits at most ``call_timeout`` seconds for its reply (and as long for room
    in a full mailbox) before raising :class:`~beamrouting.CallTimeout`. Calls outside the
    ``async with`` block raise :class:`~beamrouting.RouterClosed`. Runs on asyncio, uvloop
    and trio; a router belongs to the event loop that entered it.
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        max_restarts: int = 3,
        restart_period: float = 5.0,
        mailbox_size: int = 10_000,
        call_timeout: float = 5.0,
        store: Store | None = None,
        **engine_options: Any,
    ) -> None:
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ValueError("max_restarts must be an int >= 0")
        check_seconds("restart_period", restart_period)
        check_count("mailbox_size", mailbox_size, 1)
        check_seconds("call_timeout", call_timeout)
        if store is None:
            store = MemoryStore(catalog, **engine_options)
        elif catalog is not None or engine_options:
            raise TypeError("with store=..., configure the catalogue and engine options on the store")
        elif not isinstance(store, Store):
            raise TypeError(f"store must implement beamrouting.Store, not {type(store).__name__}")
        self._store = store
        self._catalog = store.catalog
        self._normalize = store.normalizer.normalize
        self._max_restarts = max_restarts
        self._restart_period = float(restart_period)
        self._mailbox_size = mailbox_size
        self._call_timeout = float(call_timeout)
        self._encode = new_encoder().encode
        self._decode_reply = reply_decoder().decode
        self._routing: Callable[[bytes], Awaitable[Answer]] = _not_running
        self._sessions: Callable[[bytes], Awaitable[Answer]] = _not_running
        self._supervisor: Supervisor | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._body: anyio.CancelScope | None = None
        """The scope of the code inside ``async with``, cancelled if the supervisor gives up."""
        self._state = "new"
        self._calls = 0
        self._errors: dict[str, int] = {}
        # Observability (_observability.py, _subscription.py): live journal subscriptions.
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()

    @property
    def store(self) -> Store:
        """The state store the actors serve."""
        return self._store

    @property
    def catalog(self) -> Catalog:
        """The catalogue requests are validated against."""
        return self._catalog

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        if self._state != "new":
            raise RuntimeError("a Router can be entered only once; create a new one (it may share the store)")
        backend = current_backend()
        self._state = "starting"
        children = [
            Child(
                RoutingTable, open_mailbox(RoutingTable.name, self._mailbox_size, self._call_timeout, backend)
            ),
            Child(
                SessionRegistry,
                open_mailbox(SessionRegistry.name, self._mailbox_size, self._call_timeout, backend),
            ),
        ]
        body = self._body = anyio.CancelScope()
        supervisor = Supervisor(
            self._store,
            children,
            max_restarts=self._max_restarts,
            restart_period=self._restart_period,
            on_give_up=body.cancel,
        )
        self._supervisor = supervisor
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(supervisor.run, name="beamrouting supervisor")
        except BaseException as exc:
            self._state = "closed"
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            else:
                await task_group.__aexit__(None, None, None)
            raise
        self._task_group = task_group
        self._routing = children[0].mailbox.call
        self._sessions = children[1].mailbox.call
        self._state = "running"
        if _obs.active():  # observability: wrap select_backend only when someone listens
            self.select_backend = _obs.observed(self.select_backend)  # type: ignore[method-assign, assignment]
        body.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._supervisor is not None and self._task_group is not None and self._body is not None
        # Leaving the body's scope first swallows the cancellation the supervisor caused when it
        # gave up; any other exception of the body propagates as it is, never in a group.
        raised = exc
        try:
            swallowed = bool(self._body.__exit__(exc_type, exc, tb))
        except BaseException as remaining:  # trio strips the scope's own Cancelled from a group
            swallowed, exc = False, remaining
        if self._state == "running":
            self._state = "closed"
        self._supervisor.stop()
        outer_cancel = exc is not None and not swallowed and isinstance(exc, anyio.get_cancelled_exc_class())
        try:
            if outer_cancel:
                assert exc is not None
                await self._task_group.__aexit__(type(exc), exc, exc.__traceback__)
            else:
                await self._task_group.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            # Only a bug in the supervisor itself gets here; report it unwrapped when it is one.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        for subscription in list(self._subscriptions):  # observability: end live subscriptions
            await subscription.aclose()
        failure = self._supervisor.failure
        if failure is not None:
            self._state = "unavailable"
            if exc is None or swallowed or _consequence_of_giving_up(exc):
                raise RouterUnavailable(*failure.args) from failure.__cause__
        if exc is not raised and exc is not None:
            raise exc
        return swallowed

    # -- routing ----------------------------------------------------------------------------------

    @overload
    async def select_backend(self, request: Mapping[str, Any], /) -> RouteDecision: ...

    @overload
    async def select_backend(
        self, session_or_opts: object, request: Mapping[str, Any], /
    ) -> RouteDecision: ...

    async def select_backend(self, *args: Any) -> RouteDecision:
        """Choose a backend for ``request``, or for ``(session_or_opts, request)`` (section 8).

        A ``str`` session id routes with the id as affinity key and, when the session
        registry knows the session, its backend as ``last_backend``; a
        :class:`~beamrouting.SessionHandle` (or a :class:`RouterSession`) routes with its
        backend as ``last_backend``; session options contribute their ``routing`` and ``backend``. Raises the
        :class:`~beamrouting.RoutingError` the engine raises for the same input.
        """
        self._calls += 1
        try:
            if len(args) == 1:
                request = args[0]
            elif len(args) == 2:
                request = await self._merge(args[0], args[1])
            else:
                raise TypeError(f"select_backend takes 1 or 2 arguments ({len(args)} given)")
            answer = await self._routing(self._encode(Select(self._normalize(request))))
            if type(answer) is RouteDecision:
                return answer
            raise error_from_reply(self._decode_reply(answer))  # type: ignore[arg-type]
        except BeamRoutingError as exc:
            self._count_error(exc)
            raise

    async def _merge(self, session_or_opts: object, request: object) -> dict[Any, Any]:
        if isinstance(session_or_opts, RouterSession):
            session_or_opts = session_or_opts.handle
        backend = None
        if isinstance(session_or_opts, str) and session_or_opts and is_text(session_or_opts):
            lookup = LookupSession(plain_str(session_or_opts))
            backend = (await self._ask(self._sessions, lookup, Backend)).backend
        return merge_session(session_or_opts, request, backend)

    @_api
    async def explain(self, request: Mapping[str, Any]) -> Explanation:
        """How ``request`` would route now, changing no state and journaling nothing.

        Invalid requests raise the :class:`~beamrouting.RoutingError` of
        :meth:`select_backend`; a selection that would fail is reported in
        :attr:`Explanation.error <beamrouting.Explanation.error>`.
        """
        return (await self._ask(self._routing, Explain(self._normalize(request)), Explained)).explanation

    @_api
    async def clear(self) -> None:
        """Forget every sticky binding and round-robin counter (profiles, journal and sessions stay)."""
        await self._ask(self._routing, Clear(), Ok)

    @_api
    async def ensure_tables(self) -> None:
        """Make sure the store's tables exist; idempotent."""
        await self._ask(self._routing, EnsureTables(), Ok)

    @_api
    async def put_policy_profile(self, profile_id: str, profile: Mapping[str, Any] | PolicyProfile) -> None:
        """Store (or replace) a policy profile; raise :class:`~beamrouting.InvalidPolicyProfile` if malformed."""
        parsed = parse_profile(profile)  # before the id, as the engine does
        await self._ask(self._routing, PutProfile(check_profile_id(profile_id), parsed), Ok)

    @_api
    async def delete_policy_profile(self, profile_id: str) -> bool:
        """Remove a policy profile; return whether it existed."""
        return (await self._ask(self._routing, DeleteProfile(check_profile_id(profile_id)), Deleted)).existed

    @_api
    async def journal(self, event_type: str | None = None, limit: int | None = None) -> list[JournalEvent]:
        """The most recent journal events, oldest first (optionally one type, at most ``limit``)."""
        event_type, limit = check_journal_query(event_type, limit)
        return (await self._ask(self._routing, GetJournal(event_type, limit), Events)).events

    def subscribe(self, *, maxlen: int = DEFAULT_MAXLEN, event_type: str | None = None) -> Subscription:
        """Journal events as they happen: an async iterator, and an async context manager.

        Yields :class:`~beamrouting.JournalEvent` in journal order (only ``event_type``'s
        when given). At most ``maxlen`` undelivered events are buffered: a slow subscriber
        never slows routing; it loses events instead and finds a
        :class:`~beamrouting.SubscriptionGap` with their number in their place. Iteration
        ends when the router closes (or the subscription does).

        With a store that journals in this process (the in-memory default), listening
        starts when this returns, and the subscriber that falls ``maxlen`` events behind
        loses the oldest ones. With a shared store that offers a journal feed
        (:class:`~beamrouting.RedisStore`), it delivers the journal events of the whole
        fleet, in the shared journal's order; listening starts when the subscription is
        started: on entering ``async with``, at ``await subscription.start()``, or at its
        first ``__anext__``. It reads in batches on a connection of its own; its backlog
        is the shared journal, so it loses events only when the capped journal dropped
        them before they were read. If the store cannot be reached, starting or iterating
        raises :class:`~beamrouting.StoreUnavailable` and the subscription is closed.
        Raises :class:`TypeError` for a store that offers neither.
        """
        subscription = Subscription(
            journal_source(self._store),
            maxlen=maxlen,
            event_type=event_type,
            on_close=self._subscriptions.discard,
        )
        if self._state in ("closed", "unavailable"):
            subscription.close()
        else:
            self._subscriptions.add(subscription)
        return subscription

    # -- sessions ---------------------------------------------------------------------------------

    @_api
    async def register_session(
        self, session_id: str, backend: str, metadata: Mapping[str, Any] | None = None
    ) -> SessionHandle:
        """Register a live session on ``backend`` (any accepted spelling; stored canonical).

        Replaces a session registered under the same id. Raises
        :class:`~beamrouting.UnknownBackend`, or :class:`~beamrouting.InvalidRouteRequest`
        for an empty or non-``str`` id (``"session_id"``) or metadata that is not a mapping
        of ``str`` keys to plain data (``"metadata"``).
        """
        handle = session_handle(self._catalog, session_id, backend, metadata)
        return (await self._ask(self._sessions, Register(handle), Handle)).handle

    @_api
    async def unregister_session(self, session_id: str) -> None:
        """Forget a session; a no-op for an unknown id."""
        await self._ask(self._sessions, Unregister(check_session_id(session_id)), Ok)

    @_api
    async def session_backend(self, session_id: str) -> str | None:
        """The backend of a live session, or ``None`` when it is not registered."""
        return (await self._ask(self._sessions, LookupSession(check_session_id(session_id)), Backend)).backend

    @_api
    async def sessions(self) -> list[SessionHandle]:
        """Every live session, in registration order."""
        return (await self._ask(self._sessions, ListSessions(), Handles)).handles

    @asynccontextmanager
    async def session(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        opts: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[RouterSession]:
        """Route a new session, register it under the chosen backend, unregister it on exit.

        Routes with ``select_backend(opts, request)`` when ``opts`` is given, else
        ``select_backend(session_id, request)`` when ``session_id`` is given, else
        ``select_backend(request)``; registers under ``session_id`` or a new random id.
        The session is unregistered however the block ends, cancellation included.
        """
        request = {} if request is None else request
        sid = uuid.uuid4().hex if session_id is None else check_session_id(session_id)
        metadata = check_metadata(metadata)  # fail before routing moves any counter
        if opts is not None:
            decision = await self.select_backend(opts, request)
        elif session_id is not None:
            decision = await self.select_backend(sid, request)
        else:
            decision = await self.select_backend(request)
        try:
            handle = await self.register_session(sid, decision.backend, metadata)
            yield RouterSession(sid, decision.backend, decision, handle)
        finally:
            # Shielded: a cancelled session must not stay registered. The register message
            # may have been applied even if its caller was cancelled, so this always runs.
            with anyio.CancelScope(shield=True):
                await self._forget_session(sid)

    async def _forget_session(self, session_id: str) -> None:
        for _ in range(2):  # once more if the registry crashed on this very message
            try:
                await self.unregister_session(session_id)
                return
            except ActorCrashed:
                continue
            except (RouterClosed, RouterUnavailable):
                return  # the registry is gone with everything in it
            except CallTimeout:
                return  # the call was refused; the router is overloaded or stuck

    # -- introspection ------------------------------------------------------------------------------

    async def statistics(self) -> RouterStatistics:
        """Mailbox depths, calls, errors by code and restarts per actor."""
        children = self._supervisor.children if self._supervisor is not None else ()
        state = self._state
        if self._supervisor is not None and self._supervisor.failure is not None:
            state = "unavailable"
        return RouterStatistics(
            state,
            self._calls,
            dict(self._errors),
            {child.name: child.mailbox.depth for child in children},
            self._mailbox_size,
            {child.name: child.control.restarts for child in children},
        )

    # -- internals ----------------------------------------------------------------------------------

    async def _ask(
        self, call: Callable[[bytes], Awaitable[Answer]], message: Any, expected: type[_ReplyT]
    ) -> _ReplyT:
        answer = await call(self._encode(message))
        reply = self._decode_reply(answer) if type(answer) is bytes else Decided(answer)  # type: ignore[arg-type]
        if type(reply) is expected:
            return reply
        raise error_from_reply(reply)

    def _count_error(self, exc: BeamRoutingError) -> None:
        code = (
            exc.code if isinstance(exc, RoutingError) else _RUNTIME_CODES.get(type(exc), type(exc).__name__)
        )
        self._errors[code] = self._errors.get(code, 0) + 1
