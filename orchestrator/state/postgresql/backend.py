"""The PostgreSQL backend as the registry (`orchestrator.state.registry`) opens it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.state.audit import AuditHead
from orchestrator.state.postgresql import schema
from orchestrator.state.postgresql.connection import PgConnection, connect, translate
from orchestrator.state.postgresql.store import PostgresStateStore
from orchestrator.state.registry import StateLocation


def open_store(
    location: StateLocation,
    *,
    audit_key_file: Path,
    busy_timeout_ms: int = 5000,
    clock: Callable[[], datetime] | None = None,
    migrate: bool = False,
) -> PostgresStateStore:
    return PostgresStateStore(location.url, label=location.label, audit_key_file=audit_key_file,
                              busy_timeout_ms=busy_timeout_ms, clock=clock, migrate=migrate)


_head_readers: dict[str, PgConnection] = {}
"""One connection per URL for the audit witness, which reads the head when a command
starts and again when it ends (one connection, not two: each costs a round trip or more)."""


def read_head(location: StateLocation) -> AuditHead | None:
    conn = _head_readers.get(location.url)
    try:
        if conn is None:
            conn = _head_readers[location.url] = connect(location.url, location.label)
        row = conn.execute("SELECT count, head_hash, key_id FROM audit_head WHERE id = 1"
                           ).fetchone()
    except Exception:  # noqa: BLE001 - "nothing readable", as for a missing SQLite file
        stale = _head_readers.pop(location.url, None)
        if stale is not None:
            stale.close()
        return None
    if row is None:
        return None
    return AuditHead(count=int(row["count"]), head_hash=str(row["head_hash"]),
                     key_id=row["key_id"])


def migrate(location: StateLocation, *, audit_key_file: Path) -> tuple[int, int]:
    conn = connect(location.url, location.label)
    try:
        with translate(location.label):
            return schema.migrate(conn, location.label, datetime.now(UTC), audit_key_file)
    finally:
        conn.close()
