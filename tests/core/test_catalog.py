"""The catalogue: the default one, immutability, derived and custom catalogues, validation
and the dict round trip.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from beamrouting import BackendSpec, Catalog, CatalogError, RoutingEngine
from tests._helpers import BACKENDS
from tests.core._support import ALIASES, RR, backends, outcome

ALL_CAPABILITIES = (
    "session_lifecycle",
    "session_info",
    "runtime_model_switch",
    "interrupt",
    "permission_mode",
    "session_history",
    "session_mutation",
    "thread_management",
    "metadata_accessors",
    "in_process_mcp",
    "mcp_management",
    "hooks",
    "checkpointing",
    "thinking_budget",
    "task_stop",
    "command_execution",
    "approval_callbacks",
    "user_input_callbacks",
    "realtime_review",
    "config_management",
    "provider_management",
    "attachments",
    "event_streaming",
    "memory",
)


def test_default_catalogue() -> None:
    catalog = Catalog.default()
    assert catalog.backends == BACKENDS
    assert catalog.capabilities == ALL_CAPABILITIES
    assert len(catalog.capabilities) == 24
    expected_aliases = {spelling: name for name, spellings in ALIASES.items() for spelling in spellings}
    assert dict(catalog.aliases) == expected_aliases
    for backend in BACKENDS:
        assert catalog.supported(backend) == frozenset(ALL_CAPABILITIES)
        assert catalog.canonical(backend) == backend
    assert catalog.canonical("Claude") is None
    assert catalog.canonical("auto") is None
    assert catalog.canonical(["claude"]) is None
    assert Catalog.default() is Catalog.default()


def test_catalogue_is_immutable() -> None:
    catalog = Catalog.default()
    with pytest.raises(AttributeError):
        catalog._backends = ("x",)
    with pytest.raises(TypeError):
        catalog.aliases["new"] = "claude"  # type: ignore[index]
    assert isinstance(catalog.backends, tuple) and isinstance(catalog.capabilities, tuple)
    assert catalog.backends == BACKENDS


def test_with_support_derives_a_new_catalogue() -> None:
    catalog = Catalog.default()
    derived = catalog.with_support("codex_cli", "hooks", False)
    assert not derived.supports("codex", "hooks")
    assert catalog.supports("codex", "hooks")
    assert derived != catalog
    assert derived.with_support("codex", "hooks", True) == catalog
    engine = RoutingEngine(derived)
    assert outcome(engine, {"backend": "codex", "capabilities": ["hooks"]}) == (
        "backend_not_eligible",
        "codex",
    )
    assert engine.select_backend({"backend": "codex", "capabilities": ["memory"]}).backend == "codex"
    with pytest.raises(CatalogError):
        catalog.with_support("bogus", "hooks", True)
    with pytest.raises(CatalogError):
        catalog.with_support("codex", "teleport", True)


def test_a_custom_catalogue_is_routable() -> None:
    catalog = Catalog([BackendSpec("alpha", aliases=("a1",)), BackendSpec("beta", capabilities=("hooks",))])
    engine = RoutingEngine(catalog)
    assert engine.select_backend({"backend": "a1"}).backend == "alpha"
    assert engine.select_backend({}).candidates == ("alpha", "beta")
    assert outcome(engine, {"backend": "claude"}) == ("unknown_backend", "claude")
    # beta supports only hooks; alpha supports every capability
    assert engine.select_backend({"policy": "capability_first", "capabilities": ["memory"]}).candidates == (
        "alpha",
    )
    assert engine.select_backend({"excluded_backends": ["a1"], "capabilities": ["hooks"]}).backend == "beta"
    assert outcome(engine, {"backend": "beta", "capabilities": ["memory"]}) == (
        "backend_not_eligible",
        "beta",
    )
    assert backends(engine, RR, 3) == ["alpha", "beta", "alpha"]
    sticky = engine.select_backend({"policy": "sticky", "affinity_key": "k", "health": {"a1": "down"}})
    assert sticky.backend == "beta"
    assert engine.select_backend({"policy": "sticky", "affinity_key": "k"}).backend == "beta"


def test_catalogue_capability_ids_are_its_own() -> None:
    catalog = Catalog([BackendSpec("x", capabilities=("fly",))], capabilities=("fly", "swim"))
    engine = RoutingEngine(catalog)
    assert engine.select_backend({"capabilities": ["fly"]}).backend == "x"
    assert outcome(engine, {"capabilities": ["swim"]})[0] == "no_backend_available"
    assert outcome(engine, {"capabilities": ["hooks"]}) == ("unknown_capability", "hooks")


@pytest.mark.parametrize(
    ("backends_", "capabilities"),
    [
        ([], ALL_CAPABILITIES),
        ([BackendSpec("a"), BackendSpec("a")], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("b",)), BackendSpec("b")], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("x",)), BackendSpec("b", aliases=("x",))], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("x", "x"))], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("",))], ALL_CAPABILITIES),
        ([BackendSpec("auto")], ALL_CAPABILITIES),
        ([BackendSpec("a", aliases=("auto",))], ALL_CAPABILITIES),
        ([BackendSpec("")], ALL_CAPABILITIES),
        ([BackendSpec("a", capabilities=("teleport",))], ALL_CAPABILITIES),
        ([BackendSpec("a")], ("x", "x")),
        ([BackendSpec("a")], "hooks"),
        ("alpha", ALL_CAPABILITIES),
    ],
)
def test_malformed_catalogues_raise_catalog_error(backends_: Any, capabilities: Any) -> None:
    with pytest.raises(CatalogError):
        Catalog(backends_, capabilities)


def test_catalogue_dict_round_trip() -> None:
    catalog = Catalog([BackendSpec("alpha", aliases=("a1",)), BackendSpec("beta", capabilities=("hooks",))])
    assert Catalog.from_dict(catalog.to_dict()) == catalog
    assert Catalog.from_dict(Catalog.default().to_dict()) == Catalog.default()
    with pytest.raises(CatalogError):
        Catalog.from_dict({"backends": [{"name": "a", "colour": "red"}]})


def test_backend_spec_is_frozen() -> None:
    spec = BackendSpec("alpha", aliases=("a1",))
    with pytest.raises(AttributeError):
        spec.name = "beta"  # type: ignore[misc]
    assert msgspec.structs.asdict(spec) == {"name": "alpha", "aliases": ("a1",), "capabilities": None}
