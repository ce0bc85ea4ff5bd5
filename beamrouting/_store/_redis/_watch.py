"""Telling a router's waiting callers that a backend may have come free, fleet-wide, without polling.

The scripts publish on ``<prefix>changes`` whenever a session slot frees (an unregistered,
moved or purged session: ``slot``) or the learned state changes (``health``).
:func:`watch` holds a ``SUBSCRIBE`` on a connection of its own and calls ``changed()`` for
each message. If the connection is lost it tries again every ``retry_interval`` seconds,
quietly, and calls ``changed()`` once it is back (news may have been missed meanwhile).
Cancelling it releases the connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Final

import anyio

from ._connection import new_client

__all__ = ["watch"]

_MIN_RETRY: Final = 0.05
"""Seconds between two attempts to subscribe again, at least."""


async def watch(
    url: str, channel: str, changed: Callable[[], None], *, timeout: float, retry_interval: float
) -> None:
    """Call ``changed()`` for every message on ``channel``; until cancelled (see the module docstring)."""
    from redis.exceptions import RedisError

    missed = False
    while True:
        client = new_client(url, timeout=timeout, blocking=True, max_connections=1, socket_keepalive=True)
        pubsub = client.pubsub()
        try:
            with anyio.fail_after(timeout):
                await pubsub.subscribe(channel)
            if missed:
                changed()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None:
                    changed()
        except (RedisError, OSError, TimeoutError):
            missed = True
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
                await client.aclose()
        await anyio.sleep(max(retry_interval, _MIN_RETRY))
