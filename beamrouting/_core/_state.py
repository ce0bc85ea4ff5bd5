"""In-memory routing state: bounded counters and bindings, policy profiles, the journal.

The state is a plain object so that it can outlive the actor that owns it, as an ETS table
passes to its heir.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from ._checks import check_callable, check_count, check_seconds
from ._journal import Journal
from ._profiles import PolicyProfile

__all__ = ["RoutingState"]


class RoutingState:
    """Counters and sticky bindings with least-recently-used caps, plus profiles and journal.

    ``binding_ttl`` (seconds, or ``None``) expires a binding that no successful sticky
    decision refreshed for that long; ``clock`` is a monotonic clock in seconds.
    """

    __slots__ = (
        "_bindings",
        "_clock",
        "_counters",
        "binding_ttl",
        "journal",
        "max_bindings",
        "max_counters",
        "profiles",
    )

    def __init__(
        self,
        *,
        max_counters: int = 100_000,
        max_bindings: int = 100_000,
        binding_ttl: float | None = None,
        journal_size: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.max_counters = check_count("max_counters", max_counters, 1)
        self.max_bindings = check_count("max_bindings", max_bindings, 1)
        self.binding_ttl = None if binding_ttl is None else check_seconds("binding_ttl", binding_ttl)
        self._clock = time.monotonic if clock is None else check_callable("clock", clock)
        # Plain dicts keep insertion order: re-inserting on use makes the first key the LRU one.
        self._counters: dict[Hashable, int] = {}
        self._bindings: dict[str, tuple[str, float]] = {}
        self.profiles: dict[str, PolicyProfile] = {}
        self.journal = Journal(journal_size)

    def next_counter(self, key: Hashable) -> int:
        """Increment the counter ``key`` (first value 1) and return it."""
        counters = self._counters
        value = counters.pop(key, 0) + 1
        counters[key] = value
        if len(counters) > self.max_counters:
            del counters[next(iter(counters))]
        return value

    def peek_counter(self, key: Hashable) -> int:
        """The counter's current value (0 when unset), without touching it."""
        return self._counters.get(key, 0)

    def binding(self, key: str) -> str | None:
        """The backend bound to affinity ``key``, or ``None`` (expired bindings are dropped)."""
        entry = self._bindings.get(key)
        if entry is None:
            return None
        if self.binding_ttl is not None and entry[1] <= self._clock():
            del self._bindings[key]
            return None
        return entry[0]

    def bind(self, key: str, backend: str) -> None:
        """Bind (or re-bind, refreshing its time-to-live) affinity ``key`` to ``backend``."""
        bindings = self._bindings
        bindings.pop(key, None)
        ttl = self.binding_ttl
        bindings[key] = (backend, 0.0 if ttl is None else self._clock() + ttl)
        if len(bindings) > self.max_bindings:
            del bindings[next(iter(bindings))]

    def clear(self) -> None:
        """Forget every binding and counter (profiles and journal stay)."""
        self._counters.clear()
        self._bindings.clear()

    @property
    def counter_count(self) -> int:
        """How many round-robin counters are held."""
        return len(self._counters)

    @property
    def binding_count(self) -> int:
        """How many sticky bindings are held (expired ones included until touched)."""
        return len(self._bindings)

    def bindings(self) -> dict[str, str]:
        """A snapshot of the live bindings."""
        now = self._clock()
        ttl = self.binding_ttl
        return {k: b for k, (b, exp) in self._bindings.items() if ttl is None or exp > now}
