"""The kernel's exposure bookkeeping (kept apart from `kernel.py` and `exposure.py`): read
the router's exposure, take an exposure back (`withdraw`: all traffic on the live side; a
rollback from a step marks the exposed side failed_live), and reconcile the store with
the router after a crash or an incomplete change.

The rule: the store never adopts an exposure it did not journal. An exposure change a
crash interrupted is recorded as the router holds it ("recovered", or "cancelled" when the
router never changed); an exposure the router holds that nobody recorded (a hand edit, a
reload that brought back a map an earlier failure could not persist) is taken back at the
router and recorded; an exposure the store records that the router lost (a reload) is
recorded as gone. The caller holds the service's traffic lock. Imports: as `kernel`.
"""

from __future__ import annotations

from orchestrator.errors import FlipIncomplete, RouterError
from orchestrator.routers.base import Exposure, Router, exposing
from orchestrator.sides import Side
from orchestrator.state.base import StateStore
from orchestrator.state.models import (
    EXPOSURE_NOT_PERSISTED,
    AuditEntryInput,
    PendingFlip,
    ServiceState,
)
from orchestrator.traffic import failpoints


def stored_exposure(svc: ServiceState | None) -> Exposure | None:
    """The exposure the store records for `svc` (None: none)."""
    if svc is None or svc.exposed_side is None:
        return None
    return Exposure(svc.exposed_side, svc.exposure_percent)


def read_exposure(router: Router, service: str) -> tuple[Exposure | None, str | None]:
    """(the router's exposure, None) or (None, why it cannot be read). A router without
    `Exposing` holds none."""
    ex = exposing(router)
    if ex is None:
        return None, None
    try:
        return ex.exposure(service), None
    except RouterError as exc:
        return None, exc.message


def _set(router: Router, service: str, wanted: Exposure | None) -> None:
    ex = exposing(router)
    if ex is None:
        if wanted is None:
            return
        raise RouterError(f"{service}: this router cannot expose a share of traffic")
    ex.expose(service, wanted.side if wanted else None, wanted.percent if wanted else 0)


def audit_view(exposure: Exposure | None) -> dict[str, object]:
    """An exposure as audit records show it."""
    if exposure is None:
        return {"exposed_side": None, "percent": 0, "preview": False}
    return {"exposed_side": exposure.side, "percent": exposure.percent,
            "preview": exposure.preview}


def _describe(exposure: Exposure | None) -> str:
    if exposure is None:
        return "no exposure"
    return (f"{exposure.side} in preview" if exposure.preview
            else f"{exposure.percent} % on {exposure.side}")


def withdraw(store: StateStore, router: Router, svc: ServiceState, live: Side, *,
             command: str, actor: str, reason: str, run_id: str | None,
             rollback: bool) -> tuple[ServiceState, str | None]:
    """Take `svc`'s exposure back: intent journaled, the router cleared, recorded with its
    audit record (`rollback`: the exposed side, which served users, becomes failed_live and
    a second rollback finds this one done). Returns (the service, a problem: cleared in
    memory but not persisted; the next traffic command clears it again after a reload).
    RouterError when the router still exposes the side (the intent is cancelled) or cannot
    be read (the intent stays journaled)."""
    service = svc.service
    before = stored_exposure(svc)
    assert before is not None
    pending = store.begin_exposure(service, live, None, 0, command=command, actor=actor,
                                   reason=reason, run_id=run_id, rollback=rollback)
    failpoints.hit("traffic:intent", command)
    problem: str | None = None
    try:
        _set(router, service, None)
    except RouterError as exc:
        now, unreadable = read_exposure(router, service)
        if unreadable is not None:
            raise RouterError(
                f"{service}: taking the exposure of {before.side} back failed ({exc.message}) "
                f"and the router cannot be read now ({unreadable}); the intent is journaled",
                hint="when the load balancer answers again, any traffic command ends it",
            ) from exc
        if now is not None:
            store.cancel_flip(service, f"the router refused: {exc.message}", audit=AuditEntryInput(
                actor=actor, command=f"{command}.failed", service=service, reason=reason,
                result="failed", after={"live": live, **audit_view(now), "error": exc.message,
                                        "exposure": True}))
            raise RouterError(
                f"{service}: could not take the exposure of {now.side} back ({exc.message}); "
                f"{now.percent} % of new requests still go to {now.side}",
                hint=exc.hint or "check the load balancer, then retry",
            ) from exc
        problem = exc.message
    failpoints.hit("traffic:router", command)
    kept = (f"rolled back the exposure of {before.side} ({before.percent} %) by {actor}"
            if rollback else None)
    svc = store.record_exposure(
        service, None, 0, rolled_back=before.side if rollback else None, kept=kept,
        persist_problem=problem, audit=AuditEntryInput(
            actor=actor, command=command, service=service, reason=reason,
            result="incomplete" if problem else "ok",
            before={"live": live, **audit_view(before)},
            after={"live": live, "exposure": True, **audit_view(None),
                   "flip_id": pending.id, "run_id": run_id, "problem": problem,
                   "rolled_back": before.side if rollback else None},
        ))
    failpoints.hit("traffic:recorded", command)
    return svc, problem


def resolve_pending_exposure(store: StateStore, router: Router, svc: ServiceState,
                             pending: PendingFlip, actor: str) -> tuple[ServiceState, list[str]]:
    """End the exposure change a crash interrupted: the router's exposure, persisted again,
    is recorded ("recovered" when it is the intended one, else "cancelled")."""
    service = svc.service
    now, unreadable = read_exposure(router, service)
    if unreadable is not None:
        raise RouterError(
            f"{service}: an exposure change ({pending.command}) was interrupted and the "
            f"router's exposure cannot be read now ({unreadable}); the intent stays journaled",
            hint="when the load balancer answers again, any traffic command ends it",
        )
    problem: str | None = None
    try:
        _set(router, service, now)  # memory and the files on disk agree again
    except RouterError as exc:
        problem = f"not persisted: {exc.message}"
    wanted = Exposure(pending.exposed_side, pending.percent) if pending.exposed_side else None
    done = now == wanted
    before = stored_exposure(svc)
    rolled_back = before.side if done and pending.rollback and before is not None else None
    svc = store.record_exposure(
        service, now.side if now else None, now.percent if now else 0,
        rolled_back=rolled_back,
        kept=(f"rolled back the exposure of {rolled_back} by {pending.actor}"
              if rolled_back else None),
        audit=AuditEntryInput(
            actor=pending.actor, command=pending.command if done else f"{pending.command}.failed",
            service=service, reason=pending.reason, result="recovered" if done else "cancelled",
            before={"live": svc.live_side, **audit_view(before)},
            after={"live": svc.live_side, "exposure": True, **audit_view(now),
                   "flip_id": pending.id, "run_id": pending.run_id, "recovered_by": actor,
                   "problem": problem, "rolled_back": rolled_back,
                   "how": "the router had changed; the record was missing" if done
                   else "the router holds another exposure than the intent"},
        ))
    verb = "completed" if done else "cancelled"
    return svc, [f"{verb} {pending.command} ({_describe(wanted)}); the router holds "
                 f"{_describe(now)}"]


def reconcile_exposure(store: StateStore, router: Router, svc: ServiceState, live: Side,
                       actor: str, command: str) -> ServiceState:
    """The store and the router agree on the exposure afterwards (see the module
    docstring); RouterError when the router cannot be read or cleared."""
    service = svc.service
    now, unreadable = read_exposure(router, service)
    if unreadable is not None:
        raise RouterError(f"{service}: the router's exposure cannot be read ({unreadable})",
                          hint="check the load balancer; then retry")
    recorded = stored_exposure(svc)
    if now == recorded:
        if (svc.flip_problem or "").startswith(EXPOSURE_NOT_PERSISTED):
            svc = _persist_again(store, router, svc, now, actor, command)
        return svc
    how = (f"the router holds {_describe(now)}, the store recorded {_describe(recorded)}")
    problem: str | None = None
    if now is not None:  # never adopted: taken back (all traffic on the live side)
        try:
            _set(router, service, None)
        except FlipIncomplete as exc:  # gone from memory, the maps on disk may hold it
            problem = exc.message
        except RouterError as exc:
            raise RouterError(
                f"{service}: {how}; taking it back failed: {exc.message}",
                hint="check the load balancer's exposure maps; then retry",
            ) from exc
        how += "; it was taken back at the router (an exposure nobody recorded)"
    else:
        how += " (a reload before it was persisted?)"
    return store.record_exposure(service, None, 0, persist_problem=problem, audit=AuditEntryInput(
        actor=actor, command=f"{command}.reconcile", service=service, result="repaired",
        reason="the router's exposure differs from the store's",
        before={"live": live, **audit_view(recorded)},
        after={"live": live, "exposure": True, **audit_view(None),
               "how": how}))


def _persist_again(store: StateStore, router: Router, svc: ServiceState,
                   now: Exposure | None, actor: str, command: str) -> ServiceState:
    """The exposure maps on disk may differ from memory (an earlier persist failed): write
    them again from what the router holds, and clear the problem (audited); a failure
    again keeps it (the patch guard stays)."""
    problem: str | None
    try:
        _set(router, svc.service, now)
    except RouterError as exc:
        problem = EXPOSURE_NOT_PERSISTED + exc.message
        if problem == svc.flip_problem:
            return svc
        result = "failed"
    else:
        problem, result = None, "ok"
    return store.set_flip_problem(svc.service, problem, audit=AuditEntryInput(
        actor=actor, command=f"{command}.repair", service=svc.service, result=result,
        reason="the exposure maps on disk may differ from memory: written again",
        before={"flip_problem": svc.flip_problem},
        after={"flip_problem": problem, "exposure": True, **audit_view(now)}))
