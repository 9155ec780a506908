"""Campaign operations around a run: plan (changes nothing), status, approve, abort."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrator.campaign import AWAITING, campaign_lock
from orchestrator.campaign_model import Campaign, advisories_for, packages_for, resolve_waves
from orchestrator.campaign_state import begun_steps, ended_steps, service_states
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BadInput
from orchestrator.lab.proc import alive
from orchestrator.routers.base import Router
from orchestrator.schedule.window import window_state
from orchestrator.sides import other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, AuditEntryInput, Run


def plan_campaign(
    config: LoadedConfig,
    router: Router,
    campaign: Campaign,
    *,
    check: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What a run would do, per service; changes nothing. `check` asks Ansible (check mode)
    which packages would really change on each standby host (slower)."""
    from orchestrator.inventory import load_fleet

    now = now or datetime.now(UTC)
    waves = resolve_waves(campaign, config)
    fleet = load_fleet(config)
    services = []
    for wi, names in enumerate(waves):
        for svc in names:
            live = router.live(svc)
            standby = other_side(live)
            pkgs = packages_for(campaign, svc)
            item: dict[str, Any] = {
                "service": svc,
                "wave": wi + 1,
                "live": live,
                "standby": standby,
                "hosts": [h.name for h in fleet.service(svc).side(standby)],
                "packages": [str(p) for p in pkgs],
                "advisories": [a.id for a in advisories_for(campaign, svc)],
            }
            if check:
                from orchestrator.patching import patch_hosts

                res = patch_hosts(config, svc, standby, pkgs, check_mode=True)
                item["changes"] = {
                    h: {n: f"{c.current or '-'} -> {c.new}" for n, c in r.would_change.items()}
                    for h, r in res.hosts.items()
                }
            services.append(item)
    state = window_state(campaign.window, now)
    return {
        "campaign": campaign.name,
        "advisories": [
            {"id": a.id, "cves": a.cves, "severity": a.severity, "packages": a.packages}
            for a in campaign.advisories
        ],
        "waves": [
            {
                "wave": i + 1,
                "services": names,
                "max_parallel": campaign.waves[i].max_parallel,
                "on_failure": campaign.waves[i].on_failure,
            }
            for i, names in enumerate(waves)
        ],
        "services": services,
        "window": {"timezone": campaign.window.timezone, **state.as_dict()},
        "approval": campaign.approval.model_dump(),
        "retention": {
            "keep_seconds": campaign.retention.keep.total_seconds(),
            "converge": campaign.retention.converge,
        },
        "webhooks": len(campaign.notify.webhooks),
    }


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
    begun, ends = begun_steps(store, run.run_id), ended_steps(store, run.run_id)
    if "approval" in begun and "approval" not in ends:
        return AWAITING
    lock = store.get_lock(campaign_lock(str(run.params.get("name"))))
    if lock is not None and lock.run_id == run.run_id and alive(lock.pid):
        return "running"
    if run.status == "deferred":
        return "converge_pending" if (run.result or "").startswith("patched;") else "deferred"
    return "interrupted"


def campaign_status(store: StateStore, run: Run) -> dict[str, Any]:
    waves: list[list[str]] = run.params.get("waves", [])
    services = service_states(store, run.run_id, waves)
    ends = ended_steps(store, run.run_id)
    approval = ends.get("approval")
    done = sum(1 for s in services.values() if s["status"] == "done")
    waves_done = sum(1 for w in waves if all(services[s]["status"] == "done" for s in w))
    return {
        "campaign": run.params.get("name"),
        "run_id": run.run_id,
        "status": display_status(store, run),
        "stored_status": run.status,
        "result": run.result,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "actor": run.actor,
        "approval": approval,
        "progress": {
            "services_done": done,
            "services": len(services),
            "waves_done": waves_done,
            "waves": len(waves),
        },
        "services": services,
    }


def approve(store: StateStore, name: str, actor: str, reason: str | None = None) -> dict[str, Any]:
    run = find_run(store, name, unfinished=True)
    begun, ends = begun_steps(store, run.run_id), ended_steps(store, run.run_id)
    if "approval" not in begun or "approval" in ends:
        raise BadInput(
            f"campaign {name}: nothing awaits approval (run {run.run_id}, "
            f"{display_status(store, run)})",
            hint="approve once `campaign status` says awaiting_approval",
        )
    at = datetime.now(UTC).isoformat()
    data = {"actor": actor, "at": at, "point": begun["approval"].get("at"), "reason": reason}
    store.audit_append(
        AuditEntryInput(
            actor=actor,
            command="campaign.approve",
            reason=reason or f"campaign {name}",
            after={"campaign": name, "run_id": run.run_id, "point": data["point"]},
        )
    )
    store.journal_end(run.run_id, "approval", data)
    return {"campaign": name, "run_id": run.run_id, **data}


def abort(store: StateStore, name: str, actor: str, reason: str) -> dict[str, Any]:
    """End an unfinished campaign: children in flight are marked aborted (a running rollout
    stops at its next step boundary, never between flip and record), their locks released.
    Each service stays live on its old side, or on a new side that passed verification."""
    run = find_run(store, name, unfinished=True)
    why = f"campaign abort by {actor}: {reason}"
    aborted: list[str] = []
    for step, data in begun_steps(store, run.run_id).items():
        if not step.startswith(("service:", "converge:")):
            continue
        svc = step.split(":", 1)[1]
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
