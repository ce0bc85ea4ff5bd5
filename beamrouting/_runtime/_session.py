"""A session routed and registered by :meth:`beamrouting.Router.session`."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from .._core._health import BackendState, Outcome
from .._core._request import RouteRequest
from .._core._types import RouteDecision, SessionHandle

__all__ = ["RouterSession", "SessionOwner"]


class SessionOwner(Protocol):
    """What a :class:`RouterSession` asks of the router that made it."""

    async def report(
        self,
        backend: str,
        outcome: Outcome | str,
        *,
        retry_at: float | None = None,
        retry_after: float | None = None,
    ) -> BackendState:
        """Report an outcome for ``backend``."""
        ...

    async def _select_normalized(
        self,
        request: RouteRequest,
        wait: float | None = None,
        session: tuple[str, dict[str, Any], bool] | None = None,
    ) -> RouteDecision:
        """Route a normalised request (and register ``session`` on the chosen backend)."""
        ...


class RouterSession:
    """A session routed and registered by :meth:`Router.session`: where it runs, and how to fail it over.

    Read-only: ``id``, ``backend``, ``decision``, ``handle`` and ``tried`` (every backend it
    was routed to, in order). :meth:`report` tells the router what became of it;
    :meth:`failover` moves it to another backend.

    :meth:`Router.session` makes it (``router``, ``session_id``, the normalised ``request``,
    its first ``decision``, its registry ``handle`` and ``metadata``); there is no need to
    build one by hand.
    """

    __slots__ = ("_decision", "_handle", "_id", "_metadata", "_request", "_router", "_tried")

    def __init__(
        self,
        router: SessionOwner,
        session_id: str,
        request: RouteRequest,
        decision: RouteDecision,
        handle: SessionHandle,
        metadata: dict[str, Any],
    ) -> None:
        self._router = router
        self._id = session_id
        self._request = request
        self._decision = decision
        self._handle = handle
        self._metadata = metadata
        self._tried: tuple[str, ...] = (decision.backend,)

    @property
    def id(self) -> str:
        """The session id it is registered under."""
        return self._id

    @property
    def backend(self) -> str:
        """The backend to start the session on (``decision.backend``)."""
        return self._decision.backend

    @property
    def decision(self) -> RouteDecision:
        """The routing decision that put it on :attr:`backend`."""
        return self._decision

    @property
    def handle(self) -> SessionHandle:
        """The registry's handle; ``select_backend(handle, request)`` routes with it as ``last_backend``."""
        return self._handle

    @property
    def tried(self) -> tuple[str, ...]:
        """Every backend the session was routed to, in order (the current one last)."""
        return self._tried

    def __repr__(self) -> str:
        return f"<RouterSession {self._id!r} on {self.backend!r}, tried {list(self._tried)}>"

    async def report(
        self, outcome: Outcome | str, *, retry_at: float | None = None, retry_after: float | None = None
    ) -> BackendState:
        """:meth:`Router.report` of ``outcome`` (with ``retry_at`` or ``retry_after`` for a quota) for the session's current backend.

        Returns the backend's :class:`beamrouting.BackendState` after; raises what
        :meth:`Router.report` raises.
        """
        return await self._router.report(self.backend, outcome, retry_at=retry_at, retry_after=retry_after)

    async def failover(
        self,
        outcome: Outcome | str = Outcome.FAILURE,
        *,
        retry_at: float | None = None,
        retry_after: float | None = None,
    ) -> RouteDecision:
        """Report ``outcome`` for the current backend (with ``retry_at`` or ``retry_after``, as :meth:`report` takes them), then move the session to another one.

        Routes the session's original request again with every backend in :attr:`tried`
        excluded and moves the session's registration to the new backend in the same step
        (taking one of its session slots, freeing the old one), and updates
        :attr:`backend`, :attr:`decision`, :attr:`handle` and :attr:`tried`. Returns the
        new decision. Raises :class:`beamrouting.NoBackendAvailable` when no eligible
        backend is left (the session stays where it was), and what :meth:`report` and
        :meth:`Router.select_backend` raise.
        """
        await self.report(outcome, retry_at=retry_at, retry_after=retry_after)
        tried = self._tried
        request = self._request
        excluded = tuple(dict.fromkeys((*request.excluded_backends, *tried)))
        again = msgspec.structs.replace(request, excluded_backends=excluded)
        decision = await self._router._select_normalized(again, None, (self._id, self._metadata, False))
        self._handle = SessionHandle(self._id, decision.backend, self._metadata)
        self._decision = decision
        self._tried = (*tried, decision.backend)
        return decision
