"""Edges of the engine's API: argument checks, text that cannot travel, journal reads.

The router must answer the same bad arguments with the same typed errors
(tests/runtime/test_api_edges.py).
"""

from __future__ import annotations

from typing import Any

import pytest

import beamrouting._core._journal as journal_module
from beamrouting import InvalidPolicyProfile, InvalidRouteRequest, RoutingEngine
from tests._edges import BAD_JOURNAL_QUERIES, LONE_SURROGATE, engine_error


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"clock": 5}, TypeError),
        ({"max_counters": True}, TypeError),
        ({"max_bindings": 1.5}, TypeError),
        ({"max_counters": 0}, ValueError),
        ({"binding_ttl": 0}, ValueError),
        ({"binding_ttl": "10"}, TypeError),
        ({"binding_ttl": float("nan")}, ValueError),
        ({"journal_size": 1.5}, TypeError),
        ({"journal_size": -1}, ValueError),
        ({"catalog": "claude"}, TypeError),
    ],
)
def test_engine_rejects_bad_options_at_construction(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        RoutingEngine(**options)


def test_engine_rejects_lone_surrogates_with_typed_errors() -> None:
    engine = RoutingEngine()
    assert engine_error(
        lambda: engine.select_backend({"policy": "sticky", "affinity_key": LONE_SURROGATE})
    ) == (
        "invalid_affinity_key",
        LONE_SURROGATE,
    )
    assert engine_error(lambda: engine.select_backend(LONE_SURROGATE, {}))[0] == "invalid_affinity_key"
    assert engine_error(lambda: engine.select_backend({"policy_profile_id": LONE_SURROGATE})) == (
        "invalid_route_request",
        "policy_profile_id",
    )
    with pytest.raises(InvalidPolicyProfile):
        engine.put_policy_profile(LONE_SURROGATE, {})
    with pytest.raises(InvalidPolicyProfile):
        engine.put_policy_profile("p", {"rules": [{"reason": LONE_SURROGATE}]})
    with pytest.raises(InvalidRouteRequest):
        engine.journal(event_type=LONE_SURROGATE)
    assert engine.select_backend({"policy": "sticky", "affinity_key": "ok"}).backend == "claude"


@pytest.mark.parametrize(("query", "detail"), BAD_JOURNAL_QUERIES)
def test_engine_rejects_bad_journal_queries(query: dict[str, Any], detail: str) -> None:
    assert engine_error(lambda: RoutingEngine().journal(**query)) == ("invalid_route_request", detail)


def test_a_small_limit_renders_only_the_newest_records(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = RoutingEngine(journal_size=1_000)
    for _ in range(400):
        engine.select_backend({"policy": "round_robin"})
    rendered = []
    render = journal_module.render_events

    def counting(base: int, record: Any) -> Any:
        rendered.append(record)
        return render(base, record)

    monkeypatch.setattr(journal_module, "render_events", counting)
    [newest] = engine.journal(limit=1)
    assert newest.event_type == "audit" and newest.sequence == 800
    assert len(rendered) == 1
    assert [e.sequence for e in engine.journal("routing_selected", limit=2)] == [797, 799]


def test_journal_size_bounds_what_is_read_whatever_the_filter() -> None:
    engine = RoutingEngine(journal_size=3)
    for _ in range(3):
        engine.select_backend({"policy": "round_robin"})
    assert [e.sequence for e in engine.journal()] == [4, 5, 6]
    assert [e.sequence for e in engine.journal("routing_selected")] == [5]
    assert [e.sequence for e in engine.journal(limit=0)] == []
