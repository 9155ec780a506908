"""The audit chain's records: canonical payload, hash, HMAC (secrets are redacted before
anything is stored, by the one policy of `orchestrator.secrets`).

Each record's `hash` is sha256 over the canonical JSON of its payload (every field but
`hash` and `mac`, `prev_hash` included); the first record's `prev_hash` is `GENESIS_HASH`.
Each record written since the chain was keyed also carries `mac`: HMAC-SHA256 of the same
payload under the audit key (`audit_key.py`), which lives outside the store. The store keeps
the head (record count and last hash) in a separate row, updated in the same transaction.

What this proves, and what it does not, is in `audit_verify.py` and the README ("The audit
chain"): in short, without the key nobody can forge, edit or re-chain a record unnoticed;
deleting the newest records and rewriting the head, or putting back an older copy of the
database, is seen only against a head kept outside the store (the witnesses, `witness.py`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
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


BOUNDARY_COMMAND = "audit.keyed"
"""The record that starts the keyed part of a chain that began unkeyed (written once, by
the first change after upgrading): its `after` names how many unkeyed records precede it
and their head, and its MAC pins them."""


def record_payload(record: AuditRecord) -> dict[str, Any]:
    """What `hash` and `mac` cover. Records written before the chain was keyed (no
    `key_id`) keep the payload they were hashed with."""
    payload: dict[str, Any] = {
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
    if record.key_id is not None:
        payload.update(
            os_uid=record.os_uid,
            os_user=record.os_user,
            sudo_user=record.sudo_user,
            hostname=record.hostname,
            key_id=record.key_id,
        )
    return payload


def record_hash(record: AuditRecord) -> str:
    """The hash `record` must carry: sha256 of its canonical payload."""
    return hashlib.sha256(canonical_json(record_payload(record)).encode("ascii")).hexdigest()


def record_mac(secret: bytes, record: AuditRecord) -> str:
    """The MAC `record` must carry under the key `secret`."""
    body = canonical_json(record_payload(record)).encode("ascii")
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def mac_matches(secret: bytes, record: AuditRecord) -> bool:
    return record.mac is not None and hmac.compare_digest(record_mac(secret, record), record.mac)


@dataclass(frozen=True, kw_only=True)
class AuditHead:
    """The stored head of the chain: how many records there are, the last hash, and the
    id of the key the chain is keyed with (None: not keyed yet)."""

    count: int
    head_hash: str
    key_id: str | None = None
