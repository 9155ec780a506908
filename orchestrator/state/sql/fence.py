"""Fencing tokens for runs (Kleppmann's "How to do distributed locking"): a lock alone does
not stop a holder that paused, hung or lost its session from acting after another process
took the lock over. So every time a lock is taken (also on a takeover, also when a run
resumes itself) the store hands out the next epoch of that lock, in the same transaction;
the store object that took it remembers its epoch, and every write it makes for that run or
service checks, in the write's own transaction, that

- no newer epoch of the lock exists (nobody took it over),
- the lock row still names this run at this epoch (nobody freed it: `unlock`), and on
  PostgreSQL that this session still holds the advisory lock (`_still_holding`),
- the run was not ended by someone else (`campaign abort`, `rollback`, a takeover that
  marked it `abandoned`),

else the write is refused with `Fenced` and nothing is recorded. Writes of a store that took
no lock (an operator's `rollback`, `campaign abort`) are not fenced: they are not a run's.
A takeover from a holder that is provably gone marks the holder's run `abandoned` (audited).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from orchestrator.errors import Fenced
from orchestrator.state.audit import format_ts
from orchestrator.state.models import RESUMABLE_STATUSES, AuditEntryInput, LockInfo
from orchestrator.state.sql.chain import AuditChain
from orchestrator.state.sql.database import Connection


class Fencing(AuditChain):
    """Epochs handed out with locks, and the fence check of every run write."""

    _fences: dict[str, tuple[str, int]]
    """lock -> (run id, epoch) of the locks this store object took and holds."""

    # -- handing out -------------------------------------------------------------------------

    def _hand_out_epoch(self, conn: Connection, new: LockInfo, now: datetime
                        ) -> tuple[LockInfo, tuple[str, int] | None]:
        """`new` with the next epoch of its lock (its run row, if any, records it), and the
        (run id, epoch) that held the lock's newest epoch before, if any."""
        lock, run_id = new.service, new.run_id
        row = conn.execute("SELECT epoch, run_id FROM epochs WHERE lock = ?",
                           (lock,)).fetchone()
        epoch = (int(row["epoch"]) if row else 0) + 1
        if row is None:
            conn.execute("INSERT INTO epochs (lock, epoch, run_id, at) VALUES (?, ?, ?, ?)",
                         (lock, epoch, run_id, format_ts(now)))
        else:
            conn.execute("UPDATE epochs SET epoch = ?, run_id = ?, at = ? WHERE lock = ?",
                         (epoch, run_id, format_ts(now), lock))
        if self._checked("runs", conn.execute("SELECT * FROM runs WHERE run_id = ?",
                                              (run_id,)).fetchone()) is not None:
            conn.execute("UPDATE runs SET epoch = ? WHERE run_id = ?", (epoch, run_id))
            self._touch(conn, "runs", run_id)
        before = None if row is None else (str(row["run_id"]), int(row["epoch"]))
        return dataclasses.replace(new, epoch=epoch), before

    def _end_superseded(self, conn: Connection, new: LockInfo, old: LockInfo | None,
                        before: tuple[str, int] | None, reason: str | None,
                        now: datetime) -> None:
        """After `new` took its lock: the run that held it before, if another and not
        ended, is `abandoned` (audited): its holder is gone (`old`, a takeover for
        `reason`), or its lock was freed under it while it was running (`unlock`)."""
        if old is not None:
            self._abandon(conn, old.run_id, old.epoch, new, reason or "its holder is gone",
                          now, statuses=RESUMABLE_STATUSES)
        elif before is not None:
            self._abandon(conn, before[0], before[1], new,
                          "its lock was freed while it was running", now, statuses=("running",))

    def _abandon(self, conn: Connection, run_id: str, epoch: int, new: LockInfo, why: str,
                 now: datetime, *, statuses: tuple[str, ...]) -> None:
        """Mark run `run_id` `abandoned` (audited) when another run took its lock over
        and it is in one of `statuses`: it cannot be resumed; its late writes are fenced."""
        if run_id == new.run_id:
            return
        row = self._checked("runs", conn.execute("SELECT * FROM runs WHERE run_id = ?",
                                                 (run_id,)).fetchone())
        if row is None or row["status"] not in statuses:
            return
        result = (f"abandoned: {why}; run {new.run_id} took the lock over (epoch {new.epoch}) "
                  f"at {format_ts(now)}")
        conn.execute("UPDATE runs SET status = 'abandoned', finished_at = ?, result = ?"
                     " WHERE run_id = ?", (format_ts(now), result, run_id))
        self._touch(conn, "runs", run_id)
        entry = AuditEntryInput(actor=new.holder, command="run.abandon", service=row["service"],
                                reason=why, result="abandoned")
        self._audit(conn, entry, now,
                    before={"run_id": run_id, "status": row["status"], "epoch": epoch},
                    after={"run_id": run_id, "status": "abandoned",
                           "superseded_by": new.run_id, "epoch": new.epoch})

    def _hold(self, lock: str, run_id: str, epoch: int) -> None:
        self._fences[lock] = (run_id, epoch)

    def _drop(self, lock: str) -> None:
        self._fences.pop(lock, None)

    def fence_of(self, run_id: str) -> tuple[str, int] | None:
        """(lock, epoch) this store holds for `run_id`, or None."""
        return next(((lock, epoch) for lock, (rid, epoch) in self._fences.items()
                     if rid == run_id), None)

    # -- checking ----------------------------------------------------------------------------

    def _check_run_fence(self, conn: Connection, run_id: str) -> None:
        """In a write's transaction: refuse (Fenced) a write for `run_id` made by a store
        that took its lock, once that lock moved on."""
        fence = self.fence_of(run_id)
        if fence is not None:
            self._check_fence(conn, fence[0], run_id, fence[1], ended_too=False)

    def check_still_holding(self, service: str) -> None:
        """`StateStore.check_still_holding`: the fence of `service`'s run lock, if this
        store holds it, read in one transaction (a backend whose locks live in a session
        adds its own checks)."""
        if service in self._fences:
            with self._read() as conn:
                self._check_service_fence(conn, service)

    def _check_service_fence(self, conn: Connection, service: str) -> None:
        """In a write's transaction: refuse (Fenced) a change of `service` (its sides, its
        flips) made by a store holding its run lock, once that lock moved on or the run
        was ended by someone else."""
        fence = self._fences.get(service)
        if fence is not None:
            self._check_fence(conn, service, fence[0], fence[1], ended_too=True)

    def _check_fence(self, conn: Connection, lock: str, run_id: str, epoch: int, *,
                     ended_too: bool) -> None:
        newest = conn.execute("SELECT epoch, run_id, at FROM epochs WHERE lock = ?",
                              (lock,)).fetchone()
        if newest is not None and int(newest["epoch"]) != epoch:
            raise Fenced(
                f"run {run_id} (epoch {epoch}) was superseded by run {newest['run_id']} "
                f"(epoch {newest['epoch']}) at {newest['at']}; nothing recorded",
                hint="this process no longer owns " + _what(lock) + "; see `bluegreen "
                "status` and the newer run",
            )
        if not self._still_holding(conn, lock, run_id, epoch):
            raise Fenced(
                f"run {run_id} (epoch {epoch}) no longer holds the lock of {_what(lock)} "
                "(released by `unlock`, or its database session ended); nothing recorded",
                hint="see `bluegreen status`; a new rollout takes the lock with a new epoch",
            )
        if ended_too:
            run = self._checked("runs", conn.execute("SELECT * FROM runs WHERE run_id = ?",
                                                     (run_id,)).fetchone())
            if run is not None and run["status"] not in RESUMABLE_STATUSES:
                raise Fenced(
                    f"run {run_id} (epoch {epoch}) already ended ({run['status']}: "
                    f"{run['result'] or 'no reason'}); nothing recorded",
                    hint="it stops at its next step boundary; see `bluegreen status`",
                )

    def _still_holding(self, conn: Connection, lock: str, run_id: str, epoch: int) -> bool:
        """Does the lock row still name `run_id` at `epoch`? (A backend whose locks live
        elsewhere, PostgreSQL's advisory locks, also asks its server.)"""
        row = conn.execute("SELECT epoch FROM locks WHERE service = ? AND run_id = ?",
                           (lock, run_id)).fetchone()
        return row is not None and int(row["epoch"]) == epoch


def _what(lock: str) -> str:
    return lock if lock.startswith("campaign:") else f"service {lock}"

