"""Observability: live journal subscriptions, logging and OpenTelemetry.

Subscriptions deliver journal events in order, never slow routing (a full buffer drops the
oldest events and says how many), and end when the router closes. Decisions are logged at
DEBUG, restarts at WARNING and a supervisor giving up at ERROR. With OpenTelemetry
configured, every ``select_backend`` is a span and decisions, errors and restarts are
counted; without it the router's hot path is untouched.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

import beamrouting._runtime._observability as obs
from beamrouting import (
    ActorCrashed,
    JournalEvent,
    MemoryStore,
    PolicyDenied,
    Router,
    RouterUnavailable,
    RoutingEngine,
    Subscription,
    SubscriptionGap,
)
from beamrouting.testing import crash_actor

pytestmark = pytest.mark.anyio

ROUND_ROBIN = {"policy": "round_robin"}


async def take(events: Subscription, n: int) -> list[JournalEvent | SubscriptionGap]:
    """The next ``n`` items (they are already buffered, so this never waits long)."""
    with anyio.fail_after(5):
        return [await events.__anext__() for _ in range(n)]


def only_events(items: list[JournalEvent | SubscriptionGap]) -> list[JournalEvent]:
    assert all(isinstance(item, JournalEvent) for item in items), items
    return [item for item in items if isinstance(item, JournalEvent)]


# --------------------------------------------------------------------------- subscriptions


async def test_subscriber_receives_events_in_order() -> None:
    async with Router() as router, router.subscribe() as events:
        first = await router.select_backend(ROUND_ROBIN)
        second = await router.select_backend({"policy": "sticky", "affinity_key": "workspace-1"})
        with pytest.raises(PolicyDenied):
            await router.select_backend({"policy_profile_id": "no-such-profile"})
        got = only_events(await take(events, 5))
        journal = await router.journal()
    assert [e.event_type for e in got] == ["routing_selected", "audit", "routing_selected", "audit", "audit"]
    sequences = [e.sequence for e in got]
    assert sequences == list(range(sequences[0], sequences[0] + 5))
    assert got[0].payload["decision"] == first.to_dict()
    assert got[2].payload["decision"] == second.to_dict()
    assert got[4].payload["decision"] == "deny"
    assert got[4].payload["reason"] == "unknown policy profile"
    # The same events the journal keeps.
    assert [e.to_dict() for e in got] == [e.to_dict() for e in journal[-5:]]
    assert events.missed == 0


async def test_subscription_sees_only_what_follows_it() -> None:
    async with Router() as router:
        await router.select_backend(ROUND_ROBIN)
        async with router.subscribe() as events:
            decision = await router.select_backend({"backend": "gemini"})
            got = only_events(await take(events, 2))
            assert events.buffered == 0
    assert got[0].payload["decision"]["backend"] == decision.backend == "gemini"
    assert got[0].sequence == 3


async def test_subscription_event_type_filter() -> None:
    async with Router() as router, router.subscribe(event_type="audit") as audits:
        for _ in range(3):
            await router.select_backend(ROUND_ROBIN)
        got = only_events(await take(audits, 3))
    assert [e.event_type for e in got] == ["audit"] * 3
    assert [e.payload["backend"] for e in got] == ["claude", "codex", "copilot"]


async def test_slow_subscriber_does_not_block_routing() -> None:
    calls = 400
    got_first = anyio.Event()
    released = anyio.Event()
    received: list[JournalEvent | SubscriptionGap] = []
    async with Router() as router:
        subscription = router.subscribe(maxlen=16)

        async def slow_subscriber() -> None:
            async for item in subscription:
                received.append(item)
                got_first.set()
                await released.wait()  # stalls on its first item until routing is done

        async def caller(n: int) -> None:
            for _ in range(n):
                await router.select_backend(ROUND_ROBIN)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow_subscriber)
                await router.select_backend(ROUND_ROBIN)
                await got_first.wait()
                async with anyio.create_task_group() as callers:
                    for _ in range(20):
                        callers.start_soon(caller, calls // 20)
                # Every call completed while the subscriber was stuck on its first event.
                assert len(received) == 1
                assert subscription.buffered <= 16
                released.set()
                subscription.close()
    total = 2 * (calls + 1)
    gaps = [item for item in received if isinstance(item, SubscriptionGap)]
    events = [item for item in received if isinstance(item, JournalEvent)]
    assert len(gaps) == 1
    assert gaps[0].missed == subscription.missed > 0
    assert len(events) + subscription.missed == total
    assert [e.sequence for e in events[:2]] == [1, 2]
    assert received[2] == gaps[0]  # the gap stands where the events were lost
    after = [e.sequence for e in events[2:]]
    assert after == list(range(total - len(after) + 1, total + 1))
    assert len(after) >= 8


async def test_subscription_ends_when_router_closes() -> None:
    async with Router() as router:
        events = router.subscribe()
        await router.select_backend(ROUND_ROBIN)
    assert events.closed
    with anyio.fail_after(5):
        drained = [item async for item in events]
    assert [e.event_type for e in only_events(drained)] == ["routing_selected", "audit"]


async def test_subscribers_are_independent() -> None:
    async with Router() as router, router.subscribe(maxlen=2) as small, router.subscribe() as large:
        for _ in range(3):
            await router.select_backend(ROUND_ROBIN)
        assert len(only_events(await take(large, 6))) == 6
        got = await take(small, 3)
    assert got[0] == SubscriptionGap(missed=4)
    assert [e.payload["decision"]["backend"] for e in only_events(got[1:2])] == ["copilot"]


async def test_subscription_survives_actor_restart() -> None:
    async with Router() as router, router.subscribe() as events:
        crash_actor(router, "routing_table")
        with pytest.raises(ActorCrashed):
            await router.select_backend(ROUND_ROBIN)
        await router.select_backend(ROUND_ROBIN)
        got = only_events(await take(events, 2))
    assert got[0].payload["decision"]["backend"] == "claude"


def test_engine_subscription_without_event_loop() -> None:
    engine = RoutingEngine()
    subscription = Subscription(engine.journal_ring, maxlen=3)
    for _ in range(3):
        engine.select_backend(ROUND_ROBIN)
    assert subscription.get_nowait() == SubscriptionGap(missed=4)
    rest = [subscription.get_nowait(), subscription.get_nowait()]
    assert [e.event_type for e in only_events(rest)] == ["routing_selected", "audit"]  # type: ignore[arg-type]
    assert subscription.get_nowait() is None
    subscription.close()
    engine.select_backend(ROUND_ROBIN)
    assert subscription.get_nowait() is None


def test_abandoned_subscription_stops_listening() -> None:
    engine = RoutingEngine()
    ref = weakref.ref(Subscription(engine.journal_ring))
    gc.collect()
    assert ref() is None
    engine.select_backend(ROUND_ROBIN)  # the dead listener removes itself
    assert engine.select_backend(ROUND_ROBIN).backend == "codex"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"maxlen": 1}, ValueError),
        ({"maxlen": True}, TypeError),
        ({"maxlen": "10"}, TypeError),
        ({"event_type": "decision"}, ValueError),
        ({"event_type": 3}, TypeError),
    ],
)
def test_subscription_rejects_bad_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Subscription(RoutingEngine().journal_ring, **kwargs)


def test_subscribe_follows_the_store_s_journal_source() -> None:
    from beamrouting._runtime._subscription import journal_source

    store = MemoryStore()
    assert journal_source(store) is store.journal_source() is store.engine.journal_ring

    class NoJournal(MemoryStore):
        """A store whose journal cannot be followed live."""

        def journal_source(self) -> None:  # type: ignore[override]
            return None

    with pytest.raises(TypeError, match="NoJournal keeps no journal that can be followed live"):
        journal_source(NoJournal())
    with pytest.raises(TypeError, match="no journal that can be followed live"):
        Router(store=NoJournal()).subscribe()


# --------------------------------------------------------------------------- logging


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="beamrouting")
    yield caplog


async def test_decisions_logged_at_debug(debug_log: pytest.LogCaptureFixture) -> None:
    async with Router() as router:
        await router.select_backend(ROUND_ROBIN)
        await router.select_backend({"backend": "opencode_client"})
    messages = [
        r.getMessage() for r in debug_log.records if r.levelno == logging.DEBUG and r.name == "beamrouting"
    ]
    assert any(m.startswith("routed to claude (policy round_robin)") for m in messages), messages
    assert any(m.startswith("routed to opencode (policy explicit)") for m in messages), messages


async def test_restart_logged_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="beamrouting")
    async with Router() as router:
        crash_actor(router, "session_registry")
        with pytest.raises(ActorCrashed):
            await router.sessions()
        assert await router.sessions() == []  # served by the restarted actor
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "actor session_registry crashed" in warnings[0].getMessage()
    assert "restart 1" in warnings[0].getMessage()


async def test_give_up_logged_at_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="beamrouting")
    with pytest.raises(RouterUnavailable):
        async with Router(max_restarts=0) as router:
            crash_actor(router, "routing_table")
            with pytest.raises(ActorCrashed):
                await router.select_backend(ROUND_ROBIN)
            await anyio.sleep_forever()  # the supervisor gives up and cancels this block
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "supervisor gave up" in errors[0].getMessage()
    assert "routing_table" in errors[0].getMessage()


# --------------------------------------------------------------------------- OpenTelemetry


class Telemetry:
    def __init__(self, exporter: Any, reader: Any) -> None:
        self.exporter = exporter
        self.reader = reader

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], int]]:
        data = self.reader.get_metrics_data()
        out = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        out += [(dict(p.attributes), p.value) for p in metric.data.data_points]
        return out


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Telemetry:
    """SDK providers wired into beamrouting's instruments for one test (no global provider is set)."""
    if not obs.OTEL_ENABLED:
        pytest.skip("opentelemetry-api is not installed")
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("beamrouting")
    monkeypatch.setattr(obs, "_tracer", provider.get_tracer("beamrouting"))
    monkeypatch.setattr(obs, "_decisions", meter.create_counter("beamrouting.decisions"))
    monkeypatch.setattr(obs, "_errors", meter.create_counter("beamrouting.errors"))
    monkeypatch.setattr(obs, "_restarts", meter.create_counter("beamrouting.restarts"))
    monkeypatch.setattr(obs, "otel_configured", lambda: True)
    return Telemetry(exporter, reader)


async def test_otel_spans_and_counters(telemetry: Telemetry) -> None:
    async with Router() as router:
        await router.select_backend(ROUND_ROBIN)
        await router.select_backend(ROUND_ROBIN)
        with pytest.raises(PolicyDenied):
            await router.select_backend({"policy_profile_id": "missing"})
        crash_actor(router, "routing_table")
        with pytest.raises(ActorCrashed):
            await router.select_backend(ROUND_ROBIN)
        await router.select_backend(ROUND_ROBIN)
    spans = telemetry.spans()
    assert [s.name for s in spans] == ["beamrouting.select_backend"] * 5
    assert spans[0].attributes["beamrouting.backend"] == "claude"
    assert spans[1].attributes["beamrouting.policy"] == "round_robin"
    assert spans[2].attributes["beamrouting.error.code"] == "policy_denied"
    assert not spans[2].status.is_ok
    decisions = telemetry.points("beamrouting.decisions")
    assert sorted(v for _, v in decisions) == [1, 1, 1]
    assert {a["backend"] for a, _ in decisions} == {"claude", "codex", "copilot"}
    errors = dict((a["code"], v) for a, v in telemetry.points("beamrouting.errors"))
    assert errors == {"policy_denied": 1, "actor_crashed": 1}
    assert telemetry.points("beamrouting.restarts") == [({"actor": "routing_table"}, 1)]


async def test_session_routes_are_spans_too(telemetry: Telemetry) -> None:
    async with Router() as router, router.session({"policy": "sticky", "affinity_key": "w"}) as session:
        assert session.backend == "claude"
    assert [s.attributes["beamrouting.backend"] for s in telemetry.spans()] == ["claude"]


async def test_hot_path_untouched_without_observers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="beamrouting")
    monkeypatch.setattr(obs, "otel_configured", lambda: False)
    async with Router() as router:
        assert "select_backend" not in vars(router)  # the class's own method, not a wrapper
        await router.select_backend(ROUND_ROBIN)


def test_without_opentelemetry_nothing_is_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh copy of the module, imported with opentelemetry missing, disables itself."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    spec = importlib.util.find_spec("beamrouting._runtime._observability")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OTEL_ENABLED is False
    assert module.otel_configured() is False
    logger = logging.getLogger("beamrouting")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert module.active() is False
    finally:
        logger.setLevel(level)
