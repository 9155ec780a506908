"""The PostgreSQL backend as the registry (`orchestrator.state.registry`) opens it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from orchestrator.state.audit import AuditHead
from orchestrator.state.postgresql import schema
from orchestrator.state.postgresql.connection import connect, translate
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


def read_head(location: StateLocation) -> AuditHead | None:
    try:
        conn = connect(location.url, location.label)
    except Exception:  # noqa: BLE001 - "nothing readable", as for a missing SQLite file
        return None
    try:
        row = conn.execute("SELECT count, head_hash, key_id FROM audit_head WHERE id = 1"
                           ).fetchone()
    except psycopg.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    return AuditHead(count=int(row["count"]), head_hash=str(row["head_hash"]),
                     key_id=row["key_id"])


def migrate(location: StateLocation, *, audit_key_file: Path) -> tuple[int, int]:
    conn = connect(location.url, location.label)
    try:
        with translate(location.label):
            return schema.migrate(conn, location.label, datetime.now(UTC))
    finally:
        conn.close()
