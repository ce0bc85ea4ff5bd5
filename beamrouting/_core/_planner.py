"""The stateless planner: candidate sets, the policy's state-free outcome, and the decision.

A selection is one sequence, the same for every store::

    plan = planner.plan(request)                 # validation done, candidate sets, policy
    outcome = <the store's state step>           # a counter value, a binding to reuse, or nothing
    decision, deny = planner.settle(plan, outcome, profile)   # the decision, then the policy check

Only the state step differs between stores: the engine reads and advances its in-memory
counters and bindings, a shared store does it for a whole batch in one round trip. The
planner itself holds no routing state, so one planner serves any number of stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ._catalog import Catalog
from ._errors import (
    BackendNotEligible,
    InvalidRouteRequest,
    NoBackendAvailable,
    NoBackendSupportsCapabilities,
)
from ._explain import BackendVerdict, Explanation
from ._profiles import PolicyProfile
from ._request import RouteRequest
from ._types import FallbackPolicy, Health, Policy, RouteDecision

__all__ = ["DONE", "ROTATE", "STICKY", "Planner", "RoutePlan", "StateOutcome"]

_EXPLICIT_OVERRIDE: Final = ("selected explicit backend override",)
_EXPLICIT_FIRST: Final = ("selected first explicit candidate",)
_PREFERRED: Final = ("selected preferred backend",)
_FALLBACK: Final = ("selected fallback backend",)
_FIRST_ELIGIBLE: Final = ("selected first eligible backend",)
_ROUND_ROBIN: Final = ("selected by round robin policy",)
_STICKY_REUSED: Final = ("reused sticky affinity backend",)
_STICKY_BOUND: Final = ("selected backend and bound sticky affinity",)
_STICKY_TEMPORARY: Final = ("selected temporary backend while bound backend is out",)
_FAILOVER_REUSED: Final = ("reused last backend because no failover candidate remained",)
_FAILOVER_FIRST: Final = ("selected first failover candidate",)
_FAILOVER_SKIPPED: Final = ("skipped last backend and selected failover candidate",)
_INELIGIBLE: Final = (Health.UNHEALTHY, Health.DOWN)
_CANDIDATE_CACHE_SIZE: Final = 4096
_NONE: Final[frozenset[str]] = frozenset()

_CandidateSets = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
"""``(eligible, ordered, preferred, fallback)``."""

# Plan kinds: what the state step must do before the decision is known.
DONE: Final = 0
"""The decision is final already; the state step does nothing."""
ROTATE: Final = 1
"""The state step advances the round-robin counter ``counter_key`` and returns its new value."""
STICKY: Final = 2
"""The state step returns the backend bound to the affinity key when :meth:`RoutePlan.reusable`,
else advances ``counter_key`` and returns its new value."""

StateOutcome = int | str | None
"""What a store's state step found for a plan: a new counter value (``int``, from 1), the
bound backend to reuse (``str``), or nothing (``None``, for a ``DONE`` plan)."""


def _front(backend: str, ordered: tuple[str, ...]) -> tuple[str, ...]:
    if ordered and ordered[0] == backend:
        return ordered
    return (backend, *(b for b in ordered if b != backend))


def _decision(
    backend: str, ordered: tuple[str, ...], reason: tuple[str, ...], req: RouteRequest
) -> RouteDecision:
    candidates = _front(backend, ordered)
    return RouteDecision(
        backend, candidates, req.policy, reason, candidates[1:], req.affinity_key, req.policy_profile_id
    )


class RoutePlan:
    """The state-free part of a selection (see :data:`DONE`, :data:`ROTATE`, :data:`STICKY`).

    ``decision`` is set for a ``DONE`` plan; ``counter_key`` for the other two.
    """

    __slots__ = (
        "counter_key",
        "decision",
        "eligible",
        "fallback",
        "held_out",
        "kind",
        "ordered",
        "preferred",
        "request",
    )

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
        held_out: frozenset[str] = frozenset(),
    ) -> None:
        self.request = request
        self.kind = kind
        self.eligible = eligible
        self.ordered = ordered
        self.preferred = preferred
        self.fallback = fallback
        self.decision = decision
        self.counter_key = counter_key
        self.held_out = held_out
        """Backends the request would have found eligible but the store holds out (learned
        unavailability, capacity): a sticky key bound to one keeps its binding."""

    def reusable(self, bound: str | None) -> bool:
        """Whether a sticky binding to ``bound`` may be reused (the backend is eligible)."""
        return bound is not None and bound in self.eligible

    def decide(self, outcome: StateOutcome, *, temporary: bool = False) -> RouteDecision:
        """The decision for the state step's ``outcome`` (no policy check).

        ``temporary``: a sticky key whose bound backend is held out goes to the backend
        ``outcome`` gives until it is back.
        """
        if type(outcome) is int:
            ordered = self.ordered
            i = (outcome - 1) % len(ordered)
            candidates = ordered[i:] + ordered[:i] if i else ordered
            req = self.request
            if temporary:
                reason = _STICKY_TEMPORARY
            else:
                reason = _STICKY_BOUND if self.kind == STICKY else _ROUND_ROBIN
            return RouteDecision(
                candidates[0],
                candidates,
                req.policy,
                reason,
                candidates[1:],
                req.affinity_key,
                req.policy_profile_id,
            )
        if type(outcome) is str:
            return _decision(
                outcome, self.ordered, _STICKY_TEMPORARY if temporary else _STICKY_REUSED, self.request
            )
        decision = self.decision
        if decision is None:
            raise ValueError(
                f"a plan of kind {self.kind} needs a counter value or a binding, not {outcome!r}"
            )
        return decision


class Planner:
    """Plans selections against one catalogue (sections 4 and 5 of the contract).

    It computes candidate sets (memoised in a bounded cache), plans each policy
    (:meth:`plan`), settles a plan into its decision and policy check (:meth:`settle`) and
    explains a request (:meth:`explanation`). It holds no routing state.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._backends = catalog.backends
        full = frozenset(catalog.capabilities)
        self._support = {b: catalog.supported(b) for b in self._backends}
        self._partial_support = any(caps != full for caps in self._support.values())
        self._candidate_cache: dict[tuple[Any, ...], _CandidateSets] = {}

    # -- candidate sets -------------------------------------------------------------------------

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

    def candidate_sets(self, req: RouteRequest, unavailable: frozenset[str] = _NONE) -> _CandidateSets:
        """``(eligible, ordered, preferred, fallback)`` for ``req`` (section 4), memoised.

        ``unavailable`` backends are left out as if the request had marked them ``down``.
        """
        health = req.health
        key = (
            req.excluded_backends,
            req.preferred_backends,
            req.fallback_backends,
            req.capabilities,
            req.fallback_policy,
            tuple(health.items()) if health else (),
            unavailable,
        )
        cache = self._candidate_cache
        sets = cache.get(key)
        if sets is None:
            sets = self._compute_candidate_sets(req, unavailable)
            if len(cache) >= _CANDIDATE_CACHE_SIZE:
                cache.clear()
            cache[key] = sets
        return sets

    def _compute_candidate_sets(self, req: RouteRequest, unavailable: frozenset[str]) -> _CandidateSets:
        eligible = self.eligible(req)
        if unavailable:
            eligible = tuple(b for b in eligible if b not in unavailable)
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

    # -- planning -------------------------------------------------------------------------------

    def plan(self, req: RouteRequest, unavailable: frozenset[str] = _NONE) -> RoutePlan:
        """The state-free part of selecting for ``req``; raises the selection's errors.

        ``unavailable``: backends the store holds out (learned unavailability, capacity),
        left out as if the request had marked them ``down``.
        """
        eligible, ordered, preferred, fallback = self.candidate_sets(req, unavailable)
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
        held_out = _NONE
        if unavailable and kind == STICKY:
            held_out = unavailable.intersection(self.candidate_sets(req)[0])
        return RoutePlan(req, kind, eligible, ordered, preferred, fallback, decision, counter_key, held_out)

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

    # -- settling -------------------------------------------------------------------------------

    @staticmethod
    def settle(
        plan: RoutePlan, outcome: StateOutcome, profile: PolicyProfile | None, *, temporary: bool = False
    ) -> tuple[RouteDecision, str | None]:
        """The decision for ``plan`` given its state ``outcome``, and the policy check's verdict.

        ``profile`` is the stored profile the request names (``None`` when it names none, or
        names one that does not exist); ``temporary`` as for :meth:`RoutePlan.decide`.
        Returns ``(decision, deny_reason)``; ``deny_reason`` is ``None`` when the decision
        is allowed.
        """
        decision = plan.decide(outcome, temporary=temporary)
        req = plan.request
        if req.policy_profile_id is None:
            return decision, None
        return decision, authorize(req, decision, profile)

    # -- explaining -----------------------------------------------------------------------------

    def explanation(
        self,
        req: RouteRequest,
        decision: RouteDecision | None,
        error: dict[str, Any] | None,
        held_out: Mapping[str, str] | None = None,
    ) -> Explanation:
        """The :class:`Explanation` of ``req`` around its outcome (a decision or an error).

        ``held_out`` maps each backend the store holds out to why (``"cooling until ..."``).
        """
        held_out = held_out or {}
        eligible, ordered, preferred, fallback = self.candidate_sets(req, frozenset(held_out))
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
            if backend in held_out:
                reasons.append(held_out[backend])
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


def authorize(req: RouteRequest, decision: RouteDecision, profile: PolicyProfile | None) -> str | None:
    """Check ``decision`` against the request's policy profile: ``None`` allows, else the deny reason.

    ``profile`` is the stored profile named by ``req.policy_profile_id`` (``None`` if there
    is no such profile, which denies).
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
