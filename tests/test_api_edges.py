"""Edges of the public API: argument checks, text that cannot travel, journal reads.

The engine and the router must answer the same bad argument with the same typed error, and
no argument may reach an actor that would crash it.
"""

from __future__ import annotations

from typing import Any

import pytest

import beamrouting._core._journal as journal_module
from beamrouting import (
    InvalidPolicyProfile,
    InvalidRouteRequest,
    Router,
    RoutingEngine,
    RoutingError,
)

LONE_SURROGATE = "\ud800"  # what json.loads('"\\ud800"') gives: not encodable as UTF-8 or msgpack


def engine_error(call: Any) -> tuple[str, Any]:
    with pytest.raises(RoutingError) as info:
        call()
    return info.value.code, info.value.detail


async def router_error(call: Any) -> tuple[str, Any]:
    with pytest.raises(RoutingError) as info:
        await call()
    return info.value.code, info.value.detail


# --------------------------------------------------------------------------- constructors


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


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"restart_period": "5"}, TypeError),
        ({"restart_period": 0}, ValueError),
        ({"call_timeout": None}, TypeError),
        ({"mailbox_size": 1.5}, TypeError),
        ({"store": "redis://localhost"}, TypeError),
        ({"binding_ttl": 10, "clock": 5}, TypeError),  # caught here, not as crashes at run time
        ({"catalog": "claude"}, TypeError),
    ],
)
def test_router_rejects_bad_options_at_construction(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Router(**options)


# --------------------------------------------------------------------------- text that cannot travel


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


@pytest.mark.anyio
async def test_router_gives_the_engines_errors_for_lone_surrogates() -> None:
    engine = RoutingEngine()
    async with Router() as router:
        request = {"policy": "sticky", "affinity_key": LONE_SURROGATE}
        assert await router_error(lambda: router.select_backend(request)) == engine_error(
            lambda: engine.select_backend(request)
        )
        assert await router_error(lambda: router.select_backend(LONE_SURROGATE, {})) == engine_error(
            lambda: engine.select_backend(LONE_SURROGATE, {})
        )
        with pytest.raises(InvalidPolicyProfile):
            await router.put_policy_profile(LONE_SURROGATE, {})
        with pytest.raises(InvalidPolicyProfile):
            await router.put_policy_profile("p", {"rules": [{"reason": LONE_SURROGATE}]})
        with pytest.raises(InvalidRouteRequest):
            await router.journal(event_type=LONE_SURROGATE)
        with pytest.raises(InvalidRouteRequest):
            await router.register_session(LONE_SURROGATE, "codex")
        with pytest.raises(InvalidRouteRequest):
            await router.register_session("s1", "codex", {"note": LONE_SURROGATE})
        statistics = await router.statistics()
        assert statistics.restarts == {"routing_table": 0, "session_registry": 0}
        assert statistics.errors.get("invalid_affinity_key") == 2


# --------------------------------------------------------------------------- journal reads


BAD_JOURNAL_QUERIES = [
    ({"event_type": 123}, "event_type"),
    ({"limit": 1.5}, "limit"),
    ({"limit": "x"}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": True}, "limit"),
]


@pytest.mark.parametrize(("query", "detail"), BAD_JOURNAL_QUERIES)
def test_engine_rejects_bad_journal_queries(query: dict[str, Any], detail: str) -> None:
    assert engine_error(lambda: RoutingEngine().journal(**query)) == ("invalid_route_request", detail)


@pytest.mark.anyio
@pytest.mark.parametrize(("query", "detail"), BAD_JOURNAL_QUERIES)
async def test_router_rejects_bad_journal_queries_like_the_engine(query: dict[str, Any], detail: str) -> None:
    async with Router() as router:
        assert await router_error(lambda: router.journal(**query)) == ("invalid_route_request", detail)


@pytest.mark.anyio
async def test_a_huge_limit_reads_the_whole_journal() -> None:
    async with Router() as router:
        await router.select_backend({"policy": "round_robin"})
        assert [e.event_type for e in await router.journal(limit=2**70)] == ["routing_selected", "audit"]


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


# --------------------------------------------------------------------------- profile ids and sessions


@pytest.mark.anyio
async def test_deleting_a_profile_by_a_non_string_id_is_the_same_error_everywhere() -> None:
    engine = RoutingEngine()
    engine.put_policy_profile("p", {})
    with pytest.raises(InvalidPolicyProfile):
        engine.delete_policy_profile([])  # type: ignore[arg-type]
    async with Router() as router:
        with pytest.raises(InvalidPolicyProfile):
            await router.delete_policy_profile([])  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_router_session_routes_as_its_handle() -> None:
    async with Router() as router, router.session({"policy": "round_robin"}) as session:
        retry = await router.select_backend(session, {"policy": "failover"})
        assert retry.backend != session.backend
        assert retry == await router.select_backend(session.handle, {"policy": "failover"})
