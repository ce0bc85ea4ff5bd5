"""The routing-table actor (owns sticky bindings, round-robin counters, profiles and the journal) and its client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from .._core._errors import UnknownBackend
from .._core._explain import Explanation
from .._core._health import BackendState, Outcome, check_outcome, check_reset
from .._core._profiles import PolicyProfile, check_profile_id, parse_profile
from .._core._request import RequestNormalizer, RouteRequest
from .._core._sessions import check_metadata, check_session_id
from .._core._settings import RoutingSettings
from .._core._types import JournalEvent, RouteDecision
from .._store._memory import MemoryStore
from .._store._protocol import (
    ClearOp,
    DeleteProfileOp,
    EnsureTablesOp,
    ExplainOp,
    PutProfileOp,
    ReadJournalOp,
    ReadStatesOp,
    ReconfigureOp,
    ReleaseOp,
    ReportOp,
    RestoreOp,
    RoutingOp,
    RoutingResult,
    SelectOp,
    Store,
)
from ._actor import Actor, ActorClient, ActorControl
from ._mailbox import Answer, Mailbox
from ._messages import (
    Clear,
    Deleted,
    DeleteProfile,
    EnsureTables,
    Events,
    Explain,
    Explained,
    GetJournal,
    GetStates,
    Ok,
    PutProfile,
    Reconfigure,
    Release,
    Released,
    Report,
    Restore,
    RoutingMessage,
    Select,
    State,
    States,
)

__all__ = ["RoutingTable", "RoutingTableClient"]


class RoutingTable(Actor[RoutingMessage, RoutingOp]):
    """Serves :data:`~._messages.RoutingMessage` from its store's routing half.

    Every message of a drained batch becomes a store operation, and the whole batch goes to
    :meth:`beamrouting.store.Store.routing_batch` in one call.
    """

    name: ClassVar[str] = "routing_table"
    message_type: ClassVar[Any] = RoutingMessage
    passthrough: ClassVar[type | None] = RouteDecision

    def __init__(self, mailbox: Mailbox, store: Store, control: ActorControl) -> None:
        super().__init__(mailbox, store, control)
        self._catalog = store.catalog
        self._normalizer = RequestNormalizer(store.catalog, store.limits)
        self._validate = self._normalizer.validate
        self._ok = self.encode(Ok())

    def operation(self, message: RoutingMessage) -> RoutingOp:
        """The operation ``message`` asks for; requests and profiles validated again."""
        if type(message) is Select:
            self._validate(message.request)
            session_id = message.session_id
            if session_id is None:
                return SelectOp(message.request)
            limits = self._normalizer.limits
            return SelectOp(
                message.request,
                check_session_id(session_id, limits),
                check_metadata(message.metadata, limits),
                message.exclusive,
            )
        match message:
            case Explain(request):
                self._validate(request)
                return ExplainOp(request)
            case Clear():
                return ClearOp()
            case EnsureTables():
                return EnsureTablesOp()
            case PutProfile(profile_id, profile):
                # Never trust the bytes: re-validate the profile as if it came from a user.
                return PutProfileOp(check_profile_id(profile_id), parse_profile(profile.to_dict()))
            case DeleteProfile(profile_id):
                return DeleteProfileOp(check_profile_id(profile_id))
            case GetJournal(event_type, limit):
                return ReadJournalOp(event_type, limit)
            case Report(backend, outcome, retry_at, retry_after):
                check_reset(retry_at, retry_after, 0.0)
                return ReportOp(self._backend(backend), check_outcome(outcome), retry_at, retry_after)
            case Restore(backend):
                return RestoreOp(self._backend(backend))
            case Release(affinity_key):
                return ReleaseOp(self._normalizer.affinity_key(affinity_key))
            case GetStates():
                return ReadStatesOp()
            case Reconfigure(settings):
                # Never trust the bytes: validate the settings again against the catalogue.
                return ReconfigureOp(settings.recheck(self._catalog))
        raise AssertionError(f"unhandled message {message!r}")

    def _backend(self, name: str) -> str:
        canonical = self._catalog.canonical(name)
        if canonical is None:
            raise UnknownBackend(name)
        return canonical

    def repeats(self, op: RoutingOp) -> bool:
        """A selection without an affinity key or a session comes again, byte for byte."""
        return type(op) is SelectOp and op.session_id is None and op.request.affinity_key is None

    def store_call(self) -> Callable[[Sequence[RoutingOp]], Awaitable[list[RoutingResult]]]:
        """:meth:`beamrouting.store.Store.routing_batch`."""
        return self.store.routing_batch

    def apply_now(self) -> Callable[[RoutingOp], RoutingResult] | None:
        """:meth:`beamrouting.MemoryStore.apply_routing` on an in-memory store, else ``None``.

        Not when the store has a ``routing_batch`` of its own (a subclass's, or one set on
        the instance), which must see every batch.
        """
        store = self.store
        if (
            isinstance(store, MemoryStore)
            and type(store).routing_batch is MemoryStore.routing_batch
            and "routing_batch" not in vars(store)
        ):
            return store.apply_routing
        return None

    def reply(self, op: RoutingOp, result: Any) -> Answer:
        """A decision as it is (immutable); every other reply encoded."""
        if type(result) is RouteDecision and type(op) is SelectOp:
            return result
        match op:
            case ClearOp() | EnsureTablesOp() | PutProfileOp() | ReconfigureOp() if result is None:
                return self._ok
            case DeleteProfileOp() if type(result) is bool:
                return self.encode(Deleted(result))
            case ReadJournalOp() if type(result) is list:
                return self.encode(Events(result))
            case ExplainOp() if type(result) is Explanation:
                return self.encode(Explained(result))
            case ReportOp() | RestoreOp() if type(result) is BackendState:
                return self.encode(State(result))
            case ReleaseOp() if type(result) is bool:
                return self.encode(Released(result))
            case ReadStatesOp() if type(result) is list:
                return self.encode(States(result))
        raise TypeError(f"the store answered {result!r} to {op!r}")


class RoutingTableClient(ActorClient):
    """The caller's side of the routing-table actor; arguments arrive validated."""

    __slots__ = ()

    def select_message(self, request: RouteRequest) -> bytes:
        """The message that routes ``request`` (encoded)."""
        return self.encode(Select(request))

    async def select(self, request: RouteRequest) -> RouteDecision:
        """Route a normalised request; raise the error the actor answers."""
        answer = await self.call(self.encode(Select(request)))
        if type(answer) is RouteDecision:
            return answer
        raise self.error(answer)

    async def select_session(
        self, request: RouteRequest, session_id: str, metadata: dict[str, Any], *, exclusive: bool
    ) -> RouteDecision:
        """Route a normalised request and register the session on the chosen backend, in one step."""
        answer = await self.call(self.encode(Select(request, session_id, metadata, exclusive)))
        if type(answer) is RouteDecision:
            return answer
        raise self.error(answer)

    async def explain(self, request: RouteRequest) -> Explanation:
        """Explain a normalised request."""
        return (await self.ask(Explain(request), Explained)).explanation

    async def clear(self) -> None:
        """Forget bindings and counters."""
        await self.ask(Clear(), Ok)

    async def ensure_tables(self) -> None:
        """Make sure the store's tables exist."""
        await self.ask(EnsureTables(), Ok)

    async def reconfigure(self, settings: RoutingSettings) -> None:
        """Apply ``settings`` in one step (:class:`beamrouting.store.ReconfigureOp`)."""
        await self.ask(Reconfigure(settings), Ok)

    async def put_profile(self, profile_id: str, profile: PolicyProfile) -> None:
        """Store a parsed profile."""
        await self.ask(PutProfile(profile_id, profile), Ok)

    async def delete_profile(self, profile_id: str) -> bool:
        """Remove a profile; whether it existed."""
        return (await self.ask(DeleteProfile(profile_id), Deleted)).existed

    async def journal(self, event_type: str | None, limit: int | None) -> list[JournalEvent]:
        """The newest journal events."""
        return (await self.ask(GetJournal(event_type, limit), Events)).events

    async def report(
        self, backend: str, outcome: Outcome, retry_at: float | None, retry_after: float | None
    ) -> BackendState:
        """Report an outcome; the backend's state after."""
        return (await self.ask(Report(backend, outcome, retry_at, retry_after), State)).state

    async def restore(self, backend: str) -> BackendState:
        """Forget what was learned about a backend; its state after."""
        return (await self.ask(Restore(backend), State)).state

    async def release(self, affinity_key: str) -> bool:
        """Forget a sticky binding; whether there was one."""
        return (await self.ask(Release(affinity_key), Released)).existed

    async def states(self) -> list[BackendState]:
        """Every backend's state."""
        return (await self.ask(GetStates(), States)).states
