"""Verifying the audit chain, and naming what was done to it.

`verify_chain(records, head, key, witnesses)` checks every record's hash and HMAC, every
link, the stored head, the chain's keyed boundary, and the heads seen by witnesses outside
the store (or given by an auditor). It never raises for a broken chain: it returns a
`ChainReport` whose findings each name a kind of tampering:

- `edited`      a record's content changed after it was written (also when its hash was
                recomputed: the next record no longer links to it, and its MAC fails);
- `forged`      a record that was not written with the audit key (no valid MAC);
- `inserted`    a forged record put into the chain (the records after it renumbered);
- `deleted`     records missing in the middle of the chain;
- `reordered`   genuine records moved to other places;
- `truncated`   the newest records deleted (seen by the stored head, or, when the head was
                rewritten too, by a witness that saw a later record);
- `rolled_back` the database is an older copy: it ends exactly at a head a witness saw,
                and the witness has seen later records since;
- `replaced`    a witness saw a different record at some position: the chain was
                rewritten or the database replaced;
- `rewritten`   every record was rewritten without the key;
- `wrong_key`   the records were written with another key (wrong key file?);
- `key_missing` MACs could not be checked (no key file);
- `head`        the stored head does not match the chain;
- `unreadable`  a row cannot be decoded (edited by hand).

What the chain proves: with the key kept secret from whoever can write the database, no
record can be forged, edited, inserted, removed from the middle or moved unnoticed. What it
does not: removing the newest records and rewriting the head, or restoring an older copy of
the database, leaves a valid chain; only a head kept outside the store (a witness, or one
an auditor kept) shows it. Whoever holds the key can rewrite everything; the witnesses are
then the only evidence. Pure functions: the store and the witness readers feed them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.state.audit import (
    BOUNDARY_COMMAND,
    GENESIS_HASH,
    AuditHead,
    mac_matches,
    record_hash,
)
from orchestrator.state.audit_heads import Finding as Finding
from orchestrator.state.audit_heads import WitnessHead as WitnessHead
from orchestrator.state.audit_heads import check_head, check_witnesses, witnessed_point
from orchestrator.state.audit_key import AuditKey
from orchestrator.state.audit_marker import KeyedPoint
from orchestrator.state.models import AuditRecord


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """Result of verifying the chain. `ok` is true only without findings; `warnings` say
    what could not be checked (e.g. no witness readable) and do not make it fail."""

    ok: bool
    count: int
    head_hash: str
    findings: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()
    unkeyed: int = 0
    """Records before the keyed part (a chain that began before keys): hash-linked only,
    pinned by the MAC of the boundary record after them."""
    keyed_from: int | None = None
    key_id: str | None = None
    macs_checked: bool = False
    witness: WitnessHead | None = None
    """The newest witnessed head compared with the store."""
    witness_sources: tuple[str, ...] = field(default=())

    @property
    def problem(self) -> str | None:
        return self.findings[0].message if self.findings else None

    @property
    def bad_seq(self) -> int | None:
        return self.findings[0].seq if self.findings else None

    @property
    def kind(self) -> str | None:
        return self.findings[0].kind if self.findings else None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "head_hash": self.head_hash,
            "kind": self.kind,
            "problem": self.problem,
            "bad_seq": self.bad_seq,
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "warnings": list(self.warnings),
            "unkeyed_records": self.unkeyed,
            "keyed_from": self.keyed_from,
            "key_id": self.key_id,
            "macs_checked": self.macs_checked,
            "witness": dataclasses.asdict(self.witness) if self.witness else None,
            "witness_sources": list(self.witness_sources),
        }


def verify_chain(
    records: Iterable[AuditRecord],
    head: AuditHead | None = None,
    *,
    key: AuditKey | None = None,
    witnesses: Sequence[WitnessHead] = (),
    witness_sources: Sequence[str] = (),
    extra: Sequence[Finding] = (),
    keyed: KeyedPoint | None = None,
) -> ChainReport:
    """Check `records` (in stored order) against themselves, `head`, `key` and `witnesses`.

    `keyed`: where the keyed part begins as known outside the store (the keyed marker);
    without it, the newest witness line that says so. `extra`: findings the caller made
    while reading (unreadable rows)."""
    rows = list(records)
    check = _Checker(rows, key, keyed or witnessed_point(witnesses))
    findings = [*extra, *check.chain()]
    findings += check_head(rows, head, findings, check.keyed_since)
    warnings: list[str] = []
    newest = check_witnesses(rows, witnesses, findings, warnings)
    if not witnesses:
        warnings.append(
            "no witnessed head was readable (no witness file, collector copy or "
            "--expect-head): deleting the newest records and rewriting the head, or putting "
            "back an older copy of the database, cannot be detected from the store alone"
        )
    warnings += check.warnings
    last = rows[-1] if rows else None
    return ChainReport(
        ok=not findings,
        count=last.seq if last else 0,
        head_hash=last.hash if last else GENESIS_HASH,
        findings=tuple(findings),
        warnings=tuple(warnings),
        unkeyed=check.unkeyed,
        keyed_from=check.keyed_from,
        key_id=key.key_id if key else None,
        macs_checked=key is not None and check.keyed_from is not None,
        witness=newest,
        witness_sources=tuple(witness_sources),
    )


_SEARCH = 64
"""How far from its seq a renumbered record is looked for when its link leads nowhere."""


class _Checker:
    """One pass over the rows: each row's own state, then links, then names."""

    def __init__(self, rows: list[AuditRecord], key: AuditKey | None,
                 point: KeyedPoint | None) -> None:
        self.rows = rows
        self.key = key
        self.point = point
        self.warnings: list[str] = []
        first_keyed = next((r for r in rows if _keyed(r)), None)
        self.keyed_from = first_keyed.seq if first_keyed else None
        known = [s for s in (self.keyed_from, point.first_seq if point else None) if s]
        self.keyed_since = min(known) if known else None
        """The first record that must carry a MAC: by the records or by the marker."""
        self.unkeyed = (
            sum(1 for r in rows if not _keyed(r) and r.seq < first_keyed.seq)
            if first_keyed
            else len(rows)
        )
        self.by_hash = {r.hash: i for i, r in enumerate(rows)}
        self.original = self._original_positions()

    def chain(self) -> list[Finding]:
        key_problem = self._key_problem()
        if key_problem is not None and key_problem.kind == "wrong_key":
            return [key_problem]
        states = [self._state(i) for i in range(len(self.rows))]
        keyed_states = [s for r, s in zip(self.rows, states, strict=True) if _keyed(r)]
        if self.key is not None and keyed_states and all(s == "forged" for s in keyed_states):
            return [
                Finding(
                    "rewritten",
                    f"all {len(keyed_states)} keyed records fail their MAC although their "
                    "hashes and links are consistent: the whole chain was rewritten without "
                    "the key",
                    self.keyed_from,
                )
            ]
        findings = [key_problem] if key_problem else []
        findings += self._boundary()
        findings += self._downgrade()
        findings += self._name(states)
        return findings

    # -- per row -------------------------------------------------------------------------

    def _original_positions(self) -> list[int | None]:
        """Each row's position by following `prev_hash` links back to genesis (None when
        a link leads nowhere): where it was written, whatever seq it has now."""
        result: list[int | None] = [None] * len(self.rows)
        done = [False] * len(self.rows)
        for start in range(len(self.rows)):
            path: list[int] = []
            index: int | None = start
            base: int | None = None
            while index is not None and not done[index] and index not in path:
                path.append(index)
                prev = self.rows[index].prev_hash
                if prev == GENESIS_HASH:
                    base, index = 0, None
                else:
                    index = self.by_hash.get(prev)
            if index is not None and done[index]:
                base = result[index]
            for step in reversed(path):
                base = None if base is None else base + 1
                result[step] = base
                done[step] = True
        return result

    def _state(self, i: int) -> str:
        """ok, moved (genuine, now at another seq), edited, or forged (no valid MAC)."""
        row = self.rows[i]
        if record_hash(row) == row.hash:
            return "forged" if not self._mac_ok(row) else "ok"
        origin = self.original[i]
        candidates = (
            [origin] if origin is not None
            # its link leads nowhere (the record before it was deleted): look nearby
            else [row.seq + d for d in range(-_SEARCH, _SEARCH + 1) if d and row.seq + d > 0]
        )
        for seq in candidates:
            if seq == row.seq:
                continue
            moved = dataclasses.replace(row, seq=seq)
            if record_hash(moved) == row.hash and self._mac_ok(moved):
                self.original[i] = seq
                return "moved"
        return "edited"

    def _mac_ok(self, row: AuditRecord) -> bool:
        if not _keyed(row) or self.key is None:
            return True  # unkeyed part: hash-linked only; no key: reported once
        return row.key_id == self.key.key_id and mac_matches(self.key.secret, row)

    def _key_problem(self) -> Finding | None:
        keyed = [r for r in self.rows if _keyed(r)]
        if not keyed:
            if self.rows and self.key is None and self.point is None:
                self.warnings.append(
                    f"the chain is not keyed yet ({len(self.rows)} records, sha256 links "
                    "only, no audit key): the next change writes the keyed boundary"
                )
            elif self.rows and self.point and self.rows[-1].seq < self.point.first_seq:
                self.warnings.append(
                    f"the chain is keyed from record {self.point.first_seq} on "
                    f"({self.point.source}): the next change writes the keyed boundary"
                )
            return None
        if self.key is None:
            return Finding(
                "key_missing",
                "the audit key file was not found: record MACs were not checked (only hashes, "
                "links and witnesses)",
            )
        ids = {r.key_id for r in keyed}
        if self.key.key_id not in ids:
            return Finding(
                "wrong_key",
                f"the records were written with key id {', '.join(sorted(map(str, ids)))}, "
                f"but {self.key.path} has key id {self.key.key_id}: wrong key file "
                "(audit.key_file), or the chain was rewritten with another key",
                keyed[0].seq,
            )
        return None

    def _boundary(self) -> list[Finding]:
        if self.keyed_from is None:
            return []
        out: list[Finding] = []
        first = next(r for r in self.rows if r.seq == self.keyed_from)
        if self.keyed_from > 1 and first.command != BOUNDARY_COMMAND:
            out.append(
                Finding(
                    "forged",
                    f"the chain turns keyed at record {first.seq} without a boundary record "
                    f"({BOUNDARY_COMMAND!r}): the unkeyed records before it were added later",
                    first.seq,
                )
            )
        return out

    def _downgrade(self) -> list[Finding]:
        """What the store alone cannot show: records without a MAC where the keyed marker
        (or a witness) says the chain is keyed, a key beside a chain with no MAC at all,
        and the unkeyed records before the keyed point changed or deleted."""
        out: list[Finding] = []
        since = self.keyed_since
        stripped = [r.seq for r in self.rows
                    if not _keyed(r) and since is not None and r.seq >= since]
        for first, last in _ranges(stripped):
            which = f"record {first} has" if first == last else f"records {first}..{last} have"
            out.append(Finding(
                "forged",
                f"{which} no MAC, but the chain is keyed since record {since} "
                f"({self._since_source()}): inserted, or the MACs stripped (a downgrade)",
                first))
        if since is None and self.key is not None and self.rows:
            out.append(Finding(
                "forged",
                f"the audit key {self.key.path} (id {self.key.key_id}) exists, but none of the "
                f"{len(self.rows)} records carries a MAC and no keyed marker says where keying "
                "began: the MACs were stripped (a downgrade), or this key was not made for "
                "this chain", self.rows[0].seq))
        point = self.point
        if point is None or point.prefix_hash is None or point.first_seq <= 1:
            return out
        before = next((r for r in self.rows if r.seq == point.first_seq - 1), None)
        last_seq = self.rows[-1].seq if self.rows else 0
        if before is not None and before.hash != point.prefix_hash:
            out.append(Finding(
                "edited",
                f"record {before.seq} is not the record the keyed chain began after "
                f"({point.source} says hash {point.prefix_hash[:12]}, the store has "
                f"{before.hash[:12]}): the records written before the key were changed",
                before.seq))
        elif before is None and last_seq < point.first_seq - 1:
            out.append(Finding(
                "truncated",
                f"the chain ends at record {last_seq}, but it had {point.first_seq - 1} "
                f"records when its key was created ({point.source}): records were deleted",
                last_seq + 1))
        return out

    def _since_source(self) -> str:
        if self.point is not None and self.point.first_seq == self.keyed_since:
            return self.point.source
        return "its first keyed record"

    # -- names -------------------------------------------------------------------------

    def _name(self, states: list[str]) -> list[Finding]:
        out: list[Finding] = []
        expected_prev, expected_seq = GENESIS_HASH, 1
        rows = self.rows
        for i, (row, state) in enumerate(zip(rows, states, strict=True)):
            nxt = rows[i + 1] if i + 1 < len(rows) else None
            after_bad = i > 0 and states[i - 1] != "ok"
            if state == "edited":
                out.append(Finding("edited", f"record {row.seq} was changed after it was "
                                   "written (its content no longer matches its hash)", row.seq))
            elif state == "forged":
                out.append(self._forged(row, nxt, states[i + 1] if nxt else None))
            elif state == "moved":
                out.append(self._moved(i, states))
            elif row.prev_hash != expected_prev and not after_bad:
                if row.seq > expected_seq:
                    out.append(Finding("deleted", f"record {row.seq} does not link to the "
                                       f"record before it: records {expected_seq}.."
                                       f"{row.seq - 1} are missing (deleted)", expected_seq))
                else:
                    out.append(Finding("edited", f"record {row.seq} does not link to record "
                                       f"{row.seq - 1}: that record was changed and re-hashed, "
                                       "or replaced", row.seq - 1))
            expected_prev, expected_seq = row.hash, row.seq + 1
        return _merge(out)

    def _forged(self, row: AuditRecord, nxt: AuditRecord | None, nxt_state: str | None) -> Finding:
        if nxt is not None and nxt.prev_hash != row.hash:
            if nxt_state == "moved" or nxt.prev_hash == row.prev_hash:
                return Finding("inserted", f"record {row.seq} was inserted (it has no valid "
                               "MAC, and the record after it links past it)", row.seq)
            return Finding("edited", f"record {row.seq} was changed and re-hashed without the "
                           "key (its MAC fails and the next record no longer links to it)",
                           row.seq)
        if nxt is None:
            return Finding("inserted", f"record {row.seq} was appended without the key (it "
                           "has no valid MAC)", row.seq)
        return Finding("forged", f"record {row.seq} was not written with the audit key (its "
                       "MAC fails)", row.seq)

    def _moved(self, i: int, states: list[str]) -> Finding:
        row = self.rows[i]
        origin = self.original[i]
        assert origin is not None  # "moved" needs one
        shift = row.seq - origin
        before = [s for s in states[:i] if s != "ok"]
        if shift > 0 and "forged" in before:
            kind, why = "inserted", "a record was inserted before it and the later records " \
                        "renumbered"
        elif shift < 0 and all(s == "moved" for s in states[i:]) and self._gap_before(i):
            kind, why = "deleted", "a record before it was deleted and the later records " \
                        "renumbered"
        else:
            kind, why = "reordered", "records were moved"
        return Finding(kind, f"record {origin} was found at position {row.seq}: {why}", row.seq)

    def _gap_before(self, i: int) -> bool:
        first_moved = next(j for j in range(i + 1) if self.original[j] != self.rows[j].seq)
        prev = self.rows[first_moved].prev_hash
        return first_moved == 0 or prev != self.rows[first_moved - 1].hash


def _keyed(row: AuditRecord) -> bool:
    return row.key_id is not None or row.mac is not None


def _ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Consecutive numbers as (first, last) runs."""
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


def _merge(findings: list[Finding]) -> list[Finding]:
    """Consecutive findings of one kind that one act explains (renumbered records after an
    insertion or deletion) are reported once, at the first of them."""
    out: list[Finding] = []
    for finding in findings:
        if out and finding.kind in ("inserted", "deleted", "reordered") and \
                out[-1].kind == finding.kind and "renumbered" in finding.message:
            continue
        out.append(finding)
    return out
