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

import msgspec

from ._catalog import Catalog
from ._errors import (
    BackendNotEligible,
    InvalidRouteRequest,
    NoBackendAvailable,
    NoBackendSupportsCapabilities,
    PolicyDenied,
)
from ._explain import BackendVerdict, Explanation
from ._holds import NO_HOLDS, Holds
from ._profiles import PolicyProfile
from ._request import RouteRequest
from ._types import FallbackPolicy, Health, Policy, RouteDecision

__all__ = [
    "DONE",
    "LEAST_LOADED",
    "ROTATE",
    "STICKY",
    "WEIGHTED",
    "Planner",
    "RoutePlan",
    "StateOutcome",
    "smooth_weighted",
]

_EXPLICIT_OVERRIDE: Final = ("selected explicit backend override",)
_EXPLICIT_FIRST: Final = ("selected first explicit candidate",)
_PREFERRED: Final = ("selected preferred backend",)
_FALLBACK: Final = ("selected fallback backend",)
_FIRST_ELIGIBLE: Final = ("selected first eligible backend",)
_ROUND_ROBIN: Final = ("selected by round robin policy",)
_STICKY_REUSED: Final = ("reused sticky affinity backend",)
_STICKY_BOUND: Final = ("selected backend and bound sticky affinity",)
_STICKY_TEMPORARY: Final = ("selected temporary backend while bound backend is out",)
_LEAST_LOADED: Final = ("selected least loaded backend",)
_WEIGHTED: Final = ("selected by weighted policy",)
_SEQUENCE_CACHE_SIZE: Final = 64
_ROTATION_REFERENCES: Final = 1 << 20
"""Backend names the kept round-robin decisions may hold in all (about 8 MB of references)."""


class _Budget:
    """A count of references a cache may still hold; reset when the cache is emptied."""

    __slots__ = ("left", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.left = size

    def take(self, amount: int) -> bool:
        """Whether ``amount`` more fits (and then it is taken)."""
        if amount > self.left:
            return False
        self.left -= amount
        return True

    def reset(self) -> None:
        """Everything is free again."""
        self.left = self.size


_FAILOVER_REUSED: Final = ("reused last backend because no failover candidate remained",)
_FAILOVER_FIRST: Final = ("selected first failover candidate",)
_FAILOVER_SKIPPED: Final = ("skipped last backend and selected failover candidate",)
_INELIGIBLE: Final = (Health.UNHEALTHY, Health.DOWN)
_CANDIDATE_CACHE_SIZE: Final = 4096
_CANDIDATE_CACHE_ENTRIES: Final = 1 << 20
"""Backend names the candidate cache may hold in all (about 8 MB of references): a large
catalogue fills it with fewer request shapes."""
_NONE: Final[frozenset[str]] = frozenset()
_ENCODE: Final = msgspec.msgpack.Encoder().encode

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
LEAST_LOADED: Final = 3
"""The state step finds the candidates with the fewest live sessions (:meth:`RoutePlan.least_loaded`),
advances the counter :meth:`RoutePlan.tie_key` names and returns the tied backend it points at."""
WEIGHTED: Final = 4
"""The state step advances ``counter_key`` and returns its new value, an index into the plan's
smooth weighted round-robin ``sequence``."""

StateOutcome = int | str | None
"""What a store's state step found for a plan: a new counter value (``int``, from 1), the
bound backend to reuse (``str``), or nothing (``None``, for a ``DONE`` plan)."""


class _Sets:
    """The candidate sets of one request shape, and the counter keys that depend on them only."""

    __slots__ = ("_counters", "eligible", "fallback", "ordered", "preferred", "routed", "size")

    def __init__(
        self,
        eligible: tuple[str, ...],
        ordered: tuple[str, ...],
        preferred: tuple[str, ...],
        fallback: tuple[str, ...],
    ) -> None:
        self.eligible = eligible
        self.ordered = ordered
        self.preferred = preferred
        self.fallback = fallback
        self.size = len(eligible) + len(ordered) + len(preferred) + len(fallback)
        self._counters: dict[Policy, tuple[tuple[Any, ...], bytes]] = {}
        self.routed: dict[tuple[Policy, str | None, str | None], RoutePlan | RouteDecision] = {}
        """What :meth:`Planner.route` gives requests without an affinity key or a profile, by
        ``(policy, backend, last_backend)``: a decision or a plan, immutable, so one serves
        every equal request."""

    def counter(self, req: RouteRequest, policy: Policy) -> tuple[tuple[Any, ...], bytes]:
        """The contract's counter key of ``policy`` for these sets, and its msgpack encoding."""
        known = self._counters.get(policy)
        if known is None:
            if policy is Policy.WEIGHTED:
                key: tuple[Any, ...] = (policy.value, self.ordered)
            else:
                sticky = policy is Policy.STICKY
                key = (
                    policy.value,
                    sticky,
                    self.ordered,
                    req.capabilities,
                    req.preferred_backends,
                    req.fallback_backends,
                    req.excluded_backends,
                )
            known = self._counters[policy] = (key, _ENCODE(key))
            self.size += len(self.ordered)
        return known


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

    Made by :meth:`beamrouting.RoutingEngine.plan` (and the stores),
    never by hand: ``request``, ``kind``, the candidate sets ``eligible``, ``ordered``,
    ``preferred`` and ``fallback``, and per kind ``decision`` (a ``DONE`` plan),
    ``counter_key`` and ``counter_id`` (the others), ``held_out`` and ``sequence`` (see
    each attribute).
    """

    __slots__ = (
        "_rotations",
        "counter_id",
        "counter_key",
        "decision",
        "eligible",
        "fallback",
        "held_out",
        "kind",
        "ordered",
        "preferred",
        "request",
        "sequence",
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
        sequence: tuple[str, ...] = (),
        counter_id: bytes | None = None,
    ) -> None:
        self.request = request
        """The normalised request."""
        self.kind = kind
        """:data:`DONE`, :data:`ROTATE`, :data:`STICKY` or :data:`LEAST_LOADED`: what state the selection needs."""
        self.eligible = eligible
        """The eligible backends, in available order."""
        self.ordered = ordered
        """The candidates in the order the policy considers them."""
        self.preferred = preferred
        """The eligible preferred backends."""
        self.fallback = fallback
        """The eligible fallback backends."""
        self.decision = decision
        """The decision of a ``DONE`` plan (``None`` for the others)."""
        self.counter_key = counter_key
        """The key of the round-robin counter the selection advances (``None`` for a ``DONE`` plan)."""
        self.held_out = held_out
        """Backends the request would have found eligible but the store holds out (learned
        unavailability, capacity): a sticky key bound to one keeps its binding."""
        self.sequence = sequence
        """The smooth weighted round-robin sequence of a ``WEIGHTED`` plan."""
        self.counter_id = counter_id
        """``counter_key`` msgpack-encoded: the same in every process, and cheap to hash (bytes
        cache their hash), so a store can key its counter by it."""
        self._rotations: list[RouteDecision] | None = None

    def rotation(self, counter: int, budget: _Budget) -> RouteDecision:
        """The round-robin decision for counter value ``counter`` (a ``ROTATE`` plan of a request
        without an affinity key). Decisions are immutable, so the plan keeps all of them and
        hands out the same objects, as long as ``budget`` has room for their candidates."""
        rotations = self._rotations
        if rotations is None:
            count = len(self.ordered)
            if not budget.take(count * count):
                return self.decide(counter)
            rotations = self._rotations = [self.decide(turn) for turn in range(1, count + 1)]
        return rotations[(counter - 1) % len(rotations)]

    def least_loaded(self, live: Mapping[str, int]) -> tuple[str, ...]:
        """The candidates with the fewest ``live`` sessions, in candidate order."""
        ordered = self.ordered
        fewest = min(live.get(b, 0) for b in ordered)
        return tuple(b for b in ordered if live.get(b, 0) == fewest)

    @staticmethod
    def tie_key(tied: tuple[str, ...]) -> tuple[Any, ...]:
        """The counter key that rotates among ``tied`` least-loaded backends."""
        return (Policy.LEAST_LOADED.value, tied)

    def reusable(self, bound: str | None) -> bool:
        """Whether a sticky binding to ``bound`` may be reused (the backend is eligible)."""
        return bound is not None and bound in self.eligible

    def decide(self, outcome: StateOutcome, *, temporary: bool = False) -> RouteDecision:
        """The decision for the state step's ``outcome`` (no policy check).

        ``temporary``: a sticky key whose bound backend is held out goes to the backend
        ``outcome`` gives until it is back.
        """
        kind = self.kind
        if kind == WEIGHTED and type(outcome) is int:
            sequence = self.sequence
            return _decision(sequence[(outcome - 1) % len(sequence)], self.ordered, _WEIGHTED, self.request)
        if kind == LEAST_LOADED and type(outcome) is str:
            return _decision(outcome, self.ordered, _LEAST_LOADED, self.request)
        if type(outcome) is int:
            ordered = self.ordered
            i = (outcome - 1) % len(ordered)
            candidates = (ordered + ordered)[i : i + len(ordered)] if i else ordered
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

    def __init__(self, catalog: Catalog, weights: Mapping[str, int] | None = None) -> None:
        self.catalog = catalog
        self.weights: Mapping[str, int] = dict(weights or {})
        """Each backend's weight for the ``weighted`` policy (1 when absent)."""
        self._sequences: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._backends = catalog.backends
        full = frozenset(catalog.capabilities)
        self._support = {b: catalog.supported(b) for b in self._backends}
        self._partial_support = any(caps != full for caps in self._support.values())
        self._candidate_cache: dict[tuple[Any, ...], _Sets] = {}
        self._cached_entries = 0
        self._last: tuple[RouteRequest | None, frozenset[str], RoutePlan | RouteDecision | None] = (
            None,
            _NONE,
            None,
        )
        """``(request, unavailable, what route() gave)`` for the last request :meth:`route` served
        from ``_Sets.routed``: requests repeat as the very same object (they are normalised
        once), and then need no key built and hashed. Forgotten when the cache is cleared."""
        self.rotations = _Budget(_ROTATION_REFERENCES)
        """Room for the round-robin decisions plans keep (:meth:`RoutePlan.rotation`)."""

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
        sets = self._sets(req, unavailable)
        return sets.eligible, sets.ordered, sets.preferred, sets.fallback

    def _sets(self, req: RouteRequest, unavailable: frozenset[str]) -> _Sets:
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
            sets = _Sets(*self._compute_candidate_sets(req, unavailable))
            if len(cache) >= _CANDIDATE_CACHE_SIZE or self._cached_entries > _CANDIDATE_CACHE_ENTRIES:
                cache.clear()
                self._cached_entries = 0
                self._last = (None, _NONE, None)
                self.rotations.reset()
            cache[key] = sets
            self._cached_entries += sets.size
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
        routed = self.route(req, unavailable)
        if type(routed) is RouteDecision:
            return RoutePlan(req, DONE, (), routed.candidates, (), (), routed)
        return routed  # type: ignore[return-value]

    def route(self, req: RouteRequest, unavailable: frozenset[str] = _NONE) -> RoutePlan | RouteDecision:
        """:meth:`plan`, but the decision itself when it needs no state (what the hot path uses)."""
        last, held_out, known = self._last
        if req is last and unavailable is held_out:
            return known  # type: ignore[return-value]
        sets = self._sets(req, unavailable)
        if req.affinity_key is None and req.policy_profile_id is None:
            key = (req.policy, req.backend, req.last_backend)
            known = sets.routed.get(key)
            if known is None:
                known = self._route(req, sets, unavailable)
                sets.routed[key] = known
                sets.size += len(sets.ordered)
            self._last = (req, unavailable, known)
            return known
        return self._route(req, sets, unavailable)

    def _route(
        self, req: RouteRequest, sets: _Sets, unavailable: frozenset[str]
    ) -> RoutePlan | RouteDecision:
        ordered = sets.ordered
        policy = req.policy
        if policy is Policy.PREFERRED_THEN_FALLBACK:
            if not ordered:
                raise self._none_available(req, sets.eligible)
            first = ordered[0]
            return _decision(
                first, ordered, self._selection_reason(first, sets.preferred, sets.fallback), req
            )
        if policy is Policy.ROUND_ROBIN or policy is Policy.STICKY:
            sticky = policy is Policy.STICKY
            if sticky and req.affinity_key is None:
                raise InvalidRouteRequest("affinity_key_required")
            if not ordered:
                raise self._none_available(req, sets.eligible)
            counter_key, counter_id = sets.counter(req, policy)
            held_out = _NONE
            if unavailable and sticky:
                held_out = unavailable.intersection(self._sets(req, _NONE).eligible)
            return RoutePlan(
                req,
                STICKY if sticky else ROTATE,
                sets.eligible,
                ordered,
                sets.preferred,
                sets.fallback,
                None,
                counter_key,
                held_out,
                (),
                counter_id,
            )
        if policy is Policy.EXPLICIT:
            backend = req.backend
            if backend is not None:
                if backend not in sets.eligible:
                    raise BackendNotEligible(backend)
                return RouteDecision(
                    backend,
                    (backend,),
                    policy,
                    _EXPLICIT_OVERRIDE,
                    (),
                    req.affinity_key,
                    req.policy_profile_id,
                )
            if not ordered:
                raise self._none_available(req, sets.eligible)
            return _decision(ordered[0], ordered, _EXPLICIT_FIRST, req)
        if policy is Policy.CAPABILITY_FIRST:
            eligible = sets.eligible
            caps = req.capabilities
            if not eligible:
                if caps:
                    raise NoBackendSupportsCapabilities(list(caps))
                raise self._none_available(req, eligible)
            first = eligible[0]
            reason = (
                ("selected backend satisfying capabilities [" + ",".join(caps) + "]",)
                if caps
                else self._selection_reason(first, sets.preferred, sets.fallback)
            )
            return _decision(first, ordered, reason, req)
        if policy is Policy.LEAST_LOADED or policy is Policy.WEIGHTED:
            if not ordered:
                raise self._none_available(req, sets.eligible)
            if policy is Policy.LEAST_LOADED:
                return RoutePlan(req, LEAST_LOADED, sets.eligible, ordered, sets.preferred, sets.fallback)
            counter_key, counter_id = sets.counter(req, policy)
            return RoutePlan(
                req,
                WEIGHTED,
                sets.eligible,
                ordered,
                sets.preferred,
                sets.fallback,
                None,
                counter_key,
                _NONE,
                self.sequence(ordered),
                counter_id,
            )
        # failover: the last backend goes to the end, and the decision has no affinity key
        last = req.last_backend
        if last is not None and len(ordered) > 1 and last in ordered:
            ordered = (*(b for b in ordered if b != last), last)
        if not ordered:
            raise self._none_available(req, sets.eligible)
        first = ordered[0]
        if last == first:
            reason = _FAILOVER_REUSED
        elif last is None:
            reason = _FAILOVER_FIRST
        else:
            reason = _FAILOVER_SKIPPED
        return RouteDecision(first, ordered, policy, reason, ordered[1:], None, req.policy_profile_id)

    def plan_with(self, req: RouteRequest, holds: Holds) -> RoutePlan:
        """:meth:`plan` with what the store holds out (see :meth:`route_with`)."""
        routed = self.route_with(req, holds)
        if type(routed) is RouteDecision:
            return RoutePlan(req, DONE, (), routed.candidates, (), (), routed)
        return routed  # type: ignore[return-value]

    def route_with(self, req: RouteRequest, holds: Holds) -> RoutePlan | RouteDecision:
        """:meth:`route` with what the store holds out; the errors say why and when to retry.

        A selection that only a filtering profile emptied raises
        :class:`beamrouting.PolicyDenied` with the first denying rule's reason (an
        explicit backend it denies, too). One that learned state or capacity emptied raises
        :class:`beamrouting.NoBackendAvailable` whose detail adds ``retry_at`` (when a
        learned-out backend is back) and ``"reason": "at_capacity"`` (when limits took part).
        """
        if holds is NO_HOLDS:
            return self.route(req)
        unavailable = holds.unavailable
        try:
            return self.route(req, unavailable)
        except BackendNotEligible:
            backend = req.backend
            if backend is not None and backend in holds.denied:
                raise PolicyDenied(holds.denied[backend]) from None
            raise
        except NoBackendAvailable as exc:
            if not unavailable:
                raise
            if holds.denied:
                others = frozenset((*holds.learned, *holds.full))
                before_filter = self.candidate_sets(req, others)[1]
                if before_filter:
                    raise PolicyDenied(holds.denied[before_filter[0]]) from None
            wanted = self.candidate_sets(req)[1]
            detail = dict(exc.detail)
            back = holds.retry_at(wanted)
            if back is not None:
                detail["retry_at"] = back
            if any(b in holds.full for b in wanted):
                detail["reason"] = "at_capacity"
            raise NoBackendAvailable(detail) from None

    def sequence(self, candidates: tuple[str, ...]) -> tuple[str, ...]:
        """The smooth weighted round-robin sequence over ``candidates`` (memoised, bounded)."""
        cache = self._sequences
        sequence = cache.get(candidates)
        if sequence is None:
            order = {b: i for i, b in enumerate(self._backends)}
            by_catalogue = sorted(candidates, key=order.__getitem__)
            sequence = smooth_weighted([(b, self.weights.get(b, 1)) for b in by_catalogue])
            if len(cache) >= _SEQUENCE_CACHE_SIZE:
                cache.clear()
            cache[candidates] = sequence
        return sequence

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


def smooth_weighted(weighted: list[tuple[str, int]]) -> tuple[str, ...]:
    """One period of smooth weighted round robin (as nginx does it): ``sum(weights)`` picks.

    Each step adds every backend's weight to its current value, picks the highest (ties go
    to the earlier backend in ``weighted``'s order) and takes the total from it. Over the
    period each backend is picked exactly its weight times, spread as evenly as can be:
    weights 3:1 give ``a a b a``, 5:1:1 give ``a a b a c a a``.
    """
    total = sum(weight for _, weight in weighted)
    current = [0] * len(weighted)
    picks = []
    for _ in range(total):
        best = 0
        for index, (_, weight) in enumerate(weighted):
            current[index] += weight
            if current[index] > current[best]:
                best = index
        current[best] -= total
        picks.append(weighted[best][0])
    return tuple(picks)


def authorize(req: RouteRequest, decision: RouteDecision, profile: PolicyProfile | None) -> str | None:
    """Check ``decision`` against the request's policy profile: ``None`` allows, else the deny reason.

    ``profile`` is the stored profile named by ``req.policy_profile_id`` (``None`` if there
    is no such profile, which denies).
    """
    if req.policy_profile_id is None:
        return None
    if profile is None:
        return "unknown policy profile"
    if profile.filters:  # it removed the candidates it denies before selection: nothing to veto
        return None

    def context() -> dict[str, Any]:
        request = req.summary()
        request["policy_profile_id"] = req.policy_profile_id
        return {"backend": decision.backend, "decision": decision.to_dict(), "request": request}

    return profile.evaluate(context)
