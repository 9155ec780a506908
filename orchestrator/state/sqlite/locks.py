"""Locks of the SQLite backend. The run lock is a row naming its holder (pid, host): a
lock whose process is gone from this host is stale and taken over. The traffic lock is an
`flock` on a file beside the database, released by the OS when its holder dies."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from orchestrator import flock
from orchestrator.errors import BadInput, LockHeld, StateError
from orchestrator.state.audit import format_ts
from orchestrator.state.models import AuditEntryInput, LockHolder, LockInfo
from orchestrator.state.sql.fence import Fencing
from orchestrator.state.sql.rows import live_holder, lock_dump, lock_from_row, lock_held


class SQLiteLocks(Fencing):
    """`LockStore` on a SQLite file at `path`."""

    path: Path

    def get_lock(self, service: str) -> LockInfo | None:
        rows = self._query("SELECT * FROM locks WHERE service = ?", (service,))
        return lock_from_row(rows[0]) if rows else None

    def acquire_lock(self, service: str, run_id: str, holder: LockHolder | None = None) -> LockInfo:
        """Take the service lock for `run_id` (holder: this process by default), with the
        next epoch of the lock (`fence.Fencing`): this store's writes for the run are
        refused once a newer one exists.

        Re-acquiring by the same run, pid and host returns the existing lock (same epoch).
        A lock held by a process on this host that no longer exists is stale and taken
        over (audited as "lock.takeover"; the holder's run, if another, becomes
        `abandoned`); any other held lock raises `LockHeld` naming its holder.
        """
        who = holder or LockHolder.current()
        now = self._now()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            old = lock_from_row(row) if row else None
            if old is not None:
                if (old.run_id, old.pid, old.hostname) == (run_id, who.pid, who.hostname):
                    self._hold(service, run_id, old.epoch)
                    return old
                if not old.holder_is_gone():
                    raise lock_held(old)
            new, before = self._hand_out_epoch(conn, LockInfo(
                service=service, run_id=run_id, holder=who.holder, pid=who.pid,
                hostname=who.hostname, acquired_at=now), now)
            conn.execute(
                "INSERT OR REPLACE INTO locks (service, run_id, holder, pid, hostname,"
                " acquired_at, epoch) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (service, run_id, who.holder, who.pid, who.hostname, format_ts(now), new.epoch),
            )
            reason = None
            if old is not None:
                reason = f"stale lock: pid {old.pid} on {old.hostname} is no longer running"
            entry = AuditEntryInput(
                actor=who.holder,
                command="lock.acquire" if old is None else "lock.takeover",
                reason=reason,
            )
            self._audit(
                conn,
                entry,
                now,
                service=service,
                before=lock_dump(old),
                after=lock_dump(new),
            )
            self._end_superseded(conn, new, old, before, reason, now)
        self._hold(service, run_id, new.epoch)
        return new

    def release_lock(self, service: str, run_id: str) -> bool:
        """Release the lock held by `run_id`. False if unlocked, or if this store took it
        and it has moved on to a newer epoch since (the run resumed elsewhere); `LockHeld`
        if another run holds it."""
        now = self._now()
        fence = self._fences.get(service)
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            if row is None:
                self._drop(service)
                return False
            old = lock_from_row(row)
            if old.run_id != run_id:
                raise lock_held(old)
            if fence is not None and fence[0] == run_id and fence[1] != old.epoch:
                self._drop(service)
                return False
            conn.execute("DELETE FROM locks WHERE service = ?", (service,))
            entry = AuditEntryInput(actor=old.holder, command="lock.release")
            self._audit(conn, entry, now, service=service, before=lock_dump(old))
        self._drop(service)
        return True

    def force_release_lock(self, service: str, reason: str, actor: str, *,
                           end_holder: bool = False) -> LockInfo | None:
        """Free `service`'s lock when its holder is provably gone (its process is gone from
        this host), audited with `reason`. A live holder on this host keeps it (LockHeld:
        a run is stopped by marking it aborted, never by taking its lock). A holder on
        another host cannot be checked from here: with `end_holder` (`unlock`, the
        operator's word that that host is gone) it is freed, else LockHeld. Returns the
        removed lock, or None if there was none (still audited)."""
        if not reason.strip():
            raise BadInput("releasing a lock by force needs a reason", hint="pass --reason TEXT")
        now = self._now()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            old = lock_from_row(row) if row else None
            if old is not None and not old.holder_is_gone() and self._fences.get(service) != (
                    old.run_id, old.epoch):
                if old.hostname == socket.gethostname() or not end_holder:
                    raise live_holder(old)
            conn.execute("DELETE FROM locks WHERE service = ?", (service,))
            entry = AuditEntryInput(
                actor=actor,
                command="lock.force_release",
                reason=reason,
                result="released" if old else "no lock",
            )
            self._audit(conn, entry, now, service=service, before=lock_dump(old))
        self._drop(service)
        return old

    @contextmanager
    def traffic_lock(
        self, service: str, timeout_s: float = 30.0, *, command: str = "traffic"
    ) -> Iterator[None]:
        """The short per-service lock every traffic change holds (separate from the run
        lock): `flock` on `<state dir>/locks/traffic-<service>.lock`, polled until
        `timeout_s`, then LockHeld naming the holder. The OS releases it when the holder
        dies (also kill -9). Flips of one service serialize; other services never wait."""
        locks = self.path.parent / "locks"
        path = locks / f"traffic-{_file_safe(service)}.lock"
        try:
            locks.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(
                f"cannot open the traffic lock {path}: {exc.strerror}",
                hint=f"make {locks} writable by this user",
            ) from exc
        try:
            if not flock.acquire(fd, timeout_s):
                raise _traffic_lock_held(service, path, timeout_s)
            holder = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": format_ts(self._now()),
                "command": command,
            }
            with suppress(OSError):  # naming the holder is best effort (disk full)
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            try:
                yield
            finally:
                with suppress(OSError):
                    os.ftruncate(fd, 0)
                flock.release(fd)
        finally:
            os.close(fd)


def _file_safe(name: str) -> str:
    """A service name as a file name: itself when plain, else a digest."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", name):
        return name
    return "x-" + hashlib.sha256(name.encode()).hexdigest()[:32]


def _traffic_lock_held(service: str, path: Path, timeout_s: float) -> LockHeld:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (
        f"`{holder.get('command', '?')}` (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
        if holder
        else "another process"
    )
    return LockHeld(
        f"{service}: another traffic change holds the traffic lock: {who}; waited "
        f"{timeout_s:g} s",
        hint="retry when it is done; the lock is released when its holder ends, even if it "
        "is killed",
    )
