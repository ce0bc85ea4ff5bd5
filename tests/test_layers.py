"""The package's layers: imports point one way, and nothing imports in a circle.

Every module's imports are read from its source (those inside functions too) and checked:

- core (``_core``) imports only the standard library and msgspec;
- each layer imports only its own layer and the ones below it: core <- stores (``_store``)
  <- runtime (``_runtime``) <- the public modules (``beamrouting``, ``beamrouting.store``,
  ``beamrouting.testing``, ``beamrouting.prometheus``) <- the command line (``_cli``, ``__main__``);
- the command line imports no private module but its own;
- no two modules import each other, directly or around a loop.

The checker runs on the real package and, to prove it can fail, on planted violations.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests._helpers import REPO_ROOT

PACKAGE = "beamrouting"
ROOT = REPO_ROOT / PACKAGE

LAYERS = ("core", "stores", "runtime", "public", "command line")
CORE_THIRD_PARTY = frozenset({"msgspec"})
PUBLIC_MODULES = frozenset({PACKAGE, f"{PACKAGE}.store", f"{PACKAGE}.testing", f"{PACKAGE}.prometheus"})


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of a module of the package."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else ""
    if first == "_core":
        return 0
    if first == "_store":
        return 1
    if first == "_runtime":
        return 2
    if first in ("_cli", "__main__"):
        return 4
    if module in PUBLIC_MODULES:
        return 3
    raise AssertionError(f"{module} belongs to no layer: put it in one of the layer folders")


def read_package(root: Path = ROOT) -> dict[str, str]:
    """Module name -> source of every module of the package."""
    sources = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def imports_of(module: str, source: str, modules: Mapping[str, str]) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import in ``source``, resolved to absolute names.

    ``from X import name`` names the submodule ``X.name`` when there is one.
    """
    package = module if module in modules and _is_package(module, modules) else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in modules else base), node.lineno


def _is_package(module: str, modules: Mapping[str, str]) -> bool:
    return any(other.startswith(module + ".") for other in modules)


def violations(modules: Mapping[str, str]) -> list[str]:
    """Every broken rule in ``modules`` (module name -> source), as readable lines."""
    found: list[str] = []
    graph: dict[str, set[str]] = {module: set() for module in modules}
    stdlib = sys.stdlib_module_names
    for module, source in modules.items():
        layer = layer_of(module)
        for imported, line in imports_of(module, source, modules):
            where = f"{module}:{line} imports {imported}"
            top = imported.split(".")[0]
            if top != PACKAGE:
                if layer == 0 and top not in stdlib and top not in CORE_THIRD_PARTY:
                    found.append(f"{where}: core imports only the standard library and msgspec")
                continue
            target = imported if imported in modules else imported.rpartition(".")[0]
            if target not in modules:
                found.append(f"{where}: no such module in the package")
                continue
            if target != module:
                graph[module].add(target)
            if layer_of(target) > layer:
                found.append(f"{where}: points up from {LAYERS[layer]} to {LAYERS[layer_of(target)]}")
            if layer == 4 and layer_of(target) != 4 and target not in PUBLIC_MODULES:
                found.append(f"{where}: the command line uses only the public modules")
    found.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph))
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules that import in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append([*sorted(group), sorted(group)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


# --------------------------------------------------------------------------- the package


def test_imports_point_one_way_and_never_in_a_circle() -> None:
    modules = read_package()
    assert len(modules) > 30 and f"{PACKAGE}._core._engine" in modules
    problems = violations(modules)
    assert not problems, "\n".join(problems)


def test_every_module_is_in_a_layer_and_small() -> None:
    for module, source in read_package().items():
        layer_of(module)
        lines = source.count("\n")
        assert lines <= 800, f"{module} has {lines} lines (at most 800)"


# --------------------------------------------------------------------------- the checker itself


def _planted(module: str, line: str) -> list[str]:
    modules = read_package()
    modules[module] = modules[module] + "\n" + line + "\n"
    return violations(modules)


@pytest.mark.parametrize(
    ("module", "line", "fragment"),
    [
        (f"{PACKAGE}._core._planner", "import anyio", "core imports only the standard library"),
        (
            f"{PACKAGE}._core._engine",
            "def lazy():\n    import redis",
            "core imports only the standard library",
        ),
        (f"{PACKAGE}._core._engine", "from .._store import _memory", "points up from core to stores"),
        (
            f"{PACKAGE}._store._memory",
            "from .._runtime._router import Router",
            "points up from stores to runtime",
        ),
        (f"{PACKAGE}._runtime._actor", "from .. import testing", "points up from runtime to public"),
        (f"{PACKAGE}._runtime._router", "from .._cli import main", "points up from runtime to command line"),
        (
            f"{PACKAGE}._cli._demo",
            "from beamrouting._core._engine import RoutingEngine",
            "only the public modules",
        ),
        (
            f"{PACKAGE}._cli._bench",
            "def lazy():\n    from .._runtime import _router",
            "only the public modules",
        ),
        (f"{PACKAGE}._core._catalog", "from . import _engine", "import cycle"),
    ],
)
def test_the_checker_catches_a_planted_violation(module: str, line: str, fragment: str) -> None:
    problems = _planted(module, line)
    assert any(fragment in problem for problem in problems), problems


def test_importing_the_package_loads_no_redis_code() -> None:
    """``import beamrouting`` (and its other public modules) loads no Redis module, ours or the client's."""
    probe = (
        "import sys, beamrouting, beamrouting.store, beamrouting.testing\n"
        "print([m for m in sys.modules if 'redis' in m.lower()])\n"
        "beamrouting.RedisStore\n"
        "print(any(m.startswith('beamrouting._store._redis') for m in sys.modules))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSTARTUP"}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    before, after = result.stdout.splitlines()
    assert before == "[]"
    assert after == "True"  # and RedisStore is there on first use
