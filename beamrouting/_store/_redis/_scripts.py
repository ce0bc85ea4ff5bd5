"""The Lua scripts of the Redis store, shipped as package data (``*.lua`` beside this module).

Each script's header comment documents its keys, arguments and answer.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["COMMIT", "SESSIONS", "STATE", "source"]

STATE = "state.lua"
"""Advance the counters and read the bindings and profiles a batch of selections needs."""
COMMIT = "commit.lua"
"""Bind (compare-and-set) and journal a batch of decisions, atomically."""
SESSIONS = "sessions.lua"
"""Apply a batch of session operations, atomically and in order."""


@cache
def source(name: str) -> str:
    """The text of the script ``name`` (one of the names above)."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")
