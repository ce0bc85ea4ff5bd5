"""No input crashes the engine (section 9.1): arbitrary values anywhere give a RoutingError
with a JSON-compatible detail, and the engine keeps routing afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beamrouting import Health, Policy, RouteDecision, RoutingEngine, RoutingError
from tests._helpers import BACKENDS, profiles_for_scenarios

ROUTE_KEYS = (
    "policy",
    "backend",
    "preferred_backends",
    "excluded_backends",
    "fallback_backends",
    "capabilities",
    "last_backend",
    "fallback_policy",
    "affinity_key",
    "policy_profile_id",
    "health",
)
PLAIN_REQUEST = {"policy": "round_robin", "preferred_backends": ["codex"]}


# --------------------------------------------------------------------------- hostile values


class Unhashable:
    __hash__ = None  # type: ignore[assignment]


class ExplodingEq:
    def __hash__(self) -> int:
        return hash("claude")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ exploded")


class ExplodingStr:
    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


class ExplodingHash:
    def __hash__(self) -> int:
        raise RuntimeError("__hash__ exploded")


class StrWithExplodingHash(str):
    def __hash__(self) -> int:
        raise RuntimeError("__hash__ exploded")


class ExplodingMapping(Mapping[Any, Any]):
    def __getitem__(self, key: Any) -> Any:
        raise RuntimeError("__getitem__ exploded")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("__iter__ exploded")

    def __len__(self) -> int:
        raise RuntimeError("__len__ exploded")


class LyingMapping(Mapping[Any, Any]):
    """Iterates keys it cannot look up."""

    def __getitem__(self, key: Any) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(["policy", "backend"])

    def __len__(self) -> int:
        return 2


class ExplodingList(list[Any]):
    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("__iter__ exploded")


def _recursive_values() -> tuple[list[Any], dict[str, Any], list[Any]]:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    cyclic_dict: dict[str, Any] = {}
    cyclic_dict["self"] = cyclic_dict
    deep: list[Any] = []
    for _ in range(5000):  # deeper than the interpreter's recursion limit
        deep = [deep]
    return cyclic, cyclic_dict, deep


CYCLIC_LIST, CYCLIC_DICT, DEEP_LIST = _recursive_values()


HOSTILE_BY_NAME: dict[str, Any] = {
    "unhashable": Unhashable(),
    "exploding-eq": ExplodingEq(),
    "exploding-str-and-repr": ExplodingStr(),
    "exploding-hash": ExplodingHash(),
    "str-with-exploding-hash": StrWithExplodingHash("claude"),
    "exploding-mapping": ExplodingMapping(),
    "lying-mapping": LyingMapping(),
    "exploding-list": ExplodingList(["claude"]),
    "cyclic-list": CYCLIC_LIST,
    "cyclic-dict": CYCLIC_DICT,
    "deep-list": DEEP_LIST,
    "nan": float("nan"),
    "inf": float("inf"),
    "huge-int": -(10**400),
    "lone-surrogate": "\ud800",
    "nul-in-name": "claude\x00",
    "bytes": b"claude",
    "bytearray": bytearray(b"codex"),
    "memoryview": memoryview(b"x"),
    "frozenset": frozenset({"claude"}),
    "set": {"claude"},
    "range": range(3),
    "iterator": iter(["claude"]),
    "policy-enum": Policy.STICKY,
    "health-enum": Health.DOWN,
    "type": type,
    "class": object,
    "builtin-function": print,
    "ellipsis": ...,
    "not-implemented": NotImplemented,
}
HOSTILE = list(HOSTILE_BY_NAME.values())
HOSTILE_PARAMS = [pytest.param(value, id=name) for name, value in HOSTILE_BY_NAME.items()]

# --------------------------------------------------------------------------- strategies

# Values that mean something to the engine, so that fuzzing reaches past the first check.
MEANINGFUL = st.sampled_from(
    [
        *BACKENDS,
        "claude_code",
        "codex_cli",
        "auto",
        "hooks",
        "memory",
        *(p.value for p in Policy),
        "none",
        "available",
        *(h.value for h in Health),
        "deny-claude",
        "default-deny",
        *ROUTE_KEYS,
    ]
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=8),
    st.builds(object),
    MEANINGFUL,
    # Hostile objects whose repr() works (Hypothesis reprs what it reports).
    st.builds(Unhashable),
    st.builds(ExplodingEq),
    st.builds(ExplodingHash),
)
hashables = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    MEANINGFUL,
    st.tuples(st.integers(), st.text(max_size=3)),
    st.builds(object),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(hashables, children, max_size=4),
    ),
    max_leaves=12,
)
requests = st.one_of(
    values,
    st.dictionaries(st.sampled_from(ROUTE_KEYS), values, max_size=5),
    st.dictionaries(st.one_of(st.sampled_from(ROUTE_KEYS), hashables), values, max_size=4),
)


def fresh_engine() -> RoutingEngine:
    engine = RoutingEngine()
    for profile_id, profile in profiles_for_scenarios():
        engine.put_policy_profile(profile_id, profile)
    return engine


ENGINE = fresh_engine()
"""One engine for the whole module: state left by earlier examples must not break later ones."""


def route(engine: RoutingEngine, *args: Any) -> RouteDecision | RoutingError:
    """Route, and check that only a RoutingError with a JSON-compatible detail can come out."""
    try:
        decision = engine.select_backend(*args)
    except RoutingError as exc:
        json.dumps(exc.detail)
        json.dumps(exc.to_dict())
        assert isinstance(exc.code, str) and exc.code != "routing_error"
        assert str(exc)  # the message renders too
        return exc
    assert isinstance(decision, RouteDecision)
    json.dumps(decision.to_dict())
    return decision


def still_works(engine: RoutingEngine) -> None:
    decision = engine.select_backend({"backend": "codex_cli", "policy": "explicit"})
    assert decision.backend == "codex"


# --------------------------------------------------------------------------- tests


@given(requests)
def test_any_request_gives_a_decision_or_a_routing_error(request: Any) -> None:
    route(ENGINE, request)
    still_works(ENGINE)


@given(st.sampled_from(ROUTE_KEYS), values)
def test_any_value_for_any_key(key: str, value: Any) -> None:
    route(ENGINE, {key: value})
    route(ENGINE, {**PLAIN_REQUEST, key: value})
    still_works(ENGINE)


@given(values, st.one_of(requests, st.just({})))
def test_any_session_or_options(session_or_opts: Any, request: Any) -> None:
    route(ENGINE, session_or_opts, request)
    route(ENGINE, {"routing": session_or_opts}, {})
    route(ENGINE, {"backend": session_or_opts, "routing": {}}, {})
    still_works(ENGINE)


@given(values)
def test_any_profile_is_stored_or_rejected_with_invalid_policy_profile(profile: Any) -> None:
    engine = fresh_engine()
    try:
        engine.put_policy_profile("fuzz", profile)
    except RoutingError as exc:
        assert exc.code == "invalid_policy_profile"
        json.dumps(exc.detail)
    else:
        route(engine, {"policy_profile_id": "fuzz"})
    still_works(engine)


@given(st.dictionaries(st.sampled_from(["default", "rules"]), values, max_size=2))
def test_any_profile_shape_is_stored_or_rejected(profile: dict[str, Any]) -> None:
    engine = fresh_engine()
    try:
        engine.put_policy_profile("fuzz", profile)
    except RoutingError as exc:
        assert exc.code == "invalid_policy_profile"
    else:
        route(engine, {"policy_profile_id": "fuzz"})
    still_works(engine)


def keyed_by(value: Any, item: Any) -> dict[Any, Any] | None:
    """``{value: item}``, or None when ``value`` cannot be a dict key."""
    try:
        return {value: item}
    except Exception:
        return None


@pytest.mark.parametrize("value", HOSTILE_PARAMS)
@pytest.mark.parametrize("key", ROUTE_KEYS)
def test_hostile_values_for_every_key(key: str, value: Any) -> None:
    engine = fresh_engine()
    route(engine, {key: value})
    route(engine, {key: [value]})
    route(engine, {key: value, "policy": "sticky"})
    if key == "health" and (health := keyed_by(value, "down")) is not None:
        route(engine, {"health": health})
    still_works(engine)


@pytest.mark.parametrize("value", HOSTILE_PARAMS)
def test_hostile_requests_and_sessions(value: Any) -> None:
    engine = fresh_engine()
    route(engine, value)
    route(engine, value, {})
    route(engine, "session", value)
    route(engine, {"routing": value}, {})
    route(engine, {"backend": value}, {})
    if (request := keyed_by(value, 1)) is not None:
        route(engine, request)
    still_works(engine)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(CYCLIC_LIST, id="cyclic-list"),
        pytest.param(CYCLIC_DICT, id="cyclic-dict"),
        pytest.param(DEEP_LIST, id="deep-list"),
    ],
)
def test_recursive_values_keep_their_error_code(value: Any) -> None:
    """A list or dict is an unknown backend, however it is nested (detail: any JSON value)."""
    engine = fresh_engine()
    error = route(engine, {"backend": value})
    assert isinstance(error, RoutingError)
    assert error.code == "unknown_backend"
    error = route(engine, {"preferred_backends": ["claude", value]})
    assert isinstance(error, RoutingError)
    assert error.code == "unknown_backend"
