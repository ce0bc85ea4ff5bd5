"""One configuration file: the catalogue, the routing settings, the store and the router's options.

:func:`load_config` reads a TOML (or JSON) file into a :class:`Config`; every value is
validated as it is read, and an invalid file raises :class:`beamrouting.ConfigError`
naming the field, why, and (where it can be found) the line. The file's sections::

    [catalog]      backends (and capabilities); the five built-in backends when absent
    [profiles.ID]  policy profiles, as put_policy_profile takes them
    [health]       the health policy; enabled = false turns learning off
    [limits]       the most live sessions per backend
    [weights]      weights for the weighted policy
    [store]        kind = "memory" (the default) or "redis" with url = "redis://..."
    [router]       the router's own options (max_restarts, call_timeout, ...)
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec

from .._core._catalog import DEFAULT_CAPABILITIES, MAX_WEIGHT, BackendSpec, Catalog
from .._core._errors import CatalogError, ConfigError, InvalidPolicyProfile
from .._core._health import HealthPolicy
from .._core._settings import RoutingSettings
from .._store._memory import MemoryStore
from .._store._protocol import Store

__all__ = ["Config", "RouterOptions", "StoreConfig", "load_config", "reload_settings"]

_Positive = Annotated[int, msgspec.Meta(ge=1)]
_Count = Annotated[int, msgspec.Meta(ge=0)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]
_MaxFileBytes: Final = 1 << 20
"""A configuration file is small; a bigger one is a mistake (or not a configuration)."""


class StoreConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the router keeps its state: in memory (the default) or on Redis.

    Options left out take the store's own defaults (see :class:`beamrouting.MemoryStore`,
    :class:`beamrouting.RoutingEngine` and :class:`beamrouting.RedisStore`). Options of the
    other kind of store are refused. Raises :class:`beamrouting.ConfigError` when built
    with an inconsistent set of options.
    """

    kind: Literal["memory", "redis"] = "memory"
    """``"memory"`` (one process) or ``"redis"`` (shared by a fleet)."""
    url: str | None = None
    """The Redis URL (``redis://``, ``rediss://`` or ``unix://``); required for Redis."""
    prefix: str | None = None
    """Redis only: the prefix of every key (default ``"beamrouting:"``)."""
    binding_ttl: _Seconds | None = None
    """Seconds a sticky binding lives after its last use (default: until evicted or idle)."""
    journal_size: _Count | None = None
    """How many journal events are kept (default 10,000)."""
    max_key_length: _Positive | None = None
    """The longest affinity key, session id or name, in characters (default 1,024)."""
    max_list_entries: _Positive | None = None
    """The most entries of a request's list (default 256)."""
    max_metadata_bytes: _Positive | None = None
    """The largest session metadata, encoded (default 65,536)."""
    max_counters: _Positive | None = None
    """Memory only: how many round-robin counters are kept (default 100,000)."""
    max_bindings: _Positive | None = None
    """Memory only: how many sticky bindings are kept (default 100,000)."""
    max_sessions: _Positive | None = None
    """Memory only: how many live sessions may be registered (default 100,000)."""
    idle_ttl: _Seconds | None = None
    """Redis only: seconds an unused counter or binding lives (default seven days)."""
    session_ttl: _Seconds | None = None
    """Redis only: seconds a registered session lives without a heartbeat (default: forever)."""
    operation_timeout: _Seconds | None = None
    """Redis only: seconds one Redis operation may take (default 1)."""
    retry_interval: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """Redis only: seconds between reconnection attempts (default: ``operation_timeout``)."""

    def __post_init__(self) -> None:
        if self.kind == "redis":
            if self.url is None:
                raise ConfigError(
                    'a Redis store needs its url (url = "redis://host:6379/0")', field="store.url"
                )
            wrong = [name for name in _MEMORY_ONLY if getattr(self, name) is not None]
        else:
            wrong = [name for name in _REDIS_ONLY if getattr(self, name) is not None]
        if wrong:
            raise ConfigError(
                f"a {self.kind} store has no option {wrong[0]!r} (it belongs to the other kind of store)",
                field=f"store.{wrong[0]}",
            )

    def options(self) -> dict[str, Any]:
        """The options given (not ``None``), as keyword arguments of the store's constructor (``kind`` and ``url`` left out)."""
        return {
            name: value
            for name, value in msgspec.structs.asdict(self).items()
            if value is not None and name not in ("kind", "url")
        }


_MEMORY_ONLY: Final = ("max_counters", "max_bindings", "max_sessions")
_REDIS_ONLY: Final = ("url", "prefix", "idle_ttl", "session_ttl", "operation_timeout", "retry_interval")


class RouterOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The router's own options (what :class:`beamrouting.Router` takes besides a store)."""

    max_restarts: _Count = 3
    """Restarts within ``restart_period`` before the supervisor gives up."""
    restart_period: _Seconds = 5.0
    """The window, in seconds, ``max_restarts`` is counted in."""
    mailbox_size: _Positive = 10_000
    """Messages each actor's mailbox holds."""
    call_timeout: _Seconds = 5.0
    """Seconds a call waits for its reply."""
    max_waiters: _Count = 10_000
    """Callers that may wait (``wait=``) for a backend at once."""


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A whole configuration: what :meth:`beamrouting.Router.from_config` builds a router from.

    Read one with :func:`load_config`, or build one in code (each part has its defaults).
    Raises :class:`beamrouting.ConfigError` when the settings do not fit the catalogue.
    """

    catalog: Catalog = msgspec.field(default_factory=Catalog.default)
    """The backends (the five built-in ones by default)."""
    settings: RoutingSettings = msgspec.field(default_factory=RoutingSettings)
    """Policy profiles, health policy, limits and weights: what :meth:`beamrouting.Router.reload` applies."""
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    """Where the state is kept."""
    router: RouterOptions = msgspec.field(default_factory=RouterOptions)
    """The router's own options."""
    source: str | None = None
    """The file it was read from (``None``: built in code)."""

    def __post_init__(self) -> None:
        if not isinstance(self.catalog, Catalog):
            raise ConfigError(f"must be a Catalog, not {type(self.catalog).__name__}", field="catalog")
        for name, kind in (("settings", RoutingSettings), ("store", StoreConfig), ("router", RouterOptions)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(
                    f"must be a {kind.__name__}, not {type(getattr(self, name)).__name__}", field=name
                )
        try:
            checked = self.settings.recheck(self.catalog)
        except (TypeError, ValueError, InvalidPolicyProfile) as exc:
            raise ConfigError(str(exc), field="settings", source=self.source) from None
        msgspec.structs.force_setattr(self, "settings", checked)

    def build_store(self) -> Store:
        """A new store as :attr:`store` describes it, for :attr:`catalog`, with the health policy, limits and weights of :attr:`settings`.

        Its policy profiles are put when a router built by :meth:`beamrouting.Router.from_config` starts.

        Returns a :class:`beamrouting.MemoryStore` or a :class:`beamrouting.RedisStore`
        (which needs the ``redis`` extra: :class:`ImportError` without it). Raises
        :class:`beamrouting.ConfigError` for an option the store refuses.
        """
        settings = self.settings
        options = {
            **self.store.options(),
            "health": settings.health,
            "limits": settings.limits,
            "weights": settings.weights,
        }
        try:
            if self.store.kind == "memory":
                return MemoryStore(self.catalog, **options)
            from .._store._redis import RedisStore

            assert self.store.url is not None
            return RedisStore(self.store.url, catalog=self.catalog, **options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc), field="store", source=self.source) from None


def reload_settings(
    running: Config | None, store: Store, options: RouterOptions, catalog: Catalog, new: object
) -> RoutingSettings:
    """The settings a router may apply from ``new``: what :meth:`beamrouting.Router.reload` checks.

    ``running`` is the configuration the router was built from (``None``: built in code,
    when only the kind of store is compared), ``store``, ``options`` and ``catalog`` what
    it runs with. Raises
    :class:`beamrouting.ConfigError` when ``new`` is not a :class:`Config`, or changes
    the catalogue, the store or the router's options (those need a new router).
    """
    if not isinstance(new, Config):
        raise ConfigError(f"reload takes a Config (from load_config), not {type(new).__name__}")
    if new.catalog != catalog:
        raise ConfigError(
            "differs from the running router's; a changed catalogue needs a new router",
            field="catalog",
            source=new.source,
        )
    if running is not None:
        same_store = new.store == running.store
    else:  # built in code: only the kind of store is known
        same_store = new.store.kind == _kind_of(store)
    if not same_store:
        raise ConfigError(
            "differs from the running router's; a changed store needs a new router",
            field="store",
            source=new.source,
        )
    if new.router != options:
        changed = next(
            name
            for name in RouterOptions.__struct_fields__
            if getattr(new.router, name) != getattr(options, name)
        )
        raise ConfigError(
            "differs from the running router's; the router's own options need a new router",
            field=f"router.{changed}",
            source=new.source,
        )
    return new.settings


def _kind_of(store: Store) -> str | None:
    if isinstance(store, MemoryStore):
        return "memory"
    try:
        from .._store._redis import RedisStore  # imported only here: it needs the redis extra
    except ImportError:  # pragma: no cover - then the store cannot be a RedisStore
        return None
    return "redis" if isinstance(store, RedisStore) else None


# --------------------------------------------------------------------------- the file


class _CatalogSection(msgspec.Struct, forbid_unknown_fields=True):
    backends: list[BackendSpec]
    capabilities: list[str] | None = None


class _HealthSection(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    failure_threshold: _Positive = 5
    base_ejection: _Seconds = 30.0
    max_ejection: _Seconds = 600.0
    probe_sessions: _Positive = 1


class _File(msgspec.Struct, forbid_unknown_fields=True):
    catalog: _CatalogSection | None = None
    profiles: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    health: _HealthSection = msgspec.field(default_factory=_HealthSection)
    limits: dict[str, Any] = msgspec.field(default_factory=dict)
    weights: dict[str, Any] = msgspec.field(default_factory=dict)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    router: RouterOptions = msgspec.field(default_factory=RouterOptions)


def load_config(path: str | Path) -> Config:
    """Read a configuration file (``.toml``, or ``.json``) into a validated :class:`Config`.

    Raises :class:`beamrouting.ConfigError` naming the file, the field, why, and the line
    where the format allows: for a file that cannot be read or parsed, an unknown section or
    option, a value of the wrong type or out of range, an unknown backend, a malformed
    catalogue or profile, and :class:`TypeError` for a ``path`` that is not a ``str`` or a
    path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path, not {type(path).__name__}")
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MaxFileBytes + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    if len(raw) > _MaxFileBytes:
        raise ConfigError(f"the file is larger than {_MaxFileBytes:,} bytes", source=source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the file is not UTF-8 text: {exc.reason}", source=source) from None
    is_json = source.lower().endswith(".json")
    data = _parse(text, source, is_json=is_json)
    return _config_of(data, text, source, is_json=is_json)


_TOML_AT: Final = re.compile(r"\(at line (\d+), column \d+\)")


def _parse(text: str, source: str, *, is_json: bool) -> dict[str, Any]:
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", source=source, line=exc.lineno) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_AT.search(message)
        reason = _TOML_AT.sub("", message).strip()
        raise ConfigError(
            f"not valid TOML: {reason}", source=source, line=int(found.group(1)) if found else None
        ) from None
    except RecursionError:
        raise ConfigError("nested too deep to be a configuration", source=source) from None
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a table (an object) of sections", source=source, line=1)
    return data


def _config_of(data: Mapping[str, Any], text: str, source: str, *, is_json: bool) -> Config:
    def fail(reason: str, path: list[str | int]) -> ConfigError:
        return ConfigError(
            reason, field=_dotted(path) or None, source=source, line=_line_of(text, path, is_json=is_json)
        )

    try:
        file = msgspec.convert(data, _File)
    except msgspec.ValidationError as exc:
        reason, path = _split_validation(str(exc))
        raise fail(reason, path) from None
    catalog = Catalog.default()
    if file.catalog is not None:
        try:
            catalog = Catalog(file.catalog.backends, file.catalog.capabilities or DEFAULT_CAPABILITIES)
        except CatalogError as exc:
            raise fail(str(exc), ["catalog"]) from None
    health: HealthPolicy | None = None
    if file.health.enabled:
        section = msgspec.structs.asdict(file.health)
        del section["enabled"]
        try:
            health = HealthPolicy(**section)
        except (TypeError, ValueError) as exc:
            name = str(exc).split(" ", 1)[0]
            raise fail(str(exc), ["health", name] if name in section else ["health"]) from None
    for section_name, most in (("limits", None), ("weights", MAX_WEIGHT)):
        for backend, number in getattr(file, section_name).items():
            where: list[str | int] = [section_name, backend]
            if catalog.canonical(backend) is None:
                raise fail(f"{backend!r} is no backend of the catalogue", where)
            if isinstance(number, bool) or not isinstance(number, int):
                raise fail(f"Expected `int`, got `{type(number).__name__}`", where)
            if number < 1 or (most is not None and number > most):
                raise fail(f"Expected `int` >= 1{f' and <= {most}' if most else ''}, got {number}", where)
    for profile_id, profile in file.profiles.items():
        try:
            RoutingSettings.checked(catalog, profiles={profile_id: profile})
        except InvalidPolicyProfile as exc:
            raise fail(f"invalid policy profile: {exc.detail}", ["profiles", profile_id]) from None
    try:
        settings = RoutingSettings.checked(
            catalog, profiles=file.profiles, health=health, limits=file.limits, weights=file.weights
        )
    except ValueError as exc:  # two spellings of one backend
        raise fail(str(exc), [str(exc).split(":", 1)[0]]) from None
    return Config(catalog, settings, file.store, file.router, source)


_AT: Final = re.compile(r" - at `\$(.*)`$")
_UNKNOWN: Final = re.compile(r"^Object contains unknown field `(.*)`$")
_OWN: Final = re.compile(r"^(store\.[a-z_]+): (.+)$")


def _split_validation(message: str) -> tuple[str, list[str | int]]:
    """msgspec's ``"Expected `int`, got `str` - at `$.store.journal_size`"`` as a reason and a path."""
    found = _AT.search(message)
    reason = _AT.sub("", message)
    path = _path_of(found.group(1)) if found else []
    own = _OWN.match(reason)  # a ConfigError of StoreConfig's own checks: it names its field
    if own:
        return own.group(2), _path_of(own.group(1))
    unknown = _UNKNOWN.match(reason)
    if unknown:
        path.append(unknown.group(1))
        reason = "unknown option" if path[:-1] else "unknown section"
    return reason, path


_STEP: Final = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[([^\]]*)\]")


def _path_of(dotted: str) -> list[str | int]:
    """``".catalog.backends[1].name"`` (or ``"catalog.backends[1].name"``) as ``["catalog", "backends", 1, "name"]``."""
    dotted = dotted if dotted.startswith((".", "[")) or not dotted else "." + dotted
    path: list[str | int] = []
    for name, index, key in _STEP.findall(dotted):
        path.append(name if name else int(index) if index else key.strip("'\""))
    return path


def _dotted(path: list[str | int]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


# --------------------------------------------------------------------------- finding the line


_HEADER: Final = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_ASSIGN: Final = re.compile(
    r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_KEY_PART: Final = re.compile(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""")


def _keys(dotted: str) -> list[str | int]:
    return [part.strip("\"'") for part in _KEY_PART.findall(dotted)]


def _line_of(text: str, path: list[str | int], *, is_json: bool) -> int | None:
    """The line (1-based) ``path`` is given on, or its nearest enclosing part; ``None`` when not found."""
    if not path:
        return None
    return _json_line(text, path) if is_json else _toml_line(text, path)


def _toml_line(text: str, path: list[str | int]) -> int | None:
    best: tuple[int, int] | None = None  # (matched length, line)
    table: list[str | int] = []
    arrays: dict[tuple[str | int, ...], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _keys(header.group(2))
            if header.group(1) == "[[":
                index = arrays.get(tuple(table), -1) + 1
                arrays[tuple(table)] = index
                table = [*table, index]
            full = table
        else:
            assign = _ASSIGN.match(line)
            if not assign:
                continue
            full = [*table, *_keys(assign.group(1))]
        matched = _common(full, path)
        if matched == len(full) and (best is None or matched > best[0]):
            best = (matched, number)
            if matched == len(path):
                break
    return None if best is None else best[1]


def _common(left: list[str | int], right: list[str | int]) -> int:
    count = 0
    for a, b in zip(left, right, strict=False):
        if a != b:
            break
        count += 1
    return count


def _json_line(text: str, path: list[str | int]) -> int | None:
    position, found = 0, None
    for step in path:
        if isinstance(step, int):
            continue
        at = text.find(json.dumps(step), position)
        if at < 0:
            break
        position, found = at, at
    return None if found is None else text.count("\n", 0, found) + 1
