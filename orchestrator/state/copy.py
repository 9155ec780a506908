"""`bluegreen state copy --from URL --to URL`: move a store (e.g. a machine's SQLite file
into the team's PostgreSQL database) with its audit chain intact: every record keeps its
hash and MAC, the copy appends one `state.copy` record naming the source, and the chain is
verified on both sides with the same key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import AuditBroken, StateError
from orchestrator.state.audit import AuditHead
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, AuditEntryInput
from orchestrator.state.registry import StateLocation, backend, open_store
from orchestrator.state.sql.transfer import COLUMNS, Dump


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
    empty). StateError, nothing written, when the source is in use (`in_use`): a copy of a
    run in flight could be driven twice. AuditBroken when the source chain does not verify
    with the key (nothing is copied) or the copy does not (the copy was rolled back only if
    the load failed)."""
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
        busy = in_use(src, rows)
        if busy:
            raise StateError(
                f"{source.label} is in use; nothing was copied: {'; '.join(busy)}",
                hint="let runs finish, or end them (`bluegreen campaign abort NAME`, "
                "`bluegreen unlock SERVICE --reason TEXT`); a pending flip is completed or "
                "cancelled by the next traffic command (`bluegreen status SERVICE`); then copy",
            )
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


def in_use(store: StateStore, rows: Dump) -> list[str]:
    """What makes a store unsafe to copy, each named: a run that may still act or be
    resumed (running, deferred), a pending flip (from the dumped rows: one snapshot), and
    a lock whose holder is not provably gone."""
    runs = dict(zip(COLUMNS["runs"], range(len(COLUMNS["runs"])), strict=True))
    found: list[str] = []
    names: set[str] = set()
    for row in rows["runs"]:
        kind, service, params = row[runs["kind"]], row[runs["service"]], row[runs["params"]]
        name = f"campaign:{json.loads(params).get('name')}" if kind == "campaign" else service
        if name:
            names.add(name)
        if row[runs["status"]] in RESUMABLE_STATUSES:
            found.append(f"run {row[runs['run_id']]} ({kind} of {name}) is "
                         f"{row[runs['status']]}")
    services = dict(zip(COLUMNS["services"], range(len(COLUMNS["services"])), strict=True))
    for row in rows["services"]:
        names.add(row[services["service"]])
        pending = row[services["pending_flip"]]
        if pending:
            flip = json.loads(pending)
            found.append(f"{row[services['service']]} has a pending flip ({flip.get('command')} "
                         f"{flip.get('from_side')} -> {flip.get('to_side')} since {flip.get('at')})")
    for name in sorted(names):
        lock = store.get_lock(name)
        if lock is not None and not lock.holder_is_gone():
            found.append(f"{name} is locked by run {lock.run_id} (pid {lock.pid} on "
                         f"{lock.hostname}, epoch {lock.epoch})")
    return found
