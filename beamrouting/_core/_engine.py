"""The pure, synchronous routing engine (sections 4 to 8 of the contract).

It runs the one selection sequence of :mod:`._planner` against its in-memory
:class:`~._state.RoutingState`: plan, state step (counters and bindings), decision and
policy check, then the side effects (binding, journal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, overload

from ._catalog import Catalog
from ._checks import check_instance, optional
from ._errors import PolicyDenied, RoutingError
from ._explain import Explanation
from ._journal import Journal
from ._planner import DONE, STICKY, Planner, RoutePlan, StateOutcome, authorize
from ._profiles import PolicyProfile, check_profile_id, parse_profile
from ._request import RequestLimits, RequestNormalizer, RouteRequest, merge_session
from ._sessions import check_session_id, session_handle
from ._state import RoutingState
from ._types import JournalEvent, RouteDecision, SessionHandle

__all__ = ["RoutePlan", "RoutingEngine"]


class RoutingEngine:
    """A process-free router: validates a request, applies its policy and journals the decision.

    ``RoutingEngine(catalog=None, *, max_counters=100_000, max_bindings=100_000,
    binding_ttl=None, journal_size=10_000, clock=None, max_sessions=100_000,
    max_key_length=1024, max_list_entries=256, max_metadata_bytes=65_536)``:

    - ``max_counters``, ``max_bindings``: how many round-robin counters and sticky bindings
      are kept; past the cap the least recently used one is forgotten.
    - ``binding_ttl``: seconds a binding lives after the last sticky decision that used it
      (``None``: until evicted); ``clock`` is the monotonic clock it is measured on.
    - ``journal_size``: how many journal events are kept.
    - ``max_sessions``: how many live sessions may be registered (never evicted).
    - ``max_key_length``, ``max_list_entries``, ``max_metadata_bytes``: the size limits of
      :class:`~beamrouting.RequestLimits`.

    The engine owns its state (sticky bindings, round-robin counters, live sessions, policy
    profiles and the journal). It is synchronous and not thread-safe: use it from one
    thread, or use :class:`~beamrouting.Router`, which serialises calls through an actor.
    Raises :class:`TypeError` or :class:`ValueError` for a bad option.
    """

    __slots__ = ("_state", "catalog", "limits", "normalizer", "planner")

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        max_counters: int = 100_000,
        max_bindings: int = 100_000,
        binding_ttl: float | None = None,
        journal_size: int = 10_000,
        clock: Callable[[], float] | None = None,
        max_sessions: int = 100_000,
        max_key_length: int = 1024,
        max_list_entries: int = 256,
        max_metadata_bytes: int = 65_536,
    ) -> None:
        self.catalog: Catalog = optional(check_instance, "catalog", catalog, Catalog) or Catalog.default()
        self.limits = RequestLimits(max_key_length, max_list_entries, max_metadata_bytes)
        """The size limits of requests and sessions."""
        self.normalizer = RequestNormalizer(self.catalog, self.limits)
        """The request normaliser (pure; the router runs the same one on the caller's side)."""
        self.planner = Planner(self.catalog)
        """The stateless planner every store shares."""
        self._state = RoutingState(
            max_counters=max_counters,
            max_bindings=max_bindings,
            binding_ttl=binding_ttl,
            journal_size=journal_size,
            clock=clock,
            max_sessions=max_sessions,
        )

    @property
    def state(self) -> RoutingState:
        """The engine's state (bindings, counters, profiles, journal)."""
        return self._state

    # -- routing --------------------------------------------------------------------------

    @overload
    def select_backend(self, request: Mapping[str, Any], /) -> RouteDecision: ...

    @overload
    def select_backend(self, session_or_opts: object, request: Mapping[str, Any], /) -> RouteDecision: ...

    def select_backend(self, *args: Any) -> RouteDecision:
        """Choose a backend for ``request``, or for ``(session_or_opts, request)``.

        With two arguments the first is a session id (its affinity key), a
        :class:`~beamrouting.SessionHandle` (its backend becomes ``last_backend``) or
        session options (their ``routing`` and ``backend``), merged under ``request``.
        Returns the :class:`~beamrouting.RouteDecision`. Raises a
        :class:`~beamrouting.RoutingError` subclass when the request cannot be routed, and
        :class:`TypeError` for a wrong number of arguments.
        """
        if len(args) == 1:
            request = args[0]
        elif len(args) == 2:
            request = merge_session(args[0], args[1], self._state_session_backend(args[0]), self.limits)
        else:
            raise TypeError(f"select_backend takes 1 or 2 arguments ({len(args)} given)")
        return self.select_normalized(self.normalizer.normalize(request))

    def normalize(self, request: object) -> RouteRequest:
        """Validate and normalise ``request`` without routing it; raise its :class:`RoutingError`."""
        return self.normalizer.normalize(request)

    def select_normalized(self, req: RouteRequest) -> RouteDecision:
        """Route an already normalised request (what a store calls); raise its :class:`RoutingError`."""
        plan = self.planner.plan(req)
        state = self._state
        decision, deny = Planner.settle(plan, self._state_step(plan), self._profile(req))
        if deny is not None:
            state.journal.record(req, decision, deny)
            raise PolicyDenied(deny)
        if plan.kind == STICKY:
            state.bind(req.affinity_key, decision.backend)  # type: ignore[arg-type]
        state.journal.record(req, decision, None)
        return decision

    def _state_step(self, plan: RoutePlan) -> StateOutcome:
        """Advance the counter or read the binding ``plan`` needs (see :data:`~._planner.STICKY`)."""
        kind = plan.kind
        if kind == DONE:
            return None
        state = self._state
        if kind == STICKY:
            bound = state.binding(plan.request.affinity_key)  # type: ignore[arg-type]
            if plan.reusable(bound):
                return bound
        return state.next_counter(plan.counter_key)

    def _peek_state(self, plan: RoutePlan) -> StateOutcome:
        """:meth:`_state_step` without changing anything (for :meth:`explain`)."""
        kind = plan.kind
        if kind == DONE:
            return None
        state = self._state
        if kind == STICKY:
            bound = state.binding(plan.request.affinity_key)  # type: ignore[arg-type]
            if plan.reusable(bound):
                return bound
        return state.peek_counter(plan.counter_key) + 1

    def _profile(self, req: RouteRequest) -> PolicyProfile | None:
        profile_id = req.policy_profile_id
        return None if profile_id is None else self._state.profiles.get(profile_id)

    def plan(self, req: RouteRequest) -> RoutePlan:
        """The state-free part of selecting for ``req`` (:meth:`Planner.plan <._planner.Planner.plan>`)."""
        return self.planner.plan(req)

    def validate(self, req: RouteRequest) -> None:
        """Re-check a decoded :class:`RouteRequest` against the catalogue; raise its :class:`RoutingError`."""
        self.normalizer.validate(req)

    @staticmethod
    def authorize(req: RouteRequest, decision: RouteDecision, profile: PolicyProfile | None) -> str | None:
        """Check ``decision`` against ``profile`` (the one ``req`` names): ``None`` allows, else the deny reason."""
        return authorize(req, decision, profile)

    # -- state --------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every sticky binding and round-robin counter (profiles and journal stay)."""
        self._state.clear()

    def ensure_tables(self) -> None:
        """Make sure the engine's state exists; idempotent.

        The in-memory state is created with the engine, so this only exists so code written
        against the router (or a shared store, where it creates keys) runs unchanged.
        """

    def put_policy_profile(self, profile_id: str, profile: Mapping[str, Any] | PolicyProfile) -> None:
        """Store (or replace) a policy profile.

        Raises :class:`~beamrouting.InvalidPolicyProfile` if the profile (or its id) is malformed.
        """
        parsed = parse_profile(profile)
        self._state.profiles[check_profile_id(profile_id)] = parsed

    def delete_policy_profile(self, profile_id: str) -> bool:
        """Remove a policy profile; return whether it existed.

        Raises :class:`~beamrouting.InvalidPolicyProfile` for an id that is not a non-empty string.
        """
        return self._state.profiles.pop(check_profile_id(profile_id), None) is not None

    def policy_profiles(self) -> dict[str, PolicyProfile]:
        """The stored profiles by id."""
        return dict(self._state.profiles)

    def journal(self, event_type: str | None = None, limit: int | None = None) -> list[JournalEvent]:
        """The most recent journal events, oldest first (optionally one type, at most ``limit``).

        Raises :class:`~beamrouting.InvalidRouteRequest` for a bad ``event_type`` or ``limit``.
        """
        return self._state.journal.events(event_type, limit)

    @property
    def journal_ring(self) -> Journal:
        """The journal itself (what a :class:`~beamrouting.Subscription` listens to)."""
        return self._state.journal

    # -- sessions -----------------------------------------------------------------------------

    def register_session(
        self, session_id: str, backend: str, metadata: Mapping[str, Any] | None = None
    ) -> SessionHandle:
        """Register a live session on ``backend`` (any accepted spelling), replacing one with its id.

        Returns the :class:`~beamrouting.SessionHandle` as registered. Raises
        :class:`~beamrouting.UnknownBackend`, :class:`~beamrouting.InvalidRouteRequest` for
        a bad id or metadata, and :class:`~beamrouting.TooManySessions` past ``max_sessions``.
        """
        handle = session_handle(self.catalog, session_id, backend, metadata, self.limits)
        self._state.register(handle)
        return handle

    def unregister_session(self, session_id: str) -> None:
        """Forget a session; a no-op for an unknown id (:class:`~beamrouting.InvalidRouteRequest` for a bad id)."""
        self._state.unregister(check_session_id(session_id, self.limits))

    def session_backend(self, session_id: str) -> str | None:
        """The backend of a live session, or ``None`` (:class:`~beamrouting.InvalidRouteRequest` for a bad id)."""
        handle = self._state.sessions.get(check_session_id(session_id, self.limits))
        return None if handle is None else handle.backend

    def sessions(self) -> list[SessionHandle]:
        """Every live session, in registration order."""
        return list(self._state.sessions.values())

    def _state_session_backend(self, session: object) -> str | None:
        """What the registry knows of a session id (section 8), for routing from it."""
        if type(session) is not str:
            return None
        handle = self._state.sessions.get(session)
        return None if handle is None else handle.backend

    # -- explaining ---------------------------------------------------------------------------

    def explain(self, request: object) -> Explanation:
        """Explain how ``request`` would route now, changing no state and journaling nothing.

        Invalid requests raise the same :class:`RoutingError` as :meth:`select_backend`;
        a selection that would fail is reported in ``Explanation.error``.
        """
        return self.explain_normalized(self.normalizer.normalize(request))

    def explain_normalized(self, req: RouteRequest) -> Explanation:
        """:meth:`explain` for an already normalised request."""
        try:
            plan = self.planner.plan(req)
            decision, deny = Planner.settle(plan, self._peek_state(plan), self._profile(req))
            if deny is not None:
                raise PolicyDenied(deny)
        except RoutingError as exc:
            return self.planner.explanation(req, None, exc.to_dict())
        return self.planner.explanation(req, decision, None)
