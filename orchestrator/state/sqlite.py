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
import hashlib
import json
import os
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from orchestrator import flock
from orchestrator.errors import AuditBroken, BadInput, LockHeld, StateError
from orchestrator.secrets import scrub, scrub_data
from orchestrator.sides import Side
from orchestrator.state.audit import (
    BOUNDARY_COMMAND,
    GENESIS_HASH,
    AuditHead,
    canonical_json,
    format_ts,
    mac_matches,
    parse_ts,
    record_hash,
    record_mac,
)
from orchestrator.state.audit_key import AuditKey, load_key
from orchestrator.state.audit_verify import ChainReport, Finding, WitnessHead, verify_chain

if TYPE_CHECKING:
    from orchestrator.state.base import StateStore
from orchestrator.state.models import (
    RESUMABLE_STATUSES,
    SIDE_STATES,
    AuditEntryInput,
    AuditRecord,
    JournalEntry,
    JournalPhase,
    LockHolder,
    LockInfo,
    OsIdentity,
    PendingFlip,
    Run,
    RunStatus,
    ServiceState,
    SideState,
    SideStateName,
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
        audit_key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._clock = clock or (lambda: datetime.now(UTC))
        self.audit_key_file = (
            Path(audit_key_file) if audit_key_file is not None else default_key_file(self.path)
        )
        self._key: AuditKey | None = None  # loaded (or created) with the first record
        self._identity: OsIdentity | None = None
        self._pending_head: AuditHead | None = None
        self.appended: AuditHead | None = None
        """The head after the newest record this store appended (None: it appended none);
        what the witnesses are told when the command ends."""
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
            self._pending_head = None
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                self._pending_head = None
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            if self._pending_head is not None:
                self.appended, self._pending_head = self._pending_head, None

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
        """Append one keyed record inside the caller's transaction; the stored head is the
        link. Refuses (AuditBroken) to build on a head that does not verify with the key."""
        if service is not None and entry.service not in (None, service):
            raise ValueError(
                f"audit entry names service {entry.service!r}, change is to {service!r}"
            )
        key = self._audit_key(create=True)
        assert key is not None
        head = self._checked_head(conn, key)
        if head.key_id is None and head.count > 0:
            head = self._write_boundary(conn, entry, now, head, key)
        record = self._append(
            conn,
            key,
            head,
            actor=entry.actor,
            command=entry.command,
            service=service if service is not None else entry.service,
            reason=entry.reason,
            before=_clean({**entry.before, **(before or {})}),
            after=_clean({**entry.after, **(after or {})}),
            result=entry.result,
            at=now,
        )
        return record

    def _audit_key(self, *, create: bool) -> AuditKey | None:
        if self._key is None:
            self._key = load_key(self.audit_key_file, create=create)
        return self._key

    def _checked_head(self, conn: sqlite3.Connection, key: AuditKey) -> AuditHead:
        """The stored head, after checking that it names the newest record, and that
        record's MAC when the chain is keyed: a forged head is never extended."""
        row = conn.execute("SELECT count, head_hash, key_id FROM audit_head WHERE id = 1").fetchone()
        if row is None:
            raise AuditBroken(
                f"the audit head row is missing in {self.path}",
                hint="run `bluegreen audit verify` and restore the file from a backup",
            )
        head = AuditHead(count=int(row["count"]), head_hash=str(row["head_hash"]),
                         key_id=row["key_id"])
        if head.key_id is not None and head.key_id != key.key_id:
            raise AuditBroken(
                f"the audit chain in {self.path} is keyed with key id {head.key_id}, but the "
                f"key file {key.path} has key id {key.key_id}",
                hint="point audit.key_file at the key this chain was written with (restore it "
                "from its backup); never start a new key for an existing chain",
            )
        last = conn.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        problem = None
        if last is None:
            if head.count != 0:
                problem = f"the audit log is empty but its head names {head.count} records"
        else:
            newest = _audit_from_row(last)
            if newest.seq != head.count or newest.hash != head.head_hash:
                problem = (f"the newest audit record is {newest.seq} ({newest.hash[:12]}), "
                           f"but the stored head names {head.count} ({head.head_hash[:12]})")
            elif head.key_id is not None and not mac_matches(key.secret, newest):
                problem = f"the newest audit record ({newest.seq}) does not verify with the key"
            elif head.key_id is None and record_hash(newest) != newest.hash:
                problem = f"the newest audit record ({newest.seq}) does not match its hash"
        if problem is not None:
            raise AuditBroken(
                f"cannot extend the audit chain in {self.path}: {problem}",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            )
        return head

    def _write_boundary(
        self, conn: sqlite3.Connection, entry: AuditEntryInput, now: datetime,
        head: AuditHead, key: AuditKey,
    ) -> AuditHead:
        """Once, for a chain that began unkeyed: verify it whole, then append the keyed
        boundary record whose MAC pins the unkeyed records before it."""
        rows = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
        report = verify_chain([_audit_from_row(row) for row in rows], head)
        if not report.ok:
            raise AuditBroken(
                f"cannot key the audit chain in {self.path}: the unkeyed records do not "
                f"verify: {report.problem}",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            )
        boundary = self._append(
            conn, key, head, actor=entry.actor, command=BOUNDARY_COMMAND, service=None,
            reason="the audit chain is keyed from here on", before={},
            after={"unkeyed_records": head.count, "unkeyed_head": head.head_hash,
                   "key_id": key.key_id},
            result="ok", at=now,
        )
        return AuditHead(count=boundary.seq, head_hash=boundary.hash, key_id=key.key_id)

    def _append(self, conn: sqlite3.Connection, key: AuditKey, head: AuditHead, *,
                actor: str, command: str, service: str | None, reason: str | None,
                before: dict[str, Any], after: dict[str, Any], result: str,
                at: datetime) -> AuditRecord:
        if self._identity is None:
            self._identity = OsIdentity.current()
        ident = self._identity
        draft = AuditRecord(
            seq=head.count + 1, at=at, actor=actor, command=command, service=service,
            reason=_text(reason), before=before, after=after, result=scrub(result),
            prev_hash=head.head_hash, hash="", os_uid=ident.os_uid, os_user=ident.os_user,
            sudo_user=ident.sudo_user, hostname=ident.hostname, key_id=key.key_id,
        )
        record = dataclasses.replace(draft, hash=record_hash(draft),
                                     mac=record_mac(key.secret, draft))
        try:
            conn.execute(
                "INSERT INTO audit_log (seq, at, actor, command, service, reason, before, after,"
                " result, prev_hash, hash, os_uid, os_user, sudo_user, hostname, key_id, mac)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.seq, format_ts(record.at), record.actor, record.command,
                    record.service, record.reason, canonical_json(record.before),
                    canonical_json(record.after), record.result, record.prev_hash,
                    record.hash, record.os_uid, record.os_user, record.sudo_user,
                    record.hostname, record.key_id, record.mac,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise AuditBroken(
                f"cannot extend the audit chain in {self.path}: record seq {record.seq} already "
                "exists, so the log and its stored head disagree",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            ) from exc
        conn.execute(
            "UPDATE audit_head SET count = ?, head_hash = ?, key_id = ? WHERE id = 1",
            (record.seq, record.hash, key.key_id),
        )
        self._pending_head = AuditHead(count=record.seq, head_hash=record.hash,
                                       key_id=key.key_id)
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

    def audit_head(self) -> AuditHead:
        """The stored head (what the witnesses are told)."""
        rows = self._query("SELECT count, head_hash, key_id FROM audit_head WHERE id = 1")
        if not rows:
            raise AuditBroken(f"the audit head row is missing in {self.path}",
                              hint="restore the file from a backup")
        return AuditHead(count=int(rows[0]["count"]), head_hash=str(rows[0]["head_hash"]),
                         key_id=rows[0]["key_id"])

    def verify_audit(
        self, witnesses: Sequence[WitnessHead] = (), witness_sources: Sequence[str] = ()
    ) -> ChainReport:
        """Check the whole chain with the key (never created here), the stored head, and
        the heads `witnesses` saw. Never raises for a broken chain."""
        key = self._audit_key(create=False)
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
            head_row = conn.execute(
                "SELECT count, head_hash, key_id FROM audit_head WHERE id = 1"
            ).fetchone()
        records: list[AuditRecord] = []
        extra: list[Finding] = []
        for row in rows:
            try:
                records.append(_audit_from_row(row))
            except (ValueError, TypeError) as exc:  # bad JSON, types or timestamps
                extra.append(Finding("unreadable", f"record {row['seq']} cannot be read "
                                     f"(edited by hand?): {exc}", int(row["seq"])))
                break
        if head_row is None:
            extra.append(Finding("head", "the stored audit head is missing"))
            head = None
        else:
            head = AuditHead(count=int(head_row["count"]), head_hash=str(head_row["head_hash"]),
                             key_id=head_row["key_id"])
        if extra:
            head = None  # the rows after an unreadable one were not read: no head check
        return verify_chain(records, head, key=key, witnesses=witnesses,
                            witness_sources=witness_sources, extra=extra)

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
        """Record which side the router now sends traffic to (first contact, `adopt`).
        Records, never decides: the caller checks the router first. Accepting the router's
        view ends a pending flip, and a flip problem when the live side changes."""
        now = self._now()
        with self._write() as conn:
            old = self._service_row(conn, service)
            self._ensure_service(conn, service, now)
            # a flip problem described the flip to the side that was live: gone with it
            conn.execute(
                "UPDATE services SET flip_problem = CASE WHEN live_side IS ? THEN flip_problem"
                " END, live_side = ?, pending_flip = NULL, rollback_kept = NULL,"
                " updated_at = ? WHERE service = ?",
                (side, side, format_ts(now), service),
            )
            new = self._service_row(conn, service)
            assert new is not None
            self._audit(
                conn,
                audit,
                now,
                service=service,
                before={"live_side": old.live_side if old else None},
                after={"live_side": side},
            )
        return new

    def get_side(self, service: str, side: Side) -> SideState | None:
        rows = self._query("SELECT * FROM sides WHERE service = ? AND side = ?", (service, side))
        return _side_from_row(rows[0]) if rows else None

    def begin_patch(
        self, service: str, side: Side, patch_level: str, *, audit: AuditEntryInput
    ) -> SideState:
        """`side` -> patching(patch_level), before Ansible touches it. A failed or
        interrupted patch leaves it there: not a flip target until patched and verified.
        Refused (StateError) for the live side, for a side a pending flip moves to, and
        while the live side's flip is not persisted (a reload would send traffic back)."""
        now = self._now()
        with self._write() as conn:
            svc = self._service_row(conn, service)
            if svc is not None and svc.live_side == side:
                raise StateError(
                    f"{service}: refusing to patch {side}: the state store records it as the "
                    "live side",
                    hint="only the standby is patched; check `bluegreen status`",
                )
            if svc is not None and svc.pending_flip is not None:
                pending = svc.pending_flip
                raise StateError(
                    f"{service}: refusing to patch {side}: a flip {pending.from_side} -> "
                    f"{pending.to_side} ({pending.command}) is in progress",
                    hint="retry when it is done; `bluegreen status` shows it",
                )
            if svc is not None and (svc.flip_problem or "").startswith("not persisted"):
                # the map on disk still sends traffic to the other side: a reload of the
                # load balancer during the patch would put traffic on the hosts Ansible changes
                raise StateError(
                    f"{service}: refusing to patch {side}: the flip to {svc.live_side} is not "
                    f"persisted at the load balancer ({svc.flip_problem}); a reload would send "
                    f"traffic back to {side}",
                    hint=f"persist it first: `bluegreen flip {service} --to {svc.live_side} "
                    "--reason ...`",
                )
            changes = {
                "state": "patching",
                "state_since": now,
                "state_reason": audit.reason or f"patching {patch_level}",
                "patch_level": patch_level,
                "patched_at": now,
                "hosts": {},
            }
            return self._change_side(conn, service, side, now, changes, audit)

    def record_patch(
        self, service: str, side: Side, patch_level: str, *, audit: AuditEntryInput
    ) -> SideState:
        """`side` -> patched(patch_level): it now runs `patch_level`. Its earlier
        verification no longer counts."""
        now = self._now()
        changes = {
            "state": "patched",
            "state_since": now,
            "state_reason": audit.reason or f"patched {patch_level}",
            "patch_level": patch_level,
            "patched_at": now,
            "hosts": {},
        }
        with self._write() as conn:
            return self._change_side(conn, service, side, now, changes, audit)

    def record_verification(
        self,
        service: str,
        side: Side,
        ok: bool,
        patch_level: str | None,
        summary: str | None,
        *,
        audit: AuditEntryInput,
        hosts: dict[str, str] | None = None,
        expected_generation: int | None = None,
    ) -> SideState:
        """Record a verification of `side`; `patch_level` is the level the probes saw.

        With `expected_generation` (the side's generation read when the verification
        began), a side that changed meanwhile is not recorded: StateError. A pass moves an
        untouched, patched, verified or verify_failed side to verified(patch_level) with
        `hosts`; a failure moves it to verify_failed. `patching`, `failed_live` and
        `quarantined` keep their state (the result is still stored and audited)."""
        now = self._now()
        with self._write() as conn:
            old = self._side_row(conn, service, side)
            generation = old.generation if old else 0
            if expected_generation is not None and generation != expected_generation:
                state = old.state if old else "untouched"
                raise StateError(
                    f"{service}: {side} changed during the verification (now {state}, "
                    f"generation {generation}, the verification began at {expected_generation}):"
                    " not recorded",
                    hint=f"verify again: `bluegreen verify {service} --side {side}`",
                )
            changes: dict[str, Any] = {
                "verified_at": now,
                "verification_ok": ok,
                "verified_patch_level": patch_level,
                "verification_summary": summary,
            }
            if (old.state if old else "untouched") in _VERIFIABLE:
                changes.update(
                    state="verified" if ok else "verify_failed",
                    state_since=now,
                    state_reason=summary,
                    hosts=dict(hosts or {}) if ok else {},
                )
            return self._change_side(conn, service, side, now, changes, audit)

    def set_side_state(
        self,
        service: str,
        side: Side,
        state: SideStateName,
        reason: str,
        *,
        audit: AuditEntryInput,
    ) -> SideState:
        """An operator's or the lab's decision about a side (e.g. `quarantined`). Setting
        `untouched` (the hosts were re-imaged) also forgets its patch, verification and
        host fingerprints."""
        now = self._now()
        with self._write() as conn:
            return self._change_side(conn, service, side, now, _state_change(state, reason, now),
                                     audit)

    def reset_service(
        self,
        service: str,
        live_side: Side,
        sides: Sequence[Side],
        reason: str,
        *,
        audit: AuditEntryInput,
    ) -> ServiceState:
        """The hosts of `sides` were re-imaged and the router sends traffic to `live_side`
        (the lab's `reset`): those sides become untouched, no earlier flip is left to roll
        back to; one transaction, one audit record."""
        now = self._now()
        with self._write() as conn:
            self._ensure_service(conn, service, now)
            states = {
                side: self._change_side(
                    conn, service, side, now, _state_change("untouched", reason, now), None
                ).state
                for side in sides
            }
            return self._change_service(
                conn, service, now,
                {"live_side": live_side, "rollback_to": None, "flip_problem": None,
                 "pending_flip": None, "rollback_kept": None},
                audit, extra={"sides": states},
            )

    # -- flips (see orchestrator.traffic.kernel) -----------------------------------------

    def begin_flip(
        self,
        service: str,
        from_side: Side,
        to_side: Side,
        *,
        command: str,
        actor: str,
        reason: str,
        run_id: str | None = None,
        rollback: bool = False,
        forced: bool = False,
        expected_generation: int | None = None,
    ) -> PendingFlip:
        """Journal a flip before the router is touched (audited "<command>.begin").

        Refused (StateError) when the store does not record `from_side` as live, another
        flip is pending, or `to_side` changed since the gate read it (its generation is no
        longer `expected_generation`)."""
        now = self._now()
        pending = PendingFlip(
            id=os.urandom(6).hex(),
            from_side=from_side,
            to_side=to_side,
            command=command,
            actor=actor,
            reason=scrub(reason),
            at=now,
            rollback=rollback,
            run_id=run_id,
            forced=forced,
        )
        with self._write() as conn:
            svc = self._service_row(conn, service)
            if svc is None or svc.live_side != from_side:
                raise StateError(
                    f"{service}: cannot begin a flip from {from_side}: the state store records "
                    f"{svc.live_side if svc else None} as live",
                    hint=f"run `bluegreen status {service}`",
                )
            if svc.pending_flip is not None:
                other = svc.pending_flip
                raise StateError(
                    f"{service}: another flip is pending ({other.command} {other.from_side} -> "
                    f"{other.to_side} by {other.actor} at {format_ts(other.at)})",
                    hint="the next traffic command completes or cancels it; retry",
                )
            target = self._side_row(conn, service, to_side)
            generation = target.generation if target else 0
            if expected_generation is not None and generation != expected_generation:
                raise StateError(
                    f"{service}: {to_side} changed while the flip was being checked (now "
                    f"{target.state if target else 'untouched'}); traffic was not moved",
                    hint="look at `bluegreen status`, then retry",
                )
            conn.execute(
                "UPDATE services SET pending_flip = ?, updated_at = ? WHERE service = ?",
                (canonical_json(pending.as_json()), format_ts(now), service),
            )
            entry = AuditEntryInput(
                actor=actor,
                command=f"{command}.begin",
                service=service,
                reason=reason,
                result="started",
            )
            self._audit(
                conn,
                entry,
                now,
                service=service,
                before={"live": from_side, "rollback_to": svc.rollback_to},
                after={"target": to_side, "flip_id": pending.id, "run_id": run_id,
                       "forced": forced, "target_state": target.state if target else "untouched"},
            )
        return pending

    def record_flip(
        self,
        service: str,
        from_side: Side,
        to_side: Side,
        *,
        rollback: bool,
        problem: str | None,
        audit: AuditEntryInput,
    ) -> ServiceState:
        """The router now sends traffic to `to_side`: record it, end the pending flip and
        set (or clear) `flip_problem`. A forward flip makes `from_side` the rollback
        target; a rollback keeps the rollback target and marks `from_side` failed_live."""
        now = self._now()
        with self._write() as conn:
            self._ensure_service(conn, service, now)
            old = self._service_row(conn, service)
            assert old is not None
            extra: dict[str, Any] = {}
            if rollback and from_side != to_side:
                left = self._change_side(
                    conn,
                    service,
                    from_side,
                    now,
                    _state_change("failed_live", f"rolled back: {audit.reason or audit.command}",
                                  now, forget=False),
                    None,
                )
                extra[f"{from_side}_state"] = left.state
            changes = {"live_side": to_side, "flip_problem": problem, "pending_flip": None,
                       "rollback_kept": None,
                       "rollback_to": old.rollback_to if rollback else from_side}
            return self._change_service(conn, service, now, changes, audit, extra=extra)

    def cancel_flip(self, service: str, why: str, *, audit: AuditEntryInput) -> ServiceState:
        """End a pending flip that did not change the router (audited with `why`)."""
        now = self._now()
        with self._write() as conn:
            return self._change_service(conn, service, now, {"pending_flip": None}, audit,
                                        extra={"why": why})

    def keep_after_rollback(
        self, service: str, why: str, *, audit: AuditEntryInput
    ) -> ServiceState:
        """A rollback was answered without a flip (it aborted a run that had not flipped
        yet, traffic stays): a second rollback finds it done (`rollback_kept`) until the
        next flip, adopt or reset."""
        now = self._now()
        with self._write() as conn:
            return self._change_service(conn, service, now, {"rollback_kept": why}, audit)

    def set_flip_problem(
        self, service: str, problem: str | None, *, audit: AuditEntryInput
    ) -> ServiceState:
        """Set or clear (None) what is wrong with the last flip (e.g. re-persisted)."""
        now = self._now()
        with self._write() as conn:
            return self._change_service(conn, service, now, {"flip_problem": problem}, audit)

    @contextmanager
    def traffic_lock(
        self, service: str, timeout_s: float = 30.0, *, command: str = "traffic"
    ) -> Iterator[None]:
        """The short per-service lock every traffic change holds (separate from the run
        lock): `flock` on `<state dir>/locks/traffic-<service>.lock`, polled until
        `timeout_s`, then LockHeld naming the holder. The OS releases it when the holder
        dies (also kill -9). Flips of one service serialize; other services never wait."""
        locks = self.path.parent / "locks"
        path = locks / f"traffic-{_file_safe(service)}.lock"
        try:
            locks.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot open the traffic lock {path}: {exc.strerror}",
                hint=f"make {locks} writable by this user",
            ) from exc
        try:
            if not flock.acquire(fd, timeout_s):
                raise _traffic_lock_held(service, path, timeout_s)
            holder = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": format_ts(self._now()),
                "command": command,
            }
            with suppress(OSError):  # naming the holder is best effort (disk full)
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            try:
                yield
            finally:
                with suppress(OSError):
                    os.ftruncate(fd, 0)
                flock.release(fd)
        finally:
            os.close(fd)

    # -- side and service rows inside a transaction --------------------------------------

    def _service_row(self, conn: sqlite3.Connection, service: str) -> ServiceState | None:
        row = conn.execute("SELECT * FROM services WHERE service = ?", (service,)).fetchone()
        return _service_from_row(row) if row else None

    def _side_row(self, conn: sqlite3.Connection, service: str, side: Side) -> SideState | None:
        row = conn.execute(
            "SELECT * FROM sides WHERE service = ? AND side = ?", (service, side)
        ).fetchone()
        return _side_from_row(row) if row else None

    def _change_service(
        self,
        conn: sqlite3.Connection,
        service: str,
        now: datetime,
        changes: dict[str, Any],
        audit: AuditEntryInput,
        *,
        extra: dict[str, Any] | None = None,
    ) -> ServiceState:
        """Apply `changes` (column -> value) to an existing service row and audit it,
        before and after, plus `extra` in the record's `after`."""
        old = self._service_row(conn, service)
        if old is None:
            raise StateError(f"{service}: no such service in {self.path}")
        columns = {**changes, "updated_at": now}
        conn.execute(
            f"UPDATE services SET {', '.join(f'{c} = ?' for c in columns)} WHERE service = ?",
            (*(_db_value(v) for v in columns.values()), service),
        )
        new = self._service_row(conn, service)
        assert new is not None
        self._audit(conn, audit, now, service=service, before=_service_dump(old),
                    after={**_service_dump(new), **(extra or {})})
        return new

    def _ensure_service(self, conn: sqlite3.Connection, service: str, now: datetime) -> None:
        conn.execute(
            "INSERT OR IGNORE INTO services (service, live_side, updated_at) VALUES (?, NULL, ?)",
            (service, format_ts(now)),
        )

    def _change_side(
        self,
        conn: sqlite3.Connection,
        service: str,
        side: Side,
        now: datetime,
        changes: dict[str, Any],
        audit: AuditEntryInput | None,
    ) -> SideState:
        """Apply `changes` to one side, generation + 1, and audit it (unless the caller
        audits the whole transaction itself: audit=None)."""
        SideState(service=service, side=side)  # validates `side` before touching the file
        self._ensure_service(conn, service, now)
        conn.execute("INSERT OR IGNORE INTO sides (service, side) VALUES (?, ?)", (service, side))
        old = self._side_row(conn, service, side)
        assert old is not None
        columns = {**changes, "generation": old.generation + 1}
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"UPDATE sides SET {assignments} WHERE service = ? AND side = ?",
            (*(_db_value(v) for v in columns.values()), service, side),
        )
        new = self._side_row(conn, service, side)
        assert new is not None
        if audit is not None:
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
            result = _text(result)
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
                if not old.holder_is_gone():
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


_VERIFIABLE = frozenset({"untouched", "patched", "verified", "verify_failed"})
"""Side states a verification moves (to verified or verify_failed); the others keep theirs."""


def _state_change(
    state: SideStateName, reason: str, now: datetime, *, forget: bool | None = None
) -> dict[str, Any]:
    """Columns for a plain state change; `untouched` also forgets patch and verification."""
    changes: dict[str, Any] = {"state": state, "state_since": now, "state_reason": reason}
    if forget is None:
        forget = state == "untouched"
    if forget:
        changes.update(
            patch_level=None,
            patched_at=None,
            verified_at=None,
            verification_ok=None,
            verified_patch_level=None,
            verification_summary=None,
            hosts={},
        )
    return changes


def _service_dump(svc: ServiceState | None) -> dict[str, Any]:
    if svc is None:
        return {}
    return {
        "live_side": svc.live_side,
        "rollback_to": svc.rollback_to,
        "flip_problem": svc.flip_problem,
        "pending_flip": svc.pending_flip.id if svc.pending_flip else None,
        "rollback_kept": svc.rollback_kept,
    }


def _file_safe(name: str) -> str:
    """A service name as a file name: itself when plain, else a digest."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name):
        return name
    return "x-" + hashlib.sha256(name.encode()).hexdigest()[:32]


def _traffic_lock_held(service: str, path: Path, timeout_s: float) -> LockHeld:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (
        f"`{holder.get('command', '?')}` (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
        if holder
        else "another process"
    )
    return LockHeld(
        f"{service}: another traffic change holds the traffic lock: {who}; waited "
        f"{timeout_s:g} s",
        hint="retry when it is done; the lock is released when its holder ends, even if it "
        "is killed",
    )


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    """Redacted (secret keys, known secret values, URL credentials), JSON-normalised copy:
    exactly what reading it back will return."""
    plain = json.loads(json.dumps(obj, default=jsonable))
    cleaned: dict[str, Any] = json.loads(canonical_json(scrub_data(plain)))
    return cleaned


def _text(value: str | None) -> str | None:
    """Free text as stored: exactly as given, minus known secret values (`secrets.scrub`)."""
    return None if value is None else scrub(value)


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
    pending = row["pending_flip"]
    return ServiceState(
        service=row["service"],
        live_side=row["live_side"],
        updated_at=parse_ts(row["updated_at"]),
        rollback_to=row["rollback_to"],
        flip_problem=row["flip_problem"],
        pending_flip=PendingFlip.from_json(json.loads(pending)) if pending else None,
        rollback_kept=row["rollback_kept"],
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
        state=row["state"],
        state_since=_ts(row["state_since"]),
        state_reason=row["state_reason"],
        generation=int(row["generation"]),
        hosts=json.loads(row["hosts"] or "{}"),
    )


def _db_value(value: Any) -> Any:
    """A Python value as its column value (timestamps as text, flags as 0/1, maps as JSON;
    text scrubbed of known secrets)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        return canonical_json(value)
    return value


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


def read_head(path: Path) -> AuditHead | None:
    """The stored audit head of the database at `path`, read only (the file is never
    created: mode=rw opens an existing one, whose -wal/-shm it cleans up on close);
    None when there is no readable database there."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT count, head_hash, key_id FROM audit_head WHERE id = 1"
                           ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    return AuditHead(count=int(row[0]), head_hash=str(row[1]), key_id=row[2])


def default_key_file(state_path: Path) -> Path:
    """Where the audit key lives unless the config says otherwise: beside the database
    file, never inside it."""
    return state_path.with_name("audit.key")


def _audit_from_row(row: sqlite3.Row) -> AuditRecord:
    return AuditRecord(
        os_uid=row["os_uid"],
        os_user=row["os_user"],
        sudo_user=row["sudo_user"],
        hostname=row["hostname"],
        key_id=row["key_id"],
        mac=row["mac"],
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
