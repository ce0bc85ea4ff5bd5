"""The supervisor: one_for_one restarts with a restart intensity, like an OTP supervisor.

It holds the store (the state) and each actor's mailbox for the router's whole life, so a
restarted actor finds its state and its queued messages where the crashed one left them,
plus the messages the crashed one had drained but not handled. More than ``max_restarts``
restarts within ``restart_period`` seconds and it gives up: every mailbox is closed with
:class:`beamrouting.RouterUnavailable` (answering everyone still waiting), and the
router's owner is told so it can cancel the code inside ``async with Router()``.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.abc
from anyio import BrokenResourceError, ClosedResourceError

from .._core._errors import BeamRoutingError, RouterClosed, RouterUnavailable
from .._store._protocol import Store
from . import _observability as _obs
from ._actor import Actor, ActorControl, ActorExit
from ._mailbox import Envelope, Mailbox

__all__ = ["Child", "Supervisor"]

_CLOSED_REASON = "the router is closed"


class Child:
    """One supervised actor: its class, its mailbox, and what survives its restarts."""

    __slots__ = ("actor_class", "carried", "control", "mailbox", "scope", "stopped")

    def __init__(self, actor_class: type[Actor[Any, Any]], mailbox: Mailbox) -> None:
        self.actor_class = actor_class
        self.mailbox = mailbox
        self.control = ActorControl(actor_class.name)
        self.carried: list[Envelope] = []
        """Messages a crashed incarnation drained but did not answer; the next one serves them first."""
        self.scope: anyio.CancelScope | None = None
        self.stopped: anyio.Event | None = None

    @property
    def name(self) -> str:
        """The actor's name (``"routing_table"``, ``"session_registry"``)."""
        return self.actor_class.name

    def close(self, error: type[BeamRoutingError], reason: str) -> None:
        """Close the mailbox with ``error`` and answer everything still waiting for this actor."""
        self.mailbox.close(error, reason)
        carried, self.carried = self.carried, []
        for _, slot in carried:
            self.mailbox.fail(slot, error(reason))


class Supervisor:
    """Starts the actors in order, restarts crashed ones (one_for_one), stops them in reverse order.

    ``run`` is the supervisor task; ``stop()`` asks it for an orderly shutdown;
    ``failure`` is set when it gave up, after which ``on_give_up`` has been called.
    """

    def __init__(
        self,
        store: Store,
        children: Sequence[Child],
        *,
        max_restarts: int,
        restart_period: float,
        on_give_up: Callable[[], None],
    ) -> None:
        self._store = store
        self.children = tuple(children)
        self._max_restarts = max_restarts
        self._restart_period = restart_period
        self._close_timeout = max(child.mailbox.timeout for child in children)
        self._on_give_up = on_give_up
        self._restarts: deque[float] = deque()
        self._signals, self._inbox = anyio.create_memory_object_stream[tuple[Child, ActorExit] | None](
            math.inf
        )
        self._task_group: anyio.abc.TaskGroup | None = None
        self._error: tuple[type[BeamRoutingError], str] = (RouterClosed, _CLOSED_REASON)
        self.failure: RouterUnavailable | None = None
        """Why the supervisor gave up, once it has."""

    def child(self, name: str) -> Child:
        """The child called ``name``."""
        for child in self.children:
            if child.name == name:
                return child
        names = ", ".join(repr(c.name) for c in self.children)
        raise ValueError(f"no actor named {name!r} (the actors are {names})")

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the store and the actors, supervise them until stopped, then stop everything.

        Reports started (for ``TaskGroup.start``) once every actor is running. Whatever
        ends it, every caller still waiting is answered before it returns.
        """
        try:
            await self._store.start()
            try:
                async with anyio.create_task_group() as tg:
                    self._task_group = tg
                    for child in self.children:
                        tg.start_soon(child.mailbox.run_deadlines, name=f"beamrouting {child.name} deadlines")
                        self._spawn(child)
                    task_status.started()
                    await self._supervise()
                    tg.cancel_scope.cancel()  # the deadline watchdogs
            finally:
                self._close_all()
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._close_timeout):
                    await self._store.aclose()
        finally:
            self._close_all()
            self._signals.close()
            self._inbox.close()

    def stop(self) -> None:
        """Ask for an orderly shutdown; calls from now on fail with :class:`RouterClosed`."""
        for child in reversed(self.children):
            child.mailbox.refuse(RouterClosed, _CLOSED_REASON)
        with contextlib.suppress(BrokenResourceError, ClosedResourceError):  # it has already ended
            self._signals.send_nowait(None)

    # -- internals ---------------------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        assert self._task_group is not None
        child.scope = anyio.CancelScope()
        child.stopped = anyio.Event()
        self._task_group.start_soon(self._run_child, child, name=f"beamrouting {child.name}")

    async def _run_child(self, child: Child) -> None:
        assert child.scope is not None and child.stopped is not None
        stopped = child.stopped
        carried, child.carried = child.carried, []
        try:
            with child.scope:
                actor = child.actor_class(child.mailbox, self._store, child.control)
                await actor.run(carried)
        except ActorExit as exit_:
            child.carried = exit_.leftovers
            try:
                self._signals.send_nowait((child, exit_))
            except (BrokenResourceError, ClosedResourceError):
                child.close(*self._error)  # the supervisor has ended: nobody will restart it
        finally:
            stopped.set()

    async def _supervise(self) -> None:
        async for signal in self._inbox:
            if signal is None:
                break
            child, exit_ = signal
            if child.mailbox.closed:
                continue  # crashed while being stopped: nothing to restart
            if self._too_many_restarts():
                self._give_up(child, exit_)
                break
            child.control.restarts += 1
            _obs.actor_restarted(child.name, exit_.__cause__, child.control.restarts)  # observability
            self._spawn(child)
        await self._stop_children()

    def _too_many_restarts(self) -> bool:
        now = anyio.current_time()
        restarts = self._restarts
        restarts.append(now)
        while restarts and restarts[0] <= now - self._restart_period:
            restarts.popleft()
        return len(restarts) > self._max_restarts

    def _give_up(self, child: Child, exit_: ActorExit) -> None:
        reason = (
            f"the router gave up: the {child.name} actor crashed more than {self._max_restarts} "
            f"time(s) within {self._restart_period} s"
        )
        failure = RouterUnavailable(reason)
        failure.__cause__ = exit_.__cause__
        self.failure = failure
        _obs.supervisor_gave_up(child.name, self._max_restarts, self._restart_period)  # observability
        self._error = (RouterUnavailable, reason)
        for each in reversed(self.children):
            each.close(RouterUnavailable, reason)
        self._on_give_up()

    async def _stop_children(self) -> None:
        """Stop the actors in reverse start order, answering their waiting callers."""
        error, reason = self._error
        for child in reversed(self.children):
            child.close(error, reason)
            if child.scope is not None and child.stopped is not None:
                child.scope.cancel()
                await child.stopped.wait()

    def _close_all(self) -> None:
        error, reason = self._error
        for child in reversed(self.children):
            child.close(error, reason)
