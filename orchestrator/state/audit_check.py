"""`bluegreen audit verify`: the chain checked against the key, the stored head, the
witnesses readable from here, heads an auditor kept (`--expect-head SEQ:HASH`) and the head
printed in a campaign report (`--report FILE`: it must be a prefix of today's chain)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import AuditBroken, BadInput
from orchestrator.state.audit_settings import WitnessSettings
from orchestrator.state.audit_verify import ChainReport, Finding, WitnessHead
from orchestrator.state.base import StateStore
from orchestrator.state.witness import parse_expected_head, read_witnessed
from orchestrator.text import one_line

_MAX_REPORT_BYTES = 64 * 1024 * 1024
# "head": "42:<hash>" (JSON), head `42:<hash>` (Markdown), id="audit-head">42:<hash> (HTML),
# and reports written before
# heads carried their seq: "42 records, head `<hash>`" / "records": 42, "head_hash": "<hash>"
_HEAD_RE = re.compile(r"head(?:&quot;|[\"`:\s>])+(\d+):([0-9a-f]{64})")
_OLD_MD_RE = re.compile(r"(\d+) records, head `([0-9a-f]{64})`")


@dataclass(frozen=True)
class ChainCheck:
    report: ChainReport
    findings: tuple[Finding, ...]
    warnings: tuple[str, ...]
    given: tuple[WitnessHead, ...] = ()
    """Heads given with --expect-head / --report (each agrees when `ok`)."""

    @property
    def ok(self) -> bool:
        return not self.findings

    def error(self) -> AuditBroken | None:
        """What `audit verify` ends with when the chain does not verify (its first finding;
        the others are in `findings`)."""
        if self.ok:
            return None
        first = self.findings[0]
        return AuditBroken(
            f"audit chain broken ({first.kind})"
            + (f" at record {first.seq}" if first.seq else "") + f": {one_line(first.message)}",
            hint="keep the file and the witnesses as evidence; restore the state file from a "
            "backup; investigate who wrote it",
        )

    def as_json(self) -> dict[str, Any]:
        doc = self.report.as_json()
        doc.update(
            ok=self.ok,
            findings=[{"kind": f.kind, "message": f.message, "seq": f.seq}
                      for f in self.findings],
            warnings=list(self.warnings),
            kind=self.findings[0].kind if self.findings else None,
            problem=self.findings[0].message if self.findings else None,
            bad_seq=self.findings[0].seq if self.findings else None,
            given=[{"seq": g.seq, "hash": g.hash, "source": g.source} for g in self.given],
        )
        return doc


def check_chain(
    store: StateStore,
    store_label: str,
    witness: WitnessSettings,
    *,
    expected: Sequence[str] = (),
    report_file: str | None = None,
    require_witness: bool = False,
) -> ChainCheck:
    """Verify; BadInput (nothing checked) for a malformed --expect-head or report."""
    given: list[WitnessHead] = []
    for text in expected:
        try:
            given.append(parse_expected_head(text))
        except ValueError as exc:
            raise BadInput(str(exc), hint="copy SEQ:HASH as `audit verify` prints it") from exc
    if report_file is not None:
        given.append(report_head(Path(report_file)))
    key_id = store.audit_head().key_id
    seen = read_witnessed(witness, store_label, key_id)
    report = store.verify_audit([*seen.heads, *given], [*seen.sources, *(g.source for g in given)])
    findings = list(report.findings)
    warnings = [*seen.warnings, *report.warnings]
    if not seen.heads and witness.syslog_copy is None and witness.file is None:
        warnings.insert(0, "no readable witness is configured (audit.witness.file or "
                           "audit.witness.syslog_copy)")
    if require_witness and not seen.heads and not given:
        findings.append(Finding("unwitnessed", "--require-witness: no witnessed head could be "
                                "read, so truncation and older copies cannot be ruled out"))
    return ChainCheck(report, tuple(findings), tuple(warnings), tuple(given))


def report_head(path: Path) -> WitnessHead:
    """The audit head printed in a campaign report (JSON, Markdown or HTML)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as fh:
            text = fh.read(_MAX_REPORT_BYTES).decode("utf-8", "replace")
    except OSError as exc:
        raise BadInput(f"--report {path}: cannot be read: {exc.strerror}",
                       hint="give the path of a report written by `bluegreen report`") from exc
    match = _HEAD_RE.search(text) or _OLD_MD_RE.search(text)
    if match is None:
        try:
            audit = json.loads(text)["audit"]
            seq, head_hash = int(audit["records"]), str(audit["head_hash"])
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"--report {path}: no audit head found in it",
                           hint="give a report written by `bluegreen report` (json, md or "
                           "html)") from None
    else:
        seq, head_hash = int(match.group(1)), match.group(2)
    return WitnessHead(seq=seq, hash=head_hash, source=f"report {path}")
