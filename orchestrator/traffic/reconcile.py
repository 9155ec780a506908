"""Where the router and the store may differ: the kernel's reconciliation before a move,
and the truth after a move that did not end as planned.

The rule (issue 20, items 4 and 5): what is recorded, and what a message says, is where
traffic IS, read back from the router after the fact, never the side that was hoped for.
Whenever the map on disk may differ from the router's memory (a persist failed, an undo
moved traffic back but could not persist it, the load balancer reloaded between `set map`
and persisting, a flip a crash interrupted), the live side is persisted again at once or
by the next command's reconciliation; until then the store names the problem ("not
persisted: ..." on the live side, or the pending flip itself). The store never says "no
problem" while the map on disk may differ from memory.

The caller holds the service's traffic lock. Imports: as `kernel` (import-light).
"""

from __future__ import annotations

from orchestrator.errors import FlipIncomplete, RouterError, StateError, StateMismatch
from orchestrator.routers.base import Router
from orchestrator.sides import Side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput, PendingFlip, ServiceState
from orchestrator.traffic.exposed import reconcile_exposure, resolve_pending_exposure


def read_live(router: Router, service: str) -> tuple[Side | None, str]:
    """(the router's live side, "") or (None, why it cannot be read)."""
    try:
        return router.live(service), ""
    except RouterError as exc:
        return None, exc.message


def repersist(router: Router, service: str, live: Side) -> str | None:
    """Flip to the side that already takes traffic: persists and confirms it again. When
    that fails, nothing says the map on disk holds `live`: the problem to record."""
    try:
        router.flip(service, live)
    except FlipIncomplete as exc:
        return exc.problem
    except RouterError as exc:
        return f"not persisted: persisting {live} again failed: {exc.message}"
    return None


def repersist_and_read(router: Router, service: str, live: Side) -> tuple[str | None, Side | None]:
    """`repersist`, and where traffic is afterwards: (None, live) when it worked, else (the
    problem, the router's side read back, None when unreadable). A reload during the
    re-persist may have moved traffic to the side the map on disk held."""
    problem = repersist(router, service, live)
    if problem is None:
        return None, live
    now, _unreadable = read_live(router, service)
    return problem, now


def reconcile(
    store: StateStore, router: Router, service: str, actor: str, command: str
) -> tuple[Side, ServiceState, list[str], bool]:
    """The router's live side and the service once the store agrees with it: a first
    contact recorded, a flip (or exposure change) a crash interrupted completed or
    cancelled, a live side whose map on disk may differ ("not persisted") persisted again,
    the exposure agreed on (`exposed.reconcile_exposure`). Returns (live, service, what
    was recovered, whether a flip problem was repaired); StateMismatch when the store
    still disagrees."""
    live = router.live(service)
    svc = store.get_service(service)
    if svc is None or svc.live_side is None:
        svc = store.set_live_side(
            service,
            live,
            audit=AuditEntryInput(
                actor=actor, command="adopt", service=service,
                reason="first contact: recorded the router's live side", after={"live": live},
            ),
        )
    svc, recovered = resolve_pending(store, router, svc, live, actor)
    if recovered and svc.live_side != live:  # settled on what the router read back
        live = router.live(service)
    repaired = False
    if svc.live_side == live and not recovered and (
            svc.flip_problem or "").startswith("not persisted"):
        svc, now = persist_live_again(store, router, svc, actor, f"{command}.repair",
                                      f"the map on disk may not route to {live}: persisted "
                                      "it again")
        repaired = svc.flip_problem is None
        live = now if now is not None else router.live(service)
    if svc.live_side != live:
        raise StateMismatch(
            f"{service}: the router says {live} is live, the state store says {svc.live_side}",
            hint=f"find out who changed the load balancer; then `bluegreen status {service} "
            "--adopt --reason TEXT` accepts the router's view (audited)",
        )
    svc = reconcile_exposure(store, router, svc, live, actor, command)
    return live, svc, recovered, repaired


def resolve_pending(
    store: StateStore, router: Router, svc: ServiceState, live: Side, actor: str
) -> tuple[ServiceState, list[str]]:
    """End the flip a crash interrupted (the caller holds the traffic lock and read `live`
    from the router): the router had moved -> recorded with its own command and semantics
    (a rollback's side left becomes failed_live), result "recovered"; it is on the side
    the flip left from -> cancelled. Either way the live side is persisted again first:
    the map on disk may hold the other side (an undo or a reload after the flip's
    persist); a failure to do so is recorded as the live side's flip problem, and the
    router is read again (a reload meanwhile may have moved traffic: it ends where it is).
    Returns the service afterwards (its live side: where traffic is) and what was done."""
    service = svc.service
    pending = svc.pending_flip
    if pending is None:
        return svc, []
    if pending.exposure:
        return resolve_pending_exposure(store, router, svc, pending, actor)
    problem, now = repersist_and_read(router, service, live)
    if now is None:
        raise RouterError(
            f"{service}: persisting {live} again failed ({problem}) and the router cannot "
            "be read now: traffic may be on either side; the journaled flip stays",
            hint="when the load balancer answers again, any traffic command ends it",
        )
    live = now
    if live == pending.to_side:
        svc = store.record_flip(
            service, pending.from_side, pending.to_side, rollback=pending.rollback,
            problem=problem, quarantine=pending.quarantine,
            audit=AuditEntryInput(
                actor=pending.actor, command=pending.command, service=service,
                reason=pending.reason, result="recovered", before={"live": pending.from_side},
                after={"live": live, "flip_id": pending.id, "run_id": pending.run_id,
                       "recovered_by": actor, "problem": problem,
                       "how": "the router had flipped; the record was missing"},
            ),
        )
        return svc, [f"completed {pending.command} {pending.from_side} -> {live}"]
    svc = _cancel(store, svc, pending, live, problem, actor,
                  how="the router is on the side the flip left from (it never changed, or "
                  "was moved back); the live side was persisted again")
    return svc, [f"cancelled {pending.command} {pending.from_side} -> {pending.to_side}"]


def _cancel(store: StateStore, svc: ServiceState, pending: PendingFlip, live: Side,
            problem: str | None, actor: str, *, how: str, error: str | None = None,
            result: str = "cancelled") -> ServiceState:
    """End `pending` with traffic on `live`: the live side's flip problem first (`problem`,
    after persisting it again: None clears an earlier one), then the cancel, so that a
    crash between the two leaves the pending flip for the next command."""
    service = svc.service
    if problem != svc.flip_problem:
        store.set_flip_problem(service, problem, audit=AuditEntryInput(
            actor=actor, command=f"{pending.command}.repair", service=service,
            reason=pending.reason, result="ok" if problem is None else "failed",
            before={"flip_problem": svc.flip_problem},
            after={"flip_problem": problem, "live": live, "flip_id": pending.id},
        ))
    after = {"live": live, "flip_id": pending.id, "run_id": pending.run_id, "how": how,
             "problem": problem}
    if error is not None:
        after.update(target=pending.to_side, error=error)
    return store.cancel_flip(
        service, how,
        audit=AuditEntryInput(
            actor=actor, command=f"{pending.command}.failed", service=service,
            reason=pending.reason, result=result, after=after,
        ),
    )


def persist_live_again(store: StateStore, router: Router, svc: ServiceState, actor: str,
                       command: str, reason: str) -> tuple[ServiceState, Side | None]:
    """The live side's last flip was not persisted or confirmed: the map on disk may route
    elsewhere (a reload would move traffic there). Persist it again and record the outcome
    (audited `command`). Returns the service and where traffic is afterwards (None:
    unreadable); a reload meanwhile that moved it is named in the problem."""
    live = svc.live_side
    assert live is not None
    problem, now = repersist_and_read(router, svc.service, live)
    if problem is not None and now != live:
        problem += (f"; the load balancer now routes to {now} (reloaded while {live} was "
                    "persisted again?)" if now is not None else "; the router cannot be read")
    if problem == svc.flip_problem:
        return svc, now
    svc = store.set_flip_problem(svc.service, problem, audit=AuditEntryInput(
        actor=actor, command=command, service=svc.service, reason=reason,
        result="ok" if problem is None else "failed",
        before={"flip_problem": svc.flip_problem}, after={"flip_problem": problem},
    ))
    return svc, now


def not_moved(store: StateStore, router: Router, svc: ServiceState, actor: str,
              exc: FlipIncomplete) -> FlipIncomplete:
    """The router said it moved (FlipIncomplete) but reads back the side the flip left
    from (e.g. a reload between `set map` and persisting): nothing moved, and the map on
    disk may hold the target. The live side is persisted again, the problem (if that
    fails) recorded, the flip cancelled, and the RouterError raised says where traffic
    is. Returned instead: what to record when a reload during that re-persist put
    traffic on the target after all (the flip is then recorded with its problem)."""
    pending = svc.pending_flip
    assert pending is not None and svc.live_side is not None
    service, live, target = svc.service, svc.live_side, pending.to_side
    problem, now = repersist_and_read(router, service, live)
    if now == target and problem is not None:
        return FlipIncomplete(f"{exc.message}; then, persisting {live} again: {problem}",
                              persisted=False)
    if now is None:
        raise RouterError(
            f"{service}: the flip {live} -> {target} did not hold ({exc.message}), "
            f"persisting {live} again failed ({problem}) and the router cannot be read now: "
            "traffic may be on either side; the flip's intent is journaled",
            hint="when the load balancer answers again, any traffic command ends it",
        ) from exc
    _cancel(store, svc, pending, live, problem, actor, error=exc.message, result="failed",
            how=f"the router reads back {live} after the flip (a reload before it was "
            "persisted?)")
    disk = (f"the map on disk was written again for {live}" if problem is None else
            f"the map on disk may still route to {target} (recorded as the flip problem "
            f"{problem!r}: the next traffic command persists {live} again)")
    raise RouterError(
        f"{service}: the flip {live} -> {target} did not hold: the load balancer routes "
        f"to {live} again ({exc.message}); traffic is on {live}; {disk}",
        hint="find out why the load balancer reloaded or changed; then retry",
    ) from exc


def undo_unrecorded_flip(store: StateStore, router: Router, service: str, live: Side,
                         target: Side, exc: StateError, *, actor: str,
                         command: str) -> StateError:
    """The router flipped but the store cannot record it (locked, disk full): put traffic
    back, so every change stays in the audit chain and router and store agree. The intent
    stays journaled: the next traffic command finishes the bookkeeping (and persists the
    live side again). Returns the error to raise, saying where traffic is, read back."""
    undo: RouterError | None = None
    try:
        router.flip(service, live)
    except RouterError as failed:
        undo = failed
    now, unreadable = read_live(router, service)
    if undo is None and now == live:
        return StateError(
            f"{service}: not flipped: the state store cannot record it ({exc.message}); "
            f"traffic is back on {live}",
            hint=exc.hint,
        )
    head = f"{service}: flipped {live} -> {target} at the router, but could not record it " \
           f"({exc.message})"
    if now == live:  # moved back in memory, but not persisted (or not confirmed)
        assert undo is not None
        problem = (undo.problem if isinstance(undo, FlipIncomplete)
                   else f"not persisted: flipping back failed: {undo.message}")
        recorded = _record_problem(store, service, problem, live, actor=actor,
                                   command=command)
        return StateError(
            f"{head}; flipping back moved traffic back to {live}, but {undo.message}: the "
            f"map on disk may still route to {target}; {recorded}",
            hint=f"traffic is on {live}; when the state store works again, any traffic "
            f"command (`bluegreen flip {service} --to {live} --reason ...`) persists {live} "
            "again and ends the journaled flip",
        )
    if now == target:
        why = undo.message if undo is not None else "the router is still on it"
        return StateError(
            f"{head} nor flip back ({why}); traffic is on {target}",
            hint=f"when the state store works again, any traffic command (`bluegreen flip "
            f"{service} --to {target} --reason ...`) records it",
        )
    return StateError(
        f"{head}; flipping back failed ({undo.message if undo else 'no error'}) and the "
        f"router cannot be read now ({unreadable}): traffic may be on either side; the "
        "flip's intent is journaled",
        hint=f"when the load balancer and the store answer again, `bluegreen flip {service} "
        "...` first completes or cancels the journaled flip",
    )


def _record_problem(store: StateStore, service: str, problem: str, live: Side, *,
                    actor: str, command: str) -> str:
    """Best effort (the store just failed once): the live side's flip problem."""
    try:
        store.set_flip_problem(service, problem, audit=AuditEntryInput(
            actor=actor, command=f"{command}.undo", service=service, result="incomplete",
            reason="the store could not record a flip; it was undone at the router",
            after={"live": live, "flip_problem": problem},
        ))
    except StateError as again:
        return (f"the store could not record that either ({again.message}); the journaled "
                "flip says so")
    return f"recorded as the flip problem of {live}"
