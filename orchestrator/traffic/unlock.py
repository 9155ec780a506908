"""`bluegreen unlock SERVICE`: free a run lock whose holder is gone, and stop one whose
holder is not.

A lock is freed only when its holder is provably gone (its process is gone from this host;
on PostgreSQL its database session ended). A holder that is not provably gone is a run that
may still act, so its run is marked aborted first (it stops at its next step boundary and
releases the lock itself), then: on PostgreSQL its session is ended (a hung holder: it can
record nothing more), with SQLite a holder on another host is taken as gone on the
operator's word; a live holder on this host keeps the lock until it stops. Either way the
old holder's late writes are refused (`Fenced`): the next run takes the lock with a newer
epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.errors import BadInput, LockHeld
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, LockInfo


@dataclass(frozen=True)
class Unlocked:
    """What `unlock` did: `released` the lock (found as `lock`), `aborted_run`."""

    service: str
    lock: LockInfo | None
    released: bool
    aborted_run: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "run_id": self.lock.run_id if self.lock else None,
                "epoch": self.lock.epoch if self.lock else None, "released": self.released,
                "aborted_run": self.aborted_run, "message": self.message}


def unlock(store: StateStore, service: str, reason: str, actor: str) -> Unlocked:
    """See the module docstring. BadInput for an empty reason (nothing changed)."""
    if not reason.strip():
        raise BadInput("unlock needs a reason", hint="pass --reason TEXT")
    try:
        freed = store.force_release_lock(service, reason, actor)
    except LockHeld:
        pass  # its holder is not provably gone: stop its run first
    else:
        if freed is None:
            return Unlocked(service, None, False, None, f"{service}: not locked")
        return Unlocked(service, freed, True, None,
                        f"{service}: released lock of run {freed.run_id} (epoch {freed.epoch}"
                        f"); its holder, pid {freed.pid} on {freed.hostname}, was gone; the "
                        f"run stays resumable (`bluegreen resume {freed.run_id}`) until "
                        "another run takes the service")
    lock = store.get_lock(service)
    aborted = None
    run = store.get_run(lock.run_id) if lock is not None else None
    if run is not None and run.status in RESUMABLE_STATUSES:
        store.finish_run(run.run_id, "aborted", f"unlock by {actor}: {reason}")
        aborted = run.run_id
    stop = f"run {aborted} marked aborted; " if aborted else ""
    try:
        freed = store.force_release_lock(service, reason, actor, end_holder=True)
    except LockHeld:
        assert lock is not None
        return Unlocked(service, lock, False, aborted,
                        f"{service}: {stop}its holder, pid {lock.pid} on {lock.hostname}, is "
                        "alive: it stops at its next step boundary and releases the lock "
                        "then (the lock is never taken from a live holder)")
    held = freed or lock
    who = f"pid {held.pid} on {held.hostname}" if held else "its holder"
    return Unlocked(service, held, True, aborted,
                    f"{service}: {stop}released the lock of {who} (its database session was "
                    "ended; or, on another host, it cannot be checked from here and is taken "
                    "as gone); whatever that holder records later is refused")
