"""The store protocol: everything a store behind a :class:`beamrouting.Router` implements.

A store keeps a router's state across actor restarts (and, when shared, across the
processes of a fleet). It implements :class:`Store`: nine members, whose operations and
answers are the public types below. :class:`MemoryStore` is the embedded default and
:class:`beamrouting.RedisStore` the shared one; :func:`beamrouting.testing.check_store`
is the conformance suite a third-party implementation runs. A minimal store can delegate
the routing half to a :class:`beamrouting.RoutingEngine`::

    from beamrouting import RoutingEngine
    from beamrouting.store import SelectOp, run_batch


    class MyStore:
        def __init__(self) -> None:
            self.engine = RoutingEngine()

        async def routing_batch(self, ops):
            return run_batch(ops, self._apply)

        def _apply(self, op):
            if isinstance(op, SelectOp):
                return self.engine.select_normalized(op.request)
            ...
"""

from typing import TypeAlias

from ._core._explain import Explanation
from ._core._health import BackendState, BackendStatus, HealthPolicy, Outcome
from ._core._journal import Journal, JournalRecord
from ._core._profiles import PolicyProfile
from ._core._request import RouteRequest
from ._core._types import JournalEvent, RouteDecision, SessionHandle
from ._store import _protocol
from ._store._memory import MemoryStore
from ._store._protocol import (
    ClearOp,
    DeleteProfileOp,
    EnsureTablesOp,
    ExplainOp,
    JournalFeed,
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
    SelectOp,
    Store,
    StoreCrash,
    UnregisterOp,
    run_batch,
)

RoutingOp: TypeAlias = _protocol.RoutingOp
"""An operation of :meth:`Store.routing_batch`: one of the ``*Op`` classes it serves."""
RoutingResult: TypeAlias = _protocol.RoutingResult
"""One answer of :meth:`Store.routing_batch` (what each operation answers is on its class)."""
SessionOp: TypeAlias = _protocol.SessionOp
"""An operation of :meth:`Store.session_batch`: a register, unregister, lookup or listing."""
SessionResult: TypeAlias = _protocol.SessionResult
"""One answer of :meth:`Store.session_batch` (what each operation answers is on its class)."""

__all__ = [
    "BackendState",
    "BackendStatus",
    "ClearOp",
    "DeleteProfileOp",
    "EnsureTablesOp",
    "ExplainOp",
    "Explanation",
    "HealthPolicy",
    "Journal",
    "JournalEvent",
    "JournalFeed",
    "JournalRecord",
    "ListSessionsOp",
    "LookupOp",
    "MemoryStore",
    "Outcome",
    "PolicyProfile",
    "PutProfileOp",
    "ReadJournalOp",
    "ReadStatesOp",
    "ReconfigureOp",
    "RegisterOp",
    "ReleaseOp",
    "ReportOp",
    "RestoreOp",
    "RouteDecision",
    "RouteRequest",
    "RoutingOp",
    "RoutingResult",
    "SelectOp",
    "SessionHandle",
    "SessionOp",
    "SessionResult",
    "Store",
    "StoreCrash",
    "UnregisterOp",
    "run_batch",
]
