"""Logging and OpenTelemetry hooks.

Everything is logged under the ``beamrouting`` logger: decisions at DEBUG, actor restarts
at WARNING and a supervisor giving up at ERROR. When ``opentelemetry-api`` is installed
(the ``otel`` extra), ``Router.select_backend`` also opens a span
(``beamrouting.select_backend``) and three counters are kept: ``beamrouting.decisions``
(by backend and policy), ``beamrouting.errors`` (by code) and ``beamrouting.restarts`` (by
actor). They report to whatever tracer and meter providers the application configures
(configure them before starting a router: it checks when it starts).

Whether OpenTelemetry is there is checked once, at import (:data:`OTEL_ENABLED`). A router
decides when it starts whether to observe its selections (:func:`select_observer`): only
when OpenTelemetry is installed and configured, or DEBUG logging is on. Otherwise the hot
path is untouched and observability costs nothing per call.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Final, Protocol

from .._core._errors import BeamRoutingError
from .._core._types import RouteDecision

__all__ = [
    "OTEL_ENABLED",
    "Observers",
    "RouterObserver",
    "SelectObserver",
    "active",
    "actor_restarted",
    "log_decision",
    "logger",
    "otel_configured",
    "select_observer",
    "supervisor_gave_up",
]

logger: Final = logging.getLogger("beamrouting")
"""The library's logger; a :class:`logging.NullHandler` keeps it quiet until configured."""
logger.addHandler(logging.NullHandler())

_DEBUG: Final = logging.DEBUG


try:
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace
except ImportError:  # the ``otel`` extra is not installed
    OTEL_ENABLED: bool = False
    _tracer: Any = None
    _decisions: Any = None
    _errors: Any = None
    _restarts: Any = None
else:
    OTEL_ENABLED = True
    # Proxies: they bind to the providers the application sets up, even later.
    _tracer = _otel_trace.get_tracer("beamrouting")
    _meter = _otel_metrics.get_meter("beamrouting")
    _decisions = _meter.create_counter(
        "beamrouting.decisions", unit="{decision}", description="Successful routing decisions"
    )
    _errors = _meter.create_counter(
        "beamrouting.errors", unit="{error}", description="select_backend calls that raised, by error code"
    )
    _restarts = _meter.create_counter(
        "beamrouting.restarts", unit="{restart}", description="Actor restarts by the supervisor"
    )


def log_decision(decision: RouteDecision) -> None:
    """Log ``decision`` at DEBUG (callers check ``logger.isEnabledFor(DEBUG)`` first)."""
    logger.debug(
        "routed to %s (policy %s): %s; candidates %s",
        decision.backend,
        decision.policy.value,
        "; ".join(decision.reasons),
        ",".join(decision.candidates),
    )


def _error_code(exc: BaseException) -> str:
    """The error's ``code`` (``actor_crashed``, ``policy_denied``, ...), or its class name in snake case."""
    if isinstance(exc, BeamRoutingError):
        return exc.code
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


class SelectObserver:
    """Observes a router's selections: each one a span (with OpenTelemetry), counted, logged at DEBUG.

    A router gets one from :func:`select_observer` when it starts, and only when
    :func:`active` says so; otherwise it has none and its hot path does no observability
    work at all. The span is started, not made current: nothing nests under it, which keeps
    the cost with a no-op provider to a fraction of a microsecond.
    """

    __slots__ = ()

    def start(self) -> Any:
        """Begin observing one call; the returned token goes to the call's ending method."""
        return _tracer.start_span("beamrouting.select_backend") if OTEL_ENABLED else None

    def succeeded(self, span: Any, decision: RouteDecision) -> None:
        """The call returned ``decision``."""
        if span is not None:
            _decisions.add(1, {"backend": decision.backend, "policy": decision.policy.value})
            if span.is_recording():
                span.set_attribute("beamrouting.backend", decision.backend)
                span.set_attribute("beamrouting.policy", decision.policy.value)
                span.set_attribute("beamrouting.candidates", list(decision.candidates))
            span.end()
        if logger.isEnabledFor(_DEBUG):
            log_decision(decision)

    def failed(self, span: Any, exc: Exception) -> None:
        """The call raised ``exc``."""
        if span is None:
            return
        code = _error_code(exc)
        _errors.add(1, {"code": code})
        if span.is_recording():
            span.set_attribute("beamrouting.error.code", code)
            span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR, str(exc)))
        span.end()

    def cancelled(self, span: Any) -> None:
        """The call was cancelled: not an error of the call."""
        if span is not None:
            span.end()


class RouterObserver(Protocol):
    """What :meth:`beamrouting.Router.observe` tells of every ``select_backend`` call (a metrics collector, say).

    Each call gets ``token = observer.start()``, then exactly one of ``succeeded``,
    ``failed`` or ``cancelled`` with that token. The methods run on the caller's task, in
    the router's hot path: keep them short, and never raise.
    """

    def start(self) -> Any:
        """Begin observing one call; return a token (anything) for the call's ending method."""
        ...

    def succeeded(self, token: Any, decision: RouteDecision) -> None:
        """The call with ``token`` returned ``decision``."""
        ...

    def failed(self, token: Any, exc: Exception) -> None:
        """The call with ``token`` raised ``exc`` (a :class:`beamrouting.BeamRoutingError`)."""
        ...

    def cancelled(self, token: Any) -> None:
        """The call with ``token`` was cancelled."""
        ...


class Observers:
    """Several observers as one."""

    __slots__ = ("observers",)

    def __init__(self, observers: tuple[RouterObserver, ...]) -> None:
        self.observers = observers

    def start(self) -> Any:
        """Start each observer."""
        return [observer.start() for observer in self.observers]

    def succeeded(self, token: Any, decision: RouteDecision) -> None:
        """Tell each observer the call succeeded."""
        for observer, each in zip(self.observers, token, strict=True):
            observer.succeeded(each, decision)

    def failed(self, token: Any, exc: Exception) -> None:
        """Tell each observer the call failed."""
        for observer, each in zip(self.observers, token, strict=True):
            observer.failed(each, exc)

    def cancelled(self, token: Any) -> None:
        """Tell each observer the call was cancelled."""
        for observer, each in zip(self.observers, token, strict=True):
            observer.cancelled(each)


def select_observer(extra: tuple[RouterObserver, ...] = ()) -> RouterObserver | None:
    """What observes a starting router's selections: a :class:`SelectObserver` when :func:`active`,
    plus ``extra`` observers (metrics collectors); ``None`` when nothing observes."""
    observers = ((SelectObserver(),) if active() else ()) + extra
    if not observers:
        return None
    return observers[0] if len(observers) == 1 else Observers(observers)


def otel_configured() -> bool:
    """Whether the application has set a tracer or meter provider (not the API's proxy or no-op)."""
    if not OTEL_ENABLED:
        return False
    tracer_provider = _otel_trace.get_tracer_provider()
    if not isinstance(tracer_provider, (_otel_trace.ProxyTracerProvider, _otel_trace.NoOpTracerProvider)):
        return True
    return type(_otel_metrics.get_meter_provider()).__name__ not in (
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
    )


def active() -> bool:
    """Whether a starting router should observe its selections (:func:`select_observer`).

    True when OpenTelemetry is installed (checked once, at import) and the application
    has configured a tracer or meter provider, or when the ``beamrouting`` logger is
    enabled for DEBUG. With neither, spans and counters would go nowhere, so the router's
    hot path stays untouched.
    """
    return logger.isEnabledFor(_DEBUG) or otel_configured()


def actor_restarted(actor: str, exc: BaseException | None, restarts: int) -> None:
    """Report that the supervisor restarted ``actor`` after it crashed with ``exc``."""
    logger.warning(
        "actor %s crashed (%s) and was restarted (restart %d)",
        actor,
        "no exception" if exc is None else f"{type(exc).__name__}: {exc}",
        restarts,
    )
    if OTEL_ENABLED:
        _restarts.add(1, {"actor": actor})


def supervisor_gave_up(actor: str, restarts: int, period: float) -> None:
    """Report that ``actor`` crashed more than ``restarts`` times within ``period`` seconds."""
    logger.error(
        "supervisor gave up: actor %s crashed more than %d times within %g s; the router is unavailable",
        actor,
        restarts,
        period,
    )
