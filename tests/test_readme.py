"""README.md stays true: its quick-start commands are the ones CI runs, and every example runs.

The ``python`` blocks run in order in one namespace (as a reader pastes them into one
session), in a scratch directory holding the files the ``toml`` blocks name on their first
line (``# beamrouting.toml``). The Redis URL the examples use is replaced by a test
server's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._helpers import REPO_ROOT

README = REPO_ROOT / "README.md"
EXAMPLE_REDIS_URL = "redis://localhost:6379/0"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    """The fenced blocks of README.md in ``language``, in order."""
    return [body for lang, body in FENCE.findall(README.read_text(encoding="utf-8")) if lang == language]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A working directory holding the files the README's ``toml`` blocks name."""
    for body in blocks("toml"):
        first = body.splitlines()[0]
        if first.startswith("# ") and first.endswith((".toml", ".json")):
            (tmp_path / first[2:].strip()).write_text(body, encoding="utf-8")
    before = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(before)


def test_the_quick_start_commands_come_first_and_ci_runs_the_test_command() -> None:
    console = blocks("console")
    assert console[0].strip() == "$ pip install -e '.[cli]' && beamrouting demo"
    assert console[1].strip() == "$ pip install -e '.[dev]' && python -m pytest"
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pip install -q -e '.[dev]'" in ci
    assert re.search(r"^\s+run tests .*python -m pytest$", ci, re.MULTILINE)


def test_the_toml_examples_are_files_the_examples_read(scratch: Path) -> None:
    assert sorted(path.name for path in scratch.iterdir()) == ["backends.toml", "beamrouting.toml"]


@pytest.mark.redis
def test_every_python_example_runs_in_order(
    scratch: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("prometheus_client")
    namespace: dict[str, object] = {"__name__": "readme"}
    python = blocks("python")
    assert len(python) >= 10
    for index, body in enumerate(python):
        code = compile(
            body.replace(EXAMPLE_REDIS_URL, redis_url), f"README.md python block {index + 1}", "exec"
        )
        exec(code, namespace)  # the README's own examples
    printed = capsys.readouterr().out
    # What the examples say they print.
    assert "codex is cooling down" in printed
    assert "claude is full" in printed
    assert "beamrouting_decisions_total" in printed
