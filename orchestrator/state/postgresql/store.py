"""The team state store: one PostgreSQL database shared by every operator, machine and
scheduler (psycopg 3).

What a caller must know:
- One `PostgresStateStore` per thread: it holds one connection (one server session), and
  the run and traffic locks it takes belong to that session (see `locks.py`).
- Every state-changing method is one transaction that first takes the row lock on the
  audit head (`SELECT ... FOR UPDATE`): writers from every machine serialize there, read
  the state after the previous writer's commit, and extend one chain that never forks.
  A writer waits up to `busy_timeout_ms` for that lock, then gets a `StateError`.
- The schema is created and updated by `bluegreen state migrate` (never implicitly: a
  team upgrades deliberately); a store refuses a database of another schema version.
- The audit key stays a file on each machine (the same key everywhere), never in the
  database: someone who can write the database cannot forge records.

The SQL of sides, flips, runs and the audit chain is shared with SQLite
(`orchestrator.state.sql`); this module adds the connection, its transactions and schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

from orchestrator.errors import LocksLost, StateError
from orchestrator.state.postgresql import schema
from orchestrator.state.postgresql.connection import PgConnection, connect, translate
from orchestrator.state.postgresql.locks import PgLocks
from orchestrator.state.sql.exposures import ExposureRows
from orchestrator.state.sql.runs import RunRows
from orchestrator.state.sql.transfer import TableTransfer

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore


class PostgresStateStore(ExposureRows, RunRows, PgLocks, TableTransfer):
    """`StateStore` backed by a PostgreSQL database. Use as a context manager or call
    `close()` (closing ends the session, and so releases its locks)."""

    INSERT_ORDER = "insert_order"
    HEAD_LOCK = " FOR UPDATE"
    DUPLICATE_KEY = (pg_errors.UniqueViolation,)

    def __init__(
        self,
        url: str,
        *,
        label: str,
        audit_key_file: str | Path,
        busy_timeout_ms: int = 5000,
        clock: Callable[[], datetime] | None = None,
        migrate: bool = False,
    ) -> None:
        super().__init__(location=label, audit_key_file=Path(audit_key_file), clock=clock)
        self.busy_timeout_ms = busy_timeout_ms
        self._run_locks = set()
        self._traffic_locks = set()
        self._conn = connect(url, label, lock_timeout_ms=busy_timeout_ms)
        try:
            with self._translate():
                if migrate:
                    schema.migrate(self._conn, label, self._now(), self.audit_key_file)
                schema.check_version(label, schema.schema_version(self._conn))
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PostgresStateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """psycopg errors as StateError; a lost session while this store holds run or
        traffic locks as `LocksLost` (a `Fenced`): the locks ended with the session (another process may hold them now),
        so nothing this store does on their behalf may be recorded any more."""
        try:
            with translate(self.location):
                yield
        except StateError as exc:
            if not ((self._fences or self._traffic_locks) and self._conn.raw.broken):
                raise
            held = ", ".join([*(f"{lock} (run {run_id}, epoch {epoch})"
                                for lock, (run_id, epoch) in sorted(self._fences.items())),
                              *(f"traffic of {service}"
                                for service in sorted(self._traffic_locks))])
            raise LocksLost(
                f"the database session holding the lock of {held} ended ({exc.message}); "
                "its locks ended with it; nothing recorded",
                hint="another process may have taken the lock over: see `bluegreen status`",
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[PgConnection]:
        """One transaction that serializes with every other writer on the audit head's
        row lock, taken first (waited for up to `busy_timeout_ms`, the session's
        lock_timeout): committed on success, rolled back on any error. BEGIN and the row
        lock go in one round trip: on a busy machine each round trip waits for the CPU."""
        conn = self._conn
        with self._translate():
            self._transaction_began()
            conn.raw.execute("BEGIN; SELECT count FROM audit_head WHERE id = 1 FOR UPDATE")
            try:
                yield conn
                conn.raw.execute("COMMIT")
            except BaseException:
                self._transaction_rolled_back()
                with suppress(psycopg.Error):
                    conn.raw.execute("ROLLBACK")
                raise
            self._transaction_committed()

    @contextmanager
    def _read(self) -> Iterator[PgConnection]:
        """A read transaction: one consistent snapshot for several queries."""
        conn = self._conn
        with self._translate():
            conn.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            try:
                yield conn
            finally:
                with suppress(psycopg.Error):
                    conn.raw.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._translate():
            return self._conn.execute(sql, params).fetchall()


if TYPE_CHECKING:  # mypy proves the backend keeps the contract
    _contract: type[StateStore] = PostgresStateStore
