"""The mailbox on asyncio and uvloop: reply slots are loop futures."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Generator
from typing import Any

from anyio import BrokenResourceError, ClosedResourceError, WouldBlock

from ._base import Answer, Mailbox

__all__ = ["AsyncioMailbox", "mailbox_class"]


@types.coroutine
def _yield() -> Generator[None, None, None]:
    """Yield to the loop once: what ``asyncio.sleep(0)`` does, in one frame instead of two."""
    yield


class AsyncioMailbox(Mailbox):
    """Reply slots are loop futures (asyncio and uvloop)."""

    def __init__(self, name: str, size: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(name, size, timeout, loop.time)
        self._create_future = loop.create_future

    def checkpoint(self) -> Awaitable[None]:
        return _yield()

    def call(self, data: bytes) -> Awaitable[Answer]:
        fut: asyncio.Future[Answer] = self._create_future()
        try:
            self._send_nowait((data, fut))
        except WouldBlock:
            return self._call_when_full((data, fut))
        except (BrokenResourceError, ClosedResourceError):
            raise self.closed_error() from None
        self.queued += 1
        # The deadline (what _track does, inlined on this hot path).
        pending = self._pending
        while pending and pending[0][1].done():
            pending.popleft()
        pending.append((self._clock() + self.timeout, fut))
        return fut

    async def _wait(self, slot: Any) -> Answer:
        fut: asyncio.Future[Answer] = slot
        return await fut

    def deliver(self, slot: Any, data: Answer) -> None:
        if not slot.done():
            slot.set_result(data)

    def fail(self, slot: Any, exc: BaseException) -> None:
        if not slot.done():
            slot.set_exception(exc)

    @staticmethod
    def answered(slot: Any) -> bool:
        return slot.done()  # type: ignore[no-any-return]


mailbox_class = AsyncioMailbox
"""This backend's mailbox (what :func:`beamrouting._runtime._mailbox.mailbox_class` looks up)."""
