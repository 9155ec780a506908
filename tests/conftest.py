"""Shared fixtures. The lab is real: when it cannot start, tests FAIL (never skip)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.lab.lab import Lab, LabShape
from tests.support.lab import reset_state_dir


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Config snapshots (see orchestrator.config.snapshot) go to a per-session directory,
    for this process and every `bluegreen` it starts."""
    path = tmp_path_factory.mktemp("cache")
    path.chmod(0o700)
    old = os.environ.get("BLUEGREEN_CACHE_DIR")
    os.environ["BLUEGREEN_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BLUEGREEN_CACHE_DIR", None)
    else:
        os.environ["BLUEGREEN_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One lab (web + api, 2 hosts per side) for the whole session.

    A lab that was already running is reused and left running; a lab this session started
    is taken down at the end (set BLUEGREEN_KEEP_LAB=1 to keep it for the next run).
    """
    the_lab = Lab()
    was_up = the_lab.load() is not None
    try:
        the_lab.up(LabShape())
    except Exception as exc:  # noqa: BLE001 - report any failure loudly
        pytest.fail(f"the lab could not start: {exc}", pytrace=False)
    yield the_lab
    if not was_up and not os.environ.get("BLUEGREEN_KEEP_LAB"):
        result = the_lab.down()
        assert not result["leftovers"], result


@pytest.fixture
def fresh_lab(lab: Lab) -> Lab:
    """For destructive tests: every host back to its image, traffic on blue, empty state."""
    lab.reset()
    reset_state_dir(lab)
    return lab


@pytest.fixture
def lab_config(lab: Lab) -> Path:
    return lab.paths.config
