"""The command line refuses hostile input with exit status 2 and one error line, no traceback:
deeply nested JSON, bad Redis URLs, unknown option keys, catalogue formats it does not
read, outputs it cannot write, and async backends that are not installed. Nothing runs
before the refusal.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli._support import one_error_line, run

DEPTH = 20_000
DEEP_LIST = "[" * DEPTH + "]" * DEPTH
DEEP_OBJECT = '{"a": ' * DEPTH + "1" + "}" * DEPTH


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run ``argv``; it must exit 2 with nothing on stdout and one line on stderr, returned."""
    status, out, err = run(capsys, *argv)
    assert status == 2, err
    assert out == ""
    line = one_error_line(err)
    assert line.startswith("beamrouting: ")
    return line


# --------------------------------------------------------------------------- deeply nested JSON


@pytest.mark.parametrize("document", [DEEP_LIST, DEEP_OBJECT], ids=["list", "object"])
def test_select_refuses_deeply_nested_json(capsys: pytest.CaptureFixture[str], document: str) -> None:
    assert "REQUEST is nested too deep" in refused(capsys, "select", document)


@pytest.mark.parametrize("document", [DEEP_LIST, DEEP_OBJECT], ids=["list", "object"])
def test_explain_refuses_deeply_nested_json(capsys: pytest.CaptureFixture[str], document: str) -> None:
    assert "REQUEST is nested too deep" in refused(capsys, "explain", document)


def test_select_refuses_deeply_nested_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert "OPTIONS is nested too deep" in refused(capsys, "select", "{}", "--opts", DEEP_OBJECT)


def test_select_refuses_deeply_nested_json_on_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(DEEP_LIST))
    assert "REQUEST is nested too deep" in refused(capsys, "select", "-")


@pytest.mark.parametrize("command", [["backends"], ["select", "{}"], ["explain", "{}"]])
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_a_deeply_nested_catalogue_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str], suffix: str
) -> None:
    path = tmp_path / f"catalog{suffix}"
    if suffix == ".json":
        path.write_text('{"backends": ' + DEEP_LIST + "}", encoding="utf-8")
    else:
        path.write_text("backends = " + DEEP_LIST + "\n", encoding="utf-8")
    line = refused(capsys, *command, "--catalog", str(path))
    assert "bad catalogue" in line and "nested too deep" in line


def test_a_deeply_nested_catalogue_inside_a_valid_document_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(
        '{"backends": [{"name": "a", "aliases": ' + "[" * 500 + "]" * 500 + "}]}", encoding="utf-8"
    )
    assert "bad catalogue" in refused(capsys, "backends", "--catalog", str(path))


# --------------------------------------------------------------------------- Redis URLs


@pytest.mark.parametrize("url", ["redis://127.0.0.1:99999/0", "not-a-url", "http://localhost:6379/0", ""])
@pytest.mark.parametrize(
    "command",
    [["select", "{}"], ["demo", "--sessions", "10", "--backend", "asyncio"], ["bench", "--quick"]],
    ids=["select", "demo", "bench"],
)
def test_a_bad_redis_url_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], url: str, command: list[str]
) -> None:
    line = refused(capsys, *command, "--redis", url)
    assert "--redis needs a redis://, rediss:// or unix:// URL" in line


# --------------------------------------------------------------------------- options and catalogues


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('{"weird": 1}', "OPTIONS may hold 'backend' and 'routing', not 'weird'"),
        ('{"backend": "claude", "zzz": 1, "aaa": 2}', "not 'aaa'"),
        ("[1]", "OPTIONS must be a JSON object"),
        ('"claude"', "OPTIONS must be a JSON object"),
        ("{not json", "OPTIONS is not valid JSON"),
    ],
)
def test_select_refuses_bad_session_options(
    capsys: pytest.CaptureFixture[str], options: str, message: str
) -> None:
    assert message in refused(capsys, "select", "{}", "--opts", options)


@pytest.mark.parametrize("command", [["backends"], ["select", "{}"], ["explain", "{}"], ["bench", "--quick"]])
@pytest.mark.parametrize("name", ["cat.yaml", "cat.yml", "catalog", "cat.ini"])
def test_a_catalogue_in_another_format_is_refused_naming_the_formats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str], name: str
) -> None:
    path = tmp_path / name
    path.write_text("backends:\n  - name: alpha\n", encoding="utf-8")
    line = refused(capsys, *command, "--catalog", str(path))
    assert "TOML (.toml)" in line and "JSON (.json)" in line


def test_a_missing_catalogue_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "cannot read catalogue" in refused(capsys, "backends", "--catalog", str(tmp_path / "none.toml"))


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bench_refuses_an_output_it_cannot_write_before_running(
    capsys: pytest.CaptureFixture[str], option: str
) -> None:
    suffix = ".json" if option == "--json" else ".png"
    line = refused(capsys, "bench", "--quick", option, f"/no/such/dir/x{suffix}")
    assert f"cannot write {option}" in line and "does not exist" in line


def test_bench_refuses_an_output_folder_it_cannot_write_to(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    real_access = os.access

    def access(path: Any, mode: int, *args: Any, **kwargs: Any) -> bool:
        if Path(path) == tmp_path and mode == os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    line = refused(capsys, "bench", "--quick", "--json", str(tmp_path / "x.json"))
    assert "is not writable" in line


# --------------------------------------------------------------------------- async backends


@pytest.fixture
def no_trio(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make trio look uninstalled: not importable, and not found."""
    monkeypatch.setitem(sys.modules, "trio", None)
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name == "trio" or name.startswith("trio."):
            return None
        return real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.usefixtures("no_trio")
def test_demo_on_trio_without_trio_names_the_extra(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "demo", "--backend", "trio", "--sessions", "10")
    assert "pip install 'beamrouting[trio]'" in line


@pytest.mark.usefixtures("no_trio")
@pytest.mark.parametrize("backends", ["trio", "asyncio,trio"])
def test_bench_on_trio_without_trio_names_the_extra(
    capsys: pytest.CaptureFixture[str], backends: str
) -> None:
    line = refused(capsys, "bench", "--quick", "--backends", backends)
    assert "pip install 'beamrouting[trio]'" in line


def test_demo_refuses_redis_on_trio(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "demo", "--backend", "trio", "--redis", "redis://127.0.0.1:6379/0")
    assert "--backend asyncio or uvloop" in line


# --------------------------------------------------------------------------- oversized requests


def test_select_refuses_an_oversized_request_as_a_bad_request(capsys: pytest.CaptureFixture[str]) -> None:
    request = '{"preferred_backends": [' + ", ".join(['"claude"'] * 300) + "]}"
    line = refused(capsys, "select", request)
    assert "invalid_route_request" in line and '"max_list_entries": 256' in line


def test_select_refuses_an_oversized_affinity_key(capsys: pytest.CaptureFixture[str]) -> None:
    request = '{"policy": "sticky", "affinity_key": "' + "k" * 2000 + '"}'
    line = refused(capsys, "select", request)
    assert "invalid_affinity_key" in line and '"max_key_length": 1024' in line
