"""The base every SQL backend's store builds on: the transaction hooks a backend implements
and the dialect knobs it sets. The shared mixins (`chain`, `sides`, `flips`, `runs`) use
nothing else.

The shared SQL keeps to what SQLite and PostgreSQL both run: `?` placeholders (a driver
with another paramstyle gets an adapter that translates them), columns read by name
(`row["name"]`), `INSERT ... ON CONFLICT ... DO NOTHING`, subqueries with an alias, and
optional conditions built in Python (PostgreSQL cannot type a parameter used only in
`? IS NULL`). Values are stored as SQLite stores them (`rows.py`): timestamps as text,
maps as canonical JSON text, flags as 0/1, so records and their hashes read back the same
from every backend.

What a backend must guarantee:
- `_write()` is one transaction that serializes writers (SQLite: `BEGIN IMMEDIATE`): the
  shared methods read, decide and write inside it, so two writers must never interleave
  (a server database takes a transaction-level lock or runs SERIALIZABLE and retries).
- `_write()` calls `_transaction_began()` when it starts, `_transaction_committed()` after
  the commit (that is when `appended` moves) and `_transaction_rolled_back()` on failure.
- Database errors leave as `orchestrator.errors.StateError` naming the store and a fix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

from orchestrator.state.audit import AuditHead
from orchestrator.state.audit_key import AuditKey
from orchestrator.state.audit_marker import KeyedPoint
from orchestrator.state.models import OsIdentity


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int: ...


class Connection(Protocol):
    """A DB-API connection as the shared SQL uses it (sqlite3's, or a driver's adapter)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


class SqlDatabase:
    """Transactions, clock and audit identity of one store; subclassed by the mixins."""

    INSERT_ORDER: ClassVar[str] = "rowid"
    """A column that orders the rows of one table as they were inserted (SQLite's implicit
    `rowid`); breaks ties between runs started at the same instant."""
    HEAD_LOCK: ClassVar[str] = ""
    """Appended to the query that reads the audit head before extending the chain (a
    server database: ` FOR UPDATE`, so concurrent appends never fork the chain)."""
    DUPLICATE_KEY: ClassVar[tuple[type[Exception], ...]] = ()
    """The driver's exception for a primary key that already exists."""

    def __init__(
        self,
        *,
        location: str,
        audit_key_file: Path,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.location = location
        """How messages name the store (a file, or a URL without its password)."""
        self.audit_key_file = audit_key_file
        self._clock = clock or (lambda: datetime.now(UTC))
        self._key: AuditKey | None = None  # loaded (or created) with the first record
        self._point: KeyedPoint | None = None  # the keyed marker's line for this chain
        self._identity: OsIdentity | None = None
        self._pending_head: AuditHead | None = None
        self._fences: dict[str, tuple[str, int]] = {}  # see fence.Fencing
        self.appended: AuditHead | None = None
        """The head after the newest record this store appended (None: it appended none);
        what the witnesses are told when the command ends."""

    # -- what a backend implements ---------------------------------------------------------

    def _write(self) -> AbstractContextManager[Connection]:
        """One writing transaction: committed on success, rolled back on any error."""
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        """A read transaction: one consistent snapshot for several queries."""
        raise NotImplementedError

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of one query outside a transaction."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _transaction_began(self) -> None:
        self._pending_head = None

    def _transaction_rolled_back(self) -> None:
        self._pending_head = None

    def _transaction_committed(self) -> None:
        if self._pending_head is not None:
            self.appended, self._pending_head = self._pending_head, None
