"""Actor mailboxes: a backend-agnostic base and one implementation per async backend.

The implementation is chosen once per router, by backend name, the way anyio chooses its
backend: :func:`mailbox_class` imports ``._<name>`` on first use and caches its
``mailbox_class``. Only the running backend's module is ever imported, so trio stays an
optional dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import import_module

from ._base import Answer, Envelope, Mailbox

__all__ = ["BACKENDS", "Answer", "Envelope", "Mailbox", "MailboxFactory", "mailbox_class"]

BACKENDS = ("asyncio", "trio")
"""The backends a router runs on (uvloop runs the asyncio backend)."""


MailboxFactory = Callable[[str, int, float], Mailbox]
"""Builds a mailbox from the actor's name, the mailbox size and the call timeout."""


@cache
def mailbox_class(backend: str) -> MailboxFactory:
    """The :class:`Mailbox` implementation for ``backend`` (one of :data:`BACKENDS`).

    Raises :class:`RuntimeError` for another backend.
    """
    if backend not in BACKENDS:
        raise RuntimeError(f"beamrouting's Router runs on asyncio, uvloop or trio, not {backend!r}")
    implementation: MailboxFactory = import_module(f"._{backend}", __package__).mailbox_class
    return implementation
