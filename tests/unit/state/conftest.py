"""The state store's contract tests run against every backend: a SQLite file per test, and
a real PostgreSQL database (one per test module, emptied before each test)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.state.base import StateStore
from orchestrator.state.registry import (
    StateLocation,
    open_store,
    parse_state_url,
    sqlite_location,
)
from tests.support import postgres

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield postgres.migrated(url)


@dataclass(frozen=True)
class Opener:
    """Opens stores on one location with one audit key: each call is another "process"."""

    backend: str
    location: StateLocation
    key_file: Path
    tampered: list[str] = field(default_factory=list)
    """What `tamper` ran: the row seals are checked after each test that changed no row."""

    def __call__(self, **options: Any) -> StateStore:
        return open_store(self.location, audit_key_file=self.key_file, **options)

    def subprocess_code(self) -> str:
        """Python lines that open the same store as `s` in another process."""
        return (
            "from pathlib import Path\n"
            "from orchestrator.state.registry import open_store, parse_state_url\n"
            f"s = open_store(parse_state_url({self.location.url!r}), "
            f"audit_key_file=Path({str(self.key_file)!r}))\n"
        )

    def tamper(self, *statements: str, params: tuple[object, ...] = ()) -> None:
        """Edit the store behind its back, as someone with write access could."""
        self.tampered.extend(statements)
        if self.location.path is not None:
            import sqlite3

            conn = sqlite3.connect(self.location.path, isolation_level=None)
            try:
                for statement in statements:
                    conn.execute(statement, params) if params else conn.execute(statement)
            finally:
                conn.close()
        else:
            postgres.execute(self.location.url, *statements, params=params)


@pytest.fixture(params=BACKENDS)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    key_file = tmp_path / "keys" / "audit.key"
    if request.param == "sqlite":
        made = Opener("sqlite", sqlite_location(tmp_path / "state" / "state.db"), key_file)
    else:
        url = request.getfixturevalue("pg_database")
        postgres.empty_tables(url)
        made = Opener("postgresql", parse_state_url(url), key_file)
    yield made
    # every write seals the row it wrote: whatever a test did through the store, no row
    # that gates traffic is left with a stale seal (tests that edit rows by hand excepted)
    if made.key_file.exists() and not any(
            table in statement for statement in made.tampered
            for table in ("services", "sides", "runs")):
        with made() as store:
            stale = [f.message for f in store.verify_audit().findings if f.kind == "row_forged"]
        assert stale == [], stale
