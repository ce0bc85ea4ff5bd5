"""Live journal subscriptions: journal events as they happen, through a bounded buffer.

A :class:`Subscription` listens to one of two sources:

- **An in-process journal** (:class:`beamrouting._journal.Journal`: the in-memory store's,
  or an engine's). The journal calls the subscription synchronously with each record, and
  all it does there is append the record to a bounded buffer, so a slow subscriber never
  slows routing. When the buffer is full the oldest events are dropped; the subscriber
  learns how many from a :class:`SubscriptionGap` marker that takes their place in the
  stream, and from :attr:`Subscription.missed`. Listening starts when the subscription is
  created.
- **A shared journal** read through a :class:`beamrouting.JournalFeed`, such as the
  capped Redis stream of a :class:`beamrouting.RedisStore` fleet, whose events are those
  of every process. The subscription pulls a batch of at most ``maxlen`` events whenever
  its buffer is empty, on the feed's own connection, so routing never waits for it. Its
  backlog is the shared journal itself: when the journal dropped records the subscriber
  had not read yet (a capped stream trims its oldest entries), a :class:`SubscriptionGap`
  stands where they were, its count taken from the sequence numbers. Listening starts when
  the subscription is started: on entering ``async with``, at :meth:`Subscription.start`,
  or at the first ``__anext__``, whichever comes first. A feed that fails raises
  :class:`beamrouting.StoreUnavailable` from the call that was waiting on it, and the
  subscription is then closed.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final

import anyio
import msgspec

from .._core._checks import check_choice, check_count, check_instance, optional
from .._core._errors import StoreUnavailable
from .._core._journal import EVENT_TYPES, Journal, JournalRecord, render_events
from .._core._types import JournalEvent
from .._store._protocol import JournalFeed, Store

__all__ = ["Subscription", "SubscriptionGap", "journal_source"]

DEFAULT_MAXLEN: Final = 1024


def journal_source(store: Store) -> Journal | JournalFeed:
    """What a subscription to ``store``'s journal listens to (:meth:`Store.journal_source`).

    Raises :class:`TypeError` for a store whose journal cannot be followed live.
    """
    source = store.journal_source()
    if isinstance(source, (Journal, JournalFeed)):
        return source
    raise TypeError(
        f"{type(store).__name__} keeps no journal that can be followed live; "
        "read its journal with Router.journal() instead"
    )


class SubscriptionGap(msgspec.Struct, frozen=True):
    """Stands in the event stream where ``missed`` events were lost.

    The subscriber fell behind: its buffer was full and the oldest undelivered events were
    discarded, or (a shared journal) the journal itself dropped them before they were read.
    Every event after the marker is newer than every lost one. With ``event_type``, an
    in-process journal's gap counts only events of that type; a shared journal's counts the
    lost events of every type (all its sequence numbers tell).
    """

    missed: int
    """How many events were lost here."""


class Subscription:
    """An async iterator (and async context manager) of journal events as they happen.

    It yields :class:`beamrouting.JournalEvent` in journal order and, where events were
    lost because the subscriber fell behind, a :class:`SubscriptionGap`. At most ``maxlen``
    undelivered events are buffered. Iterating hands over buffered events without waiting
    for the scheduler, so a consumer that does little per event drains everything the
    router appended since it last ran: it loses nothing as long as what one actor batch
    journals (two events per decision) fits in ``maxlen``. To consume in batches, call
    :meth:`get_nowait` until it answers ``None``, then ``await`` the next event.
    ``event_type`` (``"routing_selected"``, ``"audit"``, ``"outcome"`` or
    ``"backend_health"``) keeps only that kind. Listening stops at :meth:`close` (or when the ``async with`` block
    ends); iteration then ends after the buffered events are delivered.

    ``Subscription(journal)`` listens to an in-process journal from the moment it is
    created. ``Subscription(feed)`` reads a shared journal through a
    :class:`beamrouting.JournalFeed` and starts listening when it is started (see
    :meth:`start`); its iteration raises :class:`beamrouting.StoreUnavailable` if the
    journal cannot be reached, and the subscription is then closed. See the module
    docstring for how each source buffers.

    Build one with ``router.subscribe()``, or ``Subscription(engine.journal_ring)`` for a
    :class:`beamrouting.RoutingEngine`::

        async with router.subscribe(maxlen=10_000) as events:
            async for event in events:
                if isinstance(event, SubscriptionGap):
                    print("missed", event.missed)
                else:
                    print(event.sequence, event.event_type)

    ``on_close`` (for the router's bookkeeping) is called with the subscription once, when
    it closes. Raises :class:`TypeError` or :class:`ValueError` for a bad source or option.
    """

    __slots__ = (
        "__weakref__",
        "_base",
        "_batch",
        "_buffered",
        "_closed",
        "_event_type",
        "_feed",
        "_journal",
        "_listener",
        "_lock",
        "_maxlen",
        "_missed_total",
        "_next_sequence",
        "_on_close",
        "_pending",
        "_records",
        "_scope",
        "_unreported",
        "_waiter",
    )

    def __init__(
        self,
        journal: Journal | JournalFeed,
        *,
        maxlen: int = DEFAULT_MAXLEN,
        event_type: str | None = None,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        maxlen = check_count("maxlen", maxlen, 2)  # one decision can be two events
        event_type = optional(check_choice, "event_type", event_type, EVENT_TYPES)
        check_instance("journal", journal, (Journal, JournalFeed))
        self._maxlen = maxlen
        self._event_type = event_type
        self._on_close = on_close
        # Buffered records and how many events each will yield; ``(None, n)`` is a gap of
        # ``n`` events a feed's sequence numbers revealed, delivered in its place.
        self._records: deque[tuple[JournalRecord | None, int]] = deque()
        self._buffered = 0
        self._pending: list[JournalEvent] = []
        self._unreported = 0
        self._missed_total = 0
        self._closed = False
        self._waiter: anyio.Event | None = None
        self._listener: Callable[[JournalRecord], None] | None = None
        # A feed's side: one call at a time (under the lock), cancellable by close().
        self._lock: anyio.Lock | None = None
        self._scope: anyio.CancelScope | None = None
        self._next_sequence: int | None = None
        """The sequence the next record read from the feed should have (``None``: not started)."""
        self._batch = max(1, maxlen // 2)
        """Records one feed read takes at most: each is at most two events, so ``maxlen`` hold them."""
        if isinstance(journal, Journal):
            self._journal: Journal | None = journal
            self._feed: JournalFeed | None = None
            self._base = journal.base
            self._listen(journal)
        else:
            self._journal = None
            self._feed = journal
            self._base = 0
            self._lock = anyio.Lock()

    def _listen(self, journal: Journal) -> None:
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
        event_type = self._event_type
        if event_type is None:
            return record.event_count
        return record.event_types().count(event_type)

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

    # -- a feed's side ---------------------------------------------------------------------

    def _take(self, records: list[JournalRecord]) -> None:
        """Buffer a batch read from the feed; a jump in the sequence numbers is a gap."""
        assert self._next_sequence is not None
        expected = self._next_sequence
        buffered = self._records
        for record in records:
            sequence = record[0]
            if sequence > expected:
                lost = sequence - expected
                buffered.append((None, lost))
                self._missed_total += lost
            # A sequence below the expected one means the journal started over (its store was
            # emptied): nothing is known to be lost, and counting goes on from there.
            expected = sequence + record.event_count
            count = self._count(record)
            if count:
                buffered.append((record, count))
                self._buffered += count
        self._next_sequence = expected

    async def _call_feed(self, read: bool) -> None:
        """Start listening if not started and, if ``read``, wait for the next batch.

        One task at a time; a task that waited for another's batch reads nothing more. A
        :meth:`close` meanwhile cancels the call, and the connection is released before this
        returns. A :class:`StoreUnavailable` closes the subscription and is raised.
        """
        feed, lock = self._feed, self._lock
        assert feed is not None and lock is not None
        async with lock:
            if self._closed:
                return
            started = self._next_sequence is not None
            if started and (not read or self._records or self._pending or self._unreported):
                return
            scope = self._scope = anyio.CancelScope()
            try:
                with scope:
                    if not started:
                        self._next_sequence = await feed.open()
                        self._base = feed.base
                    if read:
                        self._take(await feed.read(self._batch))
            except StoreUnavailable:
                if self._closed:
                    return  # closing interrupted the call: that ends the iteration, it is no failure
                self.close()
                raise
            finally:
                self._scope = None
                if self._closed:
                    with anyio.CancelScope(shield=True):
                        await feed.aclose()

    async def start(self) -> None:
        """Start listening now, if the subscription has not started yet.

        For a shared journal (a :class:`beamrouting.JournalFeed`): connect and take the
        journal's current end as the starting point; every event appended after this returns
        is delivered, nothing older. Entering ``async with`` calls it, and so does the first
        ``__anext__`` of a subscription iterated without being entered. Raises
        :class:`beamrouting.StoreUnavailable` (and closes the subscription) if the journal
        cannot be reached. An in-process journal is listened to from creation: a no-op.
        """
        if self._feed is not None and self._next_sequence is None and not self._closed:
            await self._call_feed(read=False)

    # -- the subscriber's side ------------------------------------------------------------

    @property
    def maxlen(self) -> int:
        """How many undelivered events the buffer holds at most."""
        return self._maxlen

    @property
    def missed(self) -> int:
        """How many events were lost in total because the subscriber fell behind."""
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
            if record is None:
                return SubscriptionGap(count)
            self._buffered -= count
            events = render_events(self._base, record)
            if self._event_type is not None:
                events = [e for e in events if e.event_type == self._event_type]
            pending.extend(events)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JournalEvent | SubscriptionGap:
        # Buffered events are handed over without yielding to the scheduler: a consumer that
        # keeps up drains a whole batch between two of the actor's, so it loses nothing while
        # one batch fits in its buffer. Cancellation is still honoured here.
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            if self._closed:
                raise StopAsyncIteration
            if self._feed is not None:
                await self._call_feed(read=True)
                continue
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = anyio.Event()
            await waiter.wait()

    def close(self) -> None:
        """Stop listening; iteration ends once the buffered events are delivered.

        A feed's connection is released by the task waiting on it, if one is (its wait is
        cancelled and ends the iteration), else at once or as soon as the event loop runs;
        :meth:`aclose` returns only once it is released.
        """
        if self._closed:
            return
        self._closed = True
        if self._journal is not None:
            assert self._listener is not None
            self._journal.remove_listener(self._listener)
        elif self._feed is not None:
            scope = self._scope
            if scope is not None:
                scope.cancel()
            else:
                self._feed.close()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(self)

    async def aclose(self) -> None:
        """Async form of :meth:`close`; with a feed, returns once its connection is released."""
        self.close()
        feed, lock = self._feed, self._lock
        if feed is not None and lock is not None:
            with anyio.CancelScope(shield=True):
                async with lock:  # a call in progress unwinds (releasing the connection) first
                    await feed.aclose()

    async def __aenter__(self) -> Subscription:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Subscription {state} buffered={self.buffered} missed={self._missed_total} maxlen={self._maxlen}>"
