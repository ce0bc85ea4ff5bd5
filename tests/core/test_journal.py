"""The journal (routing.md section 7): the events a decision or a deny records, their
sequence and ids, filters and limits, the bounded ring.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from beamrouting import PolicyDenied, RoutingEngine, RoutingError
from tests._helpers import BACKENDS
from tests.core._support import RR

EVENT_ID = re.compile(r"^event_[0-9a-f]{16}$")


def test_success_journals_routing_selected_then_audit(engine: RoutingEngine) -> None:
    before = int(time.time() * 1000)
    decision = engine.select_backend(
        {
            "policy": "sticky",
            "affinity_key": "ws",
            "preferred_backends": ["codex_cli"],
            "health": {"gemini": "down"},
            "policy_profile_id": "team-a",
        }
    )
    after = int(time.time() * 1000)
    selected, audit = engine.journal()
    assert selected.event_type == "routing_selected"
    assert selected.tags == ("routing",)
    assert selected.payload == {
        "request": {
            "policy": "sticky",
            "affinity_key": "ws",
            "preferred_backends": ["codex"],
            "excluded_backends": [],
            "fallback_backends": [],
            "capabilities": [],
            "fallback_policy": "available",
        },
        "decision": decision.to_dict(),
    }
    assert audit.event_type == "audit"
    assert audit.tags == ("audit", "routing")
    assert audit.payload == {
        "category": "routing",
        "action": "decision",
        "decision": "allow",
        "backend": "codex",
        "policy": "sticky",
        "candidates": ["codex", "claude", "copilot", "opencode"],
        "fallback_chain": ["claude", "copilot", "opencode"],
        "reasons": ["selected backend and bound sticky affinity"],
        "profile_id": "team-a",
    }
    for event in (selected, audit):
        assert EVENT_ID.match(event.event_id)
        assert before <= event.timestamp <= after
    assert selected.sequence < audit.sequence
    assert selected.event_id != audit.event_id


def test_journal_request_lists_every_set_field(engine: RoutingEngine) -> None:
    engine.select_backend(
        {
            "backend": "codex_app_server",
            "last_backend": "gemini",
            "capabilities": ("memory",),
            "fallback_policy": "none",
        }
    )
    assert engine.journal("routing_selected")[-1].payload["request"] == {
        "policy": "explicit",
        "backend": "codex",
        "last_backend": "gemini",
        "preferred_backends": [],
        "excluded_backends": [],
        "fallback_backends": [],
        "capabilities": ["memory"],
        "fallback_policy": "none",
    }


def test_deny_journals_only_an_audit_event(engine: RoutingEngine) -> None:
    with pytest.raises(PolicyDenied):
        engine.select_backend({"policy_profile_id": "deny-claude"})
    (audit,) = engine.journal()
    assert audit.event_type == "audit"
    assert audit.payload == {
        "category": "routing",
        "action": "decision",
        "decision": "deny",
        "reason": "claude backend blocked",
        "backend": "claude",
        "policy": "preferred_then_fallback",
        "candidates": list(BACKENDS),
        "fallback_chain": list(BACKENDS[1:]),
        "reasons": ["selected first eligible backend"],
        "profile_id": "deny-claude",
    }


def test_failed_requests_journal_nothing(engine: RoutingEngine) -> None:
    for bad in ({"bogus": 1}, {"policy": "sticky"}, {"excluded_backends": list(BACKENDS)}, {"backend": "x"}):
        with pytest.raises(RoutingError):
            engine.select_backend(bad)
    assert engine.journal() == []


def test_journal_sequence_ids_filter_and_limit(engine: RoutingEngine) -> None:
    for _ in range(3):
        engine.select_backend(RR)
    with pytest.raises(PolicyDenied):
        engine.select_backend({"policy_profile_id": "default-deny"})
    events = engine.journal()
    assert [e.event_type for e in events] == ["routing_selected", "audit"] * 3 + ["audit"]
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences))
    assert len({e.event_id for e in events}) == len(events)
    assert all(EVENT_ID.match(e.event_id) for e in events)
    audits = engine.journal(event_type="audit")
    assert [e.sequence for e in audits] == [e.sequence for e in events if e.event_type == "audit"]
    assert (
        engine.journal(event_type="routing_selected", limit=2)
        == [e for e in events if e.event_type == "routing_selected"][-2:]
    )
    assert engine.journal(limit=1) == events[-1:]
    assert engine.journal(event_type="nothing") == []
    json.dumps([e.to_dict() for e in events])


def test_journal_is_a_bounded_ring() -> None:
    engine = RoutingEngine(journal_size=5)
    for _ in range(4):
        engine.select_backend(RR)
    events = engine.journal()
    assert len(events) == 5
    assert [e.sequence for e in events] == list(range(events[0].sequence, events[0].sequence + 5))
    assert events[-1].payload["backend"] == "gemini"  # the newest events are kept


def test_journal_event_to_dict(engine: RoutingEngine) -> None:
    engine.select_backend({})
    event = engine.journal()[0]
    data = event.to_dict()
    assert set(data) == {"event_id", "sequence", "timestamp", "event_type", "tags", "payload"}
    assert data["tags"] == ["routing"]
    assert json.loads(json.dumps(data)) == data
