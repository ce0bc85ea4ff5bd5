"""The async facade: :class:`Router`, the service an orchestrator embeds.

::

    async with Router() as router:
        decision = await router.select_backend({"policy": "round_robin"})
        async with router.session({"policy": "sticky"}, session_id="s1") as session:
            ...  # start the agent session on session.backend

Behind it a supervisor task owns two actors, the routing table and the session registry,
reached through their clients (:mod:`._routing_table`, :mod:`._session_registry`) with
msgspec-encoded messages over bounded mailboxes. The caller validates and normalises a
request with the engine's own normaliser before sending it, so the router raises exactly
the engine's errors for the same input.
"""

from __future__ import annotations

import functools
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any, Concatenate, Final, ParamSpec, Self, TypeVar, overload

import anyio
from anyio import AsyncContextManagerMixin

from .._core._catalog import Catalog
from .._core._checks import check_count, check_instance, check_seconds, is_text
from .._core._errors import (
    ActorCrashed,
    BeamRoutingError,
    CallTimeout,
    ConfigError,
    NoBackendAvailable,
    RouterClosed,
    RouterUnavailable,
    SessionExists,
    UnknownBackend,
)
from .._core._explain import Explanation
from .._core._health import BackendState, Outcome, check_outcome, check_reset
from .._core._journal import check_journal_query
from .._core._profiles import PolicyProfile, check_profile_id, parse_profile
from .._core._request import RequestNormalizer, RouteRequest, merge_session
from .._core._sessions import check_metadata, check_session_id, session_handle
from .._core._types import JournalEvent, RouteDecision, SessionHandle
from .._store._environment import current_async_library
from .._store._memory import MemoryStore
from .._store._protocol import Store
from . import _observability as _obs
from ._config import Config, RouterOptions, reload_settings
from ._mailbox import mailbox_class
from ._routing_table import RoutingTable, RoutingTableClient
from ._session import RouterSession
from ._session_registry import SessionRegistry, SessionRegistryClient
from ._status import RouterState, RouterStatistics
from ._subscription import DEFAULT_MAXLEN, Subscription, journal_source
from ._supervisor import Child, Supervisor
from ._waiting import Waiters

__all__ = ["Router", "RouterSession", "RouterState", "RouterStatistics"]

_P = ParamSpec("_P")
_MESSAGES_KEPT: Final = 1024
_MESSAGE_BYTES: Final = 1 << 21
"""Bytes of requests and their encoded messages a router keeps (2 MiB)."""
_R = TypeVar("_R")


def _comes_back(error: NoBackendAvailable) -> tuple[float | None, bool]:
    """``(when a learned-out backend is back, whether a freed session slot would do)``, from its detail."""
    detail = error.detail
    if not isinstance(detail, dict):
        return None, False
    back = detail.get("retry_at")
    if isinstance(back, bool) or not isinstance(back, (int, float)):
        back = None
    return back, detail.get("reason") == "at_capacity"


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


class Router(AsyncContextManagerMixin):
    """Route agent sessions from supervised actors; an async context manager.

    ``Router(catalog=None, *, max_restarts=3, restart_period=5.0, mailbox_size=10_000,
    call_timeout=5.0, store=None, max_waiters=10_000, **engine_options)``: ``catalog`` is
    the :class:`beamrouting.Catalog` (the built-in one by default); ``engine_options`` are
    :class:`beamrouting.RoutingEngine`'s (``max_counters``, ``max_bindings``,
    ``binding_ttl``, ``journal_size``, ``clock``, ``health``, ``limits``, ``weights``, the
    size limits). With ``store`` (a :class:`beamrouting.store.Store`, such as a shared one)
    the catalogue and engine options belong to the store instead. The default is a fresh
    :class:`beamrouting.MemoryStore`. ``max_waiters`` bounds the callers waiting (``wait=``)
    for a backend at once. :meth:`from_config` builds one from a configuration file.

    Supervision: a crashed actor restarts with all of its state; the caller whose message
    it was handling gets :class:`beamrouting.ActorCrashed` and every other message is
    served. More than ``max_restarts`` restarts within ``restart_period`` seconds and the
    router gives up: calls fail with :class:`beamrouting.RouterUnavailable`, the code
    inside ``async with`` is cancelled and the block raises ``RouterUnavailable``.

    Every call waits at most ``call_timeout`` seconds for its reply (and as long for room
    in a full mailbox) before raising :class:`beamrouting.CallTimeout`. Calls outside the
    ``async with`` block raise :class:`beamrouting.RouterClosed`. Runs on asyncio, uvloop
    and trio; a router belongs to the event loop that entered it, and is entered once.

    A bad option raises :class:`TypeError` (wrong type) or :class:`ValueError` (out of range).
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
        max_waiters: int = 10_000,
        **engine_options: Any,
    ) -> None:
        self._max_restarts = check_count("max_restarts", max_restarts, 0)
        self._restart_period = check_seconds("restart_period", restart_period)
        self._mailbox_size = check_count("mailbox_size", mailbox_size, 1)
        self._call_timeout = check_seconds("call_timeout", call_timeout)
        if store is None:
            store = MemoryStore(catalog, **engine_options)
        elif catalog is not None or engine_options:
            raise TypeError("with store=..., configure the catalogue and engine options on the store")
        self._store: Store = check_instance("store", store, Store)
        self._catalog = store.catalog
        self._limits = store.limits
        self._clock = store.clock
        normalizer = RequestNormalizer(self._catalog, self._limits)
        self._normalize = normalizer.normalize
        self._request_key = normalizer.request_key
        self._messages: dict[bytes, bytes] = {}
        """Encoded select messages by the request's key: equal requests are encoded once."""
        self._message_bytes = 0
        self._affinity_key = normalizer.affinity_key
        self._waiters = Waiters(check_count("max_waiters", max_waiters, 1))
        self._table = RoutingTableClient()
        self._registry = SessionRegistryClient()
        self._supervisor: Supervisor | None = None
        self._observer: _obs.RouterObserver | None = None
        """Observes selections while someone listens (OpenTelemetry, DEBUG logs, collectors); else ``None``."""
        self._observers: tuple[_obs.RouterObserver, ...] = ()
        """Observers of every selection besides logging and OpenTelemetry (metrics collectors)."""
        self._state = RouterState.NEW
        self._calls = 0
        self._errors: dict[str, int] = {}
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._config: Config | None = None
        """The configuration the router was built from (:meth:`from_config`, :meth:`reload`)."""
        self._options = RouterOptions(max_restarts, restart_period, mailbox_size, call_timeout, max_waiters)

    @classmethod
    def from_config(cls, config: Config) -> Router:
        """A new router as ``config`` (from :func:`beamrouting.load_config`) describes it.

        Builds the store (:meth:`beamrouting.Config.build_store`) with
        the catalogue, health policy, limits and weights, and the router with
        ``config.router``'s options; the configuration's policy profiles are put when the
        router starts (added to the store's; with Redis, for the whole fleet). Returns the
        router, not started. Raises :class:`beamrouting.ConfigError` for a store option
        the store refuses, and :class:`ImportError` for a Redis store without the
        ``redis`` extra.
        """
        if not isinstance(config, Config):
            raise ConfigError(f"from_config takes a Config (from load_config), not {type(config).__name__}")
        options = config.router
        router = cls(
            store=config.build_store(),
            max_restarts=options.max_restarts,
            restart_period=options.restart_period,
            mailbox_size=options.mailbox_size,
            call_timeout=options.call_timeout,
            max_waiters=options.max_waiters,
        )
        router._config = config
        return router

    @property
    def config(self) -> Config | None:
        """The configuration the router was built from or last reloaded (``None``: built in code)."""
        return self._config

    @property
    def store(self) -> Store:
        """The state store the actors serve."""
        return self._store

    @property
    def catalog(self) -> Catalog:
        """The catalogue requests are validated against."""
        return self._catalog

    @property
    def state(self) -> RouterState:
        """Where the router is in its life."""
        failed = self._supervisor is not None and self._supervisor.failure is not None
        return RouterState.UNAVAILABLE if failed else self._state

    # -- lifecycle ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncIterator[Self]:
        """Start the store and the actors, run the block, stop everything in reverse order.

        The block's own exception propagates as it is, never in a group; if the supervisor
        gave up, the block is cancelled and :class:`beamrouting.RouterUnavailable` raised.
        """
        if self._state is not RouterState.NEW:
            raise RuntimeError("a Router can be entered only once; create a new one (it may share the store)")
        backend = current_async_library() or "none"
        mailbox = mailbox_class(backend)
        body = anyio.CancelScope()  # the block's code, cancelled if the supervisor gives up
        children = [
            Child(actor, mailbox(actor.name, self._mailbox_size, self._call_timeout))
            for actor in (RoutingTable, SessionRegistry)
        ]
        supervisor = self._supervisor = Supervisor(
            self._store,
            children,
            max_restarts=self._max_restarts,
            restart_period=self._restart_period,
            on_give_up=body.cancel,
        )
        self._state = RouterState.STARTING
        error: BaseException | None = None
        """What the start or the block raised: re-raised as it is once everything stopped."""
        try:
            async with anyio.create_task_group() as task_group:
                try:
                    await task_group.start(supervisor.run, name="beamrouting supervisor")
                except anyio.get_cancelled_exc_class():
                    raise
                except BaseException as exc:
                    error = exc
                else:
                    self._table.connect(children[0].mailbox.call)
                    self._registry.connect(children[1].mailbox.call)
                    self._observer = _obs.select_observer(self._observers)
                    watching = anyio.CancelScope()
                    task_group.start_soon(self._watch, watching, name="beamrouting watch")
                    self._state = RouterState.RUNNING
                    try:
                        with body:
                            if self._config is not None:
                                for profile_id, profile in self._config.settings.profiles.items():
                                    await self._table.put_profile(profile_id, profile)
                            yield self
                    except anyio.get_cancelled_exc_class():
                        raise  # an outer cancellation: the task group handles it
                    except BaseException as exc:
                        error = exc
                    finally:
                        self._state = RouterState.CLOSED
                        watching.cancel()
                        supervisor.stop()
        except BaseExceptionGroup as group:
            # Only a bug in the supervisor itself gets here; report it unwrapped when it is one.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._state = RouterState.CLOSED
            with anyio.CancelScope(shield=True):
                for subscription in list(self._subscriptions):
                    await subscription.aclose()
        failure = supervisor.failure
        if failure is not None:
            self._state = RouterState.UNAVAILABLE
            if error is None or _consequence_of_giving_up(error):
                raise RouterUnavailable(*failure.args) from failure.__cause__
        if error is not None:
            raise error

    async def _watch(self, scope: anyio.CancelScope) -> None:
        """Wake the waiting callers whenever the store says a backend may have come free."""
        with scope:
            try:
                await self._store.watch(self._waiters.wake)
            except Exception as exc:  # a watch that fails only makes waiters wake at their deadlines
                _obs.logger.warning("the store stopped telling of freed backends: %r", exc)

    # -- routing ----------------------------------------------------------------------------------

    @overload
    async def select_backend(
        self, request: Mapping[str, Any], /, *, wait: float | None = None
    ) -> RouteDecision: ...

    @overload
    async def select_backend(
        self, session_or_opts: object, request: Mapping[str, Any], /, *, wait: float | None = None
    ) -> RouteDecision: ...

    async def select_backend(self, *args: Any, wait: float | None = None) -> RouteDecision:
        """Choose a backend for ``request``, or for ``(session_or_opts, request)``.

        A ``str`` session id routes with the id as affinity key and, when the session
        registry knows the session, its backend as ``last_backend``; a
        :class:`beamrouting.SessionHandle` (or a :class:`RouterSession`) routes with its
        backend as ``last_backend``; session options contribute their ``routing`` and
        ``backend``. Returns the :class:`beamrouting.RouteDecision`.

        With ``wait`` (seconds), a request that finds no backend available because of what
        the router learned waits for one to come back, outside ``call_timeout``: it sleeps
        until the earliest ``retry_at`` (or until a report, a restore or a freed slot
        wakes it) and selects again, until ``wait`` runs out. It raises at once when no
        backend comes back within ``wait``.

        Raises the :class:`beamrouting.RoutingError` the engine raises for the same input,
        the router's own errors (:class:`beamrouting.RouterClosed`,
        :class:`beamrouting.CallTimeout`, ...), :class:`TypeError` for a wrong number of
        arguments, and :class:`TypeError` or :class:`ValueError` for a bad ``wait``.
        """
        self._calls += 1
        observer = self._observer
        span = None if observer is None else observer.start()
        try:
            if wait is None and len(args) == 1:
                request = args[0]
                key = self._request_key(request) if type(request) is dict else None
                message = None if key is None else self._messages.get(key)
                if message is None:
                    message = self._table.select_message(self._normalize(request))
                    if key is not None:
                        self._remember(key, message)
                answer = await self._table.call(message)
                if type(answer) is not RouteDecision:
                    raise self._table.error(answer)
                decision = answer
            else:
                decision = await self._route(self._normalize(await self._request_of(args)), wait, None)
        except BeamRoutingError as exc:
            self._count_error(exc)
            if observer is not None:
                observer.failed(span, exc)
            raise
        except BaseException:
            if observer is not None:
                observer.cancelled(span)
            raise
        if observer is not None:
            observer.succeeded(span, decision)
        return decision

    def _remember(self, key: bytes, message: bytes) -> None:
        messages = self._messages
        if len(messages) >= _MESSAGES_KEPT or self._message_bytes > _MESSAGE_BYTES:
            messages.clear()
            self._message_bytes = 0
        messages[key] = message
        self._message_bytes += len(key) + len(message)

    async def _request_of(self, args: tuple[Any, ...]) -> Any:
        """The request ``select_backend(*args)`` routes (section 8 for two arguments)."""
        if len(args) == 1:
            return args[0]
        if len(args) == 2:
            return await self._merge(args[0], args[1])
        raise TypeError(f"select_backend takes 1 or 2 arguments ({len(args)} given)")

    async def _select_normalized(
        self,
        request: RouteRequest,
        wait: float | None = None,
        session: tuple[str, dict[str, Any], bool] | None = None,
    ) -> RouteDecision:
        """Route a normalised request as :meth:`select_backend` does: counted, observed, waiting if asked.

        ``session`` is ``(session id, metadata, exclusive)``: register that session on the
        chosen backend in the same step of the routing-table actor.
        """
        self._calls += 1
        observer = self._observer
        span = None if observer is None else observer.start()
        try:
            decision = await self._route(request, wait, session)
        except BeamRoutingError as exc:
            self._count_error(exc)
            if observer is not None:
                observer.failed(span, exc)
            raise
        except BaseException:
            if observer is not None:
                observer.cancelled(span)
            raise
        if observer is not None:
            observer.succeeded(span, decision)
        return decision

    def _route(
        self, request: RouteRequest, wait: float | None, session: tuple[str, dict[str, Any], bool] | None
    ) -> Awaitable[RouteDecision]:
        """Route ``request`` (not counted): at once, or waiting up to ``wait`` seconds."""
        table = self._table

        def attempt() -> Awaitable[RouteDecision]:
            if session is None:
                return table.select(request)
            return table.select_session(request, session[0], session[1], exclusive=session[2])

        return attempt() if wait is None else self._select_waiting(attempt, wait)

    async def _select_waiting(
        self, attempt: Callable[[], Awaitable[RouteDecision]], wait: float
    ) -> RouteDecision:
        """Select, waiting up to ``wait`` seconds for a backend to come back or a slot to free (see :meth:`select_backend`)."""
        wait = check_seconds("wait", wait, finite=True, minimum=0.0)
        clock = self._clock
        deadline = clock() + wait
        give_up = anyio.current_time() + wait  # real time too: a clock that stands still must not hang us
        changes = self._waiters.changes
        try:
            return await attempt()
        except NoBackendAvailable as exc:
            first = exc
        if self._waiters.waiting >= self._waiters.max_waiters:
            raise first  # as many callers wait as may: the error, at once
        async with self._waiters.queued(changes) as waiter:  # woken at once if a change came meanwhile
            error = first
            while True:
                back, for_a_slot = _comes_back(error)
                now = clock()
                if now >= deadline or anyio.current_time() >= give_up:
                    raise error
                if not for_a_slot and (back is None or back > deadline):
                    raise error  # nothing comes back in time: fail at once
                pause = min(deadline - now, give_up - anyio.current_time())
                if back is not None:
                    pause = min(pause, back - now)
                await self._waiters.pause(waiter, pause)
                try:
                    return await attempt()
                except NoBackendAvailable as exc:
                    error = exc
                finally:
                    self._waiters.tried(waiter)

    async def _merge(self, session_or_opts: object, request: object) -> dict[Any, Any]:
        if isinstance(session_or_opts, RouterSession):
            session_or_opts = session_or_opts.handle
        backend = None
        if (
            isinstance(session_or_opts, str)
            and 0 < len(session_or_opts) <= self._limits.max_key_length
            and is_text(session_or_opts)
        ):
            backend = await self._registry.lookup(str.__str__(session_or_opts))
        return merge_session(session_or_opts, request, backend, self._limits)

    @_api
    async def explain(self, request: Mapping[str, Any]) -> Explanation:
        """How ``request`` would route now, changing no state and journaling nothing.

        Returns the :class:`beamrouting.Explanation`. Invalid requests raise the
        :class:`beamrouting.RoutingError` of :meth:`select_backend`; a selection that
        would fail is reported in :attr:`beamrouting.Explanation.error`.
        """
        return await self._table.explain(self._normalize(request))

    @_api
    async def clear(self) -> None:
        """Forget every sticky binding and round-robin counter (profiles, journal and sessions stay)."""
        await self._table.clear()

    @_api
    async def ensure_tables(self) -> None:
        """Make sure the store's tables exist; idempotent."""
        await self._table.ensure_tables()

    @_api
    async def put_policy_profile(self, profile_id: str, profile: Mapping[str, Any] | PolicyProfile) -> None:
        """Store (or replace) ``profile`` under ``profile_id``.

        Raises :class:`beamrouting.InvalidPolicyProfile` if the profile or its id is malformed.
        """
        parsed = parse_profile(profile)  # before the id, as the engine does
        await self._table.put_profile(check_profile_id(profile_id), parsed)

    @_api
    async def delete_policy_profile(self, profile_id: str) -> bool:
        """Remove the policy profile ``profile_id``; return whether it existed.

        Raises :class:`beamrouting.InvalidPolicyProfile` for an id that is not a non-empty string.
        """
        return await self._table.delete_profile(check_profile_id(profile_id))

    @_api
    async def journal(self, event_type: str | None = None, limit: int | None = None) -> list[JournalEvent]:
        """The most recent journal events, oldest first (optionally one type, at most ``limit``).

        Raises :class:`beamrouting.InvalidRouteRequest` for a bad ``event_type`` or ``limit``.
        """
        event_type, limit = check_journal_query(event_type, limit)
        return await self._table.journal(event_type, limit)

    def subscribe(self, *, maxlen: int = DEFAULT_MAXLEN, event_type: str | None = None) -> Subscription:
        """Journal events as they happen: an async iterator, and an async context manager.

        Yields :class:`beamrouting.JournalEvent` in journal order (only ``event_type``'s
        when given). At most ``maxlen`` undelivered events are buffered: a slow subscriber
        never slows routing; it loses events instead and finds a
        :class:`beamrouting.SubscriptionGap` with their number in their place. Iteration
        ends when the router closes (or the subscription does).

        With a store that journals in this process (the in-memory default), listening
        starts when this returns, and the subscriber that falls ``maxlen`` events behind
        loses the oldest ones. With a shared store that offers a journal feed
        (:class:`beamrouting.RedisStore`), it delivers the journal events of the whole
        fleet, in the shared journal's order; listening starts when the subscription is
        started: on entering ``async with``, at ``await subscription.start()``, or at its
        first ``__anext__``. It reads in batches on a connection of its own; its backlog
        is the shared journal, so it loses events only when the capped journal dropped
        them before they were read. If the store cannot be reached, starting or iterating
        raises :class:`beamrouting.StoreUnavailable` and the subscription is closed.
        Raises :class:`TypeError` for a store that offers neither.
        """
        subscription = Subscription(
            journal_source(self._store),
            maxlen=maxlen,
            event_type=event_type,
            on_close=self._subscriptions.discard,
        )
        if self._state in (RouterState.CLOSED, RouterState.UNAVAILABLE):
            subscription.close()
        else:
            self._subscriptions.add(subscription)
        return subscription

    # -- learning from outcomes ------------------------------------------------------------------

    @_api
    async def report(
        self,
        backend: str,
        outcome: Outcome | str,
        *,
        retry_at: float | None = None,
        retry_after: float | None = None,
    ) -> BackendState:
        """Tell the router what became of a session started on ``backend``; returns its :class:`beamrouting.BackendState`.

        ``outcome`` is ``"success"``, ``"failure"`` (the session failed to start there),
        ``"quota"`` (a usage limit: the backend cools down until ``retry_at``, UNIX seconds,
        or for ``retry_after`` seconds, or ``base_ejection`` without either) or
        ``"rejected"`` (the request's own fault: no effect). Failures eject a backend at
        ``failure_threshold`` and probe it back in (see :class:`beamrouting.HealthPolicy`).
        Every process sharing the store learns it. Raises
        :class:`beamrouting.UnknownBackend` or :class:`beamrouting.InvalidRouteRequest`
        (``"outcome"``, ``"retry_at"``, ``"retry_after"``) for a bad argument, changing nothing.
        """
        name = self._canonical(backend)
        kind = check_outcome(outcome)
        check_reset(retry_at, retry_after, 0.0)
        return await self._table.report(
            name,
            kind,
            None if retry_at is None else float(retry_at),
            None if retry_after is None else float(retry_after),
        )

    @_api
    async def restore(self, backend: str) -> BackendState:
        """Forget what was learned about ``backend`` (an operator's override); returns its state.

        Raises :class:`beamrouting.UnknownBackend` for a name the catalogue does not know.
        """
        return await self._table.restore(self._canonical(backend))

    @_api
    async def backend_states(self) -> tuple[BackendState, ...]:
        """What the router knows of every backend now (:class:`beamrouting.BackendState`), in catalogue order."""
        return tuple(await self._table.states())

    @_api
    async def release(self, affinity_key: str) -> bool:
        """Forget ``affinity_key``'s sticky binding and any temporary backend; return whether it had one.

        Raises :class:`beamrouting.InvalidAffinityKey` for a key that is not a valid affinity key.
        """
        return await self._table.release(self._affinity_key(affinity_key))

    def _canonical(self, backend: object) -> str:
        name = self._catalog.canonical(backend)
        if name is None:
            raise UnknownBackend(backend)
        return name

    # -- sessions ---------------------------------------------------------------------------------

    @_api
    async def register_session(
        self, session_id: str, backend: str, metadata: Mapping[str, Any] | None = None
    ) -> SessionHandle:
        """Register a live session on ``backend`` (any accepted spelling; stored canonical).

        Replaces a session registered under the same id and returns the
        :class:`beamrouting.SessionHandle` as registered. Raises
        :class:`beamrouting.UnknownBackend`, or :class:`beamrouting.InvalidRouteRequest`
        for an empty or non-``str`` id (``"session_id"``) or metadata that is not a mapping
        of ``str`` keys to plain data (``"metadata"``).
        """
        return await self._registry.register(
            session_handle(self._catalog, session_id, backend, metadata, self._limits)
        )

    @_api
    async def unregister_session(self, session_id: str) -> None:
        """Forget a session, freeing its slot; a no-op for an unknown id.

        Raises :class:`beamrouting.InvalidRouteRequest` (``"session_id"``) for a bad id.
        """
        await self._registry.unregister(check_session_id(session_id, self._limits))

    @_api
    async def session_backend(self, session_id: str) -> str | None:
        """The backend of a live session, or ``None`` when it is not registered.

        Raises :class:`beamrouting.InvalidRouteRequest` (``"session_id"``) for a bad id.
        """
        return await self._registry.lookup(check_session_id(session_id, self._limits))

    @_api
    async def sessions(self) -> list[SessionHandle]:
        """Every live session, in registration order."""
        return await self._registry.list()

    @asynccontextmanager
    async def session(
        self,
        request: Mapping[str, Any] | None = None,
        *,
        opts: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        wait: float | None = None,
    ) -> AsyncIterator[RouterSession]:
        """Route a new session, register it under the chosen backend, unregister it on exit.

        Routes with ``select_backend(opts, request)`` when ``opts`` is given, else
        ``select_backend(session_id, request)`` when ``session_id`` is given, else
        ``select_backend(request)``; registers under ``session_id`` or a new random id, and
        yields the :class:`RouterSession`; ``metadata`` is registered with the session.
        ``wait`` is as for :meth:`select_backend`. The
        session is unregistered however the block ends, cancellation included; if that
        fails while the block's own exception propagates, the block's exception wins (the
        failure is logged and noted on it).

        Raises what :meth:`select_backend` and :meth:`register_session` raise, and
        :class:`beamrouting.SessionExists` when ``session_id`` is the id of a live session
        (:meth:`register_session`, the heartbeat, replaces one instead).
        """
        request = {} if request is None else request
        sid = uuid.uuid4().hex if session_id is None else check_session_id(session_id, self._limits)
        metadata = check_metadata(metadata, self._limits)  # fail before routing moves any counter
        if opts is not None:
            args: tuple[Any, ...] = (opts, request)
        elif session_id is not None:
            args = (sid, request)
        else:
            args = (request,)
        normalized = self._normalize(await self._request_of(args))
        try:
            decision = await self._select_normalized(normalized, wait, (sid, metadata, True))
        except SessionExists:
            raise  # the live session with this id is someone else's: leave it alone
        except BaseException:
            # The registration may have been applied (its caller cancelled, say): undo it.
            with anyio.CancelScope(shield=True):
                await self._forget_session(sid)
            raise
        handle = SessionHandle(sid, decision.backend, metadata)
        try:
            yield RouterSession(self, sid, normalized, decision, handle, metadata)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                try:
                    await self._forget_session(sid)
                except BeamRoutingError as failure:  # the block's own exception is what matters
                    _obs.logger.warning("session %s could not be unregistered: %r", sid, failure)
                    exc.add_note(f"and session {sid!r} could not be unregistered: {failure!r}")
            raise
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

    @_api
    async def reload(self, config: Config) -> None:
        """Apply ``config``'s policy profiles, health policy, limits and weights, all in one step.

        ``config`` is validated first and nothing changes when it is refused. Afterwards the
        store's profiles are exactly ``config``'s (with Redis, for the whole fleet), and the
        health policy, limits and weights are ``config``'s (with Redis, for this process
        only: roll a changed file out to every process). What was learned, live sessions,
        bindings and counters stay; waiting callers try again. Raises
        :class:`beamrouting.ConfigError` when ``config`` changes the catalogue, the store
        or the router's own options (they need a new router), and what the store raises
        (:class:`beamrouting.StoreUnavailable`, ...).
        """
        settings = reload_settings(self._config, self._store, self._options, self._catalog, config)
        await self._table.reconfigure(settings)
        self._config = config
        self._waiters.wake()

    # -- introspection ------------------------------------------------------------------------------

    def observe(self, observer: _obs.RouterObserver) -> None:
        """Have ``observer`` (a :class:`beamrouting.RouterObserver`) told of every selection from now on (metrics collectors use it)."""
        self._observers = (*self._observers, observer)
        if self._state is RouterState.RUNNING:
            self._observer = _obs.select_observer(self._observers)

    async def statistics(self) -> RouterStatistics:
        """Mailbox depths, calls, errors by code and restarts per actor (a :class:`RouterStatistics`)."""
        return self.statistics_now()

    def statistics_now(self) -> RouterStatistics:
        """:meth:`statistics`, synchronously (it asks no actor): for metrics exporters in other threads."""
        children = self._supervisor.children if self._supervisor is not None else ()
        return RouterStatistics(
            self.state,
            self._calls,
            dict(self._errors),
            {child.name: child.mailbox.depth for child in children},
            self._mailbox_size,
            {child.name: child.control.restarts for child in children},
        )

    def _count_error(self, exc: BeamRoutingError) -> None:
        self._errors[exc.code] = self._errors.get(exc.code, 0) + 1
