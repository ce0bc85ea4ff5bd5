"""The operator's commands, against a fleet's Redis: ``states``, ``report``, ``restore``, ``release``, ``watch``.

They act on the state every router sharing the Redis store sees: what one operator reports
or restores, every process routes by. They never change the fleet's policy profiles.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import anyio
import msgspec

from beamrouting import (
    BackendState,
    BeamRoutingError,
    Config,
    ConfigError,
    JournalEvent,
    Router,
    RoutingSettings,
    Subscription,
    SubscriptionGap,
)

from ._argtypes import positive_float, positive_int
from ._common import EXIT_OK, PROG, UsageError, config_from_args
from ._console import Output

__all__ = ["FLEET_COMMANDS", "add_fleet_commands"]

_T = TypeVar("_T")
_WINDOW: Final = 10.0
"""Seconds the watch view's rates are measured over."""
_RECENT: Final = 12
"""Events the watch view shows."""


def add_fleet_commands(command: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    """Add the operator's commands with ``command(name, summary, description)``."""

    def fleet(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        parser = command(name, summary, description + " Acts on a fleet's Redis (--redis, or --config).")
        parser.add_argument(
            "--redis", metavar="URL", help="the fleet's Redis (default: the --config file's store)"
        )
        return parser

    states = fleet(
        "states",
        "each backend's status, deadline, live sessions and limit across the fleet",
        "Show what the fleet knows of every backend: its status (healthy, cooling, ejected, "
        "probing), until when, why, its live sessions and its limit.",
    )
    states.add_argument("--json", action="store_true", help="print the states as JSON")

    report = fleet(
        "report",
        "report an outcome for a backend (cool it down, count a failure)",
        "Report what became of a session on BACKEND, as an orchestrator would: 'quota' cools it "
        "down until its reset, 'failure' counts towards an ejection, 'success' clears failures, "
        "'rejected' changes nothing.",
    )
    report.add_argument("backend", metavar="BACKEND", help="the backend (any accepted spelling)")
    report.add_argument(
        "outcome", metavar="OUTCOME", choices=("success", "failure", "quota", "rejected"), help="%(choices)s"
    )
    reset = report.add_mutually_exclusive_group()
    reset.add_argument("--retry-after", type=positive_float, metavar="S", help="a quota resets in S seconds")
    reset.add_argument(
        "--retry-at",
        type=_moment,
        metavar="T",
        help="a quota resets at T (UNIX seconds, or ISO 8601 such as 2026-12-02T18:00:00Z)",
    )
    report.add_argument("--json", action="store_true", help="print the backend's state as JSON")

    restore = fleet(
        "restore",
        "forget what was learned about a backend (an operator's override)",
        "Make BACKEND healthy again at once: forget its cooldown, ejection and failures.",
    )
    restore.add_argument("backend", metavar="BACKEND", help="the backend (any accepted spelling)")
    restore.add_argument("--json", action="store_true", help="print the backend's state as JSON")

    release = fleet(
        "release",
        "forget an affinity key's sticky binding",
        "Forget AFFINITY_KEY's sticky binding (and any temporary backend), so its next session routes afresh.",
    )
    release.add_argument("affinity_key", metavar="AFFINITY_KEY", help="the sticky affinity key")
    release.add_argument("--json", action="store_true", help="print the result as JSON")

    watch = fleet(
        "watch",
        "the fleet's decisions and health changes, live",
        "Follow the fleet's journal: a live view of each backend's status and decision rate "
        "and the recent events; with --plain, one line per event.",
    )
    watch.add_argument("--count", type=positive_int, metavar="N", help="stop after N events")
    watch.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")


def _moment(text: str) -> float:
    """``--retry-at``: UNIX seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not UNIX seconds or an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _fleet_config(args: argparse.Namespace) -> Config:
    """The configuration of an operator's command: a Redis store, and no policy profiles to put."""
    config = config_from_args(args)
    if config.store.kind != "redis":
        raise UsageError(
            f"'{args.command}' acts on a fleet's Redis: give --redis URL, or --config FILE whose [store] is Redis"
        )
    settings = config.settings
    try:
        return Config(
            config.catalog,
            RoutingSettings({}, settings.health, settings.limits, settings.weights),
            config.store,
            config.router,
            config.source,
        )
    except ConfigError as exc:  # pragma: no cover - the same settings passed before
        raise UsageError(str(exc)) from None


def _on_fleet(args: argparse.Namespace, work: Callable[[Router], Any]) -> Any:
    """Run ``await work(router)`` on a router sharing the fleet's Redis store."""
    config = _fleet_config(args)
    try:
        router = Router.from_config(config)
    except ImportError:
        raise UsageError(
            "the fleet's commands need the redis extra: pip install 'beamrouting[redis]'"
        ) from None
    except ConfigError as exc:
        raise UsageError(f"bad configuration: {exc}") from None

    async def run() -> Any:
        async with router:
            return await work(router)

    return anyio.run(run)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # a time no date can show: its number
        return f"{seconds!r}"


def _state_rows(states: Sequence[BackendState]) -> list[tuple[str, ...]]:
    return [
        (
            s.backend,
            s.status.value,
            _when(s.until),
            s.reason or "-",
            str(s.consecutive_failures),
            str(s.live_sessions),
            "-" if s.limit is None else str(s.limit),
        )
        for s in states
    ]


_STATE_HEADERS: Final = ("backend", "status", "until", "reason", "failures", "live", "limit")


def _print_states(out: Output, states: Sequence[BackendState], title: str, as_json: bool) -> None:
    if as_json:
        data = msgspec.to_builtins(list(states))
        print(json.dumps(data if len(states) != 1 or title == "Backends" else data[0]), file=out.stdout)
        return
    out.table(_STATE_HEADERS, _state_rows(states), title=title, right=(4, 5, 6))


def cmd_states(args: argparse.Namespace, out: Output) -> int:
    """``beamrouting states``."""

    async def work(router: Router) -> tuple[BackendState, ...]:
        return await router.backend_states()

    _print_states(out, _on_fleet(args, work), "Backends", args.json)
    return EXIT_OK


def cmd_report(args: argparse.Namespace, out: Output) -> int:
    """``beamrouting report BACKEND OUTCOME``."""

    async def work(router: Router) -> BackendState:
        reported = await router.report(
            args.backend, args.outcome, retry_at=args.retry_at, retry_after=args.retry_after
        )
        return await _with_capacity(router, reported)

    _print_states(out, [_on_fleet(args, work)], f"Reported {args.outcome}", args.json)
    return EXIT_OK


async def _with_capacity(router: Router, state: BackendState) -> BackendState:
    """``state`` as the fleet's states show it, live sessions and limit included (a report's answer has neither)."""
    for current in await router.backend_states():
        if current.backend == state.backend:
            return current
    return state  # pragma: no cover - every catalogue backend has a state


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    """``beamrouting restore BACKEND``."""

    async def work(router: Router) -> BackendState:
        return await _with_capacity(router, await router.restore(args.backend))

    _print_states(out, [_on_fleet(args, work)], "Restored", args.json)
    return EXIT_OK


def cmd_release(args: argparse.Namespace, out: Output) -> int:
    """``beamrouting release AFFINITY_KEY``."""

    async def work(router: Router) -> bool:
        return await router.release(args.affinity_key)

    released = _on_fleet(args, work)
    if args.json:
        print(json.dumps({"affinity_key": args.affinity_key, "released": released}), file=out.stdout)
    else:
        out.line(
            f"released {args.affinity_key!r}" if released else f"{args.affinity_key!r} had no sticky binding"
        )
    return EXIT_OK


# --------------------------------------------------------------------------- watch


def describe(event: JournalEvent) -> str | None:
    """One line for a journal event (``None`` for a decision's ``allow`` audit, which repeats it)."""
    payload = event.payload
    stamp = datetime.fromtimestamp(event.timestamp / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    kind = event.event_type
    if kind == "routing_selected":
        decision = payload.get("decision", {})
        key = decision.get("affinity_key")
        text = f"decision {decision.get('backend')} by {decision.get('policy')}" + (
            f" for {key}" if key else ""
        )
    elif kind == "audit":
        if payload.get("decision") == "allow":
            return None
        text = f"denied {payload.get('backend')}: {payload.get('reason')}"
        if payload.get("profile_id"):
            text += f" (profile {payload['profile_id']})"
    elif kind == "outcome":
        text = f"outcome {payload.get('backend')} {payload.get('outcome')}"
        if payload.get("retry_at") is not None:
            text += f" until {_when(payload['retry_at'])}"
    elif kind == "backend_health":
        text = f"health {payload.get('backend')} {payload.get('status')}"
        if payload.get("until") is not None:
            text += f" until {_when(payload['until'])}"
        if payload.get("reason"):
            text += f" ({payload['reason']})"
    else:
        text = f"{kind} {json.dumps(payload, sort_keys=True)}"
    return f"{stamp} {text}"


class _View:
    """What the live view shows: backend states, decision rates and recent events."""

    def __init__(self, backends: Sequence[str]) -> None:
        self.backends = tuple(backends)
        self.states: dict[str, BackendState] = {}
        self.decisions: dict[str, deque[float]] = {b: deque() for b in backends}
        self.totals: dict[str, int] = dict.fromkeys(backends, 0)
        self.recent: deque[str] = deque(maxlen=_RECENT)
        self.events = 0
        self.lost = 0
        self.started = time.monotonic()

    def add(self, event: JournalEvent, line: str) -> None:
        self.events += 1
        self.recent.append(line)
        if event.event_type == "routing_selected":
            backend = event.payload.get("decision", {}).get("backend")
            if backend in self.decisions:
                self.decisions[backend].append(time.monotonic())
                self.totals[backend] += 1

    def rate(self, backend: str, now: float) -> float:
        stamps = self.decisions[backend]
        while stamps and stamps[0] < now - _WINDOW:
            stamps.popleft()
        return len(stamps) / min(_WINDOW, max(now - self.started, 1.0))

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        table = Table(
            title=Text(f"Backends (decisions per second over the last {_WINDOW:.0f} s)"), title_justify="left"
        )
        for header, justify in (
            ("backend", "left"),
            ("status", "left"),
            ("until", "left"),
            ("live", "right"),
            ("limit", "right"),
            ("decisions/s", "right"),
            ("decisions", "right"),
        ):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        for backend in self.backends:
            state = self.states.get(backend)
            status = "?" if state is None else state.status.value
            style = {"healthy": "green", "probing": "yellow"}.get(status, "red" if state else "")
            table.add_row(
                Text(backend),
                Text(status, style=style),
                Text(_when(state.until) if state else "-"),
                Text("-" if state is None else str(state.live_sessions)),
                Text("-" if state is None or state.limit is None else str(state.limit)),
                Text(f"{self.rate(backend, now):,.1f}"),
                Text(f"{self.totals[backend]:,}"),
            )
        lost = f", {self.lost:,} lost" if self.lost else ""
        events = Table(
            title=Text(f"Recent events ({self.events:,} seen{lost})"), title_justify="left", show_header=False
        )
        events.add_column("event")
        for line in self.recent:
            events.add_row(Text(line))
        return Group(table, events)


def cmd_watch(args: argparse.Namespace, out: Output) -> int:
    """``beamrouting watch``."""
    limit: int | None = args.count
    duration = float("inf") if args.duration is None else args.duration

    async def follow(events: Subscription, view: _View | None) -> None:
        seen = 0
        async for item in events:
            if isinstance(item, SubscriptionGap):
                if view is None:
                    print(f"... {item.missed} events lost", file=out.stdout, flush=True)
                else:
                    view.lost += item.missed
                continue
            line = describe(item)
            if line is None:
                continue
            seen += 1
            if view is None:
                print(line, file=out.stdout, flush=True)
            else:
                view.add(item, line)
            if limit is not None and seen >= limit:
                return

    async def work(router: Router) -> None:
        with anyio.move_on_after(duration):
            async with router.subscribe() as events:
                if not out.rich:
                    await follow(events, None)
                    return
                view = _View(router.catalog.backends)
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_redraw, router, view, out)
                        await follow(events, view)
                        tg.cancel_scope.cancel()
                except BaseExceptionGroup as group:  # one failure (the store's): raise it as it is
                    raise group.exceptions[0] if len(group.exceptions) == 1 else group from None

    if out.rich:
        out.line(f"{PROG} watch: following the fleet's journal (Ctrl-C to stop)")
    _on_fleet(args, work)
    return EXIT_OK


async def _redraw(router: Router, view: _View, out: Output) -> None:
    """Keep the live view's backend states fresh and redraw it, until cancelled."""
    from rich.live import Live

    with Live(get_renderable=view.render, console=out.console, refresh_per_second=4):
        while True:
            with contextlib.suppress(BeamRoutingError):  # unreachable for now: keep the last states
                view.states = {state.backend: state for state in await router.backend_states()}
            await anyio.sleep(0.5)


FLEET_COMMANDS: Final = {
    "states": cmd_states,
    "report": cmd_report,
    "restore": cmd_restore,
    "release": cmd_release,
    "watch": cmd_watch,
}
"""The operator's commands by name."""
