"""Typed records of the state store. Every record is a frozen, keyword-only dataclass that
checks itself on construction (plain Python: the rollback fast path must not pay for
pydantic's import).

All timestamps are timezone-aware and normalised to UTC; a naive datetime is rejected
(ValueError). `AuditEntryInput` is what a caller passes to describe *why* a state change
happens; the store turns it into an `AuditRecord` (with seq, time and hashes) inside the
same transaction as the change itself.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import pwd
import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, Literal, get_args

from orchestrator.sides import SIDES, Side

RunStatus = Literal[
    "running", "done", "failed", "aborted", "rolled_back", "deferred", "abandoned"
]
"""`abandoned`: its process was gone and another run took its service's lock over (a new
epoch); it can no longer be resumed."""
RESUMABLE_STATUSES: tuple[RunStatus, ...] = ("running", "deferred")
"""Runs in these states may still get journal entries and be finished or resumed."""

JournalPhase = Literal["begin", "end"]

_RUN_STATUSES = frozenset(get_args(RunStatus))
_PHASES = frozenset(get_args(JournalPhase))


def _utc(record: object, name: str, *, optional: bool = False) -> None:
    """Check that field `name` holds an aware datetime and store it converted to UTC."""
    value = getattr(record, name)
    if value is None and optional:
        return
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{type(record).__name__}.{name}: needs a timezone-aware datetime, "
                         f"got {value!r}")
    object.__setattr__(record, name, value.astimezone(UTC))


def _one_of(record: object, name: str, allowed: Collection[object], *,
            optional: bool = False) -> None:
    value = getattr(record, name)
    if value is None and optional:
        return
    if value not in allowed:
        raise ValueError(f"{type(record).__name__}.{name}: {value!r} is not one of "
                         f"{sorted(map(str, allowed))}")


def _non_empty(record: object, *names: str) -> None:
    for name in names:
        value = getattr(record, name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{type(record).__name__}.{name}: needs a non-empty string")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def jsonable(value: Any) -> Any:
    """`json.dumps(default=...)` hook: timestamps, paths, sets, enums, records and pydantic
    models become plain JSON data; anything else is a TypeError (never silently `str()`)."""
    if isinstance(value, datetime):
        return _json_value(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, _Record):
        return value.as_json()
    dump = getattr(value, "model_dump", None)  # a pydantic model, without importing pydantic
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r}")


@dataclass(frozen=True, kw_only=True)
class _Record:
    def as_json(self, *, exclude: Collection[str] = ()) -> dict[str, Any]:
        """The record as JSON-ready data (timestamps as ISO 8601 text), minus `exclude`."""
        return {
            f.name: _json_value(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in exclude
        }


@dataclass(frozen=True, kw_only=True)
class PendingFlip(_Record):
    """A flip in progress: written (with its audit record) before the router is touched,
    cleared when the flip is recorded or cancelled. Found after a crash, it tells the next
    traffic command what the router may have done (see `orchestrator.traffic.kernel`)."""

    id: str
    from_side: Side
    to_side: Side
    command: str
    actor: str
    reason: str
    at: datetime
    rollback: bool = False
    """Rollback semantics: the side traffic leaves becomes `failed_live`."""
    run_id: str | None = None
    forced: bool = False
    quarantine: str | None = None
    """A reason: the side traffic leaves is quarantined in the flip's record (also when a
    crash leaves the record to the next traffic command)."""
    exposure: bool = False
    """An exposure change (`orchestrator.traffic.exposure`), not a flip: the live side
    (`from_side` = `to_side`) stays; `exposed_side` is the side exposed afterwards (None:
    the exposure is cleared) at `percent`."""
    exposed_side: Side | None = None
    percent: int = 0

    def __post_init__(self) -> None:
        _non_empty(self, "id", "command", "actor")
        _one_of(self, "from_side", SIDES)
        _one_of(self, "to_side", SIDES)
        _one_of(self, "exposed_side", SIDES, optional=True)
        _utc(self, "at")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingFlip:
        """Inverse of `as_json`."""
        at = datetime.fromisoformat(str(data["at"]).replace("Z", "+00:00"))
        return cls(**{**data, "at": at})


EXPOSURE_NOT_PERSISTED = "exposure not persisted: "
"""How a service's `flip_problem` begins when an exposure was taken back in memory but the
exposure maps on disk may still hold it (a reload would bring it back): the next traffic
command persists it again; until then no side of the service is patched."""


@dataclass(frozen=True, kw_only=True)
class ServiceState(_Record):
    """A service and the side the store last recorded as live (None: never recorded).

    `rollback_to`: the side that was live before the last *forward* flip (where `rollback`
    goes). `flip_problem`: set when a flip moved traffic but could not be persisted or
    confirmed ("not persisted: ..."), until a later flip or rollback repairs it.
    `pending_flip`: a flip in progress, or one a crash interrupted. `rollback_kept`: set
    when a rollback was answered by aborting a run that had not flipped yet (traffic kept
    where it was), or took an exposure back: a second rollback is then already done, until
    the next flip. `exposed_side`/`exposure_percent`: the progressive exposure the router
    holds (`orchestrator.traffic.exposure`): that share of new requests (0: only preview
    requests) goes to the standby `exposed_side`; None: all traffic on the live side."""

    service: str
    live_side: Side | None
    updated_at: datetime
    rollback_to: Side | None = None
    flip_problem: str | None = None
    pending_flip: PendingFlip | None = None
    rollback_kept: str | None = None
    exposed_side: Side | None = None
    exposure_percent: int = 0

    def __post_init__(self) -> None:
        _one_of(self, "live_side", SIDES, optional=True)
        _one_of(self, "rollback_to", SIDES, optional=True)
        _one_of(self, "exposed_side", SIDES, optional=True)
        _utc(self, "updated_at")


SideStateName = Literal[
    "untouched", "patching", "patched", "verified", "verify_failed", "failed_live", "quarantined"
]
SIDE_STATES: tuple[SideStateName, ...] = get_args(SideStateName)
"""untouched -> patching(level) -> patched(level) -> verified(level) | verify_failed;
failed_live: traffic was taken away from it by a rollback; quarantined: kept out by an
operator. Which of them may take traffic is decided in `orchestrator.traffic.gate`."""


@dataclass(frozen=True, kw_only=True)
class SideState(_Record):
    """One side of a service: its state, patch level and last verification.

    `generation` grows by one with every change of the side: a verification is recorded
    only if the side is still at the generation read when the verification began. `hosts`
    maps each host to the fingerprint (machine id, boot id, dpkg database digest) read with
    the last passing verification."""

    service: str
    side: Side
    patch_level: str | None = None
    """Free text, e.g. "demo-web=1.0.1,demo-openssl=3.0.15-1"; while `patching`, the level
    being applied."""
    patched_at: datetime | None = None
    verified_at: datetime | None = None
    verification_ok: bool | None = None
    verified_patch_level: str | None = None
    verification_summary: str | None = None
    state: SideStateName = "untouched"
    state_since: datetime | None = None
    state_reason: str | None = None
    generation: int = 0
    hosts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _one_of(self, "side", SIDES)
        _one_of(self, "state", SIDE_STATES)
        _utc(self, "patched_at", optional=True)
        _utc(self, "verified_at", optional=True)
        _utc(self, "state_since", optional=True)

    @property
    def verified_after_patch(self) -> bool:
        """True only if the side is `verified`, its last verification passed and checked
        the patch level the side has now. Order comes from the state machine, not from
        clocks: `verified` is reached only by a verification recorded after the last patch
        transition (each a compare-and-set on the generation), so timestamps written by two
        machines' clocks (or a clock stepped back) are never compared."""
        if self.state != "verified":
            return False
        if self.verification_ok is not True or self.verified_at is None:
            return False
        return self.verified_patch_level == self.patch_level


@dataclass(frozen=True, kw_only=True)
class Run(_Record):
    """One rollout, campaign or other long operation. `params` are stored redacted."""

    run_id: str
    kind: str
    """e.g. "rollout", "campaign"."""
    service: str | None
    status: RunStatus
    params: dict[str, Any]
    actor: str
    started_at: datetime
    finished_at: datetime | None = None
    result: str | None = None
    epoch: int | None = None
    """The fencing epoch of its lock when it last took it (None: it held none)."""

    def __post_init__(self) -> None:
        _non_empty(self, "run_id", "kind")
        _one_of(self, "status", _RUN_STATUSES)
        _utc(self, "started_at")
        _utc(self, "finished_at", optional=True)


@dataclass(frozen=True, kw_only=True)
class JournalEntry(_Record):
    """A step boundary of a run; `seq` counts from 1 per run, in write order."""

    run_id: str
    seq: int
    step: str
    phase: JournalPhase
    data: dict[str, Any]
    at: datetime

    def __post_init__(self) -> None:
        _one_of(self, "phase", _PHASES)
        _utc(self, "at")


@dataclass(frozen=True, kw_only=True)
class LockHolder(_Record):
    """Who takes a lock. `LockHolder.current()` describes this process."""

    holder: str
    """user@hostname"""
    pid: int
    hostname: str

    def __post_init__(self) -> None:
        _non_empty(self, "holder", "hostname")

    @classmethod
    def current(cls) -> LockHolder:
        hostname = socket.gethostname()
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry / no login name (containers)
            user = str(os.getuid())
        return cls(holder=f"{user}@{hostname}", pid=os.getpid(), hostname=hostname)


@dataclass(frozen=True, kw_only=True)
class LockInfo(_Record):
    """A held service lock."""

    service: str
    run_id: str
    holder: str
    pid: int
    hostname: str
    acquired_at: datetime
    epoch: int = 0
    """The fencing token: grows by one every time the lock is taken (also on a takeover);
    a run's writes are refused once a newer epoch exists (`orchestrator.state.sql.fence`)."""

    def __post_init__(self) -> None:
        _utc(self, "acquired_at")

    def holder_is_gone(self) -> bool:
        """True only when provable: the holder ran on this host and its pid is gone."""
        if self.hostname != socket.gethostname() or self.pid <= 0:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # exists, owned by another user
            return False
        return False


@dataclass(frozen=True, kw_only=True)
class AuditEntryInput(_Record):
    """What a caller says about a change: who, which command, why, and the outcome.

    `before`/`after` may carry extra context; for methods that change a record the store
    adds its own snapshot of that record under the keys it owns (its values win).
    Values under secret-looking keys are replaced by "***" before storing (see `redact`).
    """

    actor: str
    command: str
    service: str | None = None
    reason: str | None = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"

    def __post_init__(self) -> None:
        _non_empty(self, "actor", "command")


@dataclass(frozen=True, kw_only=True)
class OsIdentity(_Record):
    """Who ran a command, as the operating system says (not as `--actor` claims).

    `sudo_user` is `$SUDO_USER` when present: the account that ran sudo. It comes from the
    environment, so it is a claim sudo makes, not a proof (see `persons`)."""

    os_uid: int
    os_user: str
    sudo_user: str | None
    hostname: str

    @classmethod
    def current(cls) -> OsIdentity:
        uid = os.getuid()
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:  # no passwd entry (containers)
            user = str(uid)
        return cls(os_uid=uid, os_user=user, sudo_user=os.environ.get("SUDO_USER") or None,
                   hostname=socket.gethostname())

    @property
    def persons(self) -> frozenset[str]:
        """The people this identity may be: the sudo user, and the OS user unless it is
        root (root is shared). Two identities are the same person when these overlap; an
        empty set (root, no sudo) is nobody in particular."""
        names = {self.sudo_user} if self.sudo_user else set()
        if self.os_uid != 0:
            names.add(self.os_user)
        return frozenset(names)

    def describe(self) -> str:
        via = f" (sudo from {self.sudo_user})" if self.sudo_user else ""
        return f"{self.os_user} (uid {self.os_uid}){via} on {self.hostname}"


@dataclass(frozen=True, kw_only=True)
class AuditRecord(_Record):
    """One link of the audit chain. `hash` covers every other field but `mac`, `prev_hash`
    included; `mac` is the HMAC of the same payload under the audit key (None only for
    records written before the chain was keyed). `os_*`, `sudo_user` and `hostname` are the
    OS identity of the process that wrote the record, next to the claimed `actor`."""

    seq: int
    at: datetime
    actor: str
    command: str
    service: str | None
    reason: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    result: str
    prev_hash: str
    hash: str
    os_uid: int | None = None
    os_user: str | None = None
    sudo_user: str | None = None
    hostname: str | None = None
    key_id: str | None = None
    mac: str | None = None

    @property
    def identity(self) -> OsIdentity | None:
        if self.os_uid is None or self.os_user is None or self.hostname is None:
            return None
        return OsIdentity(os_uid=self.os_uid, os_user=self.os_user, sudo_user=self.sudo_user,
                          hostname=self.hostname)

    def __post_init__(self) -> None:
        _utc(self, "at")
