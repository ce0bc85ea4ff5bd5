"""Capacity on the Router (memory store): live sessions against limits, admission atomic
with selection, first-in-first-out waiting for a free slot, ``least_loaded``, ``weighted``,
filtering profiles and bad options.

Every test runs on asyncio, uvloop and trio; tests wait on conditions, never on time.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from beamrouting import (
    BackendAtCapacity,
    BackendNotEligible,
    InvalidPolicyProfile,
    NoBackendAvailable,
    PolicyDenied,
    RouteDecision,
    Router,
)
from tests._helpers import BACKENDS, FakeClock, settle_into, wait_for
from tests._learning import reasons_in, state_of
from tests._stores import HeldAnswersStore

pytestmark = pytest.mark.anyio

ROUND_ROBIN = {"policy": "round_robin"}


def only(*backends: str) -> dict[str, Any]:
    return {"excluded_backends": [b for b in BACKENDS if b not in backends]}


async def live(router: Router) -> dict[str, int]:
    return {s.backend: s.live_sessions for s in await router.backend_states() if s.live_sessions}


def waiting(router: Router) -> int:
    return router._waiters.waiting


def settled(router: Router) -> bool:
    """Every waiter sleeps: none was woken by a change it has not tried after and passed on."""
    return all(w.event is not None and not w.woken and not w.owes for w in router._waiters._queue)


class Holder:
    """Holds sessions open until told to let each go."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.release: dict[str, anyio.Event] = {}
        self.admitted: list[str] = []
        self.backends: dict[str, str] = {}

    async def hold(self, session_id: str, request: dict[str, Any], wait: float | None = None) -> None:
        self.release[session_id] = anyio.Event()
        async with self.router.session(request, session_id=session_id, wait=wait) as session:
            self.admitted.append(session_id)
            self.backends[session_id] = session.backend
            await self.release[session_id].wait()

    def let_go(self, session_id: str) -> None:
        self.release[session_id].set()


# --------------------------------------------------------------------------- live sessions and admission


async def test_backend_states_count_live_sessions_against_limits() -> None:
    async with Router(limits={"claude": 10, "gemini_cli": 2}) as router:
        async with router.session({"backend": "claude"}), router.session({"backend": "claude"}):
            await router.register_session("other", "codex")
            states = await router.backend_states()
            assert [(s.backend, s.live_sessions, s.limit) for s in states] == [
                ("claude", 2, 10),
                ("codex", 1, None),
                ("copilot", 0, None),
                ("gemini", 0, 2),
                ("opencode", 0, None),
            ]
            await router.unregister_session("other")
        assert await live(router) == {}


async def test_a_full_backend_is_ineligible_for_selections_and_sessions() -> None:
    async with Router(limits={"claude": 10}) as router:
        for i in range(10):
            await router.register_session(f"s{i}", "claude")
        assert (await router.select_backend({})).backend == "codex"
        with pytest.raises(BackendNotEligible):
            await router.select_backend({"backend": "claude"})
        async with router.session({}) as session:
            assert session.backend == "codex"
        assert reasons_in(await router.explain({}), "claude") == ("at capacity 10/10",)
        await router.unregister_session("s3")  # frees a slot
        assert (await router.select_backend({})).backend == "claude"
        async with router.session({}) as session:
            assert session.backend == "claude"
            assert state_of(await router.backend_states(), "claude").live_sessions == 10


async def test_register_session_onto_a_full_backend_raises_backend_at_capacity() -> None:
    async with Router(limits={"claude": 1}) as router:
        await router.register_session("s1", "claude")
        with pytest.raises(BackendAtCapacity) as info:
            await router.register_session("s2", "claude_code")
        assert info.value.code == "backend_at_capacity"
        assert await router.session_backend("s2") is None
        for _ in range(3):  # the live one on its own backend: a heartbeat, never refused, never twice
            await router.register_session("s1", "claude", {"beat": True})
        assert await live(router) == {"claude": 1}
        assert (await router.statistics()).errors == {"backend_at_capacity": 1}


async def test_a_sticky_key_bound_to_a_full_backend_gets_a_temporary_backend() -> None:
    async with Router(limits={"claude": 1}) as router:
        sticky = {"policy": "sticky", "affinity_key": "workspace"}
        async with router.session(sticky) as first:
            assert first.backend == "claude"
            async with router.session(sticky) as second:
                assert second.backend == "codex"
                assert second.decision.reasons == ("selected temporary backend while bound backend is out",)
        async with router.session(sticky) as third:
            assert (third.backend, third.decision.reasons) == ("claude", ("reused sticky affinity backend",))


async def test_a_thousand_concurrent_sessions_never_pass_a_limit() -> None:
    limit = 10
    async with Router(limits=dict.fromkeys(BACKENDS, limit)) as router:
        admitted: list[str] = []
        peaks: Counter[str] = Counter()
        samples = 0
        done = anyio.Event()

        async def start(index: int) -> None:
            async with router.session(ROUND_ROBIN, wait=5) as session:
                admitted.append(session.backend)
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()

        async def sample() -> None:
            nonlocal samples
            while not done.is_set():
                for state in await router.backend_states():
                    assert state.live_sessions <= limit, state
                    peaks[state.backend] = max(peaks[state.backend], state.live_sessions)
                samples += 1
                await anyio.lowlevel.checkpoint()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sample)
                async with anyio.create_task_group() as starters:
                    for index in range(1_000):
                        starters.start_soon(start, index)
                done.set()
        assert len(admitted) == 1_000
        assert samples > 1
        assert max(peaks.values()) == limit  # the limits were reached, and never passed
        assert await live(router) == {}
        assert waiting(router) == 0


# --------------------------------------------------------------------------- waiting for a slot


async def test_without_wait_a_full_set_is_no_backend_available_at_capacity() -> None:
    async with Router(limits={"claude": 1}) as router:
        await router.register_session("s1", "claude")
        with pytest.raises(NoBackendAvailable) as info:
            async with router.session(only("claude")):
                pytest.fail("admitted past the limit")
        assert info.value.detail["reason"] == "at_capacity"
        assert "retry_at" not in info.value.detail
        with pytest.raises(NoBackendAvailable) as info:
            await router.select_backend({"excluded_backends": list(BACKENDS)})
        assert "reason" not in info.value.detail


async def test_a_wait_that_runs_out_raises_at_capacity() -> None:
    async with Router(limits={"claude": 1}, clock=FakeClock()) as router:
        await router.register_session("s1", "claude")
        with anyio.fail_after(10), pytest.raises(NoBackendAvailable) as info:
            async with router.session(only("claude"), wait=0.05):
                pytest.fail("admitted past the limit")
        assert info.value.detail["reason"] == "at_capacity"
        assert waiting(router) == 0
        assert await live(router) == {"claude": 1}


async def test_waiters_are_admitted_first_in_first_out() -> None:
    async with Router(limits={"claude": 1}) as router:
        holder = Holder(router)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder.hold, "first", only("claude"))
                await wait_for(lambda: holder.admitted == ["first"])
                for count, name in enumerate(("w1", "w2", "w3"), 1):
                    tg.start_soon(holder.hold, name, only("claude"), 10)
                    await wait_for(lambda count=count: waiting(router) == count)  # type: ignore[misc]
                # Each slot frees once the waiters are asleep again (the younger ones tried in
                # vain after the last change): the oldest takes it.
                for admitted, name in enumerate(("first", "w1", "w2"), 2):
                    await wait_for(lambda: settled(router))
                    holder.let_go(name)
                    expected = ["first", "w1", "w2", "w3"][:admitted]
                    await wait_for(lambda expected=expected: holder.admitted == expected)  # type: ignore[misc]
                    assert waiting(router) == 4 - admitted
                holder.let_go("w3")
        assert waiting(router) == 0
        assert await live(router) == {}


async def test_no_more_than_max_waiters_wait() -> None:
    async with Router(limits={"claude": 1}, max_waiters=2) as router:
        holder = Holder(router)
        outcomes: dict[str, Any] = {}
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder.hold, "first", only("claude"))
                await wait_for(lambda: holder.admitted == ["first"])
                tg.start_soon(holder.hold, "w1", only("claude"), 10)
                tg.start_soon(holder.hold, "w2", only("claude"), 10)
                await wait_for(lambda: waiting(router) == 2)
                await settle_into(outcomes, "third", holder.hold("w3", only("claude"), 10))
                assert isinstance(outcomes["third"], NoBackendAvailable)  # at once: the queue is full
                assert outcomes["third"].detail["reason"] == "at_capacity"
                holder.let_go("first")
                await wait_for(lambda: len(holder.admitted) == 2)
                holder.let_go(holder.admitted[1])
                await wait_for(lambda: len(holder.admitted) == 3)
                holder.let_go(holder.admitted[2])
        assert sorted(holder.admitted) == ["first", "w1", "w2"]


async def test_a_cancelled_waiter_leaves_the_queue_and_holds_nothing() -> None:
    async with Router(limits={"claude": 1}) as router:
        holder = Holder(router)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder.hold, "first", only("claude"))
                await wait_for(lambda: holder.admitted == ["first"])
                async with anyio.create_task_group() as doomed:
                    doomed.start_soon(holder.hold, "cancelled", only("claude"), 10)
                    await wait_for(lambda: waiting(router) == 1)
                    doomed.cancel_scope.cancel()
                assert waiting(router) == 0
                tg.start_soon(holder.hold, "next", only("claude"), 10)
                await wait_for(lambda: waiting(router) == 1)
                holder.let_go("first")
                await wait_for(lambda: holder.admitted == ["first", "next"])
                assert await router.session_backend("cancelled") is None
                assert await live(router) == {"claude": 1}
                holder.let_go("next")
        assert await live(router) == {}


async def test_select_backend_waits_for_a_slot_too() -> None:
    async with Router(limits={"claude": 1}) as router:
        outcomes: dict[str, Any] = {}
        await router.register_session("s1", "claude")
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    settle_into,
                    outcomes,
                    "waiter",
                    router.select_backend(only("claude"), wait=10),
                )
                await wait_for(lambda: waiting(router) == 1)
                await router.unregister_session("s1")
        decision = outcomes["waiter"]
        assert isinstance(decision, RouteDecision) and decision.backend == "claude"
        assert await live(router) == {}  # selecting takes no slot


async def test_a_slot_freed_while_a_waiter_tries_is_not_lost() -> None:
    store = HeldAnswersStore(limits={"claude": 1})
    outcomes: dict[str, Any] = {}
    async with Router(store=store) as router:
        await router.register_session("holder", "claude")
        await router.register_session("other", "codex")
        with anyio.fail_after(10):  # it may wait 60 s, and must not need to
            async with anyio.create_task_group() as tg:
                tg.start_soon(settle_into, outcomes, "waiter", router.select_backend(only("claude"), wait=60))
                await wait_for(lambda: waiting(router) == 1)
                store.gate.close()
                await router.unregister_session("other")  # a change that frees nothing wakes it
                await wait_for(lambda: store.gate.waiting == 1)  # its attempt failed; the answer is held
                await router.unregister_session("holder")  # the slot frees while it tries
                store.gate.open()
        assert outcomes["waiter"].backend == "claude"


async def test_a_slot_freed_before_a_caller_joins_the_queue_is_not_lost() -> None:
    store = HeldAnswersStore(limits={"claude": 1})
    outcomes: dict[str, Any] = {}
    async with Router(store=store) as router:
        await router.register_session("holder", "claude")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                store.gate.close()
                tg.start_soon(settle_into, outcomes, "caller", router.select_backend(only("claude"), wait=60))
                await wait_for(lambda: store.gate.waiting == 1)  # its first attempt failed, unanswered
                await router.unregister_session("holder")  # nobody waits yet to be woken
                store.gate.open()
        assert outcomes["caller"].backend == "claude"


async def test_a_slot_freed_during_a_round_goes_to_the_oldest_waiter() -> None:
    store = HeldAnswersStore(limits={"claude": 1})
    async with Router(store=store) as router:
        holder = Holder(router)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(holder.hold, "first", only("claude"))
                await wait_for(lambda: holder.admitted == ["first"])
                for count, name in enumerate(("w1", "w2"), 1):
                    tg.start_soon(holder.hold, name, only("claude"), 30)
                    await wait_for(lambda count=count: waiting(router) == count)  # type: ignore[misc]
                await router.register_session("other", "codex")
                store.gate.close()
                await router.unregister_session("other")  # starts a round: w1 tries, its answer held
                await wait_for(lambda: store.gate.waiting == 1)
                holder.let_go("first")  # a newer change while the round is under way
                await wait_for(lambda: "claude" not in store.engine.state.live)
                store.gate.open()
                await wait_for(lambda: len(holder.admitted) == 2)
                assert holder.admitted == ["first", "w1"]
                holder.let_go("w1")
                await wait_for(lambda: holder.admitted == ["first", "w1", "w2"])
                holder.let_go("w2")


# --------------------------------------------------------------------------- least_loaded and weighted


async def test_least_loaded_sessions_spread_evenly() -> None:
    async with Router() as router:
        counts: Counter[str] = Counter()
        for i in range(50):
            backend = (await router.select_backend({"policy": "least_loaded"})).backend
            counts[backend] += 1
            await router.register_session(f"s{i}", backend)
        assert counts == dict.fromkeys(BACKENDS, 10)
        await router.unregister_session("s0")  # claude has one fewer now
        assert (await router.select_backend({"policy": "least_loaded"})).backend == "claude"


async def test_least_loaded_concurrent_sessions_do_not_pile_on_the_first() -> None:
    async with Router() as router:
        holder = Holder(router)
        async with anyio.create_task_group() as tg:
            for i in range(25):
                tg.start_soon(holder.hold, f"s{i}", {"policy": "least_loaded"})
            await wait_for(lambda: len(holder.admitted) == 25)
            assert Counter(holder.backends.values()) == dict.fromkeys(BACKENDS, 5)
            for i in range(25):
                holder.let_go(f"s{i}")


async def test_weighted_on_the_router() -> None:
    async with Router(weights={"claude": 5, "codex": 1, "copilot": 1}) as router:
        request = {"policy": "weighted", **only("claude", "codex", "copilot")}
        picks = [(await router.select_backend(request)).backend for _ in range(14)]
        a, b, c = "claude", "codex", "copilot"
        assert picks == [a, a, b, a, c, a, a] * 2


# --------------------------------------------------------------------------- filtering profiles


async def test_filtering_profiles_on_the_router() -> None:
    profile = {
        "mode": "filter",
        "rules": [{"action": "backend", "match": ["eq", "backend", "copilot"], "reason": "no copilot"}],
    }
    async with Router() as router:
        await router.put_policy_profile("team-b", profile)
        request = {"policy": "round_robin", "policy_profile_id": "team-b"}
        picks = [(await router.select_backend(request)).backend for _ in range(8)]
        assert picks == ["claude", "codex", "gemini", "opencode"] * 2
        assert reasons_in(await router.explain(request), "copilot") == ("denied by profile team-b",)
        with pytest.raises(PolicyDenied) as info:
            await router.select_backend({"backend": "copilot", "policy_profile_id": "team-b"})
        assert info.value.detail == "no copilot"
        with pytest.raises(PolicyDenied):
            await router.select_backend({**only("copilot"), "policy_profile_id": "team-b"})
        with pytest.raises(InvalidPolicyProfile):
            await router.put_policy_profile("bad", {"mode": "sift"})


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"limits": {"nope": 1}}, ValueError),
        ({"limits": {"claude": 0}}, ValueError),
        ({"limits": {"claude": -1}}, ValueError),
        ({"limits": {"claude": 2.5}}, TypeError),
        ({"limits": ["claude"]}, TypeError),
        ({"weights": {"nope": 1}}, ValueError),
        ({"weights": {"codex": 0}}, ValueError),
        ({"weights": {"codex": "3"}}, TypeError),
        ({"max_waiters": 0}, ValueError),
        ({"max_waiters": 1.5}, TypeError),
    ],
)
async def test_router_refuses_bad_capacity_options(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Router(**options)
