"""Hostile values on the engine and the catalogue: strings whose own methods explode are used
by their characters or refused with a typed error, never let through as themselves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from beamrouting import Catalog, CatalogError, InvalidPolicyProfile, PolicyDenied, RoutingEngine
from tests._edges import HostileObject, HostileStr, hostile_profile


class ExplodingPath:
    """An ``os.PathLike`` whose ``__fspath__`` raises."""

    def __fspath__(self) -> str:
        raise RuntimeError("__fspath__ exploded")


class NotAPath:
    """An ``os.PathLike`` whose ``__fspath__`` gives no path."""

    def __fspath__(self) -> Any:
        return 5


# --------------------------------------------------------------------------- profiles


def test_engine_stores_hostile_profile_strings_as_plain_strings() -> None:
    engine = RoutingEngine()
    engine.put_policy_profile("p", hostile_profile())
    stored = engine.policy_profiles()["p"]
    assert type(stored.default) is str and type(stored.mode) is str
    for rule in stored.rules:
        assert all(type(value) is str for value in (rule.action, rule.decision, rule.reason))
    assert [type(part) for part in stored.rules[0].match] == [str, str, str]
    assert stored.rules[1].match == "*" and type(stored.rules[1].match) is str
    with pytest.raises(PolicyDenied) as info:
        engine.select_backend({"backend": "claude", "policy_profile_id": "p"})
    assert info.value.detail == "claude is out"
    assert engine.select_backend({"backend": "codex", "policy_profile_id": "p"}).backend == "codex"
    assert json.loads(json.dumps(stored.to_dict())) == {
        "default": "allow",
        "rules": [
            {
                "action": "backend",
                "decision": "deny",
                "match": ["eq", "backend", "claude"],
                "reason": "claude is out",
            },
            {"action": "*", "decision": "allow", "match": "*", "reason": "denied by policy profile"},
        ],
    }


def test_a_hostile_filtering_profile_is_stored_as_plain_strings() -> None:
    engine = RoutingEngine()
    profile = hostile_profile()
    profile["mode"] = HostileStr("filter")
    engine.put_policy_profile("p", profile)
    assert engine.policy_profiles()["p"].mode == "filter"
    picks = [
        engine.select_backend({"policy": "round_robin", "policy_profile_id": "p"}).backend for _ in range(4)
    ]
    assert picks == ["codex", "copilot", "gemini", "opencode"]


@pytest.mark.parametrize(
    "profile",
    [
        {"default": HostileStr("maybe")},
        {"default": HostileObject()},
        {"mode": HostileStr("sieve")},
        {"mode": HostileObject()},
        {"rules": [{"decision": HostileStr("perhaps")}]},
        {"rules": [{"decision": HostileObject()}]},
        {"rules": [{"action": HostileStr("")}]},
        {"rules": [{"action": HostileObject()}]},
        {"rules": [{"match": [HostileStr("like"), "backend", "x"]}]},
        {"rules": [{"match": HostileObject()}]},
        {"rules": [{"match": ["eq", HostileObject(), "x"]}]},
        {"rules": [{"match": ["eq", "backend", HostileObject()]}]},
        {"rules": [{"reason": HostileObject()}]},
        {"rules": HostileObject()},
    ],
)
def test_hostile_profiles_that_are_not_valid_are_invalid_policy_profile(profile: dict[str, Any]) -> None:
    engine = RoutingEngine()
    with pytest.raises(InvalidPolicyProfile):
        engine.put_policy_profile("p", profile)
    assert engine.policy_profiles() == {}


def test_a_hostile_profile_id_is_used_by_its_characters() -> None:
    engine = RoutingEngine()
    engine.put_policy_profile(HostileStr("team"), {"default": "deny"})
    assert list(engine.policy_profiles()) == ["team"]
    with pytest.raises(InvalidPolicyProfile):
        engine.put_policy_profile(HostileObject(), {})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- catalogue


def test_catalog_from_dict_with_a_hostile_name_object_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError):
        Catalog.from_dict({"backends": [{"name": HostileObject()}]})
    with pytest.raises(CatalogError):
        Catalog.from_dict({"backends": [HostileObject()]})
    with pytest.raises(CatalogError):
        Catalog.from_dict(HostileObject())  # type: ignore[arg-type]
    with pytest.raises(CatalogError):
        Catalog.from_dict({"backends": [{"name": "a", "aliases": [HostileObject()]}]})


def test_catalog_from_dict_keeps_hostile_strings_as_plain_strings() -> None:
    catalog = Catalog.from_dict(
        {
            "backends": [{"name": HostileStr("alpha"), "aliases": [HostileStr("alpha_cli")]}],
            "capabilities": [HostileStr("hooks")],
        }
    )
    assert catalog.backends == ("alpha",) and type(catalog.backends[0]) is str
    assert dict(catalog.aliases) == {"alpha": "alpha", "alpha_cli": "alpha"}
    assert all(type(alias) is str for alias in catalog.aliases)
    assert catalog.capabilities == ("hooks",)
    engine = RoutingEngine(catalog)
    assert engine.select_backend({"backend": "alpha_cli"}).backend == "alpha"


def test_catalog_canonical_never_calls_a_hostile_value() -> None:
    catalog = Catalog.default()
    assert catalog.canonical(HostileStr("claude_code")) == "claude"
    assert catalog.canonical(HostileObject()) is None
    assert catalog.canonical(["claude"]) is None


@pytest.mark.parametrize(
    "path", [ExplodingPath(), NotAPath(), HostileObject(), HostileStr("catalog.json"), 5, None, b"cat.json"]
)
def test_catalog_from_file_with_a_hostile_path_is_a_catalog_error(path: Any) -> None:
    with pytest.raises(CatalogError):
        Catalog.from_file(path)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_a_deeply_nested_json_catalogue_is_a_catalog_error(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{"backends": ' + "[" * depth + "]" * depth + "}", encoding="utf-8")
    with pytest.raises(CatalogError):
        Catalog.from_file(path)


def test_a_deeply_nested_toml_catalogue_is_a_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text("backends = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        Catalog.from_file(path)
    assert "nested too deep" in str(info.value)


@pytest.mark.parametrize("name", ["catalog.yaml", "catalog.yml", "CATALOG.YAML", "catalog"])
def test_a_catalogue_file_in_another_format_names_the_supported_formats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("backends:\n  - name: alpha\n", encoding="utf-8")
    with pytest.raises(CatalogError) as info:
        Catalog.from_file(path)
    assert "TOML (.toml)" in str(info.value) and "JSON (.json)" in str(info.value)
    with pytest.raises(CatalogError):
        Catalog.from_file(os.fspath(path))


def test_catalog_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        Catalog.from_file("catalog.yaml")


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("size", [2**63, 2**70, 10**100])
def test_an_oversized_journal_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        RoutingEngine(journal_size=size)


def test_the_largest_options_are_refused_with_value_errors_not_crashes() -> None:
    for option in ("max_counters", "max_bindings", "max_sessions", "max_key_length", "max_list_entries"):
        with pytest.raises(ValueError):
            options: dict[str, Any] = {option: 2**70}
            RoutingEngine(**options)
