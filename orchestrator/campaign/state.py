"""Campaign state derived from the store: each service's status, conflicts with other
runs, and the standby's installed versions before patching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.campaign.journal import APPROVAL, Journal, Step
from orchestrator.campaign.model import Campaign, packages_for
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BluegreenError, LockHeld, RolledBack
from orchestrator.inventory import Fleet
from orchestrator.routers.base import Router
from orchestrator.sides import other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, Run


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
        ends = Journal(store, other.run_id).ended()
        theirs = {s for w in other.params.get("waves", []) for s in w}
        shared = sorted(s for s in set(services) & theirs if Step.of_service(s) not in ends)
        if shared:
            raise LockHeld(
                f"{', '.join(shared)} belong(s) to unfinished campaign {other_name} "
                f"(run {other.run_id}, {other.status})",
                hint=f"finish it (`bluegreen campaign resume {other_name}`) or abort it "
                f"(`bluegreen campaign abort {other_name}`) first",
            )


@dataclass(frozen=True)
class ServiceProgress:
    """Where one service of a campaign run stands.

    status: done | failed | rolled_back (ended), deferred | aborted | in flight (begun),
    deferred | skipped | pending (not begun)."""

    wave: int
    child_run: str | None
    status: str
    ended: bool = False
    from_side: str | None = None
    to_side: str | None = None
    converged: bool | None = None
    """None until a converge of its old side ended."""
    worker: dict[str, Any] | None = None
    """A run by workers: the worker that runs (or ran) it, {site, host, pid, alive}."""

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "wave": self.wave, "child_run": self.child_run, "status": self.status
        }
        if self.worker is not None:
            doc["worker"] = self.worker
        if self.ended:
            doc["from"], doc["to"] = self.from_side, self.to_side
        if self.converged is not None:
            doc["converged"] = self.converged
        return doc


def service_states(
    store: StateStore, run_id: str, waves: list[list[str]]
) -> dict[str, ServiceProgress]:
    run = store.get_run(run_id)
    journal = Journal(store, run_id)
    begun, ends = journal.begun(), journal.ended()
    out: dict[str, ServiceProgress] = {}
    for wi, names in enumerate(waves):
        for svc in names:
            step = Step.of_service(svc)
            child_run = (begun.get(step) or {}).get("child_run")
            conv = ends.get(Step.converge(svc))
            converged = None if conv is None else conv.get("ok")
            if step in ends:
                end = ends[step]
                out[svc] = ServiceProgress(
                    wi + 1, child_run, str(end.get("status")), ended=True,
                    from_side=end.get("from"), to_side=end.get("to"), converged=converged,
                )
                continue
            if step in begun:
                child = store.get_run(child_run) if child_run else None
                ended = ("deferred", "aborted", "abandoned")
                status = str(child.status) if child and child.status in ended else "in flight"
            elif run is not None and run.status == "deferred" and APPROVAL not in begun:
                status = "deferred"
            elif run is not None and run.status in ("failed", "aborted"):
                status = "skipped"
            else:
                status = "pending"
            out[svc] = ServiceProgress(wi + 1, child_run, status, converged=converged)
    return out


def standby_versions(
    config: LoadedConfig, router: Router, service: str, campaign: Campaign, fleet: Fleet
) -> dict[str, dict[str, str]]:
    """Installed versions of the campaign's packages on the standby hosts (before patching)."""
    from orchestrator.probes.connection import SSHConnection
    from orchestrator.probes.gate import targets_for

    names = [p.name for p in packages_for(campaign, service)]
    standby = other_side(router.live(service))
    hosts = fleet.service(service).side(standby)
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
