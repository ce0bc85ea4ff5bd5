"""Edges of the Router's API: argument checks, text that cannot travel, journal reads.

The router must answer a bad argument with the engine's typed error (the engine's side is
in tests/core/test_api_edges.py), and no argument may reach an actor that would crash it.
"""

from __future__ import annotations

from typing import Any

import pytest

from beamrouting import InvalidPolicyProfile, InvalidRouteRequest, Router, RoutingEngine, RoutingError
from tests._edges import BAD_JOURNAL_QUERIES, LONE_SURROGATE, engine_error


async def router_error(call: Any) -> tuple[str, Any]:
    with pytest.raises(RoutingError) as info:
        await call()
    return info.value.code, info.value.detail


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
