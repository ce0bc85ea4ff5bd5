"""The in-memory store, the embedded default: a :class:`~beamrouting.RoutingEngine` and a dict of sessions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._core._catalog import Catalog
from .._core._engine import RoutingEngine
from .._core._journal import Journal
from .._core._types import SessionHandle
from ._protocol import (
    ClearOp,
    DeleteProfileOp,
    EnsureTablesOp,
    ExplainOp,
    ListSessionsOp,
    LookupOp,
    PutProfileOp,
    ReadJournalOp,
    RegisterOp,
    RoutingOp,
    RoutingResult,
    SelectOp,
    SessionOp,
    SessionResult,
    UnregisterOp,
    run_batch,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """The in-memory :class:`~beamrouting.store.Store`: one :class:`~beamrouting.RoutingEngine` plus a dict of sessions.

    ``MemoryStore(catalog, **engine_options)`` builds the engine (options as
    :class:`~beamrouting.RoutingEngine`'s, which raises :class:`TypeError` or
    :class:`ValueError` for a bad one); ``MemoryStore(engine=engine)`` serves an existing
    one (passing both raises :class:`TypeError`). The state lives as long as the store
    object, across actor restarts and router restarts.
    """

    def __init__(
        self, catalog: Catalog | None = None, *, engine: RoutingEngine | None = None, **engine_options: Any
    ) -> None:
        if engine is None:
            engine = RoutingEngine(catalog, **engine_options)
        elif catalog is not None or engine_options:
            raise TypeError("pass either an engine or a catalogue and engine options, not both")
        elif not isinstance(engine, RoutingEngine):
            raise TypeError(f"engine must be a RoutingEngine, not {type(engine).__name__}")
        self.engine = engine
        """The engine that decides and keeps the routing half of the state."""
        self._sessions: dict[str, SessionHandle] = {}
        select = engine.select_normalized
        self._routing: dict[type[Any], Callable[[Any], RoutingResult]] = {
            SelectOp: lambda op: select(op.request),
            ExplainOp: lambda op: engine.explain_normalized(op.request),
            ClearOp: lambda op: engine.clear(),
            EnsureTablesOp: lambda op: engine.ensure_tables(),
            PutProfileOp: lambda op: engine.put_policy_profile(op.profile_id, op.profile),
            DeleteProfileOp: lambda op: engine.delete_policy_profile(op.profile_id),
            ReadJournalOp: lambda op: engine.journal(op.event_type, op.limit),
        }
        self._session_ops: dict[type[Any], Callable[[Any], SessionResult]] = {
            RegisterOp: self._register,
            UnregisterOp: self._unregister,
            LookupOp: self._lookup,
            ListSessionsOp: lambda op: list(self._sessions.values()),
        }

    @property
    def catalog(self) -> Catalog:
        """The engine's catalogue."""
        return self.engine.catalog

    async def start(self) -> None:
        """Nothing to acquire."""

    async def aclose(self) -> None:
        """Nothing to release; the state stays for the next start."""

    def journal_source(self) -> Journal:
        """The engine's journal (:attr:`RoutingEngine.journal_ring <beamrouting.RoutingEngine.journal_ring>`)."""
        return self.engine.journal_ring

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        """Apply each operation with the engine, in order (:func:`~beamrouting.store.run_batch`)."""
        handlers = self._routing
        return run_batch(ops, lambda op: handlers[type(op)](op))

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        """Apply each operation to the dict of sessions, in order (:func:`~beamrouting.store.run_batch`)."""
        handlers = self._session_ops
        return run_batch(ops, lambda op: handlers[type(op)](op))

    def _register(self, op: RegisterOp) -> None:
        sessions = self._sessions
        sessions.pop(op.handle.session_id, None)
        sessions[op.handle.session_id] = op.handle

    def _unregister(self, op: UnregisterOp) -> None:
        self._sessions.pop(op.session_id, None)

    def _lookup(self, op: LookupOp) -> str | None:
        handle = self._sessions.get(op.session_id)
        return None if handle is None else handle.backend
