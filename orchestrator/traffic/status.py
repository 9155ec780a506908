"""What `status` shows and what `--adopt` does: the router's live side next to the store's
view of the service and of each side (state, level, since, why; verification; what the
load balancer counted), the rollback side, a flip problem or a pending flip, and the
progressive exposure (the current step: side, percent, preview)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.errors import BadInput, RouterError
from orchestrator.routers.base import Router
from orchestrator.sides import SIDES, Side, other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput, SideState
from orchestrator.traffic import gate
from orchestrator.traffic.connect import TrafficConfig, open_router, open_store
from orchestrator.traffic.exposed import read_exposure, stored_exposure
from orchestrator.traffic.kernel import settle
from orchestrator.traffic.reconcile import repersist_and_read, resolve_pending


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    live: Side
    standby: Side
    state_live: Side | None
    agrees: bool
    sides: dict[str, dict[str, Any]]
    run_in_flight: dict[str, Any] | None
    lock: dict[str, Any] | None
    rollback_to: Side | None = None
    flip_problem: str | None = None
    pending_flip: dict[str, Any] | None = None
    rollback_kept: str | None = None
    rollback_refused: str | None = None
    """Why `rollback` would refuse the rollback side now (the gate's words), or None."""
    last_abandoned: dict[str, Any] | None = None
    """The newest run of the service that was `abandoned` (another run took its lock over
    after its holder was gone): run_id, when, why."""
    exposure: dict[str, Any] | None = None
    """The progressive exposure the router applies now ({side, percent, preview}; None:
    all traffic on the live side); `state_exposure`: what the store recorded."""
    state_exposure: dict[str, Any] | None = None
    exposure_error: str | None = None
    """Why the router's exposure could not be read (None: read)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "live": self.live,
            "standby": self.standby,
            "state_live": self.state_live,
            "agrees": self.agrees,
            "rollback_to": self.rollback_to,
            "flip_problem": self.flip_problem,
            "pending_flip": self.pending_flip,
            "rollback_kept": self.rollback_kept,
            "rollback_eligible": self.rollback_to is not None and self.rollback_refused is None,
            "rollback_refused": self.rollback_refused,
            "sides": self.sides,
            "run_in_flight": self.run_in_flight,
            "lock": self.lock,
            "last_abandoned": self.last_abandoned,
            "exposure": self.exposure,
            "state_exposure": self.state_exposure,
            "exposure_error": self.exposure_error,
        }


def side_view(rec: SideState | None) -> dict[str, Any]:
    """One side as `status --json` shows it (the keys before schema 2 are kept)."""
    return {
        "state": rec.state if rec else "untouched",
        "since": rec.state_since.isoformat() if rec and rec.state_since else None,
        "reason": rec.state_reason if rec else None,
        "generation": rec.generation if rec else 0,
        "hosts": sorted(rec.hosts) if rec else [],
        "patch_level": rec.patch_level if rec else None,
        "patched_at": rec.patched_at.isoformat() if rec and rec.patched_at else None,
        "verified_at": rec.verified_at.isoformat() if rec and rec.verified_at else None,
        "verification_ok": rec.verification_ok if rec else None,
        "verified_patch_level": rec.verified_patch_level if rec else None,
        "verified_after_patch": rec.verified_after_patch if rec else False,
    }


def service_status(
    config: TrafficConfig, store: StateStore, router: Router, service: str
) -> ServiceStatus:
    config.service(service)
    live = router.live(service)
    svc = store.get_service(service)
    sides: dict[str, dict[str, Any]] = {}
    records = {side: store.get_side(service, side) for side in SIDES}
    for side in SIDES:
        counted = router.counters(service, side)
        sides[side] = {
            "traffic": None if counted is None else counted.as_dict(),
            **side_view(records[side]),
        }
    rollback_to = svc.rollback_to if svc else None
    refused = (gate.refusal(service, rollback_to, records[rollback_to], rollback_to=rollback_to)
               if rollback_to is not None and rollback_to != live else None)
    run = store.latest_unfinished_run(service)
    lock = store.get_lock(service)
    state_live = svc.live_side if svc else None
    pending = svc.pending_flip if svc else None
    exposure, unreadable = read_exposure(router, service)
    recorded = stored_exposure(svc)
    return ServiceStatus(
        service=service,
        live=live,
        standby=other_side(live),
        state_live=state_live,
        agrees=state_live in (None, live),
        sides=sides,
        run_in_flight={"run_id": run.run_id, "status": run.status, "kind": run.kind}
        if run
        else None,
        lock={
            "run_id": lock.run_id,
            "holder": lock.holder,
            "pid": lock.pid,
            "since": lock.acquired_at.isoformat(),
            "epoch": lock.epoch,
        }
        if lock
        else None,
        rollback_to=rollback_to,
        rollback_refused=refused.message.removeprefix(
            f"{service}: refusing to send traffic to {rollback_to}: ")
        if refused is not None else None,
        flip_problem=svc.flip_problem if svc else None,
        pending_flip=pending.as_json() if pending else None,
        rollback_kept=svc.rollback_kept if svc else None,
        last_abandoned=next(({"run_id": r.run_id, "at": r.finished_at.isoformat()
                              if r.finished_at else None, "result": r.result}
                             for r in reversed(store.list_runs(service, "abandoned"))), None),
        exposure=exposure.as_dict() if exposure else None,
        state_exposure=recorded.as_dict() if recorded else None,
        exposure_error=unreadable,
    )


class StatusConfig(TrafficConfig, Protocol):
    """`status` also lists every service (the full config)."""

    @property
    def services(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class FleetStatus:
    """`status [SERVICE]`: one ServiceStatus per service asked for."""

    rows: list[ServiceStatus]
    one: bool
    """One service was named: its document is the JSON, not a list."""

    @property
    def agrees(self) -> bool:
        """The router and the store agree on every service's live side (else exit 1)."""
        return all(r.agrees for r in self.rows)

    def as_json(self) -> Any:
        docs = [r.as_dict() for r in self.rows]
        return docs[0] if self.one else docs


def fleet_status(config: StatusConfig, service: str | None, actor: str, *,
                 adopt_reason: str | None = None, adopt_live: bool = False) -> FleetStatus:
    """`status [SERVICE] [--adopt --reason R]`: the status of SERVICE (else of every
    service), after accepting the router's live side of SERVICE into the store when asked
    (`adopt`). Names and arguments are checked before the store is opened: bad input
    changes nothing."""
    names = [service] if service else list(config.services)
    for name in names:
        config.service(name)
    if adopt_live and (not service or not adopt_reason):
        raise BadInput(
            "--adopt needs a SERVICE and --reason",
            hint="bluegreen status web --adopt --reason 'LB changed by hand, INC-1'",
        )
    store, router = open_store(config), open_router(config)
    try:
        if adopt_live and service and adopt_reason:
            adopt(store, router, service, actor, adopt_reason)
        return FleetStatus([service_status(config, store, router, n) for n in names],
                           one=service is not None)
    finally:
        router.close()
        store.close()


def adopt(store: StateStore, router: Router, service: str, actor: str, reason: str) -> Side:
    """Accept the router's view of which side is live (explicit, audited). A flip a crash
    interrupted is first ended by the kernel's rule (completed with its own command and
    semantics, or cancelled), so adopting never erases a rollback's failed_live side.
    The adopted side is persisted again (the map on disk may route elsewhere, e.g. after a
    reload inside an earlier re-persist) and recorded with the outcome in one write: when
    that persist fails, its problem is the live side's flip problem, never "no problem"."""
    with store.traffic_lock(service, command="adopt"):
        live = router.live(service)
        svc = store.get_service(service)
        if svc is not None and svc.pending_flip is not None:
            svc, _done = resolve_pending(store, router, svc, live, actor)
            live = svc.live_side or live  # where it settled: read back from the router
        problem, now = repersist_and_read(router, service, live)
        if now is None:
            raise RouterError(
                f"{service}: persisting {live} failed ({problem}) and the router cannot be "
                "read now: nothing adopted",
                hint=f"when the load balancer answers again, run `bluegreen status {service} "
                "--adopt` again",
            )
        if problem is not None and now != live:
            problem += f"; the load balancer now routes to {now} (reloaded meanwhile?)"
        store.set_live_side(
            service,
            now,
            problem=problem,
            audit=AuditEntryInput(
                actor=actor,
                command="adopt",
                service=service,
                reason=reason,
                result="ok" if problem is None else "not persisted",
                before={"state_live": svc.live_side if svc else None},
                after={"live": now, "flip_problem": problem},
            ),
        )
    return now


def check_agreement(store: StateStore, router: Router, service: str, actor: str) -> Side:
    """The router is the truth: record it at first contact, finish or cancel a flip a crash
    interrupted, refuse (StateMismatch) when the store disagrees. See `kernel.settle`."""
    return settle(store, router, service, actor)
