"""The store conformance suite (``beamrouting.testing.check_store``) against every store.

The memory store, the Redis store (asyncio and uvloop only, a fresh key prefix per store)
and a dict-backed store written here from public names only all pass it; stores with a
planted bug fail it, so the suite can fail.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from beamrouting import Catalog, MemoryStore, Policy, RedisStore, RequestLimits, RoutingEngine, SessionExists
from beamrouting.store import (
    ClearOp,
    DeleteProfileOp,
    EnsureTablesOp,
    ExplainOp,
    Journal,
    ListSessionsOp,
    LookupOp,
    PutProfileOp,
    ReadJournalOp,
    ReadStatesOp,
    RegisterOp,
    ReleaseOp,
    ReportOp,
    RestoreOp,
    RoutingOp,
    RoutingResult,
    SelectOp,
    SessionHandle,
    SessionOp,
    SessionResult,
    Store,
    UnregisterOp,
    run_batch,
)
from beamrouting.testing import check_store
from tests._helpers import ASYNCIO_BACKENDS
from tests._redis import import_redis_or_skip

pytestmark = pytest.mark.anyio


class DictStore:
    """A third-party store in a few lines: sessions in a plain dict, routing by a RoutingEngine.

    It uses public names only (``beamrouting`` and ``beamrouting.store``), as a store written
    outside the package would.
    """

    def __init__(self) -> None:
        self.engine = RoutingEngine()
        self.sessions: dict[str, SessionHandle] = {}

    @property
    def catalog(self) -> Catalog:
        return self.engine.catalog

    @property
    def limits(self) -> RequestLimits:
        return self.engine.limits

    @property
    def clock(self) -> Callable[[], float]:
        return time.time

    async def start(self) -> None:
        """Nothing to acquire."""

    async def aclose(self) -> None:
        """Nothing to release; the state stays for the next start."""

    def journal_source(self) -> Journal:
        return self.engine.journal_ring

    async def watch(self, changed: Callable[[], None]) -> None:
        """It cannot tell when a backend comes free: waiting callers wake at their deadlines."""

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        return run_batch(ops, self._route)

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        return run_batch(ops, self._session)

    def _route(self, op: RoutingOp) -> RoutingResult:
        engine = self.engine
        if isinstance(op, SelectOp):
            return engine.select_normalized(op.request)
        if isinstance(op, ExplainOp):
            return engine.explain_normalized(op.request)
        if isinstance(op, ClearOp):
            engine.clear()
            return None
        if isinstance(op, EnsureTablesOp):
            return None  # a dict needs no tables
        if isinstance(op, PutProfileOp):
            engine.put_policy_profile(op.profile_id, op.profile)
            return None
        if isinstance(op, DeleteProfileOp):
            return engine.delete_policy_profile(op.profile_id)
        if isinstance(op, ReadJournalOp):
            return engine.journal(op.event_type, op.limit)
        if isinstance(op, ReportOp):
            return engine.report(op.backend, op.outcome, retry_at=op.retry_at, retry_after=op.retry_after)
        if isinstance(op, RestoreOp):
            return engine.restore(op.backend)
        if isinstance(op, ReleaseOp):
            return engine.release(op.affinity_key)
        if isinstance(op, ReadStatesOp):
            return list(engine.backend_states())
        raise TypeError(f"not a routing operation: {op!r}")

    def _session(self, op: SessionOp) -> SessionResult:
        sessions = self.sessions
        if isinstance(op, RegisterOp):
            if op.exclusive and op.handle.session_id in sessions:
                raise SessionExists(f"session {op.handle.session_id!r} is live")
            sessions.pop(op.handle.session_id, None)  # a re-registration moves to the end
            sessions[op.handle.session_id] = op.handle
            return None
        if isinstance(op, UnregisterOp):
            sessions.pop(op.session_id, None)
            return None
        if isinstance(op, LookupOp):
            handle = sessions.get(op.session_id)
            return None if handle is None else handle.backend
        if isinstance(op, ListSessionsOp):
            return list(sessions.values())
        raise TypeError(f"not a session operation: {op!r}")


# --------------------------------------------------------------------------- stores that pass


async def test_the_memory_store_passes_the_store_conformance_suite() -> None:
    await check_store(MemoryStore)


async def test_a_dict_backed_store_of_public_names_passes_the_store_conformance_suite() -> None:
    assert isinstance(DictStore(), Store)
    await check_store(DictStore)


@pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)  # the Redis store refuses trio
async def test_the_redis_store_passes_the_store_conformance_suite(redis_url: str) -> None:
    import_redis_or_skip()
    await check_store(lambda: RedisStore(redis_url, prefix=f"beamrouting-test:{uuid.uuid4().hex}:"))


# --------------------------------------------------------------------------- stores that fail


class SkippingRoundRobinStore(MemoryStore):
    """Applies each round-robin selection twice and answers the second decision."""

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        answers = await super().routing_batch(ops)
        for index, op in enumerate(ops):
            if isinstance(op, SelectOp) and op.request.policy is Policy.ROUND_ROBIN:
                answers[index] = (await super().routing_batch([op]))[0]
        return answers


class ReversedSessionsStore(MemoryStore):
    """Answers a session batch in reverse order."""

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        return list(reversed(await super().session_batch(ops)))


class ForgetfulStore(MemoryStore):
    """Forgets its counters and bindings when closed."""

    async def aclose(self) -> None:
        self.engine.clear()


@pytest.mark.parametrize(
    ("make_store", "message"),
    [
        pytest.param(
            SkippingRoundRobinStore,
            r"store contract: \{'policy': 'round_robin'\} selects .*'backend': 'claude'.*, as the engine does",
            id="wrong-round-robin-backend",
        ),
        pytest.param(
            ReversedSessionsStore,
            "store contract: session operations apply in order",
            id="sessions-out-of-order",
        ),
        pytest.param(
            ForgetfulStore, "store contract: selections go to .*, as in the engine", id="state-lost-on-close"
        ),
        pytest.param(object, r"make_store\(\) returned object, which is not a Store", id="not-a-store"),
    ],
)
async def test_a_broken_store_fails_the_store_conformance_suite(
    make_store: Callable[[], Any], message: str
) -> None:
    with pytest.raises(AssertionError, match=f"^{message}"):
        await check_store(make_store)
