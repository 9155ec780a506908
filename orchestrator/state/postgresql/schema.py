"""The PostgreSQL schema: the same tables and columns as SQLite's newest schema (both
generated from `state.sql.tables`; values stored the same way: timestamps and maps as text, flags as 0/1, so records and their hashes
read back identically), in versioned migrations applied by `bluegreen state migrate`.

Migrations run in one transaction under a namespaced advisory transaction lock, so two
machines migrating at once apply each version once. A store refuses to open a database
whose schema is older (run `state migrate`) or newer (upgrade bluegreen) than this code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from psycopg import errors as pg_errors

from orchestrator.errors import StateError
from orchestrator.state.audit import format_ts
from orchestrator.state.postgresql.connection import PgConnection
from orchestrator.state.postgresql.keys import lock_key
from orchestrator.state.sql.seals import seal_at_migration
from orchestrator.state.sql.tables import POSTGRESQL, SEALS_ADDED, migrations

MIGRATIONS: tuple[tuple[str, ...], ...] = migrations(POSTGRESQL)
"""Generated from the table list (`state.sql.tables`): version 1 is SQLite's schema 4
created at once, version k is SQLite's k + 3 (2: run epochs, 3: row seals, 4: the work
queue of workers, 5: progressive exposure)."""
SEALED_FROM = POSTGRESQL.version(SEALS_ADDED)
"""The first version with row seals."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The newest schema this code knows."""


def schema_version(conn: PgConnection) -> int:
    """The version of the schema in the database (0: no bluegreen tables yet)."""
    try:  # one round trip in the common case (the table exists)
        return int(conn.scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
    except pg_errors.UndefinedTable:  # autocommit (on open), or after CREATE IF NOT EXISTS
        return 0


def check_version(label: str, version: int) -> None:
    """StateError unless the database has exactly this code's schema."""
    if version > SCHEMA_VERSION:
        raise StateError(
            f"state database {label} has schema version {version}, but this bluegreen only "
            f"knows versions up to {SCHEMA_VERSION}",
            hint="upgrade bluegreen on this machine to the version the team uses",
        )
    if version < SCHEMA_VERSION:
        state = "has no bluegreen schema" if version == 0 else f"has schema version {version}"
        raise StateError(
            f"state database {label} {state} (this bluegreen needs {SCHEMA_VERSION})",
            hint="run `bluegreen state migrate` once (it creates or updates the tables)",
        )


def migrate(conn: PgConnection, label: str, now: datetime,
            audit_key_file: Path) -> tuple[int, int]:
    """Apply the missing migrations in one transaction: (version before, version after).
    Crossing `SEALED_FROM` seals the rows found with the audit key (trusting them)."""
    with conn.raw.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("migrate", ""),))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                     "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            check_version(label, current)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                         (version, format_ts(now)))
            if version == SEALED_FROM:
                seal_at_migration(conn, audit_key_file, label)
    return current, SCHEMA_VERSION
