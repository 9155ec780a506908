"""Services and their sides in SQL. `SideRows._transition` is the only code that writes the
sides table (a test checks it): every side change is one event of the transition table
(`orchestrator.state.transitions`), a compare-and-set on the side's generation, with its
audit record in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import EllipsisType
from typing import Any

from orchestrator.errors import StateError
from orchestrator.sides import Side
from orchestrator.state.audit import format_ts
from orchestrator.state.models import (
    AuditEntryInput,
    ServiceState,
    SideState,
    SideStateName,
)
from orchestrator.state.sql.database import Connection
from orchestrator.state.sql.fence import Fencing
from orchestrator.state.sql.rows import db_value, service_dump, service_from_row, side_from_row
from orchestrator.state.transitions import Event, changed, step

_FORGET: dict[str, Any] = {
    "patch_level": None, "patched_at": None, "verified_at": None, "verification_ok": None,
    "verified_patch_level": None, "verification_summary": None, "hosts": {},
}
"""Columns a re-image (`reimaged` -> untouched) forgets."""


def _patch_columns(patch_level: str, now: datetime) -> dict[str, Any]:
    """Columns for patching / patched at `patch_level`: host fingerprints are forgotten
    (they were taken at the level before)."""
    return {"patch_level": patch_level, "patched_at": now, "hosts": {}}


class SideRows(Fencing):
    """The services-and-sides part of `SideStore`."""

    def get_service(self, service: str) -> ServiceState | None:
        rows = self._query("SELECT * FROM services WHERE service = ?", (service,))
        return service_from_row(self._checked("services", rows[0])) if rows else None

    def list_services(self) -> list[ServiceState]:
        return [
            service_from_row(r) for r in self._query("SELECT * FROM services ORDER BY service")
        ]

    def set_live_side(
        self, service: str, side: Side | None, *, audit: AuditEntryInput,
        problem: str | None | EllipsisType = ...,
    ) -> ServiceState:
        """Record which side the router now sends traffic to (first contact, `adopt`).
        Records, never decides: the caller checks the router first. Accepting the router's
        view ends a pending flip, and a flip problem when the live side changes. `problem`:
        the live side's flip problem as the caller found it (`adopt` persists the side
        again: None when that worked); `...` keeps the old one while the side stays."""
        now = self._now()
        with self._write() as conn:
            self._check_service_fence(conn, service)  # a run's write: its epoch still holds
            old = self._service_row(conn, service)
            self._ensure_service(conn, service, now)
            if isinstance(problem, EllipsisType):
                # a flip problem described the flip to the side that was live: gone with it
                problem = (old.flip_problem if old is not None and old.live_side == side
                           else None)
            old_problem = old.flip_problem if old is not None else None
            changed_problem = problem != old_problem
            conn.execute(
                "UPDATE services SET flip_problem = ?, live_side = ?, pending_flip = NULL,"
                " rollback_kept = NULL, updated_at = ? WHERE service = ?",
                (problem, side, format_ts(now), service),
            )
            self._touch(conn, "services", service)
            new = self._service_row(conn, service)
            assert new is not None
            self._audit(
                conn,
                audit,
                now,
                service=service,
                before={"live_side": old.live_side if old else None,
                        **({"flip_problem": old_problem} if changed_problem else {})},
                after={"live_side": side,
                       **({"flip_problem": problem} if changed_problem else {})},
            )
        return new

    def get_side(self, service: str, side: Side) -> SideState | None:
        rows = self._query("SELECT * FROM sides WHERE service = ? AND side = ?", (service, side))
        return side_from_row(self._checked("sides", rows[0])) if rows else None

    def begin_patch(
        self, service: str, side: Side, patch_level: str, *, audit: AuditEntryInput
    ) -> SideState:
        """`side` -> patching(patch_level), before Ansible touches it; the returned side's
        `generation` is what `record_patch` expects. A failed or interrupted patch leaves
        it there: not a flip target until patched and verified. The one way out of
        `quarantined` and `failed_live`. Refused (TransitionRefused) for the live side, for
        a side a pending flip moves to, and while the live side's flip is not persisted (a
        reload would send traffic back)."""
        now = self._now()
        with self._write() as conn:
            return self._transition(conn, service, side, "patch_begun", now,
                                    _patch_columns(patch_level, now),
                                    audit.reason or f"patching {patch_level}", audit)

    def record_patch(
        self, service: str, side: Side, patch_level: str, *, expected_generation: int,
        audit: AuditEntryInput,
    ) -> SideState:
        """`side` -> patched(patch_level): it now runs `patch_level`. Its earlier
        verification no longer counts. Refused (SideChanged) when the side is no longer at
        `expected_generation` (what `begin_patch` returned): e.g. it was quarantined
        during the patch, and stays so."""
        now = self._now()
        with self._write() as conn:
            return self._transition(conn, service, side, "patch_done", now,
                                    _patch_columns(patch_level, now),
                                    audit.reason or f"patched {patch_level}", audit,
                                    expected_generation=expected_generation,
                                    during="the patch")

    def restore_untouched(
        self, service: str, side: Side, prior: SideState | None, why: str, *,
        expected_generation: int, audit: AuditEntryInput,
    ) -> SideState:
        """The patch begun at `expected_generation` failed before changing any host (`why`):
        `side` gets back what it had before (`prior`, read before `begin_patch`; None: it had
        no row, so untouched): its state, since-when, reason, level and host fingerprints.
        Refused (SideChanged) when the side moved on since; the audit record says why."""
        now = self._now()
        changes: dict[str, Any] = (
            {"patch_level": prior.patch_level, "patched_at": prior.patched_at,
             "hosts": dict(prior.hosts), "state_since": prior.state_since,
             "state_reason": prior.state_reason}
            if prior is not None else {"patch_level": None, "patched_at": None, "hosts": {},
                                       "state_since": None, "state_reason": None})
        with self._write() as conn:
            return self._transition(
                conn, service, side, "patch_untouched", now, changes, why, audit,
                expected_generation=expected_generation, during="the patch",
                restore=prior.state if prior is not None else "untouched")

    def record_verification(
        self,
        service: str,
        side: Side,
        ok: bool,
        patch_level: str | None,
        summary: str | None,
        *,
        audit: AuditEntryInput,
        hosts: dict[str, str] | None = None,
        expected_generation: int | None = None,
    ) -> SideState:
        """Record a verification of `side`; `patch_level` is the level the probes saw.

        With `expected_generation` (the side's generation read when the verification
        began), a side that changed meanwhile is not recorded: SideChanged. A pass moves an
        untouched, patched, verified or verify_failed side to verified(patch_level) with
        `hosts`; a failure moves it to verify_failed. `patching`, `failed_live` and
        `quarantined` keep their state (the result is still stored and audited). The
        returned `generation` is what a flip that relies on this verification passes."""
        now = self._now()
        changes: dict[str, Any] = {
            "verified_at": now,
            "verification_ok": ok,
            "verified_patch_level": patch_level,
            "verification_summary": summary,
            "hosts": dict(hosts or {}) if ok else {},
        }
        with self._write() as conn:
            return self._transition(
                conn, service, side, "verified_ok" if ok else "verified_failed", now, changes,
                summary, audit, expected_generation=expected_generation,
                during="the verification",
                hint=f"verify again: `bluegreen verify {service} --side {side}`",
            )

    def quarantine(
        self, service: str, side: Side, reason: str, *, audit: AuditEntryInput
    ) -> SideState:
        """Mark the standby `side` quarantined (TransitionRefused for the live side: the
        flip that takes traffic away marks it, `record_flip(quarantine=...)`). The caller
        holds the service's traffic lock (`orchestrator.traffic.quarantine`)."""
        now = self._now()
        with self._write() as conn:
            return self._transition(conn, service, side, "quarantined", now, {}, reason, audit)

    def reset_service(
        self,
        service: str,
        live_side: Side,
        sides: Sequence[Side],
        reason: str,
        *,
        audit: AuditEntryInput,
    ) -> ServiceState:
        """The hosts of `sides` were re-imaged and the router sends traffic to `live_side`
        (the lab's `reset`): those sides become untouched, no earlier flip is left to roll
        back to; one transaction, one audit record."""
        now = self._now()
        with self._write() as conn:
            self._ensure_service(conn, service, now)
            states = {
                side: self._transition(conn, service, side, "reimaged", now, dict(_FORGET),
                                       reason, None).state
                for side in sides
            }
            return self._change_service(
                conn, service, now,
                {"live_side": live_side, "rollback_to": None, "flip_problem": None,
                 "pending_flip": None, "rollback_kept": None, "exposed_side": None,
                 "exposure_percent": 0},
                audit, extra={"sides": states},
            )

    # -- rows inside a transaction ------------------------------------------------------------

    def _service_row(self, conn: Connection, service: str) -> ServiceState | None:
        row = conn.execute("SELECT * FROM services WHERE service = ?", (service,)).fetchone()
        return service_from_row(self._checked("services", row)) if row else None

    def _side_row(self, conn: Connection, service: str, side: Side) -> SideState | None:
        row = conn.execute(
            "SELECT * FROM sides WHERE service = ? AND side = ?", (service, side)
        ).fetchone()
        return side_from_row(self._checked("sides", row)) if row else None

    def _change_service(
        self,
        conn: Connection,
        service: str,
        now: datetime,
        changes: dict[str, Any],
        audit: AuditEntryInput,
        *,
        extra: dict[str, Any] | None = None,
    ) -> ServiceState:
        """Apply `changes` (column -> value) to an existing service row and audit it,
        before and after, plus `extra` in the record's `after`. A run's write (this store
        holds the service's run lock) is refused once its epoch moved on (`fence`)."""
        self._check_service_fence(conn, service)
        old = self._service_row(conn, service)
        if old is None:
            raise StateError(f"{service}: no such service in {self.location}")
        columns = {**changes, "updated_at": now}
        conn.execute(
            f"UPDATE services SET {', '.join(f'{c} = ?' for c in columns)} WHERE service = ?",
            (*(db_value(v) for v in columns.values()), service),
        )
        self._touch(conn, "services", service)
        new = self._service_row(conn, service)
        assert new is not None
        self._audit(conn, audit, now, service=service, before=service_dump(old),
                    after={**service_dump(new), **(extra or {})})
        return new

    def _ensure_service(self, conn: Connection, service: str, now: datetime) -> None:
        inserted = conn.execute(
            "INSERT INTO services (service, live_side, updated_at) VALUES (?, NULL, ?)"
            " ON CONFLICT (service) DO NOTHING",
            (service, format_ts(now)),
        )
        if inserted.rowcount == 1:  # a new row (never re-seal one this did not check)
            self._touch(conn, "services", service)

    def _transition(
        self,
        conn: Connection,
        service: str,
        side: Side,
        event: Event,
        now: datetime,
        changes: dict[str, Any],
        reason: str | None,
        audit: AuditEntryInput | None,
        *,
        expected_generation: int | None = None,
        during: str = "this command",
        hint: str | None = None,
        restore: SideStateName | None = None,
    ) -> SideState:
        """THE one write of the sides table: `event` applied to `side` by the transition
        table (`orchestrator.state.transitions`), with `changes` (column -> value), as a
        compare-and-set on the side's generation (+ 1). Refused, nothing written:
        SideChanged when the side is no longer at `expected_generation` (or another writer
        moved it within this transaction), TransitionRefused when the table or a guard
        says no. Audited (before and after) unless the caller audits the whole transaction
        itself (audit=None). A move sets state, since and `reason`; a kept state keeps
        them and its host fingerprints."""
        SideState(service=service, side=side)  # validates `side` before touching the file
        self._check_service_fence(conn, service)  # a run's write: refused once superseded
        self._ensure_service(conn, service, now)
        inserted = conn.execute(
            "INSERT INTO sides (service, side) VALUES (?, ?) ON CONFLICT (service, side)"
            " DO NOTHING",
            (service, side),
        )
        if inserted.rowcount == 1:
            self._touch(conn, "sides", service, side)
        old = self._side_row(conn, service, side)
        assert old is not None
        if expected_generation is not None and old.generation != expected_generation:
            raise changed(service, side, expected_generation, old.generation, old.state,
                          old.state_reason, during=during, hint=hint)
        moved = step(service, side, old.state, event, self._service_row(conn, service),
                     restore=restore)
        columns = dict(changes)
        if moved.moved:  # `changes` may restore since and reason (`patch_untouched`)
            columns = {"state": moved.state, "state_since": now, "state_reason": reason,
                       **changes}
        else:
            columns.pop("hosts", None)
        columns["generation"] = old.generation + 1
        assignments = ", ".join(f"{name} = ?" for name in columns)
        written = conn.execute(
            f"UPDATE sides SET {assignments} WHERE service = ? AND side = ? AND generation = ?",
            (*(db_value(v) for v in columns.values()), service, side, old.generation),
        )
        if written.rowcount != 1:  # a concurrent writer the transaction did not serialize
            now_row = self._side_row(conn, service, side)
            raise changed(service, side, old.generation,
                          now_row.generation if now_row else -1,
                          now_row.state if now_row else old.state,
                          now_row.state_reason if now_row else None, during="this write")
        self._touch(conn, "sides", service, side)
        new = self._side_row(conn, service, side)
        assert new is not None
        if audit is not None:
            self._audit(
                conn,
                audit,
                now,
                service=service,
                before=old.as_json(exclude={"service"}),
                after={**new.as_json(exclude={"service"}), "event": event},
            )
        return new
