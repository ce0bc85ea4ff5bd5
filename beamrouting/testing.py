"""Test helpers for code that embeds a :class:`beamrouting.Router` or implements a store.

- :func:`crash_actor` reaches into a router's supervision on purpose, to test what your
  code does when an actor crashes; do not use it in production code.
- :func:`check_store` is the conformance suite of the store protocol
  (:class:`beamrouting.store.Store`): run it against your own store implementation.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal

import msgspec

from ._core._catalog import Catalog
from ._core._engine import RoutingEngine
from ._core._errors import BeamRoutingError, RouterClosed, RoutingError
from ._core._explain import Explanation
from ._core._health import BackendState, HealthPolicy, Outcome
from ._core._journal import Journal
from ._core._profiles import parse_profile
from ._core._request import RouteRequest
from ._core._settings import RoutingSettings
from ._core._types import JournalEvent, RouteDecision, SessionHandle
from ._runtime._router import Router
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
    RoutingOp,
    RoutingResult,
    SelectOp,
    SessionOp,
    SessionResult,
    Store,
    UnregisterOp,
)

__all__ = ["check_store", "crash_actor"]


def crash_actor(router: Router, actor: Literal["routing_table", "session_registry"]) -> None:
    """Make ``actor`` crash on the next message it handles.

    The caller of that message gets :class:`beamrouting.ActorCrashed`; the supervisor
    restarts the actor with its state and the restarted actor serves every other message,
    unless the restart intensity is exceeded. It returns at once (it does not wait for the
    crash). Raises :class:`beamrouting.RouterClosed` if the router is not running and
    :class:`ValueError` for an unknown actor name.
    """
    supervisor = router._supervisor
    if supervisor is None:
        raise RouterClosed("the router is not running")
    supervisor.child(actor).control.crash_next = True


# --------------------------------------------------------------------------- store conformance

_StoreMaker = Callable[..., Store | Awaitable[Store]]

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


async def check_store(make_store: _StoreMaker) -> list[str]:
    """Check that the stores ``make_store`` builds implement :class:`beamrouting.store.Store`.

    ``make_store(**options)`` (a function or a coroutine function, or a store class) must
    return a new, empty store on the default catalogue each time it is called, with no
    state shared with earlier ones (for a shared store: a fresh key prefix). The first
    checks call it without arguments. The others pass keyword arguments, the options of
    :class:`beamrouting.RoutingEngine` of the same names, which the store must honour:

    - ``clock``: a callable answering UNIX seconds, which the store must measure every
      deadline on (quota cooldowns, ejections, probe slots); the check moves it by hand.
      It checks reports, restores, backend states, probe slots, temporary sticky backends
      and the ``outcome`` and ``backend_health`` journal events.
    - ``limits``: the most live sessions per backend (a mapping of backend to int). It
      checks capacity: full backends held out, :class:`beamrouting.BackendAtCapacity`,
      live counts.
    - ``weights``: each backend's weight for the ``weighted`` policy.

    A check runs only if ``make_store`` accepts every keyword it needs (by name, or
    ``**options``); the names of the checks it skipped are returned, so a caller can
    insist on none (``assert not await check_store(...)``). Selections that register their
    session, ``least_loaded``, filtering profiles, releases and reconfigurations
    (:class:`beamrouting.store.ReconfigureOp`) need no option.

    Each check starts its own store, applies operations through
    :meth:`beamrouting.store.Store.routing_batch` and
    :meth:`beamrouting.store.Store.session_batch` as the actors would, compares every
    answer with what a :class:`beamrouting.MemoryStore` built with the same options (a
    :class:`beamrouting.RoutingEngine`) answers, and closes the store. Run it on asyncio
    (a store may refuse trio). Raises :class:`AssertionError` naming the first rule a store
    breaks.
    """
    accepted = _accepted(make_store)
    skipped: list[str] = []
    for check, needs in _CHECKS:
        if not needs <= accepted:
            skipped.append(check.__name__.removeprefix("_check_"))
            continue
        options: dict[str, Any] = {}
        if "clock" in needs:
            options["clock"] = _Clock()
        if "limits" in needs:
            options["limits"] = dict(_LIMITS)
        if "weights" in needs:
            options["weights"] = dict(_WEIGHTS)
        store = make_store(**options)
        if inspect.isawaitable(store):
            store = await store
        if not isinstance(store, Store):
            raise AssertionError(f"make_store() returned {type(store).__name__}, which is not a Store")
        await store.start()
        try:
            await check(store, options)
        finally:
            await store.aclose()
    return skipped


def _accepted(make_store: object) -> frozenset[str]:
    """The option names ``make_store`` accepts (every one of them for ``**options``)."""
    try:
        parameters = inspect.signature(make_store).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return _OPTIONS
    return frozenset(p.name for p in parameters if p.kind is not p.VAR_POSITIONAL) & _OPTIONS


def _expect(condition: bool, rule: str) -> None:
    if not condition:
        raise AssertionError(f"store contract: {rule}")


def _outcome(result: object) -> object:
    """An answer as comparable data: a decision's dict, an error's (code, detail), or as it is.

    Errors that are no routing errors compare by code only (their messages may differ);
    journal events by type and payload (ids and times are the store's own).
    """
    if isinstance(result, RouteDecision | Explanation):
        return result.to_dict()
    if isinstance(result, RoutingError):
        return (result.code, result.detail)
    if isinstance(result, BeamRoutingError):
        return (result.code,)
    if isinstance(result, BackendState):
        return msgspec.to_builtins(result)
    if isinstance(result, JournalEvent):
        return (result.event_type, result.payload)
    if isinstance(result, list):
        return [_outcome(item) for item in result]
    return result


async def _check_surface(store: Store, options: dict[str, Any]) -> None:
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


async def _check_selections(store: Store, options: dict[str, Any]) -> None:
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


async def _check_batches(store: Store, options: dict[str, Any]) -> None:
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


async def _check_profiles_and_journal(store: Store, options: dict[str, Any]) -> None:
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


async def _check_clear_and_restart(store: Store, options: dict[str, Any]) -> None:
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


async def _check_sessions(store: Store, options: dict[str, Any]) -> None:
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


# --------------------------------------------------------------------------- what a store learns and holds

_OPTIONS: Final = frozenset({"clock", "limits", "weights"})
_LIMITS: Final[Mapping[str, int]] = {"claude": 1, "codex": 2}
_WEIGHTS: Final[Mapping[str, int]] = {"claude": 3, "codex": 1, "gemini": 2}
_RR: Final[dict[str, Any]] = {"policy": "round_robin"}
_LEAST: Final[dict[str, Any]] = {"policy": "least_loaded"}


class _Clock:
    """A wall clock a check moves by hand (UNIX seconds)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _describe(op: object) -> str:
    """An operation, briefly, for a failed rule."""
    if isinstance(op, SelectOp | ExplainOp):
        request = op.request.summary()
        if op.request.policy_profile_id is not None:
            request["policy_profile_id"] = op.request.policy_profile_id
        if isinstance(op, SelectOp) and op.session_id is not None:
            return f"{type(op).__name__}({request}, session_id={op.session_id!r}, exclusive={op.exclusive})"
        return f"{type(op).__name__}({request})"
    if isinstance(op, RegisterOp):
        return f"RegisterOp({op.handle.session_id!r} on {op.handle.backend!r}, exclusive={op.exclusive})"
    return repr(op)


class _Lockstep:
    """The store under test and a :class:`beamrouting.MemoryStore` with its options, fed the same batches."""

    def __init__(self, store: Store, options: Mapping[str, Any]) -> None:
        self.store = store
        self.reference = MemoryStore(**options)
        self.engine = self.reference.engine

    def normalize(self, request: Mapping[str, Any]) -> RouteRequest:
        return self.engine.normalize(request)

    def select(self, request: Mapping[str, Any], session_id: str | None = None, **options: Any) -> SelectOp:
        return SelectOp(self.normalize(request), session_id, **options)

    async def route(self, *ops: RoutingOp) -> list[RoutingResult]:
        wanted = await self.reference.routing_batch(ops)
        return self._same(ops, await self.store.routing_batch(ops), wanted)

    async def sessions(self, *ops: SessionOp) -> list[SessionResult]:
        wanted = await self.reference.session_batch(ops)
        return self._same(ops, await self.store.session_batch(ops), wanted)

    def _same(self, ops: tuple[Any, ...], answers: list[Any], wanted: list[Any]) -> list[Any]:
        _expect(len(answers) == len(ops), f"a batch of {len(ops)} operations answers {len(answers)} entries")
        for op, answer, expected in zip(ops, answers, wanted, strict=True):
            got, want = _outcome(answer), _outcome(expected)
            if type(got) is list and type(want) is list and got != want:  # name the first difference
                at = next(
                    (i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w),
                    min(len(got), len(want)),
                )
                _expect(
                    False,
                    f"{_describe(op)} answers {len(want)} entries, as the engine does, entry {at} being "
                    f"{want[at] if at < len(want) else 'absent'}, not {len(got)} with "
                    f"{got[at] if at < len(got) else 'none'}",
                )
            _expect(got == want, f"{_describe(op)} answers {want}, as the engine does, not {got}")
        return answers

    async def journal(self) -> None:
        """The whole journal is the engine's, event for event (types and payloads)."""
        await self.route(ReadJournalOp())


async def _check_learning(store: Store, options: dict[str, Any]) -> None:
    """Reports, restores, backend states and time-driven changes, on an injected clock."""
    pair = _Lockstep(store, options)
    clock: _Clock = options["clock"]
    rr = pair.select(_RR)
    await pair.route(ReadStatesOp(), ReportOp("codex", Outcome.QUOTA, retry_after=60.0))
    await pair.route(rr, rr, rr, ExplainOp(rr.request), ReadStatesOp())
    await pair.route(
        pair.select({"backend": "codex"}),
        pair.select(
            {"policy": "round_robin", "excluded_backends": ["claude", "copilot", "gemini", "opencode"]}
        ),
        ReportOp("codex", Outcome.QUOTA, retry_at=clock.now + 90.0),  # only extends the cooldown
        ReportOp("claude", Outcome.REJECTED),
    )
    clock.now += 91.0
    await pair.route(rr, ReadStatesOp())  # the cooldown's end is journaled once, dated at its deadline
    for _ in range(5):
        await pair.route(ReportOp("gemini", Outcome.FAILURE))
    await pair.route(rr, rr, ExplainOp(pair.normalize({"backend": "gemini"})), ReadStatesOp())
    clock.now += 31.0  # the ejection ends: probing, one slot
    gemini = pair.select({"backend": "gemini"})
    await pair.route(gemini, gemini, pair.select({"policy": "round_robin", "excluded_backends": ["claude"]}))
    await pair.route(
        ReadStatesOp(), ReportOp("gemini", Outcome.FAILURE), ReadStatesOp()
    )  # ejected again, longer
    clock.now += 61.0
    await pair.route(gemini, ReportOp("gemini", Outcome.SUCCESS), gemini, ReadStatesOp())
    await pair.route(
        ReportOp("opencode", Outcome.QUOTA), RestoreOp("opencode"), RestoreOp("copilot"), ReadStatesOp()
    )
    await pair.journal()


async def _check_temporary_backends(store: Store, options: dict[str, Any]) -> None:
    """A sticky key whose bound backend is held out goes to a temporary backend, then back."""
    pair = _Lockstep(store, options)
    clock: _Clock = options["clock"]
    repo = pair.select({"policy": "sticky", "affinity_key": "repo"})
    other = pair.select({"policy": "sticky", "affinity_key": "other"})
    await pair.route(repo, other, ReportOp("claude", Outcome.QUOTA, retry_after=100.0))
    await pair.route(repo, repo, other, ExplainOp(repo.request))
    await pair.route(
        ReportOp("codex", Outcome.QUOTA, retry_after=50.0), repo, repo
    )  # the temporary one is out too
    clock.now += 101.0
    await pair.route(repo, ExplainOp(repo.request), repo)  # back to the bound backend
    await pair.route(ReleaseOp("repo"), ReleaseOp("repo"), repo, ReleaseOp("never-bound"))
    await pair.journal()


async def _check_session_selections(store: Store, options: dict[str, Any]) -> None:
    """A selection with a session id registers it on the chosen backend, in the same step."""
    pair = _Lockstep(store, options)
    await pair.route(pair.select(_RR, "s-1", metadata={"k": "v"}), pair.select(_RR, "s-2"))
    await pair.route(pair.select(_RR, "s-1"), ReadStatesOp())  # live: SessionExists
    await pair.sessions(LookupOp("s-1"), LookupOp("s-2"), ListSessionsOp())
    await pair.route(
        pair.select({"policy": "round_robin", "excluded_backends": ["claude"]}, "s-1", exclusive=False)
    )
    await pair.route(ReadStatesOp(), pair.select({"backend": "codex", "excluded_backends": ["codex"]}, "s-3"))
    await pair.sessions(ListSessionsOp(), UnregisterOp("s-1"), RegisterOp(SessionHandle("s-4", "gemini", {})))
    await pair.route(
        pair.select(_RR, "s-5"),
        pair.select(_RR, "s-5"),
        pair.select(_RR, "s-6"),
        pair.select(_RR, "s-4"),
        ReadStatesOp(),
    )
    await pair.sessions(ListSessionsOp())
    await pair.journal()


async def _check_least_loaded(store: Store, options: dict[str, Any]) -> None:
    """``least_loaded`` takes the candidates with the fewest live sessions, ties in turn."""
    pair = _Lockstep(store, options)
    least = pair.select(_LEAST)
    await pair.route(least, least, ExplainOp(least.request))
    await pair.sessions(
        *(RegisterOp(SessionHandle(f"s-{i}", b, {})) for i, b in enumerate(("claude", "codex", "codex")))
    )
    await pair.route(least, least, least, ExplainOp(least.request))
    await pair.route(
        *(pair.select(_LEAST, f"n-{i}") for i in range(8)), ReadStatesOp()
    )  # each counts for the next
    await pair.sessions(UnregisterOp("s-1"), UnregisterOp("n-0"))
    await pair.route(
        least, pair.select({**_LEAST, "preferred_backends": ["gemini"], "fallback_policy": "none"})
    )
    await pair.journal()


async def _check_capacity(store: Store, options: dict[str, Any]) -> None:
    """A backend at its limit is held out; a registration past it is refused."""
    pair = _Lockstep(store, options)
    await pair.sessions(
        RegisterOp(SessionHandle("a", "claude", {})),
        RegisterOp(SessionHandle("b", "claude", {})),  # BackendAtCapacity
        RegisterOp(SessionHandle("a", "claude", {"beat": 1})),  # a heartbeat takes no new slot
        RegisterOp(SessionHandle("a", "claude", {}), exclusive=True),  # SessionExists
    )
    claude_only = {"policy": "round_robin", "excluded_backends": ["copilot", "gemini", "opencode"]}
    await pair.route(
        pair.select({"backend": "claude"}), pair.select(claude_only), ExplainOp(pair.normalize(_RR))
    )
    await pair.route(*(pair.select(_RR, f"r-{i}") for i in range(6)), ReadStatesOp())
    await pair.route(pair.select(claude_only, "r-9"), pair.select({"backend": "codex"}, "r-10"))
    await pair.sessions(UnregisterOp("a"), RegisterOp(SessionHandle("r-0", "claude", {})))
    await pair.route(pair.select(claude_only, "r-11"), pair.select(_RR), ReadStatesOp())
    await pair.journal()


async def _check_weighted(store: Store, options: dict[str, Any]) -> None:
    """``weighted`` follows the smooth weighted round-robin sequence of the candidates."""
    pair = _Lockstep(store, options)
    weighted = pair.select({"policy": "weighted"})
    await pair.route(*([weighted] * 7), ExplainOp(weighted.request))
    await pair.route(weighted, pair.select({"policy": "weighted", "excluded_backends": ["claude"]}), weighted)
    await pair.journal()


async def _check_filtering_profiles(store: Store, options: dict[str, Any]) -> None:
    """A filtering profile removes the candidates it denies before selection."""
    pair = _Lockstep(store, options)
    rule = {
        "action": "backend",
        "decision": "deny",
        "match": ["member", "backend", ["claude", "codex"]],
        "reason": "no",
    }
    profile = parse_profile({"mode": "filter", "rules": [rule]})
    await pair.route(PutProfileOp("filter", profile))
    filtered = {"policy": "round_robin", "policy_profile_id": "filter"}
    await pair.route(pair.select(filtered), pair.select(filtered), ExplainOp(pair.normalize(filtered)))
    await pair.route(
        pair.select({"backend": "claude", "policy_profile_id": "filter"}),
        pair.select({**filtered, "preferred_backends": ["codex"], "fallback_policy": "none"}),
        pair.select({"policy": "sticky", "affinity_key": "k", "policy_profile_id": "filter"}),
        pair.select(_RR),
    )
    await pair.route(DeleteProfileOp("filter"), pair.select(filtered))
    await pair.journal()


async def _check_reconfigure(store: Store, options: dict[str, Any]) -> None:
    """A reconfiguration sets exactly its profiles, and its limits and weights, in one step."""
    pair = _Lockstep(store, options)
    await pair.route(
        PutProfileOp("old", parse_profile(_DENY_CLAUDE)), pair.select({**_RR, "policy_profile_id": "old"})
    )
    rule = {"action": "backend", "decision": "deny", "match": ["eq", "backend", "claude"], "reason": "no"}
    settings = RoutingSettings.checked(
        Catalog.default(),
        profiles={"new": {"mode": "filter", "rules": [rule]}},
        health=HealthPolicy(probe_sessions=2),
        limits={"codex_cli": 1},
        weights={"gemini": 4},
    )
    await pair.route(ReconfigureOp(settings), pair.select({**_RR, "policy_profile_id": "old"}))  # gone
    await pair.sessions(
        RegisterOp(SessionHandle("s", "codex", {})), RegisterOp(SessionHandle("t", "codex", {}))
    )
    await pair.route(
        pair.select({**_RR, "policy_profile_id": "new"}),
        pair.select({"backend": "codex"}),
        *([pair.select({"policy": "weighted"})] * 9),
        ReadStatesOp(),
    )
    await pair.journal()


_CHECKS: Final[tuple[tuple[Callable[[Store, dict[str, Any]], Awaitable[None]], frozenset[str]], ...]] = (
    (_check_surface, frozenset()),
    (_check_selections, frozenset()),
    (_check_batches, frozenset()),
    (_check_profiles_and_journal, frozenset()),
    (_check_clear_and_restart, frozenset()),
    (_check_sessions, frozenset()),
    (_check_session_selections, frozenset()),
    (_check_least_loaded, frozenset()),
    (_check_filtering_profiles, frozenset()),
    (_check_reconfigure, frozenset()),
    (_check_learning, frozenset({"clock"})),
    (_check_temporary_backends, frozenset({"clock"})),
    (_check_capacity, frozenset({"limits"})),
    (_check_weighted, frozenset({"weights"})),
)
"""Every check, with the options ``make_store`` must accept for it."""
