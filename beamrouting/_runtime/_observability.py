"""Logging and OpenTelemetry hooks.

Everything is logged under the ``beamrouting`` logger: decisions at DEBUG, actor restarts
at WARNING and a supervisor giving up at ERROR. When ``opentelemetry-api`` is installed
(the ``otel`` extra), ``Router.select_backend`` also opens a span
(``beamrouting.select_backend``) and three counters are kept: ``beamrouting.decisions``
(by backend and policy), ``beamrouting.errors`` (by code) and ``beamrouting.restarts`` (by
actor). They report to whatever tracer and meter providers the application configures
(configure them before starting a router: it checks when it starts).

Whether OpenTelemetry is there is checked once, at import (:data:`OTEL_ENABLED`). A router
decides when it starts whether to wrap its ``select_backend`` (:func:`observed`): only when
OpenTelemetry is installed and configured, or DEBUG logging is on. Otherwise the hot path
is untouched and observability costs nothing per call.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

from .._core._errors import RoutingError
from .._core._types import RouteDecision

__all__ = [
    "OTEL_ENABLED",
    "active",
    "actor_restarted",
    "log_decision",
    "logger",
    "observed",
    "otel_configured",
    "supervisor_gave_up",
]

logger: Final = logging.getLogger("beamrouting")
"""The library's logger; a :class:`logging.NullHandler` keeps it quiet until configured."""
logger.addHandler(logging.NullHandler())

_DEBUG: Final = logging.DEBUG

_T = TypeVar("_T")
_P = ParamSpec("_P")

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
    """A routing error's code; ``actor_crashed``, ``call_timeout``, ... for the others."""
    if isinstance(exc, RoutingError):
        return exc.code
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def observed(select: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[_T]]:
    """Wrap a router's ``select_backend``: each call in a span, counted, and logged at DEBUG.

    A router installs the wrapper when it starts, and only when :func:`active` says so;
    otherwise its ``select_backend`` runs as it is, with no observability cost at all. The
    span is started, not made current: nothing nests under it, which keeps the cost with a
    no-op provider to a fraction of a microsecond.
    """

    @functools.wraps(select)
    async def select_backend(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        if not OTEL_ENABLED:
            result = await select(*args, **kwargs)
            if isinstance(result, RouteDecision) and logger.isEnabledFor(_DEBUG):
                log_decision(result)
            return result
        span = _tracer.start_span("beamrouting.select_backend")
        try:
            result = await select(*args, **kwargs)
        except Exception as exc:
            code = _error_code(exc)
            _errors.add(1, {"code": code})
            if span.is_recording():
                span.set_attribute("beamrouting.error.code", code)
                span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR, str(exc)))
            span.end()
            raise
        except BaseException:  # cancelled: not an error of the call
            span.end()
            raise
        if isinstance(result, RouteDecision):
            _decisions.add(1, {"backend": result.backend, "policy": result.policy.value})
            if span.is_recording():
                span.set_attribute("beamrouting.backend", result.backend)
                span.set_attribute("beamrouting.policy", result.policy.value)
                span.set_attribute("beamrouting.candidates", list(result.candidates))
            if logger.isEnabledFor(_DEBUG):
                log_decision(result)
        span.end()
        return result

    return select_backend


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
    """Whether a starting router should install :func:`observed`.

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
