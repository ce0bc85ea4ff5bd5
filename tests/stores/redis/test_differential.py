"""RedisStore against the engine: random batches of every operation, answer for answer.

One process, one store: each batch goes to a RedisStore and to a MemoryStore built with the
same options (limits, weights, a health policy, an injected clock moved between batches),
and every answer, the journal and the backend states must be the same. Seeded, so a failure
replays.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from beamrouting import (
    BeamRoutingError,
    Catalog,
    Explanation,
    HealthPolicy,
    JournalEvent,
    MemoryStore,
    Outcome,
    RedisStore,
    RouteDecision,
    RoutingError,
    RoutingSettings,
    SessionHandle,
)
from beamrouting._core._profiles import parse_profile
from beamrouting.store import (
    ClearOp,
    ExplainOp,
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
    SelectOp,
    SessionOp,
    UnregisterOp,
)
from tests._helpers import BACKENDS
from tests._redis import import_redis_or_skip
from tests.stores.redis._fleet import Clock

import_redis_or_skip()

pytestmark = pytest.mark.anyio

OPTIONS: dict[str, Any] = {
    "limits": {"claude": 2, "codex": 3, "gemini": 1},
    "weights": {"claude": 3, "copilot": 2},
    "health": HealthPolicy(failure_threshold=2, base_ejection=10.0, max_ejection=40.0, probe_sessions=2),
}
FILTER = {
    "mode": "filter",
    "rules": [
        {"action": "backend", "decision": "deny", "match": ["eq", "backend", "codex"], "reason": "no codex"}
    ],
}
VETO = {"rules": [{"action": "backend", "match": ["eq", "backend", "copilot"], "reason": "no copilot"}]}


def comparable(answer: object) -> object:
    """An answer as plain data: errors by code (and a routing error's detail), events by type and payload."""
    if isinstance(answer, RouteDecision | Explanation):
        return answer.to_dict()
    if isinstance(answer, RoutingError):
        return (answer.code, answer.detail)
    if isinstance(answer, BeamRoutingError):
        return answer.code
    if isinstance(answer, JournalEvent):
        return (answer.event_type, answer.payload)
    if isinstance(answer, list):
        return [comparable(item) for item in answer]
    return msgspec.to_builtins(answer)


def requests(rng: random.Random) -> dict[str, Any]:
    """One random request."""
    kind = rng.choice(("rr", "sticky", "least", "weighted", "explicit", "preferred", "failover"))
    request: dict[str, Any]
    if kind == "rr":
        request = {"policy": "round_robin"}
    elif kind == "sticky":
        request = {"policy": "sticky", "affinity_key": rng.choice("abc")}
    elif kind == "least":
        request = {"policy": "least_loaded"}
    elif kind == "weighted":
        request = {"policy": "weighted"}
    elif kind == "explicit":
        request = {"backend": rng.choice(BACKENDS)}
    elif kind == "preferred":
        request = {
            "preferred_backends": rng.sample(BACKENDS, 2),
            "fallback_policy": rng.choice(("none", "available")),
        }
    else:
        request = {"policy": "failover", "last_backend": rng.choice(BACKENDS)}
    if rng.random() < 0.2:
        request["excluded_backends"] = [rng.choice(BACKENDS)]
    if rng.random() < 0.15:
        request["policy_profile_id"] = rng.choice(("filter", "veto", "missing"))
    return request


def routing_op(rng: random.Random, normalize: Any) -> RoutingOp:
    roll = rng.random()
    if roll < 0.55:
        session = f"s-{rng.randrange(8)}" if rng.random() < 0.4 else None
        return SelectOp(normalize(requests(rng)), session, {}, rng.random() < 0.7)
    if roll < 0.7:
        outcome = rng.choice(
            (Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS, Outcome.QUOTA, Outcome.REJECTED)
        )
        retry_after = rng.choice((None, 5.0, 25.0)) if outcome is Outcome.QUOTA else None
        return ReportOp(rng.choice(BACKENDS), outcome, None, retry_after)
    if roll < 0.76:
        return ExplainOp(normalize(requests(rng)))
    if roll < 0.82:
        return ReadStatesOp()
    if roll < 0.86:
        return RestoreOp(rng.choice(BACKENDS))
    if roll < 0.9:
        return ReleaseOp(rng.choice("abc"))
    if roll < 0.92:
        return ClearOp()
    if roll < 0.94:
        return ReconfigureOp(
            RoutingSettings.checked(
                Catalog.default(),
                profiles={
                    name: profile
                    for name, profile in (("filter", FILTER), ("veto", VETO))
                    if rng.random() < 0.6
                },
                health=rng.choice(
                    (OPTIONS["health"], HealthPolicy(failure_threshold=1, probe_sessions=1), None)
                ),
                limits={b: rng.randint(1, 3) for b in rng.sample(BACKENDS, rng.randint(0, 3))},
                weights={b: rng.randint(1, 4) for b in rng.sample(BACKENDS, rng.randint(0, 2))},
            )
        )
    return ReadJournalOp(None, 6)


def session_op(rng: random.Random) -> SessionOp:
    roll = rng.random()
    session = f"s-{rng.randrange(8)}"
    if roll < 0.45:
        return RegisterOp(SessionHandle(session, rng.choice(BACKENDS), {}), rng.random() < 0.3)
    if roll < 0.85:
        return UnregisterOp(session)
    if roll < 0.95:
        return LookupOp(session)
    return ListSessionsOp()


@pytest.mark.parametrize("seed", range(8))
async def test_random_batches_answer_as_the_engine_does(redis_url: str, prefix: str, seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    store = RedisStore(redis_url, prefix=prefix, clock=clock, **OPTIONS)
    reference = MemoryStore(clock=clock, **OPTIONS)
    normalize = reference.engine.normalize
    await store.start()
    try:
        setup = [PutProfileOp("filter", parse_profile(FILTER)), PutProfileOp("veto", parse_profile(VETO))]
        assert await store.routing_batch(setup) == await reference.routing_batch(setup)
        for step in range(150):
            got: list[Any]
            want: list[Any]
            ops: list[Any]
            if rng.random() < 0.25:
                ops = [session_op(rng) for _ in range(rng.randint(1, 4))]
                got, want = await store.session_batch(ops), await reference.session_batch(ops)
            else:
                ops = [routing_op(rng, normalize) for _ in range(rng.randint(1, 12))]
                got, want = await store.routing_batch(ops), await reference.routing_batch(ops)
            for index, (op, answer, expected) in enumerate(zip(ops, got, want, strict=True)):
                assert comparable(answer) == comparable(expected), (seed, step, index, op)
            if rng.random() < 0.3:
                clock.advance(rng.choice((1.0, 6.0, 11.0, 30.0)))
        final: list[RoutingOp] = [ReadStatesOp(), ReadJournalOp()]
        got, want = await store.routing_batch(final), await reference.routing_batch(final)
        assert comparable(got) == comparable(want)
    finally:
        await store.aclose()


PLAIN = [
    {"policy": "round_robin"},
    {"policy": "round_robin", "excluded_backends": ["codex"]},
    # Equal candidates, another request object: the same counter as the first, so a run with
    # both goes the general way.
    {"policy": "round_robin", "health": {"claude": "healthy"}},
    {"policy": "round_robin", "preferred_backends": ["gemini", "opencode"]},
    {"backend": "gemini"},
    {"preferred_backends": ["copilot", "claude"], "fallback_policy": "available"},
    {"policy": "failover", "last_backend": "claude"},
    {"policy": "round_robin", "health": {"opencode": "down"}},
]
"""Requests a run may settle in one round trip (no session, affinity key, profile or limit)."""


def plain_run(rng: random.Random, normalize: Any) -> list[RoutingOp]:
    """Mostly plain selections; now and then one that is not, or a report."""
    ops: list[RoutingOp] = []
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        if roll < 0.85:
            ops.append(SelectOp(normalize(rng.choice(PLAIN))))
        elif roll < 0.9:
            ops.append(SelectOp(normalize({"policy": "sticky", "affinity_key": rng.choice("ab")})))
        elif roll < 0.93:
            ops.append(SelectOp(normalize(rng.choice(PLAIN)), f"s-{rng.randrange(4)}", {}, True))
        elif roll < 0.96:
            ops.append(SelectOp(normalize({"policy": "round_robin", "policy_profile_id": "veto"})))
        else:
            outcome = rng.choice((Outcome.FAILURE, Outcome.QUOTA, Outcome.SUCCESS))
            ops.append(
                ReportOp(rng.choice(BACKENDS), outcome, None, 5.0 if outcome is Outcome.QUOTA else None)
            )
    return ops


@pytest.mark.parametrize("seed", range(6))
async def test_runs_of_plain_selections_answer_and_journal_as_the_engine_does(
    redis_url: str, prefix: str, seed: int
) -> None:
    """Runs settled in one round trip (and the ones that fall back) match the engine, answer for answer."""
    rng = random.Random(seed)
    clock = Clock()
    options: dict[str, Any] = {"health": OPTIONS["health"]}
    store = RedisStore(redis_url, prefix=prefix, clock=clock, **options)
    reference = MemoryStore(clock=clock, **options)
    # Plain requests are normalised once, as the router does: equal requests share one object.
    normalize = reference.engine.normalize
    await store.start()
    try:
        setup = [PutProfileOp("veto", parse_profile(VETO))]
        assert await store.routing_batch(setup) == await reference.routing_batch(setup)
        for step in range(60):
            ops = plain_run(rng, normalize)
            got, want = await store.routing_batch(ops), await reference.routing_batch(ops)
            for index, (op, answer, expected) in enumerate(zip(ops, got, want, strict=True)):
                assert comparable(answer) == comparable(expected), (seed, step, index, op)
            if rng.random() < 0.3:
                clock.advance(rng.choice((1.0, 6.0, 11.0)))
        final: list[RoutingOp] = [ReadStatesOp(), ReadJournalOp()]
        got, want = await store.routing_batch(final), await reference.routing_batch(final)
        assert comparable(got) == comparable(want)
    finally:
        await store.aclose()


@pytest.mark.parametrize(("selections", "round_trips"), [(5, 2), (60, 1)])
async def test_a_round_robin_of_many_turns_takes_one_round_trip_only_for_as_many_selections(
    redis_url: str, prefix: str, selections: int, round_trips: int
) -> None:
    """A plain run sends a record per turn: over 50 backends, 5 selections go the general way."""
    catalog = Catalog([f"b{index:02d}" for index in range(50)])
    store = RedisStore(redis_url, prefix=prefix, catalog=catalog)
    reference = MemoryStore(catalog)
    request = reference.engine.normalize({"policy": "round_robin"})
    await store.start()
    try:
        await store.routing_batch([SelectOp(request)] * 50)  # the view is current from now on
        await reference.routing_batch([SelectOp(request)] * 50)
        fleet = store._settler._fleet
        calls: list[str] = []
        state, commit = fleet.state, fleet.commit

        async def counted_state(*args: Any, **kwargs: Any) -> Any:
            calls.append("state")
            return await state(*args, **kwargs)

        async def counted_commit(*args: Any, **kwargs: Any) -> Any:
            calls.append("commit")
            return await commit(*args, **kwargs)

        fleet.state, fleet.commit = counted_state, counted_commit  # type: ignore[method-assign]
        ops: list[RoutingOp] = [SelectOp(request)] * selections
        got, want = await store.routing_batch(ops), await reference.routing_batch(ops)
        assert comparable(got) == comparable(want)
        assert len(calls) == round_trips
    finally:
        await store.aclose()
