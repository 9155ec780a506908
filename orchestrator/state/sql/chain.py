"""The audit chain in SQL: keyed records appended inside the caller's transaction, the
stored head as the link, reading and verifying the chain (see `state/audit.py` for what
the hash and MAC cover)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from orchestrator.errors import AuditBroken
from orchestrator.secrets import scrub
from orchestrator.state.audit import (
    BOUNDARY_COMMAND,
    GENESIS_HASH,
    AuditHead,
    canonical_json,
    format_ts,
    mac_matches,
    record_hash,
    record_mac,
)
from orchestrator.state.audit_key import AuditKey, load_key
from orchestrator.state.audit_marker import KeyedPoint, read_point, record_point
from orchestrator.state.audit_verify import ChainReport, Finding, WitnessHead, verify_chain
from orchestrator.state.models import AuditEntryInput, AuditRecord, OsIdentity
from orchestrator.state.sql.database import Connection
from orchestrator.state.sql.rows import audit_from_row, clean, text
from orchestrator.state.sql.seals import RowSeals

_HEAD = "SELECT count, head_hash, key_id FROM audit_head WHERE id = 1"


def _head_from_row(row: Any) -> AuditHead:
    return AuditHead(count=int(row["count"]), head_hash=str(row["head_hash"]),
                     key_id=row["key_id"])


class AuditChain(RowSeals):
    """`AuditStore`, and `_audit` for the other mixins' changes."""

    def _audit(
        self,
        conn: Connection,
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
        row = conn.execute(_HEAD + self.HEAD_LOCK).fetchone()
        if row is None:
            raise AuditBroken(
                f"the audit head row is missing in {self.location}",
                hint="run `bluegreen audit verify` and restore the file from a backup",
            )
        head = _head_from_row(row)
        key, point = self._key_for(conn, head)
        self._check_newest(conn, key, head)
        if head.key_id is None and head.count > 0:
            head = self._write_boundary(conn, entry, now, head, key, point)
        return self._append(
            conn,
            key,
            head,
            actor=entry.actor,
            command=entry.command,
            service=service if service is not None else entry.service,
            reason=entry.reason,
            before=clean({**entry.before, **(before or {})}),
            after=clean({**entry.after, **(after or {})}),
            result=entry.result,
            at=now,
        )

    def _audit_key(self, *, create: bool) -> AuditKey | None:
        if self._key is None:
            self._key = load_key(self.audit_key_file, create=create)
        return self._key

    def _key_for(self, conn: Connection, head: AuditHead) -> tuple[AuditKey, KeyedPoint | None]:
        """The key to write with, and where the chain's keyed part begins (the keyed
        marker beside the key, written here when the key is made or first used)."""
        key = self._audit_key(create=False)
        if key is None:
            if head.key_id is not None:
                raise AuditBroken(
                    f"the audit chain in {self.location} is keyed with key id {head.key_id}, "
                    f"but the key file {self.audit_key_file} does not exist",
                    hint="point audit.key_file at the key this chain was written with (restore "
                    "it from its backup); never start a new key for an existing chain",
                )
            key = self._audit_key(create=True)
            assert key is not None
            # a new key: the chain is keyed from its next record; the records before it
            # (a chain written before keys) are pinned by their head hash, the rows written
            # before it are sealed as they are
            self._seal_found(conn, key)
            self._point = record_point(self.audit_key_file, self.location, key.key_id,
                                       head.count + 1, head.head_hash)
            return key, self._point
        if head.key_id is not None and head.key_id != key.key_id:
            raise AuditBroken(
                f"the audit chain in {self.location} is keyed with key id {head.key_id}, but "
                f"the key file {key.path} has key id {key.key_id}",
                hint="point audit.key_file at the key this chain was written with (restore it "
                "from its backup); never start a new key for an existing chain",
            )
        point = self._point if self._point and self._point.key_id == key.key_id else \
            read_point(self.audit_key_file, self.location, key.key_id)
        if point is None or (head.count == 0 and point.first_seq != 1):
            point = self._first_point(conn, key, head)
        self._point = point
        return key, point

    def _first_point(self, conn: Connection, key: AuditKey,
                     head: AuditHead) -> KeyedPoint | None:
        """The marker for a chain this existing key has no line for: a new chain (keyed
        from record 1), or one keyed before markers existed (from its first keyed record,
        trusted on first use). An unkeyed chain beside an existing key is a downgrade."""
        if head.count == 0:
            return record_point(self.audit_key_file, self.location, key.key_id, 1,
                                GENESIS_HASH)
        first = conn.execute("SELECT * FROM audit_log WHERE key_id IS NOT NULL "
                             "ORDER BY seq LIMIT 1").fetchone()
        if head.key_id is None or first is None:
            raise AuditBroken(
                f"cannot extend the audit chain in {self.location}: the audit key "
                f"{key.path} (id {key.key_id}) exists, but the stored head carries no key id "
                "and no keyed marker says where keying began: the chain's MACs were stripped "
                "(a downgrade)",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup; "
                "if this key was never used for this chain, point audit.key_file elsewhere",
            )
        record = audit_from_row(first)
        return record_point(self.audit_key_file, self.location, key.key_id, record.seq,
                            record.prev_hash)

    def _check_newest(self, conn: Connection, key: AuditKey, head: AuditHead) -> None:
        """Check that the stored head names the newest record, and that record's MAC when
        the chain is keyed: a forged head is never extended."""
        last = conn.execute("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
        problem = None
        if last is None:
            if head.count != 0:
                problem = f"the audit log is empty but its head names {head.count} records"
        else:
            newest = audit_from_row(last)
            if newest.seq != head.count or newest.hash != head.head_hash:
                problem = (f"the newest audit record is {newest.seq} ({newest.hash[:12]}), "
                           f"but the stored head names {head.count} ({head.head_hash[:12]})")
            elif head.key_id is not None and not mac_matches(key.secret, newest):
                problem = f"the newest audit record ({newest.seq}) does not verify with the key"
            elif head.key_id is None and record_hash(newest) != newest.hash:
                problem = f"the newest audit record ({newest.seq}) does not match its hash"
        if problem is not None:
            raise AuditBroken(
                f"cannot extend the audit chain in {self.location}: {problem}",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            )

    def _write_boundary(
        self, conn: Connection, entry: AuditEntryInput, now: datetime,
        head: AuditHead, key: AuditKey, point: KeyedPoint | None,
    ) -> AuditHead:
        """Once, for a chain that began unkeyed: only right after the records its key was
        created for (the keyed marker), never over records newer than the key; verify them
        whole, then append the keyed boundary record whose MAC pins them."""
        if point is None or head.count >= point.first_seq:
            since = "" if point is None else f" since record {point.first_seq} ({point.source})"
            raise AuditBroken(
                f"cannot extend the audit chain in {self.location}: the stored head (record "
                f"{head.count}) carries no key id, but the chain is keyed{since}: its MACs "
                "were stripped or records were forged (a downgrade)",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            )
        if head.count + 1 != point.first_seq or head.head_hash != point.prefix_hash:
            raise AuditBroken(
                f"cannot key the audit chain in {self.location}: its key was created after "
                f"record {point.first_seq - 1} ({point.source}), but the chain now ends at "
                f"record {head.count} ({head.head_hash[:12]}): records were deleted or changed",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            )
        rows = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
        report = verify_chain([audit_from_row(row) for row in rows], head)
        if not report.ok:
            raise AuditBroken(
                f"cannot key the audit chain in {self.location}: the unkeyed records do not "
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

    def _append(self, conn: Connection, key: AuditKey, head: AuditHead, *,
                actor: str, command: str, service: str | None, reason: str | None,
                before: dict[str, Any], after: dict[str, Any], result: str,
                at: datetime) -> AuditRecord:
        if self._identity is None:
            self._identity = OsIdentity.current()
        ident = self._identity
        draft = AuditRecord(
            seq=head.count + 1, at=at, actor=actor, command=command, service=service,
            reason=text(reason), before=before, after=after, result=scrub(result),
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
        except self.DUPLICATE_KEY as exc:
            raise AuditBroken(
                f"cannot extend the audit chain in {self.location}: record seq {record.seq} "
                "already exists, so the log and its stored head disagree",
                hint="run `bluegreen audit verify`, investigate, and restore from a backup",
            ) from exc
        conn.execute(
            "UPDATE audit_head SET count = ?, head_hash = ?, key_id = ? WHERE id = 1",
            (record.seq, record.hash, key.key_id),
        )
        self._pending_head = AuditHead(count=record.seq, head_hash=record.hash,
                                       key_id=key.key_id)
        return record

    # -- AuditStore ------------------------------------------------------------------------

    def audit_append(self, entry: AuditEntryInput) -> AuditRecord:
        """Record an event that changes no other state (e.g. a dry run, an approval)."""
        with self._write() as conn:
            return self._audit(conn, entry, self._now())

    def audit_records(
        self, service: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """Records in chain order; with `limit`, the newest `limit` of them."""
        where, params = ("", ()) if service is None else (" WHERE service = ?", (service,))
        if limit is not None:
            params = (*params, limit)
        rows = self._query(
            f"SELECT * FROM (SELECT * FROM audit_log{where} ORDER BY seq DESC"
            f"{'' if limit is None else ' LIMIT ?'}) AS newest ORDER BY seq",
            params,
        )
        return [audit_from_row(row) for row in rows]

    def audit_head(self) -> AuditHead:
        """The stored head (what the witnesses are told)."""
        rows = self._query(_HEAD)
        if not rows:
            raise AuditBroken(f"the audit head row is missing in {self.location}",
                              hint="restore the file from a backup")
        return _head_from_row(rows[0])

    def verify_audit(
        self, witnesses: Sequence[WitnessHead] = (), witness_sources: Sequence[str] = ()
    ) -> ChainReport:
        """Check the whole chain with the key (never created here), the stored head, and
        the heads `witnesses` saw. Never raises for a broken chain."""
        key = self._audit_key(create=False)
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM audit_log ORDER BY seq").fetchall()
            head_row = conn.execute(_HEAD).fetchone()
            forged_rows = self.row_problems(conn)
        records: list[AuditRecord] = []
        extra: list[Finding] = []
        for row in rows:
            try:
                records.append(audit_from_row(row))
            except (ValueError, TypeError) as exc:  # bad JSON, types or timestamps
                extra.append(Finding("unreadable", f"record {row['seq']} cannot be read "
                                     f"(edited by hand?): {exc}", int(row["seq"])))
                break
        if head_row is None:
            extra.append(Finding("head", "the stored audit head is missing"))
            head = None
        else:
            head = _head_from_row(head_row)
        if extra:
            head = None  # the rows after an unreadable one were not read: no head check
        point = read_point(self.audit_key_file, self.location,
                           key.key_id if key is not None else None)
        report = verify_chain(records, head, key=key, witnesses=witnesses,
                              witness_sources=witness_sources, extra=extra, keyed=point)
        if not forged_rows:
            return report
        found = tuple(Finding("row_forged", problem) for problem in forged_rows)
        return dataclasses.replace(report, ok=False, findings=report.findings + found)
