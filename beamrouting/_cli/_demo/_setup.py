"""What a demo run is made of: its options (:class:`DemoConfig`), the settings a configuration file adds, and the planned sessions."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from beamrouting import (
    Catalog,
    Config,
    HealthPolicy,
    PolicyProfile,
)

PROFILE_ID: Final = "restricted"


"""The policy profile some sessions run under: it denies the catalogue's last backend."""


COOLDOWN: Final = 60.0


"""Seconds (of demo time) the quota refusal asks its backend to cool down for (``retry_after``)."""


_BOUND: Final = "selected backend and bound sticky affinity"


_REUSED: Final = "reused sticky affinity backend"


_MIX: Final = (
    ("sticky", 40),
    ("round_robin", 18),
    ("capability_first", 14),
    ("explicit", 10),
    ("preferred_then_fallback", 12),
    ("restricted", 6),
)


_MARKS: Final = {
    "degraded": 0.10,
    "quota": 0.15,
    "outage": 0.25,
    "failing": 0.40,
    "recovery": 0.55,
    "crash": 0.70,
    "healthy": 0.85,
}


"""When each scripted event happens, as a share of the sessions started."""


_ATTEMPTS: Final = 3


"""Tries per call; only ``ActorCrashed`` (a restarted actor) is retried."""


_IDLE_STEP: Final = 1.0


"""Demo seconds that pass per monitor sample while every starter waits and nothing else runs."""


_HEALTHY: Final = "healthy"


@dataclass(frozen=True)
class DemoConfig:
    """The size and shape of a demo run.

    ``config`` (a :class:`beamrouting.Config`, from :func:`beamrouting.load_config`)
    supplies the catalogue, the store (kind, URL and options; a Redis store still gets a
    key prefix of its own per run), the router's options, the health policy, and the
    limits and weights of the backends it names; the demo's defaults stand for what it
    leaves out (``limit`` for a backend without a limit). Its policy profiles are stored
    besides the demo's own, and the restricted sessions run under each of them in turn.
    """

    sessions: int = 30_000
    concurrency: int = 300
    seed: int = 7
    backend: str = "asyncio"
    workspaces: int = 0
    """Distinct sticky workspaces (0: one per 40 sessions, at least 10)."""
    failure_rate: float = 0.03
    """Share of sessions whose first start fails for a reason of their own, so they fail over."""
    catalog: Catalog | None = None
    """The backends (the default catalogue if ``None``); with ``config``, it must be the file's."""
    redis_url: str | None = None
    """Share the state through a :class:`beamrouting.RedisStore` at this URL (overrides ``config``'s store)."""
    limit: int = 0
    """Live sessions each backend may have; 0 leaves room for a quarter more sessions than
    starters, spread evenly: ``ceil(1.25 * concurrency / backends)`` (75 for 300 starters
    on the five default backends). The busiest backend reaches its limit, and once a backend
    or two are out the rest cannot hold every starter, so starts wait for slots."""
    wait: float = 60.0
    """Seconds (of demo time) a session start waits for a slot when every backend it may use is full."""
    config: Config | None = None
    """A configuration to run with (see above); ``None``: the demo's own settings."""


@dataclass
class _Plan:
    kind: str
    request: dict[str, Any]
    workspace: str | None
    start_fails: bool


@dataclass(frozen=True)
class _Setup:
    """What a run routes with: :class:`DemoConfig` and its ``config`` resolved."""

    catalog: Catalog
    health: HealthPolicy | None
    limits: dict[str, int]
    weights: dict[str, int]
    redis_url: str | None
    store_options: dict[str, Any]
    router_options: dict[str, Any]
    profiles: dict[str, PolicyProfile]
    """The configuration's policy profiles (the demo's own is added to them)."""


def _setup(config: DemoConfig) -> _Setup:
    """Resolve ``config`` (and its ``config``); :class:`ValueError` for a contradiction."""
    file = config.config
    if file is not None and not isinstance(file, Config):
        raise TypeError(f"config must be a beamrouting.Config, not {type(file).__name__}")
    catalog = config.catalog if config.catalog is not None else Catalog.default()
    if file is not None:
        if config.catalog is not None and config.catalog != file.catalog:
            raise ValueError("catalog and config name different catalogues; give one of them")
        catalog = file.catalog
    limit = config.limit or max(1, math.ceil(1.25 * config.concurrency / len(catalog.backends)))
    limits = dict.fromkeys(catalog.backends, limit)
    if file is None:
        return _Setup(catalog, HealthPolicy(), limits, {}, config.redis_url, {}, {}, {})
    settings = file.settings
    limits.update(settings.limits)
    store = file.store
    redis_url = config.redis_url or (store.url if store.kind == "redis" else None)
    options = store.options() if (store.kind == "redis") == (redis_url is not None) else {}
    options.pop("prefix", None)  # each run keeps its keys under a prefix of its own
    router = file.router
    router_options = {
        "max_restarts": router.max_restarts,
        "restart_period": router.restart_period,
        "mailbox_size": router.mailbox_size,
        "call_timeout": router.call_timeout,
        "max_waiters": router.max_waiters,
    }
    return _Setup(
        catalog,
        settings.health,
        limits,
        dict(settings.weights),
        redis_url,
        options,
        router_options,
        dict(settings.profiles),
    )


def _plans(config: DemoConfig, catalog: Catalog, profile_ids: Sequence[str] = (PROFILE_ID,)) -> list[_Plan]:
    rng = random.Random(config.seed)
    backends = catalog.backends
    aliases = {b: catalog.aliases_of(b) for b in backends}
    capabilities = catalog.capabilities
    workspaces = config.workspaces or max(10, config.sessions // 40)
    kinds = [k for k, _ in _MIX]
    weights = [w for _, w in _MIX]
    plans = []
    for _ in range(config.sessions):
        kind = rng.choices(kinds, weights)[0]
        workspace = None
        request: dict[str, Any]
        if kind == "sticky":
            workspace = f"workspace-{rng.randrange(workspaces):05d}"
            request = {"policy": "sticky", "affinity_key": workspace}
        elif kind == "round_robin":
            request = {"policy": "round_robin"}
        elif kind == "capability_first":
            caps = rng.sample(capabilities, k=min(len(capabilities), rng.randint(1, 3)))
            request = {"policy": "capability_first", "capabilities": caps}
        elif kind == "explicit":
            backend = rng.choice(backends)
            spellings = (backend, *aliases[backend])
            request = {"backend": rng.choice(spellings)}
        elif kind == "preferred_then_fallback":
            request = {
                "preferred_backends": [rng.choice(backends)],
                "fallback_backends": rng.sample(backends, k=min(2, len(backends))),
                "fallback_policy": rng.choice(("available", "available", "none")),
            }
        else:
            profile = profile_ids[0] if len(profile_ids) == 1 else rng.choice(profile_ids)
            request = {"policy": "round_robin", "policy_profile_id": profile}
        plans.append(_Plan(kind, request, workspace, rng.random() < config.failure_rate))
    return plans


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
