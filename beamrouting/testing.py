"""Test helpers for code that embeds a :class:`~beamrouting.Router` or implements a store.

- :func:`crash_actor` reaches into a router's supervision on purpose, to test what your
  code does when an actor crashes; do not use it in production code.
- :func:`check_store` is the conformance suite of the store protocol
  (:class:`beamrouting.store.Store`): run it against your own store implementation.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from ._core._catalog import Catalog
from ._core._engine import RoutingEngine
from ._core._errors import RouterClosed, RoutingError
from ._core._explain import Explanation
from ._core._journal import Journal
from ._core._profiles import parse_profile
from ._core._request import RouteRequest
from ._core._types import JournalEvent, RouteDecision, SessionHandle
from ._runtime._router import Router
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
    RegisterOp,
    RoutingOp,
    SelectOp,
    SessionOp,
    Store,
    UnregisterOp,
)

__all__ = ["check_store", "crash_actor"]


def crash_actor(router: Router, actor: Literal["routing_table", "session_registry"]) -> None:
    """Make ``actor`` crash on the next message it handles.

    The caller of that message gets :class:`~beamrouting.ActorCrashed`; the supervisor
    restarts the actor with its state and the restarted actor serves every other message,
    unless the restart intensity is exceeded. It returns at once (it does not wait for the
    crash). Raises :class:`~beamrouting.RouterClosed` if the router is not running and
    :class:`ValueError` for an unknown actor name.
    """
    supervisor = router._supervisor
    if supervisor is None:
        raise RouterClosed("the router is not running")
    supervisor.child(actor).control.crash_next = True


# --------------------------------------------------------------------------- store conformance

_StoreMaker = Callable[[], Store | Awaitable[Store]]

_CHECK_REQUESTS: Final[tuple[dict[str, Any], ...]] = (
    {"policy": "round_robin"},
    {"policy": "round_robin"},
    {"policy": "round_robin", "excluded_backends": ["claude"]},
    {"policy": "sticky", "affinity_key": "repo-1"},
    {"policy": "sticky", "affinity_key": "repo-2"},
    {"policy": "sticky", "affinity_key": "repo-1", "preferred_backends": ["gemini"]},
    {"policy": "sticky", "affinity_key": "repo-1", "health": {"claude": "down"}},
    {"policy": "failover", "last_backend": "claude"},
    {"backend": "codex"},
    {"backend": "codex", "excluded_backends": ["codex"]},
    {"policy": "capability_first", "capabilities": ["hooks"]},
    {"preferred_backends": ["opencode"], "fallback_backends": ["gemini"], "health": {"opencode": "down"}},
    {"policy": "round_robin", "policy_profile_id": "deny-claude"},
    {"policy": "round_robin", "policy_profile_id": "deny-claude"},
    {"policy": "round_robin", "policy_profile_id": "missing"},
    {"policy": "sticky", "affinity_key": "repo-3", "policy_profile_id": "deny-claude"},
    {"policy": "sticky", "affinity_key": "repo-3"},
)
"""Requests every store must route exactly as the engine does, in this order (default catalogue)."""

_DENY_CLAUDE: Final = {
    "default": "allow",
    "rules": [
        {"action": "backend", "decision": "deny", "match": ["eq", "backend", "claude"], "reason": "no"}
    ],
}


async def check_store(make_store: _StoreMaker) -> None:
    """Check that the stores ``make_store`` builds implement :class:`beamrouting.store.Store`.

    ``make_store()`` (a function or a coroutine function) must return a new, empty store on
    the default catalogue each time it is called, with no state shared with earlier ones
    (for a shared store: a fresh key prefix). Each check starts its own store, applies
    operations through :meth:`~beamrouting.store.Store.routing_batch` and
    :meth:`~beamrouting.store.Store.session_batch` as the actors would, compares the
    answers with what a :class:`~beamrouting.RoutingEngine` answers, and closes the store.
    Run it on asyncio (a store may refuse trio). Raises :class:`AssertionError` naming the
    first rule a store breaks.
    """
    for check in (
        _check_surface,
        _check_selections,
        _check_batches,
        _check_profiles_and_journal,
        _check_clear_and_restart,
        _check_sessions,
    ):
        store = make_store()
        if inspect.isawaitable(store):
            store = await store
        if not isinstance(store, Store):
            raise AssertionError(f"make_store() returned {type(store).__name__}, which is not a Store")
        await store.start()
        try:
            await check(store)
        finally:
            await store.aclose()


def _expect(condition: bool, rule: str) -> None:
    if not condition:
        raise AssertionError(f"store contract: {rule}")


def _outcome(result: object) -> object:
    """An answer as comparable data: a decision's dict, an error's (code, detail), or as it is."""
    if isinstance(result, RouteDecision):
        return result.to_dict()
    if isinstance(result, RoutingError):
        return (result.code, result.detail)
    return result


async def _check_surface(store: Store) -> None:
    _expect(store.catalog == Catalog.default(), "catalog is the catalogue the store was built with")
    source = store.journal_source()
    _expect(
        source is None or isinstance(source, (Journal, JournalFeed)),
        "journal_source() answers a Journal, a JournalFeed or None",
    )
    _expect(await store.routing_batch([]) == [], "an empty routing batch answers []")
    _expect(await store.session_batch([]) == [], "an empty session batch answers []")


async def _setup_profiles(store: Store, engine: RoutingEngine) -> None:
    profile = parse_profile(_DENY_CLAUDE)
    engine.put_policy_profile("deny-claude", profile)
    answer = await store.routing_batch([PutProfileOp("deny-claude", profile)])
    _expect(answer == [None], f"PutProfileOp answers None, not {answer!r}")


async def _check_selections(store: Store) -> None:
    engine = RoutingEngine()
    await _setup_profiles(store, engine)
    for request in _CHECK_REQUESTS:
        normalized = engine.normalize(request)
        try:
            expected: object = engine.select_normalized(normalized)
        except RoutingError as exc:
            expected = exc
        explained = await store.routing_batch([ExplainOp(normalized)])
        _expect(
            len(explained) == 1 and isinstance(explained[0], Explanation),
            f"ExplainOp answers an Explanation, not {explained!r}",
        )
        answer = await store.routing_batch([SelectOp(normalized)])
        _expect(len(answer) == 1, f"a batch of one selection answers one entry, not {answer!r}")
        _expect(
            _outcome(answer[0]) == _outcome(expected),
            f"{request} selects {_outcome(expected)}, as the engine does, not {_outcome(answer[0])}",
        )
        explanation = explained[0]
        assert isinstance(explanation, Explanation)
        if isinstance(expected, RouteDecision):
            _expect(
                explanation.decision == expected,
                f"ExplainOp for {request} foresees {expected.to_dict()}, not {explanation.to_dict()}",
            )


async def _check_batches(store: Store) -> None:
    engine = RoutingEngine()
    ops: list[RoutingOp] = []
    expected: list[object] = []
    for request in _CHECK_REQUESTS[:12]:
        normalized = engine.normalize(request)
        ops.append(SelectOp(normalized))
        try:
            expected.append(_outcome(engine.select_normalized(normalized)))
        except RoutingError as exc:
            expected.append(_outcome(exc))
    ops.insert(3, DeleteProfileOp("never-stored"))
    expected.insert(3, False)
    ops.insert(7, EnsureTablesOp())
    expected.insert(7, None)
    answers = await store.routing_batch(ops)
    _expect(len(answers) == len(ops), f"a batch of {len(ops)} operations answers {len(answers)} entries")
    for index, (answer, wanted) in enumerate(zip(answers, expected, strict=True)):
        _expect(
            _outcome(answer) == wanted,
            f"operation {index} of a mixed batch ({ops[index]!r}) answers {wanted}, not {_outcome(answer)}",
        )


async def _check_profiles_and_journal(store: Store) -> None:
    engine = RoutingEngine()
    await _setup_profiles(store, engine)
    for request in _CHECK_REQUESTS[12:16]:
        normalized = engine.normalize(request)
        with contextlib.suppress(RoutingError):
            engine.select_normalized(normalized)
        await store.routing_batch([SelectOp(normalized)])
    for query in (ReadJournalOp(), ReadJournalOp("audit"), ReadJournalOp(None, 3), ReadJournalOp(None, 0)):
        answer = await store.routing_batch([query])
        _expect(len(answer) == 1 and isinstance(answer[0], list), f"{query!r} answers a list of events")
        events = [event for event in answer[0] if isinstance(event, JournalEvent)]  # type: ignore[union-attr]
        _expect(len(events) == len(answer[0]), f"{query!r} answers JournalEvent objects")  # type: ignore[arg-type]
        wanted = engine.journal(query.event_type, query.limit)
        _expect(
            [(e.event_type, e.payload) for e in events] == [(e.event_type, e.payload) for e in wanted],
            f"{query!r} answers the events the engine journals for the same selections",
        )
        sequences = [event.sequence for event in events]
        _expect(sequences == sorted(set(sequences)), "journal events come oldest first, sequences increasing")
    deleted = await store.routing_batch([DeleteProfileOp("deny-claude"), DeleteProfileOp("deny-claude")])
    _expect(deleted == [True, False], f"DeleteProfileOp answers whether the profile existed, not {deleted!r}")
    normalized = engine.normalize({"policy_profile_id": "deny-claude"})
    answer = await store.routing_batch([SelectOp(normalized)])
    _expect(
        _outcome(answer[0]) == ("policy_denied", "unknown policy profile"),
        "a deleted profile denies as an unknown one",
    )


async def _check_clear_and_restart(store: Store) -> None:
    engine = RoutingEngine()
    rr = engine.normalize({"policy": "round_robin"})
    sticky = engine.normalize({"policy": "sticky", "affinity_key": "kept", "preferred_backends": ["gemini"]})

    async def select(*requests: RouteRequest) -> None:
        wanted = [engine.select_normalized(request).backend for request in requests]
        answers = await store.routing_batch([SelectOp(request) for request in requests])
        backends = [d.backend if isinstance(d, RouteDecision) else d for d in answers]
        _expect(backends == wanted, f"selections go to {wanted}, as in the engine, not {backends}")

    await select(rr, rr, sticky, rr)
    await store.aclose()
    await store.start()
    await select(rr, sticky)  # state survives aclose() and start()
    cleared = await store.routing_batch([ClearOp()])
    _expect(cleared == [None], "ClearOp answers None")
    engine.clear()
    await select(rr, sticky, rr)  # counters and bindings forgotten


async def _check_sessions(store: Store) -> None:
    one = SessionHandle("s-1", "codex", {"k": "v"})
    two = SessionHandle("s-2", "claude", {})
    ops: list[SessionOp] = [
        RegisterOp(one),
        LookupOp("s-1"),
        RegisterOp(two),
        UnregisterOp("s-1"),
        LookupOp("s-1"),
        UnregisterOp("never-registered"),
        RegisterOp(one),
        ListSessionsOp(),
    ]
    answers = await store.session_batch(ops)
    wanted = [None, "codex", None, None, None, None, None, [two, one]]
    _expect(answers == wanted, f"session operations apply in order: {wanted}, not {answers}")
    rr = RoutingEngine().normalize({"policy": "round_robin"})
    await store.routing_batch([ClearOp(), SelectOp(rr)])
    kept = await store.session_batch([ListSessionsOp()])
    _expect(kept == [[two, one]], "ClearOp keeps the sessions")
