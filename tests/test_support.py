"""Tests of the test-suite's own machinery: anyio backends, polling, redis-server, scenarios,
and the rule that tests share code only through helper modules."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import sniffio

from beamrouting import RouteDecision, RoutingEngine
from tests._helpers import (
    REPO_ROOT,
    SCENARIO_PROFILES,
    run_scenario,
    run_scenario_async,
    scenarios_path,
    wait_for,
    wait_until,
)
from tests._redis import RedisServer

# --------------------------------------------------------------------------- anyio backends


@pytest.mark.anyio
async def test_async_tests_run_on_each_backend(anyio_backend: tuple[str, dict[str, Any]]) -> None:
    name, options = anyio_backend
    assert sniffio.current_async_library() == name
    if name == "asyncio":
        loop_module = type(asyncio.get_running_loop()).__module__
        assert loop_module.startswith("uvloop") == bool(options.get("use_uvloop"))


def test_every_async_test_is_collected_for_three_backends(request: pytest.FixtureRequest) -> None:
    ids = {
        item.name.partition("[")[2].rstrip("]")
        for item in request.session.items
        if item.name.startswith("test_async_tests_run_on_each_backend[")
    }
    if not ids:
        pytest.skip("test_async_tests_run_on_each_backend was deselected")
    assert ids == {"asyncio", "uvloop", "trio"}


# --------------------------------------------------------------------------- polling


@pytest.mark.anyio
async def test_wait_for_sees_a_condition_another_task_sets() -> None:
    state = {"done": False}

    async def worker() -> None:
        for _ in range(3):
            await anyio.sleep(0)
        state["done"] = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await wait_for(lambda: state["done"], timeout=5)
    assert state["done"]


@pytest.mark.anyio
async def test_wait_for_accepts_async_conditions() -> None:
    calls = []

    async def condition() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await wait_for(condition, timeout=5)
    assert len(calls) == 3


@pytest.mark.anyio
async def test_wait_for_fails_after_its_timeout() -> None:
    with pytest.raises(AssertionError, match="never"):
        await wait_for(lambda: False, timeout=0.05, message="never")


def test_wait_until_fails_after_its_timeout() -> None:
    with pytest.raises(AssertionError, match="condition not met"):
        wait_until(lambda: False, timeout=0.02)
    values = iter([False, False, True])
    wait_until(lambda: next(values), timeout=5, interval=0)


# --------------------------------------------------------------------------- redis-server


def test_redis_server_can_be_killed_and_restarted(redis_server: RedisServer) -> None:
    redis_server.start()
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.ping()
    assert redis_server.command("SET", "k", "v") == b"+OK"
    port, data_dir = redis_server.port, redis_server.data_dir

    redis_server.kill()
    assert not redis_server.running
    assert not redis_server.ping()

    redis_server.start()
    assert (redis_server.port, redis_server.data_dir) == (port, data_dir)
    assert redis_server.ping()
    assert redis_server.command("GET", "k") == b"$-1"  # no persistence: a restart is empty

    redis_server.stop()
    assert not redis_server.ping()
    redis_server.start()
    assert redis_server.ping()


def test_redis_url_fixture_gives_a_running_empty_server(redis_server: RedisServer) -> None:
    redis_server.start()
    redis_server.command("SET", "leftover", "1")
    redis_server.kill()
    # what the redis_url fixture does before each test
    redis_server.start()
    redis_server.flushall()
    assert redis_server.command("DBSIZE") == b":0"


def test_redis_tests_carry_the_redis_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("redis") is None
    items = [i for i in request.session.items if i.name == "test_redis_server_can_be_killed_and_restarted"]
    if not items:
        pytest.skip("test_redis_server_can_be_killed_and_restarted was deselected")
    assert items[0].get_closest_marker("redis") is not None


# --------------------------------------------------------------------------- scenarios


def test_scenarios_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BEAMROUTING_SCENARIOS", raising=False)
    default = scenarios_path()
    assert (
        default == Path(__file__).resolve().parents[2] / "shared" / "scenarios" / "reference_scenarios.jsonl"
    )
    file = tmp_path / "mine.jsonl"
    monkeypatch.setenv("BEAMROUTING_SCENARIOS", str(file))
    assert scenarios_path() == file
    monkeypatch.setenv("BEAMROUTING_SCENARIOS", str(tmp_path))
    assert scenarios_path() == tmp_path / "reference_scenarios.jsonl"


def test_scenario_profiles_match_section_11() -> None:
    assert sorted(SCENARIO_PROFILES) == sorted(
        [f"deny-{b}" for b in ("claude", "codex", "copilot", "gemini", "opencode")]
        + ["allow-all", "team-a", "default-deny"]
    )
    assert SCENARIO_PROFILES["deny-gemini"]["rules"] == [
        {
            "action": "backend",
            "decision": "deny",
            "match": ["eq", "backend", "gemini"],
            "reason": "gemini backend blocked",
        }
    ]


FAKE_SCENARIO: dict[str, Any] = {
    "id": "fake",
    "steps": [
        {"call": "select_backend", "request": {"backend": "codex"}, "expect": {"ok": {"backend": "claude"}}},
        {
            "call": "select_backend",
            "request": {"policy": "x"},
            "expect": {"error": {"code": "invalid_policy", "detail": "x"}},
        },
        {"call": "select_backend", "request": {"policy": "y"}, "skip": "not compared"},
        {"call": "select_backend", "skip": "unrunnable", "unrunnable": True},
        {"call": "clear", "expect": {"return": None}},
        {
            "call": "select_backend/2",
            "session_or_opts": "s",
            "request": {},
            "expect": {"error": {"code": "x", "detail": 1}},
        },
    ],
}


def test_run_scenario_reports_each_mismatch_and_runs_skipped_steps() -> None:
    engine = RoutingEngine()
    seen: list[Any] = []

    def select(request: Any) -> RouteDecision:
        seen.append(request)
        return engine.select_backend(request)

    mismatches = run_scenario(
        FAKE_SCENARIO, select, lambda session, request: engine.select_backend(session, request), engine.clear
    )
    assert [m.step for m in mismatches] == [0, 5]
    assert mismatches[0].actual["ok"]["backend"] == "codex"
    assert mismatches[1].actual["ok"]["affinity_key"] == "s"
    assert seen == [{"backend": "codex"}, {"policy": "x"}, {"policy": "y"}]
    assert "expected" in str(mismatches[0]) and json.dumps(mismatches[0].inputs)


@pytest.mark.anyio
async def test_run_scenario_async_matches_the_sync_runner() -> None:
    engine = RoutingEngine()

    async def select(request: Any) -> RouteDecision:
        await anyio.sleep(0)
        return engine.select_backend(request)

    async def select2(session: Any, request: Any) -> RouteDecision:
        return engine.select_backend(session, request)

    async def clear() -> None:
        engine.clear()

    mismatches = await run_scenario_async(FAKE_SCENARIO, select, select2, clear)
    assert [m.step for m in mismatches] == [0, 5]


def test_run_scenario_lets_non_routing_errors_through() -> None:
    def crash(*args: Any) -> RouteDecision:
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        run_scenario(FAKE_SCENARIO, crash, crash, lambda: None)


# --------------------------------------------------------------------------- how tests share code


def _not_importable(name: str) -> bool:
    """A test module or a conftest: what no module of the test-suite may import."""
    last = name.rpartition(".")[2]
    return name.startswith("tests") and (last.startswith("test_") or last == "conftest")


def forbidden_imports(module: str, source: str) -> list[str]:
    """The test modules and conftest files ``source`` (the module ``module``) imports.

    Tests share code through helper modules (``tests/_*.py``) only: a test module imported
    by another runs its tests twice and ties them together, and conftest files import from
    helpers, never the other way round.
    """
    package = module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names if _not_importable(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([base] if base else [])])
            if _not_importable(base):
                found.append(base)
            found.extend(f"{base}.{a.name}" for a in node.names if _not_importable(f"{base}.{a.name}"))
    return found


def test_no_module_of_the_suite_imports_a_test_module_or_a_conftest() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        found = forbidden_imports(module, path.read_text(encoding="utf-8"))
        if found:
            offenders[module] = found
    assert offenders == {}


def test_the_import_rule_finds_planted_violations() -> None:
    planted = {
        "from tests.test_router import GatedStore": ["tests.test_router"],
        "from tests.conftest import RedisServer": ["tests.conftest"],
        "import tests.core.test_state": ["tests.core.test_state"],
        "from tests.core import test_state, _support": ["tests.core.test_state"],
        "from . import conftest": ["tests.runtime.conftest"],
        "from .test_router import outcome": ["tests.runtime.test_router"],
        "from tests._helpers import wait_for\nfrom tests._stores import GatedStore": [],
    }
    for source, expected in planted.items():
        assert forbidden_imports("tests.runtime.test_planted", source) == expected, source
