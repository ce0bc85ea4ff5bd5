"""Argument checks shared by the constructors and the public calls."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["check_callable", "check_count", "check_seconds", "is_text"]


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no lone surrogates), so it encodes anywhere."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_count(name: str, value: object, minimum: int) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``; else TypeError/ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {value}")
    return value


def check_seconds(name: str, value: object, *, finite: bool = False) -> float:
    """``value`` as a float if it is a positive number of seconds; else TypeError/ValueError.

    ``finite`` also refuses infinity, for durations that must become whole milliseconds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0 or math.isnan(value):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    if finite and math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    return float(value)


def check_callable(name: str, value: object) -> Callable[..., Any]:
    """``value`` if it can be called; else TypeError."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")
    return value
