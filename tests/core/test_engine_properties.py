"""Property tests of RoutingEngine over valid requests (Hypothesis).

The strongest property compares the engine with the plain reference model in _model.py
(itself checked against the reference scenarios) over random sequences of calls, so that
state (counters, bindings) is exercised too. The others state the contract's invariants
directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from beamrouting import Catalog, Policy, RouteDecision, RoutingEngine, RoutingError
from tests._helpers import profiles_for_scenarios
from tests._model import ModelEngine
from tests._strategies import AFFINITY_KEYS, DEFAULT, calls, catalogs, requests


def fresh_engine(catalog: Catalog = DEFAULT) -> RoutingEngine:
    engine = RoutingEngine(catalog)
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    return engine


def fresh_model(catalog: Catalog = DEFAULT) -> ModelEngine:
    model = ModelEngine(catalog)
    for profile_id, profile in profiles_for_scenarios():
        model.put_policy_profile(profile_id, profile)
    return model


def engine_outcome(engine: RoutingEngine, call: tuple[Any, ...]) -> Any:
    if not call:
        clear: Callable[[], object] = engine.clear
        return ("cleared", clear())
    try:
        return engine.select_backend(*call).to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


def model_outcome(model: ModelEngine, call: tuple[Any, ...]) -> Any:
    if not call:
        clear: Callable[[], object] = model.clear
        return ("cleared", clear())
    try:
        return model.select_backend(*call)
    except RoutingError as exc:
        return (exc.code, exc.detail)


def eligible(catalog: Catalog, request: dict[str, Any]) -> set[str]:
    """Section 4.1, computed straight from the request."""
    excluded = request.get("excluded_backends", [])
    excluded = {catalog.canonical(b) for b in ([excluded] if isinstance(excluded, str) else excluded)}
    health: dict[str, str] = {}
    for name, status in request.get("health", {}).items():
        health[str(catalog.canonical(name))] = str(status)
    capabilities = request.get("capabilities", [])
    return {
        b
        for b in catalog.backends
        if b not in excluded
        and health.get(b, "healthy") not in ("unhealthy", "down")
        and all(catalog.supports(b, c) for c in capabilities)
    }


def check_decision_shape(catalog: Catalog, request: dict[str, Any], decision: RouteDecision) -> None:
    assert decision.backend in eligible(catalog, request)
    assert decision.candidates[0] == decision.backend
    assert decision.fallback_chain == decision.candidates[1:]
    assert len(set(decision.candidates)) == len(decision.candidates)
    assert set(decision.candidates) <= set(catalog.backends)
    assert len(decision.reasons) == 1


# --------------------------------------------------------------------------- the oracle


@given(st.lists(calls(), min_size=10, max_size=30))
def test_engine_agrees_with_the_reference_model(sequence: list[tuple[Any, ...]]) -> None:
    engine, model = fresh_engine(), fresh_model()
    for index, call in enumerate(sequence):
        assert engine_outcome(engine, call) == model_outcome(model, call), f"call {index}: {call!r}"


@given(st.data())
def test_engine_agrees_with_the_reference_model_on_custom_catalogues(data: st.DataObject) -> None:
    catalog = data.draw(catalogs(), label="catalog")
    sequence = data.draw(st.lists(calls(catalog), min_size=5, max_size=20), label="calls")
    engine, model = fresh_engine(catalog), fresh_model(catalog)
    for index, call in enumerate(sequence):
        assert engine_outcome(engine, call) == model_outcome(model, call), f"call {index}: {call!r}"


# --------------------------------------------------------------------------- invariants


@given(requests(profiles=False))
def test_a_decision_is_well_formed_or_an_error(request: dict[str, Any]) -> None:
    engine = fresh_engine()
    try:
        decision = engine.select_backend(request)
    except RoutingError:
        return
    check_decision_shape(DEFAULT, request, decision)
    policy = Policy(
        request.get(
            "policy",
            "explicit" if request.get("backend") not in (None, "auto") else "preferred_then_fallback",
        )
    )
    if policy is Policy.EXPLICIT and request.get("backend") not in (None, "auto"):
        assert decision.backend == DEFAULT.canonical(request["backend"])
        assert decision.candidates == (decision.backend,)


@given(st.data())
def test_custom_catalogue_decisions_are_well_formed(data: st.DataObject) -> None:
    catalog = data.draw(catalogs(), label="catalog")
    engine = RoutingEngine(catalog)
    for request in data.draw(
        st.lists(requests(catalog, profiles=False), min_size=1, max_size=5), label="requests"
    ):
        try:
            decision = engine.select_backend(request)
        except RoutingError:
            continue
        check_decision_shape(catalog, request, decision)


@given(requests(profiles=False))
def test_round_robin_visits_each_candidate_once_per_cycle(request: dict[str, Any]) -> None:
    request = {**request, "policy": "round_robin"}
    engine = fresh_engine()
    try:
        first = engine.select_backend(request)
    except RoutingError:
        return
    n = len(first.candidates)
    chosen = [first.backend] + [engine.select_backend(request).backend for _ in range(n - 1)]
    assert sorted(chosen) == sorted(first.candidates)
    assert chosen == list(first.candidates)
    assert engine.select_backend(request).backend == first.backend  # the next cycle starts over


@given(requests(profiles=False), st.lists(AFFINITY_KEYS, min_size=1, max_size=8, unique=True))
def test_new_sticky_keys_share_one_rotation(request: dict[str, Any], keys: list[str]) -> None:
    request = {**request, "policy": "sticky"}
    engine = fresh_engine()
    try:
        chosen = [engine.select_backend({**request, "affinity_key": key}) for key in keys]
    except RoutingError:
        return
    ordered = chosen[0].candidates
    assert [d.backend for d in chosen] == [ordered[i % len(ordered)] for i in range(len(keys))]
    assert {d.reasons for d in chosen} == {("selected backend and bound sticky affinity",)}
    # every key is now bound: asking again reuses, and no counter moves
    again = [engine.select_backend({**request, "affinity_key": key}) for key in keys]
    assert [d.backend for d in again] == [d.backend for d in chosen]
    assert {d.reasons for d in again} == {("reused sticky affinity backend",)}


@given(st.lists(calls(), max_size=12))
def test_clear_restores_first_call_behaviour(sequence: list[tuple[Any, ...]]) -> None:
    sequence = [call for call in sequence if call]  # clear() only between the two runs
    reference = fresh_engine()
    expected = [engine_outcome(reference, call) for call in sequence]
    engine = fresh_engine()
    for call in sequence:
        engine_outcome(engine, call)
    engine.clear()
    assert [engine_outcome(engine, call) for call in sequence] == expected


@given(st.lists(requests(profiles=False), min_size=1, max_size=12))
def test_sticky_keeps_a_key_on_its_backend_while_eligible(sequence: list[dict[str, Any]]) -> None:
    engine = fresh_engine()
    bound: str | None = None
    for request in sequence:
        request = {**request, "policy": "sticky", "affinity_key": "ws"}
        try:
            decision = engine.select_backend(request)
        except RoutingError:
            continue  # nothing eligible (or an invalid combination): the binding stays
        assert decision.affinity_key == "ws"
        if bound is not None and bound in eligible(DEFAULT, request):
            assert decision.backend == bound
            assert decision.reasons == ("reused sticky affinity backend",)
        else:
            assert decision.reasons == ("selected backend and bound sticky affinity",)
        bound = decision.backend


@given(requests(profiles=False))
def test_routing_is_a_function_of_the_normalised_request(request: dict[str, Any]) -> None:
    """Spellings, tuples and enum members route exactly like canonical plain values."""
    canonical: dict[str, Any] = {}
    for key, value in request.items():
        if key in ("backend", "last_backend"):
            canonical[key] = value if value in (None, "auto") else DEFAULT.canonical(value)
        elif key in ("preferred_backends", "excluded_backends", "fallback_backends"):
            names = [value] if isinstance(value, str) else list(value)
            canonical[key] = list(dict.fromkeys(DEFAULT.canonical(n) for n in names))
        elif key == "capabilities":
            canonical[key] = list(dict.fromkeys(value))
        elif key == "health":
            health: dict[str, str] = {}
            for spelling, status in value.items():
                name = str(DEFAULT.canonical(spelling))
                health.pop(name, None)
                health[name] = str(status)
            canonical[key] = health
        else:
            canonical[key] = value.value if hasattr(value, "value") else value
    assert engine_outcome(fresh_engine(), (request,)) == engine_outcome(fresh_engine(), (canonical,))
