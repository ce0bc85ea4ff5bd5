"""What every command shares: exit codes, usage errors, arguments and the configuration they build."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Final

from beamrouting import (
    Catalog,
    CatalogError,
    Config,
    ConfigError,
    Router,
    RoutingError,
    StoreConfig,
    load_config,
)

from ._backends import MissingBackend, require
from ._console import Output

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_ROUTING",
    "EXIT_USAGE",
    "PROG",
    "SELECTION_CODES",
    "UsageError",
    "config_from_args",
    "json_argument",
    "load_catalog",
    "redis_store",
    "require_backend",
    "router_from_config",
    "routing_failure",
]

PROG: Final = "beamrouting"
EXIT_OK: Final = 0
EXIT_ROUTING: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

SELECTION_CODES: Final = frozenset(
    {"backend_not_eligible", "no_backend_supports_capabilities", "no_backend_available", "policy_denied"}
)
"""Codes of a valid request that cannot be routed (exit 1); every other code is bad input (exit 2)."""


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def json_argument(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError(f"{what} is nested too deep to be a request") from None


def load_catalog(path: str | None) -> Catalog | None:
    if path is None:
        return None
    try:
        return Catalog.from_file(path)
    except CatalogError as exc:
        raise UsageError(f"bad catalogue: {exc}") from None


def redis_store(url: str | None, catalog: Catalog | None = None, backend: str = "asyncio") -> Any:
    """A :class:`beamrouting.RedisStore` for ``--redis URL`` (``None`` without one); bad input is a usage error."""
    if url is None:
        return None
    if backend == "trio":
        raise UsageError("--redis needs --backend asyncio or uvloop (the Redis store runs on asyncio)")
    try:
        from beamrouting import RedisStore

        return RedisStore(url, catalog=catalog)
    except ImportError:
        raise UsageError("--redis needs the redis extra: pip install 'beamrouting[redis]'") from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--redis needs a redis://, rediss:// or unix:// URL: {exc}") from None


def require_backend(name: str) -> str:
    """``name`` if that async backend is installed; a usage error naming what to install otherwise."""
    try:
        return require(name)
    except MissingBackend as exc:
        raise UsageError(str(exc)) from None


def routing_failure(out: Output, exc: RoutingError) -> int:
    detail = json.dumps(exc.detail, sort_keys=True)
    if exc.code in SELECTION_CODES:
        out.error(f"{PROG}: cannot route: {exc.code}: {exc._summary}; detail: {detail}")
        return EXIT_ROUTING
    out.error(f"{PROG}: bad request: {exc.code}: {exc._summary}; detail: {detail}")
    return EXIT_USAGE


def config_from_args(args: argparse.Namespace) -> Config:
    """The configuration a command runs with: ``--config FILE`` (or the defaults), overridden by its flags.

    ``--catalog`` replaces the file's catalogue and ``--redis URL`` its store (a Redis store
    at URL, keeping the file's Redis options). Raises :class:`UsageError` for a file or an
    override that is not valid.
    """
    path = getattr(args, "config", None)
    try:
        config = Config() if path is None else load_config(path)
    except ConfigError as exc:
        raise UsageError(f"bad configuration: {exc}") from None
    catalog = load_catalog(getattr(args, "catalog", None))
    url = getattr(args, "redis", None)
    if catalog is None and url is None:
        return config
    store = config.store
    if url is not None:
        redis_store(url)  # the URL checked as --redis always was, with its own message
        kept = store.options() if store.kind == "redis" else {}
        try:
            store = StoreConfig(kind="redis", url=url, **kept)
        except ConfigError as exc:
            raise UsageError(f"bad --redis: {exc}") from None
    try:
        return Config(catalog or config.catalog, config.settings, store, config.router, config.source)
    except ConfigError as exc:
        raise UsageError(f"the configuration does not fit --catalog: {exc}") from None


def router_from_config(config: Config) -> Router:
    """:meth:`beamrouting.Router.from_config`, with what it refuses as a :class:`UsageError`."""
    try:
        return Router.from_config(config)
    except ImportError:
        raise UsageError("a Redis store needs the redis extra: pip install 'beamrouting[redis]'") from None
    except ConfigError as exc:
        raise UsageError(f"bad configuration: {exc}") from None
