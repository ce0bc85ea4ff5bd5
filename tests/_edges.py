"""Bad arguments the engine and the router must answer with the same typed error
(tests/core/test_api_edges.py and tests/runtime/test_api_edges.py), and hostile values:
strings whose own methods explode, and oversized containers that must be rejected by their
size alone.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from beamrouting import RoutingError

__all__ = [
    "BAD_JOURNAL_QUERIES",
    "LONE_SURROGATE",
    "HostileObject",
    "HostileStr",
    "Iterated",
    "UntouchableDict",
    "UntouchableList",
    "UntouchableStr",
    "engine_error",
    "hostile_profile",
]


LONE_SURROGATE = "\ud800"  # what json.loads('"\\ud800"') gives: not encodable as UTF-8 or msgpack


def engine_error(call: Any) -> tuple[str, Any]:
    """``(code, detail)`` of the RoutingError ``call()`` raises (fails the test if it returns)."""
    with pytest.raises(RoutingError) as info:
        call()
    return info.value.code, info.value.detail


BAD_JOURNAL_QUERIES = [
    ({"event_type": 123}, "event_type"),
    ({"limit": 1.5}, "limit"),
    ({"limit": "x"}, "limit"),
    ({"limit": -1}, "limit"),
    ({"limit": True}, "limit"),
]


# --------------------------------------------------------------------------- hostile values


def _explode(*_: object, **__: object) -> NoReturn:
    raise RuntimeError("a hostile method was called")


class HostileStr(str):
    """A ``str`` whose comparison, hashing and conversion methods raise."""

    __eq__ = _explode
    __ne__ = _explode
    __hash__ = _explode
    __str__ = _explode
    __repr__ = _explode
    __format__ = _explode


class HostileObject:
    """An object (not a ``str``) whose comparison, hashing and conversion methods raise."""

    __eq__ = _explode
    __ne__ = _explode
    __hash__ = _explode
    __str__ = _explode
    __repr__ = _explode
    __format__ = _explode
    __fspath__ = _explode


class Iterated(BaseException):
    """Raised when an entry of an oversized container is touched: only its size may be read."""


def _touched(*_: object, **__: object) -> NoReturn:
    raise Iterated("an entry was read: the size alone must reject this value")


class UntouchableList(list[Any]):
    """A list whose length may be read but none of whose entries may be."""

    __iter__ = _touched
    __reversed__ = _touched
    __getitem__ = _touched
    __contains__ = _touched
    __repr__ = _touched
    __eq__ = _touched  # (and unhashable, as a list is)


class UntouchableDict(dict[Any, Any]):
    """A dict whose length may be read but none of whose entries may be."""

    __iter__ = _touched
    __getitem__ = _touched
    __contains__ = _touched
    __repr__ = _touched
    __eq__ = _touched
    keys = _touched
    values = _touched
    items = _touched
    get = _touched
    copy = _touched


class UntouchableStr(str):
    """A string whose length may be read but none of whose characters may be."""

    __iter__ = _touched
    __getitem__ = _touched
    __contains__ = _touched
    __eq__ = _touched
    __hash__ = _touched
    __repr__ = _touched
    __str__ = _touched
    isascii = _touched
    encode = _touched


def hostile_profile() -> dict[str, Any]:
    """A valid profile whose every string is a :class:`HostileStr`: claude is denied ("claude is out")."""
    return {
        "default": HostileStr("allow"),
        "mode": HostileStr("veto"),
        "rules": [
            {
                "action": HostileStr("backend"),
                "decision": HostileStr("deny"),
                "match": [HostileStr("eq"), HostileStr("backend"), HostileStr("claude")],
                "reason": HostileStr("claude is out"),
            },
            {"decision": HostileStr("allow"), "match": HostileStr("*")},
        ],
    }
