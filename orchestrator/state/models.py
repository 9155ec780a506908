"""Typed records of the state store. Every record is a frozen pydantic model.

All timestamps are timezone-aware and normalised to UTC; a naive datetime is rejected.
`AuditEntryInput` is what a caller passes to describe *why* a state change happens; the
store turns it into an `AuditRecord` (with seq, time and hashes) inside the same
transaction as the change itself.
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from orchestrator.sides import Side


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware datetime, converted to UTC on validation."""

RunStatus = Literal["running", "done", "failed", "aborted", "rolled_back", "deferred"]
RESUMABLE_STATUSES: tuple[RunStatus, ...] = ("running", "deferred")
"""Runs in these states may still get journal entries and be finished or resumed."""

JournalPhase = Literal["begin", "end"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ServiceState(_Record):
    """A service and the side the store last recorded as live (None: never flipped)."""

    service: str
    live_side: Side | None
    updated_at: UtcDatetime


class SideState(_Record):
    """One side of a service: its patch level and its last verification."""

    service: str
    side: Side
    patch_level: str | None = None
    """Free text, e.g. "demo-web=1.0.1,demo-openssl=3.0.15-1"."""
    patched_at: UtcDatetime | None = None
    verified_at: UtcDatetime | None = None
    verification_ok: bool | None = None
    verified_patch_level: str | None = None
    verification_summary: str | None = None

    @property
    def verified_after_patch(self) -> bool:
        """True only if the last verification passed, is not older than the last patch,
        and checked the patch level the side has now. Traffic may only move to such a side."""
        if self.verification_ok is not True or self.verified_at is None:
            return False
        if self.patched_at is not None and self.verified_at < self.patched_at:
            return False
        return self.verified_patch_level == self.patch_level


class Run(_Record):
    """One rollout, campaign or other long operation. `params` are stored redacted."""

    run_id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    """e.g. "rollout", "campaign"."""
    service: str | None
    status: RunStatus
    params: dict[str, Any]
    actor: str
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    result: str | None = None


class JournalEntry(_Record):
    """A step boundary of a run; `seq` counts from 1 per run, in write order."""

    run_id: str
    seq: int
    step: str
    phase: JournalPhase
    data: dict[str, Any]
    at: UtcDatetime


class LockHolder(_Record):
    """Who takes a lock. `LockHolder.current()` describes this process."""

    holder: str = Field(min_length=1)
    """user@hostname"""
    pid: int
    hostname: str = Field(min_length=1)

    @classmethod
    def current(cls) -> LockHolder:
        hostname = socket.gethostname()
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry / no login name (containers)
            user = str(os.getuid())
        return cls(holder=f"{user}@{hostname}", pid=os.getpid(), hostname=hostname)


class LockInfo(_Record):
    """A held service lock."""

    service: str
    run_id: str
    holder: str
    pid: int
    hostname: str
    acquired_at: UtcDatetime


class AuditEntryInput(_Record):
    """What a caller says about a change: who, which command, why, and the outcome.

    `before`/`after` may carry extra context; for methods that change a record the store
    adds its own snapshot of that record under the keys it owns (its values win).
    Values under secret-looking keys are replaced by "***" before storing (see `redact`).
    """

    actor: str = Field(min_length=1)
    command: str = Field(min_length=1)
    service: str | None = None
    reason: str | None = None
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    result: str = "ok"


class AuditRecord(_Record):
    """One link of the audit chain. `hash` covers every other field, `prev_hash` included."""

    seq: int
    at: UtcDatetime
    actor: str
    command: str
    service: str | None
    reason: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    result: str
    prev_hash: str
    hash: str
