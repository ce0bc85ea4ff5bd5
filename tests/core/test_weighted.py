"""The ``weighted`` policy: smooth weighted round robin over the candidates, by weight."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from beamrouting import Catalog, RoutingEngine
from beamrouting._core._planner import smooth_weighted
from tests._helpers import BACKENDS

WEIGHTED = {"policy": "weighted"}


def only(*backends: str) -> dict[str, Any]:
    return {"policy": "weighted", "excluded_backends": [b for b in BACKENDS if b not in backends]}


def picks(engine: RoutingEngine, request: dict[str, Any], count: int) -> list[str]:
    return [engine.select_backend(request).backend for _ in range(count)]


def test_weights_3_to_1_give_a_a_b_a() -> None:
    assert smooth_weighted([("a", 3), ("b", 1)]) == ("a", "a", "b", "a")
    engine = RoutingEngine(weights={"claude": 3, "codex": 1})
    assert picks(engine, only("claude", "codex"), 12) == ["claude", "claude", "codex", "claude"] * 3


def test_weights_5_1_1_give_a_a_b_a_c_a_a() -> None:
    assert smooth_weighted([("a", 5), ("b", 1), ("c", 1)]) == ("a", "a", "b", "a", "c", "a", "a")
    engine = RoutingEngine(weights={"claude": 5, "codex": 1, "copilot": 1})
    a, b, c = "claude", "codex", "copilot"
    assert picks(engine, only(a, b, c), 14) == [a, a, b, a, c, a, a] * 2


def test_without_weights_weighted_is_a_plain_rotation() -> None:
    engine = RoutingEngine()
    assert picks(engine, WEIGHTED, 10) == [*BACKENDS, *BACKENDS]


def test_ties_go_to_the_earlier_backend_in_catalogue_order() -> None:
    engine = RoutingEngine(weights={"opencode": 2, "claude": 2})
    request = {"policy": "weighted", "preferred_backends": ["opencode", "claude"], "fallback_policy": "none"}
    assert picks(engine, request, 8) == ["claude", "opencode"] * 4
    assert smooth_weighted([("x", 1), ("y", 1), ("z", 1)]) == ("x", "y", "z")


def test_a_weighted_decision_names_its_candidates_and_reason() -> None:
    engine = RoutingEngine(weights={"codex": 2})
    decision = engine.select_backend(only("claude", "codex"))
    assert decision.to_dict() == {
        "backend": "codex",
        "candidates": ["codex", "claude"],
        "policy": "weighted",
        "reasons": ["selected by weighted policy"],
        "fallback_chain": ["claude"],
    }


def test_each_candidate_set_has_its_own_rotation() -> None:
    engine = RoutingEngine(weights={"claude": 3, "codex": 1})
    pair = only("claude", "codex")
    assert picks(engine, pair, 2) == ["claude", "claude"]
    assert picks(engine, only("codex", "gemini"), 2) == ["codex", "gemini"]
    assert picks(engine, pair, 2) == ["codex", "claude"]  # the pair's rotation went on


def test_weights_of_held_out_backends_drop_out_of_the_rotation() -> None:
    engine = RoutingEngine(weights={"claude": 3, "codex": 1, "copilot": 2})
    engine.report("claude", "quota", retry_after=60)
    got = Counter(picks(engine, only("claude", "codex", "copilot"), 30))
    assert got == {"copilot": 20, "codex": 10}


def test_weights_name_backends_of_a_custom_catalogue() -> None:
    engine = RoutingEngine(Catalog(["alpha", "beta"]), weights={"beta": 2})
    assert picks(engine, WEIGHTED, 6) == ["beta", "alpha", "beta"] * 2


@pytest.mark.parametrize(
    ("weights", "error"),
    [
        ({"nope": 1}, ValueError),
        ({"claude": 0}, ValueError),
        ({"claude": -1}, ValueError),
        ({"claude": 10_001}, ValueError),
        ({"claude": 2.0}, TypeError),
        ({"claude": "2"}, TypeError),
        ({"claude": False}, TypeError),
        ({"codex": 1, "codex_cli": 1}, ValueError),
        ([("claude", 2)], TypeError),
    ],
)
def test_bad_weights_are_refused_at_construction(weights: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        RoutingEngine(weights=weights)


def test_the_largest_weight_is_accepted() -> None:
    engine = RoutingEngine(weights={"claude": 10_000})
    assert Counter(picks(engine, only("claude", "codex"), 10_001)) == {"claude": 10_000, "codex": 1}


@given(
    weights=st.dictionaries(st.sampled_from(BACKENDS), st.integers(1, 9), max_size=5),
    candidates=st.sets(st.sampled_from(BACKENDS), min_size=1),
    offset=st.integers(0, 40),
)
def test_every_window_of_sum_weights_selections_chooses_each_backend_its_weight_times(
    weights: dict[str, int], candidates: set[str], offset: int
) -> None:
    engine = RoutingEngine(weights=weights)
    request = only(*candidates)
    period = sum(weights.get(b, 1) for b in candidates)
    sequence = picks(engine, request, offset + 2 * period)
    for start in range(offset, offset + period + 1):
        window = Counter(sequence[start : start + period])
        assert window == {b: weights.get(b, 1) for b in candidates}


@given(weights=st.lists(st.integers(1, 20), min_size=1, max_size=8))
def test_smooth_weighted_picks_each_its_weight_starting_with_the_heaviest(weights: list[int]) -> None:
    named = [(f"b{i}", w) for i, w in enumerate(weights)]
    sequence = smooth_weighted(named)
    assert len(sequence) == sum(weights)
    assert Counter(sequence) == dict(named)
    assert sequence[0] == named[weights.index(max(weights))][0]  # ties: the earliest
