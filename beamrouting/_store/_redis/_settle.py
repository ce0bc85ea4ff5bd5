"""Selections on Redis: a drained batch settled with two shared round trips, a plain one with one.

Planning is pure (the shared :class:`beamrouting._core._planner.Planner`, with what the
process's :class:`~._view.View` holds out: learned state, full backends, filtering
profiles); then one script call (``state.lua``) checks the view was current and reads and
advances the state every plan needs (counters, bindings, temporary backends); then
:meth:`Planner.settle` makes each decision and its policy check; then one script call
(``commit.lua``) binds, registers sessions, takes probe slots and journals, atomically. A
decision is returned only after its journal entry is in Redis. A batch that needs no state
(no counters, no bindings) skips the first call and has the second check the view; so
does a run of plain selections (no session, affinity key, policy profile or limit, nothing
learned of a backend it may take): the second call then also advances its round-robin
counters, each counter in one step (see :meth:`Settler._plain`).

If the view was not current, the script changes nothing and answers what changed; the
batch is planned again (one more round trip). Within one round, a request whose plan could
depend on what an earlier one of the round does (a session it registers may fill a limited
backend or change the least loaded one; a probe slot it takes may be the last; a binding it
makes is the one a later request with the same affinity key reuses: ``state.lua`` tells)
waits for the next round, and so does every request after it, so a batch routes, and is journaled, as the same
requests would be one by one in one process.

Sticky bindings are compare-and-set: a first bind succeeds only if the key is still
unbound (first writer wins), a re-bind away from an ineligible backend only if the key
still holds that backend, a reuse only if the key still holds the reused backend (which
also slides the binding's time-to-live), and a temporary backend only if the binding and the
temporary key still hold what was read. A request that loses such a race goes round again
against what the winner stored. A session registration that finds its backend full by
then, or a probe slot taken by the time the commit runs, goes round again too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from ..._core._errors import BeamRoutingError, PolicyDenied, RoutingError, SessionExists, StoreUnavailable
from ..._core._explain import Explanation
from ..._core._health import Ledger, took_probe
from ..._core._holds import Holds
from ..._core._planner import DONE, LEAST_LOADED, ROTATE, STICKY, Planner, RoutePlan, StateOutcome
from ..._core._request import RouteRequest
from ..._core._types import Policy, RouteDecision, SessionHandle
from .._protocol import SelectOp, StoreCrash
from ._calls import Call, Fleet
from ._codec import SessionCodec

__all__ = ["Settler", "exists"]

_MAX_ROUNDS: Final = 32
"""Settling rounds of one batch before giving up, besides one per request."""
_MAX_ATTEMPTS: Final = 16
"""Times one round is planned again because the fleet's state changed meanwhile."""
_FEW_TURNS: Final = 8
"""Turns of a round robin a plain run sends a record of each even with fewer selections of it."""

SelectAnswer = RouteDecision | BeamRoutingError | StoreCrash
_Hint = tuple[str | None, str | None]
"""What a sticky key held when last seen: ``(bound backend, temporary backend)``."""

# Binding conditions of commit.lua.
_REUSE: Final = 1
_BIND: Final = 2
_REUSE_TEMPORARY: Final = 3
_NEW_TEMPORARY: Final = 4


def exists(session_id: str) -> SessionExists:
    """The error of registering ``session_id`` exclusively while a live session has it."""
    return SessionExists(f"session {session_id!r} is live; choose another id")


class _Pending:
    """One selection of a batch on its way through the settling rounds."""

    __slots__ = (
        "binding_key",
        "error",
        "hint",
        "index",
        "local",
        "op",
        "plan",
        "stamp",
        "temporary_key",
        "tied",
    )

    def __init__(self, index: int, op: SelectOp, binding_key: str | None, temporary_key: str | None) -> None:
        self.index = index
        self.op = op
        self.binding_key = binding_key
        self.temporary_key = temporary_key
        self.hint: _Hint | None = None
        """What the sticky key held when this request last saw it (reused without a state read if it may)."""
        self.local: tuple[int, str, str | None] | None = None
        """The hint resolved for this round: ``(condition, backend, bound)``."""
        self.plan: RoutePlan | None = None
        self.error: BeamRoutingError | None = None
        self.stamp: tuple[int, float] | None = None
        """The view generation and time ``plan`` was made with."""
        self.tied: tuple[str, ...] = ()


def _index(entry: _Pending) -> int:
    return entry.index


class _Batch:
    """The answers of one batch, and where it crashed (later selections are not applied)."""

    __slots__ = ("crash", "limit", "results")

    def __init__(self, size: int) -> None:
        self.results: list[SelectAnswer | None] = [None] * size
        self.limit = size
        self.crash: StoreCrash | None = None

    def crashed(self, index: int, exc: Exception) -> None:
        if index < self.limit:
            self.limit, self.crash = index, StoreCrash(exc)


class _Records:
    """The journal records of one ``commit.lua`` call: each payload encoded once, each plain record built once.

    The decisions a plan hands out are shared objects, so a payload is keyed by its request
    and decision, both by identity. A plain record (no binding, session or probe) is one
    list per payload, as the call sends each distinct record once.
    """

    __slots__ = ("_call", "_encode", "_now", "_payloads", "_plain")

    def __init__(self, call: Call, encode: Callable[..., bytes], now: float) -> None:
        self._call = call
        self._encode = encode
        self._now = now
        self._payloads: dict[tuple[int, int], int] = {}
        self._plain: dict[int, list[Any]] = {}

    def payload(self, request: RouteRequest, decision: RouteDecision, deny: str | None) -> int:
        """The argument index of the record journaling ``decision`` (denied: ``deny``) for ``request``."""
        if deny is not None:
            return self._call.value(self._encode(self._now, request, decision, deny))
        key = (id(request), id(decision))
        index = self._payloads.get(key)
        if index is None:
            index = self._payloads[key] = self._call.value(self._encode(self._now, request, decision, None))
        return index

    def plain(self, backend: str, journaled: int, *, denied: bool = False) -> list[Any]:
        """The record of a decision on ``backend`` journaled as ``journaled``, with no binding, session or probe."""
        record = self._plain.get(journaled)
        if record is None:
            record = self._plain[journaled] = [
                0,
                0,
                0,
                False,
                False,
                backend,
                1 if denied else 2,
                journaled,
                False,
                0,
            ]
        return record


class Settler:
    """Settles batches of selections, and explains requests, for one :class:`RedisStore`."""

    def __init__(self, planner: Planner, fleet: Fleet, sessions: SessionCodec) -> None:
        self._planner = planner
        self._fleet = fleet
        self._view = fleet.view
        self._sessions = sessions
        self._plans: dict[int, tuple[RouteRequest, RoutePlan]] = {}
        """The plans made at ``_plans_stamp`` during one batch, by request identity (equal requests share one object)."""
        self._plans_stamp: tuple[int, float] | None = None

    def configure(self, planner: Planner) -> None:
        """Plan with ``planner`` from now on (new weights)."""
        self._planner = planner

    # -- planning ---------------------------------------------------------------------------

    def _plan_of(self, req: RouteRequest, now: float) -> tuple[RoutePlan, Holds]:
        holds = self._view.holds(req, now)
        planner = self._planner
        return (planner.plan_with(req, holds) if holds.unavailable else planner.plan(req)), holds

    def _plan(self, entry: _Pending, now: float) -> None:
        stamp = (self._view.generation, now)
        if entry.stamp == stamp:
            return
        entry.stamp = stamp
        entry.plan = entry.error = None
        plans = self._plans
        if self._plans_stamp != stamp:
            plans.clear()
            self._plans_stamp = stamp
        request = entry.op.request
        known = plans.get(id(request))
        if known is not None and known[0] is request:
            entry.plan = known[1]
            return
        try:
            entry.plan = self._plan_of(request, now)[0]
        except BeamRoutingError as exc:  # not shared: each selection raises its own
            entry.error = exc
        else:
            plans[id(request)] = (request, entry.plan)

    def _op(
        self, plan: RoutePlan | None, call: Call, guard: str | bool, *, tied: tuple[str, ...] = ()
    ) -> list[Any] | None:
        """The ``state.lua`` operation ``plan`` needs (``None``: none)."""
        counter = self._fleet.keys.counter
        kind = DONE if plan is None else plan.kind
        if kind == DONE:
            return [0, guard] if guard else None
        assert plan is not None
        if kind == LEAST_LOADED:
            return [3, call.key(counter(plan.tie_key(tied))), list(plan.ordered), list(tied), guard]
        assert plan.counter_key is not None
        if kind != STICKY:
            return [1, call.key(counter(plan.counter_key)), guard]
        keys = self._fleet.keys
        key = plan.request.affinity_key
        assert key is not None
        return [
            2,
            call.key(keys.binding(key)),
            call.key(keys.temporary(key)),
            call.key(counter(plan.counter_key)),
            list(plan.eligible),
            sorted(plan.held_out),
            guard,
        ]

    @staticmethod
    def _local(plan: RoutePlan, hint: _Hint) -> tuple[int, str, str | None] | None:
        """What a sticky request does with the binding ``hint`` saw, when that needs no counter."""
        bound, temporary = hint
        if bound is not None and plan.reusable(bound):
            return _REUSE, bound, bound
        if (
            bound is not None
            and bound in plan.held_out
            and temporary is not None
            and plan.reusable(temporary)
        ):
            return _REUSE_TEMPORARY, temporary, bound
        return None

    @staticmethod
    def _outcome(
        plan: RoutePlan, answer: Any, peek: bool, tied: tuple[str, ...]
    ) -> tuple[StateOutcome, bool, list[Any]]:
        """``(outcome, temporary, [condition, bound, temporary backend])`` from a ``state.lua`` answer."""
        kind = plan.kind
        step = 1 if peek else 0
        if kind == DONE:
            return None, False, [0, False, False]
        if kind == LEAST_LOADED:
            return tied[(answer + step - 1) % len(tied)], False, [0, False, False]
        if kind != STICKY:
            return answer + step, False, [0, False, False]
        if answer[0] == 1:
            return answer[1], False, [_REUSE, answer[1], False]
        if answer[0] == 2:
            return answer[1], True, [_REUSE_TEMPORARY, answer[2], answer[1]]
        bound = answer[2] or None
        if bound is not None and bound in plan.held_out:  # the bound backend is out: a temporary one
            return answer[1] + step, True, [_NEW_TEMPORARY, bound, answer[3]]
        return answer[1] + step, False, [_BIND, answer[2], False]

    # -- selections ---------------------------------------------------------------------------

    async def select(self, ops: Sequence[SelectOp]) -> list[SelectAnswer]:
        """Select for every operation of a run (registering their sessions); one answer each up to a crash."""
        try:
            plain = await self._plain(ops)
            return plain if plain is not None else await self._select(ops)
        finally:
            self._plans.clear()  # it holds the batch's requests

    async def _plain(self, ops: Sequence[SelectOp]) -> list[SelectAnswer] | None:
        """A run of plain selections settled in one round trip; ``None`` when the run is not one.

        Plain: no session, no affinity key, no policy profile, no backend limits, nothing
        learned of a backend it may take, nothing that time changed to journal, and a
        decision that needs no state or a round robin with no more turns than the run has
        selections of it (or a few: each turn's record is sent). ``commit.lua`` then
        advances the counters and journals each decision in the same step (strict: nothing
        is applied unless the view is current). ``None`` too when the view was stale or
        planning raised: :meth:`_select` settles the run then, as it would have, and
        answers errors.
        """
        view, fleet = self._view, self._fleet
        if view.limits:
            return None
        now = view.now()
        writes, events = view.observations(now)
        if writes or events:
            return None
        ledgers = view.ledgers
        call = fleet.commit_call()
        journal = _Records(call, fleet.codec.payload, now)
        records: list[list[Any]] = []  # the distinct ones
        position: dict[int, int] = {}  # journal payload -> its record's position in records
        final: dict[int, RouteDecision] = {}  # record -> the decision of a plan that needed no state
        rotating: list[tuple[RouteRequest, RoutePlan, str]] = []  # the round robins, each a counter
        plans: dict[int, tuple[RouteRequest, int]] = {}  # request (by identity) -> (it, its order entry)
        counters: set[str] = set()
        order: list[int] = []  # per selection: its record, or -g for the g-th round robin

        def record(request: RouteRequest, decision: RouteDecision) -> int:
            journaled = journal.payload(request, decision, None)
            index = position.get(journaled)
            if index is None:
                records.append(journal.plain(decision.backend, journaled))
                index = position[journaled] = len(records)
            return index

        known_plan, add_entry = plans.get, order.append
        for op in ops:
            request = op.request
            known = known_plan(id(request))
            if known is None or known[0] is not request:
                if (
                    op.session_id is not None
                    or request.affinity_key is not None
                    or request.policy_profile_id is not None
                ):
                    return None
                try:
                    plan = self._plan_of(request, now)[0]
                except Exception:  # answered (or crashed on) by _select, in its place in the run
                    return None
                if plan.kind == DONE:
                    assert plan.decision is not None
                    if plan.decision.backend in ledgers:  # it may take a probe slot
                        return None
                    entry = record(request, plan.decision)
                    final[entry] = plan.decision
                elif plan.kind == ROTATE:
                    assert plan.counter_key is not None
                    name = fleet.keys.counter(plan.counter_key)
                    # Each counter in one rotation, so that its values go out in order; a
                    # backend learned of may take a probe slot.
                    if name in counters or any(b in ledgers for b in plan.ordered):
                        return None
                    counters.add(name)
                    rotating.append((request, plan, name))
                    entry = -len(rotating)
                else:
                    return None
                known = plans[id(request)] = (request, entry)
            elif op.session_id is not None:
                return None
            add_entry(known[1])
        turns: list[list[Any]] = []
        decided: list[tuple[RouteDecision, ...]] = []
        for group, (request, plan, name) in enumerate(rotating, 1):
            count = len(plan.ordered)
            if count > max(_FEW_TURNS, order.count(-group)):
                return None  # a record per turn would cost more than the round trip it saves
            # Turn t is counter value t, and every value (t - 1) % turns + 1 after it.
            decisions = tuple(plan.rotation(turn, self._planner.rotations) for turn in range(1, count + 1))
            turns.append([call.key(name), [record(request, decision) for decision in decisions]])
            decided.append(decisions)
        reply = await fleet.commit(call, now, records=records, strict=True, rotations=turns, order=order)
        if not reply.applied:
            return None
        answers: list[SelectAnswer] = []
        answer_with = answers.append
        for entry, answer in zip(order, reply.answers, strict=True):
            if entry < 0 and type(answer) is int and answer >= 1:
                decisions = decided[-entry - 1]
                answer_with(decisions[(answer - 1) % len(decisions)])
            elif entry > 0 and answer == 1:
                answer_with(final[entry])
            else:
                raise StoreUnavailable(f"commit.lua answered {answer!r} for a selection")
        return answers

    async def _select(self, ops: Sequence[SelectOp]) -> list[SelectAnswer]:
        batch = _Batch(len(ops))
        keys = self._fleet.keys
        now = self._view.now()
        pending: list[_Pending] = []
        for index, op in enumerate(ops):
            key = op.request.affinity_key if op.request.policy is Policy.STICKY else None
            entry = _Pending(
                index,
                op,
                None if key is None else keys.binding(key),
                None if key is None else keys.temporary(key),
            )
            try:
                self._plan(entry, now)
            except Exception as exc:
                batch.crashed(index, exc)
                break
            pending.append(entry)
        rounds = _MAX_ROUNDS + len(pending)
        while pending and rounds:
            rounds -= 1
            pending = await self._round(batch, pending, now)
            pending = [entry for entry in pending if entry.index < batch.limit]
            now = self._view.now()
        if pending:
            raise StoreUnavailable(
                f"the fleet's state kept changing under {len(pending)} selection(s); giving up"
            )
        answer: list[SelectAnswer] = []
        for result in batch.results[: batch.limit]:
            assert result is not None
            answer.append(result)
        if batch.crash is not None:
            answer.append(batch.crash)
        return answer

    def _admit(
        self, batch: _Batch, pending: list[_Pending], now: float
    ) -> tuple[list[_Pending], list[_Pending]]:
        """Plan ``pending`` and split it: what goes this round, and what waits for the next one."""
        view = self._view
        limits, live = view.limits, view.live
        probing = view.probing(now)
        eligible = self._planner.eligible
        claimed: set[object] = set()
        possible: dict[str, int] = {}  # backend -> sessions registered this round that may land there
        moved = False  # a session of this round may move, freeing a slot anywhere
        touched: set[str] = set()  # probing backends a selection of this round may take a slot of
        current: list[_Pending] = []
        waiting: list[_Pending] = []
        for entry in pending:
            if entry.index >= batch.limit:
                break
            if waiting:  # what follows a request that waits waits too: decisions are journaled in order
                waiting.append(entry)
                continue
            try:
                self._plan(entry, now)
            except Exception as exc:
                batch.crashed(entry.index, exc)
                break
            op, plan = entry.op, entry.plan
            least = op.request.policy is Policy.LEAST_LOADED
            base = eligible(op.request) if limits or least or touched else ()
            session = op.session_id
            wait = session is not None and ("s", session) in claimed
            if not wait and (limits or least):
                if moved:
                    wait = True
                elif least:
                    wait = any(b in possible for b in base)
                if not wait and limits:
                    wait = any(
                        b in limits and live.get(b, 0) < limits[b] <= live.get(b, 0) + possible.get(b, 0)
                        for b in base
                    )
            if not wait and touched:
                wait = any(b in touched for b in base)
            entry.local = None
            claim = None
            if not wait and plan is not None and plan.kind == STICKY:
                if entry.hint is not None:
                    entry.local = self._local(plan, entry.hint)
                if entry.local is not None:  # no state read: wait if an earlier one of the round may rebind
                    wait = entry.binding_key in claimed
                else:  # state.lua defers it if an earlier one of the round may rebind
                    claim = entry.binding_key
            if wait:
                waiting.append(entry)
                continue
            current.append(entry)
            if claim is not None:
                claimed.add(claim)
            if session is not None:
                claimed.add(("s", session))
            if plan is not None:
                # Where it may land: decided already for a plan that needs no state, else any eligible backend.
                lands = plan.eligible if plan.decision is None else (plan.decision.backend,)
                if session is not None and op.exclusive:
                    for b in lands:
                        possible[b] = possible.get(b, 0) + 1
                elif session is not None:
                    moved = True
                if probing:
                    touched.update(b for b in lands if b in probing)
        return current, waiting

    async def _round(self, batch: _Batch, pending: list[_Pending], now: float) -> list[_Pending]:
        """Settle what may go this round; return what goes round again or waits."""
        view, fleet = self._view, self._fleet
        for attempt in range(_MAX_ATTEMPTS):
            if attempt:
                now = view.now()
            writes, events = view.observations(now)
            current, waiting = self._admit(batch, pending, now)
            call = fleet.state_call()
            ops: list[list[Any]] = []
            rotating: dict[int, list[Any] | None] = {}  # plan (by identity) -> its operation
            op_of: dict[int, int] = {}
            least = False
            for entry in current:
                plan = entry.plan
                guard: str | bool = (
                    entry.op.session_id if entry.op.exclusive and entry.op.session_id else False
                )
                if plan is not None and plan.kind == LEAST_LOADED:
                    entry.tied = plan.least_loaded(view.live)
                    least = True
                if plan is not None and plan.kind == ROTATE and not guard and entry.local is None:
                    # One list per plan: the call sends each distinct operation once.
                    op = rotating.get(id(plan))
                    if op is None:
                        op = rotating[id(plan)] = self._op(plan, call, guard)
                else:
                    op = self._op(None if entry.local is not None else plan, call, guard, tied=entry.tied)
                if op is not None:
                    op_of[entry.index] = len(ops)
                    ops.append(op)
            counts = bool(view.limits) or least
            named = [entry.op.request.policy_profile_id for entry in current]
            answers: list[Any] = []
            if ops:
                reply = await fleet.state(call, ops, now, peek=False, counts=counts, named=named)
                if not reply.fresh:
                    continue
                answers = reply.answers
                if "later" in answers:  # deferred by state.lua, with what follows
                    first = answers.index("later")
                    at = next(i for i, entry in enumerate(current) if op_of.get(entry.index) == first)
                    current, waiting = current[:at], current[at:] + waiting
            committed = await self._commit(
                batch,
                current,
                answers,
                op_of,
                writes,
                events,
                now,
                strict=not ops,
                counts=counts,
                named=named,
            )
            if committed is None:
                continue
            again, seen = committed
            later = sorted(again + waiting, key=_index)
            for entry in later:
                key = entry.binding_key
                if key is not None and key in seen:
                    entry.hint = seen[key]
            return later
        raise StoreUnavailable("the fleet's state kept changing under a batch of selections; giving up")

    async def _commit(
        self,
        batch: _Batch,
        current: list[_Pending],
        answers: list[Any],
        op_of: dict[int, int],
        writes: dict[str, Ledger | None],
        events: list[Any],
        now: float,
        *,
        strict: bool,
        counts: bool,
        named: list[str | None],
    ) -> tuple[list[_Pending], dict[str, _Hint]] | None:
        """Decide ``current`` from the state ``answers`` and commit; ``None`` when the plan was stale.

        Answers what goes round again, and what each sticky key it touched holds now.
        """
        view, fleet = self._view, self._fleet
        policy = view.policy
        ledgers = {**view.ledgers, **writes}  # as observed: a ledger that became fresh is gone
        call = fleet.commit_call()
        records: list[list[Any]] = []
        probes: list[Ledger | None] = []
        decided: list[tuple[_Pending, SelectAnswer]] = []
        finals: list[tuple[_Pending, SelectAnswer]] = []
        rotations = self._planner.rotations
        journal = _Records(call, fleet.codec.payload, now)

        for entry in current:
            if entry.index >= batch.limit:
                break
            op = entry.op
            position = op_of.get(entry.index)
            answer = None if position is None else answers[position]
            if answer is False:  # the state read found the session live
                assert op.session_id is not None
                finals.append((entry, exists(op.session_id)))
                continue
            if entry.error is not None or entry.plan is None:
                finals.append((entry, entry.error or StoreUnavailable("a selection without a plan")))
                continue
            try:
                plan = entry.plan
                if entry.local is not None:
                    condition, backend, bound = entry.local
                    outcome: StateOutcome = backend
                    temporary = condition == _REUSE_TEMPORARY
                    binding = [condition, bound, backend if temporary else False]
                else:
                    outcome, temporary, binding = self._outcome(plan, answer, False, entry.tied)
                request = op.request
                if plan.kind == ROTATE and request.affinity_key is None and request.policy_profile_id is None:
                    # The decisions a plan hands out are shared objects, so a batch encodes each once.
                    decision, deny = plan.rotation(outcome, rotations), None  # type: ignore[arg-type]
                else:
                    decision, deny = Planner.settle(
                        plan, outcome, view.profile(request.policy_profile_id), temporary=temporary
                    )
                result: SelectAnswer = decision if deny is None else PolicyDenied(deny)
                session: list[Any] | bool = False
                probe: Ledger | None = None
                if deny is not None:
                    binding = [0, False, False]
                else:
                    if op.session_id is not None:
                        handle = SessionHandle(op.session_id, decision.backend, op.metadata)
                        session = [op.session_id, call.value(self._sessions.encode(handle)), op.exclusive]
                    ledger = ledgers.get(decision.backend)
                    if policy is not None and ledger is not None:
                        after = took_probe(ledger, now, policy)
                        if after != ledger:
                            probe = after
                key = request.affinity_key
                cond = binding[0]
                journaled = journal.payload(request, decision, deny)
                if not cond and session is False and probe is None:
                    record = journal.plain(decision.backend, journaled, denied=deny is not None)
                else:
                    record = [
                        cond,
                        call.key(fleet.keys.binding(key)) if cond and key is not None else 0,
                        call.key(fleet.keys.temporary(key)) if cond and key is not None else 0,
                        binding[1],
                        binding[2],
                        decision.backend,
                        1 if deny is not None else 2,
                        journaled,
                        session,
                        0 if probe is None else call.value(view.encode_ledger(probe)),
                    ]
                records.append(record)
                probes.append(probe)
                decided.append((entry, result))
            except Exception as exc:
                batch.crashed(entry.index, exc)
                break
        if len(finals) == len(current) and all(isinstance(result, SessionExists) for _, result in finals):
            writes, events = {}, []  # refused before selecting, as the engine does: nothing observed
        if records or writes or events or strict:
            reply = await fleet.commit(
                call,
                now,
                records=records,
                probes=probes,
                writes=writes,
                events=events,
                strict=strict,
                counts=counts,
                named=named,
            )
            if not reply.applied:
                return None
            outcomes = reply.answers
        else:
            outcomes = []
        for entry, result in finals:
            batch.results[entry.index] = result
        again: list[_Pending] = []
        seen: dict[str, _Hint] = {}
        for (entry, result), record, settled in zip(decided, records, outcomes, strict=True):
            key = entry.binding_key
            if settled == 1:
                batch.results[entry.index] = result
                if key is not None and record[0]:
                    cond, bound, temporary, backend = record[0], record[3], record[4], record[5]
                    if cond in (_REUSE, _BIND):
                        seen[key] = (backend, None)
                    else:
                        seen[key] = (bound or None, backend if cond == _NEW_TEMPORARY else temporary or None)
                continue
            code = settled[0] if type(settled) is list and settled else None
            if code == 1 and key is not None:  # a binding changed under it
                entry.hint = seen[key] = (settled[1] or None, settled[2] or None)
            elif code == 2:  # the session became live meanwhile
                assert entry.op.session_id is not None
                batch.results[entry.index] = exists(entry.op.session_id)
                continue
            elif code not in (3, 4):  # 3: the backend filled up, 4: the learned state changed
                raise StoreUnavailable(f"commit.lua answered {settled!r} for a selection")
            again.append(entry)
        return again, seen

    # -- explaining ---------------------------------------------------------------------------

    async def explain(self, req: RouteRequest) -> Explanation:
        """How ``req`` would route now, from the fleet's state, changing nothing (one round trip).

        The decision is the one a selection would make if nobody else routed first.
        """
        view, fleet, planner = self._view, self._fleet, self._planner
        for _ in range(_MAX_ATTEMPTS):
            now = view.now()
            reasons: dict[str, str] = {}
            plan: RoutePlan | None = None
            error: BeamRoutingError | None = None
            tied: tuple[str, ...] = ()
            try:
                holds = view.holds(req, now)
                reasons = holds.reasons()
                plan = planner.plan_with(req, holds) if holds.unavailable else planner.plan(req)
            except BeamRoutingError as exc:  # answered once the view is known to be current
                error = exc
            if plan is not None and plan.kind == LEAST_LOADED:
                tied = plan.least_loaded(view.live)
            call = fleet.state_call()
            op = self._op(plan, call, False, tied=tied)
            ops = [] if op is None else [op]
            reply = await fleet.state(
                call,
                ops,
                now,
                peek=True,
                counts=bool(view.limits) or bool(tied),
                named=[req.policy_profile_id],
            )
            if not reply.fresh:
                continue
            if plan is None:
                if not isinstance(error, RoutingError):
                    raise error or StoreUnavailable("an explanation without a plan")
                return planner.explanation(req, None, error.to_dict(), reasons)
            try:
                outcome, temporary, _ = self._outcome(plan, reply.answers[0] if ops else None, True, tied)
                decision, deny = Planner.settle(
                    plan, outcome, view.profile(req.policy_profile_id), temporary=temporary
                )
                if deny is not None:
                    raise PolicyDenied(deny)
            except RoutingError as exc:
                return planner.explanation(req, None, exc.to_dict(), reasons)
            return planner.explanation(req, decision, None, reasons)
        raise StoreUnavailable("the fleet's state kept changing under an explanation; giving up")
