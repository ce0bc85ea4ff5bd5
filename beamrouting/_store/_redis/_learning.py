"""What the fleet learns from reported outcomes, on Redis: reports, restores and backend states.

Each backend's :class:`beamrouting._core._health.Ledger` lives in the ``<prefix>health``
hash (msgpack), with a version in ``<prefix>health:v`` bumped by every change; each process
caches them (:class:`~._view.View`). Transitions are computed here with the core's pure
functions (:func:`reported`, :func:`restored`, :func:`observe`), never in Lua: a report is
one ``commit.lua`` call that writes the new ledger and journals its events if the version is
still the one the transition was computed from, and otherwise answers the current ledgers so
the transition is computed again. So a report costs one round trip while the cache is
current, and every process's next selection sees it.

A change of status that time brought (a cooldown or an ejection ending) is journaled once for
the whole fleet, by the first operation that observes it, dated at the deadline: the ledger's
``announced`` field changes under the same version check.
"""

from __future__ import annotations

from typing import Final

from ..._core._errors import StoreUnavailable
from ..._core._health import (
    FRESH,
    BackendState,
    HealthPolicy,
    Outcome,
    check_reset,
    reported,
    restored,
    unlearned,
)
from ._calls import Fleet

__all__ = ["Learning"]

_MAX_ATTEMPTS: Final = 16
"""Times one operation computes its transition again because another process changed the state."""
_DEFAULT_POLICY: Final = HealthPolicy()


class Learning:
    """Reports, restores and backend states of one :class:`RedisStore` (see the module docstring)."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._view = fleet.view

    async def report(
        self, backend: str, outcome: Outcome, retry_at: float | None, retry_after: float | None
    ) -> BackendState:
        """Learn ``outcome`` for ``backend`` (canonical) fleet-wide; its state after (one round trip)."""
        view, fleet = self._view, self._fleet
        checked = False
        for _ in range(_MAX_ATTEMPTS):
            now = view.now()
            reset_at = check_reset(retry_at, retry_after, now)
            policy = view.policy
            if policy is None:
                await fleet.commit(
                    fleet.commit_call(), now, events=[unlearned(backend, outcome, reset_at, now)]
                )
                return FRESH.state(backend, now, _DEFAULT_POLICY)
            if backend in view.corrupt and not checked:  # is it still unreadable?
                await fleet.commit(fleet.commit_call(), now)
                checked = True
                continue
            after, events = reported(backend, view.ledger(backend), outcome, reset_at, now, policy)
            writes = {backend: None if after.is_fresh else after}
            reply = await fleet.commit(fleet.commit_call(), now, writes=writes, events=events)
            if reply.fresh:
                return after.state(backend, now, policy)
        raise StoreUnavailable(f"the learned state kept changing under a report on {backend!r}; giving up")

    async def restore(self, backend: str) -> BackendState:
        """Forget what the fleet learned about ``backend`` (an unreadable ledger too); its state after."""
        view, fleet = self._view, self._fleet
        for _ in range(_MAX_ATTEMPTS):
            now = view.now()
            policy = view.policy
            if policy is None:
                return FRESH.state(backend, now, _DEFAULT_POLICY)
            if backend not in view.ledgers and backend not in view.corrupt:
                await fleet.commit(fleet.commit_call(), now)  # is the cache current?
                if backend not in view.ledgers and backend not in view.corrupt:
                    return FRESH.state(backend, now, policy)
                continue
            _, events = restored(backend, view.ledgers.get(backend, FRESH), now, policy)
            reply = await fleet.commit(fleet.commit_call(), now, writes={backend: None}, events=events)
            if reply.fresh:
                return FRESH.state(backend, now, policy)
        raise StoreUnavailable(f"the learned state kept changing under a restore of {backend!r}; giving up")

    async def states(self) -> list[BackendState]:
        """Every backend's state, with its live sessions and limit, in catalogue order.

        Journals the changes of status time brought that nobody journaled yet. One round
        trip unless the cache was stale and something must be journaled.
        """
        view, fleet = self._view, self._fleet
        for _ in range(_MAX_ATTEMPTS):
            now = view.now()
            writes, events = view.observations(now)
            reply = await fleet.commit(fleet.commit_call(), now, writes=writes, events=events, counts=True)
            if not reply.fresh and writes:
                continue  # the ledgers changed: what time changed is computed again
            view.check_ledgers(list(view.corrupt))
            if not reply.fresh and view.observations(now)[0]:
                continue  # fresh ledgers with a change to journal
            policy = view.policy or _DEFAULT_POLICY  # with learning off, what was learned still shows
            ledgers, live, limits = view.ledgers, view.live, view.limits
            return [
                ledgers.get(b, FRESH).state(b, now, policy, live.get(b, 0), limits.get(b))
                for b in view.catalog.backends
            ]
        raise StoreUnavailable("the learned state kept changing while reading backend states; giving up")
