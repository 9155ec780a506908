"""What the heads show (the stored head, and the heads seen outside the store by witnesses
or an auditor), for `audit_verify.verify_chain`; and the two small types its findings
use. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.state.audit import GENESIS_HASH, AuditHead
from orchestrator.state.audit_marker import KeyedPoint
from orchestrator.state.models import AuditRecord


@dataclass(frozen=True)
class Finding:
    """One thing found wrong: its kind (see the module docstring), what, and where."""

    kind: str
    message: str
    seq: int | None = None


@dataclass(frozen=True)
class WitnessHead:
    """A head seen outside the store: record `seq` had hash `hash` (at `at`, per `source`)."""

    seq: int
    hash: str
    source: str
    at: str | None = None
    keyed_from: int | None = None
    """The first keyed record, as the line said (lines written before markers: None)."""


def check_head(rows: list[AuditRecord], head: AuditHead | None,
                found: list[Finding], keyed_since: int | None) -> list[Finding]:
    if head is None:
        return []
    if head.key_id is None and keyed_since is not None and head.count >= keyed_since:
        return [Finding("forged", f"the stored head (record {head.count}) carries no key id, "
                        f"but the chain is keyed since record {keyed_since}: the head was "
                        "rewritten without the key (a downgrade)", head.count)]
    last_seq = rows[-1].seq if rows else 0
    last_hash = rows[-1].hash if rows else GENESIS_HASH
    if head.count == last_seq and head.head_hash == last_hash:
        return []
    if head.count > last_seq:
        return [Finding("truncated", f"the newest records {last_seq + 1}..{head.count} were "
                        f"deleted (the stored head still says {head.count} records ending in "
                        f"{head.head_hash[:12]})", last_seq + 1)]
    if any(f.kind == "inserted" for f in found):
        return []  # the head lags behind the inserted record: already named
    return [Finding("head", f"the stored head says {head.count} records ending in "
                    f"{head.head_hash[:12]}, but the chain has {last_seq} ending in "
                    f"{last_hash[:12]}: the head or the newest records were edited",
                    min(last_seq, head.count) + 1)]


def check_witnesses(rows: list[AuditRecord], witnesses: Sequence[WitnessHead],
                     findings: list[Finding], warnings: list[str]) -> WitnessHead | None:
    if not witnesses:
        return None
    by_seq = {r.seq: r for r in rows}
    last_seq = rows[-1].seq if rows else 0
    last_hash = rows[-1].hash if rows else GENESIS_HASH
    for seen in sorted(witnesses, key=lambda w: w.seq, reverse=True):
        row = by_seq.get(seen.seq)
        if row is not None and row.hash != seen.hash:
            findings.append(Finding(
                "replaced",
                f"{seen.source} saw record {seen.seq} with hash {seen.hash[:12]}"
                f"{_when(seen)}, but the store has {row.hash[:12]} there: the chain was "
                "rewritten or the database replaced", seen.seq))
            break
    newest = max(witnesses, key=lambda w: w.seq)
    if newest.seq > last_seq:
        was_a_head = next((w for w in witnesses if w.seq == last_seq and w.hash == last_hash), None)
        if was_a_head is not None:
            findings.append(Finding(
                "rolled_back",
                f"the store ends at record {last_seq}, a head {was_a_head.source} saw"
                f"{_when(was_a_head)}; {newest.source} has seen records up to {newest.seq} "
                f"since{_when(newest)}: the database was replaced by an older copy (or its "
                "newest records deleted and the head rewritten)", last_seq + 1))
        else:
            findings.append(Finding(
                "truncated",
                f"{newest.source} saw record {newest.seq} (hash {newest.hash[:12]}"
                f"{_when(newest)}), but the store ends at record {last_seq}: the newest "
                f"{newest.seq - last_seq} records were deleted and the head rewritten",
                last_seq + 1))
    elif newest.seq < last_seq:
        warnings.append(
            f"records {newest.seq + 1}..{last_seq} are newer than the newest witnessed head "
            f"(record {newest.seq}, {newest.source}): not witnessed yet"
        )
    return newest


def _when(seen: WitnessHead) -> str:
    return f" at {seen.at}" if seen.at else ""


def witnessed_point(witnesses: Sequence[WitnessHead]) -> KeyedPoint | None:
    """The keyed point the witness lines name (the earliest, if they differ)."""
    said = [w for w in witnesses if w.keyed_from is not None]
    if not said:
        return None
    first = min(said, key=lambda w: w.keyed_from or 0)
    assert first.keyed_from is not None
    return KeyedPoint(key_id="", first_seq=first.keyed_from, prefix_hash=None,
                      source=first.source)
