"""Exposures in SQL: the progressive exposure of a service's standby (a share of new
requests, or only preview requests), journaled like a flip (`begin_exposure`, in the
services row's `pending_flip` with `exposure` set) and recorded with its audit record in
one transaction (`record_exposure`); see `orchestrator.traffic.exposure`."""

from __future__ import annotations

import os
from typing import Any

from orchestrator.errors import StateError
from orchestrator.secrets import scrub
from orchestrator.sides import Side
from orchestrator.state.audit import canonical_json, format_ts
from orchestrator.state.models import (
    EXPOSURE_NOT_PERSISTED,
    AuditEntryInput,
    PendingFlip,
    ServiceState,
)
from orchestrator.state.sql.flips import FlipRows
from orchestrator.state.transitions import step


class ExposureRows(FlipRows):
    """`SideStore`: the exposure part."""

    def begin_exposure(
        self,
        service: str,
        live: Side,
        side: Side | None,
        percent: int,
        *,
        command: str,
        actor: str,
        reason: str,
        run_id: str | None = None,
        rollback: bool = False,
        expected_generation: int | None = None,
    ) -> PendingFlip:
        """Journal an exposure change before the router is touched (audited
        "<command>.begin"): `side` at `percent` (None: cleared; `rollback`: the side exposed
        now becomes failed_live when it is recorded). Refused (StateError) when the store
        does not record `live` as live, another change is pending, `side` changed since the
        gate read it, or the run's epoch no longer holds (Fenced)."""
        now = self._now()
        with self._write() as conn:
            svc = self._may_begin(conn, service, live, run_id, "an exposure")
            target = self._side_row(conn, service, side) if side is not None else None
            generation = target.generation if target else 0
            if side is not None and expected_generation is not None \
                    and generation != expected_generation:
                raise StateError(
                    f"{service}: {side} changed while the exposure was being checked (now "
                    f"{target.state if target else 'untouched'}); traffic was not moved",
                    hint="look at `bluegreen status`, then retry",
                )
            pending = PendingFlip(
                id=os.urandom(6).hex(), from_side=live, to_side=live, command=command,
                actor=actor, reason=scrub(reason), at=now, rollback=rollback, run_id=run_id,
                exposure=True, exposed_side=side, percent=percent,
            )
            conn.execute(
                "UPDATE services SET pending_flip = ?, updated_at = ? WHERE service = ?",
                (canonical_json(pending.as_json()), format_ts(now), service),
            )
            self._touch(conn, "services", service)
            self._audit(
                conn,
                AuditEntryInput(actor=actor, command=f"{command}.begin", service=service,
                                reason=reason, result="started"),
                now,
                service=service,
                before={"live": live, "exposed_side": svc.exposed_side,
                        "percent": svc.exposure_percent},
                after={"exposed_side": side, "percent": percent, "flip_id": pending.id,
                       "run_id": run_id, "rollback": rollback,
                       "target_state": (target.state if target else "untouched")
                       if side is not None else None},
            )
        return pending

    def record_exposure(
        self,
        service: str,
        side: Side | None,
        percent: int,
        *,
        audit: AuditEntryInput,
        rolled_back: Side | None = None,
        kept: str | None = None,
        persist_problem: str | None = None,
    ) -> ServiceState:
        """The router now exposes `side` at `percent` (None: no exposure): record it, end
        the pending change. `rolled_back`: that side (exposed before, it served users) is
        marked failed_live in this same transaction; `kept`: a second rollback finds this
        one done (`rollback_kept`) until the next traffic change. `persist_problem`: the
        exposure maps on disk may differ from memory: recorded as the service's flip
        problem (`EXPOSURE_NOT_PERSISTED`, unless the live side has a flip problem of its
        own); without it, such an exposure problem is cleared."""
        if side is None:
            percent = 0
        now = self._now()
        with self._write() as conn:
            old = self._service_row(conn, service)
            if old is None:
                raise StateError(f"{service}: no such service in {self.location}")
            problem = old.flip_problem
            ours = (problem or "").startswith(EXPOSURE_NOT_PERSISTED)
            if persist_problem is not None and (problem is None or ours):
                problem = EXPOSURE_NOT_PERSISTED + persist_problem
            elif persist_problem is None and ours:
                problem = None
            changes: dict[str, Any] = {"exposed_side": side, "exposure_percent": percent,
                                       "pending_flip": None, "flip_problem": problem,
                                       "rollback_kept": kept if kept is not None or side
                                       is not None else old.rollback_kept}
            extra: dict[str, Any] = {"preview": side is not None and percent == 0}
            if rolled_back is not None:
                left = self._side_row(conn, service, rolled_back)
                extra[f"{rolled_back}_state"] = step(
                    service, rolled_back, left.state if left else "untouched",
                    "rolled_back_from", old).state
            svc = self._change_service(conn, service, now, changes, audit, extra=extra)
            if rolled_back is not None:
                self._transition(conn, service, rolled_back, "rolled_back_from", now, {},
                                 f"rolled back: {audit.reason or audit.command}", None)
            return svc
