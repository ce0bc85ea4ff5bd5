"""The pure, synchronous routing engine (sections 4 to 8 of the contract).

It runs the one selection sequence of :mod:`._planner` against its in-memory
:class:`~._state.RoutingState`: plan, state step (counters and bindings), decision and
policy check, then the side effects (binding, journal).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, overload

from ._catalog import MAX_WEIGHT, Catalog, backend_numbers
from ._checks import check_instance, optional
from ._errors import BackendNotEligible, NoBackendAvailable, PolicyDenied, RoutingError, UnknownBackend
from ._explain import Explanation
from ._health import (
    FRESH,
    BackendState,
    HealthEvent,
    HealthPolicy,
    Ledger,
    Outcome,
    check_outcome,
    check_reset,
    observe,
    reported,
    restored,
    took_probe,
    unlearned,
)
from ._holds import NO_HOLDS, Holds, LearnedHolds, collect_holds, learned_holds
from ._journal import Journal
from ._planner import DONE, LEAST_LOADED, ROTATE, STICKY, Planner, RoutePlan, StateOutcome, authorize
from ._profiles import PolicyProfile, check_profile_id, parse_profile
from ._request import RequestLimits, RequestNormalizer, RouteRequest, merge_session
from ._sessions import check_session_id, session_handle
from ._settings import RoutingSettings
from ._state import RoutingState
from ._types import JournalEvent, RouteDecision, SessionHandle

__all__ = ["RoutePlan", "RoutingEngine"]

_NONE: Final[frozenset[str]] = frozenset()
_DEFAULT_HEALTH: Final = HealthPolicy()


class RoutingEngine:
    """A process-free router: validates a request, applies its policy and journals the decision.

    ``RoutingEngine(catalog=None, *, max_counters=100_000, max_bindings=100_000,
    binding_ttl=None, journal_size=10_000, clock=None, max_sessions=100_000,
    max_key_length=1024, max_list_entries=256, max_metadata_bytes=65_536,
    health=HealthPolicy(), limits=None, weights=None)``: ``catalog`` is the
    :class:`beamrouting.Catalog` (the five built-in backends by default), and

    - ``max_counters``, ``max_bindings``: how many round-robin counters and sticky bindings
      are kept; past the cap the least recently used one is forgotten.
    - ``binding_ttl``: seconds a binding lives after the last sticky decision that used it
      (``None``: until evicted).
    - ``clock``: the wall clock, in UNIX seconds (default :func:`time.time`), every
      deadline is measured on: binding TTLs, quota cooldowns, ejections, probe slots.
    - ``health``: how reported outcomes change eligibility (:class:`beamrouting.HealthPolicy`);
      ``None`` turns learning off.
    - ``limits``: the most live sessions each limited backend may have (any accepted
      spelling to a positive int); a new session past it raises
      :class:`beamrouting.BackendAtCapacity` and selections skip a full backend.
    - ``weights``: each backend's weight for the ``weighted`` policy (1 to 10,000; 1 when
      absent).
    - ``journal_size``: how many journal events are kept.
    - ``max_sessions``: how many live sessions may be registered (never evicted).
    - ``max_key_length``, ``max_list_entries``, ``max_metadata_bytes``: the size limits of
      :class:`beamrouting.RequestLimits`.

    The engine owns its state (sticky bindings, round-robin counters, live sessions, policy
    profiles and the journal). It is synchronous and not thread-safe: use it from one
    thread, or use :class:`beamrouting.Router`, which serialises calls through an actor.
    Raises :class:`TypeError` or :class:`ValueError` for a bad option.
    """

    __slots__ = (
        "_filters",
        "_learned",
        "_learned_policy",
        "_state",
        "catalog",
        "health",
        "limits",
        "limits_of",
        "normalizer",
        "planner",
        "weights",
    )

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
        health: HealthPolicy | None = _DEFAULT_HEALTH,
        limits: Mapping[str, int] | None = None,
        weights: Mapping[str, int] | None = None,
    ) -> None:
        self.catalog: Catalog = optional(check_instance, "catalog", catalog, Catalog) or Catalog.default()
        """The catalogue requests are checked against (``catalog``, or the default one)."""
        self.limits_of = backend_numbers("limits", limits, self.catalog)
        """The most live sessions each limited backend may have."""
        self.weights = backend_numbers("weights", weights, self.catalog, maximum=MAX_WEIGHT)
        """Each weighted backend's weight for the ``weighted`` policy (1 when absent)."""
        self.health = optional(check_instance, "health", health, HealthPolicy)
        """How reported outcomes change eligibility (``None``: learning is off)."""
        self.limits = RequestLimits(max_key_length, max_list_entries, max_metadata_bytes)
        """The size limits of requests and sessions."""
        self.normalizer = RequestNormalizer(self.catalog, self.limits)
        """The request normaliser (pure; the router runs the same one on the caller's side)."""
        self.planner = Planner(self.catalog, self.weights)
        """The stateless planner every store shares."""
        self._state = RoutingState(
            max_counters=max_counters,
            max_bindings=max_bindings,
            binding_ttl=binding_ttl,
            journal_size=journal_size,
            clock=clock,
            max_sessions=max_sessions,
            limits=self.limits_of,
        )
        self._filters = False
        """Whether a stored profile filters candidates (so selections check for one)."""
        self._learned: LearnedHolds | None = None
        """What the ledgers held out when last observed, reused until a deadline or a change."""
        self._learned_policy: HealthPolicy | None = None
        """The health policy :attr:`_learned` was computed under."""

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
        :class:`beamrouting.SessionHandle` (its backend becomes ``last_backend``) or
        session options (their ``routing`` and ``backend``), merged under ``request``.
        Returns the :class:`beamrouting.RouteDecision`. Raises a
        :class:`beamrouting.RoutingError` subclass when the request cannot be routed, and
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
        state = self._state
        if state.ledgers or state.limits or self._filters:
            view = self._learned
            if (  # only learned state, observed before and unchanged since (_holds, inlined)
                view is not None
                and not state.limits
                and not self._filters
                and self._learned_policy is self.health
                and view.since <= state.clock() < view.until
            ):
                holds = view.holds
            else:
                holds = self._holds(req, observe=True)
            try:
                routed = self.planner.route(req, holds.unavailable)
            except (BackendNotEligible, NoBackendAvailable):  # say why, from what was held out
                routed = self.planner.route_with(req, holds)
        else:  # nothing reported, nothing limited, no filtering profile: no extra work
            routed = self.planner.route(req)
        if type(routed) is RouteDecision:  # final without any state
            decision = routed
            if req.policy_profile_id is not None:
                deny = authorize(req, decision, self._profile(req))
                if deny is not None:
                    state.journal.record(req, decision, deny)
                    raise PolicyDenied(deny)
        elif routed.kind == ROTATE and req.policy_profile_id is None and req.affinity_key is None:  # type: ignore[union-attr]
            decision = routed.rotation(state.next_counter(routed.counter_id), self.planner.rotations)  # type: ignore[union-attr]
        else:
            plan: RoutePlan = routed  # type: ignore[assignment]
            outcome, temporary = self._state_step(plan, advance=True)
            decision, deny = Planner.settle(plan, outcome, self._profile(req), temporary=temporary)
            if deny is not None:
                state.journal.record(req, decision, deny)
                raise PolicyDenied(deny)
            if plan.kind == STICKY:
                key = req.affinity_key
                assert key is not None
                if temporary:  # the bound backend is held out: keep the binding, note where it goes meanwhile
                    state.bind(key, state.binding_entry(key)[0] or decision.backend, decision.backend)
                else:
                    state.bind(key, decision.backend)
        ledgers = state.ledgers
        if ledgers and self.health is not None:
            ledger = ledgers.get(decision.backend)
            if ledger is not None:
                after = took_probe(ledger, state.clock(), self.health)
                if after is not ledger:
                    self._keep(decision.backend, after, [])
        state.journal.record(req, decision, None)
        return decision

    def select_and_register(
        self, req: RouteRequest, session_id: str, metadata: dict[str, Any], *, exclusive: bool = True
    ) -> RouteDecision:
        """Select for ``req`` and register session ``session_id`` (with ``metadata``) on the chosen backend, in one step.

        Nothing changes when the session cannot be registered: ``exclusive`` refuses a live
        id (:class:`beamrouting.SessionExists`), and :class:`beamrouting.TooManySessions`
        past ``max_sessions``. The selection only chooses backends below their limit, so
        the registration always finds a slot. Otherwise raises what
        :meth:`select_normalized` raises.
        """
        state = self._state
        state.check_new(session_id, exclusive=exclusive)
        decision = self.select_normalized(req)
        state.register(SessionHandle(session_id, decision.backend, metadata))
        return decision

    def _holds(self, req: RouteRequest, *, observe: bool) -> Holds:
        """What the state holds out of selecting for ``req`` now (``observe`` journals what time changed).

        The learned part is kept between calls: statuses change only at a deadline or when
        a ledger changes (:meth:`_keep`, a probe taken), so until then the last observation
        stands and nothing new needs journaling.
        """
        state = self._state
        now = state.clock()
        policy = self.health
        learned = NO_HOLDS
        if state.ledgers and policy is not None:
            view = self._learned
            if view is not None and self._learned_policy is policy and view.since <= now < view.until:
                learned = view.holds
            elif observe:
                self._observe(now)
                view = learned_holds(state.ledgers, now, policy)
                self._learned, self._learned_policy = view, policy
                learned = view.holds
            else:  # an explanation: compute, but keep nothing (only an observation may be reused)
                learned = learned_holds(state.ledgers, now, policy).holds
        profile_id = req.policy_profile_id
        profile = state.profiles.get(profile_id) if profile_id is not None and self._filters else None
        if profile is None and not state.limits:
            return learned
        return collect_holds(
            req,
            self.planner.eligible,
            ledgers=state.ledgers,
            now=now,
            policy=policy,
            live=state.live,
            limits=state.limits,
            profile=profile,
            learned=learned,
        )

    def _state_step(self, plan: RoutePlan, *, advance: bool) -> tuple[StateOutcome, bool]:
        """The state ``plan`` needs: ``(outcome, temporary)`` (see :data:`~._planner.STICKY`).

        ``advance`` moves the counter; without it (:meth:`explain`) nothing changes. A sticky
        key whose bound backend is held out goes to its temporary backend (``temporary``).
        """
        kind = plan.kind
        if kind == DONE:
            return None, False
        state = self._state
        temporary = False
        if kind == STICKY:
            bound, meanwhile = state.binding_entry(plan.request.affinity_key)  # type: ignore[arg-type]
            if plan.reusable(bound):
                return bound, False
            if bound is not None and bound in plan.held_out:
                if plan.reusable(meanwhile):
                    return meanwhile, True
                temporary = True
        if kind == LEAST_LOADED:
            tied = plan.least_loaded(state.live)
            key = plan.tie_key(tied)
            turn = state.next_counter(key) if advance else state.peek_counter(key) + 1
            return tied[(turn - 1) % len(tied)], False
        if advance:
            return state.next_counter(plan.counter_id), temporary
        return state.peek_counter(plan.counter_id) + 1, temporary

    def _profile(self, req: RouteRequest) -> PolicyProfile | None:
        profile_id = req.policy_profile_id
        return None if profile_id is None else self._state.profiles.get(profile_id)

    def plan(self, req: RouteRequest) -> RoutePlan:
        """The state-free part of selecting for ``req`` (:meth:`._planner.Planner.plan`)."""
        return self.planner.plan(req)

    def validate(self, req: RouteRequest) -> None:
        """Re-check ``req``, a decoded :class:`RouteRequest`, against the catalogue; raise its :class:`RoutingError`."""
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
        """Store (or replace) ``profile`` under ``profile_id``.

        Raises :class:`beamrouting.InvalidPolicyProfile` if the profile (or its id) is malformed.
        """
        parsed = parse_profile(profile)
        profiles = self._state.profiles
        profiles[check_profile_id(profile_id)] = parsed
        self._filters = any(p.filters for p in profiles.values())

    def delete_policy_profile(self, profile_id: str) -> bool:
        """Remove the policy profile ``profile_id``; return whether it existed.

        Raises :class:`beamrouting.InvalidPolicyProfile` for an id that is not a non-empty string.
        """
        profiles = self._state.profiles
        existed = profiles.pop(check_profile_id(profile_id), None) is not None
        self._filters = any(p.filters for p in profiles.values())
        return existed

    def reconfigure(self, settings: RoutingSettings) -> None:
        """Apply ``settings`` in one step: exactly its profiles, its health policy, limits and weights.

        Everything is validated against the catalogue first, so a bad value changes nothing.
        What was learned about backends, live sessions, bindings and counters stay: a new
        limit below a backend's live sessions only stops new sessions there. Raises what
        :meth:`beamrouting.RoutingSettings.checked` raises, and
        :class:`TypeError` when ``settings`` is not a :class:`beamrouting.RoutingSettings`.
        """
        if not isinstance(settings, RoutingSettings):
            raise TypeError(f"settings must be RoutingSettings, not {type(settings).__name__}")
        settings = settings.recheck(self.catalog)
        state = self._state
        self.health = settings.health
        self._learned = None
        self.limits_of = dict(settings.limits)
        state.limits = dict(settings.limits)
        if settings.weights != self.weights:
            self.weights = dict(settings.weights)
            self.planner = Planner(self.catalog, self.weights)
        state.profiles.clear()
        state.profiles.update(settings.profiles)
        self._filters = any(p.filters for p in state.profiles.values())

    def settings(self) -> RoutingSettings:
        """What :meth:`reconfigure` sets, as the engine has it now (a :class:`beamrouting.RoutingSettings`)."""
        return RoutingSettings(
            dict(self._state.profiles), self.health, dict(self.limits_of), dict(self.weights)
        )

    def policy_profiles(self) -> dict[str, PolicyProfile]:
        """The stored profiles by id."""
        return dict(self._state.profiles)

    def journal(self, event_type: str | None = None, limit: int | None = None) -> list[JournalEvent]:
        """The most recent journal events, oldest first (optionally one type, at most ``limit``).

        Raises :class:`beamrouting.InvalidRouteRequest` for a bad ``event_type`` or ``limit``.
        """
        return self._state.journal.events(event_type, limit)

    @property
    def journal_ring(self) -> Journal:
        """The journal itself (what a :class:`beamrouting.Subscription` listens to)."""
        return self._state.journal

    # -- sessions -----------------------------------------------------------------------------

    def register_session(
        self, session_id: str, backend: str, metadata: Mapping[str, Any] | None = None
    ) -> SessionHandle:
        """Register a live session ``session_id`` (with ``metadata``) on ``backend`` (any accepted spelling), replacing one with its id.

        Returns the :class:`beamrouting.SessionHandle` as registered. Raises
        :class:`beamrouting.UnknownBackend`, :class:`beamrouting.InvalidRouteRequest` for
        a bad id or metadata, and :class:`beamrouting.TooManySessions` past ``max_sessions``.
        """
        handle = session_handle(self.catalog, session_id, backend, metadata, self.limits)
        self._state.register(handle)
        return handle

    def unregister_session(self, session_id: str) -> None:
        """Forget the session ``session_id``; a no-op for an unknown id (:class:`beamrouting.InvalidRouteRequest` for a bad id)."""
        self._state.unregister(check_session_id(session_id, self.limits))

    def session_backend(self, session_id: str) -> str | None:
        """The backend of the live session ``session_id``, or ``None`` (:class:`beamrouting.InvalidRouteRequest` for a bad id)."""
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

    # -- learning from outcomes -----------------------------------------------------------------

    def report(
        self,
        backend: str,
        outcome: Outcome | str,
        *,
        retry_at: float | None = None,
        retry_after: float | None = None,
    ) -> BackendState:
        """Learn what became of a session started on ``backend``; return its :class:`beamrouting.BackendState`.

        ``outcome`` is ``"success"``, ``"failure"`` (it failed to start there), ``"quota"``
        (a usage limit: it cools down until ``retry_at``, UNIX seconds, or ``retry_after``
        seconds from now, or ``base_ejection`` without either) or ``"rejected"`` (the
        request's own fault: no effect). Journals an ``outcome`` event, and a
        ``backend_health`` event when the status changes. With ``health=None`` the report
        is journaled and changes nothing. Raises :class:`beamrouting.UnknownBackend` and
        :class:`beamrouting.InvalidRouteRequest` (detail ``"outcome"``, ``"retry_at"`` or
        ``"retry_after"``) for bad arguments, changing nothing.
        """
        name, kind = self.canonical_backend(backend), check_outcome(outcome)
        state = self._state
        now = state.clock()
        reset_at = check_reset(retry_at, retry_after, now)
        if self.health is None:
            state.journal.note(*unlearned(name, kind, reset_at, now))
            return FRESH.state(name, now, HealthPolicy())
        after, events = reported(name, state.ledgers.get(name, FRESH), kind, reset_at, now, self.health)
        self._keep(name, after, events)
        return after.state(name, now, self.health)

    def restore(self, backend: str) -> BackendState:
        """Forget what was learned about ``backend`` (an operator's override); return its state.

        Raises :class:`beamrouting.UnknownBackend` for a name the catalogue does not know.
        """
        name = self.canonical_backend(backend)
        state = self._state
        now = state.clock()
        if self.health is not None:
            after, events = restored(name, state.ledgers.get(name, FRESH), now, self.health)
            self._keep(name, after, events)
        return FRESH.state(name, now, self.health or HealthPolicy())

    def backend_states(self) -> tuple[BackendState, ...]:
        """What is known of every backend now, in catalogue order."""
        state = self._state
        now = state.clock()
        policy = self.health or HealthPolicy()
        if state.ledgers:
            self._observe(now)
        ledgers, live, limits = state.ledgers, state.live, state.limits
        return tuple(
            ledgers.get(b, FRESH).state(b, now, policy, live.get(b, 0), limits.get(b))
            for b in self.catalog.backends
        )

    def release(self, affinity_key: str) -> bool:
        """Forget ``affinity_key``'s sticky binding (and temporary backend); return whether it had one.

        Raises :class:`beamrouting.InvalidAffinityKey` for a key that is not a valid affinity key.
        """
        return self._state.release(self.normalizer.affinity_key(affinity_key))

    def canonical_backend(self, backend: object) -> str:
        """The canonical name of ``backend`` (any accepted spelling); :class:`beamrouting.UnknownBackend` otherwise."""
        name = self.catalog.canonical(backend)
        if name is None:
            raise UnknownBackend(backend)
        return name

    def _observe(self, now: float) -> None:
        """Journal the changes of status time brought (a cooldown or an ejection ending)."""
        policy = self.health
        if policy is None:
            return
        for backend, ledger in tuple(self._state.ledgers.items()):
            if ledger.status(now, policy)[0] is not ledger.announced:
                self._keep(backend, *observe(backend, ledger, now, policy))

    def _keep(self, backend: str, ledger: Ledger, events: list[HealthEvent]) -> None:
        """Store ``backend``'s ledger (forgetting a fresh one) and journal ``events``."""
        state = self._state
        self._learned = None
        if ledger.is_fresh:
            state.ledgers.pop(backend, None)
        else:
            state.ledgers[backend] = ledger
        for event_type, payload, when in events:
            state.journal.note(event_type, payload, when)

    # -- explaining ---------------------------------------------------------------------------

    def explain(self, request: object) -> Explanation:
        """Explain how ``request`` would route now, changing no state and journaling nothing.

        Invalid requests raise the same :class:`RoutingError` as :meth:`select_backend`;
        a selection that would fail is reported in ``Explanation.error``.
        """
        return self.explain_normalized(self.normalizer.normalize(request))

    def explain_normalized(self, req: RouteRequest) -> Explanation:
        """:meth:`explain` for an already normalised request."""
        holds = self._holds(req, observe=False)
        reasons = holds.reasons()
        try:
            plan = self.planner.plan_with(req, holds)
            outcome, temporary = self._state_step(plan, advance=False)
            decision, deny = Planner.settle(plan, outcome, self._profile(req), temporary=temporary)
            if deny is not None:
                raise PolicyDenied(deny)
        except RoutingError as exc:
            return self.planner.explanation(req, None, exc.to_dict(), reasons)
        return self.planner.explanation(req, decision, None, reasons)
