"""The pure, synchronous routing engine (sections 4 to 8 of the contract).

The selection splits into a planning step that needs no state (validation, candidate sets,
the policy's state-free outcome) and a state step (round-robin counters, sticky bindings),
so that a shared store can batch the state step of many requests into one round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Final, overload

from ._catalog import Catalog
from ._errors import (
    BackendNotEligible,
    InvalidRouteRequest,
    NoBackendAvailable,
    NoBackendSupportsCapabilities,
    PolicyDenied,
    RoutingError,
    UnknownBackend,
    UnknownCapability,
)
from ._explain import BackendVerdict, Explanation
from ._journal import Journal
from ._profiles import PolicyProfile, check_profile_id, parse_profile
from ._request import RequestNormalizer, RouteRequest, merge_session
from ._state import RoutingState
from ._types import FallbackPolicy, Health, JournalEvent, Policy, RouteDecision

__all__ = ["RoutePlan", "RoutingEngine"]

_EXPLICIT_OVERRIDE: Final = ("selected explicit backend override",)
_EXPLICIT_FIRST: Final = ("selected first explicit candidate",)
_PREFERRED: Final = ("selected preferred backend",)
_FALLBACK: Final = ("selected fallback backend",)
_FIRST_ELIGIBLE: Final = ("selected first eligible backend",)
_ROUND_ROBIN: Final = ("selected by round robin policy",)
_STICKY_REUSED: Final = ("reused sticky affinity backend",)
_STICKY_BOUND: Final = ("selected backend and bound sticky affinity",)
_FAILOVER_REUSED: Final = ("reused last backend because no failover candidate remained",)
_FAILOVER_FIRST: Final = ("selected first failover candidate",)
_FAILOVER_SKIPPED: Final = ("skipped last backend and selected failover candidate",)
_INELIGIBLE: Final = (Health.UNHEALTHY, Health.DOWN)
_CANDIDATE_CACHE_SIZE: Final = 4096

_CandidateSets = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
"""``(eligible, ordered, preferred, fallback)``."""

# Plan kinds: what the state step must do before the decision is known.
DONE: Final = 0
ROTATE: Final = 1
STICKY: Final = 2


def _front(backend: str, ordered: tuple[str, ...]) -> tuple[str, ...]:
    if ordered and ordered[0] == backend:
        return ordered
    return (backend, *(b for b in ordered if b != backend))


class RoutePlan:
    """The state-free part of a selection.

    ``kind`` is ``DONE`` (``decision`` is final), ``ROTATE`` (needs the round-robin counter
    ``counter_key``) or ``STICKY`` (needs the binding of ``request.affinity_key``, and the
    counter when there is none to reuse).
    """

    __slots__ = ("counter_key", "decision", "eligible", "fallback", "kind", "ordered", "preferred", "request")

    def __init__(
        self,
        request: RouteRequest,
        kind: int,
        eligible: tuple[str, ...],
        ordered: tuple[str, ...],
        preferred: tuple[str, ...],
        fallback: tuple[str, ...],
        decision: RouteDecision | None = None,
        counter_key: tuple[Any, ...] | None = None,
    ) -> None:
        self.request = request
        self.kind = kind
        self.eligible = eligible
        self.ordered = ordered
        self.preferred = preferred
        self.fallback = fallback
        self.decision = decision
        self.counter_key = counter_key

    def rotate(self, counter: int) -> RouteDecision:
        """The round-robin (or new sticky) decision for counter value ``counter`` (from 1)."""
        ordered = self.ordered
        i = (counter - 1) % len(ordered)
        candidates = ordered[i:] + ordered[:i] if i else ordered
        req = self.request
        return RouteDecision(
            candidates[0],
            candidates,
            req.policy,
            _STICKY_BOUND if self.kind == STICKY else _ROUND_ROBIN,
            candidates[1:],
            req.affinity_key,
            req.policy_profile_id,
        )

    def reusable(self, bound: str | None) -> bool:
        """Whether a sticky binding to ``bound`` may be reused (the backend is eligible)."""
        return bound is not None and bound in self.eligible

    def reuse(self, bound: str) -> RouteDecision:
        """The sticky decision that reuses the eligible backend ``bound``."""
        return _decision(bound, self.ordered, _STICKY_REUSED, self.request)


def _decision(
    backend: str, ordered: tuple[str, ...], reason: tuple[str, ...], req: RouteRequest
) -> RouteDecision:
    candidates = _front(backend, ordered)
    return RouteDecision(
        backend, candidates, req.policy, reason, candidates[1:], req.affinity_key, req.policy_profile_id
    )


class RoutingEngine:
    """A process-free router: validates a request, applies its policy and journals the decision.

    The engine owns its state (sticky bindings, round-robin counters, policy profiles and
    the journal). It is synchronous and not thread-safe: use it from one thread, or use
    :class:`~beamrouting.Router`, which serialises calls through an actor.
    """

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        max_counters: int = 100_000,
        max_bindings: int = 100_000,
        binding_ttl: float | None = None,
        journal_size: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if catalog is not None and not isinstance(catalog, Catalog):
            raise TypeError(f"catalog must be a Catalog or None, not {type(catalog).__name__}")
        self.catalog = catalog if catalog is not None else Catalog.default()
        self.normalizer = RequestNormalizer(self.catalog)
        self._state = RoutingState(
            max_counters=max_counters,
            max_bindings=max_bindings,
            binding_ttl=binding_ttl,
            journal_size=journal_size,
            clock=clock,
        )
        self._backends = self.catalog.backends
        support = {b: self.catalog.supported(b) for b in self._backends}
        full = frozenset(self.catalog.capabilities)
        self._support = support
        self._partial_support = any(caps != full for caps in support.values())
        self._known_backends = frozenset(self._backends)
        self._known_capabilities = full
        self._candidate_cache: dict[tuple[Any, ...], _CandidateSets] = {}

    @property
    def state(self) -> RoutingState:
        """The engine's state (bindings, counters, profiles, journal)."""
        return self._state

    # -- public API -----------------------------------------------------------------------

    @overload
    def select_backend(self, request: Mapping[str, Any], /) -> RouteDecision: ...

    @overload
    def select_backend(self, session_or_opts: object, request: Mapping[str, Any], /) -> RouteDecision: ...

    def select_backend(self, *args: Any) -> RouteDecision:
        """Choose a backend for ``request``, or for ``(session_or_opts, request)``.

        With two arguments the first is a session id (its affinity key), a
        :class:`~beamrouting.SessionHandle` (its backend becomes ``last_backend``) or
        session options (their ``routing`` and ``backend``), merged under ``request``.
        Raises a :class:`~beamrouting.RoutingError` subclass when the request cannot be routed.
        """
        if len(args) == 1:
            request = args[0]
        elif len(args) == 2:
            request = merge_session(args[0], args[1])
        else:
            raise TypeError(f"select_backend takes 1 or 2 arguments ({len(args)} given)")
        return self.select_normalized(self.normalizer.normalize(request))

    def normalize(self, request: object) -> RouteRequest:
        """Validate and normalise ``request`` without routing it."""
        return self.normalizer.normalize(request)

    def select_normalized(self, req: RouteRequest) -> RouteDecision:
        """Route an already normalised request (the actor's entry point)."""
        plan = self.plan(req)
        kind = plan.kind
        state = self._state
        if kind == DONE:
            decision = plan.decision
            assert decision is not None
        elif kind == ROTATE:
            decision = plan.rotate(state.next_counter(plan.counter_key))
        else:
            key = req.affinity_key
            assert key is not None
            bound = state.binding(key)
            if plan.reusable(bound):
                assert bound is not None
                decision = plan.reuse(bound)
            else:
                decision = plan.rotate(state.next_counter(plan.counter_key))
        if req.policy_profile_id is not None:
            reason = self.authorize(req, decision, state.profiles.get(req.policy_profile_id))
            if reason is not None:
                state.journal.record(req, decision, reason)
                raise PolicyDenied(reason)
        if kind == STICKY:
            state.bind(req.affinity_key, decision.backend)  # type: ignore[arg-type]
        state.journal.record(req, decision, None)
        return decision

    def validate(self, req: RouteRequest) -> None:
        """Re-check a decoded :class:`RouteRequest` against the catalogue.

        A request built by :meth:`normalize` always passes; this guards actors against
        messages that were not.
        """
        known = self._known_backends
        superset = known.issuperset
        backend = req.backend
        last = req.last_backend
        preferred = req.preferred_backends
        excluded = req.excluded_backends
        fallback = req.fallback_backends
        health = req.health
        capabilities = req.capabilities
        if (
            (backend is None or backend in known)
            and (last is None or last in known)
            and (not preferred or superset(preferred))
            and (not excluded or superset(excluded))
            and (not fallback or superset(fallback))
            and (not health or superset(health))
            and (not capabilities or self._known_capabilities.issuperset(capabilities))
            and req.affinity_key != ""
            and req.policy_profile_id != ""
        ):
            return
        for name in (backend, last, *req.preferred_backends, *req.excluded_backends, *req.fallback_backends):
            if name is not None and name not in known:
                raise UnknownBackend(name)
        for name in req.health:
            if name not in known:
                raise UnknownBackend(name)
        for cap in req.capabilities:
            if cap not in self._known_capabilities:
                raise UnknownCapability(cap)
        raise InvalidRouteRequest("affinity_key" if req.affinity_key == "" else "policy_profile_id")

    def clear(self) -> None:
        """Forget every sticky binding and round-robin counter."""
        self._state.clear()

    def ensure_tables(self) -> None:
        """Make sure the engine's state exists; idempotent.

        The in-memory state is created with the engine, so this only exists so code written
        against the router (or a shared store, where it creates keys) runs unchanged.
        """

    def put_policy_profile(self, profile_id: str, profile: Mapping[str, Any] | PolicyProfile) -> None:
        """Store (or replace) a policy profile; raise :class:`InvalidPolicyProfile` if malformed."""
        self._state.profiles[check_profile_id(profile_id)] = parse_profile(profile)

    def delete_policy_profile(self, profile_id: str) -> bool:
        """Remove a policy profile; return whether it existed."""
        return self._state.profiles.pop(check_profile_id(profile_id), None) is not None

    def policy_profiles(self) -> dict[str, PolicyProfile]:
        """The stored profiles by id."""
        return dict(self._state.profiles)

    def journal(self, event_type: str | None = None, limit: int | None = None) -> list[JournalEvent]:
        """The most recent journal events, oldest first (optionally one type, at most ``limit``)."""
        return self._state.journal.events(event_type, limit)

    @property
    def journal_ring(self) -> Journal:
        """The journal itself (for subscribers)."""
        return self._state.journal

    def explain(self, request: object) -> Explanation:
        """Explain how ``request`` would route now, changing no state and journaling nothing.

        Invalid requests raise the same :class:`RoutingError` as :meth:`select_backend`;
        a selection that would fail is reported in ``Explanation.error``.
        """
        return self.explain_normalized(self.normalizer.normalize(request))

    def explain_normalized(self, req: RouteRequest) -> Explanation:
        """:meth:`explain` for an already normalised request."""
        state = self._state
        counter_key: Hashable = None
        try:
            plan = self.plan(req)
            counter_key = plan.counter_key
            bound = state.binding(req.affinity_key) if plan.kind == STICKY and req.affinity_key else None
            if plan.kind == DONE:
                decision = plan.decision
            elif plan.kind == STICKY and plan.reusable(bound):
                decision = plan.reuse(bound)  # type: ignore[arg-type]
            else:
                decision = plan.rotate(state.peek_counter(counter_key) + 1)
            assert decision is not None
            reason = self.authorize(req, decision, state.profiles.get(req.policy_profile_id or ""))
            if reason is not None:
                raise PolicyDenied(reason)
            error = None
        except RoutingError as exc:
            decision, error = None, exc.to_dict()
        return self.explanation(req, decision, error)

    def explanation(
        self, req: RouteRequest, decision: RouteDecision | None, error: dict[str, Any] | None
    ) -> Explanation:
        """Build the :class:`Explanation` of ``req`` around an outcome found elsewhere.

        Stores whose state lives outside the engine (Redis) find the decision or error
        themselves and use this for the per-backend verdicts and candidate sets.
        """
        eligible, ordered, preferred, fallback = self.candidate_sets(req)
        excluded = set(req.excluded_backends)
        wanted = req.capabilities
        verdicts = []
        for backend in self._backends:
            health = req.health.get(backend, Health.HEALTHY)
            reasons = []
            if backend in excluded:
                reasons.append("excluded")
            if health in _INELIGIBLE:
                reasons.append(f"health is {health.value}")
            missing = [c for c in wanted if c not in self._support[backend]]
            if missing:
                reasons.append("missing capabilities [" + ",".join(missing) + "]")
            verdicts.append(BackendVerdict(backend, backend in eligible, health, tuple(reasons)))
        summary = req.summary()
        if req.policy_profile_id is not None:
            summary["policy_profile_id"] = req.policy_profile_id
        if req.health:
            summary["health"] = {b: h.value for b, h in req.health.items()}
        return Explanation(
            summary,
            tuple(verdicts),
            eligible,
            preferred,
            fallback,
            tuple(b for b in eligible if b not in preferred and b not in fallback),
            ordered,
            decision,
            error,
        )

    # -- planning -------------------------------------------------------------------------

    def eligible(self, req: RouteRequest) -> tuple[str, ...]:
        """Available backends minus excluded, unhealthy/down and capability-lacking ones."""
        excluded = req.excluded_backends
        health = req.health
        caps = req.capabilities
        backends = self._backends
        if not excluded and not health and (not caps or not self._partial_support):
            return backends
        drop = set(excluded)
        for name, status in health.items():
            if status in _INELIGIBLE:
                drop.add(name)
        if caps and self._partial_support:
            wanted = frozenset(caps)
            support = self._support
            return tuple(b for b in backends if b not in drop and wanted <= support[b])
        return tuple(b for b in backends if b not in drop)

    def candidate_sets(self, req: RouteRequest) -> _CandidateSets:
        """``(eligible, ordered, preferred, fallback)`` for ``req`` (section 4), memoised."""
        health = req.health
        key = (
            req.excluded_backends,
            req.preferred_backends,
            req.fallback_backends,
            req.capabilities,
            req.fallback_policy,
            tuple(health.items()) if health else (),
        )
        cache = self._candidate_cache
        sets = cache.get(key)
        if sets is None:
            sets = self._compute_candidate_sets(req)
            if len(cache) >= _CANDIDATE_CACHE_SIZE:
                cache.clear()
            cache[key] = sets
        return sets

    def _compute_candidate_sets(self, req: RouteRequest) -> _CandidateSets:
        eligible = self.eligible(req)
        pref_req = req.preferred_backends
        fb_req = req.fallback_backends
        if not pref_req and not fb_req:
            return eligible, eligible, (), ()
        preferred = tuple(b for b in pref_req if b in eligible)
        fallback = tuple(b for b in fb_req if b in eligible and b not in preferred)
        if not preferred and not fallback:
            ordered = eligible
        elif req.fallback_policy is FallbackPolicy.NONE:
            ordered = preferred + fallback
        else:
            ordered = (
                preferred + fallback + tuple(b for b in eligible if b not in preferred and b not in fallback)
            )
        return eligible, ordered, preferred, fallback

    def plan(self, req: RouteRequest) -> RoutePlan:
        """The state-free part of selecting for ``req``; raises the selection's errors."""
        eligible, ordered, preferred, fallback = self.candidate_sets(req)
        policy = req.policy
        kind = DONE
        decision: RouteDecision | None = None
        counter_key: tuple[Any, ...] | None = None
        if policy is Policy.PREFERRED_THEN_FALLBACK:
            if not ordered:
                raise self._none_available(req, eligible)
            first = ordered[0]
            decision = _decision(first, ordered, self._selection_reason(first, preferred, fallback), req)
        elif policy is Policy.ROUND_ROBIN or policy is Policy.STICKY:
            sticky = policy is Policy.STICKY
            if sticky and req.affinity_key is None:
                raise InvalidRouteRequest("affinity_key_required")
            if not ordered:
                raise self._none_available(req, eligible)
            kind = STICKY if sticky else ROTATE
            counter_key = (
                policy.value,
                sticky,
                ordered,
                req.capabilities,
                req.preferred_backends,
                req.fallback_backends,
                req.excluded_backends,
            )
        elif policy is Policy.EXPLICIT:
            backend = req.backend
            if backend is not None:
                if backend not in eligible:
                    raise BackendNotEligible(backend)
                decision = RouteDecision(
                    backend,
                    (backend,),
                    policy,
                    _EXPLICIT_OVERRIDE,
                    (),
                    req.affinity_key,
                    req.policy_profile_id,
                )
            elif not ordered:
                raise self._none_available(req, eligible)
            else:
                decision = _decision(ordered[0], ordered, _EXPLICIT_FIRST, req)
        elif policy is Policy.CAPABILITY_FIRST:
            caps = req.capabilities
            if not eligible:
                if caps:
                    raise NoBackendSupportsCapabilities(list(caps))
                raise self._none_available(req, eligible)
            first = eligible[0]
            reason = (
                ("selected backend satisfying capabilities [" + ",".join(caps) + "]",)
                if caps
                else self._selection_reason(first, preferred, fallback)
            )
            decision = _decision(first, ordered, reason, req)
        else:  # failover: the last backend goes to the end, and the decision has no affinity key
            last = req.last_backend
            if last is not None and len(ordered) > 1 and last in ordered:
                ordered = (*(b for b in ordered if b != last), last)
            if not ordered:
                raise self._none_available(req, eligible)
            first = ordered[0]
            if last == first:
                reason = _FAILOVER_REUSED
            elif last is None:
                reason = _FAILOVER_FIRST
            else:
                reason = _FAILOVER_SKIPPED
            decision = RouteDecision(first, ordered, policy, reason, ordered[1:], None, req.policy_profile_id)
        return RoutePlan(req, kind, eligible, ordered, preferred, fallback, decision, counter_key)

    @staticmethod
    def _selection_reason(
        backend: str, preferred: tuple[str, ...], fallback: tuple[str, ...]
    ) -> tuple[str, ...]:
        if backend in preferred:
            return _PREFERRED
        if backend in fallback:
            return _FALLBACK
        return _FIRST_ELIGIBLE

    @staticmethod
    def _none_available(req: RouteRequest, eligible: tuple[str, ...]) -> NoBackendAvailable:
        return NoBackendAvailable(
            {
                "policy": req.policy.value,
                "requested_capabilities": list(req.capabilities),
                "preferred_backends": list(req.preferred_backends),
                "excluded_backends": list(req.excluded_backends),
                "eligible_backends": list(eligible),
            }
        )

    @staticmethod
    def authorize(req: RouteRequest, decision: RouteDecision, profile: PolicyProfile | None) -> str | None:
        """Check ``decision`` against the request's policy profile: ``None`` allows, else the deny reason.

        ``profile`` is the stored profile named by ``req.policy_profile_id`` (``None`` if
        there is no such profile).
        """
        if req.policy_profile_id is None:
            return None
        if profile is None:
            return "unknown policy profile"

        def context() -> dict[str, Any]:
            request = req.summary()
            request["policy_profile_id"] = req.policy_profile_id
            return {"backend": decision.backend, "decision": decision.to_dict(), "request": request}

        return profile.evaluate(context)
