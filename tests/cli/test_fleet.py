"""The operator's commands against a fleet's Redis: states, report, restore, release, watch.

They act on what every process sharing the Redis store routes by: a backend cooled down
with ``beamrouting report`` is avoided by another process's routers, and ``beamrouting
watch`` shows the decisions other processes make. Without a Redis store they exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from beamrouting import RedisStore, Router
from beamrouting._cli import main
from tests._helpers import BACKENDS, REPO_ROOT
from tests.cli._support import run

pytestmark = pytest.mark.redis

FLEET_COMMANDS = (
    ["states"],
    ["report", "codex", "quota"],
    ["restore", "codex"],
    ["release", "workspace-1"],
    ["watch", "--count", "1"],
)


def states_of(capsys: pytest.CaptureFixture[str], *fleet: str) -> dict[str, dict[str, Any]]:
    status, out, err = run(capsys, "states", "--json", *fleet)
    assert status == 0, err
    return {state["backend"]: state for state in json.loads(out)}


def select(url: str, request: dict[str, Any], times: int = 1) -> list[str]:
    """Route ``request`` from a router of this process sharing the fleet's store."""

    async def go() -> list[str]:
        async with Router(store=RedisStore(url)) as router:
            return [(await router.select_backend(request)).backend for _ in range(times)]

    return anyio.run(go)


def beamrouting(*argv: str) -> subprocess.Popen[str]:
    """``python -m beamrouting ARGV`` in another process."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "beamrouting", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )


# --------------------------------------------------------------------------- states, report, restore


def test_states_of_a_fresh_fleet(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    states = states_of(capsys, "--redis", redis_url)
    assert list(states) == list(BACKENDS)
    assert {s["status"] for s in states.values()} == {"healthy"}
    status, out, _ = run(capsys, "states", "--plain", "--redis", redis_url)
    assert status == 0
    header = out.splitlines()[1]
    for column in ("backend", "status", "until", "reason", "failures", "live", "limit"):
        assert column in header


def test_a_reported_quota_cools_the_backend_for_the_whole_fleet(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    status, out, err = run(
        capsys, "report", "codex", "quota", "--retry-after", "600", "--json", "--redis", redis_url
    )
    assert status == 0, err
    state = json.loads(out)
    assert state["backend"] == "codex" and state["status"] == "cooling"
    assert state["until"] == pytest.approx(time.time() + 600, abs=30)
    assert states_of(capsys, "--redis", redis_url)["codex"]["status"] == "cooling"
    # Another router of the fleet routes around it.
    assert "codex" not in select(redis_url, {"policy": "round_robin"}, times=8)
    status, out, _ = run(capsys, "restore", "codex", "--json", "--redis", redis_url)
    assert status == 0 and json.loads(out)["status"] == "healthy"
    assert "codex" in select(redis_url, {"policy": "round_robin"}, times=8)


def test_report_takes_a_reset_time_and_any_spelling(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    status, out, err = run(
        capsys,
        "report",
        "codex_cli",
        "quota",
        "--retry-at",
        "2099-01-01T00:00:00Z",
        "--json",
        "--redis",
        redis_url,
    )
    assert status == 0, err
    assert json.loads(out)["until"] == 4070908800.0
    status, out, _ = run(
        capsys, "report", "gemini", "quota", "--retry-at", "4070908800", "--json", "--redis", redis_url
    )
    assert status == 0 and json.loads(out)["until"] == 4070908800.0


def test_failures_eject_a_backend(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    for _ in range(5):  # the default failure threshold
        status, _, _ = run(capsys, "report", "opencode", "failure", "--redis", redis_url)
        assert status == 0
    state = states_of(capsys, "--redis", redis_url)["opencode"]
    assert state["status"] == "ejected" and state["consecutive_failures"] == 5


def test_the_config_file_gives_the_redis_store_and_the_health_policy(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(f'[store]\nkind = "redis"\nurl = "{redis_url}"\n\n[health]\nfailure_threshold = 2\n')
    for _ in range(2):
        assert run(capsys, "report", "claude", "failure", "--config", str(config))[0] == 0
    assert states_of(capsys, "--config", str(config))["claude"]["status"] == "ejected"


def test_report_and_restore_show_the_files_limit(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(f'[store]\nkind = "redis"\nurl = "{redis_url}"\n\n[limits]\ncodex = 10\n')
    for argv in (("report", "codex", "quota", "--retry-after", "60"), ("restore", "codex")):
        status, out, err = run(capsys, *argv, "--json", "--config", str(config))
        assert status == 0, err
        state = json.loads(out)
        assert (state["backend"], state["limit"], state["live_sessions"]) == ("codex", 10, 0)


def test_operator_commands_never_change_the_fleets_profiles(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    async def put_profile() -> None:
        async with Router(store=RedisStore(redis_url)) as router:
            await router.put_policy_profile("fleet", {"default": "allow"})

    anyio.run(put_profile)
    config = tmp_path / "fleet.toml"
    config.write_text(f'[store]\nkind = "redis"\nurl = "{redis_url}"\n\n[profiles.mine]\ndefault = "deny"\n')
    assert run(capsys, "states", "--config", str(config))[0] == 0
    assert select(redis_url, {"policy_profile_id": "fleet"}) == ["claude"]
    status, _, err = run(capsys, "select", '{"policy_profile_id": "mine"}', "--redis", redis_url)
    assert status == 1 and "unknown policy profile" in err


def test_release_forgets_a_sticky_binding(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    assert select(redis_url, {"policy": "sticky", "affinity_key": "workspace-1"}) == ["claude"]
    status, out, _ = run(capsys, "release", "workspace-1", "--json", "--redis", redis_url)
    assert status == 0 and json.loads(out) == {"affinity_key": "workspace-1", "released": True}
    status, out, _ = run(capsys, "release", "workspace-1", "--plain", "--redis", redis_url)
    assert status == 0 and "had no sticky binding" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "nobody", "failure"], "unknown_backend"),
        (["report", "codex", "exploded"], "invalid choice"),
        (["report", "codex", "quota", "--retry-after", "5", "--retry-at", "5"], "not allowed with"),
        (["report", "codex", "quota", "--retry-at", "tomorrow"], "ISO 8601"),
        (["report", "codex", "quota", "--retry-after", "-5"], "--retry-after"),
        (["restore", "nobody"], "unknown_backend"),
        (["release", ""], "invalid_affinity_key"),
        (["watch", "--count", "0"], "--count"),
    ],
)
def test_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], redis_url: str, argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv, "--redis", redis_url)
    assert status == 2
    assert message in err
    assert out == ""


@pytest.mark.parametrize("argv", FLEET_COMMANDS, ids=lambda argv: argv[0])
def test_without_a_fleet_redis_the_commands_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert "acts on a fleet's Redis" in err and "--redis" in err
    memory = tmp_path / "memory.toml"
    memory.write_text('[store]\nkind = "memory"\n')
    status, _, err = run(capsys, *argv, "--config", str(memory))
    assert status == 2 and "acts on a fleet's Redis" in err


@pytest.mark.parametrize("argv", FLEET_COMMANDS, ids=lambda argv: argv[0])
def test_an_unreachable_redis_exits_1(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    status, _, err = run(capsys, *argv, "--redis", "redis://127.0.0.1:1/0")
    assert status == 1
    assert "StoreUnavailable" in err


# --------------------------------------------------------------------------- watch


def _watch_while_routing(redis_url: str, *argv: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``beamrouting watch ARGV`` in another process while this one routes, until it exits."""
    watcher = beamrouting("watch", "--redis", redis_url, *argv)
    routed = 0
    deadline = time.monotonic() + 60
    try:
        while watcher.poll() is None:
            assert time.monotonic() < deadline, "watch did not see the decisions"
            select(redis_url, {"policy": "round_robin"})
            routed += 1
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    return subprocess.CompletedProcess(watcher.args, watcher.returncode, out, err), routed


def test_watch_plain_prints_another_processs_decisions_one_per_line(redis_url: str) -> None:
    done, routed = _watch_while_routing(redis_url, "--plain", "--count", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert " decision " in line and " by round_robin" in line
    assert routed >= 3


def test_watch_plain_shows_health_changes(redis_url: str) -> None:
    watcher = beamrouting("watch", "--redis", redis_url, "--plain", "--count", "2")
    try:
        deadline = time.monotonic() + 60
        while watcher.poll() is None:
            assert time.monotonic() < deadline
            assert main(["report", "gemini", "quota", "--retry-after", "60", "--redis", redis_url]) == 0
            assert main(["restore", "gemini", "--redis", redis_url]) == 0
        out, _ = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert "outcome gemini quota until" in out or "health gemini cooling" in out


def test_watch_live_view_shows_backends_and_recent_events(redis_url: str) -> None:
    done, _ = _watch_while_routing(redis_url, "--count", "2")
    assert done.returncode == 0, done.stderr
    assert "Backends" in done.stdout and "Recent events" in done.stdout
    assert "decisions/s" in done.stdout
