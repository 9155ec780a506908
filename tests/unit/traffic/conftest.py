"""The kernel tests' fixtures: a real SQLite store in tmp_path, a fake router with web on
blue (tests that need more services define their own `router`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.state import SQLiteStateStore
from orchestrator.testing import FakeRouter, temp_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStateStore]:
    with temp_store(tmp_path) as opened:
        yield opened


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter({"web": "blue"})
