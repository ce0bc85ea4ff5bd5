"""Calls of ``state.lua`` and ``commit.lua``: arguments built, replies checked, the :class:`View` kept current.

Every call carries the versions the caller's view has and answers the fleet's state beside
its own answers (see :mod:`._view`); this module encodes one and decodes the other, so the
selection, learning and session code deal in plain values.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec

from ..._core._health import HealthEvent, Ledger
from . import _view
from ._codec import RecordCodec
from ._connection import MalformedReply
from ._keys import KeyLayout
from ._view import Reply, View

__all__ = ["Call", "Fleet", "shared"]

logger: Final = logging.getLogger("beamrouting.redis")

Script = Callable[..., Awaitable[Any]]


class Call:
    """The keys and binary arguments of one script call, each named by its 1-based index.

    ``keys`` starts with the script's fixed keys; :meth:`key` adds (once) a key the call
    names, and :meth:`value` (once) a binary argument after the msgpack meta (``ARGV[1]``):
    the selections of a batch often journal the same record.
    """

    __slots__ = ("_key_index", "_value_index", "keys", "values")

    def __init__(self, fixed: list[str]) -> None:
        self.keys = list(fixed)
        self._key_index: dict[str, int] = {}
        self.values: list[bytes] = []
        self._value_index: dict[bytes, int] = {}

    def key(self, name: str) -> int:
        index = self._key_index.get(name)
        if index is None:
            self.keys.append(name)
            index = self._key_index[name] = len(self.keys)
        return index

    def value(self, data: bytes) -> int:
        index = self._value_index.get(data)
        if index is None:
            self.values.append(data)
            index = self._value_index[data] = len(self.values) + 1
        return index


def shared(items: Sequence[list[Any]]) -> tuple[list[list[Any]], list[int]]:
    """``items`` as the scripts take them: each distinct list once (by identity), and the 1-based
    index of each item's list in that order (see ``expand`` in ``lib.lua``)."""
    distinct: list[list[Any]] = []
    where: dict[int, int] = {}
    order: list[int] = []
    for item in items:
        index = where.get(id(item))
        if index is None:
            distinct.append(item)
            index = where[id(item)] = len(distinct)
        order.append(index)
    return distinct, order


class Fleet:
    """Runs the store's scripts for one :class:`RedisStore` and keeps its :class:`View` current."""

    def __init__(
        self,
        view: View,
        keys: KeyLayout,
        codec: RecordCodec,
        *,
        counter_ttl_s: int,
        binding_ttl_ms: int,
        journal_size: int,
        session_ttl_ms: int,
        purge: int,
    ) -> None:
        self.view = view
        self.keys = keys
        self.codec = codec
        self.counter_ttl_s = counter_ttl_s
        self.binding_ttl_ms = binding_ttl_ms
        self.journal_size = journal_size
        self.session_ttl_ms = session_ttl_ms
        self.purge = purge
        self.state_script: Script | None = None
        self.commit_script: Script | None = None
        self._known = list(view.catalog.backends)
        self._limits = dict(view.limits)
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(list[Any]).decode

    def configure(self, limits: Mapping[str, int]) -> None:
        """This process's new backend limits."""
        self._limits = dict(limits)

    # -- arguments ------------------------------------------------------------------------

    def state_call(self) -> Call:
        keys = self.keys
        return Call(
            [keys.health_version, keys.profiles_version, keys.health, keys.profiles, *keys.session_keys]
        )

    def commit_call(self) -> Call:
        keys = self.keys
        return Call(
            [
                keys.journal,
                keys.journal_seq,
                keys.health_version,
                keys.profiles_version,
                keys.health,
                keys.profiles,
                *keys.session_keys,
            ]
        )

    def clock_ms(self, now: float) -> int | None:
        """``now`` for the scripts: in ms with an injected clock, else ``None`` (they read ``TIME``)."""
        return None if self.view.clock is None else int(now * 1000)

    def events(self, call: Call, events: Iterable[HealthEvent]) -> list[int]:
        """The one-event journal records of ``events``, as binary arguments of ``call``."""
        payload = self.codec.event_payload
        return [call.value(payload(when, kind, data)) for kind, data, when in events]

    def writes(self, call: Call, writes: Mapping[str, Ledger | None]) -> list[list[Any]]:
        """Ledger writes as ``commit.lua`` takes them: ``[backend, ledger index or 0 to delete]``."""
        encode = self.view.encode_ledger
        return [[b, 0 if ledger is None else call.value(encode(ledger))] for b, ledger in writes.items()]

    def _common(self, now: float, counts: bool, named: Iterable[str | None]) -> dict[str, Any]:
        view = self.view
        meta: dict[str, Any] = {"hv": view.hv, "pv": view.pv, "known": self._known, "counts": counts}
        checked = view.named(named)
        if checked:
            meta["named"] = checked
        if self._limits:
            meta["limits"] = self._limits
            meta["full"] = view.full()
        clock = self.clock_ms(now)
        if clock is not None:
            meta["clock"] = clock
        return meta

    # -- calls ------------------------------------------------------------------------------

    async def state(
        self,
        call: Call,
        ops: list[list[Any]],
        now: float,
        *,
        peek: bool,
        counts: bool,
        named: Iterable[str | None] = (),
    ) -> Reply:
        """Run ``state.lua`` with ``ops`` (see its header); the view takes in what it answered.

        ``named``: the profiles the requests name (their documents are checked against the cache's).
        """
        assert self.state_script is not None
        meta = self._common(now, counts, named)
        distinct, order = shared(ops)
        meta.update(ttl=self.counter_ttl_s, peek=peek, ops=distinct, order=order)
        started = _view.wall()
        reply = await self.state_script(keys=call.keys, args=[self._encode(meta), *call.values])
        fields, raw = self._split(reply, "state.lua", 10)
        fresh, answers, repaired = fields[:3]
        self._repaired(repaired)
        hv = self.view.update(fields[3:], raw, started)
        if type(answers) is not list or (fresh and len(answers) != len(ops)):
            raise MalformedReply(f"state.lua answered {answers!r} for {len(ops)} operations")
        return Reply(True, fresh == 1, answers, hv)

    async def commit(
        self,
        call: Call,
        now: float,
        *,
        records: Sequence[list[Any]] = (),
        probes: Sequence[Ledger | None] = (),
        writes: Mapping[str, Ledger | None] | None = None,
        events: Iterable[HealthEvent] = (),
        strict: bool = False,
        counts: bool = False,
        named: Iterable[str | None] = (),
        rotations: Sequence[list[Any]] = (),
        order: list[int] | None = None,
    ) -> Reply:
        """Run ``commit.lua`` (see its header); the view takes in what it answered and what it wrote.

        ``writes`` are ledger writes, applied (with ``events``) only if the view's learned
        state is current; the view then holds them, and each record's ``probes`` entry (the
        ledger it writes when it takes a probe slot) once the record is applied.

        With ``order`` (strict, no probes), ``records`` are the distinct records and
        ``order`` says each decision's: an index among them, or ``-g`` for a round-robin
        decision of ``rotations[g - 1]`` (``[counter key index, record index per turn]``),
        answered with its counter value.
        """
        assert self.commit_script is not None
        writes = writes or {}
        meta = self._common(now, counts, named if strict else ())
        meta.update(
            bttl=self.binding_ttl_ms,
            maxlen=self.journal_size,
            strict=strict,
            ttl=self.session_ttl_ms,
            purge=self.purge,
            channel=self.keys.changes,
            writes=self.writes(call, writes),
            events=self.events(call, events),
        )
        if order is None:
            meta["records"], meta["order"] = shared(records)
            decisions = len(records)
        else:
            meta.update(records=records, order=order, rotations=rotations, cttl=self.counter_ttl_s)
            decisions = len(order)
        started = _view.wall()
        reply = await self.commit_script(keys=call.keys, args=[self._encode(meta), *call.values])
        fields, raw = self._split(reply, "commit.lua", 11)
        applied, fresh, answers, repaired = fields[:4]
        self._repaired(repaired)
        view = self.view
        sent = meta["hv"]
        hv = view.update(fields[4:], raw, started)
        if type(answers) is not list or (applied and len(answers) != decisions):
            raise MalformedReply(f"commit.lua answered {answers!r} for {decisions} decisions")
        if applied and fresh:  # what it wrote is what the view had, plus these writes
            taken: dict[
                str, Ledger
            ] = {}  # the probe slots taken: ``probes`` has one entry per record, or none
            if probes:
                taken = {
                    record[5]: ledger
                    for record, answer, ledger in zip(records, answers, probes, strict=True)
                    if answer == 1 and ledger is not None
                }
            if (writes or taken) and view.hv == sent:
                view.learned({**writes, **taken}, hv)
            elif writes or taken:  # another batch on this view refreshed it meanwhile: read it again
                view.forget()
        return Reply(applied == 1, fresh == 1, answers, hv)

    # -- replies ------------------------------------------------------------------------------

    def _split(self, reply: object, script: str, size: int) -> tuple[list[Any], list[Any]]:
        if type(reply) is not list or not reply or type(reply[0]) is not bytes:
            raise MalformedReply(f"{script} answered {type(reply).__name__}")
        fields = self._decode(reply[0])
        if len(fields) != size:
            raise MalformedReply(f"{script} answered {len(fields)} fields")
        return fields, reply[1:]

    def _repaired(self, repaired: object) -> None:
        if type(repaired) is not list:
            raise MalformedReply("a list of repaired keys that is not a list")
        if repaired:
            logger.warning(
                "replaced %d Redis value(s) the store would not have written: %s",
                len(repaired),
                ", ".join(str(key) for key in repaired),
            )
