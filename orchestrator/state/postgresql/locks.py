"""Locks of the PostgreSQL backend: session advisory locks keyed by a namespaced hash of
the service (`keys.lock_key`), so they belong to the database and end with the session
that holds them: a holder that dies (kill -9, lost machine) releases them at once, on
every machine. A table row beside each lock names its holder (user, pid, host, since) for
the messages; a row whose advisory lock is free is a dead holder's and is no lock.

What a caller must know: the locks are held by this store's connection, so they do not
survive a transaction-pooling proxy (pgbouncer in transaction mode) between bluegreen and
the server; connect directly or through session pooling.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from orchestrator.errors import BadInput, LockHeld, LocksLost
from orchestrator.state.audit import format_ts
from orchestrator.state.models import AuditEntryInput, LockHolder, LockInfo
from orchestrator.state.postgresql.connection import PgConnection
from orchestrator.state.postgresql.keys import lock_key
from orchestrator.state.sql.database import Connection
from orchestrator.state.sql.fence import Fencing
from orchestrator.state.sql.rows import live_holder, lock_dump, lock_from_row, lock_held

_SESSION = (
    "SELECT l.pid, a.application_name, a.client_addr::text AS client_addr, a.backend_start"
    " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND l.classid = ?::bigint::oid AND l.objid = ?::bigint::oid"
)


def _run_lock_held(lock: LockInfo) -> LockHeld:
    """`rows.lock_held`, with the fix that holds here: a dead holder needs no unlock."""
    held = lock_held(lock)
    held.hint = (f"wait for run {lock.run_id} to finish; if its process died, the lock is "
                 f"already free (it ended with its database session): retry; if it hangs on "
                 f"{lock.hostname}, `bluegreen unlock {lock.service} --reason TEXT` ends its "
                 "session")
    return held


def halves(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: (classid, objid), both unsigned."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _session_holds(conn: Connection, key: int) -> bool:
    """Does this session hold advisory lock `key`?"""
    classid, objid = halves(key)
    return conn.execute(
        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        " AND pid = pg_backend_pid() AND classid = ?::bigint::oid"
        " AND objid = ?::bigint::oid", (classid, objid)).fetchone() is not None


class PgLocks(Fencing):
    """`LockStore` on PostgreSQL advisory locks."""

    _conn: PgConnection
    _run_locks: set[str]
    """Services whose run lock this store's session holds."""
    _traffic_locks: set[str]
    """Services whose traffic lock this store holds (advisory locks nest within a session;
    the traffic lock must not: a second holder waits, as with SQLite's flock)."""

    def _translate(self) -> AbstractContextManager[None]:
        raise NotImplementedError  # the store: psycopg errors -> StateError

    def _session_holding(self, key: int) -> dict[str, Any] | None:
        """The server session holding advisory lock `key` (pid, application_name naming the
        bluegreen process and host, client address, since), or None when it is free."""
        rows = self._query(_SESSION, halves(key))
        return dict(rows[0]) if rows else None

    def get_lock(self, service: str) -> LockInfo | None:
        """The run lock of `service`, if a live session holds it."""
        rows = self._query("SELECT * FROM locks WHERE service = ?", (service,))
        if not rows or self._session_holding(lock_key("run", service)) is None:
            return None
        return lock_from_row(rows[0])

    def _try_lock(self, key: int) -> bool:
        rows = self._query("SELECT pg_try_advisory_lock(?) AS got", (key,))
        return bool(rows[0]["got"])

    def _unlock(self, key: int) -> None:
        with suppress(psycopg.Error):  # a broken session has released it already
            self._conn.execute("SELECT pg_advisory_unlock(?)", (key,))

    def acquire_lock(self, service: str, run_id: str, holder: LockHolder | None = None) -> LockInfo:
        """Take the run lock of `service` for `run_id` (holder: this process by default),
        with the next epoch of the lock (`fence.Fencing`).

        Re-acquiring by the same run, pid and host returns the existing lock. The row of a
        holder whose session ended (its advisory lock is free) is taken over (audited as
        "lock.takeover"; the holder's run, if another, becomes `abandoned`); a lock a live
        session holds raises `LockHeld` naming its holder.
        """
        who = holder or LockHolder.current()
        key = lock_key("run", service)
        held_before = service in self._run_locks
        if not held_before and not self._try_lock(key):
            rows = self._query("SELECT * FROM locks WHERE service = ?", (service,))
            if rows:
                raise _run_lock_held(lock_from_row(rows[0]))
            raise self._held_by_session(service, key, "run lock")
        now = self._now()
        try:
            with self._write() as conn:
                row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
                old = lock_from_row(row) if row else None
                if old is not None and (old.run_id, old.pid, old.hostname) == (
                        run_id, who.pid, who.hostname):
                    new = old
                else:
                    if old is not None and held_before:  # this session holds it, for another run
                        raise _run_lock_held(old)
                    new, before = self._hand_out_epoch(conn, LockInfo(
                        service=service, run_id=run_id, holder=who.holder, pid=who.pid,
                        hostname=who.hostname, acquired_at=now), now)
                    conn.execute("DELETE FROM locks WHERE service = ?", (service,))
                    conn.execute(
                        "INSERT INTO locks (service, run_id, holder, pid, hostname, acquired_at,"
                        " epoch) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (service, run_id, who.holder, who.pid, who.hostname, format_ts(now),
                         new.epoch),
                    )
                    reason = None
                    if old is not None:
                        reason = (f"stale lock: the database session of pid {old.pid} on "
                                  f"{old.hostname} ended")
                    entry = AuditEntryInput(
                        actor=who.holder,
                        command="lock.acquire" if old is None else "lock.takeover",
                        reason=reason,
                    )
                    self._audit(conn, entry, now, service=service, before=lock_dump(old),
                                after=lock_dump(new))
                    self._end_superseded(conn, new, old, before, reason, now)
        except BaseException:
            if not held_before:
                self._unlock(key)
            raise
        self._run_locks.add(service)
        self._hold(service, run_id, new.epoch)
        return new

    def _still_holding(self, conn: Connection, lock: str, run_id: str, epoch: int) -> bool:
        """The lock row names the run at its epoch, and this session still holds the
        advisory lock (a terminated or lost session released it, silently)."""
        if not super()._still_holding(conn, lock, run_id, epoch):
            return False
        return _session_holds(conn, lock_key("run", lock))

    def check_still_holding(self, service: str) -> None:
        """`StateStore.check_still_holding` in one read transaction: this session still
        holds the traffic lock of `service` if it took it, and the run lock's fence holds.
        A session that ended (restart, failover, `pg_terminate_backend`) fails the read:
        `LocksLost` when it held a lock, else a `StateError` naming the database."""
        with self._read() as conn:
            if service in self._traffic_locks and not _session_holds(
                    conn, lock_key("traffic", service)):
                raise LocksLost(f"{service}: this process no longer holds the traffic lock "
                                "(its database session was reset); nothing changed",
                                hint="retry the command")
            self._check_service_fence(conn, service)

    def release_lock(self, service: str, run_id: str) -> bool:
        """Release the lock held by `run_id`. False if unlocked, or if this store took it
        and it moved on to a newer epoch since; `LockHeld` if another run holds it."""
        now = self._now()
        fence = self._fences.get(service)
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            old = lock_from_row(row) if row else None
            if old is not None and fence is not None and fence[0] == run_id and (
                    fence[1] != old.epoch):
                old = None  # resumed elsewhere: that lock is not this store's to release
            elif old is not None:
                if old.run_id != run_id:
                    raise _run_lock_held(old)
                conn.execute("DELETE FROM locks WHERE service = ?", (service,))
                entry = AuditEntryInput(actor=old.holder, command="lock.release")
                self._audit(conn, entry, now, service=service, before=lock_dump(old))
        self._drop(service)
        if service in self._run_locks:
            self._run_locks.discard(service)
            self._unlock(lock_key("run", service))
        return old is not None

    def force_release_lock(self, service: str, reason: str, actor: str, *,
                           end_holder: bool = False) -> LockInfo | None:
        """Free `service`'s lock when its holder is gone (its database session ended),
        audited with `reason`. A live holder keeps it (LockHeld: a run is stopped by
        marking it aborted, never by taking its lock), unless `end_holder` (`unlock` of a
        hung holder): then its session is ended (pg_terminate_backend), so it holds and
        can record nothing more. Returns the removed lock, or None if there was none
        (still audited)."""
        if not reason.strip():
            raise BadInput("releasing a lock by force needs a reason", hint="pass --reason TEXT")
        key = lock_key("run", service)
        now = self._now()
        with self._write() as conn:
            row = conn.execute("SELECT * FROM locks WHERE service = ?", (service,)).fetchone()
            old = lock_from_row(row) if row else None
            session = None
            if service not in self._run_locks:
                session = self._session_holding(key)
            if session is not None and not end_holder:
                raise (live_holder(old) if old is not None
                       else self._held_by_session(service, key, "run lock"))
            conn.execute("DELETE FROM locks WHERE service = ?", (service,))
            terminated = None
            if session is not None:
                ended = conn.execute("SELECT pg_terminate_backend(?) AS ended",
                                     (session["pid"],)).fetchone()
                terminated = f"server pid {session['pid']} ({session['application_name']})"
                if not ended["ended"]:
                    terminated += " could not be ended"
            entry = AuditEntryInput(
                actor=actor,
                command="lock.force_release",
                reason=reason,
                result="released" if old else "no lock",
            )
            self._audit(conn, entry, now, service=service, before=lock_dump(old),
                        after={"terminated_session": terminated} if terminated else {})
        self._drop(service)
        if service in self._run_locks:
            self._run_locks.discard(service)
            self._unlock(key)
        return old

    def _held_by_session(self, service: str, key: int, what: str) -> LockHeld:
        session = self._session_holding(key)
        who = "another session"
        if session is not None:
            since = session["backend_start"]
            when = f", connected since {since:%Y-%m-%d %H:%M:%S %Z}" if since else ""
            who = (f"{session['application_name'] or 'a session'} (server pid "
                   f"{session['pid']}{when})")
        return LockHeld(f"{service}: the {what} is held by {who}",
                        hint="retry when it is done; the lock ends with its holder's session")

    @contextmanager
    def traffic_lock(
        self, service: str, timeout_s: float = 30.0, *, command: str = "traffic"
    ) -> Iterator[None]:
        """The short per-service lock every traffic change holds (separate from the run
        lock): an advisory lock of this session, waited for up to `timeout_s` by the
        server (lock_timeout), then LockHeld naming the holder. It ends with the holder's
        session (also on kill -9). Flips of one service serialize across machines."""
        key = lock_key("traffic", service)
        conn = self._conn
        if service in self._traffic_locks:  # waiting for ourselves would only time out
            raise self._traffic_lock_held(service, key, 0)
        with self._translate():
            if timeout_s <= 0:
                got = self._try_lock(key)
            else:
                conn.execute(f"SET lock_timeout = {max(1, int(timeout_s * 1000))}")
                try:
                    conn.execute("SELECT pg_advisory_lock(?)", (key,))
                    got = True
                except pg_errors.LockNotAvailable:
                    got = False
                finally:
                    conn.execute("RESET lock_timeout")
            if not got:
                raise self._traffic_lock_held(service, key, timeout_s)
        try:
            with self._translate():
                conn.execute(
                    "INSERT INTO traffic_holders (service, command, pid, hostname, since)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (service) DO UPDATE SET"
                    " command = EXCLUDED.command, pid = EXCLUDED.pid,"
                    " hostname = EXCLUDED.hostname, since = EXCLUDED.since",
                    (service, command, LockHolder.current().pid, LockHolder.current().hostname,
                     format_ts(self._now())),
                )
            self._traffic_locks.add(service)
            yield
        finally:
            self._traffic_locks.discard(service)
            with suppress(psycopg.Error):
                conn.execute("DELETE FROM traffic_holders WHERE service = ?", (service,))
            self._unlock(key)

    def _traffic_lock_held(self, service: str, key: int, timeout_s: float) -> LockHeld:
        rows = self._query("SELECT * FROM traffic_holders WHERE service = ?", (service,))
        if rows:
            row = rows[0]
            who = (f"`{row['command']}` (pid {row['pid']} on {row['hostname']}, since "
                   f"{row['since']})")
        else:
            session = self._session_holding(key)
            who = (f"{session['application_name'] or 'another session'} (server pid "
                   f"{session['pid']})" if session else "another process")
        return LockHeld(
            f"{service}: another traffic change holds the traffic lock: {who}; waited "
            f"{timeout_s:g} s",
            hint="retry when it is done; the lock is released when its holder ends, even if it "
            "is killed",
        )
