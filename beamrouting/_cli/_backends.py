"""The async backends a program of this package runs on, by the names its options use."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar, TypeVarTuple

import anyio

__all__ = ["BACKENDS", "MissingBackend", "default_backend", "installed", "require", "run_on"]

BACKENDS: Final[tuple[str, ...]] = ("asyncio", "uvloop", "trio")

_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


class MissingBackend(LookupError):
    """An async backend was asked for whose package is not installed (the message says what to install)."""


_PACKAGES: Final = {"uvloop": "uvloop", "trio": "trio"}
_INSTALL: Final = {
    "uvloop": "pip install uvloop (it is not available on Windows)",
    "trio": "pip install 'beamrouting[trio]'",
}


def installed(backend: str) -> bool:
    """Whether ``backend`` can run here (asyncio always can)."""
    package = _PACKAGES.get(backend)
    if package is None:
        return True
    if backend == "uvloop" and sys.platform == "win32":
        return False
    return importlib.util.find_spec(package) is not None


def require(backend: str) -> str:
    """``backend`` if it can run here; else :class:`MissingBackend` naming the command to install it."""
    if not installed(backend):
        raise MissingBackend(f"the {backend} backend is not installed: {_INSTALL[backend]}")
    return backend


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
