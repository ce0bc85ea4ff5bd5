"""Each demo session has exactly one outcome, wherever a crash lands."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import pytest

from beamrouting import Catalog, RouteDecision, Router
from beamrouting._cli._demo._run import _session
from beamrouting._cli._demo._setup import DemoConfig, _Plan
from beamrouting._cli._demo._state import _Run
from beamrouting.testing import crash_actor

pytestmark = pytest.mark.anyio


class _CrashBefore:
    """A router that arms a crash of ``actor`` just before the first call named ``method``."""

    def __init__(
        self, router: Router, method: str, actor: Literal["routing_table", "session_registry"]
    ) -> None:
        self._router = router
        self._method = method
        self._actor = actor
        self.armed = False

    def _arm(self, method: str) -> None:
        if method == self._method and not self.armed:
            self.armed = True
            crash_actor(self._router, self._actor)

    @asynccontextmanager
    async def session(self, request: Any) -> AsyncIterator[Any]:
        async with self._router.session(request) as session:
            yield session
            self._arm("leave_session")  # the next registry message is the unregister

    async def select_backend(self, *args: Any) -> RouteDecision:
        self._arm("select_backend")
        return await self._router.select_backend(*args)


def _one_failing_start() -> _Run:
    plan = _Plan("round_robin", {"policy": "round_robin"}, None, start_fails=True)
    run = _Run(DemoConfig(sessions=1), Catalog.default(), [plan])
    run.marks = dict.fromkeys(run.marks, -1)  # no scripted events for a single session
    return run


async def test_a_crash_on_the_failover_call_retries_that_call_only() -> None:
    run = _one_failing_start()
    async with Router() as router:
        proxy = _CrashBefore(router, "select_backend", "routing_table")
        await _session(proxy, run, 0)
        assert proxy.armed
        assert (await router.statistics()).restarts["routing_table"] == 1
        assert await router.sessions() == []
    assert (run.routed, run.failed, run.failovers) == (1, 0, 1)
    assert run.errors == {"actor_crashed": 1}
    assert sum(run.decisions.values()) == 2  # the start and its one failover


async def test_a_registry_crash_while_leaving_is_absorbed_and_the_session_unregistered() -> None:
    run = _one_failing_start()
    async with Router() as router:
        proxy = _CrashBefore(router, "leave_session", "session_registry")
        await _session(proxy, run, 0)
        assert proxy.armed
        assert (await router.statistics()).restarts["session_registry"] == 1
        assert await router.sessions() == []
    assert (run.routed, run.failed, run.failovers) == (1, 0, 1)
    assert not run.errors


def test_the_probe_check_allows_a_slot_again_once_it_freed_itself() -> None:
    from beamrouting import HealthPolicy
    from beamrouting._cli._demo._checks import _ejection_check

    policy = HealthPolicy(base_ejection=30.0, probe_sessions=1)
    transitions = [
        (100.0, "gemini", "ejected", 130.0, "ejected after 5 consecutive failures"),
        (130.0, "gemini", "probing", None, "probing: 0 of 1 slots in use"),
        (200.0, "gemini", "healthy", None, None),
    ]
    # 70 s of probing: the slot may be taken at 131, again from 161 and from 191.
    three = [(131.0, 131.1, "gemini"), (162.0, 162.1, "gemini"), (192.0, 192.1, "gemini")]
    assert _ejection_check(transitions, three, "gemini", policy)[0]
    ok, detail = _ejection_check(transitions, [*three, (195.0, 195.1, "gemini")], "gemini", policy)
    assert not ok and "4 sessions routed to gemini in 70.0 s of probing (at most 3" in detail
    ok, detail = _ejection_check(transitions, [(110.0, 110.1, "gemini")], "gemini", policy)
    assert not ok and "while it was ejected" in detail
