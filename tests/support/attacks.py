"""What someone with write access to the state database, but without the audit key, can do
(issue 21, items 1 and 2), as plain SQL with the values computed here: shared by the unit
tests (both backends), the hostile corpus and the lab test."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.state.audit import GENESIS_HASH, canonical_json, format_ts, record_hash
from orchestrator.state.models import AuditRecord

Execute = Callable[..., None]
"""`execute(statement, params=(...))`: runs one SQL statement with `?` placeholders."""

AUDIT_COLUMNS = ("seq, at, actor, command, service, reason, before, after, result, prev_hash,"
                 " hash, os_uid, os_user, sudo_user, hostname, key_id, mac")


def audit_row(r: AuditRecord) -> tuple[object, ...]:
    return (r.seq, format_ts(r.at), r.actor, r.command, r.service, r.reason,
            canonical_json(r.before), canonical_json(r.after), r.result, r.prev_hash, r.hash,
            r.os_uid, r.os_user, r.sudo_user, r.hostname, r.key_id, r.mac)


def downgraded(records: Sequence[AuditRecord], edit_seq: int,
               **changes: Any) -> list[AuditRecord]:
    """The issue's audit downgrade: every record stripped of `key_id` and `mac` (and the
    identity the MAC covered), record `edit_seq` changed as the attacker likes, the whole
    chain re-linked with plain sha256 (what a chain written before keys looks like)."""
    out: list[AuditRecord] = []
    prev = GENESIS_HASH
    for record in records:
        bare = dataclasses.replace(record, key_id=None, mac=None, os_uid=None, os_user=None,
                                   sudo_user=None, hostname=None, prev_hash=prev, hash="")
        if record.seq == edit_seq:
            bare = dataclasses.replace(bare, **changes)
        bare = dataclasses.replace(bare, hash=record_hash(bare))
        out.append(bare)
        prev = bare.hash
    return out


def write_downgrade(execute: Execute, records: Sequence[AuditRecord]) -> None:
    """Replace the audit log by `records` and point the head at the last one, key id NULL."""
    execute("DELETE FROM audit_log")
    for record in records:
        execute(f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", params=audit_row(record))
    last = records[-1]
    execute("UPDATE audit_head SET count = ?, head_hash = ?, key_id = NULL WHERE id = 1",
            params=(last.seq, last.hash))


def downgrade_attack(execute: Execute, records: Sequence[AuditRecord]) -> list[AuditRecord]:
    """The issue's attack on a real store: a forced flip becomes an ordinary one by someone
    else (or, without a flip, the newest record is re-attributed)."""
    target = next((r for r in records if r.after.get("forced")), records[-1])
    forged = downgraded(records, target.seq, actor="mallory",
                        after={**target.after, "forced": False}, reason="routine")
    write_downgrade(execute, forged)
    return forged
