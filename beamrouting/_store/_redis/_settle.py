"""Selections on Redis: a drained batch settled with two shared round trips.

Planning is pure (the shared :class:`~beamrouting._core._planner.Planner`); then one script
call (``state.lua``) reads and advances the state every plan needs (counters, bindings,
the profiles named); then :meth:`Planner.settle` makes each decision and its policy check;
then one script call (``commit.lua``) binds and journals atomically. A decision is returned
only after its journal entry is in Redis.

Sticky bindings are compare-and-set: a first bind succeeds only if the key is still
unbound (first writer wins), a re-bind away from an ineligible backend only if the key
still holds that backend, and a reuse only if the key still holds the reused backend
(which also slides the binding's time-to-live). A request that loses such a race goes round
again against what the winner stored: the winner's backend, reused if it is eligible for
the request (and checked against the request's policy profile). A denied sticky decision
stores no binding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import msgspec

from ..._core._errors import PolicyDenied, RoutingError, StoreUnavailable
from ..._core._planner import DONE, ROTATE, STICKY, Planner, RoutePlan, StateOutcome
from ..._core._profiles import PolicyProfile
from ..._core._request import RouteRequest
from ..._core._types import RouteDecision
from .._protocol import StoreCrash
from ._codec import RecordCodec
from ._connection import MalformedReply
from ._keys import KeyLayout
from ._profiles import StoredProfiles

__all__ = ["Settler"]

logger: Final = logging.getLogger("beamrouting.redis")

_MAX_ROUNDS: Final = 32
"""Settling rounds of one batch before giving up (each lost race costs one more round)."""

SelectAnswer = RouteDecision | RoutingError | StoreCrash
Script = Callable[..., Awaitable[Any]]
_Profiles = dict[str, PolicyProfile | RoutingError | None]


class _Pending:
    """One request of a batch on its way through the settling rounds."""

    __slots__ = ("binding_key", "hint", "index", "plan")

    def __init__(self, index: int, plan: RoutePlan, binding_key: str | None) -> None:
        self.index = index
        self.plan = plan
        self.binding_key = binding_key
        self.hint: str | None = None
        """What the binding held when this request lost a race (reused without a state read if eligible)."""


def _index(entry: _Pending) -> int:
    return entry.index


class Settler:
    """Settles batches of selections for one :class:`RedisStore` (see the module docstring)."""

    def __init__(
        self,
        planner: Planner,
        keys: KeyLayout,
        profiles: StoredProfiles,
        codec: RecordCodec,
        *,
        counter_ttl_s: int,
        binding_ttl_ms: int,
        journal_size: int,
    ) -> None:
        self._planner = planner
        self._keys = keys
        self._profiles = profiles
        self._codec = codec
        self._counter_ttl_s = counter_ttl_s
        self._binding_ttl_ms = binding_ttl_ms
        self._journal_size = journal_size
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(tuple[list[Any], list[str]]).decode
        self._known = self._encode(list(planner.catalog.backends))
        """The catalogue's backend names: a stored binding that is none of them was not written by a store."""

    async def select(
        self, requests: Sequence[RouteRequest], state: Script, commit: Script
    ) -> list[SelectAnswer]:
        """Select for every request of a run, with the ``state`` and ``commit`` scripts.

        Answers one entry per request up to the first crash, which ends the answer.
        """
        plan = self._planner.plan
        binding_key = self._keys.binding
        results: list[SelectAnswer | None] = [None] * len(requests)
        pending: list[_Pending] = []
        crash: StoreCrash | None = None
        limit = len(requests)
        for index, request in enumerate(requests):
            try:
                route_plan = plan(request)
                key = request.affinity_key if route_plan.kind == STICKY else None
                pending.append(_Pending(index, route_plan, None if key is None else binding_key(key)))
            except RoutingError as exc:
                results[index] = exc
            except Exception as exc:
                crash, limit = StoreCrash(exc), index
                break
        if pending:
            crash_at = await self._settle(pending, results, state, commit)
            if crash_at is not None and crash_at[0] < limit:
                limit = crash_at[0]
                crash = crash_at[1]
        answer: list[SelectAnswer] = []
        for result in results[:limit]:
            assert result is not None
            answer.append(result)
        if crash is not None:
            answer.append(crash)
        return answer

    async def _settle(
        self, pending: list[_Pending], results: list[SelectAnswer | None], state: Script, commit: Script
    ) -> tuple[int, StoreCrash] | None:
        """Decide and commit every pending request; return the first crash ``(index, marker)``.

        Each round reads the state for its requests, decides and commits. A request that
        lost a race for its binding goes round again, knowing what the binding now holds.
        Within a round, at most one request per affinity key that has no binding to reuse
        reads the state (and may advance the counter); later ones for that key wait for the
        next round and reuse what it bound, as they would have in one process's memory.
        """
        profiles: _Profiles = {}
        crash: tuple[int, StoreCrash] | None = None
        rounds = _MAX_ROUNDS + len(pending)  # every round settles at least one request per key
        while pending and rounds:
            rounds -= 1
            current: list[_Pending] = []
            waiting: list[_Pending] = []
            claimed: set[str] = set()
            for entry in pending:
                key = entry.binding_key
                if key is not None and not (entry.hint is not None and entry.plan.reusable(entry.hint)):
                    if key in claimed:
                        waiting.append(entry)
                        continue
                    claimed.add(key)
                current.append(entry)
            outcomes = await self._read_state(current, profiles, state)
            commits: list[list[Any]] = []
            committed: list[tuple[_Pending, SelectAnswer]] = []
            binding_keys: dict[str, int] = {}
            now = time.time()
            for entry, outcome in zip(current, outcomes, strict=True):
                if crash is not None and entry.index >= crash[0]:
                    break
                profile_id = entry.plan.request.policy_profile_id
                stored = None if profile_id is None else profiles.get(profile_id)
                if isinstance(stored, RoutingError):  # a malformed stored profile fails its requests only
                    results[entry.index] = stored
                    continue
                try:
                    record, result = self._decide(entry, outcome, stored, binding_keys, now)
                except Exception as exc:
                    crash = (entry.index, StoreCrash(exc))
                    break
                commits.append(record)
                committed.append((entry, result))
            answers = await self._commit(commits, binding_keys, commit) if commits else []
            again: list[_Pending] = []
            seen: dict[str, str | None] = {}
            for (entry, result), answer, record in zip(committed, answers, commits, strict=True):
                key = entry.binding_key
                if answer == 1:
                    results[entry.index] = result
                    if key is not None and record[0]:
                        seen[key] = record[3]  # it reused or bound this backend
                else:  # only a sticky request (it has a binding key) can lose a race
                    assert key is not None
                    entry.hint = seen[key] = answer[0] or None
                    again.append(entry)
            for entry in waiting:
                key = entry.binding_key
                if key is not None and key in seen:
                    entry.hint = seen[key]
            pending = sorted(again + waiting, key=_index)
            if crash is not None:
                pending = [entry for entry in pending if entry.index < crash[0]]
        if pending:
            raise StoreUnavailable(
                f"sticky bindings kept changing under {len(pending)} request(s); giving up"
            )
        return crash

    async def _read_state(self, pending: list[_Pending], profiles: _Profiles, state: Script) -> list[Any]:
        """One script call: advance counters, read bindings, fetch profiles. One outcome per entry.

        An outcome is the counter value (``ROTATE``), ``(True, backend)`` to reuse a binding
        or ``(False, counter, current binding or None)`` to bind anew (``STICKY``), or
        ``None`` (``DONE``, or a request whose profile is already known to be malformed).
        Each fetched profile lands in ``profiles``: parsed, ``None`` when there is no such
        profile, or the :class:`~beamrouting.InvalidPolicyProfile` its requests fail with.
        """
        keys: list[str] = [self._keys.profiles]
        key_index: dict[str, int] = {}

        def index_of(key: str) -> int:
            position = key_index.get(key)
            if position is None:
                keys.append(key)
                position = key_index[key] = len(keys)
            return position

        counter_key = self._keys.counter
        ops: list[list[Any]] = []
        rotations: dict[str, tuple[int, list[int]]] = {}
        outcomes: list[Any] = [None] * len(pending)
        positions: list[int] = []
        wanted: list[str] = []
        for position, entry in enumerate(pending):
            plan = entry.plan
            profile_id = plan.request.policy_profile_id
            if profile_id is not None:
                if isinstance(profiles.get(profile_id), RoutingError):
                    continue  # it fails anyway: advance nothing for it
                if profile_id not in profiles and profile_id not in wanted:
                    wanted.append(profile_id)
            kind = plan.kind
            if kind == DONE:
                continue
            counter = counter_key(plan.counter_key)
            if kind == ROTATE:
                group = rotations.get(counter)
                if group is None:
                    ops.append([1, index_of(counter), 0])
                    rotations[counter] = group = (len(ops) - 1, [])
                group[1].append(position)
                continue
            if entry.hint is not None and plan.reusable(entry.hint):
                outcomes[position] = (True, entry.hint)
                continue
            assert entry.binding_key is not None
            ops.append([2, index_of(entry.binding_key), index_of(counter), *plan.eligible])
            positions.append(position)
        for op_index, members in rotations.values():
            ops[op_index][2] = len(members)
        if not ops and not wanted:
            return outcomes
        reply = await state(keys=keys, args=[self._counter_ttl_s, self._encode(ops), self._known, *wanted])
        if type(reply) is not list or len(reply) != 1 + len(wanted):
            raise MalformedReply("state.lua")
        answers = self._answers(reply[0], len(ops))
        fetched = reply[1:]
        for op_index, members in rotations.values():
            last = answers[op_index]
            first = last - len(members) + 1
            for offset, position in enumerate(members):
                outcomes[position] = first + offset
        sticky_answers = [a for a in answers if type(a) is list]
        for position, answer in zip(positions, sticky_answers, strict=True):
            if answer[0] == 1:
                outcomes[position] = (True, answer[1])
            else:
                outcomes[position] = (False, answer[1], answer[2] or None)
        for profile_id, text in zip(wanted, fetched, strict=True):
            profiles[profile_id] = None if text is None else self._profiles.parse(profile_id, text)
        return outcomes

    def _answers(self, packed: object, count: int) -> list[Any]:
        """A script's msgpack answer, one entry per operation; the keys it repaired are logged."""
        if type(packed) is not bytes:
            raise MalformedReply("a script answer that is not msgpack")
        answers, repaired = self._decode(packed)
        if len(answers) != count:
            raise MalformedReply(f"{len(answers)} answers for {count} operations")
        if repaired:
            logger.warning(
                "replaced %d Redis value(s) the store would not have written: %s",
                len(repaired),
                ", ".join(repaired),
            )
        return answers

    def _decide(
        self,
        entry: _Pending,
        outcome: Any,
        profile: PolicyProfile | None,
        binding_keys: dict[str, int],
        now: float,
    ) -> tuple[list[Any], SelectAnswer]:
        """The commit record and the answer of one request, from its plan and state outcome."""
        plan = entry.plan
        condition, expected = 0, False
        state_outcome: StateOutcome
        if plan.kind == DONE:
            state_outcome = None
        elif plan.kind == ROTATE:
            state_outcome = outcome
        elif outcome[0]:  # reuse the bound backend
            state_outcome = outcome[1]
            condition, expected = 1, outcome[1]
        else:  # bind anew, if the binding still holds what was read
            state_outcome = outcome[1]
            condition, expected = 2, outcome[2] or False
        decision, deny = Planner.settle(plan, state_outcome, profile)
        result: SelectAnswer = decision
        if deny is not None:
            condition = 0  # a denied sticky decision stores (and refreshes) no binding
            result = PolicyDenied(deny)
        binding = 0
        if condition:
            assert entry.binding_key is not None
            binding = binding_keys.setdefault(entry.binding_key, len(binding_keys) + 3)
        payload = self._codec.payload(now, plan.request, decision, deny)
        return [condition, binding, expected, decision.backend, 1 if deny is not None else 2, payload], result

    async def _commit(
        self, records: list[list[Any]], binding_keys: dict[str, int], commit: Script
    ) -> list[Any]:
        keys = [self._keys.journal, self._keys.journal_seq, *binding_keys]
        payloads = [record.pop() for record in records]
        raw = await commit(
            keys=keys,
            args=[self._binding_ttl_ms, self._journal_size, self._encode(records), self._known, *payloads],
        )
        answers = self._answers(raw, len(records))
        return answers
