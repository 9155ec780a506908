"""The state store contract: what the engine, rollback and the CLI may ask of any backend.

Four small Protocols (`SideStore`, `RunStore`, `LockStore`, `AuditStore`) composed into
`StateStore`. A backend (SQLite today, a server database later) is a new package
implementing them (the SQL they share is in `orchestrator.state.sql`); nothing in the
engine changes. Rules every backend must keep:

- Every method that changes state appends its audit record in the same transaction as
  the change: when the method returns, both are durable; when it raises, neither is.
- Failures to read or write raise `orchestrator.errors.StateError` (naming the store and a
  fix); a held lock raises `LockHeld`; an audit log that cannot be extended raises
  `AuditBroken`. Backends never guess or silently repair.
- Records are keyed (HMAC under a key outside the store) and carry the writer's OS
  identity; a backend refuses to extend a chain whose head does not verify.
- Secrets are redacted (`orchestrator.state.audit.redact`) in params, journal data and
  audit before/after before storing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from types import EllipsisType
from typing import Any, Protocol

from orchestrator.sides import Side
from orchestrator.state.audit import AuditHead
from orchestrator.state.audit_verify import ChainReport, WitnessHead
from orchestrator.state.models import (
    AuditEntryInput,
    AuditRecord,
    JournalEntry,
    LockHolder,
    LockInfo,
    PendingFlip,
    Run,
    RunStatus,
    ServiceState,
    SideState,
)


class SideStore(Protocol):
    """Services and their sides, and the flips between them. Every side change is one
    event of `orchestrator.state.transitions` (a compare-and-set on the side's
    generation): there is no generic "set state"."""

    def get_service(self, service: str) -> ServiceState | None: ...
    def list_services(self) -> list[ServiceState]: ...
    def set_live_side(
        self, service: str, side: Side | None, *, audit: AuditEntryInput,
        problem: str | None | EllipsisType = ...,
    ) -> ServiceState: ...
    def get_side(self, service: str, side: Side) -> SideState | None: ...
    def begin_patch(
        self, service: str, side: Side, patch_level: str, *, audit: AuditEntryInput
    ) -> SideState: ...
    def record_patch(
        self, service: str, side: Side, patch_level: str, *, expected_generation: int,
        audit: AuditEntryInput,
    ) -> SideState: ...
    def restore_untouched(
        self, service: str, side: Side, prior: SideState | None, why: str, *,
        expected_generation: int, audit: AuditEntryInput,
    ) -> SideState: ...
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
    ) -> SideState: ...
    def quarantine(
        self, service: str, side: Side, reason: str, *, audit: AuditEntryInput
    ) -> SideState: ...
    def reset_service(
        self, service: str, live_side: Side, sides: Sequence[Side], reason: str, *,
        audit: AuditEntryInput,
    ) -> ServiceState: ...

    # flips: the traffic kernel's journal (orchestrator.traffic.kernel)
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
    ) -> PendingFlip: ...
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
    ) -> ServiceState: ...
    def cancel_flip(self, service: str, why: str, *, audit: AuditEntryInput) -> ServiceState: ...
    def set_flip_problem(
        self, service: str, problem: str | None, *, audit: AuditEntryInput
    ) -> ServiceState: ...
    def keep_after_rollback(
        self, service: str, why: str, *, audit: AuditEntryInput
    ) -> ServiceState: ...

    # exposures: a share of traffic on the standby (orchestrator.traffic.exposure)
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
    ) -> PendingFlip: ...
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
    ) -> ServiceState: ...


class LockStore(Protocol):
    """The run lock (one run per service) and the short traffic lock per service."""

    def acquire_lock(
        self, service: str, run_id: str, holder: LockHolder | None = None
    ) -> LockInfo: ...
    def release_lock(self, service: str, run_id: str) -> bool: ...
    def force_release_lock(
        self, service: str, reason: str, actor: str, *, end_holder: bool = False
    ) -> LockInfo | None:
        """Free a lock whose holder is provably gone; a live holder keeps it (LockHeld)
        unless `end_holder` ends a hung one (`unlock`; see each backend)."""
        ...
    def fence_of(self, run_id: str) -> tuple[str, int] | None:
        """(lock, epoch) this store object took for `run_id`: its writes for the run are
        refused (`Fenced`) once a newer epoch exists. None: it holds no lock for it."""
        ...
    def check_still_holding(self, service: str) -> None:
        """Right before a change outside the store (the router): refuse (`Fenced`) when
        this store lost what it holds for `service`: the run lock it took (a newer epoch,
        freed, its run ended by someone else) or, on PostgreSQL, its session (and with it
        its advisory locks: traffic and run). One read; nothing changes."""
        ...
    def get_lock(self, service: str) -> LockInfo | None: ...
    def traffic_lock(
        self, service: str, timeout_s: float = 30.0, *, command: str = "traffic"
    ) -> AbstractContextManager[None]:
        """Short per-service lock around every traffic change (separate from the run lock);
        released when the holder ends, also when it is killed. LockHeld after `timeout_s`."""
        ...


class RunStore(Protocol):
    """Runs and their journal (what a killed run resumes from)."""

    def create_run(
        self,
        run_id: str,
        kind: str,
        service: str | None,
        params: dict[str, Any],
        actor: str,
        *,
        reason: str | None = None,
        exclusive_of: Mapping[str, Any] | None = None,
    ) -> Run: ...
    def get_run(self, run_id: str) -> Run | None: ...
    def list_runs(
        self, service: str | None = None, status: RunStatus | None = None
    ) -> list[Run]: ...
    def finish_run(self, run_id: str, status: RunStatus, result: str | None) -> Run: ...
    def latest_unfinished_run(self, service: str) -> Run | None: ...
    def journal_begin(
        self, run_id: str, step: str, data: dict[str, Any] | None = None
    ) -> JournalEntry: ...
    def journal_end(
        self, run_id: str, step: str, data: dict[str, Any] | None = None
    ) -> JournalEntry: ...
    def journal(self, run_id: str) -> list[JournalEntry]: ...
    def last_finished_step(self, run_id: str) -> str | None: ...


class AuditStore(Protocol):
    """The tamper-evident audit chain."""

    def audit_append(self, entry: AuditEntryInput) -> AuditRecord: ...
    def audit_records(
        self, service: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]: ...
    def audit_head(self) -> AuditHead: ...
    def verify_audit(
        self, witnesses: Sequence[WitnessHead] = (), witness_sources: Sequence[str] = ()
    ) -> ChainReport:
        """Every record's hash, MAC and link, the stored head, and `witnesses` (heads seen
        outside the store). Never raises for a broken chain."""
        ...
    @property
    def appended(self) -> AuditHead | None:
        """The head after the newest record this store object appended, or None."""
        ...


class TransferStore(Protocol):
    """Every row out and in, as stored (`bluegreen state copy`, see `sql/transfer.py`)."""

    def dump(self) -> tuple[dict[str, list[tuple[Any, ...]]], tuple[int, str, str | None]]: ...
    def load(self, rows: dict[str, list[tuple[Any, ...]]], head: tuple[int, str, str | None],
             *, audit: AuditEntryInput) -> None: ...


class StateStore(SideStore, RunStore, LockStore, AuditStore, TransferStore, Protocol):
    """Services, sides, runs with their journal, service locks, and the audit chain."""

    def close(self) -> None: ...
