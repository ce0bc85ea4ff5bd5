"""The session half of a store is batch-oriented: ``Store.session_batch`` and the actor using it.

The session-registry actor hands its store every session message it drained at once; the
store applies them in order and answers each. A crash while applying one blames only its
caller; the restarted actor serves the ones after it. (The Redis store's batching is
tested in tests/stores/redis/test_store.py, run_batch in tests/stores/test_protocol.py.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from beamrouting import ActorCrashed, Router, SessionHandle, StoreUnavailable
from tests._helpers import settle_into, wait_for
from tests._stores import GatedSessionStore

pytestmark = pytest.mark.anyio


def session_depth(router: Router) -> int:
    assert router._supervisor is not None
    return router._supervisor.child("session_registry").mailbox.depth


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
