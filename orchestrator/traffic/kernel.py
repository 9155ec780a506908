"""The safety kernel: the one path that moves traffic.

`rollback`, `flip`, the rollout's flip and the bake's automatic rollback (and so every
campaign) move traffic with `move_traffic`, which, under the service's short traffic lock:

1. reconciles the store with the router: a flip a crash interrupted is completed (the
   router had moved: recorded with its own command, result "recovered") or cancelled (the
   router had not moved); a store that still disagrees raises StateMismatch;
2. picks the target (rollback: `rollback_to`, the side live before the last forward flip;
   none, already live, or a rollback answered by aborting a run that had not flipped yet:
   nothing to do), gates it (`gate.refusal`, unless forced), re-checks its hosts (the
   caller's callable: this module stays import-light), needs a server UP on it at the
   router, and last asks the caller's `still_allowed` (the maintenance window): right
   before the router changes, never earlier;
3. only then aborts the service's runs in flight when asked (`rollback`, `flip`): a
   command refused by any check aborts nothing. Such a run stops at its next boundary; a
   run-bound request of an aborted run raises Aborted. Both happen under the lock, so a
   rollback that aborted a run first always wins, and a rollback that comes after the
   run's flip waits for it and then flips back;
4. journals and audits the intent (`begin_flip`), flips at the router, records the flip in
   one transaction with its audit record (`record_flip`).

A progressive exposure (`exposure.expose_traffic`: a share of traffic, or preview
requests, on the standby) ends in every move: a rollback (to the live side) from a step
takes it back and marks the exposed side failed_live (`exposed.withdraw`), once; any
other move takes it back first, with its own record, under the same lock.

Every failure after the router changed ends recorded and resumable: the router is read
back, and the store follows where traffic IS with the problem named ("not persisted: ...",
"not confirmed: ...") and the caller gets FlipIncomplete (or, when traffic stayed on or
went back to the old side, a RouterError/StateError saying so), or the flip is undone at
the router; never a silent split. `reconcile.py` holds these paths and the reconciliation
that persists the live side again whenever the map on disk may differ.

Imports: standard library, `errors`, `sides`, `routers.base`, `state` only (`rollback`
must start fast; a test checks its imports).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import (
    Aborted,
    BadInput,
    FlipIncomplete,
    LocksLost,
    OutsideWindow,
    RouterError,
    StateError,
    VerificationFailed,
)
from orchestrator.routers.base import FlipResult, Router
from orchestrator.sides import Side, other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import (
    EXPOSURE_NOT_PERSISTED,
    RESUMABLE_STATUSES,
    AuditEntryInput,
    Run,
    ServiceState,
    SideState,
)
from orchestrator.traffic import failpoints, gate
from orchestrator.traffic.exposed import withdraw
from orchestrator.traffic.marks import quarantine_standby
from orchestrator.traffic.reconcile import (
    not_moved,
    persist_live_again,
    read_live,
    reconcile,
    undo_unrecorded_flip,
)

ROLLBACK_COMMANDS = frozenset({"rollback", "rollout.auto-rollback"})
"""Commands with rollback semantics: to `rollback_to`, and the side left is failed_live."""

HostRecheck = Callable[[Side, Mapping[str, str]], None]
"""(side, the host fingerprints recorded with its verification) -> None, or raises
(VerificationFailed naming the host and what changed)."""


@dataclass(frozen=True)
class FlipRequest:
    """One request to move traffic.

    `to`: the side, or None for the rollback target. `run_id`: the run this flip belongs
    to (the rollout's own flips). `abort_in_flight`: abort the service's runs (rollback and
    flip) once every check passed: a refused request aborts nothing. `recheck_hosts`:
    skipped for `force`, and never passed by rollback.
    """

    service: str
    command: str
    reason: str
    actor: str
    to: Side | None = None
    force: bool = False
    run_id: str | None = None
    recheck_hosts: HostRecheck | None = None
    abort_in_flight: bool = False
    lock_timeout_s: float = 30.0
    still_allowed: Callable[[], str | None] | None = None
    """Asked last, under the traffic lock, after the gate, the host recheck and the
    router's health, right before the intent is journaled: a reason (e.g. the maintenance
    window closed) raises OutsideWindow, nothing moved, nothing journaled as a flip."""
    verified_generation: int | None = None
    """The target's generation the caller's verification left (`record_verification`):
    the flip is refused when the side changed since (re-patched, re-imaged, quarantined)."""
    quarantine: str | None = None
    """A reason: the side traffic leaves is marked quarantined in the flip's record."""


@dataclass(frozen=True)
class FlipOutcome:
    """What `move_traffic` did. `changed` is False when traffic stayed where it was."""

    service: str
    from_side: Side
    to_side: Side
    changed: bool
    seconds: float
    message: str
    aborted_run: str | None = None
    confirmed_by: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    """Interrupted flips this call completed or cancelled first."""
    forced: bool = False
    repaired: bool = False
    """A flip problem (not persisted / not confirmed) of the live side was repaired."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "from": self.from_side,
            "to": self.to_side,
            "changed": self.changed,
            "seconds": round(self.seconds, 4),
            "message": self.message,
            "aborted_run": self.aborted_run,
            "confirmed_by": self.confirmed_by,
            "recovered": self.recovered,
            "forced": self.forced,
            "repaired": self.repaired,
        }


def move_traffic(store: StateStore, router: Router, request: FlipRequest) -> FlipOutcome:
    """Move `request.service`'s traffic as requested; see the module docstring.

    Raises BadInput (empty reason), LockHeld (traffic lock), StateMismatch, Aborted,
    VerificationFailed (gate, host recheck), RouterError (nothing moved, or the router
    cannot be read), FlipIncomplete (moved, recorded with its problem), StateError.
    """
    started = time.perf_counter()
    service = request.service
    if not request.reason.strip():
        raise BadInput("--reason is empty", hint="say why, e.g. --reason INC-4711")
    with store.traffic_lock(service, request.lock_timeout_s, command=request.command):
        failpoints.hit("traffic:locked", request.command)
        live, svc, recovered, reconciled = reconcile(store, router, service, request.actor,
                                                      request.command)
        if request.run_id is not None:
            _check_run(store, request.run_id)
        in_flight = _runs_in_flight(store, service, request) if request.abort_in_flight else []
        aborted = in_flight[-1].run_id if in_flight else None

        def unchanged(message: str, *, repaired: bool = False) -> FlipOutcome:
            if aborted is not None and "aborted run" not in message:
                message += f"; aborted run {aborted}"
            return FlipOutcome(service, live, live, False, time.perf_counter() - started,
                               message, aborted, [], recovered, request.force, repaired)

        if svc.exposed_side is not None and request.command in ROLLBACK_COMMANDS \
                and request.to in (None, live):
            # a rollback from a step: the exposure taken back, the exposed side failed_live
            _abort_runs(store, service, request, in_flight)
            exposed, percent = svc.exposed_side, svc.exposure_percent
            svc, problem = withdraw(store, router, svc, live, command=request.command,
                                    actor=request.actor, reason=request.reason,
                                    run_id=request.run_id, rollback=True)
            note = (f"; {problem}: a reload of the load balancer may bring it back until the "
                    "next traffic command takes it back again" if problem else "")
            more = f"; aborted run {aborted}" if aborted is not None else ""
            repaired = _live_problem(svc) and _repair(store, router, svc, request)
            return FlipOutcome(
                service, live, live, True, time.perf_counter() - started,
                f"{service}: rolled back the exposure of {exposed} ({percent} %): all traffic "
                f"on {live}; {exposed} is failed_live{note}{more}", aborted, [], recovered,
                request.force, repaired)

        if request.to is None and any(not _has_flipped(store, r) for r in in_flight):
            # the rollback is answered: a second one (another operator, a retry) is done
            _abort_runs(store, service, request, in_flight)
            store.keep_after_rollback(
                service, f"run {aborted} was aborted before its flip by {request.actor} "
                f"({request.reason})",
                audit=AuditEntryInput(
                    actor=request.actor, command=request.command, service=service,
                    reason=request.reason, result="kept",
                    after={"live": live, "aborted_run": aborted},
                ),
            )
            return unchanged(
                f"{service}: aborted run {aborted}, which had not flipped yet; traffic stays "
                f"on {live}"
            )
        target = request.to or svc.rollback_to
        if request.to is None and request.command == "rollback" and svc.rollback_kept:
            _abort_runs(store, service, request, in_flight)
            back = (f"; `bluegreen rollback {service} --to {svc.rollback_to}` goes back to "
                    f"{svc.rollback_to}" if svc.rollback_to not in (None, live) else "")
            return unchanged(
                f"{service}: already rolled back ({svc.rollback_kept}); traffic stays on "
                f"{live}{back}"
            )
        if target is None or target == live:
            _abort_runs(store, service, request, in_flight)
            if target is None:
                return unchanged(
                    f"{service}: no earlier flip to roll back; traffic stays on {live}")
            # a quarantine of the standby is marked here; then, as for every command, a live
            # side whose flip is not persisted is persisted (a reload would send traffic back)
            if svc.exposed_side is not None:  # all traffic on the live side: exposure ends
                svc, _problem = withdraw(store, router, svc, live, command=request.command,
                                         actor=request.actor, reason=request.reason,
                                         run_id=request.run_id, rollback=False)
            marked = (quarantine_standby(store, service, other_side(live), request.quarantine,
                                         request.actor, request.command, request.reason)
                      if request.quarantine is not None else None)
            repaired = reconciled or (
                _live_problem(svc) and _repair(store, router, svc, request))
            note = " (its earlier flip problem is repaired)" if repaired else ""
            return unchanged(marked or f"{service}: {live} is already live; nothing changed"
                             f"{note}", repaired=repaired)
        rollback = request.command in ROLLBACK_COMMANDS and target == svc.rollback_to
        side = _checked_target(store, router, request, svc, live, target, aborted)
        # every check passed: only now are the runs in flight aborted (a refused command
        # aborts nothing), and the intent is journaled in the same lock
        _abort_runs(store, service, request, in_flight)
        if svc.exposed_side is not None:  # the exposure ends first (its own record)
            svc, _problem = withdraw(store, router, svc, live, command=request.command,
                                     actor=request.actor, reason=request.reason,
                                     run_id=request.run_id, rollback=False)
        pending = store.begin_flip(
            service, live, target, command=request.command, actor=request.actor,
            reason=request.reason, run_id=request.run_id, rollback=rollback,
            forced=request.force, expected_generation=side.generation if side else 0,
            quarantine=request.quarantine,
        )
        failpoints.hit("traffic:intent", request.command)
        store.check_still_holding(service)  # a lost session / superseded run moves nothing
        result, incomplete = _flip_router(store, router, request, live, target)
        failpoints.hit("traffic:router", request.command)
        _record(store, router, request, live, target, rollback, pending.id, result, incomplete,
                generation=side.generation if side else 0)
        failpoints.hit("traffic:recorded", request.command)
        if incomplete is not None:
            raise _incomplete_error(service, live, target, incomplete, rollback)
        assert result is not None
        verb = "rolled back" if rollback else "flipped"
        return FlipOutcome(
            service, live, target, True, time.perf_counter() - started,
            f"{service}: {verb} {live} -> {target}", aborted, list(result.confirmed_by),
            recovered, request.force,
        )


def settle(
    store: StateStore, router: Router, service: str, actor: str, *, lock_timeout_s: float = 30.0
) -> Side:
    """The router's live side once the store agrees with it: an interrupted flip is
    completed or cancelled (audited), a first contact recorded; a disagreement raises
    StateMismatch. What a rollout's precheck (and resume) relies on."""
    with store.traffic_lock(service, lock_timeout_s, command="settle"):
        live, _svc, _recovered, _repaired = reconcile(store, router, service, actor, "settle")
    return live


# -- steps of move_traffic ------------------------------------------------------------------


def _runs_in_flight(store: StateStore, service: str, request: FlipRequest) -> list[Run]:
    """The service's unfinished runs (except the request's own), oldest first."""
    return [
        r for r in store.list_runs(service=service)
        if r.status in RESUMABLE_STATUSES and r.run_id != request.run_id
    ]


def _abort_runs(store: StateStore, service: str, request: FlipRequest, runs: list[Run]) -> None:
    """Mark `runs` aborted. Their processes stop at their next boundary and release their
    run lock; it is released here only when its holder is provably dead."""
    if not runs:
        return
    why = f"aborted by `{request.command}` ({request.actor}): {request.reason}"
    for run in runs:
        store.finish_run(run.run_id, "aborted", why)
    lock = store.get_lock(service)
    if lock is not None and lock.run_id in {r.run_id for r in runs} and lock.holder_is_gone():
        store.force_release_lock(
            service, reason=f"{why} (the holder, pid {lock.pid}, is gone)", actor=request.actor
        )


def _checked_target(
    store: StateStore, router: Router, request: FlipRequest, svc: ServiceState, live: Side,
    target: Side, in_flight: str | None,
) -> SideState | None:
    """The target's stored state once it may take traffic now: the gate (unless forced),
    its hosts (the caller's recheck), a server UP at the router, and last the caller's
    `still_allowed` (the maintenance window), each raising before anything changed."""
    service = request.service
    side = store.get_side(service, target)
    kept = f"; traffic stays on {live}" + (
        f"; run {in_flight} was not aborted" if in_flight is not None else "")
    if not request.force:
        refused = gate.refusal(service, target, side, rollback_to=svc.rollback_to,
                               run_in_flight=in_flight)
        if refused is not None:
            raise VerificationFailed(refused.message + kept, hint=refused.hint)
        if request.recheck_hosts is not None:
            request.recheck_hosts(target, dict(side.hosts) if side is not None else {})
    stale = gate.stale_verification(service, target, side, request.verified_generation)
    if stale is not None:
        raise VerificationFailed(stale.message + kept, hint=stale.hint)
    health = router.health(service, target)
    if not health.healthy:
        states = ", ".join(f"{s.name}={s.status}" for s in health.servers) or "no servers"
        raise RouterError(
            f"{service}: no server of {target} is UP at the load balancer ({states}){kept}",
            hint="check the hosts of that side (`bluegreen status`)",
        )
    if request.still_allowed is not None:
        why = request.still_allowed()
        if why:
            raise OutsideWindow(f"{service}: not flipping: {why}{kept}")
    return side


def _has_flipped(store: StateStore, run: Run) -> bool:
    """Did `run` move traffic? Its own records say so (never today's live side, which
    later flips of other runs moved): its flip step ended, or it began and the store
    recorded a flip of this run (a crash between the record and the journal's end)."""
    steps = {(entry.step, entry.phase) for entry in store.journal(run.run_id)}
    if ("flip", "end") in steps:
        return True
    if ("flip", "begin") not in steps:
        return False
    return any(record.command == "rollout.flip" and record.after.get("run_id") == run.run_id
               for record in store.audit_records(run.service))


def _check_run(store: StateStore, run_id: str) -> None:
    run = store.get_run(run_id)
    if run is None:
        raise StateError(f"run {run_id} does not exist; traffic was not moved")
    if run.status == "aborted":
        raise Aborted(f"run {run_id} was aborted ({run.result or 'no reason'}); it moved no "
                      "traffic after that")
    if run.status not in RESUMABLE_STATUSES:
        raise StateError(f"run {run_id} already ended ({run.status}); traffic was not moved")


def _live_problem(svc: ServiceState) -> bool:
    """The live side's own flip problem (not an exposure's: `exposed` persists those)."""
    return svc.flip_problem is not None and not svc.flip_problem.startswith(
        EXPOSURE_NOT_PERSISTED)


def _repair(store: StateStore, router: Router, svc: ServiceState, request: FlipRequest) -> bool:
    """The live side's last flip was not persisted or confirmed: do it again, and clear
    the problem (audited). Failing again: the new problem is recorded and raised."""
    live = svc.live_side
    svc, now = persist_live_again(store, router, svc, request.actor,
                                  f"{request.command}.repair", request.reason)
    if svc.flip_problem is None:
        return True
    where = f"traffic is on {now}" if now is not None else "the router cannot be read"
    raise FlipIncomplete(
        f"{svc.service}: {live} is live, but persisting and confirming it again failed "
        f"({svc.flip_problem}); {where}; recorded as a flip problem",
        persisted=not svc.flip_problem.startswith("not persisted"), confirmed=False,
        hint=f"fix the cause, then `bluegreen flip {svc.service} --to {live} --reason ...`",
    )


def _flip_router(
    store: StateStore, router: Router, request: FlipRequest, live: Side, target: Side
) -> tuple[FlipResult | None, FlipIncomplete | None]:
    """Flip at the router: (result, None), or (None, what is incomplete) when traffic is
    on `target`, read back from the router after the failure (never taken from the
    router's own word). A failure that left (or put back) traffic on `live` cancels the
    intent and raises; a router that cannot be read leaves the intent journaled."""
    service = request.service
    try:
        return router.flip(service, target), None
    except RouterError as exc:
        now, unreadable = read_live(router, service)
        if now == target:  # moved; a lost reply says nothing about persisting
            return None, (exc if isinstance(exc, FlipIncomplete)
                          else FlipIncomplete(exc.message, persisted=False))
        if now == live and isinstance(exc, FlipIncomplete):
            svc = store.get_service(service)
            assert svc is not None
            return None, not_moved(store, router, svc, request.actor, exc)
        if now == live:  # refused before anything changed
            store.cancel_flip(
                service, f"the router refused: {exc.message}",
                audit=AuditEntryInput(
                    actor=request.actor, command=f"{request.command}.failed", service=service,
                    reason=request.reason, result="failed",
                    after={"live": live, "target": target, "error": exc.message},
                ),
            )
            raise
        raise RouterError(
            f"{service}: the flip {live} -> {target} failed ({exc.message}) and the router "
            f"cannot be read now ({unreadable}): traffic may be on either side; the flip's "
            "intent is journaled",
            hint=f"when the load balancer answers again, `bluegreen rollback {service}` or "
            f"`bluegreen flip {service} ...` first completes or cancels the journaled flip",
        ) from exc


def _record(
    store: StateStore,
    router: Router,
    request: FlipRequest,
    live: Side,
    target: Side,
    rollback: bool,
    flip_id: str,
    result: FlipResult | None,
    incomplete: FlipIncomplete | None,
    *,
    generation: int | None = None,
) -> None:
    """Record the flip with its audit record (re-checking that the target is still at the
    `generation` its gate read, and marking a quarantined side left in the same
    transaction); if the store cannot, undo it at the router."""
    after: dict[str, Any] = {"live": target, "flip_id": flip_id, "run_id": request.run_id}
    if result is not None:
        after.update(confirmed_by=result.confirmed_by, flip_seconds=round(result.seconds, 4))
    if incomplete is not None:
        after["problem"] = incomplete.problem
    if request.force:
        after["forced"] = True
    outcome = "incomplete" if incomplete else ("forced" if request.force else "ok")
    try:
        store.record_flip(
            request.service, live, target, rollback=rollback,
            problem=incomplete.problem if incomplete is not None else None,
            expected_generation=generation, quarantine=request.quarantine,
            audit=AuditEntryInput(
                actor=request.actor, command=request.command, service=request.service,
                reason=request.reason, before={"live": live}, after=after, result=outcome,
            ),
        )
    except LocksLost as exc:
        # this process's locks ended with its database session: another process may hold
        # the traffic lock and flip now, so this one touches the router no more; the journaled intent is completed or cancelled by the next
        # traffic command of whoever holds the lock now
        now, unreadable = read_live(router, request.service)
        where = f"traffic is on {now}" if now is not None else f"the router: {unreadable}"
        raise LocksLost(
            f"{request.service}: flipped {live} -> {target} at the router, but {exc.message}; "
            f"{where}; the journaled flip is settled by the next traffic command",
            hint=exc.hint,
        ) from exc
    except StateError as exc:
        raise undo_unrecorded_flip(store, router, request.service, live, target, exc,
                                   actor=request.actor, command=request.command) from exc


def _incomplete_error(
    service: str, live: Side, target: Side, exc: FlipIncomplete, rollback: bool
) -> FlipIncomplete:
    if not exc.persisted:
        what = (f"it is not persisted (a reload or restart of the load balancer would send it "
                f"back to {live})")
    else:
        what = "no request through the frontend confirmed it"
    again = (
        f"`bluegreen rollback {service} --reason ...` again"
        if rollback
        else f"`bluegreen flip {service} --to {target} --reason ...`"
    )
    return FlipIncomplete(
        f"{service}: traffic is on {target}, but {what}: {exc.message}; recorded as a flip "
        "problem",
        persisted=exc.persisted,
        confirmed=exc.confirmed,
        hint=f"fix the cause, then {again} persists and confirms it"
        + ("" if rollback else f" (or `bluegreen rollback {service}` goes back to {live})"),
    )
