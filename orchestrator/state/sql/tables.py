"""Every table of the state store, once, for both backends: their columns (with the
SQLite schema version that added each), constraints and indexes, and the statements that
move existing rows along. `sqlite/schema.py` and `postgresql/schema.py` generate their
migrations from it (`migrations(dialect)`), so the two schemas cannot drift apart.

The histories differ and are kept: SQLite's file grew one version at a time (1 to 7, a
version ALTERs what the one before created); PostgreSQL's version 1 is SQLite's schema 4
created at once, and its version k is SQLite's k + 3. Dialect knobs: the integer type of
a 64-bit counter (SQLite: INTEGER, so `audit_log.seq` stays the rowid; PostgreSQL:
BIGINT), and the few things only one backend has (`only=`): PostgreSQL's traffic holders
(its traffic lock is an advisory lock; SQLite's is a file lock) and `runs.insert_order`
(what SQLite's rowid gives for free).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from orchestrator.state.audit import GENESIS_HASH
from orchestrator.state.models import SIDE_STATES

DialectName = Literal["sqlite", "postgresql"]
ColumnType = Literal["text", "int", "bigint", "counter", "identity"]


@dataclass(frozen=True)
class Dialect:
    name: DialectName
    types: dict[str, str]
    """Logical column type -> the backend's type."""
    first: int
    """The SQLite schema version this backend's version 1 creates at once."""

    def version(self, sqlite_version: int) -> int:
        """This backend's version number of SQLite's schema `sqlite_version`."""
        return max(1, sqlite_version - self.first + 1)


SQLITE = Dialect("sqlite", {"text": "TEXT", "int": "INTEGER", "bigint": "BIGINT",
                            "counter": "INTEGER"}, first=1)
POSTGRESQL = Dialect("postgresql", {"text": "TEXT", "int": "INTEGER", "bigint": "BIGINT",
                                    "counter": "BIGINT",
                                    "identity": "BIGINT GENERATED ALWAYS AS IDENTITY"},
                     first=4)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "text"
    since: int = 1
    """The SQLite schema version that added it (a version ALTERs it in on older files)."""
    constraints: str = ""
    """NOT NULL, DEFAULT, CHECK, REFERENCES, PRIMARY KEY: the same words on both."""
    only: DialectName | None = None


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    since: int = 1
    primary_key: tuple[str, ...] = ()
    """A key of several columns (one column's is among its constraints)."""
    indexes: tuple[tuple[str, str], ...] = ()
    """(name, columns) created with the table."""
    only: DialectName | None = None


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"CHECK ({column} IN ({', '.join(repr(v) for v in values)}))"


_SIDES = ("blue", "green")

TABLES: tuple[Table, ...] = (
    Table("services", (
        Column("service", constraints="PRIMARY KEY"),
        Column("live_side", constraints=_in("live_side", _SIDES)),
        Column("updated_at", constraints="NOT NULL"),
        # version 2: the rollback target and the flips' problems
        Column("rollback_to", since=2, constraints=_in("rollback_to", _SIDES)),
        Column("flip_problem", since=2),
        Column("pending_flip", since=2),
        # version 4: a rollback answered by aborting a run before its flip (idempotence)
        Column("rollback_kept", since=4),
        Column("mac", since=6),  # version 6: the rows that gate traffic are sealed
        # version 8: progressive exposure (`exposures.py`)
        Column("exposed_side", since=8, constraints=_in("exposed_side", _SIDES)),
        Column("exposure_percent", "int", since=8,
               constraints="NOT NULL DEFAULT 0 CHECK (exposure_percent BETWEEN 0 AND 99)"),
    )),
    Table("sides", (
        Column("service", constraints="NOT NULL REFERENCES services (service)"),
        Column("side", constraints="NOT NULL " + _in("side", _SIDES)),
        Column("patch_level"),
        Column("patched_at"),
        Column("verified_at"),
        Column("verification_ok", "int"),
        Column("verified_patch_level"),
        Column("verification_summary"),
        # version 2: side states, generations, host fingerprints
        Column("state", since=2,
               constraints="NOT NULL DEFAULT 'untouched' " + _in("state", SIDE_STATES)),
        Column("state_since", since=2),
        Column("state_reason", since=2),
        Column("generation", "int", since=2, constraints="NOT NULL DEFAULT 0"),
        Column("hosts", since=2, constraints="NOT NULL DEFAULT '{}'"),
        Column("mac", since=6),
    ), primary_key=("service", "side")),
    Table("runs", (
        Column("run_id", constraints="PRIMARY KEY"),
        Column("kind", constraints="NOT NULL"),
        Column("service"),
        Column("status", constraints="NOT NULL"),
        Column("params", constraints="NOT NULL"),
        Column("actor", constraints="NOT NULL"),
        Column("started_at", constraints="NOT NULL"),
        Column("finished_at"),
        Column("result"),
        # what SQLite's rowid gives for free (ties of started_at)
        Column("insert_order", "identity", only="postgresql"),
        Column("epoch", "int", since=5),  # version 5: run epochs (fencing tokens)
        Column("mac", since=6),
    ), indexes=(("runs_by_service", "service, status"),)),
    Table("journal", (
        Column("run_id", constraints="NOT NULL REFERENCES runs (run_id)"),
        Column("seq", "int", constraints="NOT NULL"),
        Column("step", constraints="NOT NULL"),
        Column("phase", constraints="NOT NULL " + _in("phase", ("begin", "end"))),
        Column("data", constraints="NOT NULL"),
        Column("at", constraints="NOT NULL"),
    ), primary_key=("run_id", "seq")),
    Table("locks", (
        Column("service", constraints="PRIMARY KEY"),
        Column("run_id", constraints="NOT NULL"),
        Column("holder", constraints="NOT NULL"),
        Column("pid", "int", constraints="NOT NULL"),
        Column("hostname", constraints="NOT NULL"),
        Column("acquired_at", constraints="NOT NULL"),
        Column("epoch", "int", since=5, constraints="NOT NULL DEFAULT 0"),
    )),
    # who holds a service's traffic lock (the lock itself is an advisory lock)
    Table("traffic_holders", (
        Column("service", constraints="PRIMARY KEY"),
        Column("command", constraints="NOT NULL"),
        Column("pid", "int", constraints="NOT NULL"),
        Column("hostname", constraints="NOT NULL"),
        Column("since", constraints="NOT NULL"),
    ), only="postgresql"),
    Table("audit_log", (
        Column("seq", "counter", constraints="PRIMARY KEY"),
        Column("at", constraints="NOT NULL"),
        Column("actor", constraints="NOT NULL"),
        Column("command", constraints="NOT NULL"),
        Column("service"),
        Column("reason"),
        Column("before", constraints="NOT NULL"),
        Column("after", constraints="NOT NULL"),
        Column("result", constraints="NOT NULL"),
        Column("prev_hash", constraints="NOT NULL"),
        Column("hash", constraints="NOT NULL"),
        # version 3: keyed audit records with the writer's OS identity
        Column("os_uid", "int", since=3),
        Column("os_user", since=3),
        Column("sudo_user", since=3),
        Column("hostname", since=3),
        Column("key_id", since=3),
        Column("mac", since=3),
    )),
    Table("audit_head", (
        Column("id", "int", constraints="PRIMARY KEY CHECK (id = 1)"),
        Column("count", "counter", constraints="NOT NULL"),
        Column("head_hash", constraints="NOT NULL"),
        # the key id the chain is keyed with; NULL: not keyed yet (the next change writes
        # the boundary record after verifying the unkeyed records once)
        Column("key_id", since=3),
    )),
    # version 5: the newest epoch handed out per lock (a service, or campaign:NAME), which
    # run got it and when; a lock row and a run row carry the epoch they hold
    Table("epochs", (
        Column("lock", constraints="PRIMARY KEY"),
        Column("epoch", "int", constraints="NOT NULL"),
        Column("run_id", constraints="NOT NULL"),
        Column("at", constraints="NOT NULL"),
    ), since=5),
    # version 7: the work queue of campaigns run by workers (`workqueue.py`; filled only on
    # PostgreSQL). One row per campaign run handed to workers: its fleet-wide failure budget
    # and the per-site limits, and why no new service may start any more (stopped)
    Table("work_campaigns", (
        Column("campaign_run", constraints="PRIMARY KEY"),
        Column("max_failed_services", "int"),
        Column("max_failed_hosts_percent", "int"),
        Column("hosts_total", "int", constraints="NOT NULL"),
        Column("site_limits", constraints="NOT NULL"),
        Column("enqueued_at", constraints="NOT NULL"),
        Column("stopped"),
    ), since=7),
    # one row per service of such a run: where it runs (site), its place (wave, position),
    # who claimed it, how often (claims: 2 and more are takeovers), and how it ended
    Table("work_queue", (
        Column("campaign_run", constraints="NOT NULL REFERENCES work_campaigns (campaign_run)"),
        Column("service", constraints="NOT NULL"),
        Column("site", constraints="NOT NULL"),
        Column("wave", "int", constraints="NOT NULL"),
        Column("position", "int", constraints="NOT NULL"),
        Column("hosts", "int", constraints="NOT NULL"),
        Column("stop_on_failure", "int", constraints="NOT NULL"),
        Column("state", constraints="NOT NULL DEFAULT 'queued' " + _in(
            "state", ("queued", "claimed", "done", "failed", "deferred"))),
        Column("worker_id"),
        Column("claims", "int", constraints="NOT NULL DEFAULT 0"),
        Column("claimed_at"),
        Column("outcome"),
        Column("failed_hosts", "int", constraints="NOT NULL DEFAULT 0"),
        Column("finished_at"),
    ), since=7, primary_key=("campaign_run", "service"),
        indexes=(("work_queue_by_site", "site, state"),)),
    # one row per worker process: its site and host, and the session advisory lock
    # (lock_key("worker", worker_id), as pg_locks shows it) that says it is alive
    Table("workers", (
        Column("worker_id", constraints="PRIMARY KEY"),
        Column("site", constraints="NOT NULL"),
        Column("hostname", constraints="NOT NULL"),
        Column("pid", "int", constraints="NOT NULL"),
        Column("max_parallel", "int", constraints="NOT NULL"),
        Column("lock_classid", "bigint", constraints="NOT NULL"),
        Column("lock_objid", "bigint", constraints="NOT NULL"),
        Column("started_at", constraints="NOT NULL"),
        Column("heartbeat_at", constraints="NOT NULL"),
        Column("stopped_at"),
    ), since=7),
)

DATA: tuple[tuple[int, bool, str], ...] = (
    # (SQLite version, also when created at once, statement): run after that version's
    # tables and columns
    (1, True, f"INSERT INTO audit_head (id, count, head_hash) VALUES (1, 0, '{GENESIS_HASH}')"),
    # a lock held while the store is migrated gets epoch 1 (its run learns it on resume)
    (5, False, "INSERT INTO epochs (lock, epoch, run_id, at) SELECT service, 1, run_id, "
               "acquired_at FROM locks"),
    (5, False, "UPDATE locks SET epoch = 1"),
)


def column_sql(column: Column, dialect: Dialect) -> str:
    return " ".join(w for w in (column.name, dialect.types[column.type], column.constraints)
                    if w)


def _mine(item: Table | Column, dialect: Dialect) -> bool:
    return item.only is None or item.only == dialect.name


def create_table(table: Table, dialect: Dialect, through: int) -> str:
    """CREATE TABLE with the columns SQLite's version `through` had."""
    parts = [column_sql(c, dialect) for c in table.columns
             if c.since <= through and _mine(c, dialect)]
    if table.primary_key:
        parts.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    return f"CREATE TABLE {table.name} ({', '.join(parts)})"


def _step(dialect: Dialect, created: int, version: int,
          history: Mapping[int, tuple[str, ...]]) -> tuple[str, ...]:
    """The statements that bring SQLite's schema `created` (0: nothing) to `version`."""
    out: list[str] = []
    tables = [t for t in TABLES if _mine(t, dialect)]
    for table in (t for t in tables if created < t.since <= version):
        out.append(create_table(table, dialect, version))
        out += [f"CREATE INDEX {name} ON {table.name} ({cols})" for name, cols in table.indexes]
    for table in (t for t in tables if t.since <= created):
        out += [f"ALTER TABLE {table.name} ADD COLUMN {column_sql(c, dialect)}"
                for c in table.columns if created < c.since <= version and _mine(c, dialect)]
    out += [sql for at, at_once, sql in DATA
            if created < at <= version and (at_once or version - created == 1)]
    if version - created == 1:
        out += history.get(version, ())
    return tuple(out)


def migrations(dialect: Dialect, history: Mapping[int, tuple[str, ...]] | None = None
               ) -> tuple[tuple[str, ...], ...]:
    """Each of the backend's schema versions, in order: its statements. `history`: a
    backend's own statements that move its existing rows along, run after SQLite's version
    N when a database is migrated to it one version at a time."""
    history = history or {}
    first = _step(dialect, 0, dialect.first, history)
    return (first, *(_step(dialect, v - 1, v, history)
                     for v in range(dialect.first + 1, LATEST + 1)))


LATEST = max([t.since for t in TABLES] + [c.since for t in TABLES for c in t.columns])
"""SQLite's newest schema version."""
SEALS_ADDED = 6
"""SQLite's version that added the row seals (`seals.py`): migrating across it seals the rows
found."""
