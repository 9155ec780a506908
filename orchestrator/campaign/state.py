"""Campaign state derived from the store: the journal's steps, each service's status,
conflicts with other runs, and the standby's installed versions before patching."""

from __future__ import annotations

from typing import Any

from orchestrator.campaign_model import Campaign, packages_for
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BluegreenError, LockHeld, RolledBack
from orchestrator.routers.base import Router
from orchestrator.sides import other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, Run


def begun_steps(store: StateStore, run_id: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for e in store.journal(run_id):
        if e.phase == "begin" and e.step not in out:
            out[e.step] = e.data
    return out


def ended_steps(store: StateStore, run_id: str) -> dict[str, dict[str, Any]]:
    return {e.step: e.data for e in store.journal(run_id) if e.phase == "end"}


def engine_result_from_run(child: Run) -> dict[str, Any]:
    """A child that already ended (e.g. finished just before a kill): its outcome."""
    if child.status == "done":
        return {"status": "done", "message": child.result}
    if child.status == "rolled_back":
        raise RolledBack(child.result or "rolled back")
    raise BluegreenError(f"run {child.run_id} ended {child.status}: {child.result or ''}")


def check_conflicts(
    store: StateStore, name: str, services: list[str], *, own_run: str | None
) -> None:
    """Refuse (LockHeld, exit 5) when a service is locked by another run or belongs to
    another unfinished campaign run, or when this campaign already has an unfinished run."""
    for svc in services:
        lock = store.get_lock(svc)
        if lock is None:
            continue
        owner = store.get_run(lock.run_id)
        if (
            own_run is not None
            and owner is not None
            and owner.params.get("campaign_run") == own_run
        ):
            continue
        raise LockHeld(
            f"service {svc!r} is locked by run {lock.run_id} of {lock.holder} "
            f"(pid {lock.pid} on {lock.hostname})",
            hint=f"wait for that run to finish, or `bluegreen unlock {svc} --reason TEXT` if "
            "its process is gone",
        )
    for other in store.list_runs():
        if other.kind != "campaign" or other.status not in RESUMABLE_STATUSES:
            continue
        if other.run_id == own_run:
            continue
        other_name = str(other.params.get("name"))
        if other_name == name:
            raise LockHeld(
                f"campaign {name} already has an unfinished run {other.run_id} ({other.status})",
                hint=f"`bluegreen campaign resume {name}` continues it; "
                f"`bluegreen campaign abort {name}` ends it",
            )
        ends = ended_steps(store, other.run_id)
        theirs = {s for w in other.params.get("waves", []) for s in w}
        shared = sorted(s for s in set(services) & theirs if f"service:{s}" not in ends)
        if shared:
            raise LockHeld(
                f"{', '.join(shared)} belong(s) to unfinished campaign {other_name} "
                f"(run {other.run_id}, {other.status})",
                hint=f"finish it (`bluegreen campaign resume {other_name}`) or abort it "
                f"(`bluegreen campaign abort {other_name}`) first",
            )


def service_states(
    store: StateStore, run_id: str, waves: list[list[str]]
) -> dict[str, dict[str, Any]]:
    run = store.get_run(run_id)
    begun, ends = begun_steps(store, run_id), ended_steps(store, run_id)
    out: dict[str, dict[str, Any]] = {}
    for wi, names in enumerate(waves):
        for svc in names:
            step = f"service:{svc}"
            info: dict[str, Any] = {
                "wave": wi + 1,
                "child_run": (begun.get(step) or {}).get("child_run"),
            }
            if step in ends:
                info["status"] = ends[step].get("status")
                info["from"], info["to"] = ends[step].get("from"), ends[step].get("to")
            elif step in begun:
                child = store.get_run(info["child_run"]) if info["child_run"] else None
                info["status"] = (
                    "deferred"
                    if child and child.status == "deferred"
                    else "aborted"
                    if child and child.status == "aborted"
                    else "in flight"
                )
            elif run is not None and run.status in ("deferred",) and "approval" not in begun:
                info["status"] = "deferred"
            elif run is not None and run.status in ("failed", "aborted"):
                info["status"] = "skipped"
            else:
                info["status"] = "pending"
            conv = ends.get(f"converge:{svc}")
            if conv is not None:
                info["converged"] = conv.get("ok")
            out[svc] = info
    return out


def standby_versions(
    config: LoadedConfig, router: Router, service: str, campaign: Campaign
) -> dict[str, dict[str, str]]:
    """Installed versions of the campaign's packages on the standby hosts (before patching)."""
    from orchestrator.inventory import load_fleet
    from orchestrator.probes.connection import SSHConnection
    from orchestrator.probes.gate import targets_for

    names = [p.name for p in packages_for(campaign, service)]
    standby = other_side(router.live(service))
    hosts = load_fleet(config).service(service).side(standby)
    out: dict[str, dict[str, str]] = {}
    for target in targets_for(config, hosts):
        try:
            with SSHConnection(target, attempts=1) as conn:
                _rc, text, _err = conn.run(
                    "dpkg-query -W -f '${Package} ${Version}\\n' " + " ".join(names), timeout=15
                )
            out[target.name] = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
        except BluegreenError as exc:
            out[target.name] = {"error": exc.message}
    return out
