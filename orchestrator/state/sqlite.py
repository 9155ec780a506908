"""The default state store: one SQLite file (WAL mode), standard library `sqlite3` only.

What a caller must know:
- One `SQLiteStateStore` per thread (the connection is not shared across threads).
  Several processes may open the same file; writers wait up to `busy_timeout_ms`, then
  get a `StateError` instead of hanging.
- The file is created 0600 in a directory created 0700 (it holds who-did-what). Opening
  temporarily sets the process umask, so do not open stores concurrently with other
  threads that create files.
- Every state-changing method runs in one `BEGIN IMMEDIATE` transaction together with
  its audit record; it returns after the commit (synchronous=FULL) or raises with
  nothing changed.
- If the audit log and its stored head disagree (someone deleted or forged records),
  new changes are refused with `AuditBroken` rather than papering over the gap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from orchestrator.errors import AuditBroken, BadInput, LockHeld, StateError
from orchestrator.sides import Side
from orchestrator.state.audit import (
    GENESIS_HASH,
    AuditHead,
    ChainReport,
    canonical_json,
    format_ts,
    parse_ts,
    record_hash,
    redact,
    verify_chain,
)

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore
from orchestrator.state.models import (
    RESUMABLE_STATUSES,
    AuditEntryInput,
    AuditRecord,
    JournalEntry,
    JournalPhase,
    LockHolder,
    LockInfo,
    Run,
    RunStatus,
    ServiceState,
    SideState,
    jsonable,
)

_SIDE_CHECK = "CHECK (side IN ('blue', 'green'))"
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
)
SCHEMA_VERSION = len(_MIGRATIONS)
"""The newest schema this code knows; older files are migrated forward on open."""


class SQLiteStateStore:
    """`StateStore` backed by one SQLite file. Use as a context manager or call `close()`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_ms: int = 5000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._clock = clock or (lambda: datetime.now(UTC))
        self._conn = self._connect()
        try:
            self._migrate()
            self._tighten_sidecar_files()
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

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StateError(
                f"cannot create the state database {self.path}: {exc.strerror}",
                hint="make its directory writable by this user, or set state.path elsewhere",
            ) from exc
        old_umask = os.umask(0o077)  # -wal/-shm and anything else SQLite creates: 0600
        try:
            with self._translate():
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None
                )
                try:
                    conn.row_factory = sqlite3.Row
                    conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if str(mode).lower() != "wal":
                        raise StateError(
                            f"state database {self.path} cannot use WAL mode (got {mode!r})",
                            hint="put the state file on a local filesystem (not NFS/SMB)",
                        )
                    conn.execute("PRAGMA foreign_keys = ON")
                    conn.execute("PRAGMA synchronous = FULL")
                except BaseException:
                    conn.close()
                    raise
        finally:
            os.umask(old_umask)
        return conn

    def _tighten_sidecar_files(self) -> None:
        for suffix in ("-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)

    def _migrate(self) -> None:
        with self._translate():
            current = self._schema_version()
        self._refuse_newer(current)
        if current == SCHEMA_VERSION:
            return
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = self._schema_version()  # another process may have migrated meanwhile
            self._refuse_newer(current)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, format_ts(self._now())),
                )

    def _schema_version(self) -> int:
        exists = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if exists is None:
            return 0
        return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} has schema version {version}, but this bluegreen "
                f"only knows versions up to {SCHEMA_VERSION}",
                hint="upgrade bluegreen to the version that wrote this file; do not downgrade it",
            )

    # -- transactions and errors -----------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    @contextmanager
    def _translate(self) -> Iterator[None]:
        """Turn sqlite3 errors into StateError naming the file and a fix."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._state_error(exc) from exc

    def _state_error(self, exc: sqlite3.Error) -> StateError:
        text = str(exc)
        low = text.lower()
        hint: str | None
        if "locked" in low or "busy" in low:
            hint = (
                f"another process is writing {self.path}; retry when it is done (waited "
                f"{self.busy_timeout_ms} ms; raise the busy timeout if this is frequent)"
            )
        elif "disk i/o" in low:
            hint = f"the filesystem holding {self.path} reported an I/O error; check the disk"
        elif "full" in low:
            hint = f"free space on the filesystem holding {self.path}, then retry"
        elif "readonly" in low or "read-only" in low or "unable to open" in low:
            hint = f"make {self.path} and its directory readable and writable by this user"
        elif "not a database" in low or "malformed" in low:
            hint = "the file is not a bluegreen state database or is corrupt; restore a backup"
        else:
            hint = None
        return StateError(f"state database {self.path}: {text}", hint=hint)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction: committed on success, rolled back on any error."""
        conn = self._conn
        with self._translate():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

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

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._translate():
            return self._conn.execute(sql, params).fetchall()

    # -- audit -----------------------------------------------------------------------

    def _audit(
        self,
        conn: sqlite3.Connection,
        entry: AuditEntryInput,
        now: datetime,
        *,
        service: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one record inside the caller's transaction; the stored head is the link."""
        if service is not None and entry.service not in (None, service):
            raise ValueError(
                f"audit entry names service {entry.service!r}, change is to {service!r}"
            )
        head = conn.execute("SELECT count, head_hash FROM audit_head WHERE id = 1").fetchone()
        if head is None:
            raise AuditBroken(
                f"the audit head row is missing in {self.path}",
                hint="run `bluegreen audit verify` and restore the file from a backup",
            )
        draft = AuditRecord(
            seq=int(head["count"]) + 1,
            at=now,
            actor=entry.actor,
            command=entry.command,
            service=service if service is not None else entry.service,
            reason=entry.reason,
            before=_clean({**entry.before, **(before or {})}),
            after=_clean({**entry.after, **(after or {})}),
            result=entry.result,
            prev_hash=str(head["head_hash"]),
            hash="",
        )
        record = dataclasses.replace(draft, hash=record_hash(draft))
        try:
            conn.execute(
                "INSERT INTO audit_log (seq, at, actor, command, service, reason, before, after,"
                " result, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.seq,
                    format_ts(record.at),
                    record.actor,
                    record.command,
                    record.service,
                    record.reason,
                    canonical_json(record.before),
                    canonical_json(record.after),
                    record.result,
                    record.prev_hash,
                    record.hash,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise AuditBroken(
                f"cannot extend the audit chain in {self.path}: record seq {record.seq} already "
                "exists, so the log and its stored head disagree",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            ) from exc
        conn.execute(
            "UPDATE audit_head SET count = ?, head_hash = ? WHERE id = 1", (record.seq, record.hash)
        )
        return record

    def audit_append(self, entry: AuditEntryInput) -> AuditRecord:
        """Record an event that changes no other state (e.g. a dry run, an approval)."""
        with self._write() as conn:
            return self._audit(conn, entry, self._now())

    def audit_records(
        self, service: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """Records in chain order; with `limit`, the newest `limit` of them."""
        rows = self._query(
            "SELECT * FROM (SELECT * FROM audit_log WHERE ? IS NULL OR service = ?"
            " ORDER BY seq DESC LIMIT ?) ORDER BY seq",
            (service, service, -1 if limit is None else limit),
        )
        return [_audit_from_row(row) for row in rows]

    def verify_audit(self) -> ChainReport:
        """Check the whole chain and the stored head. Never raises for a broken chain."""
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
            head_row = conn.execute(
                "SELECT count, head_hash FROM audit_head WHERE id = 1"
            ).fetchone()
        records: list[AuditRecord] = []
        for row in rows:
            try:
                records.append(_audit_from_row(row))
            except (ValueError, TypeError) as exc:  # bad JSON, types or timestamps
                return ChainReport(
                    ok=False,
                    count=len(records),
                    head_hash=records[-1].hash if records else GENESIS_HASH,
                    problem=f"record seq {row['seq']} cannot be read (edited by hand?): {exc}",
                    bad_seq=int(row["seq"]),
                )
        if head_row is None:
            return ChainReport(
                ok=False,
                count=len(records),
                head_hash=records[-1].hash if records else GENESIS_HASH,
                problem="the stored audit head is missing",
            )
        head = AuditHead(count=int(head_row["count"]), head_hash=str(head_row["head_hash"]))
        return verify_chain(records, head)

    # -- services and sides ------------------------------------------------------------

    def get_service(self, service: str) -> ServiceState | None:
        rows = self._query("SELECT * FROM services WHERE service = ?", (service,))
        return _service_from_row(rows[0]) if rows else None

    def list_services(self) -> list[ServiceState]:
        return [
            _service_from_row(r) for r in self._query("SELECT * FROM services ORDER BY service")
        ]

    def set_live_side(
        self, service: str, side: Side | None, *, audit: AuditEntryInput
    ) -> ServiceState:
        """Record which side the router now sends traffic to. Records, never decides:
        the caller checks the router and the verification invariants first."""
        now = self._now()
        new = ServiceState(service=service, live_side=side, updated_at=now)
        with self._write() as conn:
            row = conn.execute("SELECT * FROM services WHERE service = ?", (service,)).fetchone()
            old_side = row["live_side"] if row else None
            conn.execute(
                "INSERT INTO services (service, live_side, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (service) DO UPDATE SET live_side = excluded.live_side,"
                " updated_at = excluded.updated_at",
                (service, side, format_ts(now)),
            )
            self._audit(
                conn,
                audit,
                now,
                service=service,
                before={"live_side": old_side},
                after={"live_side": side},
            )
        return new

    def get_side(self, service: str, side: Side) -> SideState | None:
        rows = self._query("SELECT * FROM sides WHERE service = ? AND side = ?", (service, side))
        return _side_from_row(rows[0]) if rows else None

    def record_patch(
        self, service: str, side: Side, patch_level: str, *, audit: AuditEntryInput
    ) -> SideState:
        """Record that `side` now runs `patch_level`. Its earlier verification no longer
        counts (see `SideState.verified_after_patch`)."""
        now = self._now()
        return self._update_side(
            service,
            side,
            audit,
            now,
            "patch_level = ?, patched_at = ?",
            (patch_level, format_ts(now)),
        )

    def record_verification(
        self,
        service: str,
        side: Side,
        ok: bool,
        patch_level: str | None,
        summary: str | None,
        *,
        audit: AuditEntryInput,
    ) -> SideState:
        """Record a verification of `side`; `patch_level` is the level the probes saw."""
        now = self._now()
        return self._update_side(
            service,
            side,
            audit,
            now,
            "verified_at = ?, verification_ok = ?, verified_patch_level = ?,"
            " verification_summary = ?",
            (format_ts(now), int(ok), patch_level, summary),
        )

    def _update_side(
        self,
        service: str,
        side: Side,
        audit: AuditEntryInput,
        now: datetime,
        assignments: str,
        values: tuple[Any, ...],
    ) -> SideState:
        SideState(service=service, side=side)  # validates `side` before touching the file
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO services (service, live_side, updated_at) VALUES (?, NULL, ?)",
                (service, format_ts(now)),
            )
            conn.execute(
                "INSERT OR IGNORE INTO sides (service, side) VALUES (?, ?)", (service, side)
            )
            select = "SELECT * FROM sides WHERE service = ? AND side = ?"
            old = _side_from_row(conn.execute(select, (service, side)).fetchone())
            conn.execute(
                f"UPDATE sides SET {assignments} WHERE service = ? AND side = ?",
                (*values, service, side),
            )
            new = _side_from_row(conn.execute(select, (service, side)).fetchone())
            self._audit(
                conn,
                audit,
                now,
                service=service,
                before=old.as_json(exclude={"service"}),
                after=new.as_json(exclude={"service"}),
            )
        return new

    # -- runs and journal ------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        kind: str,
        service: str | None,
        params: dict[str, Any],
        actor: str,
        *,
        reason: str | None = None,
    ) -> Run:
        """Start a run (status "running"); `params` are stored redacted."""
        run = Run(
            run_id=run_id,
            kind=kind,
            service=service,
            status="running",
            params=_clean(params),
            actor=actor,
            started_at=self._now(),
        )
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise StateError(
                    f"run {run_id} already exists in {self.path}", hint="use a new run id"
                )
            conn.execute(
                "INSERT INTO runs (run_id, kind, service, status, params, actor, started_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    kind,
                    service,
                    run.status,
                    canonical_json(run.params),
                    actor,
                    format_ts(run.started_at),
                ),
            )
            entry = AuditEntryInput(
                actor=actor, command="run.create", service=service, reason=reason
            )
            self._audit(
                conn,
                entry,
                run.started_at,
                after={"run_id": run_id, "kind": kind, "status": run.status, "params": run.params},
            )
        return run

    def get_run(self, run_id: str) -> Run | None:
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _run_from_row(rows[0]) if rows else None

    def list_runs(self, service: str | None = None, status: RunStatus | None = None) -> list[Run]:
        """Runs, oldest first, optionally filtered by service and status."""
        rows = self._query(
            "SELECT * FROM runs WHERE (? IS NULL OR service = ?) AND (? IS NULL OR status = ?)"
            " ORDER BY started_at, rowid",
            (service, service, status, status),
        )
        return [_run_from_row(row) for row in rows]

    def latest_unfinished_run(self, service: str) -> Run | None:
        """The newest run of `service` that is still "running" (killed?) or "deferred"."""
        rows = self._query(
            "SELECT * FROM runs WHERE service = ? AND status IN (?, ?)"
            " ORDER BY started_at DESC, rowid DESC LIMIT 1",
            (service, *RESUMABLE_STATUSES),
        )
        return _run_from_row(rows[0]) if rows else None

    def finish_run(self, run_id: str, status: RunStatus, result: str | None) -> Run:
        """End a running or deferred run. A run that already ended cannot be finished again."""
        if status == "running":
            raise ValueError("finish_run needs a final status, not 'running'")
        now = self._now()
        with self._write() as conn:
            run = self._resumable_run(conn, run_id)
            conn.execute(
                "UPDATE runs SET status = ?, finished_at = ?, result = ? WHERE run_id = ?",
                (status, format_ts(now), result, run_id),
            )
            entry = AuditEntryInput(
                actor=run.actor, command="run.finish", service=run.service, result=status
            )
            self._audit(
                conn,
                entry,
                now,
                before={"run_id": run_id, "status": run.status},
                after={"run_id": run_id, "status": status, "result": result},
            )
        return dataclasses.replace(run, status=status, finished_at=now, result=result)

    def _resumable_run(self, conn: sqlite3.Connection, run_id: str) -> Run:
        row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise StateError(f"run {run_id} does not exist in {self.path}")
        run = _run_from_row(row)
        if run.status not in RESUMABLE_STATUSES:
            raise StateError(
                f"run {run_id} already ended with status {run.status!r}",
                hint="start a new run instead",
            )
        return run

    def journal_begin(
        self, run_id: str, step: str, data: dict[str, Any] | None = None
    ) -> JournalEntry:
        """Write "about to run `step`" before doing it; audited as the run's actor."""
        return self._journal(run_id, step, "begin", data)

    def journal_end(
        self, run_id: str, step: str, data: dict[str, Any] | None = None
    ) -> JournalEntry:
        """Write "`step` finished" (put its outcome in `data`). The step must be begun."""
        return self._journal(run_id, step, "end", data)

    def _journal(
        self, run_id: str, step: str, phase: JournalPhase, data: dict[str, Any] | None
    ) -> JournalEntry:
        now = self._now()
        with self._write() as conn:
            run = self._resumable_run(conn, run_id)
            if phase == "end":
                last = conn.execute(
                    "SELECT phase FROM journal WHERE run_id = ? AND step = ?"
                    " ORDER BY seq DESC LIMIT 1",
                    (run_id, step),
                ).fetchone()
                if last is None or last["phase"] != "begin":
                    raise StateError(f"step {step!r} of run {run_id} was not begun, cannot end it")
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE run_id = ?", (run_id,)
            ).fetchone()[0]
            entry = JournalEntry(
                run_id=run_id, seq=int(seq), step=step, phase=phase, data=_clean(data or {}), at=now
            )
            conn.execute(
                "INSERT INTO journal (run_id, seq, step, phase, data, at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, entry.seq, step, phase, canonical_json(entry.data), format_ts(now)),
            )
            audit = AuditEntryInput(
                actor=run.actor, command=f"journal.{phase}", service=run.service
            )
            self._audit(
                conn,
                audit,
                now,
                after={"run_id": run_id, "seq": entry.seq, "step": step, "data": entry.data},
            )
        return entry

    def journal(self, run_id: str) -> list[JournalEntry]:
        """All entries of a run in write order."""
        rows = self._query("SELECT * FROM journal WHERE run_id = ? ORDER BY seq", (run_id,))
        return [_journal_from_row(row) for row in rows]

    def last_finished_step(self, run_id: str) -> str | None:
        """The step of the newest "end" entry: where a resumed run continues after."""
        rows = self._query(
            "SELECT step FROM journal WHERE run_id = ? AND phase = 'end' ORDER BY seq DESC LIMIT 1",
            (run_id,),
        )
        return str(rows[0]["step"]) if rows else None

    # -- locks -----------------------------------------------------------------------

    def get_lock(self, service: str) -> LockInfo | None:
        rows = self._query("SELECT * FROM locks WHERE service = ?", (service,))
        return _lock_from_row(rows[0]) if rows else None

    def acquire_lock(self, service: str, run_id: str, holder: LockHolder | None = None) -> LockInfo:
        """Take the service lock for `run_id` (holder: this process by default).

        Re-acquiring by the same run, pid and host returns the existing lock. A lock held
        by a process on this host that no longer exists is stale and taken over (audited
        as "lock.takeover"); any other held lock raises `LockHeld` naming its holder.
        """
        who = holder or LockHolder.current()
        now = self._now()
        new = LockInfo(
            service=service,
            run_id=run_id,
            holder=who.holder,
            pid=who.pid,
            hostname=who.hostname,
            acquired_at=now,
        )
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            old = _lock_from_row(row) if row else None
            if old is not None:
                if (old.run_id, old.pid, old.hostname) == (run_id, who.pid, who.hostname):
                    return old
                if not _holder_is_gone(old):
                    raise _lock_held(old)
            conn.execute(
                "INSERT OR REPLACE INTO locks (service, run_id, holder, pid, hostname, acquired_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (service, run_id, who.holder, who.pid, who.hostname, format_ts(now)),
            )
            reason = None
            if old is not None:
                reason = f"stale lock: pid {old.pid} on {old.hostname} is no longer running"
            entry = AuditEntryInput(
                actor=who.holder,
                command="lock.acquire" if old is None else "lock.takeover",
                reason=reason,
            )
            self._audit(
                conn,
                entry,
                now,
                service=service,
                before=_lock_dump(old),
                after=_lock_dump(new),
            )
        return new

    def release_lock(self, service: str, run_id: str) -> bool:
        """Release the lock held by `run_id`. False if unlocked; `LockHeld` if another run holds it."""
        now = self._now()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            if row is None:
                return False
            old = _lock_from_row(row)
            if old.run_id != run_id:
                raise _lock_held(old)
            conn.execute("DELETE FROM locks WHERE service = ?", (service,))
            entry = AuditEntryInput(actor=old.holder, command="lock.release")
            self._audit(conn, entry, now, service=service, before=_lock_dump(old))
        return True

    def force_release_lock(self, service: str, reason: str, actor: str) -> LockInfo | None:
        """Remove whatever lock `service` has (operator action, audited with `reason`).
        Returns the removed lock, or None if there was none (still audited)."""
        if not reason.strip():
            raise BadInput("releasing a lock by force needs a reason", hint="pass --reason TEXT")
        now = self._now()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            old = _lock_from_row(row) if row else None
            conn.execute("DELETE FROM locks WHERE service = ?", (service,))
            entry = AuditEntryInput(
                actor=actor,
                command="lock.force_release",
                reason=reason,
                result="released" if old else "no lock",
            )
            self._audit(conn, entry, now, service=service, before=_lock_dump(old))
        return old


# -- helpers -----------------------------------------------------------------------------


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    """Redacted, JSON-normalised copy: exactly what reading it back will return."""
    plain = json.loads(json.dumps(obj, default=jsonable))
    cleaned: dict[str, Any] = json.loads(canonical_json(redact(plain)))
    return cleaned


def _holder_is_gone(lock: LockInfo) -> bool:
    """True only when we can prove it: same host, and no such process."""
    if lock.hostname != socket.gethostname() or lock.pid <= 0:
        return False
    try:
        os.kill(lock.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by another user
        return False
    return False


def _lock_held(lock: LockInfo) -> LockHeld:
    since = lock.acquired_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return LockHeld(
        f"service {lock.service!r} is locked by run {lock.run_id} of {lock.holder} "
        f"(pid {lock.pid} on {lock.hostname}) since {since}",
        hint=(
            f"wait for run {lock.run_id} to finish; if that process is dead on "
            f"{lock.hostname}, release the lock with "
            f"`bluegreen unlock {lock.service} --reason TEXT`"
        ),
    )


def _lock_dump(lock: LockInfo | None) -> dict[str, Any]:
    return {} if lock is None else lock.as_json(exclude={"service"})


def _ts(value: Any) -> datetime | None:
    return None if value is None else parse_ts(str(value))


def _service_from_row(row: sqlite3.Row) -> ServiceState:
    return ServiceState(
        service=row["service"], live_side=row["live_side"], updated_at=parse_ts(row["updated_at"])
    )


def _side_from_row(row: sqlite3.Row) -> SideState:
    ok = row["verification_ok"]
    return SideState(
        service=row["service"],
        side=row["side"],
        patch_level=row["patch_level"],
        patched_at=_ts(row["patched_at"]),
        verified_at=_ts(row["verified_at"]),
        verification_ok=None if ok is None else bool(ok),
        verified_patch_level=row["verified_patch_level"],
        verification_summary=row["verification_summary"],
    )


def _run_from_row(row: sqlite3.Row) -> Run:
    return Run(
        run_id=row["run_id"],
        kind=row["kind"],
        service=row["service"],
        status=row["status"],
        params=json.loads(row["params"]),
        actor=row["actor"],
        started_at=parse_ts(row["started_at"]),
        finished_at=_ts(row["finished_at"]),
        result=row["result"],
    )


def _journal_from_row(row: sqlite3.Row) -> JournalEntry:
    return JournalEntry(
        run_id=row["run_id"],
        seq=row["seq"],
        step=row["step"],
        phase=row["phase"],
        data=json.loads(row["data"]),
        at=parse_ts(row["at"]),
    )


def _lock_from_row(row: sqlite3.Row) -> LockInfo:
    return LockInfo(
        service=row["service"],
        run_id=row["run_id"],
        holder=row["holder"],
        pid=row["pid"],
        hostname=row["hostname"],
        acquired_at=parse_ts(row["acquired_at"]),
    )


def _audit_from_row(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        seq=row["seq"],
        at=parse_ts(str(row["at"])),
        actor=row["actor"],
        command=row["command"],
        service=row["service"],
        reason=row["reason"],
        before=json.loads(row["before"]),
        after=json.loads(row["after"]),
        result=row["result"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


if TYPE_CHECKING:  # mypy proves the backend keeps the contract
    _contract: type[StateStore] = SQLiteStateStore
