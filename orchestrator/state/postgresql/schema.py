"""The PostgreSQL schema: the same tables and columns as SQLite's newest schema (values
stored the same way: timestamps and maps as text, flags as 0/1, so records and their hashes
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
from orchestrator.state.audit import GENESIS_HASH, format_ts
from orchestrator.state.models import SIDE_STATES
from orchestrator.state.postgresql.connection import PgConnection
from orchestrator.state.postgresql.keys import lock_key
from orchestrator.state.sql.exposures import EXPOSURE
from orchestrator.state.sql.fence import EPOCHS
from orchestrator.state.sql.seals import seal_at_migration
from orchestrator.state.sql.workqueue import WORK_QUEUE

_SIDE = "CHECK (side IN ('blue', 'green'))"
_STATES = ", ".join(f"'{name}'" for name in SIDE_STATES)
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1: SQLite's schema 4
        """CREATE TABLE services (
            service TEXT PRIMARY KEY,
            live_side TEXT CHECK (live_side IN ('blue', 'green')),
            updated_at TEXT NOT NULL,
            rollback_to TEXT CHECK (rollback_to IN ('blue', 'green')),
            flip_problem TEXT, pending_flip TEXT, rollback_kept TEXT)""",
        f"""CREATE TABLE sides (
            service TEXT NOT NULL REFERENCES services (service),
            side TEXT NOT NULL {_SIDE},
            patch_level TEXT, patched_at TEXT,
            verified_at TEXT, verification_ok INTEGER,
            verified_patch_level TEXT, verification_summary TEXT,
            state TEXT NOT NULL DEFAULT 'untouched' CHECK (state IN ({_STATES})),
            state_since TEXT, state_reason TEXT,
            generation INTEGER NOT NULL DEFAULT 0,
            hosts TEXT NOT NULL DEFAULT '{{}}',
            PRIMARY KEY (service, side))""",
        # insert_order: what SQLite's rowid gives for free (ties of started_at)
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, service TEXT,
            status TEXT NOT NULL, params TEXT NOT NULL, actor TEXT NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT, result TEXT,
            insert_order BIGINT GENERATED ALWAYS AS IDENTITY)""",
        "CREATE INDEX runs_by_service ON runs (service, status)",
        """CREATE TABLE journal (
            run_id TEXT NOT NULL REFERENCES runs (run_id), seq INTEGER NOT NULL,
            step TEXT NOT NULL, phase TEXT NOT NULL CHECK (phase IN ('begin', 'end')),
            data TEXT NOT NULL, at TEXT NOT NULL,
            PRIMARY KEY (run_id, seq))""",
        """CREATE TABLE locks (
            service TEXT PRIMARY KEY, run_id TEXT NOT NULL, holder TEXT NOT NULL,
            pid INTEGER NOT NULL, hostname TEXT NOT NULL, acquired_at TEXT NOT NULL)""",
        # who holds a service's traffic lock (the lock itself is an advisory lock)
        """CREATE TABLE traffic_holders (
            service TEXT PRIMARY KEY, command TEXT NOT NULL, pid INTEGER NOT NULL,
            hostname TEXT NOT NULL, since TEXT NOT NULL)""",
        """CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
            command TEXT NOT NULL, service TEXT, reason TEXT, before TEXT NOT NULL,
            after TEXT NOT NULL, result TEXT NOT NULL, prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL, os_uid INTEGER, os_user TEXT, sudo_user TEXT,
            hostname TEXT, key_id TEXT, mac TEXT)""",
        """CREATE TABLE audit_head (
            id INTEGER PRIMARY KEY CHECK (id = 1), count BIGINT NOT NULL,
            head_hash TEXT NOT NULL, key_id TEXT)""",
        f"INSERT INTO audit_head (id, count, head_hash) VALUES (1, 0, '{GENESIS_HASH}')",
    ),
    EPOCHS,  # version 2: SQLite's schema 5 (run epochs, fencing)
    (  # version 3 (SQLite's 6): the rows that gate traffic are sealed with the audit key;
        # the rows found are sealed as they are by `migrate` (it trusts them)
        "ALTER TABLE services ADD COLUMN mac TEXT",
        "ALTER TABLE sides ADD COLUMN mac TEXT",
        "ALTER TABLE runs ADD COLUMN mac TEXT",
    ),
    WORK_QUEUE,  # version 4 (SQLite's 7): the work queue of campaigns run by workers
    EXPOSURE,  # version 5 (SQLite's 8): progressive exposure
)
SEALED_FROM = 3
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
