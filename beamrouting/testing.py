"""Test helpers for code that embeds a :class:`~beamrouting.Router`.

These reach into the router's supervision on purpose; do not use them in production code.
"""

from __future__ import annotations

from typing import Literal

from ._core._errors import RouterClosed
from ._runtime._router import Router

__all__ = ["crash_actor"]


def crash_actor(router: Router, actor: Literal["routing_table", "session_registry"]) -> None:
    """Make ``actor`` crash on the next message it handles.

    The caller of that message gets :class:`~beamrouting.ActorCrashed`; the supervisor
    restarts the actor with its state and the restarted actor serves every other message,
    unless the restart intensity is exceeded. It returns at once (it does not wait for the
    crash). Raises :class:`~beamrouting.RouterClosed` if
    the router is not running and :class:`ValueError` for an unknown actor name.
    """
    supervisor = router._supervisor
    if supervisor is None:
        raise RouterClosed("the router is not running")
    supervisor.child(actor).control.crash_next = True
