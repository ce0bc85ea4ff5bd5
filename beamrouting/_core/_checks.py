"""Argument checks: the one validation style of every constructor option and public argument.

A value of the wrong type raises :class:`TypeError`; a value of the right type that is out
of range raises :class:`ValueError`. Each message names the option, says what it must be and
shows what it got.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection
from typing import Any, TypeVar

__all__ = [
    "check_callable",
    "check_choice",
    "check_count",
    "check_instance",
    "check_seconds",
    "check_text",
    "is_text",
    "optional",
]

_T = TypeVar("_T")


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode text (no lone surrogates), so it encodes anywhere."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _type_name(value: object) -> str:
    return type(value).__name__


def check_count(name: str, value: object, minimum: int, maximum: int = sys.maxsize) -> int:
    """``value`` as a plain ``int`` if it is an ``int`` (not a ``bool``) from ``minimum`` to ``maximum``.

    Raises :class:`TypeError` for another type and :class:`ValueError` out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {_type_name(value)}")
    number = int.__int__(value)
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, not {number}")
    if number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, not {number}")
    return number


def check_seconds(name: str, value: object, *, finite: bool = False, minimum: float | None = None) -> float:
    """``value`` as a float if it is a positive number of seconds.

    ``finite`` also refuses infinity, for durations that must become whole milliseconds;
    ``minimum`` (inclusive) replaces "positive" when zero is allowed. Raises
    :class:`TypeError` for a non-number and :class:`ValueError` for a value out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {_type_name(value)}")
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, not nan")
    if minimum is None and not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    if minimum is not None and seconds < minimum:
        raise ValueError(f"{name} must be a number of seconds >= {minimum:g}, not {value!r}")
    if finite and math.isinf(seconds):
        raise ValueError(f"{name} must be a finite number of seconds, not {value!r}")
    return seconds


def check_callable(name: str, value: object) -> Callable[..., Any]:
    """``value`` if it can be called; else :class:`TypeError`."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {_type_name(value)}")
    return value


def check_text(name: str, value: object) -> str:
    """``value`` as a plain ``str`` if it is non-empty valid text.

    Raises :class:`TypeError` for a non-``str`` and :class:`ValueError` for an empty string
    or one with lone surrogates. A ``str`` subclass is reduced to its plain value without
    calling any of its methods.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_type_name(value)}")
    text = str.__str__(value)
    if not text or not is_text(text):
        raise ValueError(f"{name} must be a non-empty string of valid text, not {text!r}")
    return text


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` as a plain ``str`` if it is one of ``choices``.

    Raises :class:`TypeError` for a non-``str`` and :class:`ValueError` for another string.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_type_name(value)}")
    text = str.__str__(value)
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {text!r}")
    return text


def check_instance(name: str, value: object, kind: type[_T] | tuple[type[_T], ...]) -> _T:
    """``value`` if it is an instance of ``kind``; else :class:`TypeError`."""
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise TypeError(f"{name} must be a {names}, not {_type_name(value)}")
    return value


def optional(check: Callable[..., _T], name: str, value: object, *args: Any, **kwargs: Any) -> _T | None:
    """``None`` for ``None``, else ``check(name, value, *args, **kwargs)``."""
    if value is None:
        return None
    return check(name, value, *args, **kwargs)
