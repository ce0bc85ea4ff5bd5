"""The generic actor loop and what happens when an actor crashes.

An actor is one task that owns a piece of state and serves its mailbox: it waits for a
message, drains every other pending one into a batch, and handles the batch. An exception
that is not a typed answer to a bad request is a crash: the caller whose message was in
hand gets :class:`~beamrouting.ActorCrashed`, and the actor exits with :class:`ActorExit`
carrying every other unanswered message of the batch, for its restarted incarnation to
serve first (the supervisor keeps them, with the state).
"""

from __future__ import annotations

from typing import Any, ClassVar

from anyio import ClosedResourceError, EndOfStream, WouldBlock

from .._core._errors import ActorCrashed, InvalidRouteRequest
from .._store._protocol import Store
from ._mailbox._base import Envelope, Mailbox
from ._messages import failed, new_encoder

__all__ = ["Actor", "ActorControl", "ActorExit", "InjectedCrash"]


class ActorControl:
    """What outlives one incarnation of an actor, besides the store: test hooks and counters."""

    __slots__ = ("crash_next", "name", "restarts")

    def __init__(self, name: str) -> None:
        self.name = name
        self.crash_next = False
        """Crash on the next message (set by :func:`beamrouting.testing.crash_actor`)."""
        self.restarts = 0


class InjectedCrash(Exception):
    """The crash :func:`beamrouting.testing.crash_actor` asks for."""


class ActorExit(Exception):
    """An actor crashed. ``leftovers`` are the drained messages it did not answer, in order."""

    def __init__(self, name: str, leftovers: list[Envelope]) -> None:
        super().__init__(f"the {name} actor crashed")
        self.leftovers = leftovers


class Actor:
    """Base of the two actors: the receive loop and crash handling.

    Subclasses implement :meth:`handle_batch`, answering every envelope of the batch
    (or leaving it unanswered only by crashing) and keeping :attr:`in_hand` at the reply
    slot of the message being handled, so a crash blames the right caller.
    """

    name: ClassVar[str]

    def __init__(self, mailbox: Mailbox, store: Store, control: ActorControl) -> None:
        self.mailbox = mailbox
        self.store = store
        self.control = control
        self.encode = new_encoder().encode
        self.bad_message = self.encode(failed(InvalidRouteRequest("message")))
        """The reply to bytes that do not decode as a message this actor accepts."""
        self.in_hand: Any = None
        """The reply slot of the message being handled."""
        self._batch: list[Envelope] = []

    async def handle_batch(self, batch: list[Envelope]) -> None:
        """Handle and answer every envelope of ``batch``, in order."""
        raise NotImplementedError

    async def run(self, carried: list[Envelope]) -> None:
        """Serve the mailbox, starting with ``carried`` (what a crashed incarnation left).

        Returns when the mailbox is closed; raises :class:`ActorExit` on a crash.
        """
        inbox = self.mailbox.inbox
        receive = inbox.receive
        receive_nowait = inbox.receive_nowait
        checkpoint = self.mailbox.checkpoint
        control = self.control
        batch = self._batch = carried
        yield_again = self.mailbox.yield_again
        retry = False
        try:
            while True:
                try:  # drain every pending message
                    while True:
                        batch.append(receive_nowait())
                except WouldBlock:
                    pass
                except (EndOfStream, ClosedResourceError):
                    if not batch:
                        return
                if not batch:
                    if retry:  # the callers just answered may not have run yet: yield once more
                        retry = False
                        await checkpoint()
                        continue
                    try:
                        batch.append(await receive())  # idle: wait for the next message
                    except (EndOfStream, ClosedResourceError):
                        return
                    continue  # and drain whatever came with it
                self._batch = batch
                self.in_hand = batch[0][1]
                if control.crash_next:
                    control.crash_next = False
                    raise InjectedCrash(f"crash_actor({self.name!r})")
                await self.handle_batch(batch)
                batch = self._batch = []
                self.in_hand = None
                # Let the callers just answered run (and send again) before the next drain; a
                # bare backend yield is cheaper than anyio's checkpoint inside receive().
                await checkpoint()
                retry = yield_again
        except Exception as exc:
            raise ActorExit(self.name, self._blame(exc)) from exc
        except BaseException:
            # Cancelled: the supervisor is stopping this actor. Nobody may be left waiting.
            mailbox = self.mailbox
            for _, slot in self._batch:
                mailbox.fail(slot, mailbox.closed_error())
            raise

    def _blame(self, exc: Exception) -> list[Envelope]:
        """Answer the caller in hand with ActorCrashed; return the other unanswered envelopes."""
        mailbox = self.mailbox
        if self.in_hand is not None:
            mailbox.fail(
                self.in_hand, ActorCrashed(f"the {self.name} actor crashed handling this call: {exc!r}")
            )
        return [envelope for envelope in self._batch if not mailbox.answered(envelope[1])]
