"""Which async library runs the calling code: the one place the package asks."""

from __future__ import annotations

import asyncio
import sys
from typing import Literal

__all__ = ["current_async_library"]


def current_async_library() -> Literal["asyncio", "trio"] | None:
    """``"asyncio"`` (uvloop included) or ``"trio"`` when called from a running event loop, else ``None``."""
    trio = sys.modules.get("trio")
    if trio is not None:  # trio is imported by whoever runs it, so an absent module means "not trio"
        try:
            trio.lowlevel.current_task()
        except RuntimeError:
            pass
        else:
            return "trio"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return "asyncio"
