"""In-memory routing state: bounded counters and bindings, live sessions, learned health, profiles, journal.

The state is a plain object so that it can outlive the actor that owns it, as an ETS table
passes to its heir.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from ._checks import check_callable, check_count, check_seconds, optional
from ._errors import BackendAtCapacity, SessionExists, TooManySessions
from ._health import Ledger
from ._holds import at_capacity
from ._journal import Journal
from ._profiles import PolicyProfile
from ._types import SessionHandle

__all__ = ["RoutingState"]


class RoutingState:
    """Counters and sticky bindings with least-recently-used caps, live sessions, profiles and journal.

    ``max_counters`` and ``max_bindings`` cap how many of each are kept: past the cap the
    least recently used one is forgotten, in constant time. ``binding_ttl`` (seconds, or
    ``None``) expires a binding that no successful sticky decision refreshed for that long;
    ``clock`` is the wall clock (UNIX seconds) every deadline is measured on.
    ``max_sessions`` caps live sessions, which are never evicted: registering one more
    raises :class:`beamrouting.TooManySessions`. A binding may carry a temporary backend,
    used while its bound backend is held out. Bad options raise :class:`TypeError` or
    :class:`ValueError`.
    """

    __slots__ = (
        "_bindings",
        "_counters",
        "binding_ttl",
        "clock",
        "journal",
        "ledgers",
        "limits",
        "live",
        "max_bindings",
        "max_counters",
        "max_sessions",
        "profiles",
        "sessions",
    )

    def __init__(
        self,
        *,
        max_counters: int = 100_000,
        max_bindings: int = 100_000,
        binding_ttl: float | None = None,
        journal_size: int = 10_000,
        clock: Callable[[], float] | None = None,
        max_sessions: int = 100_000,
        limits: dict[str, int] | None = None,
    ) -> None:
        self.max_counters = check_count("max_counters", max_counters, 1)
        self.max_bindings = check_count("max_bindings", max_bindings, 1)
        self.max_sessions = check_count("max_sessions", max_sessions, 1)
        self.binding_ttl = optional(check_seconds, "binding_ttl", binding_ttl)
        self.clock: Callable[[], float] = time.time if clock is None else check_callable("clock", clock)
        # Least recently used first: a use moves the key to the end, eviction pops the front.
        self._counters: OrderedDict[Hashable, int] = OrderedDict()
        self._bindings: OrderedDict[str, tuple[str, float, str | None]] = OrderedDict()
        """Affinity key -> (bound backend, expiry, temporary backend or None)."""
        self.ledgers: dict[str, Ledger] = {}
        """What was learned about each backend that is not fresh (none: nothing was reported)."""
        self.sessions: dict[str, SessionHandle] = {}
        """Live sessions by id, in registration order."""
        self.live: dict[str, int] = {}
        """Live sessions per backend (backends without any are absent)."""
        self.limits: dict[str, int] = dict(limits or {})
        """The most live sessions each limited backend may have (validated by the engine)."""
        self.profiles: dict[str, PolicyProfile] = {}
        self.journal = Journal(journal_size, wall_clock=self.clock)

    def next_counter(self, key: Hashable) -> int:
        """Increment the counter ``key`` (first value 1) and return it."""
        counters = self._counters
        value = counters.pop(key, 0) + 1
        counters[key] = value  # (re)inserted last: the most recently used
        if len(counters) > self.max_counters:
            counters.popitem(last=False)
        return value

    def peek_counter(self, key: Hashable) -> int:
        """The counter's current value (0 when unset), without touching it."""
        return self._counters.get(key, 0)

    def binding(self, key: str) -> str | None:
        """The backend bound to affinity ``key``, or ``None`` (expired bindings are dropped)."""
        return self.binding_entry(key)[0]

    def binding_entry(self, key: str) -> tuple[str | None, str | None]:
        """``(bound backend, temporary backend)`` of affinity ``key`` (``None`` for what it lacks)."""
        entry = self._bindings.get(key)
        if entry is None:
            return None, None
        if self.binding_ttl is not None and entry[1] <= self.clock():
            del self._bindings[key]
            return None, None
        return entry[0], entry[2]

    def bind(self, key: str, backend: str, temporary: str | None = None) -> None:
        """Bind (or re-bind, refreshing its time-to-live) affinity ``key`` to ``backend``.

        ``temporary`` is the backend the key uses meanwhile, while ``backend`` is held out.
        """
        bindings = self._bindings
        ttl = self.binding_ttl
        bindings[key] = (backend, 0.0 if ttl is None else self.clock() + ttl, temporary)
        bindings.move_to_end(key)
        if len(bindings) > self.max_bindings:
            bindings.popitem(last=False)

    def release(self, key: str) -> bool:
        """Forget affinity ``key``'s binding (and temporary backend); whether it had one."""
        return self._bindings.pop(key, None) is not None

    def check_new(self, session_id: str, *, exclusive: bool) -> None:
        """Raise what registering ``session_id`` would raise, before any backend is chosen for it.

        :class:`beamrouting.SessionExists` when ``exclusive`` and the id is live;
        :class:`beamrouting.TooManySessions` for a new id past ``max_sessions``.
        """
        sessions = self.sessions
        if session_id in sessions:
            if exclusive:
                raise SessionExists(f"session {session_id!r} is live; choose another id")
        elif len(sessions) >= self.max_sessions:
            raise TooManySessions(
                f"{len(sessions)} live sessions: registering one more would pass max_sessions={self.max_sessions}"
            )

    def register(self, handle: SessionHandle, *, exclusive: bool = False) -> None:
        """Register a live session, replacing (and moving to the end) one with its id.

        Raises what :meth:`check_new` raises, and :class:`beamrouting.BackendAtCapacity`
        when the session would pass its backend's limit. Re-registering a live session on
        its own backend (a heartbeat) never counts twice and never fails for capacity.
        """
        session_id = handle.session_id
        self.check_new(session_id, exclusive=exclusive)
        sessions = self.sessions
        backend = handle.backend
        old = sessions.get(session_id)
        if old is None or old.backend != backend:
            limit = self.limits.get(backend)
            live = self.live.get(backend, 0)
            if limit is not None and live >= limit:
                raise BackendAtCapacity(f"{backend} has {live} of {limit} live sessions")
            self.live[backend] = live + 1
            if old is not None:
                self._leave(old.backend)
        if old is not None:
            del sessions[session_id]  # a registration moves the session to the end of the order
        sessions[session_id] = handle

    def unregister(self, session_id: str) -> bool:
        """Forget a session (a no-op for an unknown id); whether it freed a session slot."""
        old = self.sessions.pop(session_id, None)
        if old is None:
            return False
        self._leave(old.backend)
        return True

    def _leave(self, backend: str) -> None:
        live = self.live
        left = live.get(backend, 0) - 1
        if left > 0:
            live[backend] = left
        else:
            live.pop(backend, None)

    def full(self) -> dict[str, str]:
        """Each backend at its limit, with why (``"at capacity 10/10"``)."""
        return at_capacity(self.live, self.limits)

    def clear(self) -> None:
        """Forget every binding and counter (profiles, sessions and journal stay)."""
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
        now = self.clock()
        ttl = self.binding_ttl
        return {k: b for k, (b, exp, _) in self._bindings.items() if ttl is None or exp > now}
