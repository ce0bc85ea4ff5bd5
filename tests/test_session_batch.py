"""The session half of a store is batch-oriented: ``Store.session_batch`` and the actor using it.

The session-registry actor hands its store every session message it drained at once; the
store applies them in order and answers each. A crash while applying one blames only its
caller; the restarted actor serves the ones after it. (The Redis store's batching is
tested in test_redis_store.py.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from beamrouting import ActorCrashed, MemoryStore, Router, SessionHandle, StoreCrash, StoreUnavailable
from beamrouting._runtime._messages import ListSessions, LookupSession, Register, Unregister
from beamrouting._store._protocol import SessionOp, SessionResult
from tests._helpers import Gate, settle_into, wait_for

pytestmark = pytest.mark.anyio


class GatedSessionStore(MemoryStore):
    """A MemoryStore whose session batches wait while the gate is closed, and whose
    registration of the session id ``"boom"`` (or lookup of ``"unavailable"``) fails."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()
        self.batches: list[list[SessionOp]] = []

    async def session_batch(self, ops: list[SessionOp]) -> list[SessionResult]:
        await self.gate.pass_through()
        self.batches.append(list(ops))
        return await super().session_batch(ops)

    async def register_session(self, handle: SessionHandle) -> None:
        if handle.session_id == "boom":
            raise RuntimeError("planted bug")
        await super().register_session(handle)

    async def session_backend(self, session_id: str) -> str | None:
        if session_id == "unavailable":
            raise StoreUnavailable("planted outage")
        return await super().session_backend(session_id)


def session_depth(router: Router) -> int:
    assert router._supervisor is not None
    return router._supervisor.child("session_registry").mailbox.depth


async def test_memory_store_session_batch_applies_in_order() -> None:
    store = MemoryStore()
    one, two = SessionHandle("s-1", "codex", {"k": "v"}), SessionHandle("s-2", "claude", {})
    results = await store.session_batch(
        [
            Register(one),
            LookupSession("s-1"),
            Register(two),
            Unregister("s-1"),
            LookupSession("s-1"),
            Unregister("never-registered"),
            Register(one),
            ListSessions(),
        ]
    )
    assert results == [None, "codex", None, None, None, None, None, [two, one]]
    assert await store.session_batch([]) == []


async def test_memory_store_session_batch_stops_at_a_crash() -> None:
    store = GatedSessionStore()
    results = await store.session_batch(
        [
            Register(SessionHandle("a", "codex", {})),
            LookupSession("unavailable"),
            Register(SessionHandle("boom", "codex", {})),
            Register(SessionHandle("c", "codex", {})),
        ]
    )
    assert results[0] is None
    assert isinstance(results[1], StoreUnavailable)
    assert isinstance(results[2], StoreCrash) and isinstance(results[2].error, RuntimeError)
    assert len(results) == 3  # "c" was not applied
    assert [h.session_id for h in await store.sessions()] == ["a"]


async def test_a_crash_in_a_session_batch_blames_only_its_caller() -> None:
    store = GatedSessionStore()
    async with Router(store=store) as router:
        outcomes: dict[str, Any] = {}
        calls: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("register a", lambda: router.register_session("a", "codex")),
            ("lookup unavailable", lambda: router.session_backend("unavailable")),
            ("register boom", lambda: router.register_session("boom", "claude")),
            ("register c", lambda: router.register_session("c", "gemini")),
            ("lookup a", lambda: router.session_backend("a")),
            ("list", router.sessions),
        ]
        store.gate.close()
        async with anyio.create_task_group() as tg:
            tg.start_soon(settle_into, outcomes, "first", router.register_session("first", "copilot"))
            await wait_for(lambda: store.gate.waiting == 1)  # the actor holds it at the gate
            for count, (name, job) in enumerate(calls, 1):
                tg.start_soon(settle_into, outcomes, name, job())
                await wait_for(lambda count=count: session_depth(router) == count)  # type: ignore[misc]
            store.gate.open()
        assert isinstance(outcomes.pop("lookup unavailable"), StoreUnavailable)
        assert isinstance(outcomes.pop("register boom"), ActorCrashed)
        assert outcomes == {
            "first": SessionHandle("first", "copilot", {}),
            "register a": SessionHandle("a", "codex", {}),
            "register c": SessionHandle("c", "gemini", {}),
            "lookup a": "codex",
            "list": [
                SessionHandle("first", "copilot", {}),
                SessionHandle("a", "codex", {}),
                SessionHandle("c", "gemini", {}),
            ],
        }
        assert (await router.statistics()).restarts == {"routing_table": 0, "session_registry": 1}
    # One batch held the six calls; it stopped at "boom"; the restarted actor served the rest.
    assert [len(batch) for batch in store.batches[:3]] == [1, 6, 3]
