"""The store conformance suite (``beamrouting.testing.check_store``) against every store.

The memory store, the Redis store (asyncio and uvloop only, a fresh key prefix per store)
and a dict-backed store written here from public names only all pass it; stores with a
planted bug fail it, so the suite can fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from beamrouting import Catalog, MemoryStore, Policy, RedisStore, RequestLimits, RouteDecision, RoutingEngine
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
    Store,
    UnregisterOp,
    run_batch,
)
from beamrouting.testing import check_store
from tests._helpers import ASYNCIO_BACKENDS
from tests._redis import import_redis_or_skip

pytestmark = pytest.mark.anyio


class DictStore:
    """A third-party store in a few lines: routing and sessions by a RoutingEngine, operations by a dict.

    It uses public names only (``beamrouting`` and ``beamrouting.store``), as a store written
    outside the package would, and accepts the options ``check_store`` passes.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        limits: Mapping[str, int] | None = None,
        weights: Mapping[str, int] | None = None,
    ) -> None:
        self.engine = RoutingEngine(clock=clock, limits=limits, weights=weights)
        state = self.engine.state
        self.routing: dict[type[Any], Callable[[Any], RoutingResult]] = {
            SelectOp: self._select,
            ExplainOp: lambda op: self.engine.explain_normalized(op.request),
            ClearOp: lambda op: self.engine.clear(),
            EnsureTablesOp: lambda op: None,  # a dict needs no tables
            PutProfileOp: lambda op: self.engine.put_policy_profile(op.profile_id, op.profile),
            DeleteProfileOp: lambda op: self.engine.delete_policy_profile(op.profile_id),
            ReadJournalOp: lambda op: self.engine.journal(op.event_type, op.limit),
            ReportOp: lambda op: self.engine.report(
                op.backend, op.outcome, retry_at=op.retry_at, retry_after=op.retry_after
            ),
            RestoreOp: lambda op: self.engine.restore(op.backend),
            ReleaseOp: lambda op: self.engine.release(op.affinity_key),
            ReadStatesOp: lambda op: list(self.engine.backend_states()),
            ReconfigureOp: lambda op: self.engine.reconfigure(op.settings),
        }
        self.session_ops: dict[type[Any], Callable[[Any], SessionResult]] = {
            RegisterOp: lambda op: state.register(op.handle, exclusive=op.exclusive),
            UnregisterOp: lambda op: self.engine.unregister_session(op.session_id),
            LookupOp: lambda op: self.engine.session_backend(op.session_id),
            ListSessionsOp: lambda op: self.engine.sessions(),
        }

    @property
    def catalog(self) -> Catalog:
        return self.engine.catalog

    @property
    def limits(self) -> RequestLimits:
        return self.engine.limits

    @property
    def clock(self) -> Callable[[], float]:
        return self.engine.state.clock

    async def start(self) -> None:
        """Nothing to acquire."""

    async def aclose(self) -> None:
        """Nothing to release; the state stays for the next start."""

    def journal_source(self) -> Journal:
        return self.engine.journal_ring

    async def watch(self, changed: Callable[[], None]) -> None:
        """It cannot tell when a backend comes free: waiting callers wake at their deadlines."""

    async def routing_batch(self, ops: Sequence[RoutingOp]) -> list[RoutingResult]:
        return run_batch(ops, lambda op: self.routing[type(op)](op))

    async def session_batch(self, ops: Sequence[SessionOp]) -> list[SessionResult]:
        return run_batch(ops, lambda op: self.session_ops[type(op)](op))

    def _select(self, op: SelectOp) -> RouteDecision:
        if op.session_id is None:
            return self.engine.select_normalized(op.request)
        return self.engine.select_and_register(op.request, op.session_id, op.metadata, exclusive=op.exclusive)


# --------------------------------------------------------------------------- stores that pass


async def test_the_memory_store_passes_the_store_conformance_suite() -> None:
    assert await check_store(MemoryStore) == []  # every check ran


async def test_a_dict_backed_store_of_public_names_passes_the_store_conformance_suite() -> None:
    assert isinstance(DictStore(), Store)
    assert await check_store(DictStore) == []


@pytest.mark.parametrize("anyio_backend", ASYNCIO_BACKENDS)  # the Redis store refuses trio
async def test_the_redis_store_passes_the_store_conformance_suite(redis_url: str) -> None:
    import_redis_or_skip()

    def make_store(**options: Any) -> RedisStore:
        return RedisStore(redis_url, prefix=f"beamrouting-test:{uuid.uuid4().hex}:", **options)

    assert await check_store(make_store) == []


async def test_checks_that_need_an_option_the_store_does_not_take_are_skipped_and_named() -> None:
    skipped = await check_store(lambda: MemoryStore())
    assert skipped == ["learning", "temporary_backends", "capacity", "weighted"]


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
