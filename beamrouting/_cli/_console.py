"""Terminal output for the command line: tables and progress bars with rich, or plain text.

rich (the ``cli`` extra) is imported lazily, on first use; without it, or with ``plain=True``,
everything is printed as aligned plain text, and nothing else changes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TextIO

__all__ = ["Output", "ProgressBar", "rich_available"]


def rich_available() -> bool:
    """Whether rich can be imported."""
    try:
        import rich.console  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressBar(Protocol):
    """What a running progress display accepts."""

    def update(self, completed: int, description: str | None = None) -> None:
        """Set how much is done (and optionally what is happening)."""

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        """Add ``steps`` to what is done."""


class _PlainProgress:
    """Progress as a line on stderr every tenth of the total (or on a new description)."""

    def __init__(self, total: int, description: str, stream: TextIO) -> None:
        self._total = max(total, 1)
        self._stream = stream
        self._completed = 0
        self._description = description
        self._next_tenth = 1
        self._start = time.perf_counter()
        self._emit()

    def _emit(self) -> None:
        pct = 100 * self._completed // self._total
        elapsed = time.perf_counter() - self._start
        print(
            f"  {self._description}: {pct:3d}% ({self._completed:,}/{self._total:,}) {elapsed:5.1f}s",
            file=self._stream,
        )

    def update(self, completed: int, description: str | None = None) -> None:
        self._completed = min(completed, self._total)
        changed = description is not None and description != self._description
        if description is not None:
            self._description = description
        tenth = 10 * self._completed // self._total
        if changed or tenth >= self._next_tenth:
            self._next_tenth = tenth + 1
            self._emit()

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        self.update(self._completed + steps, description)


class _RichProgress:
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def update(self, completed: int, description: str | None = None) -> None:
        if description is None:
            self._progress.update(self._task, completed=completed)
        else:
            self._progress.update(self._task, completed=completed, description=description)

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        if description is None:
            self._progress.update(self._task, advance=steps)
        else:
            self._progress.update(self._task, advance=steps, description=description)


class _QuietProgress:
    def update(self, completed: int, description: str | None = None) -> None:
        pass

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        pass


class Output:
    """Prints tables, text and progress to stdout (progress and errors to stderr).

    With ``plain=False`` and rich installed, tables and progress bars use rich; otherwise
    plain text. Every cell is printed literally (never parsed as markup).
    """

    def __init__(
        self, *, plain: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self._console: Any = None
        self._err_console: Any = None
        if not plain:
            try:
                from rich.console import Console
            except ImportError:
                pass
            else:
                width = None if self.stdout.isatty() else 120
                self._console = Console(file=self.stdout, width=width, highlight=False)
                self._err_console = Console(file=self.stderr, highlight=False)

    @property
    def rich(self) -> bool:
        """Whether rich renders the output."""
        return self._console is not None

    @property
    def console(self) -> Any:
        """The rich console printing to stdout (``None`` for plain text)."""
        return self._console

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """Print one line of text."""
        if self._console is None:
            print(text, file=self.stdout)
        else:
            from rich.text import Text

            self._console.print(Text(text, style=style or ""), soft_wrap=True)

    def heading(self, text: str) -> None:
        """Print a section heading."""
        if self._console is None:
            print(f"\n{text}\n{'-' * len(text)}", file=self.stdout)
        else:
            from rich.rule import Rule

            self._console.print(Rule(text, align="left"))

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[object]],
        *,
        title: str | None = None,
        right: Sequence[int] = (),
    ) -> None:
        """Print a table; columns whose index is in ``right`` are right-aligned."""
        cells = [["" if value is None else str(value) for value in row] for row in rows]
        if self._console is None:
            widths = [len(h) for h in headers]
            for row in cells:
                for i, value in enumerate(row):
                    widths[i] = max(widths[i], len(value))

            def fmt(row: Sequence[str]) -> str:
                parts = [v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(row)]
                return "  ".join(parts).rstrip()

            if title:
                print(title, file=self.stdout)
            print(fmt(headers), file=self.stdout)
            print("  ".join("-" * w for w in widths), file=self.stdout)
            for row in cells:
                print(fmt(row), file=self.stdout)
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(title) if title else None, title_justify="left", show_lines=False)
        for i, header in enumerate(headers):
            table.add_column(Text(header), justify="right" if i in right else "left", overflow="fold")
        for row in cells:
            table.add_row(*(Text(v) for v in row))
        self._console.print(table)

    def error(self, text: str) -> None:
        """Print one line to stderr."""
        print(text, file=self.stderr)

    @contextmanager
    def progress(self, total: int, description: str, *, enabled: bool = True) -> Iterator[ProgressBar]:
        """A progress display on stderr for ``total`` steps (a no-op when not ``enabled``)."""
        if not enabled:
            yield _QuietProgress()
            return
        if self._err_console is None:
            yield _PlainProgress(total, description, self.stderr)
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._err_console,
        ) as progress:
            task = progress.add_task(description, total=total)
            yield _RichProgress(progress, task)
