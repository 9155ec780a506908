"""A campaign run's evidence built from the state store (`evidence.model.CampaignReport`;
`evidence.render` renders it).

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

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from orchestrator.campaign.journal import Journal, Step
from orchestrator.campaign.ops import campaign_status
from orchestrator.evidence.model import (
    AUTOMATIC_ROLLBACK,
    ApprovalEntry,
    AuditHeadView,
    CampaignReport,
    ProbeRow,
    RollbackEntry,
    ServiceReport,
    StepSpan,
    VersionRow,
)
from orchestrator.rollout.records import canary_steps
from orchestrator.secrets import safe_url
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditRecord, JournalEntry, Run

ROLLBACK_COMMANDS = ("rollback", AUTOMATIC_ROLLBACK, "flip", "flip --force")
ROLLOUT_STEPS = ("precheck", "patch", "verify", "flip", "bake")


def build_report(
    store: StateStore, run: Run, host_now: dict[str, Any] | None = None, *,
    now: datetime | None = None,
) -> CampaignReport:
    """`host_now`: what `evidence.now.read_now` read from the hosts at report time, per service
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
    from orchestrator.evidence.now import cve_evidence

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
        bake_steps=[s.as_dict() for s in canary_steps(journal)],
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
