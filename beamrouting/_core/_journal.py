"""The decision journal: a bounded ring of events, recorded cheaply and rendered on read."""

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from ._checks import check_count, is_text
from ._errors import InvalidRouteRequest
from ._request import RouteRequest
from ._types import JournalEvent, RouteDecision

__all__ = [
    "AUDIT",
    "BACKEND_HEALTH",
    "EVENT_TYPES",
    "OUTCOME",
    "ROUTING_SELECTED",
    "Journal",
    "JournalRecord",
    "audit_payload",
    "check_journal_query",
    "render_events",
]

ROUTING_SELECTED: Final = "routing_selected"
AUDIT: Final = "audit"
OUTCOME: Final = "outcome"
"""A reported outcome (payload: ``backend``, ``outcome``, and ``retry_at`` for a quota)."""
BACKEND_HEALTH: Final = "backend_health"
"""A backend's learned status changed (payload: ``backend``, ``status``, ``until``, ``reason``)."""
EVENT_TYPES: Final = (ROUTING_SELECTED, AUDIT, OUTCOME, BACKEND_HEALTH)
_ROUTING_TAGS: Final = ("routing",)
_AUDIT_TAGS: Final = ("audit", "routing")
_HEALTH_TAGS: Final = ("health",)
_MASK: Final = (1 << 64) - 1


class JournalRecord(NamedTuple):
    """What the journal keeps of one decision or one health event: immutable values, rendered when read.

    A decision record holds ``request`` and ``decision``: a successful decision is two
    events (``routing_selected`` then ``audit``) numbered ``sequence`` and ``sequence + 1``,
    a deny one ``audit`` event. Any other record is one event of ``event_type`` with
    ``payload`` (``outcome``, ``backend_health``), and no request or decision. The next
    record's sequence is this one's plus :attr:`event_count`.
    """

    sequence: int
    time: float
    request: RouteRequest | None
    decision: RouteDecision | None
    deny_reason: str | None
    event_type: str | None = None
    payload: dict[str, Any] | None = None

    @property
    def event_count(self) -> int:
        """How many events the record holds."""
        return 2 if self.decision is not None and self.deny_reason is None else 1

    def event_types(self) -> tuple[str, ...]:
        """The types of its events, in order."""
        if self.decision is None:
            return (self.event_type or "",)
        return (AUDIT,) if self.deny_reason is not None else (ROUTING_SELECTED, AUDIT)


_new_record: Final = tuple.__new__
"""Builds a :class:`JournalRecord` from a full tuple without the named tuple's keyword handling."""


def audit_payload(request: RouteRequest, decision: RouteDecision, deny_reason: str | None) -> dict[str, Any]:
    """The payload of an ``audit`` event (section 7 of the contract)."""
    payload: dict[str, Any] = {
        "category": "routing",
        "action": "decision",
        "decision": "allow" if deny_reason is None else "deny",
        "backend": decision.backend,
        "policy": decision.policy.value,
        "candidates": list(decision.candidates),
        "fallback_chain": list(decision.fallback_chain),
        "reasons": list(decision.reasons),
    }
    if deny_reason is not None:
        payload["reason"] = deny_reason
    if request.policy_profile_id is not None:
        payload["profile_id"] = request.policy_profile_id
    return payload


def event_id(base: int, sequence: int) -> str:
    """``"event_"`` and 16 hex digits, unique per journal for 2**64 events."""
    return f"event_{(base + sequence) & _MASK:016x}"


def render_events(base: int, record: JournalRecord) -> list[JournalEvent]:
    """Turn a stored record into its public :class:`JournalEvent` (one or two)."""
    sequence, when, request, decision, deny_reason, event_type, payload = record
    timestamp = int(when * 1000)
    if request is None or decision is None:
        return [
            JournalEvent(
                event_id(base, sequence),
                sequence,
                timestamp,
                event_type or "",
                _HEALTH_TAGS,
                dict(payload or {}),
            )
        ]
    events = []
    if deny_reason is None:
        events.append(
            JournalEvent(
                event_id(base, sequence),
                sequence,
                timestamp,
                ROUTING_SELECTED,
                _ROUTING_TAGS,
                {"request": request.summary(), "decision": decision.to_dict()},
            )
        )
        sequence += 1
    events.append(
        JournalEvent(
            event_id(base, sequence),
            sequence,
            timestamp,
            AUDIT,
            _AUDIT_TAGS,
            audit_payload(request, decision, deny_reason),
        )
    )
    return events


def check_journal_query(event_type: object, limit: object) -> tuple[str | None, int | None]:
    """Validate the arguments of a journal read: ``event_type`` a str, ``limit`` an int >= 0.

    Raises :class:`beamrouting.InvalidRouteRequest` (detail ``"event_type"`` or
    ``"limit"``), as the router does for the same arguments.
    """
    if event_type is not None and (not isinstance(event_type, str) or not is_text(event_type)):
        raise InvalidRouteRequest("event_type")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidRouteRequest("limit")
    return (
        None if event_type is None else str.__str__(event_type),
        None if limit is None else min(int.__int__(limit), _MASK >> 2),
    )


class Journal:
    """A bounded ring of journal records with a strictly increasing sequence.

    ``Journal(size=10_000, *, wall_clock=time.time)``: ``size`` is how many events are kept
    (older ones are dropped); ``wall_clock`` timestamps them, in UNIX seconds. Raises
    :class:`TypeError` or :class:`ValueError` for a bad ``size``.
    """

    __slots__ = ("_base", "_listeners", "_records", "_sequence", "_size", "_wall_clock")

    def __init__(self, size: int = 10_000, *, wall_clock: Callable[[], float] = time.time) -> None:
        size = check_count("journal_size", size, 0)
        # One record holds up to two events, so ``size`` records always cover ``size`` events.
        self._records: deque[JournalRecord] = deque(maxlen=size)
        self._size = size
        self._sequence = 0
        self._base = int.from_bytes(os.urandom(8), "big") >> 1
        self._wall_clock = wall_clock
        self._listeners: list[Callable[[JournalRecord], None]] = []

    @property
    def base(self) -> int:
        """The random origin of this journal's event ids."""
        return self._base

    @property
    def maxlen(self) -> int:
        """How many events the ring keeps."""
        return self._size

    def record(self, request: RouteRequest, decision: RouteDecision, deny_reason: str | None) -> None:
        """Record ``decision`` for ``request``: ``routing_selected`` and ``audit`` on success, one ``audit`` when ``deny_reason`` is set."""
        sequence = self._sequence + 1
        self._sequence = sequence if deny_reason is not None else sequence + 1
        record = _new_record(
            JournalRecord, (sequence, self._wall_clock(), request, decision, deny_reason, None, None)
        )
        self._records.append(record)
        if self._listeners:
            for listener in tuple(self._listeners):
                listener(record)

    def note(self, event_type: str, payload: dict[str, Any], when: float | None = None) -> None:
        """Record one event of ``event_type`` (``outcome``, ``backend_health``) with ``payload``, at ``when`` (UNIX seconds) or now."""
        sequence = self._sequence = self._sequence + 1
        record = JournalRecord(
            sequence, self._wall_clock() if when is None else when, None, None, None, event_type, payload
        )
        self._records.append(record)
        if self._listeners:
            for listener in tuple(self._listeners):
                listener(record)

    def add_listener(self, listener: Callable[[JournalRecord], None]) -> None:
        """Call ``listener`` with every record from now on (it must not block or raise)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[JournalRecord], None]) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def events(self, event_type: str | None = None, limit: int | None = None) -> list[JournalEvent]:
        """The most recent events, oldest first, optionally of one type and at most ``limit``.

        Only the records that are returned (or skipped by ``event_type``) are rendered, so
        a small ``limit`` costs little however full the ring is.
        """
        event_type, limit = check_journal_query(event_type, limit)
        wanted = self._size if limit is None else min(limit, self._size)
        visible = self._size  # the ring may hold one event more than it shows
        base = self._base
        newest_first: list[JournalEvent] = []
        for record in reversed(self._records):
            if len(newest_first) >= wanted or visible <= 0:
                break
            for event in reversed(render_events(base, record)):
                if visible <= 0 or len(newest_first) >= wanted:
                    break
                visible -= 1
                if event_type is None or event.event_type == event_type:
                    newest_first.append(event)
        newest_first.reverse()
        return newest_first

    @property
    def sequence(self) -> int:
        """The sequence number of the latest event (0 before any)."""
        return self._sequence

    def __len__(self) -> int:
        return min(self._size, sum(record.event_count for record in self._records))
