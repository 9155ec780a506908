"""Campaign operations around a run: its status, approve, abort. (`campaign.runs` finds
the run, `campaign.plan` says what a run would do.)"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrator.campaign.events import AWAITING, campaign_lock
from orchestrator.campaign.journal import APPROVAL, Journal, StepKind
from orchestrator.campaign.runs import find_run
from orchestrator.campaign.state import ServiceProgress, service_states
from orchestrator.errors import BadInput, LockHeld
from orchestrator.processes import alive
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, AuditEntryInput, OsIdentity, Run

if TYPE_CHECKING:
    from orchestrator.campaign.queued import QueueView


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
    sites: dict[str, dict[str, Any]] | None = None
    """A run by workers: per site, its live workers and waiting services."""

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
            **({} if self.sites is None else {"sites": self.sites}),
        }


def campaign_status(store: StateStore, run: Run,
                    queue: QueueView | None = None) -> CampaignStatus:
    """`queue`: for a run by workers, who runs what (`campaign.queued.queue_view`)."""
    waves: list[list[str]] = run.params.get("waves", [])
    services = service_states(store, run.run_id, waves)
    if queue is not None:
        services = {name: dataclasses.replace(state, worker=queue.workers.get(name))
                    for name, state in services.items()}
    return CampaignStatus(
        run=run,
        status=display_status(store, run),
        approval=Journal(store, run.run_id).ended().get(APPROVAL),
        waves=waves,
        services=services,
        sites=None if queue is None else queue.sites,
    )


@dataclass(frozen=True)
class Approved:
    """A campaign's approval, as recorded in its journal and the audit chain."""

    campaign: str
    run_id: str
    actor: str
    """Who the command said is acting (--actor)."""
    at: str
    point: str | None
    """Where the run waits for it (before_flip, ...)."""
    reason: str | None
    os_user: str | None
    """Who approved, by the OS: the account, and the person behind sudo."""
    sudo_user: str | None

    def journal_data(self) -> dict[str, Any]:
        return {"actor": self.actor, "at": self.at, "point": self.point, "reason": self.reason,
                "os_user": self.os_user, "sudo_user": self.sudo_user}

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "run_id": self.run_id, **self.journal_data()}


def approve(store: StateStore, name: str, actor: str, reason: str | None = None) -> Approved:
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
    approved = Approved(campaign=name, run_id=run.run_id, actor=actor,
                        at=datetime.now(UTC).isoformat(), point=begun[APPROVAL].get("at"),
                        reason=reason, os_user=approver.os_user, sudo_user=approver.sudo_user)
    store.audit_append(
        AuditEntryInput(
            actor=actor,
            command="campaign.approve",
            reason=reason or f"campaign {name}",
            after={"campaign": name, "run_id": run.run_id, "point": approved.point},
        )
    )
    journal.end(APPROVAL, approved.journal_data())
    return approved


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


@dataclass(frozen=True)
class AbortedCampaign:
    """What `campaign abort` ended: the campaign's run and its children in flight, and the
    locks whose holders still live (they stop at their next step boundary and release
    them; their later writes are refused)."""

    campaign: str
    run_id: str
    aborted_children: list[str]
    still_stopping: list[str] = field(default_factory=list)
    """"LOCK: run R (pid P on HOST)" for each lock left with its live holder."""

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "run_id": self.run_id,
                "aborted_children": self.aborted_children,
                "still_stopping": self.still_stopping}


def abort(store: StateStore, name: str, actor: str, reason: str) -> AbortedCampaign:
    """End an unfinished campaign: its run and children in flight are marked aborted; a
    running child stops at its next step boundary (never between flip and record), and
    whatever it would record after the abort is refused. A lock is freed here only when
    its holder is provably gone; a live holder keeps it until it stops, so no other run
    starts Ansible on the side it is patching. Each service stays live on its old side,
    or on a new side that passed verification."""
    run = find_run(store, name, unfinished=True)
    why = f"campaign abort by {actor}: {reason}"
    aborted: list[str] = []
    locks: list[tuple[str, tuple[str | None, ...]]] = []
    for step, data in Journal(store, run.run_id).begun().items():
        if step.kind not in (StepKind.SERVICE, StepKind.CONVERGE):
            continue
        child_id = data.get("child_run")
        child = store.get_run(child_id) if child_id else None
        if child is not None and child.status in RESUMABLE_STATUSES:
            store.finish_run(child.run_id, "aborted", why)
            aborted.append(child.run_id)
        locks.append((step.service, (child_id, run.run_id)))
    store.finish_run(run.run_id, "aborted", why)
    locks.append((campaign_lock(str(run.params.get("name"))), (run.run_id,)))
    stopping = [held for lock, owners in locks
                if (held := _free_if_gone(store, lock, owners, why, actor)) is not None]
    return AbortedCampaign(name, run.run_id, aborted, stopping)


def _free_if_gone(store: StateStore, name: str, owners: tuple[str | None, ...], why: str,
                  actor: str) -> str | None:
    """Free lock `name` of one of `owners` if its holder is gone; else say who holds it."""
    lock = store.get_lock(name)
    if lock is None or lock.run_id not in owners:
        return None
    try:
        store.force_release_lock(name, reason=why, actor=actor)
    except LockHeld:
        return f"{name}: run {lock.run_id} (pid {lock.pid} on {lock.hostname})"
    return None
