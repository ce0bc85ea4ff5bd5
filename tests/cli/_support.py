"""What the command-line tests share: running the command line in-process and reading its one error line."""

from __future__ import annotations

import pytest

from beamrouting._cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line in-process; return (status, stdout, stderr). Never a traceback."""
    status = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "Traceback" not in captured.out
    return status, captured.out, captured.err


def one_error_line(err: str) -> str:
    """The one non-blank line ``err`` holds, which names the program."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("beamrouting")
    return lines[0]
