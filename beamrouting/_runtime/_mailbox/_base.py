"""Bounded actor mailboxes with backend-native one-shot reply slots.

A mailbox is an anyio memory object stream of envelopes ``(message bytes, reply slot)``.
A caller enqueues with ``send_nowait`` and falls back to an awaited send only when the
mailbox is full (that is the backpressure), then waits on its reply slot. The owning actor
drains every pending envelope per wake-up and answers each slot exactly once; answering a
slot whose caller has gone (cancelled or timed out) is a no-op, so a caller that leaves
leaves nothing behind.

Reply slots are native to the running backend, chosen once per mailbox: a loop
``Future`` on asyncio and uvloop; on trio a small object that parks the caller with
``trio.lowlevel.wait_task_rescheduled`` and wakes it with ``reschedule`` (measured: a bare
round trip of 12.7 µs, against 13.4 µs with a ``trio.Event`` per call; see
:mod:`._trio`, imported only on trio). Both cost a fraction of a microsecond, where an
``anyio.Event`` per call costs about one.

Every call has a deadline. A cancel scope per call (``anyio.fail_after``) costs about
8 µs here, more than the routing decision itself, so calls that enqueue without waiting
register their slot in a FIFO deadline queue instead: all calls of a mailbox share one
timeout, so deadlines grow in enqueue order and one watchdog task per mailbox, sleeping
until the oldest deadline, expires them exactly. The rare call that has to wait for room
uses ``anyio.fail_after``.

The actor drains by count, not by asking the stream until it raises ``WouldBlock`` (an
exception per wake-up costs about 0.7 µs of a 9 µs round trip): every call that enqueues
without waiting counts itself in :attr:`Mailbox.queued`, and :meth:`Mailbox.drain` takes
that many envelopes. The count is a hint, never trusted for correctness: a drain that finds
fewer stops at ``WouldBlock``, callers blocked on a full mailbox make it drain until the
stream is empty, and an envelope the count missed is still received by the actor's
awaited ``receive()``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeAlias

import anyio
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream, WouldBlock

from ..._core._checks import check_count, check_seconds
from ..._core._errors import BeamRoutingError, CallTimeout, RouterClosed
from ..._core._types import RouteDecision

__all__ = ["Answer", "Envelope", "Mailbox"]

Envelope: TypeAlias = tuple[bytes, Any]
"""``(encoded message, reply slot)``; the slot's type depends on the backend."""

Answer: TypeAlias = bytes | RouteDecision
"""What a reply slot carries: an encoded reply, or a decision as it is.

A :class:`RouteDecision` is deeply immutable (a frozen struct of strings and tuples), so
handing the object itself over shares nothing mutable, as a copied message would not;
skipping its encode and decode is a measurable share of a round trip.
"""


class Mailbox(ABC):
    """The bounded mailbox of one actor, and the reply slots of the calls made through it.

    ``call()`` is what callers await; ``inbox`` is the stream the actor drains;
    ``deliver()`` and ``fail()`` answer a slot; ``close()`` answers everything still
    queued and refuses later calls; ``run_deadlines()`` is the watchdog task.
    """

    yield_again: ClassVar[bool] = False
    """Whether the callers an actor just answered may not have run yet when its yield after
    answering returns (trio runs each scheduling round forwards or backwards at random), so
    an empty drain then is worth one more yield before the actor waits in ``receive()``."""

    def __init__(self, name: str, size: int, timeout: float, clock: Callable[[], float]) -> None:
        self.name = name
        self.size = check_count("mailbox_size", size, 1)
        self.timeout = check_seconds("call_timeout", timeout)
        self._clock = clock
        """The running loop's clock (what anyio deadlines are measured on)."""
        self._send, self.inbox = anyio.create_memory_object_stream[Envelope](size)
        self._send_nowait = self._send.send_nowait
        self._receive_nowait = self.inbox.receive_nowait
        self.queued = 0
        """Envelopes enqueued since the actor's last drain, as counted by the callers (a hint)."""
        self._blocked = 0
        """Callers waiting for room in a full mailbox (their envelopes are not in :attr:`queued`)."""
        self._pending: deque[tuple[float, Any]] = deque()
        self._closed: tuple[type[BeamRoutingError], str] | None = None

    # -- backend-specific parts ---------------------------------------------------------------

    @abstractmethod
    def call(self, data: bytes) -> Awaitable[Answer]:
        """Send ``data`` to the actor; await the result, at once, for its encoded reply.

        The reply raises :class:`CallTimeout` when no reply (or no room in a full mailbox)
        comes within the timeout; :class:`RouterClosed` or
        :class:`beamrouting.RouterUnavailable` is raised when the mailbox is closed.
        (A plain function handing back the slot itself saves a coroutine per call.)
        """

    @abstractmethod
    def deliver(self, slot: Any, data: Answer) -> None:
        """Answer ``slot`` with an encoded reply (a no-op if it was answered or abandoned)."""

    @abstractmethod
    def fail(self, slot: Any, exc: BaseException) -> None:
        """Answer ``slot`` with an exception (a no-op if it was answered or abandoned)."""

    @staticmethod
    @abstractmethod
    def answered(slot: Any) -> bool:
        """Whether ``slot`` was answered, or its caller stopped waiting (cancelled, timed out)."""

    @abstractmethod
    def checkpoint(self) -> Awaitable[None]:
        """Yield to the other tasks once (the backend's own checkpoint, without anyio's dispatch)."""

    @abstractmethod
    async def _wait(self, slot: Any) -> Answer:
        """Wait for ``slot``'s answer (after an awaited send into a full mailbox)."""

    # -- shared parts ---------------------------------------------------------------------------

    def _track(self, slot: Any) -> None:
        """Give ``slot`` a deadline; also drop answered slots from the front of the queue."""
        pending = self._pending
        done = self.answered
        while pending and done(pending[0][1]):
            pending.popleft()
        pending.append((self._clock() + self.timeout, slot))

    def drain(self, batch: list[Envelope]) -> None:
        """Move the envelopes waiting in the inbox onto ``batch``, in order.

        Takes the :attr:`queued` ones, or every one while callers wait for room. Raises
        what the stream's ``receive_nowait`` raises when it is closed (``EndOfStream``,
        ``ClosedResourceError``), after moving what it could.
        """
        count = self.queued
        self.queued = 0
        receive = self._receive_nowait
        append = batch.append
        try:
            for _ in range(count):
                append(receive())
            if self._blocked:
                while True:
                    append(receive())
        except WouldBlock:
            pass

    async def receive(self) -> Envelope:
        """Wait for the next envelope (when a drain found none); what the stream's ``receive`` raises."""
        envelope = await self.inbox.receive()
        if self.queued:
            self.queued -= 1
        return envelope

    async def _call_when_full(self, envelope: Envelope) -> Answer:
        try:
            with anyio.fail_after(self.timeout):
                self._blocked += 1
                try:
                    await self._send.send(envelope)
                finally:
                    self._blocked -= 1
                self.queued += 1  # it may already be drained: an extra count costs one WouldBlock
                return await self._wait(envelope[1])
        except (BrokenResourceError, ClosedResourceError):
            raise self.closed_error() from None
        except CallTimeout:
            raise
        except TimeoutError:
            raise CallTimeout(f"the {self.name} mailbox stayed full or silent for {self.timeout} s") from None

    async def run_deadlines(self) -> None:
        """The watchdog: fail every tracked call whose deadline passed with :class:`CallTimeout`."""
        pending = self._pending
        done = self.answered
        while True:
            now = self._clock()
            while pending:
                deadline, slot = pending[0]
                if done(slot):
                    pending.popleft()
                elif deadline <= now:
                    pending.popleft()
                    self.fail(
                        slot, CallTimeout(f"no reply from the {self.name} actor within {self.timeout} s")
                    )
                else:
                    break
            # Deadlines grow in enqueue order, so nothing can expire before the oldest one;
            # with nothing tracked, a call made from now on expires a full timeout from now.
            await anyio.sleep_until(pending[0][0] if pending else now + self.timeout)

    def closed_error(self) -> BeamRoutingError:
        """The error for a call that finds this mailbox closed."""
        error, reason = self._closed or (RouterClosed, "the router is closed")
        return error(reason)

    @property
    def closed(self) -> bool:
        """Whether the mailbox refuses calls."""
        return self._closed is not None

    def refuse(self, error: type[BeamRoutingError], reason: str) -> None:
        """Refuse later calls with ``error(reason)``; queued calls stay queued.

        Callers blocked on a full mailbox get the error at once. Idempotent; the first
        error wins.
        """
        if self._closed is None:
            self._closed = (error, reason)
        self._send.close()

    def close(self, error: type[BeamRoutingError], reason: str) -> None:
        """:meth:`refuse` later calls and answer every queued call with ``error(reason)``."""
        self.refuse(error, reason)
        while True:
            try:
                _, slot = self.inbox.receive_nowait()
            except (WouldBlock, EndOfStream, ClosedResourceError):
                break
            self.fail(slot, self.closed_error())
        self.queued = 0
        self.inbox.close()
        self._pending.clear()

    @property
    def depth(self) -> int:
        """Messages waiting: queued ones plus callers blocked on a full mailbox."""
        stats = self.inbox.statistics()
        return stats.current_buffer_used + stats.tasks_waiting_send
