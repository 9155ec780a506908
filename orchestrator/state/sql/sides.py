"""Services and their sides in SQL: the side state machine (patching -> patched ->
verified | verify_failed, failed_live, quarantined, untouched), each change with its
audit record in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
from orchestrator.state.sql.chain import AuditChain
from orchestrator.state.sql.database import Connection
from orchestrator.state.sql.rows import db_value, service_dump, service_from_row, side_from_row

_VERIFIABLE = frozenset({"untouched", "patched", "verified", "verify_failed"})
"""Side states a verification moves (to verified or verify_failed); the others keep theirs."""


def state_change(
    state: SideStateName, reason: str, now: datetime, *, forget: bool | None = None
) -> dict[str, Any]:
    """Columns for a plain state change; `untouched` also forgets patch and verification."""
    changes: dict[str, Any] = {"state": state, "state_since": now, "state_reason": reason}
    if forget is None:
        forget = state == "untouched"
    if forget:
        changes.update(
            patch_level=None,
            patched_at=None,
            verified_at=None,
            verification_ok=None,
            verified_patch_level=None,
            verification_summary=None,
            hosts={},
        )
    return changes


def _patch_change(
    state: SideStateName, patch_level: str, reason: str | None, now: datetime
) -> dict[str, Any]:
    """Columns for patching / patched at `patch_level`: host fingerprints are forgotten
    (they were taken at the level before)."""
    return {
        "state": state,
        "state_since": now,
        "state_reason": reason or f"{state} {patch_level}",
        "patch_level": patch_level,
        "patched_at": now,
        "hosts": {},
    }


def _refuse_patch(service: str, side: Side, svc: ServiceState | None) -> None:
    """StateError when `side` may not be patched now (see `begin_patch`)."""
    if svc is None:
        return
    if svc.live_side == side:
        raise StateError(
            f"{service}: refusing to patch {side}: the state store records it as the "
            "live side",
            hint="only the standby is patched; check `bluegreen status`",
        )
    if svc.pending_flip is not None:
        pending = svc.pending_flip
        raise StateError(
            f"{service}: refusing to patch {side}: a flip {pending.from_side} -> "
            f"{pending.to_side} ({pending.command}) is in progress",
            hint="retry when it is done; `bluegreen status` shows it",
        )
    if (svc.flip_problem or "").startswith("not persisted"):
        # the map on disk still sends traffic to the other side: a reload of the
        # load balancer during the patch would put traffic on the hosts Ansible changes
        raise StateError(
            f"{service}: refusing to patch {side}: the flip to {svc.live_side} is not "
            f"persisted at the load balancer ({svc.flip_problem}); a reload would send "
            f"traffic back to {side}",
            hint=f"persist it first: `bluegreen flip {service} --to {svc.live_side} "
            "--reason ...`",
        )


class SideRows(AuditChain):
    """The services-and-sides part of `SideStore`."""

    def get_service(self, service: str) -> ServiceState | None:
        rows = self._query("SELECT * FROM services WHERE service = ?", (service,))
        return service_from_row(rows[0]) if rows else None

    def list_services(self) -> list[ServiceState]:
        return [
            service_from_row(r) for r in self._query("SELECT * FROM services ORDER BY service")
        ]

    def set_live_side(
        self, service: str, side: Side | None, *, audit: AuditEntryInput
    ) -> ServiceState:
        """Record which side the router now sends traffic to (first contact, `adopt`).
        Records, never decides: the caller checks the router first. Accepting the router's
        view ends a pending flip, and a flip problem when the live side changes."""
        now = self._now()
        with self._write() as conn:
            old = self._service_row(conn, service)
            self._ensure_service(conn, service, now)
            # a flip problem described the flip to the side that was live: gone with it
            problem = old.flip_problem if old is not None and old.live_side == side else None
            conn.execute(
                "UPDATE services SET flip_problem = ?, live_side = ?, pending_flip = NULL,"
                " rollback_kept = NULL, updated_at = ? WHERE service = ?",
                (problem, side, format_ts(now), service),
            )
            new = self._service_row(conn, service)
            assert new is not None
            self._audit(
                conn,
                audit,
                now,
                service=service,
                before={"live_side": old.live_side if old else None},
                after={"live_side": side},
            )
        return new

    def get_side(self, service: str, side: Side) -> SideState | None:
        rows = self._query("SELECT * FROM sides WHERE service = ? AND side = ?", (service, side))
        return side_from_row(rows[0]) if rows else None

    def begin_patch(
        self, service: str, side: Side, patch_level: str, *, audit: AuditEntryInput
    ) -> SideState:
        """`side` -> patching(patch_level), before Ansible touches it. A failed or
        interrupted patch leaves it there: not a flip target until patched and verified.
        Refused (StateError) for the live side, for a side a pending flip moves to, and
        while the live side's flip is not persisted (a reload would send traffic back)."""
        now = self._now()
        with self._write() as conn:
            _refuse_patch(service, side, self._service_row(conn, service))
            changes = _patch_change("patching", patch_level, audit.reason, now)
            return self._change_side(conn, service, side, now, changes, audit)

    def record_patch(
        self, service: str, side: Side, patch_level: str, *, audit: AuditEntryInput
    ) -> SideState:
        """`side` -> patched(patch_level): it now runs `patch_level`. Its earlier
        verification no longer counts."""
        now = self._now()
        changes = _patch_change("patched", patch_level, audit.reason, now)
        with self._write() as conn:
            return self._change_side(conn, service, side, now, changes, audit)

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
        began), a side that changed meanwhile is not recorded: StateError. A pass moves an
        untouched, patched, verified or verify_failed side to verified(patch_level) with
        `hosts`; a failure moves it to verify_failed. `patching`, `failed_live` and
        `quarantined` keep their state (the result is still stored and audited)."""
        now = self._now()
        with self._write() as conn:
            old = self._side_row(conn, service, side)
            generation = old.generation if old else 0
            if expected_generation is not None and generation != expected_generation:
                state = old.state if old else "untouched"
                raise StateError(
                    f"{service}: {side} changed during the verification (now {state}, "
                    f"generation {generation}, the verification began at {expected_generation}):"
                    " not recorded",
                    hint=f"verify again: `bluegreen verify {service} --side {side}`",
                )
            changes: dict[str, Any] = {
                "verified_at": now,
                "verification_ok": ok,
                "verified_patch_level": patch_level,
                "verification_summary": summary,
            }
            if (old.state if old else "untouched") in _VERIFIABLE:
                changes.update(
                    state="verified" if ok else "verify_failed",
                    state_since=now,
                    state_reason=summary,
                    hosts=dict(hosts or {}) if ok else {},
                )
            return self._change_side(conn, service, side, now, changes, audit)

    def set_side_state(
        self,
        service: str,
        side: Side,
        state: SideStateName,
        reason: str,
        *,
        audit: AuditEntryInput,
    ) -> SideState:
        """An operator's or the lab's decision about a side (e.g. `quarantined`). Setting
        `untouched` (the hosts were re-imaged) also forgets its patch, verification and
        host fingerprints."""
        now = self._now()
        with self._write() as conn:
            return self._change_side(conn, service, side, now, state_change(state, reason, now),
                                     audit)

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
                side: self._change_side(
                    conn, service, side, now, state_change("untouched", reason, now), None
                ).state
                for side in sides
            }
            return self._change_service(
                conn, service, now,
                {"live_side": live_side, "rollback_to": None, "flip_problem": None,
                 "pending_flip": None, "rollback_kept": None},
                audit, extra={"sides": states},
            )

    # -- rows inside a transaction ------------------------------------------------------------

    def _service_row(self, conn: Connection, service: str) -> ServiceState | None:
        row = conn.execute("SELECT * FROM services WHERE service = ?", (service,)).fetchone()
        return service_from_row(row) if row else None

    def _side_row(self, conn: Connection, service: str, side: Side) -> SideState | None:
        row = conn.execute(
            "SELECT * FROM sides WHERE service = ? AND side = ?", (service, side)
        ).fetchone()
        return side_from_row(row) if row else None

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
        before and after, plus `extra` in the record's `after`."""
        old = self._service_row(conn, service)
        if old is None:
            raise StateError(f"{service}: no such service in {self.location}")
        columns = {**changes, "updated_at": now}
        conn.execute(
            f"UPDATE services SET {', '.join(f'{c} = ?' for c in columns)} WHERE service = ?",
            (*(db_value(v) for v in columns.values()), service),
        )
        new = self._service_row(conn, service)
        assert new is not None
        self._audit(conn, audit, now, service=service, before=service_dump(old),
                    after={**service_dump(new), **(extra or {})})
        return new

    def _ensure_service(self, conn: Connection, service: str, now: datetime) -> None:
        conn.execute(
            "INSERT INTO services (service, live_side, updated_at) VALUES (?, NULL, ?)"
            " ON CONFLICT (service) DO NOTHING",
            (service, format_ts(now)),
        )

    def _change_side(
        self,
        conn: Connection,
        service: str,
        side: Side,
        now: datetime,
        changes: dict[str, Any],
        audit: AuditEntryInput | None,
    ) -> SideState:
        """Apply `changes` to one side, generation + 1, and audit it (unless the caller
        audits the whole transaction itself: audit=None)."""
        SideState(service=service, side=side)  # validates `side` before touching the file
        self._ensure_service(conn, service, now)
        conn.execute(
            "INSERT INTO sides (service, side) VALUES (?, ?) ON CONFLICT (service, side)"
            " DO NOTHING",
            (service, side),
        )
        old = self._side_row(conn, service, side)
        assert old is not None
        columns = {**changes, "generation": old.generation + 1}
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"UPDATE sides SET {assignments} WHERE service = ? AND side = ?",
            (*(db_value(v) for v in columns.values()), service, side),
        )
        new = self._side_row(conn, service, side)
        assert new is not None
        if audit is not None:
            self._audit(
                conn,
                audit,
                now,
                service=service,
                before=old.as_json(exclude={"service"}),
                after=new.as_json(exclude={"service"}),
            )
        return new
