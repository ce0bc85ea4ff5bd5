"""The Lua scripts of the Redis store, shipped as package data (``*.lua`` beside this module).

Each script's header comment documents its keys, arguments and answer. Every script is
loaded as ``lib.lua`` (the functions they share) followed by its own text.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["COMMIT", "PROFILES", "SCRIPTS", "SESSIONS", "STATE", "source"]

STATE = "state.lua"
"""Check what a batch of selections was planned with; advance its counters and read its bindings."""
COMMIT = "commit.lua"
"""Apply what a batch decided (learned state, bindings, sessions, probe slots) and journal it, atomically."""
SESSIONS = "sessions.lua"
"""Apply a batch of session operations, atomically and in order."""
PROFILES = "profiles.lua"
"""Store or delete a policy profile and bump the profiles' version."""
SCRIPTS = (STATE, COMMIT, SESSIONS, PROFILES)
_LIBRARY = "lib.lua"


@cache
def source(name: str) -> str:
    """The text of the script ``name`` (one of the names above), the shared library first."""
    folder = files(__package__)
    return folder.joinpath(_LIBRARY).read_text(encoding="utf-8") + folder.joinpath(name).read_text(
        encoding="utf-8"
    )
