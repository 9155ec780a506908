from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.advisories.feeds import SigningKey


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    """One repository key for the session (its gpg-agent is stopped at the end)."""
    key = SigningKey(tmp_path_factory.mktemp("gpg") / "home")
    yield key
    key.close()


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    """A key nobody configured (an attacker's)."""
    key = SigningKey(tmp_path_factory.mktemp("gpg") / "attacker", "attacker")
    yield key
    key.close()
