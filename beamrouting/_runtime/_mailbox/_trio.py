"""The mailbox on trio: a caller parks with trio's lowest-level wait.

A caller parks with ``trio.lowlevel.wait_task_rescheduled`` and is woken with
``reschedule``. Trio resumes a parked task with an :class:`outcome.Outcome`, which it
unwraps; an ``outcome.Value`` per call costs about 0.3 µs, so the reply slot is itself the
outcome a successful call resumes with. Errors (timeouts, crashes, a closed mailbox) are
rare and resume with a plain ``outcome.Error``.

Imported only when a router starts on trio, so trio stays an optional dependency.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio
from anyio import BrokenResourceError, ClosedResourceError, WouldBlock

from ._base import Answer, Mailbox

__all__ = ["TrioMailbox", "mailbox_class"]

_R = TypeVar("_R")

if TYPE_CHECKING:
    _AnswerOutcome = outcome.Outcome[Answer]
else:  # Outcome is generic only from outcome 1.3 on
    _AnswerOutcome = outcome.Outcome


class _TrioSlot(_AnswerOutcome):
    """A one-shot reply slot, and the outcome its caller resumes with when answered.

    ``task`` is the caller while it is parked in ``wait_task_rescheduled``. An answer that
    comes before the caller parks (possible only after waiting for room in a full mailbox)
    stays in ``answer`` or ``error`` for it.
    """

    __slots__ = ("answer", "done", "error", "task")

    def __init__(self, task: trio.lowlevel.Task | None) -> None:
        self.task = task
        self.done = False
        self.error: outcome.Error | None = None
        self.answer: Answer

    # Identity, not Outcome's field-wise equality (under which every slot equals every other).
    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def abort(self, _: object) -> trio.lowlevel.Abort:
        """Trio cancels the parked caller: the slot is abandoned."""
        self.task = None
        self.done = True
        return trio.lowlevel.Abort.SUCCEEDED

    def unwrap(self) -> Answer:
        return self.answer

    def send(self, gen: Generator[_R, Answer, object]) -> _R:
        return gen.send(self.answer)

    async def asend(self, agen: AsyncGenerator[_R, Answer]) -> _R:
        return await agen.asend(self.answer)


class TrioMailbox(Mailbox):
    """Reply slots park the caller with trio's lowest-level wait."""

    yield_again = True

    def __init__(self, name: str, size: int, timeout: float) -> None:
        # The run's clock itself: trio.current_time() reaches it through two more calls.
        super().__init__(name, size, timeout, trio.lowlevel.current_clock().current_time)
        self._reschedule = trio.lowlevel.reschedule
        self._current_task = trio.lowlevel.current_task
        self._park = trio.lowlevel.wait_task_rescheduled

    def checkpoint(self) -> Awaitable[None]:
        return trio.lowlevel.checkpoint()

    def call(self, data: bytes) -> Awaitable[Answer]:
        slot = _TrioSlot(self._current_task())
        try:
            self._send_nowait((data, slot))
        except WouldBlock:
            slot.task = None  # the caller parks in the stream's send, not on the slot
            return self._call_when_full((data, slot))
        except (BrokenResourceError, ClosedResourceError):
            raise self.closed_error() from None
        self.queued += 1
        # The deadline (what _track does, inlined on this hot path).
        pending = self._pending
        while pending and pending[0][1].done:
            pending.popleft()
        pending.append((self._clock() + self.timeout, slot))
        # The caller awaits this at once, with no checkpoint since the send, so it parks
        # before the actor can answer.
        parked: Awaitable[Answer] = self._park(slot.abort)
        return parked

    async def _wait(self, slot: Any) -> Answer:
        trio_slot: _TrioSlot = slot
        if trio_slot.done:
            if trio_slot.error is not None:
                trio_slot.error.unwrap()
            return trio_slot.answer
        trio_slot.task = self._current_task()
        result: Answer = await self._park(trio_slot.abort)
        return result

    def deliver(self, slot: Any, data: Answer) -> None:
        if slot.done:
            return
        slot.done = True
        slot.answer = data
        task = slot.task
        if task is not None:
            slot.task = None
            self._reschedule(task, slot)

    def fail(self, slot: Any, exc: BaseException) -> None:
        if slot.done:
            return
        slot.done = True
        error = outcome.Error(exc)
        task = slot.task
        if task is None:
            slot.error = error
        else:
            slot.task = None
            self._reschedule(task, error)

    @staticmethod
    def answered(slot: Any) -> bool:
        return slot.done  # type: ignore[no-any-return]


mailbox_class = TrioMailbox
"""This backend's mailbox (what :func:`beamrouting._runtime._mailbox.mailbox_class` looks up)."""
