"""The store conformance suite (beamrouting.testing.check_store) against the stores."""

from __future__ import annotations

import pytest

from beamrouting import MemoryStore
from beamrouting.testing import check_store

pytestmark = pytest.mark.anyio


async def test_the_memory_store_passes_the_store_conformance_suite() -> None:
    await check_store(MemoryStore)
