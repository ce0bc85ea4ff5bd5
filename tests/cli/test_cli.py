"""The ``beamrouting`` command line: every command, its output and its exit status.

Commands run in-process through ``main(argv)``; one smoke test runs ``python -m beamrouting``
in a subprocess. Bad input exits 2 with one line on stderr, a request that cannot be
routed exits 1, and no path prints a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from beamrouting import Catalog, RoutingEngine
from beamrouting._cli._demo import DemoConfig, run_demo
from tests._helpers import REPO_ROOT
from tests.cli._support import one_error_line, run

BACKENDS = ("claude", "codex", "copilot", "gemini", "opencode")


@pytest.fixture
def toml_catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(
        'capabilities = ["hooks", "memory", "attachments"]\n'
        "[[backends]]\n"
        'name = "alpha"\n'
        'aliases = ["alpha_cli"]\n'
        'capabilities = ["hooks", "memory"]\n'
        "[[backends]]\n"
        'name = "beta"\n'
        "[[backends]]\n"
        'name = "gamma"\n'
        'capabilities = ["attachments"]\n',
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------- general


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out.startswith("beamrouting ")
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("demo", "select", "explain", "backends", "bench"):
        assert command in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2
    assert "usage:" in err


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "route-everything")
    assert status == 2
    assert "invalid choice" in one_error_line(err)


def test_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "backends", "--colour")
    assert status == 2
    assert "--colour" in one_error_line(err)


# --------------------------------------------------------------------------- backends


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "rich"])
def test_backends_lists_catalogue(capsys: pytest.CaptureFixture[str], plain: bool) -> None:
    status, out, err = run(capsys, "backends", *(["--plain"] if plain else []))
    assert status == 0
    assert err == ""
    for backend in BACKENDS:
        assert backend in out
    for alias in (
        "claude_code",
        "codex_app_server",
        "gemini_cli_client",
        "opencode_client",
        "copilot_client",
    ):
        assert alias in out
    for capability in ("session_lifecycle", "memory", "event_streaming"):
        assert capability in out
    assert "Capability matrix" in out


def test_backends_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "backends", "--json")
    assert status == 0
    assert json.loads(out) == Catalog.default().to_dict()


def test_backends_custom_catalog(capsys: pytest.CaptureFixture[str], toml_catalog: Path) -> None:
    status, out, _ = run(capsys, "backends", "--plain", "--catalog", str(toml_catalog))
    assert status == 0
    assert "alpha_cli" in out and "gamma" in out
    assert "claude" not in out
    alpha_row = next(line for line in out.splitlines() if line.startswith("hooks"))
    assert alpha_row.split() == ["hooks", "yes", "yes", "-"]


@pytest.mark.parametrize(
    "order",
    [
        ("--catalog", "{path}", "--plain", "backends"),
        ("--catalog", "{path}", "backends", "--plain"),
        ("--plain", "backends", "--catalog", "{path}"),
    ],
)
def test_common_options_go_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str], toml_catalog: Path, order: tuple[str, ...]
) -> None:
    status, out, _ = run(capsys, *(arg.format(path=toml_catalog) for arg in order))
    assert status == 0
    assert "alpha_cli" in out and "claude" not in out


def test_a_catalogue_given_after_the_command_wins(
    capsys: pytest.CaptureFixture[str], toml_catalog: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"backends": [{"name": "solo"}]}), encoding="utf-8")
    status, out, _ = run(
        capsys, "--catalog", str(other), "backends", "--json", "--catalog", str(toml_catalog)
    )
    assert status == 0
    assert [b["name"] for b in json.loads(out)["backends"]] == ["alpha", "beta", "gamma"]


def test_a_bad_catalogue_before_the_command_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = run(capsys, "--catalog", str(tmp_path / "missing.toml"), "backends")
    assert status == 2
    assert "bad catalogue" in one_error_line(err)


def test_backends_json_catalog_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"backends": [{"name": "solo"}]}), encoding="utf-8")
    status, out, _ = run(capsys, "backends", "--json", "--catalog", str(path))
    assert status == 0
    assert [b["name"] for b in json.loads(out)["backends"]] == ["solo"]


def test_backends_without_rich(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)  # makes "import rich..." raise ImportError
    status, out, _ = run(capsys, "backends")
    assert status == 0
    assert "claude_agent_sdk" in out
    assert "┃" not in out and "│" not in out


@pytest.mark.parametrize(
    ("content", "suffix", "fragment"),
    [
        (None, ".toml", "cannot read catalogue"),
        ("backends = [", ".toml", "is not valid toml"),
        ("{not json", ".json", "is not valid json"),
        ('{"backends": []}', ".json", "at least one backend"),
        ('{"backends": [{"name": "a", "colour": "red"}]}', ".json", "invalid catalogue"),
        ("[1, 2]", ".json", "must hold an object"),
    ],
    ids=["missing", "bad-toml", "bad-json", "empty", "unknown-field", "not-an-object"],
)
@pytest.mark.parametrize("command", ["backends", "select", "explain"])
def test_bad_catalogue_exits_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: str | None,
    suffix: str,
    fragment: str,
    command: str,
) -> None:
    path = tmp_path / f"catalog{suffix}"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    argv = [command, "--catalog", str(path)]
    if command != "backends":
        argv.append("{}")
    status, out, err = run(capsys, *argv)
    assert status == 2
    line = one_error_line(err)
    assert "bad catalogue" in line
    assert fragment in line.lower()
    assert out == ""


def test_bad_catalogue_on_demo_and_bench(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.toml")
    for argv in (["demo", "--catalog", missing], ["bench", "--quick", "--catalog", missing]):
        status, _, err = run(capsys, *argv)
        assert status == 2
        assert "bad catalogue" in one_error_line(err)


# --------------------------------------------------------------------------- select


def test_select_round_robin_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "select", '{"policy": "round_robin"}', "--repeat", "3", "--json")
    assert status == 0
    assert err == ""
    decisions = [json.loads(line) for line in out.splitlines()]
    assert [d["backend"] for d in decisions] == ["claude", "codex", "copilot"]
    assert decisions[1]["candidates"] == ["codex", "copilot", "gemini", "opencode", "claude"]
    assert decisions[0]["reasons"] == ["selected by round robin policy"]


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "rich"])
def test_select_table(capsys: pytest.CaptureFixture[str], plain: bool) -> None:
    argv = ["select", '{"preferred_backends": ["gemini_cli"], "fallback_backends": ["codex"]}']
    status, out, _ = run(capsys, *argv, *(["--plain"] if plain else []))
    assert status == 0
    assert "gemini" in out
    assert "selected preferred backend" in out
    assert "preferred_then_fallback" in out


def test_select_matches_engine(capsys: pytest.CaptureFixture[str]) -> None:
    request = {"policy": "capability_first", "capabilities": ["hooks"], "excluded_backends": ["claude"]}
    status, out, _ = run(capsys, "select", json.dumps(request), "--json")
    assert status == 0
    assert json.loads(out) == RoutingEngine().select_backend(request).to_dict()


def test_select_from_session_id(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "select", '{"policy": "sticky"}', "--session", "sess-1", "--repeat", "2", "--json"
    )
    assert status == 0
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["affinity_key"] == second["affinity_key"] == "sess-1"
    assert first["backend"] == second["backend"]
    assert second["reasons"] == ["reused sticky affinity backend"]


def test_select_from_session_options(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "select", "{}", "--opts", '{"backend": "gemini_cli"}', "--json")
    assert status == 0
    decision = json.loads(out)
    assert decision["backend"] == "gemini"
    assert decision["policy"] == "explicit"


def test_select_request_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO('{"backend": "opencode"}'))
    status, out, _ = run(capsys, "select", "-", "--json")
    assert status == 0
    assert json.loads(out)["backend"] == "opencode"


def test_select_custom_catalogue(capsys: pytest.CaptureFixture[str], toml_catalog: Path) -> None:
    request = '{"policy": "capability_first", "capabilities": ["attachments"]}'
    status, out, _ = run(capsys, "select", request, "--catalog", str(toml_catalog), "--json")
    assert status == 0
    assert json.loads(out)["backend"] == "beta"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["select", "{policy: sticky}"], "REQUEST is not valid JSON"),
        (["select", ""], "REQUEST is not valid JSON"),
        (["select", '{"policy": "fastest"}'], "invalid_policy"),
        (["select", '{"backend": "Claude"}'], "unknown_backend"),
        (["select", '{"colour": "red"}'], "unsupported_route_key"),
        (["select", "[1, 2]"], "invalid_route_request"),
        (["select", '{"capabilities": ["telepathy"]}'], "unknown_capability"),
        (["select", '{"health": {"codex": "sleepy"}}'], "invalid_health_status"),
        (["select", '{"policy": "sticky"}'], "affinity_key_required"),
        (["select", "{}", "--opts", "{bad"], "OPTIONS is not valid JSON"),
        (["select", "{}", "--opts", '"sess-1"'], "OPTIONS must be a JSON object"),
        (["select", "{}", "--opts", '{"routing": 3}'], "invalid_route_request"),
        (["select", "{}", "--session", ""], "non-empty session id"),
        (["select", "{}", "--repeat", "0"], "must be >= 1"),
        (["select", "{}", "--repeat", "many"], "not an integer"),
        (["select", "{}", "--session", "a", "--opts", "{}"], "not allowed with"),
        (["select"], "required"),
    ],
)
def test_select_bad_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert fragment in one_error_line(err)
    assert out == ""


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"excluded_backends": list(BACKENDS)}, "no_backend_available"),
        ({"backend": "codex", "health": {"codex": "down"}}, "backend_not_eligible"),
        (
            {
                "policy": "capability_first",
                "capabilities": ["hooks"],
                "health": dict.fromkeys(BACKENDS, "unhealthy"),
            },
            "no_backend_supports_capabilities",
        ),
        ({"policy_profile_id": "no-such-profile"}, "policy_denied"),
    ],
)
def test_select_routing_failure_exits_1(
    capsys: pytest.CaptureFixture[str], request_: dict[str, Any], code: str
) -> None:
    status, out, err = run(capsys, "select", json.dumps(request_))
    assert status == 1
    line = one_error_line(err)
    assert f"cannot route: {code}" in line
    assert out == ""
    status, out, err = run(capsys, "select", json.dumps(request_), "--json")
    assert status == 1
    assert json.loads(out)["error"]["code"] == code


def test_select_failure_after_some_decisions(capsys: pytest.CaptureFixture[str]) -> None:
    # Explicit with a down backend fails on every repeat: nothing printed, status 1.
    status, out, err = run(
        capsys, "select", '{"backend": "codex", "health": {"codex": "down"}}', "--repeat", "3"
    )
    assert status == 1
    assert out == ""
    assert "backend_not_eligible" in err


# --------------------------------------------------------------------------- explain


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "rich"])
def test_explain_shows_why(capsys: pytest.CaptureFixture[str], plain: bool) -> None:
    request = {
        "preferred_backends": ["gemini", "codex"],
        "fallback_backends": ["opencode"],
        "excluded_backends": ["claude"],
        "health": {"codex": "down", "copilot": "degraded"},
    }
    status, out, _ = run(capsys, "explain", json.dumps(request), *(["--plain"] if plain else []))
    assert status == 0
    assert "excluded" in out
    assert "health is down" in out
    assert "degraded" in out
    for name in ("eligible", "preferred", "fallback", "remaining", "ordered"):
        assert name in out
    assert "decision: gemini" in out
    assert "selected preferred backend" in out


def test_explain_missing_capability(capsys: pytest.CaptureFixture[str], toml_catalog: Path) -> None:
    request = '{"policy": "capability_first", "capabilities": ["hooks", "memory"]}'
    status, out, _ = run(capsys, "explain", request, "--plain", "--catalog", str(toml_catalog))
    assert status == 0
    assert "missing capabilities [hooks,memory]" in out
    assert "decision: alpha" in out


def test_explain_json_matches_engine(capsys: pytest.CaptureFixture[str]) -> None:
    request = {"policy": "round_robin", "health": {"claude": "unhealthy"}, "capabilities": ["hooks"]}
    status, out, _ = run(capsys, "explain", json.dumps(request), "--json")
    assert status == 0
    assert json.loads(out) == json.loads(json.dumps(RoutingEngine().explain(request).to_dict()))


def test_explain_would_fail_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "explain", json.dumps({"excluded_backends": list(BACKENDS)}), "--plain")
    assert status == 1
    assert "no_backend_available" in out
    assert "cannot route: no_backend_available" in one_error_line(err)


def test_explain_sticky_without_key_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "explain", '{"policy": "sticky"}', "--plain")
    assert status == 2
    assert "affinity_key_required" in one_error_line(err)


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ("not json", "REQUEST is not valid JSON"),
        ('{"policy": "fastest"}', "invalid_policy"),
        ("7", "invalid_route_request"),
    ],
)
def test_explain_bad_input_exits_2(capsys: pytest.CaptureFixture[str], request_: str, fragment: str) -> None:
    status, out, err = run(capsys, "explain", request_)
    assert status == 2
    assert fragment in one_error_line(err)
    assert out == ""


# --------------------------------------------------------------------------- demo


def test_demo_small_passes_its_invariants(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys, "demo", "--sessions", "1500", "--concurrency", "40", "--backend", "asyncio", "--plain"
    )
    assert status == 0, err
    assert "FAIL" not in out
    assert out.count("PASS") == 9
    for fragment in (
        "Decisions per policy and backend",
        "Errors by code",
        "restarts",
        "p50",
        "p99",
        "sessions/s",
    ):
        assert fragment in out
    assert "routing sessions" in err  # the progress display


def test_demo_exits_1_when_an_invariant_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import beamrouting._cli._demo._checks as demo

    real = demo._sticky_check

    def broken(run: Any) -> tuple[dict[str, int], list[str]]:
        sticky, _ = real(run)
        return sticky, ["workspace-00001: backends ['claude', 'gemini'], bound 2 time(s) without an outage"]

    monkeypatch.setattr(demo, "_sticky_check", broken)
    status, out, err = run(
        capsys, "demo", "--sessions", "200", "--concurrency", "10", "--plain", "--no-progress"
    )
    assert status == 1
    assert "FAIL" in out
    assert "demo invariant failed: sticky workspaces stayed on one backend" in one_error_line(err)


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "demo", "--sessions", "800", "--concurrency", "25", "--backend", "trio", "--json"
    )
    assert status == 0
    summary = json.loads(out)
    assert summary["ok"] is True
    assert summary["routed"] + summary["failed"] == 800
    assert summary["restarts"]["routing_table"] == 1
    assert all(inv["ok"] for inv in summary["invariants"])


DEMO_ERRORS = {
    "actor_crashed",  # retried
    "policy_denied",
    "backend_not_eligible",
    # a request whose only backends were all held out (down, cooling, ejected or full),
    # or that the catalogue cannot serve
    "no_backend_supports_capabilities",
    "no_backend_available",
}
"""The error codes a demo run may count: retried crashes and typed routing failures."""


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_run_demo_invariants(backend: str) -> None:
    if backend == "uvloop" and sys.platform == "win32":
        pytest.skip("uvloop does not exist on Windows")
    report = run_demo(DemoConfig(sessions=2000, concurrency=60, seed=3, backend=backend))
    assert report.ok, [inv for inv in report.invariants if not inv.ok]
    assert report.routed + report.failed == 2000
    assert report.sticky["violations"] == 0
    assert report.sticky["moved_by_outage"] > 0  # the outage moved some workspaces
    assert report.restarts["routing_table"] == 1
    assert report.errors.get("actor_crashed") == 1
    assert set(report.errors) <= DEMO_ERRORS
    assert report.failovers > 0
    assert report.outage_backend == "codex"
    assert set(report.by_policy_backend) >= {
        "sticky",
        "round_robin",
        "capability_first",
        "explicit",
        "failover",
    }
    # The outage backend never served a request that said it was down; it served others.
    assert report.by_policy_backend["round_robin"].get("codex", 0) > 0


def test_run_demo_is_seeded() -> None:
    one = run_demo(DemoConfig(sessions=300, concurrency=1, seed=11))
    two = run_demo(DemoConfig(sessions=300, concurrency=1, seed=11))
    assert one.by_policy_backend == two.by_policy_backend
    assert one.errors == two.errors


def test_run_demo_custom_catalogue(toml_catalog: Path) -> None:
    catalog = Catalog.from_file(toml_catalog)
    report = run_demo(DemoConfig(sessions=600, concurrency=20, catalog=catalog))
    assert report.ok, [inv for inv in report.invariants if not inv.ok]
    assert report.outage_backend == "beta"
    # Some capability requests cannot be met by this catalogue: a typed error, not a crash.
    assert set(report.errors) <= DEMO_ERRORS


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["demo", "--sessions", "0"], "must be >= 1"),
        (["demo", "--concurrency", "x"], "not an integer"),
        (["demo", "--backend", "curio"], "invalid choice"),
        (["demo", "--seed", "1.5"], "invalid int value"),
        (
            ["demo", "--backend", "trio", "--redis", "redis://127.0.0.1:1/0"],
            "--redis needs --backend asyncio or uvloop",
        ),
        (["demo", "--backend", "asyncio", "--redis", "localhost:6379"], "--redis needs a redis://"),
        (["select", "{}", "--redis", "http://localhost"], "--redis needs a redis://"),
    ],
)
def test_demo_bad_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert fragment in one_error_line(err)


# --------------------------------------------------------------------------- redis


def test_select_with_redis(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    pytest.importorskip("redis")
    status, out, err = run(
        capsys, "select", '{"policy": "round_robin"}', "--repeat", "2", "--json", "--redis", redis_url
    )
    assert status == 0, err
    assert [json.loads(line)["backend"] for line in out.splitlines()] == ["claude", "codex"]
    # The counter lives in Redis: a second process continues the rotation.
    status, out, _ = run(capsys, "select", '{"policy": "round_robin"}', "--json", "--redis", redis_url)
    assert status == 0
    assert json.loads(out)["backend"] == "copilot"


def test_demo_with_redis(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    pytest.importorskip("redis")
    status, out, err = run(
        capsys,
        "demo",
        "--sessions",
        "400",
        "--concurrency",
        "20",
        "--backend",
        "asyncio",
        "--redis",
        redis_url,
        "--json",
    )
    assert status == 0, err
    assert json.loads(out)["ok"] is True


def test_unreachable_redis_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("redis")
    status, _, err = run(capsys, "select", "{}", "--redis", "redis://127.0.0.1:1/0")
    assert status == 1
    assert "StoreUnavailable" in one_error_line(err)


# --------------------------------------------------------------------------- subprocess


def _python_m(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "beamrouting", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )


def test_python_m_smoke() -> None:
    done = _python_m("select", '{"policy": "round_robin"}', "--repeat", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["backend"] for line in done.stdout.splitlines()] == ["claude", "codex"]
    done = _python_m("select", "{oops")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "REQUEST is not valid JSON" in done.stderr
    done = _python_m("explain", '{"excluded_backends": ["claude", "codex", "copilot", "gemini", "opencode"]}')
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
