"""Live journal subscriptions: journal events as they happen, through a bounded buffer.

A :class:`Subscription` listens to a :class:`~beamrouting._journal.Journal`. The journal
calls it synchronously with each record, and all it does there is append the record to a
bounded buffer, so a slow subscriber never slows routing. When the buffer is full the
oldest events are dropped; the subscriber learns how many from a :class:`SubscriptionGap`
marker that takes their place in the stream, and from :attr:`Subscription.missed`.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final

import anyio
import msgspec

from ._journal import AUDIT, ROUTING_SELECTED, Journal, JournalRecord, render_events
from ._types import JournalEvent

__all__ = ["Subscription", "SubscriptionGap", "journal_of"]

DEFAULT_MAXLEN: Final = 1024


def journal_of(store: object) -> Journal:
    """The in-process journal a store records into: its ``local_journal``.

    Raises :class:`TypeError` for a store that keeps its journal elsewhere (``RedisStore``
    keeps it in Redis, and its ``local_journal`` is ``None``) or has no ``local_journal``.
    """
    journal = getattr(store, "local_journal", None)
    if not isinstance(journal, Journal):
        raise TypeError(
            f"{type(store).__name__} keeps no in-process journal to subscribe to; "
            "read its journal with Router.journal() instead"
        )
    return journal


class SubscriptionGap(msgspec.Struct, frozen=True):
    """Stands in the event stream where ``missed`` events were dropped.

    The subscriber fell behind and its buffer was full, so the oldest undelivered events
    were discarded; every event after the marker is newer than every dropped one.
    """

    missed: int


class Subscription:
    """An async iterator (and async context manager) of journal events as they happen.

    It yields :class:`~beamrouting.JournalEvent` in journal order and, where events had to
    be dropped because the subscriber fell behind, a :class:`SubscriptionGap`. At most
    ``maxlen`` undelivered events are buffered. ``event_type`` (``"routing_selected"`` or
    ``"audit"``) keeps only that kind. Listening starts when the subscription is created
    and stops at :meth:`close` (or when the ``async with`` block ends); iteration then
    ends after the buffered events are delivered.

    Build one with ``router.subscribe()``, or ``Subscription(engine.journal_ring)`` for a
    :class:`~beamrouting.RoutingEngine`::

        async with router.subscribe(maxlen=10_000) as events:
            async for event in events:
                if isinstance(event, SubscriptionGap):
                    print("missed", event.missed)
                else:
                    print(event.sequence, event.event_type)
    """

    __slots__ = (
        "__weakref__",
        "_base",
        "_buffered",
        "_closed",
        "_event_type",
        "_journal",
        "_listener",
        "_maxlen",
        "_missed_total",
        "_on_close",
        "_pending",
        "_records",
        "_unreported",
        "_waiter",
    )

    def __init__(
        self,
        journal: Journal,
        *,
        maxlen: int = DEFAULT_MAXLEN,
        event_type: str | None = None,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 2:
            raise ValueError("maxlen must be an int >= 2 (one decision can be two events)")
        if event_type not in (None, ROUTING_SELECTED, AUDIT):
            raise ValueError(
                f"event_type must be None, {ROUTING_SELECTED!r} or {AUDIT!r}, not {event_type!r}"
            )
        self._journal = journal
        self._base = journal.base
        self._maxlen = maxlen
        self._event_type = event_type
        self._on_close = on_close
        self._records: deque[tuple[JournalRecord, int]] = deque()
        self._buffered = 0
        self._pending: list[JournalEvent] = []
        self._unreported = 0
        self._missed_total = 0
        self._closed = False
        self._waiter: anyio.Event | None = None
        # The journal holds only a weak reference, so an abandoned subscription is collected
        # and stops listening on its own.
        ref = weakref.ref(self)

        def listener(record: JournalRecord) -> None:
            sub = ref()
            if sub is None:
                journal.remove_listener(listener)
            else:
                sub._push(record)

        self._listener = listener
        journal.add_listener(listener)

    # -- the journal's side (must be cheap and never block) -------------------------------

    def _count(self, record: JournalRecord) -> int:
        denied = record[4] is not None
        event_type = self._event_type
        if event_type is None:
            return 1 if denied else 2
        if event_type == AUDIT:
            return 1
        return 0 if denied else 1

    def _push(self, record: JournalRecord) -> None:
        count = self._count(record)
        if not count:
            return
        records = self._records
        records.append((record, count))
        self._buffered += count
        room = self._maxlen - len(self._pending)
        while self._buffered > room and records:
            _, dropped = records.popleft()
            self._buffered -= dropped
            self._unreported += dropped
            self._missed_total += dropped
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    # -- the subscriber's side ------------------------------------------------------------

    @property
    def maxlen(self) -> int:
        """How many undelivered events the buffer holds at most."""
        return self._maxlen

    @property
    def missed(self) -> int:
        """How many events were dropped in total because the subscriber fell behind."""
        return self._missed_total

    @property
    def buffered(self) -> int:
        """How many events wait to be delivered."""
        return self._buffered + len(self._pending)

    @property
    def closed(self) -> bool:
        """Whether the subscription stopped listening."""
        return self._closed

    def get_nowait(self) -> JournalEvent | SubscriptionGap | None:
        """The next event or gap marker if one is buffered, else ``None`` (never waits)."""
        pending = self._pending
        while True:
            if pending:
                return pending.pop(0)
            if self._unreported:
                gap = SubscriptionGap(self._unreported)
                self._unreported = 0
                return gap
            if not self._records:
                return None
            record, count = self._records.popleft()
            self._buffered -= count
            events = render_events(self._base, record)
            if self._event_type is not None:
                events = [e for e in events if e.event_type == self._event_type]
            pending.extend(events)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JournalEvent | SubscriptionGap:
        await anyio.lowlevel.checkpoint()
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            if self._closed:
                raise StopAsyncIteration
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = anyio.Event()
            await waiter.wait()

    def close(self) -> None:
        """Stop listening; iteration ends once the buffered events are delivered."""
        if self._closed:
            return
        self._closed = True
        self._journal.remove_listener(self._listener)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)

    async def aclose(self) -> None:
        """Async form of :meth:`close`."""
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Subscription {state} buffered={self.buffered} missed={self._missed_total} maxlen={self._maxlen}>"
