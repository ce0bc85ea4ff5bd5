"""The generic actor: its loop, its batch handling and what happens when it crashes; and the caller's side.

An actor is one task that owns a piece of state and serves its mailbox: it waits for a
message, drains every other pending one into a batch, turns each message into a validated
store operation, hands the operations to its store in one call and answers each caller.
An exception that is not a typed answer to a bad request is a crash: the caller whose
message was in hand gets :class:`beamrouting.ActorCrashed`, and the actor exits with
:class:`ActorExit` carrying every other unanswered message of the batch, for its restarted
incarnation to serve first (the supervisor keeps them, with the state).

:class:`ActorClient` is the other side: what a caller uses to send an actor a message and
read its reply.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Final, Generic, TypeVar

import msgspec
from anyio import ClosedResourceError, EndOfStream

from .._core._errors import ActorCrashed, BeamRoutingError, InvalidRouteRequest, RouterClosed, RoutingError
from .._store._protocol import Store, StoreCrash
from ._mailbox import Answer, Envelope, Mailbox
from ._messages import Decided, Reply, error_from_reply, failed, new_encoder, reply_decoder

__all__ = ["Actor", "ActorClient", "ActorControl", "ActorExit", "InjectedCrash"]

_Op = TypeVar("_Op")
_KNOWN_MESSAGES: Final = 1024
_KNOWN_BYTES: Final = 1 << 20
"""Bytes of messages an actor keeps decoded (1 MiB)."""
_Message = TypeVar("_Message")
_ReplyT = TypeVar("_ReplyT", bound=Reply)


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


class Actor(ABC, Generic[_Message, _Op]):
    """Base of the two actors: the receive loop, batch handling and crash handling.

    A subclass names itself and the messages it accepts (``message_type``, a tagged union
    of msgspec structs), and says how a decoded message becomes a store operation
    (:meth:`operation`), which store call serves a batch (:meth:`store_call`) and what reply
    answers an operation's result (:meth:`reply`).
    """

    name: ClassVar[str]
    message_type: ClassVar[Any]
    passthrough: ClassVar[type | None] = None
    """Results of this type are handed back as they are (immutable: nothing is shared that can change)."""

    def __init__(self, mailbox: Mailbox, store: Store, control: ActorControl) -> None:
        self.mailbox = mailbox
        self.store = store
        self.control = control
        self.encode = new_encoder().encode
        self.decode: Callable[[bytes], _Message] = msgspec.msgpack.Decoder(self.message_type).decode
        """Decode bytes as a message this actor accepts (:class:`msgspec.DecodeError` if they are not)."""
        self.bad_message = self.encode(failed(InvalidRouteRequest("message")))
        """The reply to bytes that do not decode as a message this actor accepts."""
        self.in_hand: Any = None
        """The reply slot of the message being handled."""
        self._batch: list[Envelope] = []
        self._known: dict[bytes, _Op] = {}
        """Operations already decoded and validated, by their message's bytes (see :meth:`repeats`)."""
        self._known_bytes = 0
        self._store_call = self.store_call()
        self._apply_now = self.apply_now()

    def repeats(self, op: _Op) -> bool:
        """Whether messages asking for ``op`` are worth keeping decoded (they come again, byte for byte)."""
        return False

    @abstractmethod
    def operation(self, message: _Message) -> _Op:
        """The store operation ``message`` asks for, validated again (never trust the bytes).

        Raises :class:`beamrouting.RoutingError` for a message that is not valid.
        """

    @abstractmethod
    def store_call(self) -> Callable[[Sequence[_Op]], Awaitable[Sequence[Any]]]:
        """The store call that applies a batch of operations (the store protocol's answer rules).

        Looked up once, when the actor starts.
        """

    def apply_now(self) -> Callable[[_Op], Any] | None:
        """The store's synchronous call for one operation, when it has one (``None`` here).

        With one, a lone message is served without a coroutine: its result is returned, a
        :class:`beamrouting.BeamRoutingError` raised answers it, any other exception is a
        crash. Looked up once, when the actor starts.
        """
        return None

    @abstractmethod
    def reply(self, op: _Op, result: Any) -> Answer:
        """The answer to ``op`` whose store result is ``result``; :class:`TypeError` for a wrong result."""

    async def handle_batch(self, batch: list[Envelope]) -> None:
        """Validate every message, apply the valid ones in one store call, answer each caller."""
        known = self._known
        ops: list[_Op] = []
        slots: list[Any] = []
        for data, slot in batch:
            self.in_hand = slot
            op = known.get(data)
            if op is None:
                op = self._validated(data, slot)
                if op is None:
                    continue
            ops.append(op)
            slots.append(slot)
        if not ops:
            return
        self.in_hand = slots[0]
        results: Sequence[Any]
        try:
            results = await self._store_call(ops)
        except BeamRoutingError as exc:  # the store answers every operation with a typed error
            results = [exc] * len(ops)
        self._answer(ops, slots, results)

    def _validated(self, data: bytes, slot: Any) -> _Op | None:
        """The operation ``data`` asks for, or ``None`` after answering ``slot`` with why it is not valid."""
        try:
            op = self.operation(self.decode(data))
        except msgspec.DecodeError:
            self.mailbox.deliver(slot, self.bad_message)
            return None
        except RoutingError as exc:
            self.mailbox.deliver(slot, self.encode(failed(exc)))
            return None
        if self.repeats(op):
            known = self._known
            if len(known) >= _KNOWN_MESSAGES or self._known_bytes > _KNOWN_BYTES:
                known.clear()
                self._known_bytes = 0
            known[data] = op
            self._known_bytes += len(data)
        return op

    def serve_one(self, envelope: Envelope, apply: Callable[[_Op], Any]) -> None:
        """:meth:`handle_batch` of one envelope, with the store's synchronous ``apply`` (see :meth:`apply_now`)."""
        data, slot = envelope
        op = self._known.get(data)
        if op is None:
            op = self._validated(data, slot)
            if op is None:
                return
        try:
            result = apply(op)
        except BeamRoutingError as exc:
            result = exc
        # Any other exception crashes the actor, blaming this caller (the one in hand).
        if type(result) is self.passthrough:
            self.mailbox.deliver(slot, result)  # type: ignore[arg-type]
        else:
            self._answer_one(slot, op, result)

    def _answer_one(self, slot: Any, op: _Op, result: Any) -> None:
        """Answer ``slot`` with ``result`` encoded: an error (raised or answered) or the reply to ``op``."""
        if isinstance(result, BeamRoutingError):
            self.mailbox.deliver(slot, self.encode(failed(result)))
        else:
            self.mailbox.deliver(slot, self.reply(op, result))

    def _answer(self, ops: list[_Op], slots: list[Any], results: Sequence[Any]) -> None:
        """Answer each of ``ops`` with its store result; crash on the first :class:`StoreCrash`.

        Operations the answer left out (after a crash that ended it) stay unanswered, for
        the restarted actor to serve.
        """
        if len(results) > len(ops):
            raise RuntimeError(f"the store answered {len(results)} results for {len(ops)} operations")
        deliver = self.mailbox.deliver
        passthrough = self.passthrough
        crash: int | None = None
        for index, result in enumerate(results):
            if type(result) is passthrough:
                deliver(slots[index], result)  # type: ignore[arg-type]
                continue
            if isinstance(result, StoreCrash):
                if crash is None:
                    crash = index
                continue  # the first crash is blamed below; a later one is served again
            slot = self.in_hand = slots[index]
            self._answer_one(slot, ops[index], result)
        if crash is not None:
            self.in_hand = slots[crash]
            marker = results[crash]
            raise marker.error
        if len(results) < len(ops):
            self.in_hand = slots[len(results)]
            raise RuntimeError(f"the store answered {len(results)} of {len(ops)} operations")

    async def run(self, carried: list[Envelope]) -> None:
        """Serve the mailbox, starting with ``carried`` (what a crashed incarnation left).

        Returns when the mailbox is closed; raises :class:`ActorExit` on a crash.
        """
        drain = self.mailbox.drain
        receive = self.mailbox.receive
        checkpoint = self.mailbox.checkpoint
        control = self.control
        batch = self._batch = carried
        yield_again = self.mailbox.yield_again
        apply_now = self._apply_now
        serve_one = self.serve_one
        retry = False
        try:
            while True:
                try:  # drain every pending message
                    drain(batch)
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
                if apply_now is not None and len(batch) == 1:
                    serve_one(batch[0], apply_now)
                else:
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


async def _not_running(data: bytes) -> Answer:
    raise RouterClosed("the router is not running (use it inside 'async with Router() as router')")


class ActorClient:
    """The caller's side of one actor: encodes a message, sends it, reads the reply.

    Until :meth:`connect` (and after :meth:`disconnect`) every call raises
    :class:`beamrouting.RouterClosed`.
    """

    __slots__ = ("_decode", "call", "encode")

    def __init__(self) -> None:
        self.encode = new_encoder().encode
        self._decode = reply_decoder().decode
        self.call: Callable[[bytes], Awaitable[Answer]] = _not_running
        """Send encoded bytes to the actor and await its answer (the mailbox's ``call``)."""

    def connect(self, call: Callable[[bytes], Awaitable[Answer]]) -> None:
        """Send through ``call`` (a running mailbox's) from now on."""
        self.call = call

    def disconnect(self) -> None:
        """Refuse calls from now on, as before :meth:`connect`."""
        self.call = _not_running

    def error(self, answer: Answer) -> BeamRoutingError:
        """The error an unexpected answer stands for."""
        reply = self._decode(answer) if type(answer) is bytes else Decided(answer)  # type: ignore[arg-type]
        return error_from_reply(reply)

    async def ask(self, message: Any, expected: type[_ReplyT]) -> _ReplyT:
        """Send ``message``; return the reply if it is an ``expected``, else raise the error it carries."""
        answer = await self.call(self.encode(message))
        reply = self._decode(answer) if type(answer) is bytes else Decided(answer)  # type: ignore[arg-type]
        if type(reply) is expected:
            return reply
        raise error_from_reply(reply)
