"""The SQLite schema: its migrations (each a tuple of statements, applied in order inside
one transaction; generated from `state.sql.tables`, the one table list both backends
share) and the runner that brings a file up to `SCHEMA_VERSION` on open."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from orchestrator.errors import StateError
from orchestrator.state.audit import format_ts
from orchestrator.state.sql.seals import seal_at_migration
from orchestrator.state.sql.tables import SEALS_ADDED, SQLITE, migrations

_DERIVED_STATES = (
    # What a version 1 file knew, as a state: a passing verification not older than the
    # last patch and of the same level -> verified; a failed one not older than the last
    # patch -> verify_failed; a patch without such a verification -> patched.
    """UPDATE sides SET
        state = CASE
            WHEN verification_ok = 1 AND verified_at IS NOT NULL
                 AND (patched_at IS NULL OR verified_at >= patched_at)
                 AND verified_patch_level IS patch_level THEN 'verified'
            WHEN verification_ok = 0 AND (patched_at IS NULL OR verified_at >= patched_at)
                 THEN 'verify_failed'
            WHEN patch_level IS NOT NULL THEN 'patched'
            ELSE 'untouched' END,
        state_since = CASE
            WHEN verified_at IS NULL OR (patched_at IS NOT NULL AND patched_at > verified_at)
            THEN patched_at ELSE verified_at END,
        state_reason = 'derived from the stored patch and verification (schema 2)'""",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = migrations(SQLITE, {2: _DERIVED_STATES})
"""Version 1 to 8, one at a time, generated from the table list (`state.sql.tables`): 2 side
states, generations, host fingerprints, rollback target, flips; 3 keyed audit records with
the writer's OS identity; 4 a rollback answered by aborting a run (idempotence); 5 run
epochs (fencing tokens); 6 row seals; 7 the work queue of workers (filled only on
PostgreSQL); 8 progressive exposure (services.exposed_side, exposure_percent)."""
SEALED_FROM = SQLITE.version(SEALS_ADDED)
"""The first version with row seals."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The newest schema this code knows; older files are migrated forward on open."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The version of the schema in the file (0: an empty file)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)


def refuse_newer(path: Path, version: int) -> None:
    """StateError for a file written by a newer bluegreen (never downgraded)."""
    if version > SCHEMA_VERSION:
        raise StateError(
            f"state database {path} has schema version {version}, but this bluegreen "
            f"only knows versions up to {SCHEMA_VERSION}",
            hint="upgrade bluegreen to the version that wrote this file; do not downgrade it",
        )


def migrate(conn: sqlite3.Connection, path: Path, now: datetime, audit_key_file: Path) -> None:
    """Apply the missing migrations; call inside a writing transaction (another process
    may have migrated since the caller looked: the version is read again here). Crossing
    `SEALED_FROM` seals the rows found with the audit key (trusting them)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version "
        "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    current = schema_version(conn)
    refuse_newer(path, current)
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
            (version, format_ts(now)),
        )
        if version == SEALED_FROM:
            seal_at_migration(conn, audit_key_file, str(path))
