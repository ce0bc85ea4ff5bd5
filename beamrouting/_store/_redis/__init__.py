"""The Redis store: routing state shared by a fleet of orchestrator processes.

Imported only when :class:`RedisStore` is first used (``beamrouting.RedisStore`` is loaded
lazily), so ``import beamrouting`` never imports redis-py.
"""

from ._store import DEFAULT_IDLE_TTL, DEFAULT_OPERATION_TIMEOUT, RedisStore

__all__ = ["DEFAULT_IDLE_TTL", "DEFAULT_OPERATION_TIMEOUT", "RedisStore"]
