"""A deliberately plain reference model of selection (sections 4 to 6 of routing.md).

It is slow and unbounded on purpose: one readable transcription of the contract, used as
an oracle by the property tests (the engine must make the same decisions, in the same
order, with the same state changes). Validation and session merging reuse the engine's
normaliser, which the scenario tests check against the reference data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beamrouting import (
    BackendNotEligible,
    Catalog,
    InvalidRouteRequest,
    NoBackendAvailable,
    NoBackendSupportsCapabilities,
    PolicyDenied,
)
from beamrouting._core._request import RequestNormalizer, RouteRequest, merge_session

_MISSING = object()


def _front(backend: str, candidates: list[str]) -> list[str]:
    return [backend, *(b for b in candidates if b != backend)]


class ModelEngine:
    """What ``RoutingEngine`` must do, without bounds, TTLs or a journal."""

    def __init__(self, catalog: Catalog | None = None) -> None:
        self.catalog = Catalog.default() if catalog is None else catalog
        self.normalizer = RequestNormalizer(self.catalog)
        self.counters: dict[tuple[Any, ...], int] = {}
        self.bindings: dict[str, str] = {}
        self.profiles: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        self.counters.clear()
        self.bindings.clear()

    def put_policy_profile(self, profile_id: str, profile: Mapping[str, Any]) -> None:
        self.profiles[profile_id] = dict(profile)

    def select_backend(self, *args: Any) -> dict[str, Any]:
        """``select_backend(request)`` or ``select_backend(session_or_opts, request)``; a decision dict."""
        request = args[0] if len(args) == 1 else merge_session(args[0], args[1])
        req = self.normalizer.normalize(request)
        decision = self._select(req)
        if req.policy_profile_id is not None:
            decision["policy_profile_id"] = req.policy_profile_id
        reason = self._profile_denial(req, decision)
        if reason is not None:
            raise PolicyDenied(reason)
        if req.policy == "sticky":
            assert req.affinity_key is not None
            self.bindings[req.affinity_key] = decision["backend"]
        return decision

    # ------------------------------------------------------------------ candidate sets

    def eligible(self, req: RouteRequest) -> list[str]:
        bad_health = {b for b, h in req.health.items() if h in ("unhealthy", "down")}
        return [
            b
            for b in self.catalog.backends
            if b not in req.excluded_backends
            and b not in bad_health
            and all(self.catalog.supports(b, c) for c in req.capabilities)
        ]

    def ordered(self, req: RouteRequest) -> tuple[list[str], list[str], list[str], list[str]]:
        eligible = self.eligible(req)
        preferred = [b for b in req.preferred_backends if b in eligible]
        fallback = [b for b in req.fallback_backends if b in eligible and b not in preferred]
        remaining = [b for b in eligible if b not in preferred and b not in fallback]
        if not preferred and not fallback:
            ordered = list(eligible)
        elif req.fallback_policy == "none":
            ordered = preferred + fallback
        else:
            ordered = preferred + fallback + remaining
        return eligible, preferred, fallback, ordered

    # ------------------------------------------------------------------ policies

    def _select(self, req: RouteRequest) -> dict[str, Any]:
        eligible, preferred, fallback, ordered = self.ordered(req)

        def reason_for(backend: str) -> str:
            if backend in preferred:
                return "selected preferred backend"
            if backend in fallback:
                return "selected fallback backend"
            return "selected first eligible backend"

        def decision(
            backend: str, candidates: list[str], reason: str, affinity: bool = True
        ) -> dict[str, Any]:
            out: dict[str, Any] = {
                "backend": backend,
                "candidates": candidates,
                "policy": req.policy.value,
                "reasons": [reason],
                "fallback_chain": candidates[1:],
            }
            if affinity and req.affinity_key is not None:
                out["affinity_key"] = req.affinity_key
            return out

        def unavailable() -> NoBackendAvailable:
            return NoBackendAvailable(
                {
                    "policy": req.policy.value,
                    "requested_capabilities": list(req.capabilities),
                    "preferred_backends": list(req.preferred_backends),
                    "excluded_backends": list(req.excluded_backends),
                    "eligible_backends": eligible,
                }
            )

        def round_robin(policy: str, sticky: bool, reason: str) -> dict[str, Any]:
            if not ordered:
                raise unavailable()
            key = (
                policy,
                sticky,
                tuple(ordered),
                req.capabilities,
                req.preferred_backends,
                req.fallback_backends,
                req.excluded_backends,
            )
            self.counters[key] = self.counters.get(key, 0) + 1
            i = (self.counters[key] - 1) % len(ordered)
            candidates = ordered[i:] + ordered[:i]
            return decision(candidates[0], candidates, reason)

        policy = req.policy
        if policy == "explicit":
            if req.backend is not None:
                if req.backend not in eligible:
                    raise BackendNotEligible(req.backend)
                return decision(req.backend, [req.backend], "selected explicit backend override")
            if not ordered:
                raise unavailable()
            return decision(ordered[0], ordered, "selected first explicit candidate")
        if policy == "preferred_then_fallback":
            if not ordered:
                raise unavailable()
            return decision(ordered[0], ordered, reason_for(ordered[0]))
        if policy == "capability_first":
            if req.capabilities and not eligible:
                raise NoBackendSupportsCapabilities(list(req.capabilities))
            if not eligible:
                raise unavailable()
            backend = eligible[0]
            if req.capabilities:
                reason = "selected backend satisfying capabilities [" + ",".join(req.capabilities) + "]"
            else:
                reason = reason_for(backend)
            return decision(backend, _front(backend, ordered), reason)
        if policy == "round_robin":
            return round_robin("round_robin", False, "selected by round robin policy")
        if policy == "least_loaded" or policy == "weighted":
            if not ordered:
                raise unavailable()
            key = (policy, tuple(ordered))
            self.counters[key] = self.counters.get(key, 0) + 1
            turn = self.counters[key] - 1
            if policy == "least_loaded":  # nothing is live here: every candidate ties, and they take turns
                backend = ordered[turn % len(ordered)]
                return decision(backend, _front(backend, ordered), "selected least loaded backend")
            # Every weight is 1: one period is each candidate once, in catalogue order.
            by_catalogue = [b for b in self.catalog.backends if b in ordered]
            backend = by_catalogue[turn % len(by_catalogue)]
            return decision(backend, _front(backend, ordered), "selected by weighted policy")
        if policy == "sticky":
            if req.affinity_key is None:
                raise InvalidRouteRequest("affinity_key_required")
            bound = self.bindings.get(req.affinity_key)
            if bound is not None and bound in eligible:
                return decision(bound, _front(bound, ordered), "reused sticky affinity backend")
            return round_robin("sticky", True, "selected backend and bound sticky affinity")
        assert policy == "failover"
        last = req.last_backend
        candidates = list(ordered)
        if last is not None and last in candidates and len(candidates) > 1:
            candidates = [b for b in candidates if b != last] + [last]
        if not candidates:
            raise unavailable()
        backend = candidates[0]
        if last == backend:
            reason = "reused last backend because no failover candidate remained"
        elif last is None:
            reason = "selected first failover candidate"
        else:
            reason = "skipped last backend and selected failover candidate"
        return decision(backend, candidates, reason, affinity=False)

    # ------------------------------------------------------------------ profiles

    def _profile_denial(self, req: RouteRequest, decision: dict[str, Any]) -> str | None:
        if req.policy_profile_id is None:
            return None
        profile = self.profiles.get(req.policy_profile_id)
        if profile is None:
            return "unknown policy profile"
        context = {"backend": decision["backend"], "decision": decision, "request": _request_view(req)}
        allowed = False
        for rule in profile.get("rules", []):
            if rule.get("action", "*") not in ("backend", "*"):
                continue
            if not _matches(rule.get("match", "*"), context):
                continue
            if rule.get("decision", "deny") == "deny":
                reason: str = rule.get("reason", "denied by policy profile")
                return reason
            allowed = True
        if allowed or profile.get("default", "allow") == "allow":
            return None
        return "denied by policy profile default"


def _request_view(req: RouteRequest) -> dict[str, Any]:
    return {
        "policy": req.policy.value,
        "backend": req.backend,
        "preferred_backends": list(req.preferred_backends),
        "excluded_backends": list(req.excluded_backends),
        "fallback_backends": list(req.fallback_backends),
        "capabilities": list(req.capabilities),
        "last_backend": req.last_backend,
        "fallback_policy": req.fallback_policy.value,
        "affinity_key": req.affinity_key,
        "policy_profile_id": req.policy_profile_id,
    }


def _walk(path: Any, context: Mapping[str, Any]) -> Any:
    steps = path if isinstance(path, list | tuple) else [path]
    value: Any = context
    for step in steps:
        value = value.get(step) if isinstance(value, Mapping) else None
    return value


def _matches(match: Any, context: Mapping[str, Any]) -> bool:
    if match == "*":
        return True
    op, path, *args = match
    value = _walk(path, context)
    if op == "exists":
        return value is not None
    if op == "eq":
        return bool(value == args[0])
    if op == "member":
        return value in args[0]
    if op == "prefix":
        return isinstance(value, str) and value.startswith(args[0])
    assert op == "path_prefix"
    return isinstance(value, str) and value.replace("\\", "/").startswith(args[0].replace("\\", "/"))
