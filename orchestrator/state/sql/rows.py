"""Rows <-> records for every SQL backend: columns read by name, values stored as text
(timestamps `format_ts`, maps canonical JSON), flags as 0/1, free text scrubbed."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from orchestrator.errors import LockHeld
from orchestrator.secrets import scrub, scrub_data
from orchestrator.state.audit import canonical_json, format_ts, parse_ts
from orchestrator.state.models import (
    AuditRecord,
    JournalEntry,
    LockInfo,
    PendingFlip,
    Run,
    ServiceState,
    SideState,
    jsonable,
)

# -- values ------------------------------------------------------------------------------


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    """Redacted (secret keys, known secret values, URL credentials), JSON-normalised copy:
    exactly what reading it back will return."""
    plain = json.loads(json.dumps(obj, default=jsonable))
    cleaned: dict[str, Any] = json.loads(canonical_json(scrub_data(plain)))
    return cleaned


def text(value: str | None) -> str | None:
    """Free text as stored: exactly as given, minus known secret values (`secrets.scrub`)."""
    return None if value is None else scrub(value)


def db_value(value: Any) -> Any:
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


def _ts(value: Any) -> datetime | None:
    return None if value is None else parse_ts(str(value))


# -- rows -> records -----------------------------------------------------------------------


def service_from_row(row: Any) -> ServiceState:
    pending = row["pending_flip"]
    return ServiceState(
        service=row["service"],
        live_side=row["live_side"],
        updated_at=parse_ts(row["updated_at"]),
        rollback_to=row["rollback_to"],
        flip_problem=row["flip_problem"],
        pending_flip=PendingFlip.from_json(json.loads(pending)) if pending else None,
        rollback_kept=row["rollback_kept"],
        exposed_side=row["exposed_side"],
        exposure_percent=int(row["exposure_percent"] or 0),
    )


def side_from_row(row: Any) -> SideState:
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


def run_from_row(row: Any) -> Run:
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
        epoch=None if row["epoch"] is None else int(row["epoch"]),
    )


def journal_from_row(row: Any) -> JournalEntry:
    return JournalEntry(
        run_id=row["run_id"],
        seq=row["seq"],
        step=row["step"],
        phase=row["phase"],
        data=json.loads(row["data"]),
        at=parse_ts(row["at"]),
    )


def lock_from_row(row: Any) -> LockInfo:
    return LockInfo(
        service=row["service"],
        run_id=row["run_id"],
        holder=row["holder"],
        pid=row["pid"],
        hostname=row["hostname"],
        acquired_at=parse_ts(row["acquired_at"]),
        epoch=int(row["epoch"]),
    )


def audit_from_row(row: Any) -> AuditRecord:
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


# -- records -> audit payloads and messages ----------------------------------------------


def service_dump(svc: ServiceState | None) -> dict[str, Any]:
    if svc is None:
        return {}
    return {
        "live_side": svc.live_side,
        "rollback_to": svc.rollback_to,
        "flip_problem": svc.flip_problem,
        "pending_flip": svc.pending_flip.id if svc.pending_flip else None,
        "rollback_kept": svc.rollback_kept,
        "exposed_side": svc.exposed_side,
        "exposure_percent": svc.exposure_percent,
    }


def lock_dump(lock: LockInfo | None) -> dict[str, Any]:
    return {} if lock is None else lock.as_json(exclude={"service"})


def lock_held(lock: LockInfo) -> LockHeld:
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


def live_holder(lock: LockInfo) -> LockHeld:
    """A lock whose holder lives (or cannot be proven gone) is not freed on request."""
    since = lock.acquired_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return LockHeld(
        f"service {lock.service!r} is locked by run {lock.run_id} of {lock.holder} (pid "
        f"{lock.pid} on {lock.hostname}, epoch {lock.epoch}) since {since}, and that holder "
        "is not gone: a lock is freed only when its holder is",
        hint=f"`bluegreen unlock {lock.service} --reason TEXT` marks run {lock.run_id} aborted: "
        "it stops at its next step boundary and releases the lock",
    )
