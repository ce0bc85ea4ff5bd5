"""Bad arguments the engine and the router must answer with the same typed error
(tests/core/test_api_edges.py and tests/runtime/test_api_edges.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from beamrouting import RoutingError

__all__ = ["BAD_JOURNAL_QUERIES", "LONE_SURROGATE", "engine_error"]


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
