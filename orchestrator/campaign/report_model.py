"""The typed evidence of one campaign run: what JSON, Markdown and HTML are rendered from.

`build_report()` reads the state store only (no router, no hosts): the advisories, per
service its steps with their real times (the child rollout's journal), the versions before
and after per host, every probe result of its verification gate (failures first, with their
evidence; a failed gate's results come from its audit record, since the rollout's journal
ends the verify step only when it passed), approvals, flips and rollbacks with their
reasons, and the audit chain's head as SEQ:HASH (`bluegreen audit verify --report FILE`
checks later that it is a prefix of the chain). Every text in it is untrusted: the
renderers escape it. Webhook URLs are reduced to scheme and host (they often embed tokens);
the store already redacts secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from orchestrator.campaign.journal import Journal, Step
from orchestrator.campaign.ops import campaign_status
from orchestrator.secrets import safe_url
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditRecord, JournalEntry, Run

ROLLBACK_COMMANDS = ("rollback", "rollout.auto-rollback", "flip", "flip --force")
AUTOMATIC_ROLLBACK = "rollout.auto-rollback"
ROLLOUT_STEPS = ("precheck", "patch", "verify", "flip", "bake")
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
    """Each advisory's CVEs per host before, after and now (`evidence.cve_evidence`); None
    when the campaign names no CVEs or the report was built without reading the hosts."""

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


# ---- building it from the store ---------------------------------------------------------


def build_report(
    store: StateStore, run: Run, host_now: dict[str, Any] | None = None, *,
    now: datetime | None = None,
) -> CampaignReport:
    """`host_now`: what `evidence.read_now` read from the hosts at report time, per service
    (None: not read; the report then says exposure now is unknown)."""
    params = run.params
    campaign = params.get("campaign", {})
    status = campaign_status(store, run)
    begun = Journal(store, run.run_id).begun()
    ends = Journal(store, run.run_id).ended()
    names = [s for w in params.get("waves", []) for s in w]
    records = store.audit_records()
    rollbacks = [
        _rollback(r) for r in records
        if r.command in ROLLBACK_COMMANDS and r.service in names and r.at >= run.started_at
    ]
    services = {
        svc: _service(store, svc, status.services[svc].as_dict(),
                      begun.get(Step.of_service(svc)) or {}, ends.get(Step.converge(svc)),
                      records)
        for svc in names
    }
    exposure = _add_cves(services, list(campaign.get("advisories", [])), host_now, rollbacks)
    chain = store.verify_audit()
    return CampaignReport(
        campaign=params.get("name"),
        file=params.get("file"),
        run_id=run.run_id,
        status=status.status,
        result=run.result,
        actor=run.actor,
        started_at=run.started_at,
        finished_at=run.finished_at,
        seconds=_seconds(run),
        generated_at=now or datetime.now(UTC),
        advisories=list(campaign.get("advisories", [])),
        window=campaign.get("window"),
        approval_policy=campaign.get("approval"),
        approvals=[
            ApprovalEntry(actor=r.actor, os_user=r.os_user, sudo_user=r.sudo_user,
                          hostname=r.hostname, at=r.at, reason=r.reason, extra=dict(r.after))
            for r in records
            if r.command == "campaign.approve" and r.after.get("run_id") == run.run_id
        ],
        waves=params.get("waves", []),
        services=services,
        rollbacks=rollbacks,
        webhooks=[safe_url(u) for u in (campaign.get("notify") or {}).get("webhooks", [])],
        audit=AuditHeadView(ok=chain.ok, records=chain.count, head_hash=chain.head_hash,
                            problem=chain.problem),
        exposure=exposure,
    )


def _add_cves(
    services: dict[str, ServiceReport], advisories: list[dict[str, Any]],
    host_now: dict[str, Any] | None, rollbacks: list[RollbackEntry],
) -> dict[str, Any] | None:
    """Each service's CVE evidence (in place), and the exposure now on the live sides."""
    from orchestrator.campaign.evidence import cve_evidence

    if not any(a.get("cves") for a in advisories):
        return None
    open_now: set[str] = set()
    for name, svc in list(services.items()):
        rolled_back = any(r.service == name for r in rollbacks)
        cves = cve_evidence(advisories, svc.hosts, (host_now or {}).get(name), name, rolled_back)
        services[name] = replace(svc, cves=cves)
        open_now.update(cves["now"]["open_on_live"])
    if host_now is None:
        return None
    return {"open": len(open_now),
            "services": {n: s.exposure_words for n, s in services.items()}}


def _service(
    store: StateStore, svc: str, progress: dict[str, Any], step: dict[str, Any],
    converge: dict[str, Any] | None, records: list[AuditRecord],
) -> ServiceReport:
    child_id = step.get("child_run")
    child = store.get_run(child_id) if child_id else None
    journal = store.journal(child.run_id) if child else []
    entries = {e.step + ":" + e.phase: e for e in journal}
    patch, verify, flip = (entries.get(k) for k in ("patch:end", "verify:end", "flip:end"))
    before: dict[str, dict[str, str]] = step.get("before") or {}
    after = {
        h: d.get("versions", {})
        for h, d in ((patch.data if patch else {}).get("hosts") or {}).items()
    }
    hosts = {
        h: {"before": before.get(h, {}), "after": after.get(h, {})}
        for h in sorted(set(before) | set(after))
    }
    versions = [
        VersionRow(host, pkg, v["before"].get(pkg), v["after"].get(pkg))
        for host, v in hosts.items()
        for pkg in sorted(set(v["before"]) | set(v["after"]))
    ]
    summary, rows = _verification(svc, child, verify, records)
    complete = verify is not None
    return ServiceReport(
        name=svc,
        wave=int(progress.get("wave", 0)),
        status=str(progress.get("status")),
        progress=progress,
        child_run=child.run_id if child else None,
        child_status=child.status if child else None,
        child_result=child.result if child else None,
        started_at=child.started_at if child else None,
        finished_at=child.finished_at if child else None,
        seconds=_seconds(child),
        patch_level=patch.data.get("patch_level") if patch else None,
        verification_summary=summary,
        probes=sorted(rows, key=lambda p: (not p.failed, p.host, p.check)),
        probes_complete=complete,
        versions=versions,
        hosts=hosts,
        steps=_timeline(child, journal, svc, records),
        flip={"at": flip.at.isoformat(), **flip.data} if flip else None,
        converge=converge,
    )


def _verification(
    svc: str, child: Run | None, verify: JournalEntry | None, records: list[AuditRecord]
) -> tuple[str | None, list[ProbeRow]]:
    """The gate's summary and results: from the journal when the step passed, else from the
    audit record of the verification the child run made (it names the failures)."""
    if verify is not None:
        return verify.data.get("summary"), [_probe(r) for r in verify.data.get("results", [])]
    if child is None:
        return None, []
    end = child.finished_at or datetime.max.replace(tzinfo=UTC)
    mine = [r for r in records if r.command == "verify" and r.service == svc
            and child.started_at <= r.at <= end]
    if not mine:
        return None, []
    last = mine[-1].after  # a failed gate's record names its failures (rollout/steps/verify.py)
    return last.get("summary"), [_probe(r) for r in last.get("failures", [])]


def _probe(raw: dict[str, Any]) -> ProbeRow:
    return ProbeRow(str(raw.get("host")), str(raw.get("check")), str(raw.get("status")),
                    str(raw.get("evidence") or ""))


def _timeline(
    child: Run | None, journal: list[JournalEntry], svc: str, records: list[AuditRecord]
) -> list[StepSpan]:
    if child is None:
        return []
    begins = {e.step: e.at for e in journal if e.phase == "begin"}
    ends = {e.step: e.at for e in journal if e.phase == "end"}
    stopped = child.finished_at
    spans: list[StepSpan] = []
    for name in ROLLOUT_STEPS:
        if name not in begins:
            continue
        if name in ends:
            spans.append(StepSpan(name, begins[name], ends[name], "ok"))
        elif child.status == "running":
            spans.append(StepSpan(name, begins[name], None, "running"))
        else:  # the run ended inside this step
            spans.append(StepSpan(name, begins[name], stopped, child.status))
    end = stopped or datetime.max.replace(tzinfo=UTC)
    for r in records:  # the automatic rollback of its bake, or a rollback during the run
        if r.service == svc and r.command in ROLLBACK_COMMANDS[:2] and \
                child.started_at <= r.at <= end:
            spans.append(StepSpan("rollback", r.at, r.at, "rolled_back"))
    return sorted(spans, key=lambda s: s.started_at)


def _rollback(r: AuditRecord) -> RollbackEntry:
    return RollbackEntry(at=r.at, service=str(r.service), command=r.command, actor=r.actor,
                         os_user=r.os_user, sudo_user=r.sudo_user, reason=r.reason,
                         from_side=r.before.get("live"), to_side=r.after.get("live"))


def _seconds(run: Run | None) -> float | None:
    if run is None or run.finished_at is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), 1)
