"""A Hypothesis state machine: the Router against a model, through crashes and restarts.

The model is a plain RoutingEngine fed every call the router applied, plus a dict of
sessions. Rules interleave selects (valid and invalid, with and without a session),
clears, session registrations and actor crashes; a crash makes the next message that
actor handles fail with ActorCrashed without being applied, and nothing else may change.
The machine runs on one backend (asyncio) through a blocking portal, to stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from beamrouting import ActorCrashed, Catalog, Router, RoutingEngine, RoutingError, SessionHandle
from beamrouting._core._request import merge_session
from beamrouting.testing import crash_actor
from tests._helpers import profiles_for_scenarios
from tests._strategies import requests, session_or_opts

ActorName = Literal["routing_table", "session_registry"]
ACTORS: tuple[ActorName, ...] = ("routing_table", "session_registry")
SESSION_IDS = st.sampled_from(["k1", "k2", "session-3"])
BAD_REQUESTS = st.sampled_from(
    [
        None,
        {"policy": "nope"},
        {"bogus": 1},
        {"backend": "Claude"},
        {"capabilities": "hooks"},
        {"affinity_key": ""},
        {"health": {"claude": "sick"}},
        {"policy": "sticky"},
        {"backend": "codex", "excluded_backends": ["codex"]},
    ]
)
ANY_REQUEST = st.one_of(requests(stateful=True), BAD_REQUESTS)
CRASHED = "crashed"


def outcome_of(call: Any) -> Any:
    try:
        return call().to_dict()
    except RoutingError as exc:
        return (exc.code, exc.detail)


class RouterMachine(RuleBasedStateMachine):
    portal: ClassVar[BlockingPortal]

    def __init__(self) -> None:
        super().__init__()
        self.router_cm = self.portal.wrap_async_context_manager(Router(max_restarts=1_000_000))
        self.router = self.router_cm.__enter__()
        self.model = RoutingEngine()
        for profile_id, profile in profiles_for_scenarios():
            self.model.put_policy_profile(profile_id, profile)
            self.portal.call(self.router.put_policy_profile, profile_id, profile)
        self.sessions: dict[str, SessionHandle] = {}
        self.crash_next = dict.fromkeys(ACTORS, False)
        self.restarts = dict.fromkeys(ACTORS, 0)

    def teardown(self) -> None:
        self.router_cm.__exit__(None, None, None)

    # -- helpers --------------------------------------------------------------------------

    def call(self, method: Any, *args: Any) -> Any:
        """Run a router call; a decision as a dict, ``(code, detail)``, or ``"crashed"``."""

        async def run() -> Any:
            try:
                result = await method(*args)
            except ActorCrashed:
                return CRASHED
            except RoutingError as exc:
                return (exc.code, exc.detail)
            return result.to_dict() if hasattr(result, "to_dict") else result

        return self.portal.call(run)

    def message_to(self, actor: ActorName) -> bool:
        """A message reaches ``actor``: ``False`` if it crashes on it (and so applies nothing)."""
        if self.crash_next[actor]:
            self.crash_next[actor] = False
            self.restarts[actor] += 1
            return False
        return True

    def expect_select(self, request: Any) -> Any:
        try:
            normalized = self.model.normalizer.normalize(request)
        except RoutingError as exc:  # raised on the caller's side: no message
            return (exc.code, exc.detail)
        if not self.message_to("routing_table"):
            return CRASHED
        return outcome_of(lambda: self.model.select_normalized(normalized))

    # -- rules ----------------------------------------------------------------------------

    @rule(request=ANY_REQUEST)
    def select(self, request: Any) -> None:
        expected = self.expect_select(request)
        assert self.call(self.router.select_backend, request) == expected

    @rule(session=session_or_opts(), request=st.one_of(requests(stateful=True), st.just(None)))
    def select_from_session(self, session: Any, request: Any) -> None:
        backend = None
        expected: Any = None
        if isinstance(session, str):  # the router asks the session registry first
            if self.message_to("session_registry"):
                handle = self.sessions.get(session)
                backend = None if handle is None else handle.backend
            else:
                expected = CRASHED
        if expected is None:
            try:
                merged = merge_session(session, request, backend)
            except RoutingError as exc:
                expected = (exc.code, exc.detail)
            else:
                expected = self.expect_select(merged)
        assert self.call(self.router.select_backend, session, request) == expected

    @rule()
    def clear(self) -> None:
        expected = None
        if self.message_to("routing_table"):
            self.model.clear()
        else:
            expected = CRASHED
        assert self.call(self.router.clear) == expected

    @rule(session_id=SESSION_IDS, backend=st.sampled_from(sorted(Catalog.default().aliases)))
    def register(self, session_id: str, backend: str) -> None:
        handle = SessionHandle(session_id, str(Catalog.default().canonical(backend)), {"by": "machine"})
        expected: Any = CRASHED
        if self.message_to("session_registry"):
            self.sessions.pop(session_id, None)
            self.sessions[session_id] = expected = handle
            self.model.register_session(session_id, backend, {"by": "machine"})  # live sessions count
        assert self.call(self.router.register_session, session_id, backend, {"by": "machine"}) == expected

    @rule(session_id=SESSION_IDS)
    def unregister(self, session_id: str) -> None:
        expected: Any = CRASHED
        if self.message_to("session_registry"):
            self.sessions.pop(session_id, None)
            self.model.unregister_session(session_id)
            expected = None
        assert self.call(self.router.unregister_session, session_id) == expected

    @rule(actor=st.sampled_from(ACTORS))
    def crash(self, actor: ActorName) -> None:
        self.portal.call(crash_actor, self.router, actor)
        self.crash_next[actor] = True

    @rule()
    def compare_sessions(self) -> None:
        expected: Any = CRASHED
        if self.message_to("session_registry"):
            expected = list(self.sessions.values())
        assert self.call(self.router.sessions) == expected

    @rule(limit=st.sampled_from([None, 0, 3]))
    def compare_journal(self, limit: int | None) -> None:
        def view(events: list[Any]) -> list[Any]:
            return [(e.event_type, e.sequence, e.tags, e.payload) for e in events]

        expected: Any = CRASHED
        if self.message_to("routing_table"):
            expected = view(self.model.journal(limit=limit))
        actual = self.call(self.router.journal, None, limit)
        assert (actual if actual == CRASHED else view(actual)) == expected

    @invariant()
    def restarts_match(self) -> None:
        stats = self.portal.call(self.router.statistics)
        assert stats.restarts == self.restarts
        assert stats.state == "running"


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as portal:
        yield portal


def test_router_agrees_with_the_model(portal: BlockingPortal) -> None:
    RouterMachine.portal = portal
    run_state_machine_as_test(RouterMachine, settings=settings(max_examples=60, stateful_step_count=30))
