"""The routing-table actor: owns sticky bindings, round-robin counters, profiles and the journal."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from .._core._errors import RoutingError, StoreUnavailable
from .._core._profiles import check_profile_id, parse_profile
from .._core._request import RouteRequest
from .._core._types import RouteDecision
from .._store._protocol import Store, StoreCrash
from ._actor import Actor, ActorControl
from ._mailbox._base import Envelope, Mailbox
from ._messages import (
    Clear,
    Deleted,
    DeleteProfile,
    EnsureTables,
    Events,
    Explain,
    Explained,
    GetJournal,
    Ok,
    PutProfile,
    Reply,
    RoutingMessage,
    Select,
    failed,
    routing_decoder,
)

__all__ = ["RoutingTable"]


class RoutingTable(Actor):
    """Serves :data:`~beamrouting._messages.RoutingMessage` from its store's routing half.

    Consecutive ``Select`` messages of a batch go to the store in one
    :meth:`~beamrouting._store.Store.select_batch` call; every other message is applied on
    its own, in mailbox order.
    """

    name: ClassVar[str] = "routing_table"

    def __init__(self, mailbox: Mailbox, store: Store, control: ActorControl) -> None:
        super().__init__(mailbox, store, control)
        self._decode = routing_decoder().decode
        self._validate = store.validate
        self._select_batch = store.select_batch
        self._deliver = mailbox.deliver
        self._ok = self.encode(Ok())

    async def handle_batch(self, batch: list[Envelope]) -> None:
        """Select each run of ``Select`` messages in one store call; apply the others in order."""
        decode = self._decode
        validate = self._validate
        requests: list[RouteRequest] = []
        slots: list[Any] = []
        for data, slot in batch:
            try:
                message: RoutingMessage = decode(data)
                if type(message) is Select:
                    validate(message.request)
                    requests.append(message.request)
                    slots.append(slot)
                    continue
            except msgspec.DecodeError:
                self._deliver(slot, self.bad_message)
                continue
            except RoutingError as exc:
                self._deliver(slot, self.encode(failed(exc)))
                continue
            if requests:  # the run before this message goes first
                await self._select(requests, slots)
                requests, slots = [], []
            self.in_hand = slot
            self._deliver(slot, await self._apply(message))
        if requests:
            await self._select(requests, slots)

    async def _select(self, requests: list[RouteRequest], slots: list[Any]) -> None:
        """Select a run in one store call and answer each request; crash where the store did."""
        self.in_hand = slots[0]
        results: list[Any]
        try:
            results = await self._select_batch(requests)
        except (RoutingError, StoreUnavailable) as exc:
            results = [exc] * len(requests)
        deliver = self._deliver
        encode = self.encode
        for index, result in enumerate(results):
            slot = slots[index]
            if type(result) is RouteDecision:
                deliver(slot, result)  # immutable: handed over as it is (see Answer)
            elif isinstance(result, (RoutingError, StoreUnavailable)):
                deliver(slot, encode(failed(result)))
            else:
                self.in_hand = slot
                if isinstance(result, StoreCrash):
                    raise result.error
                raise TypeError(f"the store answered {result!r}, not a decision, an error or a crash")
        if len(results) < len(requests):
            self.in_hand = slots[len(results)]
            raise RuntimeError(f"the store answered {len(results)} of {len(requests)} requests")

    async def _apply(self, message: RoutingMessage) -> bytes:
        store = self.store
        reply: Reply
        try:
            match message:
                case Clear():
                    await store.clear()
                    return self._ok
                case EnsureTables():
                    await store.ensure_tables()
                    return self._ok
                case PutProfile(profile_id, profile):
                    # Never trust the bytes: re-validate the profile as if it came from a user.
                    checked = parse_profile(profile.to_dict())
                    await store.put_policy_profile(check_profile_id(profile_id), checked)
                    return self._ok
                case DeleteProfile(profile_id):
                    reply = Deleted(await store.delete_policy_profile(profile_id))
                case GetJournal(event_type, limit):
                    reply = Events(await store.journal(event_type, limit))
                case Explain(request):
                    store.validate(request)
                    reply = Explained(await store.explain(request))
                case _:
                    raise AssertionError(f"unhandled message {message!r}")
        except (RoutingError, StoreUnavailable) as exc:
            reply = failed(exc)
        return self.encode(reply)
