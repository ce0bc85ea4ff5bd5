"""Callers that wait for a backend: a bounded first-in-first-out queue, woken when the state changes.

A caller of ``select_backend(..., wait=seconds)`` or ``session(..., wait=seconds)`` that
finds no backend available joins the queue and sleeps until the earliest moment a backend
comes back, or until it is woken by a change (a report, a restore, a backend coming back, a
freed session slot), whichever is first, and then selects again. A change wakes the oldest
waiter; each waiter, once it has tried, wakes the next one. So within a process the caller
that waited longest tries first, and no change is lost on a waiter that was cancelled.
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

    __slots__ = ("event", "woken")

    def __init__(self) -> None:
        self.event: anyio.Event | None = None
        self.woken = False
        """Woken by a change, and the next waiter not woken yet."""


class Waiters:
    """The waiting callers of one router (at most ``max_waiters`` at a time), oldest first."""

    __slots__ = ("_queue", "max_waiters")

    def __init__(self, max_waiters: int) -> None:
        self.max_waiters = max_waiters
        self._queue: deque[Waiter] = deque()

    @property
    def waiting(self) -> int:
        """How many callers wait now."""
        return len(self._queue)

    def wake(self) -> None:
        """The state changed: wake the oldest waiter (who wakes the next once it has tried)."""
        if self._queue:
            self._set(self._queue[0])

    def _set(self, waiter: Waiter) -> None:
        waiter.woken = True
        if waiter.event is not None:
            waiter.event.set()

    def tried(self, waiter: Waiter) -> None:
        """``waiter`` selected again after a change: wake the next one."""
        if not waiter.woken:
            return
        waiter.woken = False
        queue = self._queue
        position = queue.index(waiter)
        if position + 1 < len(queue):
            self._set(queue[position + 1])

    @asynccontextmanager
    async def queued(self) -> AsyncIterator[Waiter]:
        """Take a place at the end of the queue; :class:`OverflowError` when ``max_waiters`` already wait."""
        if len(self._queue) >= self.max_waiters:
            raise OverflowError(f"{len(self._queue)} callers already wait (max_waiters={self.max_waiters})")
        waiter = Waiter()
        self._queue.append(waiter)
        try:
            yield waiter
        finally:
            self.tried(waiter)  # a change it was woken for goes on to the next waiter
            self._queue.remove(waiter)

    async def pause(self, waiter: Waiter, seconds: float) -> None:
        """Sleep until ``waiter`` is woken by a change, or ``seconds`` passed (at most)."""
        if waiter.woken:
            return
        event = waiter.event = anyio.Event()
        with anyio.move_on_after(max(0.0, seconds) if math.isfinite(seconds) else math.inf):
            await event.wait()
        waiter.event = None
