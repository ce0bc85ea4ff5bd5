"""A live read of the fleet's journal stream, for ``Router.subscribe()`` (:meth:`RedisStore.journal_source`).

Each feed has a connection of its own, never one of the pool routing uses, opened when it
starts listening: in one transaction it takes the stream's newest entry as its starting
point, then reads with ``XREAD BLOCK`` from the last entry it read, in batches. A wait
lasts at most ``operation_timeout`` and must be answered within twice that, so a Redis that
is lost or stops answering raises :class:`beamrouting.StoreUnavailable` in time instead of
hanging. A call that fails or is cancelled drops the connection, since a reply may still be
on its way; the next read connects anew and goes on after the last entry returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..._core._errors import StoreDataError, StoreUnavailable
from ..._core._journal import JournalRecord
from ._codec import RecordCodec, UnreadableValue, journal_base, stored_int
from ._connection import check_asyncio, error_reply, new_client, raised_by_redis, redact
from ._keys import KeyLayout

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisJournalFeed"]


def _stream_entries(reply: Any) -> list[Any]:
    """The ``(id, fields)`` entries of an ``XREAD`` reply on one stream (RESP2 or RESP3 shape)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: [[entry, ...]]}
        return [entry for batches in reply.values() for batch in batches for entry in batch]
    return [entry for _, entries in reply for entry in entries]  # RESP2: [[stream, [entry, ...]]]


class RedisJournalFeed:
    """A :class:`beamrouting.store.JournalFeed` over the journal stream of one prefix."""

    __slots__ = (
        "_base",
        "_client",
        "_codec",
        "_keys",
        "_last_id",
        "_releasing",
        "_timeout",
        "_url",
        "unreadable_entries",
    )

    def __init__(self, url: str, keys: KeyLayout, operation_timeout: float, codec: RecordCodec) -> None:
        self._url = url
        self._keys = keys
        self._timeout = operation_timeout
        self._codec = codec
        self._client: aioredis.Redis | None = None
        self._releasing: asyncio.Task[None] | None = None
        self._last_id: bytes | str = b"0-0"
        """The id of the last stream entry read (or the newest one when listening started)."""
        self._base = 0
        self.unreadable_entries = 0
        """Entries skipped because they could not be read (the subscription reports them as a gap)."""

    def __repr__(self) -> str:
        return f"<RedisStore journal feed {redact(self._url)!r} prefix={self._keys.prefix!r}>"

    @property
    def base(self) -> int:
        """The origin of the fleet's event ids (``<prefix>journal:base``), read by :meth:`open`."""
        return self._base

    def _connect(self) -> aioredis.Redis:
        client = self._client
        if client is None:
            # One connection, and a socket timeout longer than the longest wait of an XREAD BLOCK.
            client = self._client = new_client(
                self._url, timeout=self._timeout, socket_timeout=2 * self._timeout, max_connections=1
            )
        return client

    async def _call(
        self, what: str, deadline: float, command: Callable[[aioredis.Redis], Awaitable[Any]]
    ) -> Any:
        """``command`` on the feed's connection within ``deadline`` s, as :class:`StoreUnavailable` on failure.

        An error reply about a value raises :class:`beamrouting.StoreDataError` instead: the
        server is up.
        """
        from redis.exceptions import RedisError, ResponseError

        client = self._connect()
        url = redact(self._url)
        error: StoreUnavailable | StoreDataError
        try:
            async with asyncio.timeout(deadline):
                return await command(client)
        except TimeoutError:
            error = StoreUnavailable(f"Redis at {url} did not answer {what} within {deadline} s")
        except RecursionError:
            error = StoreUnavailable(f"Redis at {url} sent a malformed reply to {what}")
        except ValueError as exc:
            if not raised_by_redis(exc):
                await self._drop(client)
                raise
            error = StoreUnavailable(f"Redis at {url} sent a malformed reply to {what}")
            error.__cause__ = exc
        except ResponseError as exc:
            error = error_reply(self._url, what, exc)
            if isinstance(error, StoreDataError):
                await self._drop(client)  # the server is up, but the caller may never read again
                raise error from exc
        except (RedisError, OSError) as exc:
            error = StoreUnavailable(f"Redis at {url} failed {what}: {exc}")
            error.__cause__ = exc
        except BaseException:  # cancelled: a reply may still come, so the connection is done for
            await self._drop(client)
            raise
        await self._drop(client)
        raise error

    async def open(self) -> int:
        """Connect and take the stream's current end as the starting point; return the next sequence.

        One transaction reads the newest entry's id, the fleet's last sequence number and
        the origin of event ids (creating it, as a starting store does, if nobody has yet).
        Raises :class:`RuntimeError` outside asyncio (under trio),
        :class:`beamrouting.StoreUnavailable` when Redis cannot be reached (or what answers
        is not Redis) and :class:`beamrouting.StoreDataError` for an error reply.
        """
        check_asyncio(running=True)
        keys = self._keys

        async def begin(client: aioredis.Redis) -> tuple[int, list[Any]]:
            base = await journal_base(client, keys.journal_base)
            pipe = client.pipeline(transaction=True)
            pipe.xrevrange(keys.journal, count=1)
            pipe.get(keys.journal_seq)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
            return base, replies

        self._base, (newest, sequence) = await self._call("a subscription start", self._timeout, begin)
        entries = newest if isinstance(newest, list) else []  # a key of the wrong type holds no entry
        self._last_id = entries[0][0] if entries else b"0-0"
        last = stored_int(sequence)
        if last is None and entries:  # unreadable: the newest entry tells (a commit will repair it)
            try:
                record = self._codec.record(entries[0][1])
            except UnreadableValue:
                pass
            else:
                last = record.sequence + record.event_count - 1
        return (last or 0) + 1

    async def read(self, count: int) -> list[JournalRecord]:
        """``XREAD BLOCK``: the next entries after the last one read, at most ``count``, oldest first.

        Waits at most ``operation_timeout`` for an entry (then answers ``[]``). An entry that
        cannot be decoded is skipped: the sequence numbers report it as lost. While the stream
        key holds another type, Redis answers at once with an error: this waits as long, then
        answers ``[]`` (the next commit replaces the key).
        """
        wait = self._timeout
        stream = self._keys.journal

        async def xread(client: aioredis.Redis) -> Any:
            return await client.xread(
                {stream: self._last_id}, count=count, block=max(1, math.ceil(wait * 1000))
            )

        try:
            reply = await self._call("a journal read", 2 * wait, xread)
        except StoreDataError as exc:
            if not str(exc.__cause__).startswith("WRONGTYPE"):
                raise
            await anyio.sleep(wait)  # as XREAD BLOCK would, instead of asking again at once
            return []
        record = self._codec.record
        records: list[JournalRecord] = []
        for entry_id, fields in _stream_entries(reply):
            self._last_id = entry_id
            try:
                records.append(record(fields))
            except UnreadableValue:
                self.unreadable_entries += 1
        return records

    async def _drop(self, client: aioredis.Redis) -> None:
        if self._client is client:
            self._client = None
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await client.aclose()

    def close(self) -> None:
        """Release the connection without waiting: as soon as the event loop runs."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop any more: the socket goes with the client object
            return
        self._releasing = loop.create_task(self._drop(client))

    async def aclose(self) -> None:
        """Release the connection and wait until it is released."""
        client = self._client
        if client is not None:
            await self._drop(client)
        task, self._releasing = self._releasing, None
        if task is not None:
            await asyncio.shield(task)
