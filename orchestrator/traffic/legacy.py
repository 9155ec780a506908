"""The flip of `rollback` and `flip` before the safety kernel (`kernel.move_traffic`).
Kept only until the CLI moves to the kernel (the next commit); do not use."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NoReturn

from orchestrator.errors import BadInput, RouterError, StateError, VerificationFailed
from orchestrator.routers.base import Router
from orchestrator.sides import Side, other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput, SideState
from orchestrator.traffic.connect import TrafficConfig


def trusted(side: SideState | None) -> bool:
    """May traffic go to this side? Yes if bluegreen never touched it (no patch, no failed
    verification) or if it passed verification after its last patch."""
    if side is None:
        return True
    if side.verified_after_patch:
        return True
    return side.patch_level is None and side.verification_ok is not False


@dataclass(frozen=True)
class FlipOutcome:
    service: str
    from_side: Side
    to_side: Side
    changed: bool
    seconds: float
    aborted_run: str | None
    confirmed_by: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "from": self.from_side,
            "to": self.to_side,
            "changed": self.changed,
            "seconds": round(self.seconds, 4),
            "aborted_run": self.aborted_run,
            "confirmed_by": self.confirmed_by,
        }


def flip(
    config: TrafficConfig,
    store: StateStore,
    router: Router,
    service: str,
    *,
    to: Side | None,
    reason: str,
    actor: str,
    command: str,
    require_verified: bool,
    force: bool = False,
) -> FlipOutcome:
    """Move `service` to `to` (default: the other side). Used by `rollback` and `flip`.

    `rollback` passes require_verified=False: the old side is the known-good one, and an
    incident must not wait for probes; the router still refuses a side with no server UP.
    A rollout holding the service's lock is marked aborted, so it will not flip afterwards.
    Even without require_verified, a side whose last verification failed or predates its
    patch is refused (see `trusted`); `--force` (require_verified=False, force=True) skips it.
    """
    started = time.perf_counter()
    config.service(service)
    if not reason.strip():
        raise BadInput("--reason is empty", hint="say why, e.g. --reason INC-4711")
    live = router.live(service)
    target: Side = to or other_side(live)
    if target == live:
        return FlipOutcome(service, live, target, False, time.perf_counter() - started, None, [])
    side = store.get_side(service, target)
    if require_verified and (side is None or not side.verified_after_patch):
        raise VerificationFailed(
            f"{service}: {target} has no passing verification after its last patch",
            hint=f"run `bluegreen verify {service} --side {target}` first, or pass --force",
        )
    if not force and not trusted(side):
        raise VerificationFailed(
            f"{service}: refusing to send traffic to {target}: its last verification failed or "
            "is older than its last patch",
            hint=f"verify it (`bluegreen verify {service} --side "
            f"{target}`), or use `bluegreen flip {service} --to {target} --force` knowingly",
        )
    health = router.health(service, target)
    if not health.healthy:
        raise RouterError(
            f"{service}: no server of {target} is UP at the load balancer; "
            "traffic stays on " + live,
            hint="check the hosts of that side (`bluegreen status`)",
        )
    # Write the intent first: a locked or full state store fails here, before the router
    # is touched (the undo below is the second line of defence).
    store.audit_append(AuditEntryInput(
        actor=actor, command=f"{command}.begin", service=service, reason=reason,
        before={"live": live}, after={"target": target}, result="started"))
    aborted = _abort_holder(store, service, actor, reason, command)
    svc = store.get_service(service)
    result = router.flip(service, target)
    try:
        store.set_live_side(
            service,
            target,
            audit=AuditEntryInput(
                actor=actor,
                command=command,
                service=service,
                reason=reason,
                before={"live": live, "state_live": svc.live_side if svc else None},
                after={
                    "live": target,
                    "confirmed_by": result.confirmed_by,
                    "flip_seconds": round(result.seconds, 4),
                },
            ),
        )
    except StateError as exc:
        _undo_unrecorded_flip(router, service, live, target, exc)
    return FlipOutcome(
        service,
        live,
        target,
        True,
        time.perf_counter() - started,
        aborted,
        list(result.confirmed_by),
    )


def _undo_unrecorded_flip(
    router: Router, service: str, live: Side, target: Side, exc: StateError
) -> NoReturn:
    """The router flipped but the store could not record it (locked, disk full): put traffic
    back, so that every change stays in the audit chain and router and store agree."""
    try:
        router.flip(service, live)
    except RouterError as undo:
        raise StateError(
            f"{service}: flipped {live} -> {target} at the router, but could not record it "
            f"({exc.message}) nor flip back ({undo.message})",
            hint=f"traffic is on {target}; when the state store works again run `bluegreen "
            f"status {service} --adopt --reason ...`",
        ) from exc
    raise StateError(
        f"{service}: not flipped: the state store cannot record it ({exc.message}); traffic "
        f"is back on {live}",
        hint=exc.hint,
    ) from exc


def _abort_holder(
    store: StateStore, service: str, actor: str, reason: str, command: str
) -> str | None:
    lock = store.get_lock(service)
    if lock is None:
        return None
    run = store.get_run(lock.run_id)
    if run is not None and run.status in ("running", "deferred"):
        store.finish_run(run.run_id, "aborted", f"aborted by `{command}` ({actor}): {reason}")
    store.force_release_lock(service, reason=f"{command}: {reason}", actor=actor)
    return lock.run_id
