"""The Redis key layout of one deployment: every key a :class:`RedisStore` touches, under its prefix.

=============================  ========  ==============================================
key                            type      holds
=============================  ========  ==============================================
``<prefix>c:<digest>``         string    a round-robin counter (``INCR``)
``<prefix>b:<digest>``         string    a sticky binding: the bound backend's name
``<prefix>t:<digest>``         string    a sticky key's temporary backend, while its
                                         bound backend is held out
``<prefix>profiles``           hash      policy profile id -> JSON document
``<prefix>profiles:v``         string    the profiles' version (bumped by every change)
``<prefix>health``             hash      backend -> msgpack :class:`Ledger` (learned state)
``<prefix>health:v``           string    the learned state's version (bumped by every change)
``<prefix>journal``            stream    journal records (``s``: sequence, ``e``: events,
                                         absent for 2, ``r``: record)
``<prefix>journal:seq``        string    the fleet's last journal event sequence
``<prefix>journal:base``       string    the random origin of event ids
``<prefix>sessions``           hash      session id -> msgpack-encoded handle
``<prefix>sessions:order``     zset      session id -> registration sequence
``<prefix>sessions:seq``       string    the last registration sequence
``<prefix>sessions:expiry``    zset      session id -> deadline (ms), with ``session_ttl``
``<prefix>live``               hash      backend -> live sessions (backends with some)
``<prefix>live:of``            hash      session id -> its backend (what ``live`` counts)
``<prefix>changes``            channel   ``slot`` (a session slot freed) and ``health``
                                         (learned state changed), for ``watch``
=============================  ========  ==============================================

``<digest>`` is :func:`stable_digest` of the counter key or affinity key, the same in every
process (never Python's per-process ``hash()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Final

import msgspec

__all__ = ["KeyLayout", "stable_digest"]

_DIGEST_CACHE_SIZE: Final = 4096
_GLOB_SPECIAL: Final = frozenset("*?[]\\")


def stable_digest(value: object) -> str:
    """32 hex digits of BLAKE2b over the msgpack encoding of ``value``: the same in every process."""
    return hashlib.blake2b(msgspec.msgpack.encode(value), digest_size=16).hexdigest()


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


class _DigestKeys:
    """Redis key names ``prefix + stable_digest(value)``, memoised in a bounded cache."""

    __slots__ = ("_cache", "_prefix")

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._cache: dict[Hashable, str] = {}

    def __call__(self, value: Hashable) -> str:
        cache = self._cache
        key = cache.get(value)
        if key is None:
            if len(cache) >= _DIGEST_CACHE_SIZE:
                cache.clear()
            key = cache[value] = self._prefix + stable_digest(value)
        return key


class KeyLayout:
    """The names of every key of one prefix (see the module docstring)."""

    __slots__ = (
        "binding",
        "changes",
        "counter",
        "health",
        "health_version",
        "journal",
        "journal_base",
        "journal_seq",
        "live",
        "live_of",
        "prefix",
        "profiles",
        "profiles_version",
        "routing_patterns",
        "sessions",
        "sessions_expiry",
        "sessions_order",
        "sessions_seq",
        "temporary",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.profiles = prefix + "profiles"
        self.profiles_version = prefix + "profiles:v"
        self.health = prefix + "health"
        self.health_version = prefix + "health:v"
        self.live = prefix + "live"
        self.live_of = prefix + "live:of"
        self.changes = prefix + "changes"
        self.journal = prefix + "journal"
        self.journal_seq = prefix + "journal:seq"
        self.journal_base = prefix + "journal:base"
        self.sessions = prefix + "sessions"
        self.sessions_order = prefix + "sessions:order"
        self.sessions_seq = prefix + "sessions:seq"
        self.sessions_expiry = prefix + "sessions:expiry"
        self.counter = _DigestKeys(prefix + "c:")
        """The key of a round-robin counter key."""
        self.binding = _DigestKeys(prefix + "b:")
        """The key of a sticky binding's affinity key."""
        self.temporary = _DigestKeys(prefix + "t:")
        """The key of the temporary backend of a sticky binding's affinity key."""
        digest_glob = "[0-9a-f]" * 32
        self.routing_patterns = (
            _glob_escape(prefix + "c:") + digest_glob,
            _glob_escape(prefix + "b:") + digest_glob,
            _glob_escape(prefix + "t:") + digest_glob,
        )
        """``SCAN MATCH`` patterns of the counter, binding and temporary-backend keys (what
        :meth:`RedisStore.clear` forgets)."""

    @property
    def session_keys(self) -> list[str]:
        """The session keys, in the scripts' order (see ``lib.lua``)."""
        return [
            self.sessions,
            self.sessions_order,
            self.sessions_seq,
            self.sessions_expiry,
            self.live,
            self.live_of,
        ]
