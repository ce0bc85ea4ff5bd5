"""The benchmark (``beamrouting bench`` and ``python -m benchmarks``): its cells, files and options.

These tests check structure, never speed: tiny call counts, small state caps (the module's
caps are patched down), one or two repetitions. The speed targets live in the benchmark.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from beamrouting import RoutingEngine
from beamrouting._cli import _bench
from beamrouting._cli._bench_cells import AV, PTF, RR, bare, cells_for
from benchmarks.__main__ import main as benchmarks_main
from tests._redis import RedisServer
from tests.cli._support import one_error_line, run

SMALL_CAPS = (200, 500, 2_000)
"""Patched-in state caps of a full run."""
QUICK_CAPS = (200, 2_000, 1_000_000)
"""Patched-in state caps of a ``--quick`` run, which leaves the million out (never run here)."""
SMALL_ROUTER_CAP = 300

TARGETS = {
    "engine.ptf": ("<=", 1.6),
    "engine.rr": ("<=", 1.6),
    "catalogue.rr500": ("<=", 2.0),
    "router.bare": ("<=", 4.0),
    "callers.uvloop": ("<=", 3.0),
    "callers.asyncio": ("<=", 3.5),
    "callers.trio": ("<=", 5.0),
    "redis.asyncio": (">=", 0.5),
    "redis.uvloop": (">=", 0.5),
    "cap.engine_200": (">=", 0.8),
    "cap.engine_500": (">=", 0.8),
    "cap.engine_2k": (">=", 0.8),
    "cap.router_300": (">=", 0.8),
    "learning.idle": ("<=", 1.10),
    "learning.out": ("<=", 1.25),
}
"""The cells with a target (at the patched caps), and the target."""


@pytest.fixture
def small_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The state-cap cells at a few hundred and thousand entries instead of 10,000 to 1,000,000."""
    monkeypatch.setattr(_bench, "CAPS", SMALL_CAPS)
    monkeypatch.setattr(_bench, "ROUTER_CAP", SMALL_ROUTER_CAP)


@pytest.fixture
def quick_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small state caps, and the million ``--quick`` leaves out."""
    monkeypatch.setattr(_bench, "CAPS", QUICK_CAPS)
    monkeypatch.setattr(_bench, "ROUTER_CAP", SMALL_ROUTER_CAP)


def cells_of(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {cell["key"]: cell for cell in data["cells"]}


# --------------------------------------------------------------------------- the yardstick


def test_the_yardstick_decides_as_the_engine_does() -> None:
    yardstick: Callable[..., dict[str, Any]] = bare  # left unannotated as specified
    engine = RoutingEngine()
    decision = engine.select_backend(PTF)
    made = yardstick(PTF)
    assert made["backend"] == decision.backend == "gemini"
    assert tuple(made["candidates"]) == decision.candidates
    assert tuple(made["fallback_chain"]) == decision.fallback_chain
    counters: dict[Any, int] = {}
    engine_turns = [engine.select_backend(RR).backend for _ in range(9)]
    bare_turns = [yardstick(RR, counters)["backend"] for _ in range(9)]
    assert engine_turns == bare_turns
    assert set(bare_turns) == set(AV) - {"claude"}


def test_cells_and_their_targets() -> None:
    cells = {cell.key: cell for cell in cells_for()}
    assert {"cap.engine_10k", "cap.engine_100k", "cap.engine_1m", "cap.router_100k"} <= set(cells)
    assert cells["callers.trio"].target == 5.0
    assert cells["cap.engine_1m"].throughput
    assert cells["learning.idle"].ratio(1.05e-6, 1e-6) == pytest.approx(1.05)
    assert cells["cap.engine_1m"].ratio(2e-6, 1e-6) == pytest.approx(0.5)  # throughput: half
    assert cells["cap.engine_1m"].met(0.5) is False
    assert cells["engine.ptf"].met(1.2) is True
    assert cells["capacity.weighted"].met(9.0) is None  # no target


# --------------------------------------------------------------------------- bench


@pytest.mark.usefixtures("small_caps")
def test_bench_reports_every_cell(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    status, out, err = run(
        capsys, "bench", "--calls", "20", "--repeat", "2", "--json", str(json_path), "--plain"
    )
    assert status == 0, err
    assert "benchmark" in err  # progress
    cells = cells_of(json_path)
    expected = [c.key for c in cells_for(SMALL_CAPS, SMALL_ROUTER_CAP) if c.group != "redis"]
    assert list(cells) == expected  # every cell but Redis (no --redis), in order
    for key, cell in cells.items():
        assert key in out
        assert cell["skipped"] is None, key
        assert cell["us"] > 0, key
        assert cell["ratio"] > 0, key
        assert len(cell["ratios"]) == len(cell["samples_us"]) == 2, key
        if key in TARGETS:
            assert (cell["comparison"], cell["target"]) == TARGETS[key]
            assert cell["met"] in (True, False)
        else:
            assert cell["target"] is None and cell["met"] is None, key
    assert cells["yardstick.ptf"]["ratio"] == 1.0
    assert cells["engine.ptf"]["reference_us"] > 0
    assert cells["router.bare"]["backend"] == "uvloop"
    assert cells["engine.ptf"]["backend"] is None
    assert "targets met" in out
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["yardstick"] == {"PTF": PTF, "RR": RR}
    assert data["config"]["repeat"] == 2
    assert data["environment"]["python"]


@pytest.mark.usefixtures("quick_caps")
def test_quick_leaves_out_the_million_cell(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    status, _, err = run(
        capsys,
        "bench",
        "--quick",
        "--cells",
        "cap",
        "--calls",
        "20",
        "--json",
        str(json_path),
        "--no-progress",
    )
    assert status == 0, err
    cells = cells_of(json_path)
    assert list(cells) == ["cap.engine_200", "cap.engine_2k", "cap.router_300"]
    assert all(len(cell["ratios"]) == 1 for cell in cells.values())  # one repetition


def test_quick_configuration() -> None:
    parser = argparse.ArgumentParser()
    _bench.add_bench_arguments(parser)
    quick = _bench.config_from_args(parser.parse_args(["--quick"]))
    full = _bench.config_from_args(parser.parse_args([]))
    assert quick.caps == (10_000, 100_000) and quick.repeat == 1 and quick.calls == 2_000
    assert full.caps == (10_000, 100_000, 1_000_000)
    assert "cap.engine_1m" in [c.key for c in full.cells()]
    assert "cap.engine_1m" not in [c.key for c in quick.cells()]
    assert "cap.router_100k" in [c.key for c in quick.cells()]


def test_bench_skips_cells_on_backends_left_out(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    status, out, err = run(
        capsys,
        "bench",
        "--cells",
        "router,callers",
        "--backends",
        "asyncio",
        "--calls",
        "20",
        "--json",
        str(json_path),
        "--plain",
        "--no-progress",
    )
    assert status == 0, err
    cells = cells_of(json_path)
    assert set(cells) == {"router.bare", "router.engine", "callers.uvloop", "callers.asyncio", "callers.trio"}
    assert cells["callers.asyncio"]["ratio"] > 0
    for key in ("router.bare", "router.engine", "callers.uvloop", "callers.trio"):
        assert cells[key]["ratio"] is None
        assert "not among --backends" in cells[key]["skipped"]
    assert "skipped" in out


def test_bench_skips_cells_on_backends_not_installed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bench, "installed", lambda backend: backend != "trio")
    json_path = tmp_path / "bench.json"
    status, _, err = run(
        capsys, "bench", "--cells", "callers", "--calls", "20", "--json", str(json_path), "--no-progress"
    )
    assert status == 0, err
    cells = cells_of(json_path)
    assert cells["callers.trio"]["skipped"] == "trio is not installed"
    assert cells["callers.trio"]["ratio"] is None
    assert cells["callers.uvloop"]["ratio"] > 0


def test_bench_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "bench.png"
    status, _, err = run(
        capsys, "bench", "--cells", "engine,learning", "--calls", "20", "--plot", str(png), "--no-progress"
    )
    assert status == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_duration_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    status, _, err = run(
        capsys,
        "bench",
        "--duration",
        "0.01",
        "--cells",
        "engine,capacity",
        "--json",
        str(json_path),
        "--no-progress",
    )
    assert status == 0, err
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["config"]["duration"] == 0.01
    assert all(cell["us"] > 0 and cell["ratio"] > 0 for cell in data["cells"])


def test_bench_with_redis(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, redis_server: RedisServer, redis_url: str
) -> None:
    pytest.importorskip("redis")
    json_path = tmp_path / "bench.json"
    status, _, err = run(
        capsys,
        "bench",
        "--cells",
        "redis",
        "--redis",
        redis_url,
        "--calls",
        "20",
        "--repeat",
        "2",
        "--json",
        str(json_path),
        "--no-progress",
    )
    assert status == 0, err
    cells = cells_of(json_path)
    assert set(cells) == {"redis.asyncio", "redis.uvloop"}
    for cell in cells.values():
        assert cell["ratio"] > 0 and cell["target"] == 0.5 and cell["comparison"] == ">="
    assert redis_server.command("DBSIZE").strip() == b":0"  # every key of the run's prefixes removed


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["bench", "--backends", "curio"], "unknown backend 'curio'"),
        (["bench", "--cells", "fastest"], "unknown group of cells 'fastest'"),
        (["bench", "--policies", "round_robin"], "--policies is no longer an option"),
        (["bench", "--policies"], "--policies is no longer an option"),
        (["bench", "--concurrency", "1,100"], "--concurrency is no longer an option"),
        (["bench", "--calls", "10", "--duration", "1"], "not allowed with"),
        (["bench", "--duration", "-1"], "positive number"),
        (["bench", "--repeat", "0"], "must be >= 1"),
        (["bench", "--cells", "redis"], "--cells redis needs --redis URL"),
        (["bench", "--redis", "foo"], "--redis needs a redis://"),
    ],
)
def test_bench_bad_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert fragment in one_error_line(err)
    assert out == ""


def test_bench_refuses_a_custom_catalogue(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('[[backends]]\nname = "alpha"\n', encoding="utf-8")
    status, out, err = run(capsys, "bench", "--quick", "--catalog", str(path))
    assert status == 2
    assert "default catalogue" in one_error_line(err)
    assert out == ""


def test_bench_unwritable_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "out.json"
    status, out, err = run(capsys, "bench", "--calls", "20", "--json", str(target), "--no-progress")
    assert status == 2
    assert "cannot write" in one_error_line(err)
    assert out == ""  # refused before the benchmark ran


# --------------------------------------------------------------------------- python -m benchmarks


def test_benchmarks_runner_writes_its_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n## Performance\n\nprose\n\n{_bench.README_BEGIN}\n| old |\n{_bench.README_END}\n\nafter\n",
        encoding="utf-8",
    )
    argv = ["--cells", "yardstick,engine,catalogue", "--calls", "20", "--out", str(tmp_path / "results")]
    status = benchmarks_main([*argv, "--name", "run", "--readme", str(readme), "--no-progress", "--plain"])
    out = capsys.readouterr().out
    assert status == 0
    results = tmp_path / "results"
    cells = cells_of(results / "run.json")
    assert list(cells) == ["yardstick.ptf", "yardstick.rr", "engine.ptf", "engine.rr", "catalogue.rr500"]
    markdown = (results / "run.md").read_text(encoding="utf-8")
    assert "| engine.ptf | engine select_backend(PTF) |" in markdown
    assert "≤ 1.6x" in markdown and "load average" in markdown
    if (results / "run.png").exists():
        assert (results / "run.png").read_bytes()[:4] == b"\x89PNG"
    text = readme.read_text(encoding="utf-8")
    assert "| old |" not in text
    assert "| engine select_backend(RR) | - |" in text
    assert text.startswith("# x\n\n## Performance\n\nprose\n\n") and text.endswith(
        f"{_bench.README_END}\n\nafter\n"
    )
    assert "engine.rr" in out and "wrote" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--policies", "explicit"],
        ["--concurrency", "1"],
        ["--cells", "nope"],
        ["--repeat", "0"],
        ["--no-such-option"],
    ],
)
def test_benchmarks_runner_bad_options_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        benchmarks_main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_benchmarks_runner_readme_without_markers_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n", encoding="utf-8")
    argv = ["--cells", "catalogue", "--calls", "20", "--out", str(tmp_path), "--readme", str(readme)]
    assert benchmarks_main([*argv, "--no-progress"]) == 2
    assert "no benchmark table markers" in capsys.readouterr().err
    assert readme.read_text(encoding="utf-8") == "# no table here\n"
