"""Campaign operations around a run: find it, its status, approve, abort.
(`campaign.plan` says what a run would do.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.campaign.journal import APPROVAL, Journal, StepKind
from orchestrator.campaign.runner import AWAITING, campaign_lock
from orchestrator.campaign.state import ServiceProgress, service_states
from orchestrator.errors import BadInput
from orchestrator.processes import alive
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, AuditEntryInput, OsIdentity, Run


def campaign_runs(store: StateStore, name: str | None = None) -> list[Run]:
    return [
        r
        for r in store.list_runs()
        if r.kind == "campaign" and (name is None or r.params.get("name") == name)
    ]


def find_run(store: StateStore, name_or_id: str, *, unfinished: bool = False) -> Run:
    """The newest campaign run named `name_or_id` (or with that run id)."""
    run = store.get_run(name_or_id)
    if run is not None and run.kind == "campaign":
        return run
    runs = campaign_runs(store, name_or_id)
    if unfinished:
        runs = [r for r in runs if r.status in RESUMABLE_STATUSES]
    if not runs:
        what = "unfinished campaign run" if unfinished else "campaign run"
        raise BadInput(
            f"no {what} named {name_or_id!r}",
            hint="see `bluegreen campaign status`",
        )
    return runs[-1]


def display_status(store: StateStore, run: Run) -> str:
    if run.status not in RESUMABLE_STATUSES:
        return run.status
    journal = Journal(store, run.run_id)
    if APPROVAL in journal.begun() and APPROVAL not in journal.ended():
        return AWAITING
    lock = store.get_lock(campaign_lock(str(run.params.get("name"))))
    if lock is not None and lock.run_id == run.run_id and alive(lock.pid):
        return "running"
    if run.status == "deferred":
        return "converge_pending" if (run.result or "").startswith("patched;") else "deferred"
    return "interrupted"


@dataclass(frozen=True)
class CampaignStatus:
    """A campaign run as `campaign status` shows it."""

    run: Run
    status: str
    """As shown: running, interrupted, awaiting_approval, converge_pending, or the stored one."""
    approval: dict[str, Any] | None
    """The approval's record (actor, at, point, reason) once approved."""
    waves: list[list[str]]
    services: dict[str, ServiceProgress]

    @property
    def services_done(self) -> int:
        return sum(1 for s in self.services.values() if s.status == "done")

    @property
    def waves_done(self) -> int:
        return sum(1 for w in self.waves if all(self.services[s].status == "done" for s in w))

    def as_dict(self) -> dict[str, Any]:
        run = self.run
        return {
            "campaign": run.params.get("name"),
            "run_id": run.run_id,
            "status": self.status,
            "stored_status": run.status,
            "result": run.result,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "actor": run.actor,
            "approval": self.approval,
            "progress": {
                "services_done": self.services_done,
                "services": len(self.services),
                "waves_done": self.waves_done,
                "waves": len(self.waves),
            },
            "services": {name: state.as_dict() for name, state in self.services.items()},
        }


def campaign_status(store: StateStore, run: Run) -> CampaignStatus:
    waves: list[list[str]] = run.params.get("waves", [])
    return CampaignStatus(
        run=run,
        status=display_status(store, run),
        approval=Journal(store, run.run_id).ended().get(APPROVAL),
        waves=waves,
        services=service_states(store, run.run_id, waves),
    )


def approve(store: StateStore, name: str, actor: str, reason: str | None = None) -> dict[str, Any]:
    run = find_run(store, name, unfinished=True)
    journal = Journal(store, run.run_id)
    begun = journal.begun()
    if APPROVAL not in begun or APPROVAL in journal.ended():
        raise BadInput(
            f"campaign {name}: nothing awaits approval (run {run.run_id}, "
            f"{display_status(store, run)})",
            hint="approve once `campaign status` says awaiting_approval",
        )
    approver = OsIdentity.current()
    policy = (run.params.get("campaign") or {}).get("approval") or {}
    if policy.get("distinct_approver"):
        _check_distinct_approver(store, name, run, approver)
    at = datetime.now(UTC).isoformat()
    data = {"actor": actor, "at": at, "point": begun[APPROVAL].get("at"), "reason": reason,
            "os_user": approver.os_user, "sudo_user": approver.sudo_user}
    store.audit_append(
        AuditEntryInput(
            actor=actor,
            command="campaign.approve",
            reason=reason or f"campaign {name}",
            after={"campaign": name, "run_id": run.run_id, "point": data["point"]},
        )
    )
    journal.end(APPROVAL, data)
    return {"campaign": name, "run_id": run.run_id, **data}


def _check_distinct_approver(store: StateStore, name: str, run: Run,
                             approver: OsIdentity) -> None:
    """BadInput (nothing recorded) unless `approver` is another person than whoever started
    `run`, by the OS identity kept in the run's `run.create` audit record."""
    start = next((r for r in store.audit_records()
                  if r.command == "run.create" and r.after.get("run_id") == run.run_id), None)
    starter = start.identity if start else None
    fix = (f"another person approves, from their own account (sudo keeps SUDO_USER): "
           f"`bluegreen campaign approve {name}`")
    if starter is None:
        raise BadInput(f"campaign {name}: the approval must come from another person than "
                       f"the one who started run {run.run_id}, but its start has no OS "
                       "identity on record", hint=fix)
    if not approver.persons:
        raise BadInput(f"campaign {name}: the approval must come from another person than "
                       f"the one who started it, and {approver.describe()} names nobody "
                       "(root without sudo)", hint=fix)
    if approver.persons & starter.persons:
        raise BadInput(f"campaign {name}: the approval must come from another person than "
                       f"the one who started run {run.run_id} ({starter.describe()}); you are "
                       f"{approver.describe()}", hint=fix)


def abort(store: StateStore, name: str, actor: str, reason: str) -> dict[str, Any]:
    """End an unfinished campaign: children in flight are marked aborted (a running rollout
    stops at its next step boundary, never between flip and record), their locks released.
    Each service stays live on its old side, or on a new side that passed verification."""
    run = find_run(store, name, unfinished=True)
    why = f"campaign abort by {actor}: {reason}"
    aborted: list[str] = []
    for step, data in Journal(store, run.run_id).begun().items():
        if step.kind not in (StepKind.SERVICE, StepKind.CONVERGE):
            continue
        svc = step.service
        child_id = data.get("child_run")
        child = store.get_run(child_id) if child_id else None
        if child is not None and child.status in RESUMABLE_STATUSES:
            store.finish_run(child.run_id, "aborted", why)
            aborted.append(child.run_id)
        lock = store.get_lock(svc)
        if lock is not None and lock.run_id in (child_id, run.run_id):
            store.force_release_lock(svc, reason=why, actor=actor)
    store.finish_run(run.run_id, "aborted", why)
    lock = store.get_lock(campaign_lock(str(run.params.get("name"))))
    if lock is not None and lock.run_id == run.run_id:
        store.force_release_lock(campaign_lock(str(run.params.get("name"))), why, actor)
    return {"campaign": name, "run_id": run.run_id, "aborted_children": aborted}
