"""Size limits of requests and sessions, live-session caps and LRU eviction (the engine).

Every oversized value is rejected by its size alone: the hostile containers of
``tests/_edges.py`` raise (a ``BaseException``, so no ``except Exception`` hides it) if any
entry is read, which proves the rejection costs no work proportional to the size.
The router gives the same errors (tests/runtime/test_hardening.py).
"""

from __future__ import annotations

import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest

from beamrouting import (
    InvalidAffinityKey,
    InvalidPolicy,
    InvalidRouteRequest,
    RoutingEngine,
    RoutingError,
    TooManySessions,
    UnknownBackend,
)
from tests._edges import UntouchableDict, UntouchableList, UntouchableStr, engine_error

HUGE = 5_000_000
LIST_FIELDS = ("preferred_backends", "excluded_backends", "fallback_backends")


@pytest.fixture(scope="module")
def huge_list() -> UntouchableList:
    """5,000,000 entries none of which may be read."""
    return UntouchableList([None] * HUGE)


def too_many(field: str, entries: int, limit: int = 256) -> dict[str, Any]:
    return {"field": field, "max_list_entries": limit, "entries": entries}


def too_long(field: str, length: int, limit: int = 1024) -> dict[str, Any]:
    return {"field": field, "max_key_length": limit, "length": length}


# --------------------------------------------------------------------------- keys and ids


def test_affinity_key_longer_than_the_limit_is_invalid_affinity_key() -> None:
    engine = RoutingEngine()
    with pytest.raises(InvalidAffinityKey) as info:
        engine.select_backend({"policy": "sticky", "affinity_key": "k" * 1025})
    assert info.value.detail == too_long("affinity_key", 1025)


def test_affinity_key_of_exactly_the_limit_is_accepted() -> None:
    engine = RoutingEngine()
    decision = engine.select_backend({"policy": "sticky", "affinity_key": "k" * 1024})
    assert decision.affinity_key == "k" * 1024


def test_affinity_key_limit_is_configurable() -> None:
    engine = RoutingEngine(max_key_length=8)
    assert engine.select_backend({"policy": "sticky", "affinity_key": "k" * 8}).backend == "claude"
    assert engine_error(lambda: engine.select_backend({"policy": "sticky", "affinity_key": "k" * 9})) == (
        "invalid_affinity_key",
        too_long("affinity_key", 9, 8),
    )


def test_a_one_megabyte_affinity_key_is_rejected_without_reading_it() -> None:
    engine = RoutingEngine()
    key = UntouchableStr("k" * 1_000_000)
    assert engine_error(lambda: engine.select_backend({"policy": "sticky", "affinity_key": key})) == (
        "invalid_affinity_key",
        too_long("affinity_key", 1_000_000),
    )


def test_release_checks_the_affinity_key_limit() -> None:
    engine = RoutingEngine()
    assert engine_error(lambda: engine.release("k" * 1025)) == (
        "invalid_affinity_key",
        too_long("affinity_key", 1025),
    )


def test_policy_profile_id_longer_than_the_limit_is_invalid_route_request() -> None:
    engine = RoutingEngine()
    with pytest.raises(InvalidRouteRequest) as info:
        engine.select_backend({"policy_profile_id": UntouchableStr("p" * 1025)})
    assert info.value.detail == too_long("policy_profile_id", 1025)


def test_policy_profile_id_of_exactly_the_limit_is_checked_against_profiles() -> None:
    engine = RoutingEngine()
    assert engine_error(lambda: engine.select_backend({"policy_profile_id": "p" * 1024})) == (
        "policy_denied",
        "unknown policy profile",
    )


@pytest.mark.parametrize("call", ["register", "unregister", "lookup", "select_backend"])
def test_session_id_longer_than_the_limit_is_invalid_route_request(call: str) -> None:
    engine = RoutingEngine()
    session_id = UntouchableStr("s" * 1025)
    calls: dict[str, Callable[[], object]] = {
        "register": lambda: engine.register_session(session_id, "claude"),
        "unregister": lambda: engine.unregister_session(session_id),
        "lookup": lambda: engine.session_backend(session_id),
        "select_backend": lambda: engine.select_backend(session_id, {}),
    }
    with pytest.raises(InvalidRouteRequest) as info:
        calls[call]()
    assert info.value.detail == too_long("session_id", 1025)
    assert engine.sessions() == []


def test_session_id_of_exactly_the_limit_is_accepted() -> None:
    engine = RoutingEngine()
    session_id = "s" * 1024
    engine.register_session(session_id, "codex")
    assert engine.session_backend(session_id) == "codex"
    assert engine.select_backend(session_id, {}).affinity_key == session_id
    engine.unregister_session(session_id)
    assert engine.sessions() == []


# --------------------------------------------------------------------------- lists and mappings


@pytest.mark.parametrize("field", LIST_FIELDS)
def test_backend_list_over_the_limit_counts_raw_entries(field: str) -> None:
    engine = RoutingEngine()
    assert engine.select_backend({field: ["claude_code"] * 256}).backend  # 256 duplicates: fine
    with pytest.raises(InvalidRouteRequest) as info:
        engine.select_backend({field: ["claude"] * 257})  # one name, 257 raw entries
    assert info.value.detail == too_many(field, 257)


@pytest.mark.parametrize("field", LIST_FIELDS)
def test_backend_tuple_over_the_limit_is_rejected(field: str) -> None:
    engine = RoutingEngine()
    assert engine_error(lambda: engine.select_backend({field: ("codex",) * 300})) == (
        "invalid_route_request",
        too_many(field, 300),
    )


def test_capabilities_over_the_limit_count_raw_entries() -> None:
    engine = RoutingEngine()
    assert engine.select_backend({"capabilities": ["hooks"] * 256}).backend == "claude"
    assert engine_error(lambda: engine.select_backend({"capabilities": ["hooks"] * 257})) == (
        "invalid_route_request",
        too_many("capabilities", 257),
    )


def test_health_mapping_over_the_limit_is_rejected_before_its_entries_are_checked() -> None:
    engine = RoutingEngine()
    health = {f"not-a-backend-{i}": "sideways" for i in range(257)}
    assert engine_error(lambda: engine.select_backend({"health": health})) == (
        "invalid_route_request",
        too_many("health", 257),
    )


def test_request_mapping_over_the_limit_is_rejected_before_its_keys_are_checked() -> None:
    engine = RoutingEngine()
    request: dict[Any, Any] = {f"unknown-{i}": i for i in range(257)}
    assert engine_error(lambda: engine.select_backend(request)) == (
        "invalid_route_request",
        too_many("request", 257),
    )
    del request["unknown-0"]
    assert engine_error(lambda: engine.select_backend(request))[0] == "unsupported_route_key"


def test_request_merged_over_a_session_is_size_checked() -> None:
    engine = RoutingEngine()
    request = {f"unknown-{i}": i for i in range(257)}
    assert engine_error(lambda: engine.select_backend("session-1", request)) == (
        "invalid_route_request",
        too_many("request", 257),
    )


def test_session_options_routing_over_the_limit_is_rejected() -> None:
    engine = RoutingEngine()
    routing = {f"unknown-{i}": i for i in range(257)}
    assert engine_error(lambda: engine.select_backend({"routing": routing}, {})) == (
        "invalid_route_request",
        too_many("routing", 257),
    )
    assert engine_error(lambda: engine.select_backend({"routing": UntouchableDict(routing)}, {})) == (
        "invalid_route_request",
        too_many("routing", 257),
    )


def test_list_limit_is_configurable() -> None:
    engine = RoutingEngine(max_list_entries=2)
    assert engine.select_backend({"preferred_backends": ["gemini", "gemini"]}).backend == "gemini"
    assert engine_error(lambda: engine.select_backend({"preferred_backends": ["gemini"] * 3})) == (
        "invalid_route_request",
        too_many("preferred_backends", 3, 2),
    )
    assert engine_error(
        lambda: engine.select_backend({"policy": "round_robin", "backend": None, "health": {}})
    ) == (
        "invalid_route_request",
        too_many("request", 3, 2),
    )


# --------------------------------------------------------------------------- validation order


def test_a_bad_policy_is_reported_before_an_oversized_list() -> None:
    engine = RoutingEngine()
    with pytest.raises(InvalidPolicy):
        engine.select_backend({"policy": "bogus", "preferred_backends": ["claude"] * 1000})
    with pytest.raises(InvalidPolicy):
        engine.select_backend({"policy": "bogus", "health": {f"b{i}": "down" for i in range(1000)}})


def test_an_earlier_bad_field_is_reported_before_a_later_oversized_list() -> None:
    engine = RoutingEngine()
    assert engine_error(
        lambda: engine.select_backend(
            {"preferred_backends": ["nope"], "excluded_backends": ["claude"] * 1000}
        )
    ) == ("unknown_backend", "nope")
    assert engine_error(
        lambda: engine.select_backend({"backend": "nope", "fallback_backends": ["claude"] * 1000})
    ) == ("unknown_backend", "nope")


def test_an_oversized_list_is_reported_before_later_bad_fields() -> None:
    engine = RoutingEngine()
    request = {
        "excluded_backends": ["claude"] * 1000,
        "capabilities": ["no-such-capability"],
        "fallback_policy": "bogus",
        "health": "not a mapping",
    }
    assert engine_error(lambda: engine.select_backend(request)) == (
        "invalid_route_request",
        too_many("excluded_backends", 1000),
    )
    request["excluded_backends"] = ["claude"]
    assert engine_error(lambda: engine.select_backend(request)) == (
        "unknown_capability",
        "no-such-capability",
    )


def test_capabilities_over_the_limit_come_after_fallback_backends_and_before_affinity_key() -> None:
    engine = RoutingEngine()
    request = {"capabilities": ["hooks"] * 300, "affinity_key": "k" * 5000}
    assert engine_error(lambda: engine.select_backend(request)) == (
        "invalid_route_request",
        too_many("capabilities", 300),
    )
    request["fallback_backends"] = ["nope"]
    assert engine_error(lambda: engine.select_backend(request)) == ("unknown_backend", "nope")


def test_health_over_the_limit_comes_after_the_profile_id() -> None:
    engine = RoutingEngine()
    request = {"policy_profile_id": "", "health": {f"b{i}": "down" for i in range(300)}}
    assert engine_error(lambda: engine.select_backend(request)) == (
        "invalid_route_request",
        "policy_profile_id",
    )
    request["policy_profile_id"] = "team-a"
    assert engine_error(lambda: engine.select_backend(request)) == (
        "invalid_route_request",
        too_many("health", 300),
    )


# --------------------------------------------------------------------------- no work proportional to size


@pytest.mark.parametrize("field", [*LIST_FIELDS, "capabilities"])
def test_five_million_list_entries_are_rejected_without_reading_one(
    field: str, huge_list: UntouchableList
) -> None:
    engine = RoutingEngine()
    assert engine_error(lambda: engine.select_backend({field: huge_list})) == (
        "invalid_route_request",
        too_many(field, HUGE),
    )


def test_a_huge_health_mapping_is_rejected_without_reading_one_entry() -> None:
    engine = RoutingEngine()
    health = UntouchableDict.fromkeys(range(100_000), "down")
    assert engine_error(lambda: engine.select_backend({"health": health})) == (
        "invalid_route_request",
        too_many("health", 100_000),
    )


def test_a_huge_request_mapping_is_rejected_without_reading_one_key() -> None:
    engine = RoutingEngine()
    request: Any = UntouchableDict.fromkeys(range(100_000))
    assert engine_error(lambda: engine.select_backend(request)) == (
        "invalid_route_request",
        too_many("request", 100_000),
    )
    assert engine_error(lambda: engine.select_backend("session-1", request)) == (
        "invalid_route_request",
        too_many("request", 100_000),
    )


@pytest.mark.parametrize(
    ("request_of", "code"),
    [
        (lambda big: {"backend": big}, "unknown_backend"),
        (lambda big: {"last_backend": big}, "unknown_backend"),
        (lambda big: {"policy": big}, "invalid_policy"),
        (lambda big: {"fallback_policy": big}, "invalid_fallback_policy"),
        (lambda big: {"affinity_key": big}, "invalid_affinity_key"),
        (lambda big: {"preferred_backends": [big]}, "unknown_backend"),
        (lambda big: {"capabilities": [big]}, "unknown_capability"),
        (lambda big: {"health": {"claude": big}}, "invalid_health_status"),
    ],
    ids=[
        "backend",
        "last_backend",
        "policy",
        "fallback_policy",
        "affinity_key",
        "in-list",
        "capability",
        "health",
    ],
)
def test_a_huge_list_where_a_name_belongs_is_rejected_without_copying_it(
    request_of: Any, code: str, huge_list: UntouchableList
) -> None:
    engine = RoutingEngine()
    error = engine_error(lambda: engine.select_backend(request_of(huge_list)))
    assert error == (code, f"<UntouchableList of {HUGE} entries>")
    plain = [None] * 2000
    assert engine_error(lambda: engine.select_backend(request_of(plain))) == (code, "<list of 2000 entries>")


@pytest.mark.parametrize(
    "request_of",
    [
        lambda big: {"preferred_backends": [big]},
        lambda big: {"capabilities": [big]},
        lambda big: {"health": {"claude": big}},
        lambda big: {"excluded_backends": ["claude", big]},
        lambda big: {"backend": big},
        lambda big: {"policy_profile_id": "x" * HUGE},
        lambda big: {"preferred_backends": ["x" * HUGE]},
    ],
    ids=["in-list", "capability", "health-value", "second-entry", "backend", "long-profile-id", "long-name"],
)
def test_rejecting_a_huge_value_allocates_nothing_in_proportion(request_of: Any) -> None:
    engine = RoutingEngine()
    engine.select_backend({})  # warm up
    request = request_of([None] * HUGE)
    tracemalloc.start()
    try:
        with pytest.raises(RoutingError):
            engine.select_backend(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak:,} bytes allocated to reject it"


def test_an_error_message_shows_a_huge_detail_in_short() -> None:
    name = "x" * HUGE
    error = UnknownBackend(name)
    assert error.detail is name  # the detail is the value as given
    assert len(str(error)) < 2_000
    assert (
        str(UnknownBackend("claude"))
        == "unknown_backend: no backend of the catalogue has this name ('claude')"
    )


def test_error_details_keep_lists_of_up_to_1024_entries() -> None:
    engine = RoutingEngine()
    value = ["x"] * 1024
    assert engine_error(lambda: engine.select_backend({"backend": value})) == ("unknown_backend", value)


def test_a_huge_health_value_that_is_not_a_mapping_is_summarised() -> None:
    engine = RoutingEngine()
    assert engine_error(lambda: engine.select_backend({"health": [0] * 5000})) == (
        "invalid_route_request",
        ["health", "<list of 5000 entries>"],
    )


# --------------------------------------------------------------------------- metadata


def test_metadata_over_the_byte_limit_is_invalid_route_request() -> None:
    engine = RoutingEngine()
    with pytest.raises(InvalidRouteRequest) as info:
        engine.register_session("s1", "claude", {"blob": "x" * 70_000})
    detail = info.value.detail
    assert isinstance(detail, dict)
    assert detail["field"] == "metadata"
    assert detail["max_metadata_bytes"] == 65_536
    assert detail["bytes"] > 65_536
    assert engine.sessions() == []


def test_metadata_just_under_the_byte_limit_is_accepted() -> None:
    engine = RoutingEngine(max_metadata_bytes=100)
    handle = engine.register_session("s1", "claude", {"blob": "x" * 80})
    assert handle.metadata == {"blob": "x" * 80}
    with pytest.raises(InvalidRouteRequest) as info:
        engine.register_session("s2", "claude", {"blob": "x" * 100})
    assert info.value.detail["max_metadata_bytes"] == 100


def test_metadata_with_more_entries_than_bytes_allowed_is_rejected_without_reading_them() -> None:
    engine = RoutingEngine(max_metadata_bytes=1000)
    metadata = UntouchableDict({f"k{i}": i for i in range(1001)})
    assert engine_error(lambda: engine.register_session("s1", "claude", metadata)) == (
        "invalid_route_request",
        {"field": "metadata", "max_metadata_bytes": 1000},
    )


# --------------------------------------------------------------------------- live sessions


def test_one_session_past_max_sessions_raises_too_many_sessions() -> None:
    engine = RoutingEngine(max_sessions=3)
    for i in range(3):
        engine.register_session(f"s{i}", "claude")
    with pytest.raises(TooManySessions) as info:
        engine.register_session("s3", "codex")
    assert info.value.code == "too_many_sessions"
    assert [h.session_id for h in engine.sessions()] == ["s0", "s1", "s2"]  # none evicted
    assert engine.session_backend("s0") == "claude"
    assert engine.session_backend("s3") is None


def test_a_live_session_can_be_registered_again_at_max_sessions() -> None:
    engine = RoutingEngine(max_sessions=2)
    engine.register_session("s0", "claude")
    engine.register_session("s1", "claude")
    engine.register_session("s0", "gemini")  # a heartbeat: no new session
    assert {h.session_id: h.backend for h in engine.sessions()} == {"s1": "claude", "s0": "gemini"}


def test_unregistering_frees_room_below_max_sessions() -> None:
    engine = RoutingEngine(max_sessions=1)
    engine.register_session("s0", "claude")
    with pytest.raises(TooManySessions):
        engine.register_session("s1", "claude")
    engine.unregister_session("s0")
    engine.register_session("s1", "claude")
    assert [h.session_id for h in engine.sessions()] == ["s1"]


def test_select_and_register_past_max_sessions_changes_nothing() -> None:
    engine = RoutingEngine(max_sessions=1)
    request = engine.normalize({"policy": "round_robin"})
    assert engine.select_and_register(request, "s0", {}).backend == "claude"
    journal = len(engine.journal())
    with pytest.raises(TooManySessions):
        engine.select_and_register(request, "s1", {})
    assert len(engine.journal()) == journal  # no selection was made
    assert engine.select_backend({"policy": "round_robin"}).backend == "codex"  # counter not moved


# --------------------------------------------------------------------------- eviction


def test_binding_eviction_keeps_exactly_the_last_used_keys_in_lru_order() -> None:
    cap = 1_000
    engine = RoutingEngine(max_bindings=cap)
    model: OrderedDict[str, None] = OrderedDict()

    def use(key: str) -> None:
        engine.select_backend({"policy": "sticky", "affinity_key": key})
        model[key] = None
        model.move_to_end(key)
        if len(model) > cap:
            model.popitem(last=False)

    use("kept")
    for i in range(50_000):
        use(f"key-{i}")
        if i % 600 == 0:
            use("kept")  # reused often enough never to be the least recently used
    assert engine.state.binding_count == cap
    assert list(engine.state.bindings()) == list(model)
    assert "kept" in engine.state.bindings()
    assert "key-0" not in engine.state.bindings()
    assert "key-49999" in engine.state.bindings()
    again = engine.select_backend({"policy": "sticky", "affinity_key": "kept"})
    assert again.reasons == ("reused sticky affinity backend",)


def test_an_evicted_key_binds_afresh() -> None:
    engine = RoutingEngine(max_bindings=1_000)
    first = engine.select_backend({"policy": "sticky", "affinity_key": "key-0"})
    for i in range(1, 1_001):
        engine.select_backend({"policy": "sticky", "affinity_key": f"key-{i}"})
    assert "key-0" not in engine.state.bindings()
    again = engine.select_backend({"policy": "sticky", "affinity_key": "key-0"})
    assert again.reasons == ("selected backend and bound sticky affinity",)
    assert first.reasons == again.reasons


def test_counter_eviction_keeps_the_last_used_counters() -> None:
    engine = RoutingEngine(max_counters=3)
    excluded = ["claude", "codex", "copilot", "gemini", "opencode"]
    requests = [{"policy": "round_robin", "excluded_backends": [b]} for b in excluded]
    for request in requests:  # five counters through a cap of three: the last three stay
        engine.select_backend(request)
    assert engine.state.counter_count == 3
    # The last three continue their rotation; the first two start over.
    assert engine.select_backend(requests[4]).backend == "codex"
    assert engine.select_backend(requests[0]).backend == "codex"  # started over (evicted)
