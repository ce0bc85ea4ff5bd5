"""Where a router is in its life, and a snapshot of its counters."""

from __future__ import annotations

import enum

import msgspec

__all__ = ["RouterState", "RouterStatistics"]


class RouterState(enum.StrEnum):
    """Where a :class:`Router` is in its life."""

    NEW = "new"
    """Created, not entered yet."""
    STARTING = "starting"
    """Entering: the store and the actors are starting."""
    RUNNING = "running"
    """Serving calls (inside ``async with``)."""
    CLOSED = "closed"
    """Left (or failed to start); calls raise :class:`beamrouting.RouterClosed`."""
    UNAVAILABLE = "unavailable"
    """The supervisor gave up; calls raise :class:`beamrouting.RouterUnavailable`."""


class RouterStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a router's counters (:meth:`Router.statistics`)."""

    state: RouterState
    """Where the router is in its life."""
    calls: int
    """Calls made to the router's API."""
    errors: dict[str, int]
    """Failed calls by error ``code`` (a routing error's, or ``actor_crashed``,
    ``call_timeout``, ``router_closed``, ``router_unavailable``, ``store_unavailable``)."""
    mailbox_depths: dict[str, int]
    """Messages waiting per actor (``routing_table``, ``session_registry``), callers blocked
    on a full mailbox included."""
    mailbox_size: int
    """The bound of each mailbox."""
    restarts: dict[str, int]
    """How many times the supervisor restarted each actor."""
