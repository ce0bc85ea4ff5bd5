"""Callers that wait for a backend: a bounded first-in-first-out queue, woken when the state changes.

A caller of ``select_backend(..., wait=seconds)`` or ``session(..., wait=seconds)`` that
finds no backend available joins the queue and sleeps until the earliest moment a backend
comes back, or until it is woken by a change (a report, a restore, a backend coming back, a
freed session slot), whichever is first, and then selects again. A change wakes the oldest
waiter; each waiter, once it has tried, wakes the next one. So within a process the caller
that waited longest tries first, and no change is lost on a waiter that was cancelled. A
change that comes while a waiter is trying is not lost either: that waiter tries again
before it wakes the next one, and a caller that saw a change while it tried before joining
the queue tries again at once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

__all__ = ["Waiter", "Waiters"]


class Waiter:
    """One waiting caller's place in the queue."""

    __slots__ = ("event", "owes", "woken")

    def __init__(self) -> None:
        self.event: anyio.Event | None = None
        self.woken = False
        """Woken by a change, and it has not tried since."""
        self.owes = False
        """It tried after a change and has not woken the next waiter yet."""


class Waiters:
    """The waiting callers of one router (at most ``max_waiters`` at a time), oldest first."""

    __slots__ = ("_queue", "changes", "max_waiters")

    def __init__(self, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        self._queue: deque[Waiter] = deque()
        self.changes = 0
        """How many changes were signalled (a caller compares it before and after trying)."""

    @property
    def waiting(self) -> int:
        """How many callers wait now."""
        return len(self._queue)

    def wake(self) -> None:
        """The state changed: wake the oldest waiter (who wakes the next once it has tried)."""
        self.changes += 1
        if self._queue:
            self._set(self._queue[0])

    def _set(self, waiter: Waiter) -> None:
        waiter.woken = True
        if waiter.event is not None:
            waiter.event.set()

    def _wake_after(self, waiter: Waiter) -> None:
        queue = self._queue
        position = queue.index(waiter)
        if position + 1 < len(queue):
            self._set(queue[position + 1])

    def tried(self, waiter: Waiter) -> None:
        """``waiter`` selected again: if it tried after a change, wake the next one.

        If another change woke it while it tried, it tries again first (its next
        :meth:`pause` returns at once) and wakes the next one after that.
        """
        if waiter.owes and not waiter.woken:
            waiter.owes = False
            self._wake_after(waiter)

    @asynccontextmanager
    async def queued(self, changes: int | None = None) -> AsyncIterator[Waiter]:
        """Take a place at the end of the queue; :class:`OverflowError` when ``max_waiters`` already wait.

        ``changes`` is :attr:`changes` as it was before the caller last tried: if a change
        came since, the waiter is woken at once.
        """
        if len(self._queue) >= self.max_waiters:
            raise OverflowError(f"{len(self._queue)} callers already wait (max_waiters={self.max_waiters})")
        waiter = Waiter()
        waiter.woken = changes is not None and changes != self.changes
        self._queue.append(waiter)
        try:
            yield waiter
        finally:
            if waiter.woken or waiter.owes:  # a change it was woken for goes on to the next waiter
                waiter.woken = waiter.owes = False
                self._wake_after(waiter)
            self._queue.remove(waiter)

    async def pause(self, waiter: Waiter, seconds: float) -> None:
        """Sleep until ``waiter`` is woken by a change, or ``seconds`` passed (at most)."""
        if not waiter.woken:
            event = waiter.event = anyio.Event()
            with anyio.move_on_after(max(0.0, seconds) if math.isfinite(seconds) else math.inf):
                await event.wait()
            waiter.event = None
        if waiter.woken:  # it tries now, and then wakes the next waiter
            waiter.woken = False
            waiter.owes = True
