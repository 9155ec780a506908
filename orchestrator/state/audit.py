"""The audit hash chain (redaction of secrets before anything is stored: `orchestrator.secrets`).

Each record's `hash` is sha256 over the canonical JSON of all its other fields,
`prev_hash` included; the first record's `prev_hash` is `GENESIS_HASH`. The store also
keeps the head (record count and last hash) in a separate row, updated in the same
transaction, so that deleting the newest records is detected too.

What this proves: accidental or naive edits, deletions, insertions and reorderings are
detected. What it does not: the chain has no secret key, so someone who can write the
database file and recompute every hash and the head can forge history. Ship copies of
`head_hash` elsewhere (logs, tickets) to anchor it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# the store redacts with the one policy of orchestrator.secrets (re-exported here)
from orchestrator.secrets import REDACTED as REDACTED
from orchestrator.secrets import redact as redact
from orchestrator.state.models import AuditRecord

GENESIS_HASH = "0" * 64


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, ASCII only, no NaN/Infinity."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def format_ts(moment: datetime) -> str:
    """The one text form of a timestamp in the store and in hashes (UTC, microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    """Inverse of `format_ts`; the result is timezone-aware UTC."""
    return datetime.fromisoformat(text).astimezone(UTC)


def record_hash(record: AuditRecord) -> str:
    """The hash `record` must carry: sha256 of its canonical JSON without `hash`."""
    payload = {
        "seq": record.seq,
        "at": format_ts(record.at),
        "actor": record.actor,
        "command": record.command,
        "service": record.service,
        "reason": record.reason,
        "before": record.before,
        "after": record.after,
        "result": record.result,
        "prev_hash": record.prev_hash,
    }
    return hashlib.sha256(canonical_json(payload).encode("ascii")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class AuditHead:
    """The stored head of the chain: how many records there are and the last hash."""

    count: int
    head_hash: str


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """Result of verifying the chain. `bad_seq` is the first record found wrong, if any."""

    ok: bool
    count: int
    head_hash: str
    problem: str | None = None
    bad_seq: int | None = None


def verify_chain(records: Iterable[AuditRecord], head: AuditHead | None = None) -> ChainReport:
    """Check `records` (in stored order) link up from seq 1 and, if given, end at `head`.

    Never raises for a broken chain; returns `ok=False` with the first problem found.
    """
    expected_prev = GENESIS_HASH
    count = 0
    for index, record in enumerate(records, start=1):
        count = index
        if record.seq != index:
            return _broken(
                count,
                expected_prev,
                record.seq,
                f"record seq {record.seq} found where seq {index} was expected "
                "(a record was deleted, inserted or moved)",
            )
        if record.prev_hash != expected_prev:
            return _broken(
                count,
                expected_prev,
                record.seq,
                f"record seq {record.seq} does not link to the record before it "
                "(prev_hash mismatch: a record was deleted, inserted or moved)",
            )
        if record_hash(record) != record.hash:
            return _broken(
                count,
                expected_prev,
                record.seq,
                f"record seq {record.seq} was modified after it was written (hash mismatch)",
            )
        expected_prev = record.hash
    if head is not None and (head.count != count or head.head_hash != expected_prev):
        return _broken(
            count,
            expected_prev,
            min(count, head.count) + 1,
            f"the chain has {count} records ending in {expected_prev[:12]}, but the stored "
            f"head says {head.count} records ending in {head.head_hash[:12]} "
            "(newest records were deleted or forged records appended)",
        )
    return ChainReport(ok=True, count=count, head_hash=expected_prev)


def _broken(count: int, head_hash: str, bad_seq: int, problem: str) -> ChainReport:
    return ChainReport(ok=False, count=count, head_hash=head_hash, problem=problem, bad_seq=bad_seq)
