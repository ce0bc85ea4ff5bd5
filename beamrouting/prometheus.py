"""Metrics for Prometheus: a collector for ``prometheus_client`` (the ``prometheus`` extra).

::

    from prometheus_client import REGISTRY, start_http_server
    from beamrouting.prometheus import RouterCollector

    async with Router() as router:
        collector = RouterCollector(router)
        REGISTRY.register(collector)
        start_http_server(9464)
        async with collector.refreshing(every=5.0):  # keeps backend states fresh
            ...

Metric families (all prefixed with ``namespace``, ``beamrouting`` by default):

==================================  =======  ==================================================
name                                type     labels
==================================  =======  ==================================================
``<ns>_decisions_total``            counter  ``backend``, ``policy``: successful selections
``<ns>_calls_total``                counter  calls made to the router's API
``<ns>_errors_total``               counter  ``code``: failed calls by error code
``<ns>_restarts_total``             counter  ``actor``: actor restarts by the supervisor
``<ns>_mailbox_depth``              gauge    ``actor``: messages waiting
``<ns>_backend_status``             gauge    ``backend``, ``status``: 1 for its current status
``<ns>_live_sessions``              gauge    ``backend``: sessions live on it
``<ns>_session_limit``              gauge    ``backend``: its limit (limited backends only)
==================================  =======  ==================================================

Counters count from when the collector was made; the backend families show the states of
the last :meth:`RouterCollector.refresh`. Collecting runs in whatever thread serves the
metrics and never calls into the router's actors.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from ._core._checks import check_seconds, check_text
from ._core._errors import ActorCrashed, CallTimeout, RouterClosed, RouterUnavailable
from ._core._health import BackendState, BackendStatus
from ._core._types import RouteDecision
from ._runtime._router import Router, RouterState

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise ImportError(
        "beamrouting.prometheus needs prometheus_client: pip install 'beamrouting[prometheus]'"
    ) from exc

__all__ = ["RouterCollector"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


class RouterCollector:
    """A ``prometheus_client`` collector for one :class:`beamrouting.Router`.

    ``RouterCollector(router, *, namespace="beamrouting")``: ``router`` is the router to
    report on (started or not); ``namespace`` prefixes every metric name and must itself be
    a valid Prometheus metric name. Register it with a registry
    (``REGISTRY.register(collector)``) and keep its backend states fresh with
    :meth:`refresh` or :meth:`refreshing`. Raises :class:`TypeError` or
    :class:`ValueError` for bad arguments.
    """

    def __init__(self, router: Router, *, namespace: str = "beamrouting") -> None:
        if not isinstance(router, Router):
            raise TypeError(f"router must be a Router, not {type(router).__name__}")
        self._router = router
        self._namespace = check_text("namespace", namespace)
        if not _METRIC_NAME.fullmatch(self._namespace):
            raise ValueError(
                f"namespace must be a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), not {namespace!r}"
            )
        self._decisions: dict[tuple[str, str], int] = {}
        self._states: tuple[BackendState, ...] = ()
        router.observe(self)

    # -- the router's side (cheap: one dict update per decision) --------------------------

    def start(self) -> None:
        """A selection begins (nothing to note)."""

    def succeeded(self, token: Any, decision: RouteDecision) -> None:
        """Count ``decision`` (``token`` is unused)."""
        key = (decision.backend, decision.policy.value)
        self._decisions[key] = self._decisions.get(key, 0) + 1

    def failed(self, token: Any, exc: Exception) -> None:
        """The router counts errors itself (``token`` and ``exc`` are unused)."""

    def cancelled(self, token: Any) -> None:
        """Nothing to count (``token`` is unused)."""

    # -- backend states ---------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read every backend's state from the router (an actor call) for the next scrape."""
        self._states = await self._router.backend_states()

    @asynccontextmanager
    async def refreshing(self, every: float = 5.0) -> AsyncIterator[RouterCollector]:
        """Refresh the backend states every ``every`` seconds while the block runs.

        A refresh that times out, meets a restarting actor or comes before the router has
        started is skipped; refreshing stops (keeping the last states) once the router has
        closed or its supervisor has given up.

        Raises :class:`TypeError` or :class:`ValueError` for a bad ``every``.
        """
        interval = check_seconds("every", every)

        async def loop() -> None:
            while True:
                try:
                    await self.refresh()
                except RouterUnavailable:
                    return  # the supervisor gave up: the last states stay
                except RouterClosed:
                    if self._router.state is RouterState.CLOSED:
                        return  # the router is gone: the last states stay
                    # not started yet: try again next time
                except (CallTimeout, ActorCrashed):
                    pass  # a busy or restarting actor: try again next time
                await anyio.sleep(interval)

        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    # -- prometheus_client's side ------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """Nothing up front: ``prometheus_client`` then collects to learn the names (cheaply)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metric families now (see the module docstring)."""
        ns = self._namespace
        stats = self._router.statistics_now()
        decisions = CounterMetricFamily(
            f"{ns}_decisions", "Successful selections", labels=["backend", "policy"]
        )
        for (backend, policy), count in dict(self._decisions).items():
            decisions.add_metric([backend, policy], count)
        yield decisions
        yield CounterMetricFamily(f"{ns}_calls", "Calls made to the router's API", value=stats.calls)
        errors = CounterMetricFamily(f"{ns}_errors", "Failed calls by error code", labels=["code"])
        for code, count in stats.errors.items():
            errors.add_metric([code], count)
        yield errors
        restarts = CounterMetricFamily(f"{ns}_restarts", "Actor restarts by the supervisor", labels=["actor"])
        depths = GaugeMetricFamily(f"{ns}_mailbox_depth", "Messages waiting per actor", labels=["actor"])
        for actor, count in stats.restarts.items():
            restarts.add_metric([actor], count)
        for actor, depth in stats.mailbox_depths.items():
            depths.add_metric([actor], depth)
        yield restarts
        yield depths
        status = GaugeMetricFamily(
            f"{ns}_backend_status", "1 for each backend's current status", labels=["backend", "status"]
        )
        live = GaugeMetricFamily(f"{ns}_live_sessions", "Sessions live on each backend", labels=["backend"])
        limit = GaugeMetricFamily(f"{ns}_session_limit", "Each limited backend's limit", labels=["backend"])
        for state in self._states:
            for each in BackendStatus:
                status.add_metric([state.backend, each.value], 1.0 if state.status is each else 0.0)
            live.add_metric([state.backend], state.live_sessions)
            if state.limit is not None:
                limit.add_metric([state.backend], state.limit)
        yield status
        yield live
        yield limit
