"""The API reference: pdoc builds it from the docstrings without a warning, and every public
name has a docstring that names each of its parameters.

The names checked are those pdoc documents (the public modules' ``__all__`` and the public
members of their classes), with their docstrings as pdoc reads them, so a struct field's
attribute docstring counts. Members inherited from outside the package (``Exception``,
``msgspec.Struct``, ``enum``) are documented by their own projects.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

pdoc = pytest.importorskip("pdoc")

from pdoc import doc, render  # noqa: E402

import beamrouting  # noqa: E402

# RedisStore is imported on first use; once it is, pdoc finds it among the package's names
# (a fresh interpreter that imports pdoc first finds it there too).
assert beamrouting.RedisStore.__name__ == "RedisStore"

PACKAGE = "beamrouting"
PUBLIC_MODULES = (PACKAGE, f"{PACKAGE}.store", f"{PACKAGE}.testing", f"{PACKAGE}.prometheus")
FOREIGN_WARNING = "Error parsing type annotation AbstractAsyncContextManager"
"""A warning about a private attribute anyio's AsyncContextManagerMixin annotates (not ours)."""


def documented(module_name: str) -> Iterator[doc.Doc]:  # type: ignore[type-arg]
    """Every public name pdoc documents in ``module_name``, members of its classes included."""
    module = doc.Module.from_name(module_name)
    pending: list[doc.Doc] = list(module.members.values())  # type: ignore[type-arg]
    while pending:
        item = pending.pop()
        if (item.name.startswith("_") and item.name != "__init__") or not item.taken_from[0].startswith(
            PACKAGE
        ):
            continue
        yield item
        if isinstance(item, doc.Class):
            pending.extend(item.own_members)


def parameters(item: doc.Function) -> list[str]:
    signature = item.signature_without_self
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and not name.startswith("_")
    ]


@pytest.mark.filterwarnings(f"ignore:{FOREIGN_WARNING}:UserWarning")
def test_the_reference_builds_without_a_warning(tmp_path: Path) -> None:
    render.configure(docformat="restructuredtext")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=FOREIGN_WARNING, category=UserWarning)
        pdoc.pdoc(*PUBLIC_MODULES, output_directory=tmp_path)
    pages = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*.html")}
    assert {"beamrouting.html", "beamrouting/store.html", "beamrouting/testing.html"} <= pages
    router_page = (tmp_path / "beamrouting.html").read_text(encoding="utf-8")
    for name in ("Router", "select_backend", "load_config", "RedisStore", "HealthPolicy", "statistics"):
        assert name in router_page


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
@pytest.mark.filterwarnings(f"ignore:{FOREIGN_WARNING}:UserWarning")
def test_every_public_name_has_a_docstring(module_name: str) -> None:
    missing = sorted(
        item.qualname
        for item in documented(module_name)
        if item.name != "__init__" and not item.docstring.strip()  # construction: on the class
    )
    assert not missing, f"{module_name}: public names without a docstring:\n" + "\n".join(missing)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
@pytest.mark.filterwarnings(f"ignore:{FOREIGN_WARNING}:UserWarning")
def test_every_parameter_is_named_in_its_docstring(module_name: str) -> None:
    undocumented: list[str] = []
    for item in documented(module_name):
        if isinstance(item, doc.Function):
            text = item.docstring
            if item.name == "__init__":
                continue  # the class's own docstring documents construction (checked below)
            names = parameters(item)
        elif isinstance(item, doc.Class) and not _is_plain_data(item):
            init = item.members.get("__init__")
            if not isinstance(init, doc.Function):
                continue
            text = item.docstring + (init.docstring if init.taken_from[0].startswith(PACKAGE) else "")
            names = parameters(init)
        else:
            continue
        undocumented.extend(f"{item.qualname}: {name}" for name in names if name not in text)
    assert not undocumented, f"{module_name}: parameters not named in their docstring:\n" + "\n".join(
        sorted(undocumented)
    )


def _is_plain_data(item: doc.Class) -> bool:
    """Structs, enums, named tuples and exceptions: their fields are documented one by one."""
    bases = {f"{module}.{qualname}" for module, qualname, _ in item.bases}
    plain = {"msgspec.Struct", "enum.Enum", "enum.StrEnum", "builtins.Exception", "builtins.tuple"}
    return bool(bases & plain) or issubclass(item.obj, BaseException)
