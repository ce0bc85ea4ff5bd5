"""The backend catalogue: backends, their accepted spellings and what each supports."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import msgspec

from ._errors import CatalogError

__all__ = ["DEFAULT_CAPABILITIES", "MAX_WEIGHT", "BackendSpec", "Catalog", "backend_numbers"]

DEFAULT_CAPABILITIES: Final[tuple[str, ...]] = (
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
"""The capabilities of the default catalogue (every built-in backend supports all of them)."""


class BackendSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One backend of a catalogue.

    ``capabilities`` lists what the backend supports; ``None`` means every capability of
    the catalogue.
    """

    name: str
    """The canonical name (not ``auto``, unique in the catalogue)."""
    aliases: tuple[str, ...] = ()
    """Other spellings requests may use for it."""
    capabilities: tuple[str, ...] | None = None
    """What it supports (``None``: every capability of the catalogue)."""


_DEFAULT_BACKENDS: Final[tuple[BackendSpec, ...]] = (
    BackendSpec("claude", ("claude_code", "claude_agent_sdk")),
    BackendSpec("codex", ("codex_cli", "codex_app_server")),
    BackendSpec("copilot", ("copilot_client",)),
    BackendSpec("gemini", ("gemini_cli", "gemini_cli_client")),
    BackendSpec("opencode", ("opencode_client",)),
)


class _CatalogFile(msgspec.Struct, forbid_unknown_fields=True):
    backends: list[BackendSpec]
    capabilities: list[str] | None = None


class Catalog:
    """An immutable catalogue of backends, in their declared (available) order.

    ``Catalog(backends, capabilities=DEFAULT_CAPABILITIES)``: ``backends`` are
    :class:`BackendSpec` (or plain names), in available order; ``capabilities`` is every
    capability id a request may ask for. Build your own with
    ``Catalog([BackendSpec("mine", aliases=("my_agent",)), ...])``; ``Catalog.default()`` is
    the five built-in backends with every capability supported. Catalogues compare equal
    when they define the same backends, spellings and capabilities. Malformed definitions
    raise :class:`CatalogError`.
    """

    __slots__ = ("_aliases", "_backends", "_capabilities", "_capability_set", "_specs", "_support")

    _backends: tuple[str, ...]
    _capabilities: tuple[str, ...]
    _capability_set: frozenset[str]
    _aliases: Mapping[str, str]
    _support: Mapping[str, frozenset[str]]
    _specs: tuple[BackendSpec, ...]

    def __init__(
        self,
        backends: Iterable[BackendSpec | str],
        capabilities: Iterable[str] = DEFAULT_CAPABILITIES,
    ) -> None:
        try:
            caps = (
                tuple(str.__str__(c) if isinstance(c, str) else c for c in capabilities)
                if not isinstance(capabilities, str)
                else None
            )
        except Exception:
            caps = None
        if caps is None or not all(isinstance(c, str) and c for c in caps):
            raise CatalogError("capabilities must be a list of non-empty strings")
        if len(set(caps)) != len(caps):
            raise CatalogError(f"duplicate capability ids in {list(caps)!r}")
        cap_set = frozenset(caps)
        if isinstance(backends, (str, bytes)):
            raise CatalogError("backends must be a list of backend specifications")
        try:
            specs = tuple(_plain_spec(b) for b in backends)
        except CatalogError:
            raise
        except Exception:
            raise CatalogError("backends must be a list of backend specifications") from None
        if not specs:
            raise CatalogError("a catalogue needs at least one backend")
        aliases: dict[str, str] = {}
        support: dict[str, frozenset[str]] = {}
        names = [s.name for s in specs if isinstance(s, BackendSpec)]
        for spec in specs:
            if not isinstance(spec, BackendSpec):
                raise CatalogError(f"not a backend specification: {spec!r}")
            if not isinstance(spec.name, str) or not spec.name:
                raise CatalogError(f"a backend name must be a non-empty string, got {spec.name!r}")
            if spec.name in support:
                raise CatalogError(f"duplicate backend name {spec.name!r}")
            if spec.name == "auto":
                raise CatalogError("'auto' is reserved (it means 'no backend') and cannot name a backend")
            aliases[spec.name] = spec.name
            support[spec.name] = cap_set
            for alias in spec.aliases:
                if not isinstance(alias, str) or not alias or alias == "auto":
                    raise CatalogError(f"invalid alias {alias!r} for backend {spec.name!r}")
                if alias in names and alias != spec.name:
                    raise CatalogError(f"alias {alias!r} of {spec.name!r} is another backend's name")
                if alias in aliases and aliases[alias] != spec.name:
                    raise CatalogError(f"alias {alias!r} is claimed by {aliases[alias]!r} and {spec.name!r}")
                if alias in aliases:
                    raise CatalogError(f"duplicate alias {alias!r} for backend {spec.name!r}")
                aliases[alias] = spec.name
            if spec.capabilities is not None:
                unknown = [c for c in spec.capabilities if c not in cap_set]
                if unknown:
                    raise CatalogError(f"backend {spec.name!r} lists unknown capability ids {unknown!r}")
                support[spec.name] = frozenset(spec.capabilities)
        init = object.__setattr__
        init(self, "_specs", specs)
        init(self, "_backends", tuple(s.name for s in specs))
        init(self, "_capabilities", caps)
        init(self, "_capability_set", cap_set)
        init(self, "_aliases", MappingProxyType(aliases))
        init(self, "_support", MappingProxyType(support))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Catalog is immutable; derive a new one with with_support()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Catalog is immutable")

    @classmethod
    def default(cls) -> Catalog:
        """The built-in catalogue: claude, codex, copilot, gemini, opencode; every capability."""
        return _default_catalog()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Catalog:
        """Build a catalogue from ``data``: ``{"backends": [{"name", "aliases", "capabilities"}], "capabilities": [...]}``.

        Raises :class:`CatalogError` for anything that is not such a definition.
        """
        try:
            parsed = msgspec.convert(data, _CatalogFile)
            caps = DEFAULT_CAPABILITIES if parsed.capabilities is None else parsed.capabilities
            return cls(parsed.backends, caps)
        except CatalogError:
            raise
        except msgspec.ValidationError as exc:
            raise CatalogError(f"invalid catalogue: {exc}") from None
        except Exception as exc:  # values whose own methods fail, or nested too deep to read
            raise CatalogError(f"invalid catalogue: not plain data ({type(exc).__name__})") from None

    @classmethod
    def from_file(cls, path: str | Path) -> Catalog:
        """Read a catalogue from the ``.toml`` or ``.json`` file at ``path`` (the shape of :meth:`from_dict`).

        Raises :class:`CatalogError` when the file cannot be read, is not one of those
        formats, or does not hold a valid catalogue.
        """
        try:
            path = Path(path)
        except Exception:
            raise CatalogError(
                f"a catalogue path must be a str or os.PathLike, not {type(path).__name__}"
            ) from None
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".json"):
            raise CatalogError(
                f"catalogue {str(path)!r}: catalogue files are TOML (.toml) or JSON (.json), not {suffix or 'unnamed'}"
            )
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CatalogError(f"cannot read catalogue {str(path)!r}: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(raw.decode("utf-8")) if suffix == ".toml" else json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
            raise CatalogError(
                f"catalogue {str(path)!r} is not valid {suffix[1:].upper()}: {reason}"
            ) from None
        if not isinstance(data, dict):
            raise CatalogError(f"catalogue {str(path)!r} must hold an object with a 'backends' list")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Return the catalogue in the shape :meth:`from_dict` reads."""
        return {
            "backends": [
                {
                    "name": b,
                    "aliases": list(self.aliases_of(b)),
                    "capabilities": [c for c in self._capabilities if c in self._support[b]],
                }
                for b in self._backends
            ],
            "capabilities": list(self._capabilities),
        }

    @property
    def backends(self) -> tuple[str, ...]:
        """Canonical backend names, in available order."""
        return self._backends

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Capability ids known to this catalogue."""
        return self._capabilities

    @property
    def aliases(self) -> Mapping[str, str]:
        """Every accepted spelling mapped to its canonical backend name."""
        return self._aliases

    def aliases_of(self, backend: str) -> tuple[str, ...]:
        """The accepted spellings of ``backend`` other than its canonical name."""
        return tuple(a for a, b in self._aliases.items() if b == backend and a != backend)

    def canonical(self, name: object) -> str | None:
        """The canonical name for a spelling, or ``None`` when it names no backend."""
        if isinstance(name, str):
            name = str.__str__(name)  # a subclass's own hashing and comparison are never called
        try:
            return self._aliases.get(name)  # type: ignore[call-overload, no-any-return]
        except Exception:  # unhashable, or hashing that fails: it names no backend
            return None

    def supports(self, backend: str, capability: str) -> bool:
        """Whether ``backend`` supports ``capability``."""
        caps = self._support.get(backend)
        return caps is not None and capability in caps

    def supported(self, backend: str) -> frozenset[str]:
        """Every capability ``backend`` supports."""
        return self._support[backend]

    def with_support(self, backend: str, capability: str, supported: bool) -> Catalog:
        """A new catalogue in which ``backend``'s support for ``capability`` is ``supported``."""
        name = self.canonical(backend)
        if name is None:
            raise CatalogError(f"unknown backend {backend!r}")
        if capability not in self._capability_set:
            raise CatalogError(f"unknown capability id {capability!r}")
        specs = []
        for spec in self._specs:
            if spec.name == name:
                current = self._support[name]
                new = current | {capability} if supported else current - {capability}
                spec = BackendSpec(spec.name, spec.aliases, tuple(c for c in self._capabilities if c in new))
            specs.append(spec)
        return Catalog(specs, self._capabilities)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Catalog):
            return NotImplemented
        return (
            self._backends == other._backends
            and self._capabilities == other._capabilities
            and dict(self._aliases) == dict(other._aliases)
            and dict(self._support) == dict(other._support)
        )

    def __hash__(self) -> int:
        return hash((self._backends, self._capabilities))

    def __repr__(self) -> str:
        return f"Catalog(backends={list(self._backends)!r}, capabilities={len(self._capabilities)})"


def _plain(value: Any) -> Any:
    """A ``str`` subclass reduced to its plain value (never calling its methods)."""
    return str.__str__(value) if isinstance(value, str) else value


def _plain_spec(spec: object) -> BackendSpec:
    """``spec`` (a name or a :class:`BackendSpec`) with every name a plain ``str``."""
    if isinstance(spec, str):
        return BackendSpec(str.__str__(spec))
    if not isinstance(spec, BackendSpec):
        raise CatalogError(f"not a backend specification: {type(spec).__name__}")
    capabilities = None if spec.capabilities is None else tuple(_plain(c) for c in spec.capabilities)
    return BackendSpec(_plain(spec.name), tuple(_plain(a) for a in spec.aliases), capabilities)


MAX_WEIGHT: Final = 10_000
"""The largest weight a backend may have (one period of weighted round robin is the sum of the weights)."""


def backend_numbers(
    name: str, value: object, catalog: Catalog, *, maximum: int | None = None
) -> dict[str, int]:
    """``value`` (a mapping of any accepted backend spelling to a positive int) keyed by canonical name.

    ``None`` gives ``{}``. Raises :class:`TypeError` for a value that is not a mapping, or an
    entry that is not an int, and :class:`ValueError` for an unknown backend, an entry below
    1 (or above ``maximum``), or two spellings of one backend.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of backend to int, not {type(value).__name__}")
    numbers: dict[str, int] = {}
    for key, number in value.items():
        backend = catalog.canonical(key)
        if backend is None:
            raise ValueError(f"{name}: {key!r} is no backend of the catalogue")
        if backend in numbers:
            raise ValueError(f"{name}: {backend!r} is given twice")
        if isinstance(number, bool) or not isinstance(number, int):
            raise TypeError(f"{name}[{key!r}] must be an int, not {type(number).__name__}")
        if number < 1 or (maximum is not None and number > maximum):
            limit = f" and <= {maximum}" if maximum is not None else ""
            raise ValueError(f"{name}[{key!r}] must be >= 1{limit}, not {number}")
        numbers[backend] = int.__int__(number)
    return numbers


@cache
def _default_catalog() -> Catalog:
    return Catalog(_DEFAULT_BACKENDS, DEFAULT_CAPABILITIES)
