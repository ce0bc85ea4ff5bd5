"""``--config FILE`` on every command: the file configures the router, flags beside it win.

An invalid file exits 2 with one line naming the file, the line, the field and why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli._support import run

CONFIG = """\
[[catalog.backends]]
name = "alpha"
aliases = ["alpha_cli"]

[[catalog.backends]]
name = "beta"

[[catalog.backends]]
name = "gamma"

[weights]
alpha = 2

[profiles.no-gamma]
default = "allow"
mode = "filter"

[[profiles.no-gamma.rules]]
action = "backend"
decision = "deny"
match = ["eq", "backend", "gamma"]
reason = "gamma is off limits"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "beamrouting.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def backends_of(out: str) -> list[str]:
    return [json.loads(line)["backend"] for line in out.splitlines()]


def test_select_routes_with_the_files_catalogue_weights_and_profiles(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    status, out, err = run(
        capsys, "select", '{"policy": "weighted"}', "--repeat", "4", "--json", "--config", str(config)
    )
    assert status == 0, err
    assert backends_of(out) == ["alpha", "beta", "gamma", "alpha"]  # smooth 2:1:1
    status, out, err = run(
        capsys,
        "select",
        '{"policy": "round_robin", "policy_profile_id": "no-gamma"}',
        "--repeat",
        "4",
        "--json",
        "--config",
        str(config),
    )
    assert status == 0, err
    assert "gamma" not in backends_of(out)


def test_the_option_goes_before_or_after_the_command(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    status, out, _ = run(capsys, "--config", str(config), "backends", "--json")
    assert status == 0
    assert [b["name"] for b in json.loads(out)["backends"]] == ["alpha", "beta", "gamma"]
    status, out, _ = run(capsys, "explain", '{"backend": "alpha_cli"}', "--json", "--config", str(config))
    assert status == 0
    assert json.loads(out)["decision"]["backend"] == "alpha"


def test_flags_beside_the_file_override_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "limits.toml"
    config.write_text("[limits]\nclaude = 1\n")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[[backends]]\nname = "claude"\n[[backends]]\nname = "solo"\n')
    status, out, err = run(capsys, "backends", "--json", "--config", str(config), "--catalog", str(catalog))
    assert status == 0, err
    assert [b["name"] for b in json.loads(out)["backends"]] == ["claude", "solo"]
    other = tmp_path / "other.toml"
    other.write_text('[[backends]]\nname = "solo"\n')
    status, _, err = run(capsys, "backends", "--config", str(config), "--catalog", str(other))
    assert status == 2
    assert "does not fit --catalog" in err and "claude" in err


@pytest.mark.parametrize(
    "command", [["select", "{}"], ["explain", "{}"], ["backends"], ["demo"], ["bench", "--quick"]]
)
def test_an_invalid_file_exits_2_naming_the_line_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\n\njournal_size = 'many'\n")
    status, out, err = run(capsys, *command, "--config", str(bad))
    assert status == 2
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert f"{bad}:3: store.journal_size" in lines[0]


def test_a_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, "select", "{}", "--config", str(tmp_path / "nope.toml"))
    assert status == 2
    assert "cannot read" in err


def test_select_on_the_files_redis_store(
    capsys: pytest.CaptureFixture[str], redis_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text(f'[store]\nkind = "redis"\nurl = "{redis_url}"\nprefix = "team-a:"\n')
    status, out, err = run(
        capsys, "select", '{"policy": "round_robin"}', "--repeat", "2", "--json", "--config", str(config)
    )
    assert status == 0, err
    assert backends_of(out) == ["claude", "codex"]
    # Same Redis, same prefix: the rotation goes on; --redis with the file keeps its prefix.
    status, out, _ = run(
        capsys, "select", '{"policy": "round_robin"}', "--json", "--config", str(config), "--redis", redis_url
    )
    assert status == 0 and backends_of(out) == ["copilot"]
    # Without the file: another prefix, another rotation.
    status, out, _ = run(capsys, "select", '{"policy": "round_robin"}', "--json", "--redis", redis_url)
    assert status == 0 and backends_of(out) == ["claude"]


DEMO_CONFIG = """\
[health]
failure_threshold = 3
base_ejection = 10.0

[limits]
claude = 20
codex = 20
"""


def test_demo_runs_with_the_files_limits_and_health_policy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(DEMO_CONFIG, encoding="utf-8")
    status, out, err = run(
        capsys, "demo", "--config", str(path), "--sessions", "600", "--concurrency", "40", "--json"
    )
    assert status == 0, err
    report = json.loads(out)
    assert report["ok"] is True
    # The file's limits hold for the backends it names; the demo's own for the rest.
    assert report["limits"]["claude"] == 20
    assert report["limits"]["codex"] == 20
    assert report["health_policy"]["failure_threshold"] == 3
    assert all(report["peak_live"][b] <= limit for b, limit in report["limits"].items())
