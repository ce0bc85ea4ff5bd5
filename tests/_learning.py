"""Helpers of the learning and capacity tests: wall-clock times, a mixed request stream and
short readers of explanations and backend states.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

from beamrouting import BackendState, Explanation
from tests._helpers import BACKENDS

__all__ = [
    "START",
    "at",
    "eligible_in",
    "mixed_requests",
    "reasons_in",
    "state_of",
]


def at(hour: int, minute: int = 0, second: int = 0) -> float:
    """UNIX seconds of ``hour:minute:second`` UTC on 2026-12-02."""
    return datetime(2026, 12, 2, hour, minute, second, tzinfo=UTC).timestamp()


START: Final = at(16)
"""Where a :class:`~tests._helpers.FakeClock` starts: 2026-12-02T16:00:00Z."""


def mixed_requests(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` requests of every policy and shape (some invalid, some denied), reproducibly."""
    rng = random.Random(seed)

    def some(k: int) -> list[str]:
        return rng.sample(BACKENDS, k)

    makers: list[Callable[[], dict[str, Any]]] = [
        lambda: {"policy": "round_robin"},
        lambda: {"policy": "round_robin", "excluded_backends": some(rng.randint(1, 3))},
        lambda: {"policy": "round_robin", "preferred_backends": some(2), "fallback_policy": "none"},
        lambda: {"policy": "sticky", "affinity_key": f"workspace-{rng.randint(0, 9)}"},
        lambda: {
            "policy": "sticky",
            "affinity_key": f"workspace-{rng.randint(0, 9)}",
            "health": {rng.choice(BACKENDS): rng.choice(["down", "degraded", "unhealthy"])},
        },
        lambda: {"policy": "failover", "last_backend": rng.choice(BACKENDS)},
        lambda: {"backend": rng.choice(BACKENDS)},
        lambda: {"backend": rng.choice(BACKENDS), "excluded_backends": some(2)},
        lambda: {"policy": "capability_first", "capabilities": ["hooks", "memory"]},
        lambda: {"preferred_backends": some(2), "fallback_backends": some(1)},
        lambda: {"policy": "least_loaded", "excluded_backends": some(1)},
        lambda: {"policy": "weighted"},
        lambda: {"policy_profile_id": rng.choice(["deny-claude", "deny-codex", "team-a", "default-deny"])},
        lambda: {"policy": "round_robin", "policy_profile_id": "deny-copilot"},
        lambda: {"excluded_backends": list(BACKENDS)},
        lambda: {"backend": "no-such-backend"},
        lambda: {"policy": "sticky"},
    ]
    for _ in range(count):
        yield rng.choice(makers)()


def eligible_in(explanation: Explanation) -> tuple[str, ...]:
    """The eligible backends of an explanation."""
    return explanation.eligible


def reasons_in(explanation: Explanation, backend: str) -> tuple[str, ...]:
    """Why ``backend`` is out, as an explanation says."""
    for verdict in explanation.backends:
        if verdict.backend == backend:
            return verdict.reasons
    raise KeyError(backend)


def state_of(states: Iterable[BackendState], backend: str) -> BackendState:
    """``backend``'s state among ``states``."""
    for state in states:
        if state.backend == backend:
            return state
    raise KeyError(backend)
