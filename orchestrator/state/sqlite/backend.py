"""The SQLite backend as the registry (`orchestrator.state.registry`) opens it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from orchestrator.state.audit import AuditHead
from orchestrator.state.registry import StateLocation
from orchestrator.state.sqlite import connection
from orchestrator.state.sqlite.schema import SCHEMA_VERSION
from orchestrator.state.sqlite.store import SQLiteStateStore


def _path(location: StateLocation) -> Path:
    assert location.path is not None, "a SQLite location names its file"
    return location.path


def open_store(
    location: StateLocation,
    *,
    audit_key_file: Path,
    busy_timeout_ms: int = 5000,
    clock: Callable[[], datetime] | None = None,
    migrate: bool = False,
) -> SQLiteStateStore:
    """A SQLite file is always migrated on open (it belongs to this machine)."""
    return SQLiteStateStore(_path(location), busy_timeout_ms=busy_timeout_ms, clock=clock,
                            audit_key_file=audit_key_file)


def read_head(location: StateLocation) -> AuditHead | None:
    return connection.read_head(_path(location))


def migrate(location: StateLocation, *, audit_key_file: Path) -> tuple[int, int]:
    import sqlite3

    before = 0
    path = _path(location)
    if path.exists():
        with connection.translate(path, 5000):
            conn = sqlite3.connect(path)
            try:
                from orchestrator.state.sqlite.schema import schema_version

                before = schema_version(conn)
            finally:
                conn.close()
    SQLiteStateStore(path, audit_key_file=audit_key_file).close()
    return before, SCHEMA_VERSION
