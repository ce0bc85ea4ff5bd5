"""The Redis key layout of one deployment: every key a :class:`RedisStore` touches, under its prefix.

=============================  ========  ==============================================
key                            type      holds
=============================  ========  ==============================================
``<prefix>c:<digest>``         string    a round-robin counter (``INCRBY``)
``<prefix>b:<digest>``         string    a sticky binding: the bound backend's name
``<prefix>profiles``           hash      policy profile id -> JSON document
``<prefix>journal``            stream    journal records (``s``: sequence, ``r``: record)
``<prefix>journal:seq``        string    the fleet's last journal event sequence
``<prefix>journal:base``       string    the random origin of event ids
``<prefix>sessions``           hash      session id -> msgpack-encoded handle
``<prefix>sessions:order``     zset      session id -> registration sequence
``<prefix>sessions:seq``       string    the last registration sequence
``<prefix>sessions:expiry``    zset      session id -> deadline (ms), with ``session_ttl``
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
        "counter",
        "journal",
        "journal_base",
        "journal_seq",
        "prefix",
        "profiles",
        "routing_patterns",
        "sessions",
        "sessions_expiry",
        "sessions_order",
        "sessions_seq",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.profiles = prefix + "profiles"
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
        digest_glob = "[0-9a-f]" * 32
        self.routing_patterns = (
            _glob_escape(prefix + "c:") + digest_glob,
            _glob_escape(prefix + "b:") + digest_glob,
        )
        """``SCAN MATCH`` patterns of the counter and binding keys (what :meth:`RedisStore.clear` forgets)."""

    @property
    def session_keys(self) -> list[str]:
        """The keys of the sessions script, in its order."""
        return [self.sessions, self.sessions_order, self.sessions_seq, self.sessions_expiry]
