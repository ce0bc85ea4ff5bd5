"""Test stores: a :class:`~beamrouting.MemoryStore` whose batches a test can hold at a gate.

They stand in for a slow or stuck store, so a test can fill a mailbox, crash an actor with
a batch in hand, or plant a store failure on one operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beamrouting import MemoryStore, StoreCrash, StoreUnavailable
from beamrouting.store import (
    LookupOp,
    RegisterOp,
    RoutingOp,
    RoutingResult,
    SessionOp,
    SessionResult,
    UnregisterOp,
)
from tests._helpers import Gate

__all__ = ["GatedSessionStore", "GatedStore", "HeldAnswersStore", "UnregisterOutageStore"]


class GatedStore(MemoryStore):
    """A MemoryStore whose selections wait while the gate is closed (a slow or stuck store)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gate = Gate()

    @property
    def waiting(self) -> int:
        return self.gate.waiting

    def close_gate(self) -> None:
        self.gate.close()

    def open_gate(self) -> None:
        self.gate.open()

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        await self.gate.pass_through()
        return await super().routing_batch(ops)


class HeldAnswersStore(MemoryStore):
    """A MemoryStore that applies each routing batch at once but holds its answers while the
    gate is closed (a store whose replies are slow: the state changed, the caller does not know yet)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gate = Gate()

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        results = await super().routing_batch(ops)
        await self.gate.pass_through()
        return results


class GatedSessionStore(MemoryStore):
    """A MemoryStore whose session batches wait while the gate is closed, and whose
    registration of the session id ``"boom"`` (or lookup of ``"unavailable"``) fails."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()
        self.batches: list[list[SessionOp]] = []

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        await self.gate.pass_through()
        self.batches.append(list(ops))
        results: list[SessionResult] = []
        for op in ops:
            if isinstance(op, RegisterOp) and op.handle.session_id == "boom":
                results.append(StoreCrash(RuntimeError("planted bug")))
                break
            if isinstance(op, LookupOp) and op.session_id == "unavailable":
                results.append(StoreUnavailable("planted outage"))
                continue
            results.extend(await super().session_batch([op]))
        return results


class UnregisterOutageStore(MemoryStore):
    """A MemoryStore whose session batches raise :class:`StoreUnavailable` while they hold an
    unregistration and ``failing`` is set (a store that cannot be reached just then)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.failing = True
        self.refused = 0

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        if self.failing and any(isinstance(op, UnregisterOp) for op in ops):
            self.refused += 1
            raise StoreUnavailable("planted outage while unregistering")
        return await super().session_batch(ops)
