"""`bluegreen state copy --from URL --to URL`: move a store (e.g. a machine's SQLite file
into the team's PostgreSQL database) with its audit chain intact: every record keeps its
hash and MAC, the copy appends one `state.copy` record naming the source, and the chain is
verified on both sides with the same key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import AuditBroken
from orchestrator.state.audit import AuditHead
from orchestrator.state.models import AuditEntryInput
from orchestrator.state.registry import StateLocation, backend, open_store


@dataclass(frozen=True)
class Copied:
    source: str
    target: str
    rows: dict[str, int]
    """Rows copied per table."""
    source_head: AuditHead
    target_head: AuditHead
    """After the `state.copy` record."""


def copy_store(source: StateLocation, target: StateLocation, *, audit_key_file: Path,
               actor: str) -> Copied:
    """Copy every row of `source` into `target` (created or migrated first; it must be
    empty). AuditBroken when the source chain does not verify with the key (nothing is
    copied) or the copy does not (the copy was rolled back only if the load failed)."""
    src = open_store(source, audit_key_file=audit_key_file)
    try:
        report = src.verify_audit()
        if not report.ok:
            raise AuditBroken(
                f"the audit chain of {source.label} does not verify: {report.problem}; nothing "
                "was copied",
                hint="run `bluegreen audit verify` on the source and investigate first",
            )
        rows, head = src.dump()
    finally:
        src.close()
    backend(target).migrate(target, audit_key_file=audit_key_file)
    dst = open_store(target, audit_key_file=audit_key_file)
    try:
        dst.load(rows, head, audit=AuditEntryInput(
            actor=actor, command="state.copy", reason=f"copied from {source.label}",
            after={"from": source.label, "records": head[0], "head_hash": head[1]},
            result="copied"))
        check = dst.verify_audit()
        if not check.ok:
            raise AuditBroken(f"the copied audit chain in {target.label} does not verify: "
                              f"{check.problem}",
                              hint="do not use the copy; report this as a bug")
        target_head = dst.audit_head()
    finally:
        dst.close()
    return Copied(source.label, target.label, {t: len(r) for t, r in rows.items()},
                  AuditHead(count=head[0], head_hash=head[1], key_id=head[2]), target_head)
