"""Flips in SQL: the traffic kernel's journal (`orchestrator.traffic.kernel`): a flip is
begun (journaled and audited before the router is touched), then recorded, cancelled, or
left with a problem the next traffic command or an operator resolves."""

from __future__ import annotations

import os
from typing import Any

from orchestrator.errors import StateError
from orchestrator.secrets import scrub
from orchestrator.sides import Side
from orchestrator.state.audit import canonical_json, format_ts
from orchestrator.state.models import AuditEntryInput, PendingFlip, ServiceState
from orchestrator.state.sql.database import Connection
from orchestrator.state.sql.sides import SideRows
from orchestrator.state.transitions import Event, changed, step


class FlipRows(SideRows):
    """`SideStore`: services and sides, and the flips between them."""

    def begin_flip(
        self,
        service: str,
        from_side: Side,
        to_side: Side,
        *,
        command: str,
        actor: str,
        reason: str,
        run_id: str | None = None,
        rollback: bool = False,
        forced: bool = False,
        expected_generation: int | None = None,
        quarantine: str | None = None,
    ) -> PendingFlip:
        """Journal a flip before the router is touched (audited "<command>.begin").

        Refused (StateError) when the store does not record `from_side` as live, another
        flip is pending, or `to_side` changed since the gate read it (its generation is no
        longer `expected_generation`)."""
        now = self._now()
        pending = PendingFlip(
            id=os.urandom(6).hex(),
            from_side=from_side,
            to_side=to_side,
            command=command,
            actor=actor,
            reason=scrub(reason),
            at=now,
            rollback=rollback,
            run_id=run_id,
            forced=forced,
            quarantine=scrub(quarantine) if quarantine else None,
        )
        with self._write() as conn:
            svc = self._may_begin(conn, service, from_side, run_id, "a flip")
            target = self._side_row(conn, service, to_side)
            generation = target.generation if target else 0
            if expected_generation is not None and generation != expected_generation:
                raise StateError(
                    f"{service}: {to_side} changed while the flip was being checked (now "
                    f"{target.state if target else 'untouched'}); traffic was not moved",
                    hint="look at `bluegreen status`, then retry",
                )
            conn.execute(
                "UPDATE services SET pending_flip = ?, updated_at = ? WHERE service = ?",
                (canonical_json(pending.as_json()), format_ts(now), service),
            )
            self._touch(conn, "services", service)
            entry = AuditEntryInput(
                actor=actor,
                command=f"{command}.begin",
                service=service,
                reason=reason,
                result="started",
            )
            self._audit(
                conn,
                entry,
                now,
                service=service,
                before={"live": from_side, "rollback_to": svc.rollback_to},
                after={"target": to_side, "flip_id": pending.id, "run_id": run_id,
                       "forced": forced, "target_state": target.state if target else "untouched"},
            )
        return pending

    def _may_begin(self, conn: Connection, service: str, live: Side, run_id: str | None,
                   what: str) -> ServiceState:
        """The service row, when a traffic change (`what`) from `live` may be journaled:
        a run's change only while its epoch holds (and, on PostgreSQL, its session still
        holds the lock): the last check before the router changes; the store records
        `live` as live; nothing else is pending. StateError (Fenced) otherwise."""
        self._check_service_fence(conn, service)
        if run_id is not None:
            self._check_run_fence(conn, run_id)
        svc = self._service_row(conn, service)
        if svc is None or svc.live_side != live:
            raise StateError(
                f"{service}: cannot begin {what} from {live}: the state store records "
                f"{svc.live_side if svc else None} as live",
                hint=f"run `bluegreen status {service}`",
            )
        if svc.pending_flip is not None:
            other = svc.pending_flip
            raise StateError(
                f"{service}: another flip is pending ({other.command} {other.from_side} -> "
                f"{other.to_side} by {other.actor} at {format_ts(other.at)})",
                hint="the next traffic command completes or cancels it; retry",
            )
        return svc

    def record_flip(
        self,
        service: str,
        from_side: Side,
        to_side: Side,
        *,
        rollback: bool,
        problem: str | None,
        audit: AuditEntryInput,
        expected_generation: int | None = None,
        quarantine: str | None = None,
    ) -> ServiceState:
        """The router now sends all traffic to `to_side` (no exposure left: the kernel
        cleared it before the flip): record it, end the pending flip and set (or clear)
        `flip_problem`. A forward flip makes `from_side` the rollback
        target; a rollback keeps the rollback target and marks `from_side` failed_live.
        `quarantine` (a reason): `from_side` is marked quarantined in this same
        transaction. With `expected_generation` (what the gate read), a target that changed
        since is not recorded (SideChanged): the kernel then undoes the flip."""
        now = self._now()
        with self._write() as conn:
            self._ensure_service(conn, service, now)
            old = self._service_row(conn, service)
            assert old is not None
            target = self._side_row(conn, service, to_side)
            generation = target.generation if target is not None else 0
            if expected_generation is not None and generation != expected_generation:
                assert target is not None
                raise changed(service, to_side, expected_generation, generation, target.state,
                              target.state_reason, during="the flip (since its gate)")
            changes = {"live_side": to_side, "flip_problem": problem, "pending_flip": None,
                       "rollback_kept": None, "exposed_side": None, "exposure_percent": 0,
                       "rollback_to": old.rollback_to if rollback else from_side}
            event: Event | None = None
            if from_side != to_side:
                event = "quarantined" if quarantine else "rolled_back_from" if rollback else None
            extra: dict[str, Any] = {}
            if event is not None:  # the side left: its new state, in the service's record
                left = self._side_row(conn, service, from_side)
                extra[f"{from_side}_state"] = step(
                    service, from_side, left.state if left else "untouched", event,
                    None).state
            svc = self._change_service(conn, service, now, changes, audit, extra=extra)
            if event is not None:  # after the service row: `from_side` is no longer live
                why = quarantine or f"rolled back: {audit.reason or audit.command}"
                self._transition(conn, service, from_side, event, now, {}, why, None)
            return svc

    def cancel_flip(self, service: str, why: str, *, audit: AuditEntryInput) -> ServiceState:
        """End a pending flip that did not change the router (audited with `why`)."""
        now = self._now()
        with self._write() as conn:
            return self._change_service(conn, service, now, {"pending_flip": None}, audit,
                                        extra={"why": why})

    def keep_after_rollback(
        self, service: str, why: str, *, audit: AuditEntryInput
    ) -> ServiceState:
        """A rollback was answered without a flip (it aborted a run that had not flipped
        yet, traffic stays): a second rollback finds it done (`rollback_kept`) until the
        next flip, adopt or reset."""
        now = self._now()
        with self._write() as conn:
            return self._change_service(conn, service, now, {"rollback_kept": why}, audit)

    def set_flip_problem(
        self, service: str, problem: str | None, *, audit: AuditEntryInput
    ) -> ServiceState:
        """Set or clear (None) what is wrong with the last flip (e.g. re-persisted)."""
        now = self._now()
        with self._write() as conn:
            return self._change_service(conn, service, now, {"flip_problem": problem}, audit)
