"""Policy profiles: allow/deny rules checked against a decision after selection (section 6), or
against each candidate before it (``mode: "filter"``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import msgspec

from ._checks import is_text
from ._errors import InvalidPolicyProfile

__all__ = ["PolicyProfile", "ProfileRule", "parse_profile"]

_PROFILE_KEYS: Final = frozenset({"default", "mode", "rules"})
_RULE_KEYS: Final = frozenset({"action", "decision", "match", "reason"})
_ROUTING_ACTIONS: Final = frozenset({"backend", "*"})
_MATCH_OPS: Final = {"exists": 2, "eq": 3, "member": 3, "prefix": 3, "path_prefix": 3}

Context = Mapping[str, Any]
"""``{"backend": B, "decision": {...}, "request": {...}}`` as section 6 describes."""


class ProfileRule(msgspec.Struct, frozen=True):
    """One validated rule of a policy profile."""

    action: str
    """What the rule is about (``"backend"``, ``"routing"``, ...)."""
    decision: Literal["allow", "deny"]
    """``"allow"`` or ``"deny"`` when it matches."""
    match: Any
    """The condition, such as ``["eq", "backend", "codex"]``."""
    reason: str
    """Why, reported with a deny."""


class PolicyProfile(msgspec.Struct, frozen=True):
    """A validated policy profile: a default, rules and a mode, as stored.

    ``mode`` is ``"veto"`` (the default, the reference behaviour: the profile checks the
    decision after selection, and a deny fails the request) or ``"filter"`` (the profile
    checks each candidate before selection and removes the denied ones, so selection goes
    on among the rest; not in the reference engine).
    """

    default: Literal["allow", "deny"] = "allow"
    """What applies when no rule matches."""
    rules: tuple[ProfileRule, ...] = ()
    """The rules, deny rules checked before allow rules."""
    mode: Literal["veto", "filter"] = "veto"
    """``"veto"`` (check the decision) or ``"filter"`` (remove denied candidates)."""

    def evaluate(self, context: Callable[[], Context]) -> str | None:
        """Return ``None`` to allow, or the deny reason.

        ``context`` builds the evaluation context on demand, so a profile without rules
        costs nothing.
        """
        routing_rules = [r for r in self.rules if r.action in _ROUTING_ACTIONS]
        if routing_rules:
            ctx = context()
            for rule in routing_rules:
                if rule.decision == "deny" and _matches(rule.match, ctx):
                    return rule.reason
            for rule in routing_rules:
                if rule.decision == "allow" and _matches(rule.match, ctx):
                    return None
        if self.default == "deny":
            return "denied by policy profile default"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as plain data (the shape :func:`parse_profile` reads).

        ``mode`` is left out for a veto profile, so that stores shared with processes that
        predate filtering profiles can read it.
        """
        data: dict[str, Any] = msgspec.to_builtins(self)
        if self.mode == "veto":
            del data["mode"]
        return data

    @property
    def filters(self) -> bool:
        """Whether the profile filters candidates before selection (``mode == "filter"``)."""
        return self.mode == "filter"


def _walk(context: Context, path: Any) -> Any:
    steps = path if isinstance(path, (list, tuple)) else (path,)
    value: Any = context
    for step in steps:
        if not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


def _matches(match: Any, context: Context) -> bool:
    if match == "*":
        return True
    op, path = match[0], match[1]
    value = _walk(context, path)
    if op == "exists":
        return value is not None
    expected = match[2]
    if op == "eq":
        return bool(value == expected)
    if op == "member":
        return any(value == item for item in expected)
    if not isinstance(value, str):
        return False
    if op == "prefix":
        return value.startswith(expected)
    return value.replace("\\", "/").startswith(expected.replace("\\", "/"))


def _freeze(value: Any) -> Any:
    """``value`` as plain data: lists, str-keyed dicts and exact scalars (no subclass methods kept)."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, (list, tuple)):
        return [_freeze(item) for item in value]
    if isinstance(value, Mapping):
        return {_plain_key(k): _freeze(v) for k, v in value.items()}
    return value


def _plain_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidPolicyProfile("match values must be plain data (mappings with string keys)")
    return str.__str__(key)


def _plain(value: object) -> object:
    """A ``str`` subclass reduced to its plain value (never calling its methods); anything else as it is."""
    return str.__str__(value) if isinstance(value, str) else value


def _check_path(path: Any, where: str) -> None:
    if isinstance(path, str):
        return
    if isinstance(path, (list, tuple)) and path and all(isinstance(step, str) for step in path):
        return
    raise InvalidPolicyProfile(f"{where}: a path must be a key or a non-empty list of keys")


def _check_match(match: Any, where: str) -> Any:
    match = _plain(match)
    if match == "*":
        return "*"
    if not isinstance(match, (list, tuple)) or not match or not isinstance(match[0], str):
        raise InvalidPolicyProfile(f"{where}: match must be '*' or [operator, path, ...]")
    match = _freeze(match)
    op = match[0]
    arity = _MATCH_OPS.get(op)
    if arity is None:
        raise InvalidPolicyProfile(f"{where}: unknown match operator {op!r}")
    if len(match) != arity:
        raise InvalidPolicyProfile(f"{where}: {op!r} takes {arity - 1} argument(s)")
    _check_path(match[1], where)
    if op == "member" and not isinstance(match[2], list):
        raise InvalidPolicyProfile(f"{where}: 'member' needs a list of values")
    if op in ("prefix", "path_prefix") and not isinstance(match[2], str):
        raise InvalidPolicyProfile(f"{where}: {op!r} needs a string prefix")
    try:
        msgspec.msgpack.encode(match)
    except (TypeError, ValueError, OverflowError):
        raise InvalidPolicyProfile(f"{where}: match values must be plain data") from None
    return match


def _parse_rule(rule: Any, index: int) -> ProfileRule:
    where = f"rules[{index}]"
    if not isinstance(rule, Mapping):
        raise InvalidPolicyProfile(f"{where} must be a mapping")
    unknown = sorted(str(k) for k in rule if k not in _RULE_KEYS)
    if unknown:
        raise InvalidPolicyProfile(f"{where}: unsupported key {unknown[0]!r}")
    action = _plain(rule.get("action", "*"))
    if not isinstance(action, str) or not action or not is_text(action):
        raise InvalidPolicyProfile(f"{where}: action must be a non-empty string")
    decision = _plain(rule.get("decision", "deny"))
    if not isinstance(decision, str) or decision not in ("allow", "deny"):
        raise InvalidPolicyProfile(f"{where}: decision must be 'allow' or 'deny'")
    reason = _plain(rule.get("reason", "denied by policy profile"))
    if not isinstance(reason, str) or not is_text(reason):
        raise InvalidPolicyProfile(f"{where}: reason must be a string")
    match = _check_match(rule.get("match", "*"), where)
    return ProfileRule(action, "allow" if decision == "allow" else "deny", match, reason)


def parse_profile(profile: object) -> PolicyProfile:
    """Validate a profile mapping and return it as a :class:`PolicyProfile`.

    Raises :class:`InvalidPolicyProfile` naming what is wrong.
    """
    try:
        return _parse_profile(profile)
    except InvalidPolicyProfile:
        raise
    except Exception:  # values whose own methods fail cannot be part of a profile
        raise InvalidPolicyProfile("the profile holds values that are not plain data") from None


def _parse_profile(profile: object) -> PolicyProfile:
    if isinstance(profile, PolicyProfile):
        return profile
    if not isinstance(profile, Mapping):
        raise InvalidPolicyProfile("a profile must be a mapping")
    try:
        unknown = sorted(str(k) for k in profile if k not in _PROFILE_KEYS)
    except TypeError:
        raise InvalidPolicyProfile("a profile's keys must be strings") from None
    if unknown:
        raise InvalidPolicyProfile(f"unsupported key {unknown[0]!r}")
    default = _plain(profile.get("default", "allow"))
    if not isinstance(default, str) or default not in ("allow", "deny"):
        raise InvalidPolicyProfile("default must be 'allow' or 'deny'")
    mode = _plain(profile.get("mode", "veto"))
    if not isinstance(mode, str) or mode not in ("veto", "filter"):
        raise InvalidPolicyProfile("mode must be 'veto' or 'filter'")
    rules = profile.get("rules", [])
    if not isinstance(rules, (list, tuple)):
        raise InvalidPolicyProfile("rules must be a list")
    parsed = tuple(_parse_rule(rule, i) for i, rule in enumerate(rules))
    return PolicyProfile(
        "allow" if default == "allow" else "deny", parsed, "filter" if mode == "filter" else "veto"
    )


def check_profile_id(profile_id: object) -> str:
    """Return ``profile_id`` (as a plain ``str``) if it is non-empty text, else raise :class:`InvalidPolicyProfile`."""
    if not isinstance(profile_id, str) or not profile_id or not is_text(profile_id):
        raise InvalidPolicyProfile("a profile id must be a non-empty string")
    return str.__str__(profile_id)
