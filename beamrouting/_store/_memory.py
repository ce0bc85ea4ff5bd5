"""The in-memory store, the embedded default: a :class:`beamrouting.RoutingEngine`, which keeps all the state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio

from .._core._catalog import Catalog
from .._core._engine import RoutingEngine
from .._core._journal import Journal, JournalRecord
from .._core._request import RequestLimits
from .._core._types import RouteDecision
from ._protocol import (
    ClearOp,
    DeleteProfileOp,
    EnsureTablesOp,
    ExplainOp,
    ListSessionsOp,
    LookupOp,
    PutProfileOp,
    ReadJournalOp,
    ReadStatesOp,
    ReconfigureOp,
    RegisterOp,
    ReleaseOp,
    ReportOp,
    RestoreOp,
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
    """The in-memory :class:`beamrouting.store.Store`: one :class:`beamrouting.RoutingEngine`, which keeps all the state.

    ``MemoryStore(catalog, **engine_options)`` builds the engine (options as
    :class:`beamrouting.RoutingEngine`'s, which raises :class:`TypeError` or
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
        """The engine that decides and keeps the state (routing and sessions)."""
        state = engine.state
        self._select_normalized = engine.select_normalized
        self._watchers: list[Callable[[], None]] = []
        self._routing: dict[type[Any], Callable[[Any], RoutingResult]] = {
            SelectOp: self._select,
            ExplainOp: lambda op: engine.explain_normalized(op.request),
            ClearOp: lambda op: engine.clear(),
            EnsureTablesOp: lambda op: engine.ensure_tables(),
            PutProfileOp: lambda op: engine.put_policy_profile(op.profile_id, op.profile),
            DeleteProfileOp: lambda op: engine.delete_policy_profile(op.profile_id),
            ReadJournalOp: lambda op: engine.journal(op.event_type, op.limit),
            ReportOp: lambda op: engine.report(
                op.backend, op.outcome, retry_at=op.retry_at, retry_after=op.retry_after
            ),
            RestoreOp: lambda op: engine.restore(op.backend),
            ReleaseOp: lambda op: state.release(op.affinity_key),
            ReadStatesOp: lambda op: list(engine.backend_states()),
            ReconfigureOp: self._reconfigure,
        }
        self._session_ops: dict[type[Any], Callable[[Any], SessionResult]] = {
            RegisterOp: lambda op: state.register(op.handle, exclusive=op.exclusive),
            UnregisterOp: self._unregister,
            LookupOp: self._lookup,
            ListSessionsOp: lambda op: engine.sessions(),
        }

    @property
    def catalog(self) -> Catalog:
        """The engine's catalogue."""
        return self.engine.catalog

    @property
    def limits(self) -> RequestLimits:
        """The engine's size limits of requests and sessions."""
        return self.engine.limits

    @property
    def clock(self) -> Callable[[], float]:
        """The engine's wall clock."""
        return self.engine.state.clock

    async def start(self) -> None:
        """Nothing to acquire."""

    async def aclose(self) -> None:
        """Nothing to release; the state stays for the next start."""

    async def watch(self, changed: Callable[[], None]) -> None:
        """Call ``changed()`` when a session unregisters or a backend's health changes; until cancelled."""
        journal = self.engine.journal_ring
        self._watchers.append(changed)

        def health(record: JournalRecord) -> None:
            if record.decision is None:  # an outcome or backend_health event
                changed()

        journal.add_listener(health)
        try:
            await anyio.sleep_forever()
        finally:
            journal.remove_listener(health)
            self._watchers.remove(changed)

    def journal_source(self) -> Journal:
        """The engine's journal (:attr:`beamrouting.RoutingEngine.journal_ring`)."""
        return self.engine.journal_ring

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        """Apply each of ``ops`` with the engine, in order; return their answers (:func:`beamrouting.store.run_batch`)."""
        return run_batch(ops, self.apply_routing)

    def apply_routing(self, op: RoutingOp) -> RoutingResult:
        """Apply one routing operation at once, as :meth:`routing_batch` applies each of a batch.

        The in-memory store's work never waits, so the routing-table actor serves a lone
        message with this, without a coroutine. Returns the operation's answer; raises the
        :class:`beamrouting.BeamRoutingError` that answers it.
        """
        if type(op) is SelectOp and op.session_id is None:  # the hot path first
            return self._select_normalized(op.request)
        return self._routing[type(op)](op)

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        """Apply each of ``ops`` to the engine's sessions, in order; return their answers (:func:`beamrouting.store.run_batch`)."""
        handlers = self._session_ops
        return run_batch(ops, lambda op: handlers[type(op)](op))

    def _select(self, op: SelectOp) -> RouteDecision:
        if op.session_id is None:
            return self.engine.select_normalized(op.request)
        return self.engine.select_and_register(op.request, op.session_id, op.metadata, exclusive=op.exclusive)

    def _reconfigure(self, op: ReconfigureOp) -> None:
        self.engine.reconfigure(op.settings)
        for changed in self._watchers:  # a limit may have risen, or learning stopped
            changed()

    def _unregister(self, op: UnregisterOp) -> None:
        if self.engine.state.unregister(op.session_id):
            for changed in self._watchers:  # a session slot freed
                changed()

    def _lookup(self, op: LookupOp) -> str | None:
        handle = self.engine.state.sessions.get(op.session_id)
        return None if handle is None else handle.backend
