"""Argument types for the command-line parsers (``beamrouting`` and ``python -m benchmarks``).

Each turns an option's text into a value or raises :class:`argparse.ArgumentTypeError`,
whose message argparse prints after the option's name.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

__all__ = ["comma_separated", "concurrency_levels", "positive_float", "positive_int"]


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def concurrency_levels(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 1 (``"1,10,100"``)."""
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"concurrency must be comma-separated integers, not {text!r}"
        ) from None
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be integers >= 1")
    return levels


def comma_separated(choices: Sequence[str] | None, kind: str) -> Callable[[str], tuple[str, ...]]:
    """A type for comma-separated names (each one of ``choices`` unless that is ``None``),
    deduplicated in order; ``kind`` names one item in error messages."""

    def parse(text: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        if not items:
            raise argparse.ArgumentTypeError(f"no {kind} given")
        if choices is not None:
            for item in items:
                if item not in choices:
                    raise argparse.ArgumentTypeError(
                        f"unknown {kind} {item!r} (choose from {', '.join(choices)})"
                    )
        return items

    return parse
