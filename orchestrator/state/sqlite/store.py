"""The default state store: one SQLite file (WAL mode), standard library `sqlite3` only.

What a caller must know:
- One `SQLiteStateStore` per thread (the connection is not shared across threads).
  Several processes may open the same file; writers wait up to `busy_timeout_ms`, then
  get a `StateError` instead of hanging.
- The file is created 0600 in a directory created 0700 (it holds who-did-what); SQLite
  gives its -wal/-shm files the same permissions. Opening never touches the process umask
  (a parallel wave opens one store per thread while other threads create files).
- Every state-changing method runs in one `BEGIN IMMEDIATE` transaction together with
  its audit record; it returns after the commit (synchronous=FULL) or raises with
  nothing changed.
- If the audit log and its stored head disagree (someone deleted or forged records),
  new changes are refused with `AuditBroken` rather than papering over the gap.

The SQL of sides, flips, runs and the audit chain is shared with every SQL backend
(`orchestrator.state.sql`); this module adds the file, its transactions and schema, and
the locks (`locks.py`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from orchestrator.state.sql.exposures import ExposureRows
from orchestrator.state.sql.runs import RunRows
from orchestrator.state.sql.transfer import TableTransfer
from orchestrator.state.sqlite import schema
from orchestrator.state.sqlite.connection import (
    connect,
    default_key_file,
    tighten_sidecar_files,
    translate,
)
from orchestrator.state.sqlite.locks import SQLiteLocks

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore


class SQLiteStateStore(ExposureRows, RunRows, SQLiteLocks, TableTransfer):
    """`StateStore` backed by one SQLite file. Use as a context manager or call `close()`."""

    INSERT_ORDER = "rowid"
    DUPLICATE_KEY = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_ms: int = 5000,
        clock: Callable[[], datetime] | None = None,
        audit_key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(
            location=str(self.path),
            audit_key_file=(
                Path(audit_key_file) if audit_key_file is not None
                else default_key_file(self.path)
            ),
            clock=clock,
        )
        self.busy_timeout_ms = busy_timeout_ms
        self._conn = connect(self.path, busy_timeout_ms)
        try:
            self._migrate()
            tighten_sidecar_files(self.path)
        except BaseException:
            self._conn.close()
            raise

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SQLiteStateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._translate():
            current = schema.schema_version(self._conn)
        schema.refuse_newer(self.path, current)
        if current == schema.SCHEMA_VERSION:
            return
        with self._write() as conn:
            schema.migrate(conn, self.path, self._now(), self.audit_key_file)

    # -- transactions ------------------------------------------------------------------

    def _translate(self) -> AbstractContextManager[None]:
        return translate(self.path, self.busy_timeout_ms)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction: committed on success, rolled back on any error."""
        conn = self._conn
        with self._translate():
            conn.execute("BEGIN IMMEDIATE")
            self._transaction_began()
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                self._transaction_rolled_back()
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            self._transaction_committed()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot for several queries."""
        conn = self._conn
        with self._translate():
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._translate():
            return self._conn.execute(sql, params).fetchall()


if TYPE_CHECKING:  # mypy proves the backend keeps the contract
    _contract: type[StateStore] = SQLiteStateStore
