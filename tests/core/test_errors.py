"""The error tree: every routing error's class and code, JSON-compatible details,
pickling and equality.
"""

from __future__ import annotations

import json
import pickle
import re

import pytest

import beamrouting._core._errors as errors_module
from beamrouting import (
    BeamRoutingError,
    CatalogError,
    InvalidPolicy,
    NoBackendAvailable,
    RoutingError,
    UnknownBackend,
)
from tests.core._support import ERROR_CLASSES


def test_every_routing_error_is_a_beamrouting_error_with_its_code() -> None:
    for code, cls in ERROR_CLASSES.items():
        assert issubclass(cls, RoutingError)
        assert issubclass(cls, BeamRoutingError)
        assert cls.code == code
        error = cls("x")
        assert (error.code, error.detail) == (code, "x")
    assert set(RoutingError.__subclasses__()) == set(ERROR_CLASSES.values())


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, BeamRoutingError)
    assert issubclass(CatalogError, ValueError)
    assert not issubclass(CatalogError, RoutingError)


def test_errors_module_docstring_draws_the_whole_tree() -> None:
    doc = errors_module.__doc__
    assert doc is not None
    tree = [line.strip() for line in doc.splitlines() if "──" in line or line.strip() == "BeamRoutingError"]
    drawn = " ".join(tree)
    for name in errors_module.__all__:
        obj = getattr(errors_module, name)
        if isinstance(obj, type) and issubclass(obj, BeamRoutingError):
            assert re.search(rf"\b{name}\b", drawn), f"{name} is missing from the tree"
    for code in ERROR_CLASSES:
        assert code in drawn


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("s", "s"),
        (3, 3),
        (2.5, 2.5),
        (True, True),
        (None, None),
        (("a", 1), ["a", 1]),
        (["a", ("b",)], ["a", ["b"]]),
        (b"raw", repr(b"raw")),
        ({1, 2}, repr({1, 2})),
    ],
)
def test_error_detail_is_json_compatible(value: object, detail: object) -> None:
    error = UnknownBackend(value)
    assert error.detail == detail
    assert json.loads(json.dumps(error.detail)) == detail
    assert error.to_dict() == {"code": "unknown_backend", "detail": detail}


def test_error_detail_of_an_arbitrary_object_is_its_repr() -> None:
    thing = object()
    assert UnknownBackend(thing).detail == repr(thing)


def test_errors_pickle_and_compare_by_code_and_detail() -> None:
    error = NoBackendAvailable({"policy": "sticky", "eligible_backends": []})
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is NoBackendAvailable
    assert clone == error
    assert UnknownBackend("a") != UnknownBackend("b")
    assert UnknownBackend("a") != InvalidPolicy("a")
