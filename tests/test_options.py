"""One validation style for every option of every constructor.

A value of the wrong type raises ``TypeError``; a value of the right type that is out of
range raises ``ValueError``. The table below holds every option of every constructor of
the public API, each with a wrong type and, where a range applies, a value out of range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from beamrouting import Catalog, MemoryStore, Router, RoutingEngine, Subscription

redis = pytest.importorskip("redis")
from beamrouting import RedisStore  # noqa: E402

URL = "redis://127.0.0.1:1/0"
JOURNAL = RoutingEngine().journal_ring

ENGINE_OPTIONS: list[tuple[str, object, type[Exception]]] = [
    ("catalog", "claude", TypeError),
    ("max_counters", 1.5, TypeError),
    ("max_counters", True, TypeError),
    ("max_counters", 0, ValueError),
    ("max_bindings", "10", TypeError),
    ("max_bindings", 0, ValueError),
    ("binding_ttl", "10", TypeError),
    ("binding_ttl", 0, ValueError),
    ("binding_ttl", math.nan, ValueError),
    ("journal_size", 1.5, TypeError),
    ("journal_size", -1, ValueError),
    ("clock", 5, TypeError),
    ("max_sessions", "10", TypeError),
    ("max_sessions", 0, ValueError),
    ("max_key_length", 1.5, TypeError),
    ("max_key_length", 0, ValueError),
    ("max_list_entries", "256", TypeError),
    ("max_list_entries", -1, ValueError),
    ("max_metadata_bytes", None, TypeError),
    ("max_metadata_bytes", 0, ValueError),
    ("health", {"failure_threshold": 3}, TypeError),
    ("limits", ["claude"], TypeError),
    ("limits", {"claude": "10"}, TypeError),
    ("limits", {"claude": 0}, ValueError),
    ("limits", {"nobody": 3}, ValueError),
    ("weights", {"codex": 1.5}, TypeError),
    ("weights", {"codex": -1}, ValueError),
    ("weights", {"claude": 1, "claude_code": 2}, ValueError),
]
"""The engine's options; the router and the memory store take them too."""

CASES: list[tuple[str, Callable[..., object], str, object, type[Exception]]] = [
    *[("RoutingEngine", RoutingEngine, name, value, error) for name, value, error in ENGINE_OPTIONS],
    *[("MemoryStore", MemoryStore, name, value, error) for name, value, error in ENGINE_OPTIONS],
    ("MemoryStore", MemoryStore, "engine", "an engine", TypeError),
    *[("Router", Router, name, value, error) for name, value, error in ENGINE_OPTIONS],
    ("Router", Router, "max_restarts", "3", TypeError),
    ("Router", Router, "max_restarts", 1.5, TypeError),
    ("Router", Router, "max_restarts", -1, ValueError),
    ("Router", Router, "restart_period", "5", TypeError),
    ("Router", Router, "restart_period", 0, ValueError),
    ("Router", Router, "restart_period", -1.0, ValueError),
    ("Router", Router, "mailbox_size", "3", TypeError),
    ("Router", Router, "mailbox_size", 1.5, TypeError),
    ("Router", Router, "mailbox_size", 0, ValueError),
    ("Router", Router, "call_timeout", None, TypeError),
    ("Router", Router, "call_timeout", 0, ValueError),
    ("Router", Router, "call_timeout", math.nan, ValueError),
    ("Router", Router, "store", "redis://localhost", TypeError),
    ("Router", Router, "max_waiters", "10", TypeError),
    ("Router", Router, "max_waiters", 0, ValueError),
    ("Subscription", lambda **kw: Subscription(JOURNAL, **kw), "maxlen", "10", TypeError),
    ("Subscription", lambda **kw: Subscription(JOURNAL, **kw), "maxlen", 1, ValueError),
    ("Subscription", lambda **kw: Subscription(JOURNAL, **kw), "event_type", 3, TypeError),
    ("Subscription", lambda **kw: Subscription(JOURNAL, **kw), "event_type", "decision", ValueError),
    ("Subscription", lambda **kw: Subscription(**kw), "journal", "a journal", TypeError),
    ("RedisStore", lambda **kw: RedisStore(**{"url": URL, **kw}), "url", 5, TypeError),
    ("RedisStore", lambda **kw: RedisStore(**{"url": URL, **kw}), "url", "", ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "prefix", 5, TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "prefix", "", ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "catalog", "claude", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "binding_ttl", "60", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "binding_ttl", 0, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "binding_ttl", math.inf, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "idle_ttl", "60", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "idle_ttl", -1, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "session_ttl", "60", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "session_ttl", math.inf, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "journal_size", 1.5, TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "journal_size", -1, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "operation_timeout", "1", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "operation_timeout", 0, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "retry_interval", "1", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "retry_interval", -1, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "max_key_length", "1024", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "max_key_length", 0, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "max_list_entries", 2.0, TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "max_list_entries", 0, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "max_metadata_bytes", "1", TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "max_metadata_bytes", -5, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "health", {"failure_threshold": 3}, TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "limits", ["claude"], TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "limits", {"claude": "10"}, TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "limits", {"claude": 0}, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "limits", {"nobody": 3}, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "weights", {"codex": 1.5}, TypeError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "weights", {"codex": -1}, ValueError),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "weights", {"codex": 10_001}, ValueError),
    (
        "RedisStore",
        lambda **kw: RedisStore(URL, **kw),
        "weights",
        {"claude": 1, "claude_code": 2},
        ValueError,
    ),
    ("RedisStore", lambda **kw: RedisStore(URL, **kw), "clock", 5, TypeError),
    ("RedisStore", lambda **kw: RedisStore(**{"url": URL, **kw}), "url", "http://host", ValueError),
    ("RedisStore", lambda **kw: RedisStore(**{"url": URL, **kw}), "url", "not a url", ValueError),
    ("RedisStore", lambda **kw: RedisStore(**{"url": URL, **kw}), "url", "redis://host/abc", ValueError),
    (
        "RedisStore",
        lambda **kw: RedisStore(**{"url": URL, **kw}),
        "url",
        "redis://127.0.0.1:99999/0",
        ValueError,
    ),
]


@pytest.mark.parametrize(
    ("build", "option", "value", "error"),
    [
        pytest.param(build, option, value, error, id=f"{owner}-{option}={value!r}")
        for owner, build, option, value, error in CASES
    ],
)
def test_a_bad_option_raises_type_error_or_value_error_naming_it(
    build: Callable[..., object], option: str, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option):
        build(**{option: value})


def test_every_option_of_every_constructor_is_in_the_table() -> None:
    import inspect

    covered: dict[str, set[str]] = {}
    for owner, _, option, _, _ in CASES:
        covered.setdefault(owner, set()).add(option)
    constructors: dict[str, Any] = {
        "RoutingEngine": RoutingEngine,
        "MemoryStore": MemoryStore,
        "Router": Router,
        "Subscription": Subscription,
        "RedisStore": RedisStore,
    }
    internal = {"Subscription": {"on_close"}}  # set by the router, not by users
    for owner, cls in constructors.items():
        parameters = {
            name
            for name, p in inspect.signature(cls).parameters.items()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        if owner in ("MemoryStore", "Router"):
            parameters |= {name for name, _, _ in ENGINE_OPTIONS}
        missing = parameters - covered.get(owner, set()) - internal.get(owner, set())
        assert not missing, f"{owner} options without a row in the table: {sorted(missing)}"


def test_good_options_are_accepted() -> None:
    RoutingEngine(Catalog.default(), max_counters=1, binding_ttl=1, journal_size=0, clock=lambda: 0.0)
    Router(max_restarts=0, restart_period=0.5, mailbox_size=1, call_timeout=0.1)
    RedisStore(URL, binding_ttl=None, idle_ttl=None, session_ttl=1, retry_interval=0)
    RedisStore(URL, health=None, limits={"claude_code": 3}, weights={"codex": 2}, clock=lambda: 0.0)
