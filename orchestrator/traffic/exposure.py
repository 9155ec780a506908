"""Progressive exposure and preview through the safety kernel: `expose_traffic` sends a
share of new requests (1..99 %) to the standby while the live side keeps the rest, or
(0 %) only the requests that carry the preview header (`X-Bluegreen-Preview: 1`) or cookie
(`bluegreen_preview=1`); side
None takes the exposure back. 100 % is not an exposure: the caller flips with
`kernel.move_traffic`, which ends any exposure in the same kernel operation; a rollback
from any step is `move_traffic`'s rollback (the exposure taken back, the exposed side
failed_live, idempotent).

The guarantees of a flip: under the service's traffic lock, after reconciling the store
with the router (an interrupted change completed or cancelled); the target gated like a
flip target (verified at its level, not quarantined nor failed_live, its hosts the
verified ones, a server UP, the caller's window last); the run's epoch checked; the intent
journaled and audited before the router changes; the router sets, reads back and persists
it (a reload keeps the step); recorded with its audit record (the caller's `command`,
e.g. "rollout.step", with the percent) in one transaction. A router failure ends with the
store following the router, read back: nothing changed (cancelled), or the exposure taken
back to the live side and recorded. Imports: as `kernel` (import-light).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import BadInput, FlipIncomplete, RouterError
from orchestrator.routers.base import Exposure, Router, exposing
from orchestrator.sides import Side, other_side
from orchestrator.state.base import StateStore
from orchestrator.state.models import AuditEntryInput, ServiceState
from orchestrator.traffic import failpoints
from orchestrator.traffic.exposed import audit_view, read_exposure, stored_exposure, withdraw
from orchestrator.traffic.kernel import (
    FlipRequest,
    HostRecheck,
    _check_run,
    _checked_target,
)
from orchestrator.traffic.reconcile import reconcile


@dataclass(frozen=True)
class ExposeRequest:
    """Expose `side` (the standby) to `percent` % of new requests (0: preview requests
    only; None side: take the exposure back). `run_id`: the run this step belongs to (its
    epoch must still hold). The gate's inputs as in `kernel.FlipRequest`."""

    service: str
    side: Side | None
    percent: int
    command: str
    reason: str
    actor: str
    run_id: str | None = None
    recheck_hosts: HostRecheck | None = None
    verified_generation: int | None = None
    still_allowed: Callable[[], str | None] | None = None
    lock_timeout_s: float = 30.0


@dataclass(frozen=True)
class ExposeResult:
    """What `expose_traffic` did. `side` None: no exposure now. `changed` False: the
    router already held this exposure."""

    service: str
    live_side: Side
    side: Side | None
    percent: int
    before: Exposure | None
    changed: bool
    seconds: float
    message: str
    confirmed_by: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)

    @property
    def preview(self) -> bool:
        return self.side is not None and self.percent == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "live": self.live_side, "side": self.side,
            "percent": self.percent, "preview": self.preview,
            "before": self.before.as_dict() if self.before else None,
            "changed": self.changed, "seconds": round(self.seconds, 4),
            "message": self.message, "confirmed_by": self.confirmed_by,
            "recovered": self.recovered,
        }


def check_request(request: ExposeRequest) -> None:
    """BadInput for a request that can never be carried out (before any lock)."""
    if not request.reason.strip():
        raise BadInput("--reason is empty", hint="say why, e.g. --reason CHG-1234")
    percent = request.percent
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 99:
        raise BadInput(
            f"{request.service}: exposure percent {percent!r} is not 0..99",
            hint="0 is a preview (only requests with the preview header); 100 % is a flip "
            f"(`bluegreen flip {request.service} --to SIDE`)",
        )
    if request.side is None and percent:
        raise BadInput(f"{request.service}: an exposure of {percent} % needs a side")


def expose_traffic(store: StateStore, router: Router, request: ExposeRequest) -> ExposeResult:
    """Set `request.service`'s exposure; see the module docstring. Raises BadInput,
    LockHeld, StateMismatch, Aborted/Fenced (the run), VerificationFailed (gate, hosts),
    OutsideWindow, RouterError (not done, or the router cannot expose)."""
    started = time.perf_counter()
    check_request(request)
    service = request.service
    if exposing(router) is None and request.side is not None:
        raise RouterError(
            f"{service}: this router cannot expose a share of traffic or a preview",
            hint="progressive steps and preview need the HAProxy router (with the exposure "
            "maps, see the README); without them, bake flips all traffic at once")
    with store.traffic_lock(service, request.lock_timeout_s, command=request.command):
        failpoints.hit("traffic:locked", request.command)
        live, svc, recovered, _repaired = reconcile(store, router, service, request.actor,
                                                    request.command)
        if request.run_id is not None:
            _check_run(store, request.run_id)
        before = stored_exposure(svc)
        wanted = Exposure(request.side, request.percent) if request.side is not None else None

        def result(message: str, changed: bool, confirmed: list[str] | None = None
                   ) -> ExposeResult:
            return ExposeResult(service, live, request.side, request.percent if wanted else 0,
                                before, changed, time.perf_counter() - started, message,
                                confirmed or [], recovered)

        if request.side == live:
            raise BadInput(
                f"{service}: {live} is live: an exposure sends a share of traffic to the "
                f"standby ({other_side(live)})",
                hint=f"expose {other_side(live)}, or flip with `bluegreen flip {service}`")
        if wanted == before:
            return result(f"{service}: {_words(wanted, live)} already; nothing changed", False)
        if wanted is None:
            svc, problem = withdraw(store, router, svc, live, command=request.command,
                                    actor=request.actor, reason=request.reason,
                                    run_id=request.run_id, rollback=False)
            note = f" ({problem})" if problem else ""
            return result(f"{service}: exposure taken back: all traffic on {live}{note}", True)
        return _expose(store, router, request, svc, live, wanted, result)


def _words(exposure: Exposure | None, live: Side) -> str:
    if exposure is None:
        return f"all traffic on {live}"
    if exposure.preview:
        return f"preview requests go to {exposure.side}, all other traffic to {live}"
    return f"{exposure.percent} % of new requests go to {exposure.side}, the rest to {live}"


def _expose(store: StateStore, router: Router, request: ExposeRequest, svc: ServiceState,
            live: Side, wanted: Exposure, result: Callable[..., ExposeResult]) -> ExposeResult:
    service, side = request.service, wanted.side
    before = stored_exposure(svc)
    state = _checked_target(store, router, FlipRequest(
        service=service, command=request.command, reason=request.reason, actor=request.actor,
        to=side, run_id=request.run_id, recheck_hosts=request.recheck_hosts,
        still_allowed=request.still_allowed, verified_generation=request.verified_generation,
    ), svc, live, side, None)
    pending = store.begin_exposure(
        service, live, side, wanted.percent, command=request.command, actor=request.actor,
        reason=request.reason, run_id=request.run_id,
        expected_generation=state.generation if state else 0)
    failpoints.hit("traffic:intent", request.command)
    store.check_still_holding(service)  # a lost session / superseded run moves nothing
    ex = exposing(router)
    assert ex is not None
    try:
        done = ex.expose(service, side, wanted.percent)
    except RouterError as exc:
        _after_failure(store, router, request, svc, live, wanted, exc)
        raise  # _after_failure raises; kept for the type checker
    failpoints.hit("traffic:router", request.command)
    store.record_exposure(service, side, wanted.percent, audit=AuditEntryInput(
        actor=request.actor, command=request.command, service=service, reason=request.reason,
        result="ok", before={"live": live, **audit_view(before)},
        after={"live": live, "exposure": True, **audit_view(wanted), "flip_id": pending.id,
               "run_id": request.run_id, "confirmed_by": done.confirmed_by,
               "seconds": round(done.seconds, 4)}))
    failpoints.hit("traffic:recorded", request.command)
    return result(f"{service}: {_words(wanted, live)}", True, list(done.confirmed_by))


def _after_failure(store: StateStore, router: Router, request: ExposeRequest,
                   svc: ServiceState, live: Side, wanted: Exposure, exc: RouterError) -> None:
    """The router failed the exposure: read it back; unchanged -> the intent cancelled;
    changed (set in memory, not persisted, or the reply lost) -> taken back to the live
    side and recorded as the router holds it. Always raises."""
    service = request.service
    before = stored_exposure(svc)
    now, unreadable = read_exposure(router, service)
    if unreadable is not None:
        raise RouterError(
            f"{service}: exposing {wanted.side} failed ({exc.message}) and the router cannot "
            f"be read now ({unreadable}): its exposure is unknown; the intent is journaled",
            hint="when the load balancer answers again, any traffic command ends it",
        ) from exc
    if now == before:
        store.cancel_flip(service, f"the router refused: {exc.message}", audit=AuditEntryInput(
            actor=request.actor, command=f"{request.command}.failed", service=service,
            reason=request.reason, result="failed",
            after={"live": live, "exposure": True, "target": audit_view(wanted),
                   "error": exc.message}))
        raise exc
    ex = exposing(router)
    assert ex is not None
    problem: str | None = None
    try:
        ex.expose(service, None, 0)
    except FlipIncomplete as again:  # taken back in memory; the maps on disk may differ
        problem = again.message
    except RouterError:
        pass  # read back below: the store records what the router holds
    now, unreadable = read_exposure(router, service)
    if unreadable is not None:
        raise RouterError(
            f"{service}: exposing {wanted.side} failed ({exc.message}), taking it back too, "
            f"and the router cannot be read now ({unreadable}); the intent is journaled",
            hint="when the load balancer answers again, any traffic command ends it",
        ) from exc
    store.record_exposure(
        service, now.side if now else None, now.percent if now else 0,
        persist_problem=problem if now is None else None, audit=AuditEntryInput(
            actor=request.actor, command=f"{request.command}.failed", service=service,
            reason=request.reason, result="failed",
            before={"live": live, **audit_view(before)},
            after={"live": live, "exposure": True, "target": audit_view(wanted),
                   **audit_view(now), "error": exc.message}))
    where = _words(now, live)
    raise RouterError(
        f"{service}: exposing {wanted.side} at {wanted.percent} % failed ({exc.message}); "
        f"it was taken back: {where}",
        hint=exc.hint or "fix the load balancer (its exposure maps), then retry",
    ) from exc
