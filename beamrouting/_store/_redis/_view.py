"""What a process knows of the fleet's shared state, and the calls of the scripts that keep it current.

Planning a selection needs, before any round trip, what the whole fleet learned (each
backend's :class:`beamrouting._core._health.Ledger`), the stored policy profiles (a
filtering one removes candidates) and the live sessions per backend (a full backend is held
out). Each process keeps a :class:`View` of them: the ledgers and the profiles with the
versions Redis keeps beside them (``<prefix>health:v``, ``<prefix>profiles:v``), and the
live counts every script answers. The scripts check the versions (and the fullness of the
limited backends) the caller planned with: when they still hold, the call goes on; when they
do not, it changes nothing and answers what changed, and the caller plans again. So a batch
costs its usual round trips while nothing changed, and one more when something did.

Everything read back is checked here: a ledger that does not decode is not one the store
wrote, and fails the calls that need it with :class:`beamrouting.StoreDataError`; a
malformed profile fails the requests that name it with
:class:`beamrouting.InvalidPolicyProfile`.

The clock: with an injected ``clock`` its value is passed to every script; otherwise the
scripts read Redis's ``TIME`` and answer it, and :meth:`View.now` is Redis's time as
estimated from those answers, so a fleet judges deadlines by one clock.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec

from ..._core._catalog import Catalog
from ..._core._errors import InvalidPolicyProfile, StoreDataError
from ..._core._health import FRESH, BackendStatus, HealthEvent, HealthPolicy, Ledger, observe
from ..._core._holds import NO_HOLDS, Holds, collect_holds
from ..._core._planner import Planner
from ..._core._profiles import PolicyProfile
from ..._core._request import RouteRequest
from ._connection import MalformedReply
from ._profiles import StoredProfiles

__all__ = ["Reply", "View"]

wall: Callable[[], float] = time.time
"""This host's wall clock, from which Redis's is estimated (a module attribute, so tests can skew it)."""

_UNKNOWN: Final = -1
"""The version of what a process has not read yet (Redis's versions are never negative)."""
_MAX_COUNT: Final = 2**53


def _check_ledger(ledger: Ledger) -> Ledger:
    """``ledger`` if it holds values the store could have written; :class:`ValueError` otherwise."""
    for value in (ledger.cooling_until, ledger.ejected_until, *ledger.probes):
        if value is not None and not math.isfinite(value):
            raise ValueError("a time that is not finite")
    if ledger.consecutive_failures < 0 or ledger.ejections < 0:
        raise ValueError("a negative count")
    return ledger


class Reply(NamedTuple):
    """What ``state.lua`` or ``commit.lua`` answered (see their headers)."""

    applied: bool
    """``commit.lua``: whether it applied anything (a strict call finds the plan stale otherwise)."""
    fresh: bool
    """Whether the versions (``state.lua``: and fullness, ties) were the ones the caller planned with."""
    answers: list[Any]
    hv: int
    """The learned state's version after the call."""


class View:
    """One process's copy of the fleet's learned state, profiles and live counts (see the module docstring)."""

    __slots__ = (
        "_decode_ledger",
        "_encode_ledger",
        "_known",
        "_profiles",
        "clock",
        "corrupt",
        "filters",
        "generation",
        "hv",
        "ledgers",
        "limits",
        "live",
        "offset",
        "planner",
        "policy",
        "profiles",
        "pv",
        "texts",
    )

    def __init__(
        self,
        planner: Planner,
        profiles: StoredProfiles,
        *,
        policy: HealthPolicy | None,
        limits: Mapping[str, int],
        clock: Callable[[], float] | None,
    ) -> None:
        self.planner = planner
        self.policy = policy
        self.limits: Mapping[str, int] = limits
        self.clock = clock
        """The injected clock, or ``None`` (Redis's, estimated)."""
        self.offset = 0.0
        """Redis's clock minus this host's, as last measured (seconds; 0 until a script answered)."""
        self.hv = _UNKNOWN
        self.pv = _UNKNOWN
        self.ledgers: dict[str, Ledger] = {}
        """What the fleet learned about each backend that has a ledger (in Redis's order)."""
        self.corrupt: dict[str, str] = {}
        """Backends whose stored ledger is not one the store wrote, with what is wrong."""
        self.profiles: dict[str, PolicyProfile | InvalidPolicyProfile] = {}
        self.texts: dict[str, str] = {}
        """The SHA-1 of each cached profile's stored document (a hand edit changes no version)."""
        self.filters = False
        """Whether a stored profile filters candidates."""
        self.live: dict[str, int] = {}
        self.generation = 0
        """Counts the changes of what planning reads (a plan made at another generation is redone)."""
        self._profiles = profiles
        self._known = set(planner.catalog.backends)
        self._decode_ledger = msgspec.msgpack.Decoder(Ledger).decode
        self._encode_ledger = msgspec.msgpack.Encoder().encode

    @property
    def catalog(self) -> Catalog:
        return self.planner.catalog

    def now(self) -> float:
        """The time deadlines are judged by: the injected clock's, or Redis's as estimated."""
        clock = self.clock
        return clock() if clock is not None else wall() + self.offset

    def encode_ledger(self, ledger: Ledger) -> bytes:
        return self._encode_ledger(ledger)

    # -- what planning needs --------------------------------------------------------------

    def learning(self) -> bool:
        """Whether learned state takes part (learning is on and some backend has a ledger)."""
        return self.policy is not None and bool(self.ledgers or self.corrupt)

    def holds(self, req: RouteRequest, now: float) -> Holds:
        """What the fleet's state holds out of selecting for ``req`` at ``now`` (see :func:`collect_holds`).

        Raises :class:`beamrouting.InvalidPolicyProfile` when the request names a
        malformed stored profile, and :class:`beamrouting.StoreDataError` when a backend it
        could take has a stored ledger that is not one the store wrote.
        """
        profile: PolicyProfile | None = None
        profile_id = req.policy_profile_id
        if profile_id is not None:
            stored = self.profiles.get(profile_id)
            if isinstance(stored, InvalidPolicyProfile):
                raise stored
            profile = stored
        learning = self.learning()
        if not learning and not self.limits and not (profile is not None and profile.filters):
            return NO_HOLDS
        if learning and self.corrupt:
            self.check_ledgers(self.planner.eligible(req))
        return collect_holds(
            req,
            self.planner.eligible,
            ledgers=self.ledgers,
            now=now,
            policy=self.policy,
            live=self.live,
            limits=self.limits,
            profile=profile,
        )

    def profile(self, profile_id: str | None) -> PolicyProfile | None:
        """The stored profile ``profile_id`` names (``None``: none named, or no such profile)."""
        if profile_id is None:
            return None
        stored = self.profiles.get(profile_id)
        if isinstance(stored, InvalidPolicyProfile):
            raise stored
        return stored

    def check_ledgers(self, backends: Iterable[str]) -> None:
        """Raise :class:`beamrouting.StoreDataError` if one of ``backends`` has an unreadable ledger."""
        for backend in backends:
            why = self.corrupt.get(backend)
            if why is not None:
                raise StoreDataError(
                    f"the learned state of {backend!r} is not one the store wrote ({why}); "
                    f"restore the backend to reset it"
                )

    def ledger(self, backend: str) -> Ledger:
        """``backend``'s ledger (:data:`FRESH` without one); :class:`StoreDataError` when it is unreadable."""
        self.check_ledgers((backend,))
        return self.ledgers.get(backend, FRESH)

    def observations(self, now: float) -> tuple[dict[str, Ledger | None], list[HealthEvent]]:
        """The ledgers whose change of status time brought is not journaled yet, as writes and events.

        ``None`` deletes a ledger that became fresh. Journals nothing for unreadable ledgers.
        """
        policy = self.policy
        writes: dict[str, Ledger | None] = {}
        events: list[HealthEvent] = []
        if policy is None:
            return writes, events
        for backend, ledger in self.ledgers.items():
            if ledger.status(now, policy)[0] is not ledger.announced:
                after, noted = observe(backend, ledger, now, policy)
                writes[backend] = None if after.is_fresh else after
                events.extend(noted)
        return writes, events

    def probing(self, now: float) -> frozenset[str]:
        """The backends that are probing and have a slot free at ``now`` (a selection may take one)."""
        policy = self.policy
        if policy is None or not self.ledgers:
            return frozenset()
        return frozenset(
            backend
            for backend, ledger in self.ledgers.items()
            if ledger.status(now, policy)[0] is BackendStatus.PROBING and ledger.available(now, policy)
        )

    def full(self) -> list[str]:
        """The limited backends at their limit, as the scripts check them."""
        live = self.live
        return sorted(backend for backend, limit in self.limits.items() if live.get(backend, 0) >= limit)

    # -- keeping it current -------------------------------------------------------------------

    def forget(self) -> None:
        """Take the learned state as unknown: the next script call answers it afresh."""
        self.hv = _UNKNOWN

    def learned(self, writes: Mapping[str, Ledger | None], hv: int) -> None:
        """Apply the ledger writes this process made (Redis's version is now ``hv``)."""
        for backend, ledger in writes.items():
            self.corrupt.pop(backend, None)
            if ledger is None:
                self.ledgers.pop(backend, None)
            else:
                self.ledgers[backend] = ledger
        self.hv = hv
        self.generation += 1

    def update(self, state: Sequence[Any], raw: Sequence[Any], started: float) -> int:
        """Take in what a script answered of the fleet's state; return its learned-state version.

        ``state`` is ``hv, pv, live counts, clock, ledger pairs, profile pairs, changed named
        profile pairs`` and ``raw`` those pairs; ``started`` is when the call was made (for the
        clock's offset).
        """
        try:
            hv, pv, live, clock, ledgers, documents, named = state
        except ValueError:
            raise MalformedReply("a reply without the fleet's state") from None
        if not all(type(value) is int for value in (hv, pv, clock, ledgers, documents, named)):
            raise MalformedReply("a reply whose versions are not integers")
        if len(raw) != 2 * (max(0, ledgers) + max(0, documents) + max(0, named)):
            raise MalformedReply("a reply with a wrong number of stored values")
        self.take_live(live)
        if clock and self.clock is None:
            self.offset = clock / 1000 - (started + wall()) / 2
        if ledgers >= 0:
            self._read_ledgers(raw[: 2 * ledgers])
            self.hv = hv
            self.generation += 1
        if documents >= 0:
            self._read_profiles(raw[2 * max(0, ledgers) :], replace=True)
            self.pv = pv
            self.generation += 1
        elif named > 0:
            self._read_profiles(raw[2 * max(0, ledgers) :], replace=False)
            self.generation += 1
        return int(hv)

    def named(self, profile_ids: Iterable[str | None]) -> list[list[str]]:
        """``[id, SHA-1 of the cached document or ""]`` for each distinct profile id named (see ``same_profiles``)."""
        texts = self.texts
        return [
            [profile_id, texts.get(profile_id, "")] for profile_id in dict.fromkeys(profile_ids) if profile_id
        ]

    def configure(
        self,
        planner: Planner,
        policy: HealthPolicy | None,
        limits: Mapping[str, int],
        documents: Mapping[str, bytes],
        before: int,
        after: int,
    ) -> None:
        """This process's new settings; the stored profiles became exactly ``documents`` (version ``before`` to ``after``)."""
        self.planner, self.policy, self.limits = planner, policy, limits
        if before == self.pv:
            self._read_profiles([item for pair in documents.items() for item in pair], replace=True)
            self.pv = after
        else:
            self.pv = _UNKNOWN
        self.generation += 1

    def profile_written(self, profile_id: str, document: bytes | None, before: int, after: int) -> None:
        """This process stored ``document`` (``None``: deleted the profile), taking the version from ``before`` to ``after``.

        The cache follows when it was current; otherwise the next call refreshes it.
        """
        if before != self.pv or before == after:
            return
        self._read_profiles([profile_id, document], replace=False)
        self.pv = after
        self.generation += 1

    def take_live(self, live: object) -> None:
        """Take in the live counts a script answered (``backend, count, ...``)."""
        if type(live) is not list or len(live) % 2:
            raise MalformedReply("a reply whose live counts are not pairs")
        counts: dict[str, int] = {}
        for backend, count in zip(live[::2], live[1::2], strict=True):
            if isinstance(backend, bytes):
                backend = backend.decode("utf-8", "replace")
            if backend not in self._known or type(count) is not int or not 0 < count < _MAX_COUNT:
                raise MalformedReply("a reply with a live count that is not one")
            counts[backend] = count
        if counts != self.live:
            self.live = counts
            self.generation += 1

    def _read_ledgers(self, pairs: Sequence[Any]) -> None:
        ledgers: dict[str, Ledger] = {}
        corrupt: dict[str, str] = {}
        for name, data in zip(pairs[::2], pairs[1::2], strict=True):
            backend = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            try:
                ledgers[backend] = _check_ledger(self._decode_ledger(data))
            except (msgspec.DecodeError, TypeError, ValueError) as exc:
                corrupt[backend] = str(exc) or type(exc).__name__
        self.ledgers = ledgers
        self.corrupt = corrupt

    def _read_profiles(self, pairs: Sequence[Any], *, replace: bool) -> None:
        """Take in stored profiles (``id, document`` pairs; a ``None`` document: none): all, or some."""
        profiles = {} if replace else dict(self.profiles)
        texts = {} if replace else dict(self.texts)
        parse = self._profiles.parse
        for raw_id, text in zip(pairs[::2], pairs[1::2], strict=True):
            profile_id = raw_id.decode("utf-8", "replace") if isinstance(raw_id, bytes) else str(raw_id)
            if text is None:
                profiles.pop(profile_id, None)
                texts.pop(profile_id, None)
                continue
            data = text.encode() if isinstance(text, str) else text
            profiles[profile_id] = parse(profile_id, data)
            texts[profile_id] = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        self.profiles, self.texts = profiles, texts
        self.filters = any(isinstance(p, PolicyProfile) and p.filters for p in profiles.values())
