"""One configuration file: load_config, Router.from_config and Router.reload.

A valid file becomes typed structs; an invalid one raises ConfigError naming the field, why
and the line. A router built from a file has its catalogue, store, settings and options,
and puts its profiles when it starts. ``reload`` applies profiles, limits, weights and the
health policy in one step, or nothing when it refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from beamrouting import (
    BackendAtCapacity,
    BackendStatus,
    Catalog,
    Config,
    ConfigError,
    HealthPolicy,
    MemoryStore,
    NoBackendAvailable,
    PolicyDenied,
    PolicyProfile,
    Router,
    RouterOptions,
    RoutingEngine,
    RoutingSettings,
    StoreConfig,
    load_config,
)
from tests._helpers import BACKENDS, FakeClock

pytestmark = pytest.mark.anyio

ONLY = {b: {"excluded_backends": [o for o in BACKENDS if o != b]} for b in BACKENDS}
"""Requests that only ``b`` can serve (so a held-out ``b`` means no backend at all)."""

FULL = """\
# every section, as documented
[catalog]
capabilities = ["hooks", "interrupt", "mcp_management"]

[[catalog.backends]]
name = "claude"
aliases = ["claude_code"]

[[catalog.backends]]
name = "codex"
capabilities = ["hooks"]

[[catalog.backends]]
name = "gemini"

[profiles.ci]
default = "allow"
mode = "filter"

[[profiles.ci.rules]]
action = "backend"
decision = "deny"
match = ["eq", "backend", "gemini"]
reason = "gemini is not for CI"

[health]
failure_threshold = 3
base_ejection = 10.0
max_ejection = 120.0

[limits]
claude_code = 2

[weights]
claude = 3
codex = 1

[store]
journal_size = 500
max_sessions = 1000

[router]
call_timeout = 2.5
max_waiters = 50
"""


def engine_of(router: Router) -> RoutingEngine:
    """The engine of a router on the in-memory store."""
    store = router.store
    assert isinstance(store, MemoryStore)
    return store.engine


def write(tmp_path: Path, text: str, name: str = "beamrouting.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- load_config


def test_a_full_file_becomes_typed_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.catalog.backends == ("claude", "codex", "gemini")
    assert config.catalog.supported("codex") == frozenset({"hooks"})
    assert config.settings.limits == {"claude": 2}  # an alias, stored canonical
    assert config.settings.weights == {"claude": 3, "codex": 1}
    assert config.settings.health == HealthPolicy(failure_threshold=3, base_ejection=10.0, max_ejection=120.0)
    profile = config.settings.profiles["ci"]
    assert isinstance(profile, PolicyProfile) and profile.mode == "filter" and len(profile.rules) == 1
    assert config.store == StoreConfig(journal_size=500, max_sessions=1000)
    assert config.router == RouterOptions(call_timeout=2.5, max_waiters=50)
    assert config.source == str(tmp_path / "beamrouting.toml")


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config == Config(source=config.source)
    assert config.catalog == Catalog.default()
    assert config.settings == RoutingSettings()
    assert config.store.kind == "memory"


def test_json_reads_as_toml_does(tmp_path: Path) -> None:
    data = {
        "limits": {"codex": 4},
        "health": {"enabled": False},
        "store": {"kind": "redis", "url": "redis://localhost:6379/0", "prefix": "team-a:"},
    }
    config = load_config(write(tmp_path, json.dumps(data, indent=1), "fleet.json"))
    assert config.settings.limits == {"codex": 4}
    assert config.settings.health is None  # learning off
    assert config.store == StoreConfig(kind="redis", url="redis://localhost:6379/0", prefix="team-a:")


@pytest.mark.parametrize(
    ("text", "field", "line", "why"),
    [
        ("[store\nx = 1\n", None, 1, "not valid TOML"),
        ("surprise = 1\n", "surprise", 1, "unknown section"),
        ("[router]\n\ncolour = 'red'\n", "router.colour", 3, "unknown option"),
        ("[store]\njournal_size = -1\n", "store.journal_size", 2, ">= 0"),
        ("[store]\njournal_size = 'many'\n", "store.journal_size", 2, "Expected `int"),
        ("[store]\nkind = 'redis'\n", "store.url", 1, "needs its url"),
        ("[store]\nkind = 'disk'\n", "store.kind", 2, "Invalid enum value 'disk'"),
        ("[store]\nurl = 'redis://x'\n", "store.url", 2, "other kind of store"),
        (
            "[store]\nkind = 'redis'\nurl = 'redis://x'\nmax_sessions = 5\n",
            "store.max_sessions",
            4,
            "other kind",
        ),
        ("[limits]\nclaude = 10\nnobody = 3\n", "limits.nobody", 3, "no backend of the catalogue"),
        ("[limits]\nclaude = 0\n", "limits.claude", 2, ">= 1"),
        ("[weights]\nclaude = 10001\n", "weights.claude", 2, "<= 10000"),
        ("[limits]\nclaude = 1\nclaude_code = 2\n", "limits", 1, "given twice"),
        (
            "[health]\nbase_ejection = 60\nmax_ejection = 30\n",
            "health.max_ejection",
            3,
            "max_ejection must be",
        ),
        ("[health]\nprobe_sessions = 0\n", "health.probe_sessions", 2, ">= 1"),
        ("[profiles.ci]\ndefault = 'maybe'\n", "profiles.ci", 1, "invalid policy profile"),
        ("[profiles.ci]\nmode = 'sieve'\n", "profiles.ci", 1, "invalid policy profile"),
        (
            "[catalog]\n[[catalog.backends]]\nname = 'a'\n[[catalog.backends]]\nname = 7\n",
            "catalog.backends[1].name",
            5,
            "Expected `str`",
        ),
        (
            "[[catalog.backends]]\nname = 'a'\n[[catalog.backends]]\nname = 'a'\n",
            "catalog",
            None,
            "duplicate",
        ),
        ("[router]\ncall_timeout = 0\n", "router.call_timeout", 2, "> 0"),
    ],
)
def test_an_invalid_file_names_the_field_why_and_the_line(
    tmp_path: Path, text: str, field: str | None, line: int | None, why: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert isinstance(error, ValueError)  # ConfigError is also a ValueError
    assert error.field == field
    assert error.line == line
    assert why in error.reason
    assert error.source == str(path)
    assert str(error).startswith(f"{path}:{line}: " if line else f"{path}: ")


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ('{\n "store": {\n  "max_counters": "x"\n }\n}\n', "store.max_counters", 3),
        ('{\n "limits": {"claude": 1},\n "oops": 1\n}\n', "oops", 3),
        ('{"limits": [1, 2}', None, 1),
        ("[1, 2]", None, 1),
    ],
)
def test_an_invalid_json_file_names_the_line_too(
    tmp_path: Path, text: str, field: str | None, line: int
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text, "bad.json"))
    assert caught.value.field == field
    assert caught.value.line == line


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)
    with pytest.raises(TypeError):
        load_config(2)  # type: ignore[arg-type]  # never a file descriptor
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_config(big)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError):
        load_config(deep)


def test_a_config_built_in_code_is_checked_against_its_catalogue() -> None:
    catalog = Catalog(["a", "b"])
    with pytest.raises(ConfigError, match="settings"):
        Config(catalog, RoutingSettings(limits={"claude": 1}))
    with pytest.raises(ConfigError, match="settings"):  # replacing parts checks them again
        msgspec.structs.replace(Config(), settings=RoutingSettings(limits={"nobody": 1}))
    with pytest.raises(ConfigError, match="catalog"):
        Config("not a catalogue")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"store\.url"):
        StoreConfig(kind="redis")
    config = Config(catalog, RoutingSettings.checked(catalog, limits={"a": 1}))
    assert config.settings.limits == {"a": 1}


def test_settings_are_checked_against_the_catalogue() -> None:
    catalog = Catalog.default()
    settings = RoutingSettings.checked(catalog, limits={"claude_code": 3}, weights={"codex_cli": 2})
    assert settings.limits == {"claude": 3} and settings.weights == {"codex": 2}
    with pytest.raises(ValueError, match="no backend"):
        RoutingSettings.checked(catalog, limits={"nobody": 1})
    with pytest.raises(TypeError):
        RoutingSettings.checked(catalog, profiles=["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RoutingSettings.checked(catalog, health="strict")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Router.from_config


async def test_a_router_from_a_file_has_what_the_file_says(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    router = Router.from_config(config)
    assert router.config is config
    assert router.catalog == config.catalog
    assert isinstance(router.store, MemoryStore)
    engine = engine_of(router)
    assert engine.journal_ring.maxlen == 500 and engine.state.max_sessions == 1000
    async with router:
        assert engine_of(router).policy_profiles() == {"ci": config.settings.profiles["ci"]}
        states = {s.backend: s for s in await router.backend_states()}
        assert states["claude"].limit == 2 and states["codex"].limit is None
        picks = [(await router.select_backend({"policy": "weighted"})).backend for _ in range(5)]
        assert sorted(picks) == ["claude", "claude", "claude", "codex", "gemini"]  # 3:1:1
        ci = [
            await router.select_backend({"policy": "round_robin", "policy_profile_id": "ci"})
            for _ in range(3)
        ]
        assert [d.backend for d in ci] == ["claude", "codex", "claude"]  # gemini filtered out by the profile
        for _ in range(3):
            await router.report("codex", "failure")
        assert {s.backend: s.status for s in await router.backend_states()}["codex"] is BackendStatus.EJECTED


async def test_profiles_of_the_file_are_added_to_the_store_at_start(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    router = Router.from_config(config)
    engine_of(router).put_policy_profile("theirs", {"default": "deny"})
    async with router:
        assert set(engine_of(router).policy_profiles()) == {"ci", "theirs"}


def test_from_config_refuses_what_is_not_a_config() -> None:
    with pytest.raises(ConfigError, match="Config"):
        Router.from_config({"store": {}})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- reload


def _settings(config: Config, **changes: Any) -> Config:
    catalog = config.catalog
    current = config.settings
    fields: dict[str, Any] = {
        "profiles": current.profiles,
        "health": current.health,
        "limits": current.limits,
        "weights": current.weights,
    }
    fields.update(changes)
    return Config(catalog, RoutingSettings.checked(catalog, **fields), config.store, config.router)


async def test_reload_applies_profiles_limits_weights_and_health_at_once(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    async with Router.from_config(config) as router:
        new = _settings(
            config,
            profiles={"ops": {"default": "deny"}},
            limits={"codex": 1},
            weights={"gemini": 5},
            health=HealthPolicy(failure_threshold=1),
        )
        await router.reload(new)
        assert router.config is new
        assert set(engine_of(router).policy_profiles()) == {"ops"}  # exactly the new set
        states = {s.backend: s for s in await router.backend_states()}
        assert states["claude"].limit is None and states["codex"].limit == 1
        picks = [(await router.select_backend({"policy": "weighted"})).backend for _ in range(7)]
        assert picks.count("gemini") == 5
        await router.report("claude", "failure")
        assert {s.backend: s.status for s in await router.backend_states()}["claude"] is BackendStatus.EJECTED
        with pytest.raises(PolicyDenied):
            await router.select_backend({"policy_profile_id": "ops"})


async def test_reload_keeps_learned_state_and_live_sessions() -> None:
    clock = FakeClock()
    config = Config()
    router = Router(clock=clock)
    async with router:
        await router.report("codex", "quota", retry_after=60)
        async with router.session({"backend": "claude"}):
            await router.reload(_settings(config, limits={"claude": 1}))
            states = {s.backend: s for s in await router.backend_states()}
            assert states["codex"].status is BackendStatus.COOLING
            assert states["claude"].live_sessions == 1 and states["claude"].limit == 1
            with pytest.raises(NoBackendAvailable):
                await router.select_backend(ONLY["claude"])


async def test_reload_turns_learning_off_and_on() -> None:
    async with Router() as router:
        await router.report("codex", "quota", retry_after=60)
        await router.reload(_settings(Config(), health=None))
        decision = await router.select_backend({"backend": "codex"})
        assert decision.backend == "codex"  # nothing learned holds it out now
        await router.reload(Config())
        with pytest.raises(NoBackendAvailable):
            await router.select_backend(ONLY["codex"])


async def test_a_raised_limit_wakes_a_waiting_caller() -> None:
    config = _settings(Config(), limits={"claude": 1})
    async with Router.from_config(config) as router, router.session({"backend": "claude"}):
        got: list[str] = []

        async def wait_for_claude() -> None:
            async with router.session(ONLY["claude"], wait=10) as second:
                got.append(second.backend)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_claude)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            await router.reload(_settings(Config(), limits={"claude": 2}))
        assert got == ["claude"]


async def test_reload_refuses_a_changed_catalogue_store_or_router_option() -> None:
    config = Config()
    async with Router.from_config(config) as router:
        await router.put_policy_profile("kept", {"default": "allow"})
        refusals = [
            (Config(Catalog(["a", "b"])), "catalog"),
            (Config(store=StoreConfig(journal_size=5)), "store"),
            (Config(router=RouterOptions(call_timeout=1.0)), "router.call_timeout"),
        ]
        for new, field in refusals:
            with pytest.raises(ConfigError) as caught:
                await router.reload(new)
            assert caught.value.field == field
        with pytest.raises(ConfigError, match="Config"):
            await router.reload({"limits": {}})  # type: ignore[arg-type]
        assert set(engine_of(router).policy_profiles()) == {"kept"}  # nothing changed
        assert router.config is config


async def test_reload_on_a_router_built_in_code_compares_the_kind_of_store() -> None:
    async with Router(journal_size=5) as router:
        await router.reload(_settings(Config(), limits={"codex": 2}))
        assert {s.backend: s.limit for s in await router.backend_states()}["codex"] == 2
        with pytest.raises(ConfigError, match="store"):
            await router.reload(Config(store=StoreConfig(kind="redis", url="redis://localhost:1/0")))


def test_the_engine_reconfigures_in_one_step() -> None:
    engine = RoutingEngine()
    engine.put_policy_profile("old", {"default": "allow"})
    settings = RoutingSettings.checked(
        engine.catalog, profiles={"new": {"default": "deny"}}, limits={"claude": 1}
    )
    engine.reconfigure(settings)
    assert engine.settings() == settings
    with pytest.raises(ValueError):
        engine.reconfigure(RoutingSettings(limits={"nobody": 2}))
    assert engine.settings() == settings
    with pytest.raises(TypeError):
        engine.reconfigure({"limits": {}})  # type: ignore[arg-type]
    engine.register_session("s1", "claude")
    with pytest.raises(BackendAtCapacity):
        engine.register_session("s2", "claude")
