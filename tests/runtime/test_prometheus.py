"""Metrics for Prometheus: what a scrape of a :class:`RouterCollector` shows.

Selections are counted by backend and policy, failed calls by error code, restarts by
actor; the backend families show the states of the last refresh (status, live sessions,
limits). Scrapes run in another thread without touching the router's actors.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from beamrouting import ActorCrashed, NoBackendAvailable, PolicyDenied, Router
from beamrouting.prometheus import RouterCollector
from beamrouting.testing import crash_actor

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Every sample of the registry's exposition text: ``(name, sorted labels) -> value``."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def registered(router: Router, **options: str) -> tuple[RouterCollector, CollectorRegistry]:
    registry = CollectorRegistry()
    collector = RouterCollector(router, **options)
    registry.register(collector)
    return collector, registry


def names(samples: Samples) -> Iterator[str]:
    return (name for name, _ in samples)


async def test_selections_are_counted_by_backend_and_policy() -> None:
    async with Router() as router:
        _, registry = registered(router)
        for _ in range(3):
            await router.select_backend({"policy": "round_robin"})
        await router.select_backend({"policy": "preferred_then_fallback", "preferred_backends": ["codex"]})
        samples = scrape(registry)
    assert value(samples, "beamrouting_decisions_total", backend="claude", policy="round_robin") == 1
    assert value(samples, "beamrouting_decisions_total", backend="copilot", policy="round_robin") == 1
    assert value(samples, "beamrouting_decisions_total", backend="codex", policy="round_robin") == 1
    assert (
        value(samples, "beamrouting_decisions_total", backend="codex", policy="preferred_then_fallback") == 1
    )
    assert value(samples, "beamrouting_calls_total") == 4


async def test_sessions_and_cached_requests_are_counted_too() -> None:
    async with Router() as router:
        _, registry = registered(router)
        for _ in range(5):  # the same request: the router's cached path
            await router.select_backend({"policy": "round_robin"})
        async with router.session({"policy": "preferred_then_fallback", "preferred_backends": ["gemini"]}):
            pass
        samples = scrape(registry)
    counted = sum(v for (name, _), v in samples.items() if name == "beamrouting_decisions_total")
    assert counted == 6
    assert (
        value(samples, "beamrouting_decisions_total", backend="gemini", policy="preferred_then_fallback") == 1
    )


async def test_errors_are_counted_by_code() -> None:
    async with Router() as router:
        _, registry = registered(router)
        for _ in range(2):
            with pytest.raises(PolicyDenied):
                await router.select_backend({"policy_profile_id": "no-such-profile"})
        samples = scrape(registry)
    assert value(samples, "beamrouting_errors_total", code=PolicyDenied.code) == 2
    assert sum(v for (name, _), v in samples.items() if name == "beamrouting_decisions_total") == 0


async def test_backend_states_show_after_a_refresh() -> None:
    async with Router(limits={"claude": 1}) as router:
        collector, registry = registered(router)
        assert value(scrape(registry), "beamrouting_live_sessions", backend="claude") is None  # not refreshed
        await router.report("codex", "quota", retry_after=60)
        async with router.session({"policy": "preferred_then_fallback", "preferred_backends": ["claude"]}):
            await collector.refresh()
            samples = scrape(registry)
    assert value(samples, "beamrouting_backend_status", backend="codex", status="cooling") == 1
    assert value(samples, "beamrouting_backend_status", backend="codex", status="healthy") == 0
    assert value(samples, "beamrouting_backend_status", backend="claude", status="healthy") == 1
    assert value(samples, "beamrouting_live_sessions", backend="claude") == 1
    assert value(samples, "beamrouting_live_sessions", backend="gemini") == 0
    assert value(samples, "beamrouting_session_limit", backend="claude") == 1
    assert value(samples, "beamrouting_session_limit", backend="gemini") is None  # unlimited


async def test_refreshing_keeps_states_fresh_and_stops_with_its_block() -> None:
    async with Router() as router:
        collector, registry = registered(router)
        async with collector.refreshing(every=0.01):
            await router.report("gemini", "quota", retry_after=60)
            with anyio.fail_after(5):
                while (
                    value(scrape(registry), "beamrouting_backend_status", backend="gemini", status="cooling")
                    != 1
                ):
                    await anyio.sleep(0.01)
        await router.restore("gemini")
        await anyio.sleep(0.05)  # the loop has ended: nothing refreshes any more
        samples = scrape(registry)
    assert value(samples, "beamrouting_backend_status", backend="gemini", status="cooling") == 1


async def test_restarts_and_mailbox_depths_are_exported() -> None:
    async with Router() as router:
        _, registry = registered(router)
        crash_actor(router, "routing_table")
        with pytest.raises(ActorCrashed):
            await router.select_backend({"policy": "round_robin"})
        await router.select_backend({"policy": "round_robin"})
        samples = scrape(registry)
    assert value(samples, "beamrouting_restarts_total", actor="routing_table") == 1
    assert value(samples, "beamrouting_errors_total", code=ActorCrashed.code) == 1
    assert value(samples, "beamrouting_mailbox_depth", actor="routing_table") == 0
    assert value(samples, "beamrouting_mailbox_depth", actor="session_registry") == 0


async def test_a_scrape_from_another_thread_never_calls_the_actors() -> None:
    async with Router() as router:
        _, registry = registered(router)
        await router.select_backend({"policy": "round_robin"})
        text = await anyio.to_thread.run_sync(generate_latest, registry)
    assert b"beamrouting_decisions_total" in text


async def test_the_namespace_prefixes_every_name() -> None:
    async with Router() as router:
        _, registry = registered(router, namespace="orchestrator_routing")
        await router.select_backend({"policy": "round_robin"})
        samples = scrape(registry)
    assert all(name.startswith("orchestrator_routing_") for name in names(samples))
    assert value(samples, "orchestrator_routing_calls_total") == 1


async def test_a_collector_made_before_the_router_starts_observes_it() -> None:
    router = Router()
    collector, registry = registered(router)
    async with router:
        await router.select_backend({"policy": "round_robin"})
        with pytest.raises(NoBackendAvailable):
            await router.select_backend(
                {
                    "policy": "round_robin",
                    "excluded_backends": ["claude", "codex", "gemini", "opencode", "copilot"],
                }
            )
    samples = scrape(registry)
    assert sum(v for (name, _), v in samples.items() if name == "beamrouting_decisions_total") == 1
    assert value(samples, "beamrouting_errors_total", code=NoBackendAvailable.code) == 1
    assert collector is not None


@pytest.mark.parametrize(
    ("args", "options", "error"),
    [
        (("not a router",), {}, TypeError),
        ((None,), {}, TypeError),
        ((), {"namespace": ""}, ValueError),
        ((), {"namespace": 7}, TypeError),
        ((), {"namespace": "has-dashes"}, ValueError),
        ((), {"namespace": "9starts_with_a_digit"}, ValueError),
    ],
)
def test_bad_arguments_are_refused(
    args: tuple[object, ...], options: dict[str, object], error: type[Exception]
) -> None:
    call_args = args if args else (Router(),)
    with pytest.raises(error):
        RouterCollector(*call_args, **options)  # type: ignore[arg-type]


async def test_refreshing_waits_for_the_router_and_outlives_it_quietly() -> None:
    router = Router()
    collector, registry = registered(router)
    async with collector.refreshing(every=0.01):
        await anyio.sleep(0.03)  # refreshes before the router starts are skipped
        async with router:
            await router.report("claude", "quota", retry_after=60)
            with anyio.fail_after(5):
                while (
                    value(scrape(registry), "beamrouting_backend_status", backend="claude", status="cooling")
                    != 1
                ):
                    await anyio.sleep(0.01)
        await anyio.sleep(0.03)  # refreshes now find the router closed: the loop ends quietly
    assert value(scrape(registry), "beamrouting_backend_status", backend="claude", status="cooling") == 1


async def test_a_bad_refresh_interval_is_refused() -> None:
    async with Router() as router:
        collector = RouterCollector(router)
        with pytest.raises(ValueError, match="every"):
            async with collector.refreshing(every=-1):
                pass
