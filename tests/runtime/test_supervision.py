"""Supervision: crashes, restarts with state, restart intensity, orderly shutdown.

Each path is checked on asyncio, uvloop and trio: every caller is answered (never left
hanging), state survives restarts, and no task outlives the router.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from beamrouting import (
    ActorCrashed,
    MemoryStore,
    RouteDecision,
    Router,
    RouterClosed,
    RouteRequest,
    RouterUnavailable,
    RoutingEngine,
    StoreUnavailable,
)
from beamrouting._runtime._actor import InjectedCrash
from beamrouting.testing import crash_actor
from tests._helpers import wait_for
from tests._stores import GatedStore

pytestmark = pytest.mark.anyio

ROUND_ROBIN = {"policy": "round_robin"}
BACKENDS = ("claude", "codex", "copilot", "gemini", "opencode")


def depth(router: Router, actor: str = "routing_table") -> int:
    assert router._supervisor is not None
    return router._supervisor.child(actor).mailbox.depth


def task_ids() -> set[int]:
    return {task.id for task in anyio.get_running_tasks()}


class Outcomes:
    """Runs calls in the background and records how each ended."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        """In the order the calls ended (which trio shuffles among callers woken together)."""
        self.by_call: dict[int, Any] = {}
        """By the order the calls started."""

    async def select(self, router: Router, request: Any = ROUND_ROBIN) -> None:
        index = len(self.by_call)
        self.by_call[index] = None
        try:
            decision = await router.select_backend(request)
            result: Any = decision.backend
        except (ActorCrashed, RouterClosed, RouterUnavailable) as exc:
            result = type(exc).__name__
        self.results.append(result)
        self.by_call[index] = result

    def count(self) -> Counter[Any]:
        return Counter(self.results)


async def queue_calls(
    tg: anyio.abc.TaskGroup, router: Router, outcomes: Outcomes, requests: list[Any]
) -> None:
    """Start one caller per request, each after the previous one's message is queued (so the
    mailbox order is known on every backend, trio's shuffled scheduling included)."""
    start = depth(router)
    for index, request in enumerate(requests, 1):
        tg.start_soon(outcomes.select, router, request)
        await wait_for_depth(router, start + index)


async def wait_for_depth(router: Router, expected: int) -> None:
    await wait_for(lambda: depth(router) == expected)


async def wait_for_restarts(router: Router, expected: int) -> None:
    async def restarted() -> bool:
        return (await router.statistics()).restarts["routing_table"] == expected

    await wait_for(restarted)


async def wait_for_time_after(moment: float) -> None:
    """Wait until the event loop's clock (the supervisor's) is past ``moment`` (uvloop's ticks in ms)."""
    await wait_for(lambda: anyio.current_time() > moment)


# --------------------------------------------------------------------------- crash and restart


async def test_crash_mid_load_with_1000_callers_answers_everyone_and_keeps_state() -> None:
    store = GatedStore()
    async with Router(store=store) as router:
        await router.put_policy_profile("team", {"default": "allow"})
        sticky = await router.select_backend({"policy": "sticky", "affinity_key": "workspace"})
        await router.register_session("s1", "codex")
        journal_before = await router.journal()

        outcomes = Outcomes()
        store.close_gate()
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.select, router)
            await wait_for(lambda: store.waiting == 1)  # one message in hand
            for _ in range(999):
                tg.start_soon(outcomes.select, router)
            await wait_for(lambda: depth(router) == 999)  # the others queued
            crash_actor(router, "routing_table")  # crashes on the next message: one of the 999
            store.open_gate()

        # Every caller answered: one crashed, 999 served (the crashed message was not applied).
        assert len(outcomes.results) == 1_000
        assert outcomes.count()["ActorCrashed"] == 1
        served = Counter(r for r in outcomes.results if r != "ActorCrashed")
        assert served == {"claude": 200, "codex": 200, "copilot": 200, "gemini": 200, "opencode": 199}

        stats = await router.statistics()
        assert stats.restarts == {"routing_table": 1, "session_registry": 0}
        assert stats.errors == {"actor_crashed": 1}
        # State intact: counters go on, the binding, the profile, the session and the journal stay.
        assert (await router.select_backend(ROUND_ROBIN)).backend == "opencode"
        again = await router.select_backend({"policy": "sticky", "affinity_key": "workspace"})
        assert again.backend == sticky.backend and again.reasons == ("reused sticky affinity backend",)
        assert (await router.select_backend({"policy_profile_id": "team"})).policy_profile_id == "team"
        assert await router.session_backend("s1") == "codex"
        journal = await router.journal()
        assert journal[: len(journal_before)] == journal_before
        assert len(journal) == len(journal_before) + 2 * (999 + 3)


async def test_crash_with_drained_batch_in_hand_serves_the_rest_after_restart() -> None:
    """The crash hits the first message of a drained batch; the rest is carried to the new actor."""
    async with Router() as router:
        crash_actor(router, "routing_table")
        outcomes = Outcomes()
        async with anyio.create_task_group() as tg:
            for _ in range(500):
                tg.start_soon(outcomes.select, router)
        assert outcomes.count()["ActorCrashed"] == 1
        assert len(outcomes.results) == 500
        assert sorted(Counter(r for r in outcomes.results if r != "ActorCrashed").values()) == [
            99,
            100,
            100,
            100,
            100,
        ]
        assert (await router.statistics()).restarts["routing_table"] == 1


class BoomEngine(RoutingEngine):
    """An engine with a bug: selecting for the affinity key ``"boom"`` raises."""

    def select_normalized(self, req: RouteRequest) -> RouteDecision:
        if req.affinity_key == "boom":
            raise RuntimeError("boom")
        return super().select_normalized(req)


class BoomStore(GatedStore):
    def __init__(self) -> None:
        super().__init__(engine=BoomEngine())


async def test_a_store_crash_inside_a_batch_blames_only_its_caller() -> None:
    store = BoomStore()
    async with Router(store=store) as router:
        outcomes = Outcomes()
        store.close_gate()
        boom = {"policy": "round_robin", "affinity_key": "boom"}
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.select, router, {"backend": "gemini"})
            await wait_for(lambda: store.waiting == 1)
            await queue_calls(
                tg, router, outcomes, [ROUND_ROBIN, ROUND_ROBIN, boom, ROUND_ROBIN, ROUND_ROBIN]
            )
            store.open_gate()
        # The batch [rr, rr, boom, rr, rr] is one store call; the store reports the crash at
        # "boom": the two before are answered, "boom" crashes, the restarted actor serves the rest.
        assert list(outcomes.by_call.values()) == [
            "gemini",
            "claude",
            "codex",
            "ActorCrashed",
            "copilot",
            "gemini",
        ]
        assert (await router.statistics()).restarts == {"routing_table": 1, "session_registry": 0}


async def test_a_store_crash_on_a_lone_message_blames_its_caller_and_keeps_state() -> None:
    """The in-memory store serves a lone message at once, without a batch: same crash rules."""
    async with Router(store=MemoryStore(engine=BoomEngine())) as router:
        assert [(await router.select_backend(ROUND_ROBIN)).backend for _ in range(2)] == ["claude", "codex"]
        with pytest.raises(ActorCrashed, match="boom"):
            await router.select_backend({"policy": "round_robin", "affinity_key": "boom"})
        assert (await router.select_backend(ROUND_ROBIN)).backend == "copilot"  # the counter survived
        assert (await router.statistics()).restarts == {"routing_table": 1, "session_registry": 0}


async def test_a_routing_batch_set_on_the_store_sees_every_selection_even_a_lone_one() -> None:
    store = MemoryStore()
    batches: list[int] = []
    own = store.routing_batch

    async def counted(ops: Any) -> Any:
        batches.append(len(ops))
        return await own(ops)

    store.routing_batch = counted  # type: ignore[method-assign]
    async with Router(store=store) as router:
        for _ in range(3):
            await router.select_backend(ROUND_ROBIN)
    assert batches == [1, 1, 1]


class AnsweringStore(MemoryStore):
    """Answers the affinity key ``"busy"`` with an error instead of raising it."""

    def apply_routing(self, op: Any) -> Any:
        if op.request.affinity_key == "busy":
            return StoreUnavailable("busy")
        return super().apply_routing(op)


async def test_an_error_a_store_answers_for_a_lone_message_is_raised_to_its_caller() -> None:
    async with Router(store=AnsweringStore()) as router:
        with pytest.raises(StoreUnavailable, match="busy"):
            await router.select_backend({"policy": "round_robin", "affinity_key": "busy"})
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"
        assert (await router.statistics()).restarts == {"routing_table": 0, "session_registry": 0}


async def test_callers_blocked_on_a_full_mailbox_are_all_served_in_order() -> None:
    store = GatedStore()
    async with Router(store=store, mailbox_size=2) as router:
        outcomes = Outcomes()
        store.close_gate()
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.select, router, {"backend": "gemini"})
            await wait_for(lambda: store.waiting == 1)  # in hand
            await queue_calls(tg, router, outcomes, [ROUND_ROBIN] * 7)  # 2 queued, 5 blocked
            store.open_gate()
        assert list(outcomes.by_call.values()) == ["gemini", *(BACKENDS * 2)[:7]]
        assert depth(router) == 0
        await router.select_backend(ROUND_ROBIN)  # and the mailbox goes on


@pytest.mark.parametrize("count", [0, 5])
async def test_a_wrong_count_of_queued_messages_loses_and_blocks_no_call(count: int) -> None:
    """The mailbox's count of queued messages is a hint: too low or too high, every call is served."""
    store = GatedStore()
    async with Router(store=store) as router:
        assert router._supervisor is not None
        mailbox = router._supervisor.child("routing_table").mailbox
        outcomes = Outcomes()
        store.close_gate()
        async with anyio.create_task_group() as tg:
            tg.start_soon(outcomes.select, router, {"backend": "gemini"})
            await wait_for(lambda: store.waiting == 1)  # in hand
            await queue_calls(tg, router, outcomes, [ROUND_ROBIN] * 3)
            mailbox.queued = count
            store.open_gate()
        assert list(outcomes.by_call.values()) == ["gemini", "claude", "codex", "copilot"]
        mailbox.queued = count
        assert (await router.select_backend(ROUND_ROBIN)).backend == "gemini"
        assert depth(router) == 0


async def test_session_registry_crash_keeps_sessions() -> None:
    async with Router() as router:
        await router.register_session("s1", "codex", {"k": "v"})
        crash_actor(router, "session_registry")
        with pytest.raises(ActorCrashed):
            await router.register_session("s2", "claude")
        assert [(h.session_id, h.backend, h.metadata) for h in await router.sessions()] == [
            ("s1", "codex", {"k": "v"})
        ]
        # select_backend(session id) asks the registry first: its crash reaches that caller.
        crash_actor(router, "session_registry")
        with pytest.raises(ActorCrashed):
            await router.select_backend("s1", {"policy": "failover"})
        decision = await router.select_backend("s1", {"policy": "failover"})
        assert decision.candidates[-1] == "codex"
        assert (await router.statistics()).restarts == {"routing_table": 0, "session_registry": 2}


async def test_crashes_spread_beyond_the_restart_period_never_give_up() -> None:
    period = 0.002
    async with Router(max_restarts=1, restart_period=period) as router:
        for crashes in range(1, 6):
            crash_actor(router, "routing_table")
            with pytest.raises(ActorCrashed):
                await router.clear()
            await wait_for_restarts(router, crashes)  # the supervisor has noted the time of it
            await wait_for_time_after(anyio.current_time() + period)
        assert (await router.select_backend(ROUND_ROBIN)).backend == "claude"
        assert (await router.statistics()).restarts["routing_table"] == 5


async def test_crash_actor_arguments() -> None:
    router = Router()
    with pytest.raises(RouterClosed):
        crash_actor(router, "routing_table")
    async with router:
        with pytest.raises(ValueError):
            crash_actor(router, "nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- giving up


async def test_too_many_crashes_give_up_cancel_the_block_and_fail_every_caller() -> None:
    store = GatedStore()
    router = Router(store=store, max_restarts=2, restart_period=60)
    outcomes = Outcomes()
    reached = False
    before = task_ids()
    async with anyio.create_task_group() as outside:  # callers that are not in the block
        with pytest.raises(RouterUnavailable) as caught:
            async with router:
                for _ in range(2):
                    crash_actor(router, "routing_table")
                    with pytest.raises(ActorCrashed):
                        await router.select_backend(ROUND_ROBIN)
                store.close_gate()
                outside.start_soon(outcomes.select, router)
                await wait_for(lambda: store.waiting == 1)
                await queue_calls(outside, router, outcomes, [ROUND_ROBIN] * 4)
                crash_actor(router, "routing_table")
                store.open_gate()
                await anyio.sleep_forever()  # the supervisor gives up and cancels this
                reached = True
    assert type(caught.value) is RouterUnavailable  # not an exception group
    assert isinstance(caught.value.__cause__, InjectedCrash)
    assert not reached
    # In hand: served; next: crashed (the third crash); the rest: the router is unavailable.
    assert list(outcomes.by_call.values()) == ["claude", "ActorCrashed"] + ["RouterUnavailable"] * 3
    with pytest.raises(RouterUnavailable):
        await router.select_backend(ROUND_ROBIN)
    with pytest.raises(RouterUnavailable):
        await router.sessions()
    stats = await router.statistics()
    assert stats.state == "unavailable"
    assert stats.restarts == {"routing_table": 2, "session_registry": 0}
    assert task_ids() <= before


async def test_giving_up_while_the_block_waits_on_a_call() -> None:
    store = GatedStore()
    router = Router(store=store, max_restarts=0)
    with pytest.raises(RouterUnavailable):
        async with router:
            store.close_gate()
            async with anyio.create_task_group() as tg:
                tg.start_soon(router.select_backend, ROUND_ROBIN)
                await wait_for(lambda: store.waiting == 1)
                crash_actor(router, "routing_table")
                tg.start_soon(router.select_backend, ROUND_ROBIN)
                await wait_for(lambda: depth(router) == 1)
                store.open_gate()
                await router.select_backend(ROUND_ROBIN)  # cancelled or RouterUnavailable


async def test_giving_up_answers_the_callers_of_the_other_actor_blocked_on_its_full_mailbox() -> None:
    store = GatedStore()
    router = Router(store=store, max_restarts=0, mailbox_size=1)
    outcomes = Outcomes()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as outside:
            with pytest.raises(RouterUnavailable):
                async with router:
                    store.close_gate()
                    outside.start_soon(outcomes.select, router)
                    await wait_for(lambda: store.waiting == 1)  # in hand
                    await queue_calls(outside, router, outcomes, [ROUND_ROBIN] * 3)  # 1 queued, 2 blocked
                    crash_actor(router, "session_registry")
                    with pytest.raises(ActorCrashed):
                        await router.sessions()
                    await anyio.sleep_forever()  # the supervisor gives up and cancels this
    assert list(outcomes.by_call.values()) == ["RouterUnavailable"] * 4
    assert depth(router) == 0
    assert store.waiting == 0


# --------------------------------------------------------------------------- shutdown


async def test_shutdown_answers_queued_callers_with_router_closed_and_leaves_no_task() -> None:
    store = GatedStore()
    router = Router(store=store, mailbox_size=3)
    outcomes = Outcomes()
    before = task_ids()
    async with anyio.create_task_group() as outside:
        async with router:
            store.close_gate()
            outside.start_soon(outcomes.select, router)
            await wait_for(lambda: store.waiting == 1)  # in hand
            await queue_calls(outside, router, outcomes, [ROUND_ROBIN] * 5)  # 3 queued, 2 blocked
            await router.register_session("s1", "claude")
        # Leaving the block: every caller is answered, none served.
        await wait_for(lambda: len(outcomes.results) == 6)
    assert outcomes.results == ["RouterClosed"] * 6
    assert store.waiting == 0
    assert task_ids() <= before
    with pytest.raises(RouterClosed):
        await router.select_backend(ROUND_ROBIN)
    assert (await router.statistics()).state == "closed"


async def test_the_blocks_own_exception_propagates_unwrapped() -> None:
    before = task_ids()
    with pytest.raises(KeyError):
        async with Router() as router:
            await router.select_backend(ROUND_ROBIN)
            raise KeyError("mine")
    assert task_ids() <= before


async def test_an_outer_cancellation_stops_the_router_cleanly() -> None:
    before = task_ids()
    router = Router()
    with anyio.CancelScope() as scope:
        async with router:
            await router.select_backend(ROUND_ROBIN)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert task_ids() <= before
    with pytest.raises(RouterClosed):
        await router.clear()


class FailingStore(MemoryStore):
    async def start(self) -> None:
        raise StoreUnavailable("no store today")


async def test_a_store_that_cannot_start_fails_the_enter() -> None:
    before = task_ids()
    router = Router(store=FailingStore())
    with pytest.raises(StoreUnavailable):
        async with router:
            raise AssertionError("not reached")
    assert task_ids() <= before
    with pytest.raises(RouterClosed):
        await router.select_backend(ROUND_ROBIN)
