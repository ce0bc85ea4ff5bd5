"""A configuration file with a Redis store: Router.from_config and Router.reload on a fleet.

Profiles are the fleet's: a reload (or a start) changes them for every process sharing the
prefix. The health policy, limits and weights are each process's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beamrouting import (
    Config,
    ConfigError,
    PolicyDenied,
    RedisStore,
    Router,
    RoutingSettings,
    StoreConfig,
    load_config,
)

pytestmark = pytest.mark.anyio


def fleet_file(tmp_path: Path, redis_url: str, prefix: str, extra: str = "") -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(
        f'[store]\nkind = "redis"\nurl = "{redis_url}"\nprefix = "{prefix}"\noperation_timeout = 2.0\n\n'
        '[profiles.ci]\ndefault = "deny"\n\n[limits]\nclaude = 1\n' + extra,
        encoding="utf-8",
    )
    return path


def with_settings(config: Config, **fields: object) -> Config:
    settings = RoutingSettings.checked(config.catalog, **fields)  # type: ignore[arg-type]
    return Config(config.catalog, settings, config.store, config.router, config.source)


async def test_a_router_from_a_redis_file_shares_the_fleets_state(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    config = load_config(fleet_file(tmp_path, redis_url, prefix))
    router = Router.from_config(config)
    store = router.store
    assert isinstance(store, RedisStore) and store.prefix == prefix and store.limits_of == {"claude": 1}
    async with router, Router(store=RedisStore(redis_url, prefix=prefix)) as other:
        with pytest.raises(PolicyDenied):  # the file's profile, put for the fleet at start
            await other.select_backend({"policy_profile_id": "ci"})
        async with router.session({"backend": "claude"}):
            states = {s.backend: s for s in await router.backend_states()}
            assert states["claude"].live_sessions == 1 and states["claude"].limit == 1


async def test_reload_changes_the_fleets_profiles_and_this_processs_limits(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    config = load_config(fleet_file(tmp_path, redis_url, prefix))
    async with (
        Router.from_config(config) as router,
        Router(store=RedisStore(redis_url, prefix=prefix)) as other,
    ):
        await other.put_policy_profile("theirs", {"default": "allow"})
        new = with_settings(config, profiles={"ops": {"default": "allow"}}, limits={"codex": 3})
        await router.reload(new)
        # Profiles: exactly the file's, for every process.
        assert (await other.select_backend({"policy_profile_id": "ops"})).backend == "claude"
        for gone in ("ci", "theirs"):
            with pytest.raises(PolicyDenied):
                await other.select_backend({"policy_profile_id": gone})
        # Limits: this process's.
        assert {s.backend: s.limit for s in await router.backend_states()}["codex"] == 3
        assert {s.backend: s.limit for s in await other.backend_states()}["codex"] is None


async def test_reload_refuses_another_redis_store(tmp_path: Path, redis_url: str, prefix: str) -> None:
    config = load_config(fleet_file(tmp_path, redis_url, prefix))
    async with Router.from_config(config) as router:
        moved = Config(
            config.catalog, config.settings, StoreConfig(kind="redis", url=redis_url, prefix="elsewhere:")
        )
        with pytest.raises(ConfigError) as caught:
            await router.reload(moved)
        assert caught.value.field == "store"
