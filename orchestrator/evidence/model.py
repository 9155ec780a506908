"""The typed evidence of one campaign run: what JSON, Markdown and HTML are rendered from.

`campaign.report.build_report()` builds it from the state store only (no router, no
hosts): the advisories, per service its steps with their real times (the child rollout's
journal), the versions before and after per host, every probe result of its verification
gate (failures first, with their evidence), approvals, flips and rollbacks with their
reasons, the CVEs before, after and now (`evidence.now`), and the audit chain's head as
SEQ:HASH (`bluegreen audit verify --report FILE` checks later that it is a prefix of the
chain). Every text in it is untrusted: the renderers (`evidence.render`,
`evidence.report_html`, `evidence.openvex`) escape it. Webhook URLs are reduced to scheme
and host (they often embed tokens); the store already redacts secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

AUTOMATIC_ROLLBACK = "rollout.auto-rollback"
# how each outcome is shown: a colour class AND a word (never colour alone)
GOOD = frozenset({"done", "pass", "ok", "passed", "fixed"})
BAD = frozenset({"failed", "fail", "error", "rolled_back", "aborted", "broken", "verify_failed",
                 "open"})


def tone(status: str | None) -> str:
    """The colour class of a status word: good, bad, or neutral (waiting, deferred ...)."""
    if status in GOOD:
        return "good"
    if status in BAD:
        return "bad"
    return "neutral"


@dataclass(frozen=True)
class StepSpan:
    """One step of a service's rollout, with its real start and end."""

    name: str
    """precheck, patch, verify, flip, bake, or rollback."""
    started_at: datetime
    ended_at: datetime | None
    """None: the step has not ended (it is running, or the run stopped inside it)."""
    outcome: str
    """ok, or the run's end inside this step (failed, rolled_back, deferred, aborted), or
    running."""

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())

    def as_json(self) -> dict[str, Any]:
        return {"step": self.name, "started_at": self.started_at.isoformat(),
                "ended_at": self.ended_at.isoformat() if self.ended_at else None,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "outcome": self.outcome}


@dataclass(frozen=True)
class ProbeRow:
    host: str
    check: str
    status: str
    evidence: str

    @property
    def failed(self) -> bool:
        return self.status != "pass"


@dataclass(frozen=True)
class VersionRow:
    host: str
    package: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class ServiceReport:
    name: str
    wave: int
    status: str
    progress: dict[str, Any]
    """`campaign status`'s view of the service (wave, child_run, status, from, to, ...)."""
    child_run: str | None
    child_status: str | None
    child_result: str | None
    started_at: datetime | None
    finished_at: datetime | None
    seconds: float | None
    patch_level: str | None
    verification_summary: str | None
    probes: list[ProbeRow]
    """Failures first, then by host and check."""
    probes_complete: bool
    """False for a failed gate: its audit record keeps the failures only."""
    versions: list[VersionRow]
    hosts: dict[str, dict[str, dict[str, str]]]
    """host -> {"before": {package: version}, "after": {...}}."""
    steps: list[StepSpan]
    flip: dict[str, Any] | None
    converge: dict[str, Any] | None
    cves: dict[str, Any] | None = None
    """Each advisory's CVEs per host before, after and now (`evidence.now.cve_evidence`); None
    when the campaign names no CVEs or the report was built without reading the hosts."""
    bake_steps: list[dict[str, Any]] = field(default_factory=list)
    """The bake's exposure steps as journaled (`canary:N`): per step its verdict and every
    measurement (queries as sent, both sides' values and volumes, verdict, why); rows for
    the renderers: `evidence.bake.measurement_rows`. Empty: the service has no bake.steps."""

    @property
    def exposure_words(self) -> str | None:
        return None if not self.cves else str(self.cves["now"]["words"])

    @property
    def failed_probes(self) -> int:
        return sum(1 for p in self.probes if p.failed)

    def as_json(self) -> dict[str, Any]:
        return {
            **self.progress,
            "child_status": self.child_status,
            "child_result": self.child_result,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": self.seconds,
            "hosts": self.hosts,
            "patch_level": self.patch_level,
            "verification": {
                "summary": self.verification_summary,
                "results": [{"host": p.host, "check": p.check, "status": p.status,
                             "evidence": p.evidence} for p in self.probes],
            },
            "timeline": [s.as_json() for s in self.steps],
            "flip": self.flip,
            "converge": self.converge,
            "cves": self.cves,
            "bake_steps": self.bake_steps,
        }


@dataclass(frozen=True)
class ApprovalEntry:
    actor: str
    os_user: str | None
    sudo_user: str | None
    hostname: str | None
    at: datetime
    reason: str | None
    extra: dict[str, Any]

    @property
    def point(self) -> str | None:
        value = self.extra.get("point")
        return None if value is None else str(value)

    def as_json(self) -> dict[str, Any]:
        return {"actor": self.actor, "os_user": self.os_user, "sudo_user": self.sudo_user,
                "hostname": self.hostname, "at": self.at.isoformat(), "reason": self.reason,
                **self.extra}


@dataclass(frozen=True)
class RollbackEntry:
    at: datetime
    service: str
    command: str
    actor: str
    os_user: str | None
    sudo_user: str | None
    reason: str | None
    from_side: str | None
    to_side: str | None

    @property
    def automatic(self) -> bool:
        return self.command == AUTOMATIC_ROLLBACK

    def as_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "service": self.service, "command": self.command,
                "actor": self.actor, "os_user": self.os_user, "sudo_user": self.sudo_user,
                "reason": self.reason, "from": self.from_side, "to": self.to_side,
                "automatic": self.automatic}


@dataclass(frozen=True)
class AuditHeadView:
    ok: bool
    records: int
    head_hash: str
    problem: str | None

    @property
    def head(self) -> str:
        return f"{self.records}:{self.head_hash}"

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_hash": self.head_hash,
                "head": self.head, "problem": self.problem}


@dataclass(frozen=True)
class CampaignReport:
    campaign: str | None
    file: str | None
    run_id: str
    status: str
    result: str | None
    actor: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    generated_at: datetime
    advisories: list[dict[str, Any]]
    window: dict[str, Any] | None
    approval_policy: dict[str, Any] | None
    approvals: list[ApprovalEntry]
    waves: list[list[str]]
    services: dict[str, ServiceReport]
    rollbacks: list[RollbackEntry]
    webhooks: list[str]
    audit: AuditHeadView
    exposure: dict[str, Any] | None = field(default=None)
    """Open CVEs now on the live sides: {"open": N, "services": {name: words}}; None: the
    hosts were not read (`build_report(..., host_now=None)`)."""

    @property
    def counts(self) -> dict[str, int]:
        """Services by outcome, for the summary band."""
        out = {"done": 0, "failed": 0, "rolled_back": 0, "deferred": 0, "other": 0}
        for svc in self.services.values():
            out[svc.status if svc.status in out else "other"] += 1
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "report": "bluegreen campaign evidence",
            "generated_at": self.generated_at.isoformat(),
            "campaign": self.campaign,
            "file": self.file,
            "run_id": self.run_id,
            "status": self.status,
            "result": self.result,
            "actor": self.actor,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": self.seconds,
            "summary": {**self.counts, "services": len(self.services),
                        "exposure": self.exposure},
            "advisories": self.advisories,
            "window": self.window,
            "approval_policy": self.approval_policy,
            "approvals": [a.as_json() for a in self.approvals],
            "waves": self.waves,
            "services": {name: s.as_json() for name, s in self.services.items()},
            "rollbacks": [r.as_json() for r in self.rollbacks],
            "webhooks": self.webhooks,
            "audit": self.audit.as_json(),
            "exposure_now": [w for w in (s.exposure_words for s in self.services.values())
                             if w],
        }
