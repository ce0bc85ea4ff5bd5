"""The store protocol's helpers (beamrouting.store): run_batch applies a batch in order with
the protocol's error rules.
"""

from __future__ import annotations

from beamrouting import SessionHandle, StoreCrash, StoreUnavailable
from beamrouting.store import LookupOp, RegisterOp, SessionResult, run_batch


def test_run_batch_answers_in_order_and_stops_at_a_crash() -> None:
    applied: list[str] = []

    def apply(op: RegisterOp | LookupOp) -> SessionResult:
        name = op.handle.session_id if isinstance(op, RegisterOp) else op.session_id
        if name == "unavailable":
            raise StoreUnavailable("planted outage")
        if name == "boom":
            raise RuntimeError("planted bug")
        applied.append(name)
        return None

    ops: list[RegisterOp | LookupOp] = [
        RegisterOp(SessionHandle("a", "codex", {})),
        LookupOp("unavailable"),
        RegisterOp(SessionHandle("boom", "codex", {})),
        RegisterOp(SessionHandle("c", "codex", {})),
    ]
    results = run_batch(ops, apply)
    assert results[0] is None
    assert isinstance(results[1], StoreUnavailable)
    assert isinstance(results[2], StoreCrash) and isinstance(results[2].error, RuntimeError)
    assert len(results) == 3  # "c" was not applied
    assert applied == ["a"]
