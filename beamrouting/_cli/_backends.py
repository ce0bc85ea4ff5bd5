"""The async backends a program of this package runs on, by the names its options use."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar, TypeVarTuple

import anyio

__all__ = ["BACKENDS", "default_backend", "run_on"]

BACKENDS: Final[tuple[str, ...]] = ("asyncio", "uvloop", "trio")

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


def default_backend() -> str:
    """uvloop where it exists, else asyncio."""
    if sys.platform == "win32":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_on(backend: str, func: Callable[[*_Args], Awaitable[_T]], *args: *_Args) -> _T:
    """``anyio.run(func, *args)`` on ``backend``: one of :data:`BACKENDS` (uvloop is asyncio's option)."""
    if backend == "uvloop":
        return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(func, *args, backend=backend)
