"""Helpers shared by the test-suite: paths, anyio backends, scenario data, the scenario
runner, test gates and condition polling.

Nothing here waits a fixed time for state to change: ``wait_for`` and ``wait_until`` poll a
condition and give up after a timeout.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import pytest

__all__ = [
    "ANYIO_BACKENDS",
    "ASYNCIO_BACKENDS",
    "BACKENDS",
    "REPO_ROOT",
    "SCENARIO_PROFILES",
    "UNUSED_FILTER_PROFILE",
    "FakeClock",
    "Gate",
    "Scenario",
    "ScenarioMismatch",
    "every_feature",
    "format_mismatches",
    "load_scenarios",
    "profiles_for_scenarios",
    "record_batch_sizes",
    "require_scenario",
    "run_scenario",
    "run_scenario_async",
    "scenario_params",
    "scenarios_path",
    "settle_into",
    "wait_for",
    "wait_until",
]

REPO_ROOT: Final[Path] = Path(__file__).resolve().parents[1]
"""The repository's root (the folder holding ``beamrouting/`` and ``tests/``)."""

BACKENDS: Final[tuple[str, ...]] = ("claude", "codex", "copilot", "gemini", "opencode")
"""The default catalogue's backends, in available order."""

_SCENARIO_FILE: Final = "reference_scenarios.jsonl"


# --------------------------------------------------------------------------- anyio backends

_NO_UVLOOP: Final = sys.platform == "win32"

ASYNCIO_BACKENDS: Final[list[Any]] = [
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="uvloop",
        marks=pytest.mark.skipif(_NO_UVLOOP, reason="uvloop does not exist on Windows"),
    ),
]
"""asyncio and uvloop: what a test that needs the Redis store runs on (``anyio_backend`` params)."""

ANYIO_BACKENDS: Final[list[Any]] = [*ASYNCIO_BACKENDS, pytest.param(("trio", {}), id="trio")]
"""asyncio, uvloop and trio: what every other async test runs on (``anyio_backend`` params)."""


# --------------------------------------------------------------------------- scenario data


def scenarios_path() -> Path:
    """Where the reference scenarios live.

    ``BEAMROUTING_SCENARIOS`` (a ``.jsonl`` file or the directory holding
    ``reference_scenarios.jsonl``) wins; otherwise ``<repo>/../shared/scenarios``.
    """
    override = os.environ.get("BEAMROUTING_SCENARIOS")
    if override:
        path = Path(override).expanduser()
        return path / _SCENARIO_FILE if path.is_dir() else path
    return REPO_ROOT.parent / "shared" / "scenarios" / _SCENARIO_FILE


Scenario = dict[str, Any]


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    """Every scenario of the jsonl file, in file order (blank lines ignored)."""
    path = scenarios_path() if path is None else path
    scenarios: list[Scenario] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            scenario = json.loads(line)
            if not isinstance(scenario, dict) or "id" not in scenario or "steps" not in scenario:
                raise ValueError(f"{path}:{number}: not a scenario (needs 'id' and 'steps')")
            scenarios.append(scenario)
    return scenarios


def scenario_params() -> list[Any]:
    """One ``pytest.param`` per reference scenario (its id as the test id), for ``parametrize``.

    When the file is missing: one ``None`` case (``scenarios-missing``), which
    :func:`require_scenario` fails, instead of silently collecting nothing.
    """
    path = scenarios_path()
    if not path.is_file():
        # One failing case instead of silently collecting nothing.
        return [pytest.param(None, id="scenarios-missing")]
    return [pytest.param(scenario, id=scenario["id"]) for scenario in load_scenarios(path)]


def require_scenario(scenario: Scenario | None) -> Scenario:
    """The scenario of a :func:`scenario_params` case; fails the test when the file is missing."""
    if scenario is None:
        pytest.fail(
            f"reference scenarios not found at {scenarios_path()} (set BEAMROUTING_SCENARIOS)",
            pytrace=False,
        )
    return scenario


def _deny(backend: str) -> dict[str, Any]:
    return {
        "default": "allow",
        "rules": [
            {
                "action": "backend",
                "decision": "deny",
                "match": ["eq", "backend", backend],
                "reason": f"{backend} backend blocked",
            }
        ],
    }


SCENARIO_PROFILES: Final[Mapping[str, Mapping[str, Any]]] = {
    **{f"deny-{backend}": _deny(backend) for backend in BACKENDS},
    "allow-all": {"default": "allow"},
    "team-a": {"default": "allow"},
    "default-deny": {"default": "deny"},
}
"""The policy profiles every scenario runs with (section 11 of the contract)."""


def profiles_for_scenarios() -> Iterator[tuple[str, dict[str, Any]]]:
    """``(profile_id, profile)`` pairs to store before a scenario runs (fresh copies)."""
    for profile_id, profile in SCENARIO_PROFILES.items():
        yield profile_id, json.loads(json.dumps(profile))


def every_feature() -> dict[str, Any]:
    """Engine and router options that switch every optional feature on without reporting anything.

    Learning (the default ``HealthPolicy``), a generous limit and a weight for every backend;
    :func:`store_unused_filter_profile` adds a filtering profile no scenario names. With
    nothing reported, no limit reached and no request naming that profile, every decision
    must still be the reference engine's.
    """
    from beamrouting import HealthPolicy

    return {
        "health": HealthPolicy(),
        "limits": dict.fromkeys(BACKENDS, 10_000),
        "weights": {backend: weight for weight, backend in enumerate(BACKENDS, start=1)},
    }


UNUSED_FILTER_PROFILE: Final[tuple[str, dict[str, Any]]] = (
    "filter-no-scenario-names",
    {
        "default": "allow",
        "mode": "filter",
        "rules": [{"action": "backend", "decision": "deny", "match": ["eq", "backend", "claude"]}],
    },
)
"""A filtering profile stored beside the scenarios' own, which no scenario names."""


# --------------------------------------------------------------------------- scenario runner


@dataclass(frozen=True)
class ScenarioMismatch:
    """One step whose outcome differs from the scenario's expectation."""

    step: int
    call: str
    inputs: dict[str, Any]
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return (
            f"step {self.step} ({self.call}) with {json.dumps(self.inputs, sort_keys=True)}\n"
            f"    expected: {json.dumps(self.expected, sort_keys=True)}\n"
            f"    actual:   {json.dumps(self.actual, sort_keys=True, default=repr)}"
        )


def _outcome_of_error(exc: BaseException) -> dict[str, Any]:
    return {"error": {"code": getattr(exc, "code", None), "detail": getattr(exc, "detail", None)}}


def _step_inputs(step: Mapping[str, Any]) -> dict[str, Any]:
    return {key: step[key] for key in ("session_or_opts", "request") if key in step}


def _check(
    index: int, step: Mapping[str, Any], actual: dict[str, Any], mismatches: list[ScenarioMismatch]
) -> None:
    expected = step["expect"]
    if actual != expected:
        mismatches.append(ScenarioMismatch(index, step["call"], _step_inputs(step), expected, actual))


def _is_skipped(step: Mapping[str, Any]) -> bool:
    return "skip" in step


def _runnable(step: Mapping[str, Any]) -> bool:
    """A skipped step still runs when it carries its inputs (it may move state)."""
    if step["call"] == "clear":
        return True
    return "request" in step


def run_scenario(
    scenario: Scenario,
    select: Callable[[Any], Any],
    select2: Callable[[Any, Any], Any],
    clear: Callable[[], Any],
) -> list[ScenarioMismatch]:
    """Run every step of ``scenario`` and return the steps whose outcome differs.

    ``select(request)`` and ``select2(session_or_opts, request)`` return a decision (anything
    with ``to_dict()``) or raise a ``RoutingError``; ``clear()`` returns ``None``. Steps marked
    ``skip`` run when they carry a request (a ``RoutingError`` is ignored) but are not
    compared; any other exception propagates, since no input may crash the router.
    """

    async def call(function: Callable[..., Any], *args: Any) -> Any:
        return function(*args)

    # The async runner over synchronous calls never suspends: one send() runs it to the end.
    run = run_scenario_async(
        scenario,
        lambda request: call(select, request),
        lambda opts, request: call(select2, opts, request),
        lambda: call(clear),
    )
    try:
        run.send(None)
    except StopIteration as finished:
        mismatches: list[ScenarioMismatch] = finished.value
        return mismatches
    run.close()
    raise RuntimeError("a synchronous scenario run suspended")


async def run_scenario_async(
    scenario: Scenario,
    select: Callable[[Any], Awaitable[Any]],
    select2: Callable[[Any, Any], Awaitable[Any]],
    clear: Callable[[], Awaitable[Any]],
) -> list[ScenarioMismatch]:
    """:func:`run_scenario` for an async router (``await select(request)`` and so on)."""
    from beamrouting import RoutingError

    mismatches: list[ScenarioMismatch] = []
    calls: dict[str, Callable[..., Any]] = {
        "select_backend": select,
        "select_backend/2": select2,
        "clear": clear,
    }
    for index, step in enumerate(scenario["steps"]):
        if not _runnable(step):
            continue
        function, args, answer = _step_call(scenario, step, calls)
        try:
            actual = answer(await function(*args))
        except RoutingError as exc:
            actual = _outcome_of_error(exc)
        if not _is_skipped(step):
            _check(index, step, actual, mismatches)
    return mismatches


def _step_call(
    scenario: Scenario, step: Mapping[str, Any], calls: Mapping[str, Callable[..., Any]]
) -> tuple[Callable[..., Any], tuple[Any, ...], Callable[[Any], dict[str, Any]]]:
    """What a step calls, with which arguments, and how its result reads as an outcome."""
    call = step["call"]
    if call not in calls:
        raise ValueError(f"scenario {scenario['id']}: unknown call {call!r}")
    if call == "clear":
        return calls[call], (), lambda result: {"return": result}
    args = (step["request"],) if call == "select_backend" else (step["session_or_opts"], step["request"])
    return calls[call], args, lambda decision: {"ok": decision.to_dict()}


def format_mismatches(scenario: Scenario, mismatches: list[ScenarioMismatch]) -> str:
    """A readable failure message for a scenario's mismatching steps."""
    lines = [f"scenario {scenario['id']} ({scenario.get('description', '')}):"]
    lines.extend(str(mismatch) for mismatch in mismatches)
    return "\n".join(lines)


# --------------------------------------------------------------------------- gates


async def settle_into(outcomes: dict[Any, Any], key: Any, job: Awaitable[Any]) -> None:
    """Await ``job`` and keep its result, or the exception it raised, as ``outcomes[key]``."""
    try:
        outcomes[key] = await job
    except Exception as exc:
        outcomes[key] = exc


def record_batch_sizes(store: Any, method: str) -> list[int]:
    """Wrap the batch call ``store.<method>`` so each batch's size is appended to the list returned."""
    sizes: list[int] = []
    original = getattr(store, method)

    async def recorded(batch: list[Any]) -> Any:
        sizes.append(len(batch))
        return await original(batch)

    setattr(store, method, recorded)
    return sizes


class Gate:
    """Holds a test store's calls while closed, counting them in ``waiting`` (a slow or stuck store)."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None
        self.waiting = 0

    def close(self) -> None:
        self._event = anyio.Event()

    def open(self) -> None:
        assert self._event is not None
        self._event.set()
        self._event = None

    async def pass_through(self) -> None:
        """Return at once while open; while closed, wait until it opens."""
        event = self._event
        if event is None:
            return
        self.waiting += 1
        try:
            await event.wait()
        finally:
            self.waiting -= 1


# --------------------------------------------------------------------------- clocks


class FakeClock:
    """A wall clock (UNIX seconds) that moves only when the test moves it.

    Pass it as ``clock=`` to ``RoutingEngine`` or ``Router``; ``advance`` and ``set`` move it.
    """

    def __init__(self, now: float = 1_796_227_200.0) -> None:  # 2026-12-02T16:00:00Z
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward; return the new time."""
        self.now += seconds
        return self.now

    def set(self, now: float) -> None:
        """Move the clock to ``now``."""
        self.now = float(now)


# --------------------------------------------------------------------------- polling


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    *,
    interval: float = 0.005,
    message: str | None = None,
) -> None:
    """Poll ``condition`` until it is true; fail the test after ``timeout`` seconds.

    The first polls only yield to the event loop (``anyio.sleep(0)``), so conditions that
    other tasks make true right away are seen without delay; later polls back off to
    ``interval``. ``condition`` may be a plain or an async callable.
    """
    polls = 0
    with anyio.move_on_after(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            polls += 1
            await anyio.sleep(0 if polls < 50 else interval)
    raise AssertionError(message or f"condition not met within {timeout} s ({polls} polls)")


def wait_until(
    condition: Callable[[], bool],
    timeout: float = 5.0,
    *,
    interval: float = 0.005,
    message: str | None = None,
) -> None:
    """Blocking :func:`wait_for` for code outside an event loop (subprocesses, threads)."""
    deadline = time.monotonic() + timeout
    polls = 0
    while not condition():
        polls += 1
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout} s ({polls} polls)")
        time.sleep(interval)
