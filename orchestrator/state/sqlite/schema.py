"""The SQLite schema: its migrations (each a tuple of statements, applied in order inside
one transaction) and the runner that brings a file up to `SCHEMA_VERSION` on open."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from orchestrator.errors import StateError
from orchestrator.state.audit import GENESIS_HASH, format_ts
from orchestrator.state.models import SIDE_STATES
from orchestrator.state.sql.exposures import EXPOSURE
from orchestrator.state.sql.fence import EPOCHS
from orchestrator.state.sql.seals import seal_at_migration
from orchestrator.state.sql.workqueue import WORK_QUEUE

_SIDE_CHECK = "CHECK (side IN ('blue', 'green'))"
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1
        """CREATE TABLE services (
            service TEXT PRIMARY KEY,
            live_side TEXT CHECK (live_side IN ('blue', 'green')),
            updated_at TEXT NOT NULL)""",
        f"""CREATE TABLE sides (
            service TEXT NOT NULL REFERENCES services (service),
            side TEXT NOT NULL {_SIDE_CHECK},
            patch_level TEXT, patched_at TEXT,
            verified_at TEXT, verification_ok INTEGER,
            verified_patch_level TEXT, verification_summary TEXT,
            PRIMARY KEY (service, side))""",
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, service TEXT,
            status TEXT NOT NULL, params TEXT NOT NULL, actor TEXT NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT, result TEXT)""",
        "CREATE INDEX runs_by_service ON runs (service, status)",
        """CREATE TABLE journal (
            run_id TEXT NOT NULL REFERENCES runs (run_id), seq INTEGER NOT NULL,
            step TEXT NOT NULL, phase TEXT NOT NULL CHECK (phase IN ('begin', 'end')),
            data TEXT NOT NULL, at TEXT NOT NULL,
            PRIMARY KEY (run_id, seq))""",
        """CREATE TABLE locks (
            service TEXT PRIMARY KEY, run_id TEXT NOT NULL, holder TEXT NOT NULL,
            pid INTEGER NOT NULL, hostname TEXT NOT NULL, acquired_at TEXT NOT NULL)""",
        """CREATE TABLE audit_log (
            seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
            command TEXT NOT NULL, service TEXT, reason TEXT, before TEXT NOT NULL,
            after TEXT NOT NULL, result TEXT NOT NULL, prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL)""",
        """CREATE TABLE audit_head (
            id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL,
            head_hash TEXT NOT NULL)""",
        f"INSERT INTO audit_head (id, count, head_hash) VALUES (1, 0, '{GENESIS_HASH}')",
    ),
    (  # version 2: side states, generations, host fingerprints; rollback target, flips
        "ALTER TABLE sides ADD COLUMN state TEXT NOT NULL DEFAULT 'untouched' CHECK (state IN ("
        + ", ".join(f"'{name}'" for name in SIDE_STATES)
        + "))",
        "ALTER TABLE sides ADD COLUMN state_since TEXT",
        "ALTER TABLE sides ADD COLUMN state_reason TEXT",
        "ALTER TABLE sides ADD COLUMN generation INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE sides ADD COLUMN hosts TEXT NOT NULL DEFAULT '{}'",
        # What a version 1 file knew, as a state: a passing verification not older than
        # the last patch and of the same level -> verified; a failed one not older than the
        # last patch -> verify_failed; a patch without such a verification -> patched.
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
        "ALTER TABLE services ADD COLUMN rollback_to TEXT CHECK (rollback_to IN ('blue', 'green'))",
        "ALTER TABLE services ADD COLUMN flip_problem TEXT",
        "ALTER TABLE services ADD COLUMN pending_flip TEXT",
    ),
    (  # version 3: keyed audit records with the writer's OS identity
        "ALTER TABLE audit_log ADD COLUMN os_uid INTEGER",
        "ALTER TABLE audit_log ADD COLUMN os_user TEXT",
        "ALTER TABLE audit_log ADD COLUMN sudo_user TEXT",
        "ALTER TABLE audit_log ADD COLUMN hostname TEXT",
        "ALTER TABLE audit_log ADD COLUMN key_id TEXT",
        "ALTER TABLE audit_log ADD COLUMN mac TEXT",
        # the key id the chain is keyed with; NULL: not keyed yet (the next change writes
        # the boundary record after verifying the unkeyed records once)
        "ALTER TABLE audit_head ADD COLUMN key_id TEXT",
    ),
    (  # version 4: a rollback answered by aborting a run before its flip (idempotence)
        "ALTER TABLE services ADD COLUMN rollback_kept TEXT",
    ),
    EPOCHS,  # version 5: run epochs (fencing tokens)
    (  # version 6: the rows that gate traffic are sealed with the audit key (seals.py);
        # the rows found are sealed as they are by `migrate` (it trusts them)
        "ALTER TABLE services ADD COLUMN mac TEXT",
        "ALTER TABLE sides ADD COLUMN mac TEXT",
        "ALTER TABLE runs ADD COLUMN mac TEXT",
    ),
    WORK_QUEUE,  # version 7: the work queue of workers (filled only on PostgreSQL)
    EXPOSURE,  # version 8: progressive exposure (services.exposed_side, exposure_percent)
)
SEALED_FROM = 6
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
