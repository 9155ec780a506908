"""The work queue on PostgreSQL (issue 24): campaigns hand their services to workers.

What a caller must know:
- One `PgWorkQueue` per process and thread: it holds its own connection (server session).
  A worker `register()`s: that takes the session advisory lock `lock_key("worker", ID)`,
  which is what "the worker is alive" means: a worker killed -9, or whose machine or
  network is gone, loses its session and with it the lock, at once for every reader. The
  heartbeat row only tells how recently a live worker acted (a hung one is shown, not
  taken over: it still holds its services' run locks).
- `claim()` takes the next service of the worker's site, in one transaction serialized
  per site (`pg_advisory_xact_lock`): only services of the first wave of a running
  campaign that is not stopped, queued or claimed by a dead worker (a takeover), picked
  with `FOR UPDATE SKIP LOCKED` (a claimer never waits on a row another transaction
  holds), and only while the site has fewer services in flight (claimed by live workers,
  over all campaigns) than its limit. So several workers polling at once never exceed it.
- `finish()` records how a service ended and, in the same transaction, serialized per
  campaign with every claim of it, stops the campaign (no new claims) when its failure
  budget is spent (N failed services or X % of its hosts) or a wave with `on_failure:
  stop` failed: the budget counts across all workers and waves, not per worker.
- Queue rows are no record and do not gate traffic: the child rollout a worker runs takes
  the service's run lock with a new fencing epoch (and is refused if another holds it),
  and everything it does is in the runs, journal and audit chain.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any

import psycopg

from orchestrator.errors import BadInput, StateError
from orchestrator.state.audit import format_ts
from orchestrator.state.postgresql.connection import PgConnection, connect, translate
from orchestrator.state.postgresql.keys import lock_key
from orchestrator.state.postgresql.locks import halves
from orchestrator.state.sql.workqueue import (
    Budget,
    Claim,
    ItemStatus,
    QueuedService,
    WorkerInfo,
)

_ALIVE = (
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
    " AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database"
    " WHERE datname = current_database()) AND l.classid::bigint = {w}.lock_classid"
    " AND l.objid::bigint = {w}.lock_objid)"
)
"""SQL: the worker row `{w}` names a live session (its advisory lock is held)."""
_OPEN = "('queued', 'claimed')"


def alive(alias: str) -> str:
    return _ALIVE.format(w=alias)


class PgWorkQueue:
    """The queue, the workers' registry and their liveness, on one server session."""

    def __init__(self, url: str, *, label: str, busy_timeout_ms: int = 5000) -> None:
        self.label = label
        self._conn: PgConnection = connect(url, label, lock_timeout_ms=busy_timeout_ms)
        self.worker: WorkerInfo | None = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> PgWorkQueue:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[PgConnection]:
        with translate(self.label):
            self._conn.raw.execute("BEGIN")
            try:
                yield self._conn
                self._conn.raw.execute("COMMIT")
            except BaseException:
                with suppress(psycopg.Error):
                    self._conn.raw.execute("ROLLBACK")
                raise

    def _server_now(self, conn: PgConnection) -> str:
        now: datetime = conn.scalar("SELECT clock_timestamp()")
        return format_ts(now)

    # -- the campaign's side -----------------------------------------------------------

    def enqueue(self, campaign_run: str, waves: Sequence[Sequence[QueuedService]], *,
                budget: Budget, site_limits: Mapping[str, int]) -> int:
        """Hand the services of `campaign_run` to the workers, wave by wave; their order in
        a wave is the order of claims. A run enqueued before (resumed: `campaign resume`)
        keeps its rows; its deferred services are queued again and a stop that was a
        deferral is lifted (failures and a spent budget stay). Returns how many services
        are queued or in flight."""
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("queue", campaign_run),))
            exists = conn.execute("SELECT 1 FROM work_campaigns WHERE campaign_run = ?",
                                  (campaign_run,)).fetchone()
            if exists is not None:
                conn.execute("UPDATE work_queue SET state = 'queued', outcome = NULL,"
                             " finished_at = NULL WHERE campaign_run = ? AND state = 'deferred'",
                             (campaign_run,))
                conn.execute("UPDATE work_campaigns SET stopped = NULL WHERE campaign_run = ?"
                             " AND stopped LIKE 'deferred:%'", (campaign_run,))
            else:
                total = sum(s.hosts for wave in waves for s in wave)
                conn.execute(
                    "INSERT INTO work_campaigns (campaign_run, max_failed_services,"
                    " max_failed_hosts_percent, hosts_total, site_limits, enqueued_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (campaign_run, budget.max_failed_services, budget.max_failed_hosts_percent,
                     total, json.dumps(dict(site_limits), sort_keys=True),
                     self._server_now(conn)))
                position = 0
                for wi, wave in enumerate(waves):
                    for s in wave:
                        conn.execute(
                            "INSERT INTO work_queue (campaign_run, service, site, wave,"
                            " position, hosts, stop_on_failure) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (campaign_run, s.service, s.site, wi, position, s.hosts,
                             int(s.stop_on_failure)))
                        position += 1
            return int(conn.scalar(
                f"SELECT COUNT(*) FROM work_queue WHERE campaign_run = ? AND state IN {_OPEN}",
                (campaign_run,)))

    def stop(self, campaign_run: str, why: str) -> None:
        """No new claims for `campaign_run` (those in flight finish)."""
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("queue", campaign_run),))
            conn.execute("UPDATE work_campaigns SET stopped = ? WHERE campaign_run = ?"
                         " AND stopped IS NULL", (why, campaign_run))

    def stopped(self, campaign_run: str) -> str | None:
        with translate(self.label):
            value = self._conn.scalar(
                "SELECT stopped FROM work_campaigns WHERE campaign_run = ?", (campaign_run,))
        return None if value is None else str(value)

    def items(self, campaign_run: str) -> list[ItemStatus]:
        """Every service of the run, in queue order, with its (last) worker."""
        with translate(self.label):
            rows = self._conn.execute(
                f"SELECT q.*, w.site AS w_site, w.hostname, w.pid, w.max_parallel,"
                f" w.started_at, w.heartbeat_at, w.stopped_at, {alive('w')} AS alive"
                " FROM work_queue q LEFT JOIN workers w ON w.worker_id = q.worker_id"
                " WHERE q.campaign_run = ? ORDER BY q.position", (campaign_run,)).fetchall()
        return [ItemStatus(service=r["service"], site=r["site"], wave=int(r["wave"]),
                           state=r["state"], claims=int(r["claims"]), outcome=r["outcome"],
                           worker=None if r["worker_id"] is None else _worker(r))
                for r in rows]

    def workers(self, site: str | None = None) -> list[WorkerInfo]:
        """The workers registered (of `site`), live ones first."""
        where, params = ("WHERE w.site = ?", (site,)) if site else ("", ())
        with translate(self.label):
            rows = self._conn.execute(
                f"SELECT w.*, w.site AS w_site, {alive('w')} AS alive FROM workers w {where}"
                " ORDER BY alive DESC, w.started_at", params).fetchall()
        return [_worker(r) for r in rows]

    # -- the worker's side -------------------------------------------------------------

    def register(self, site: str, max_parallel: int) -> WorkerInfo:
        """Become a worker of `site`: take this session's worker lock, write the row."""
        if self.worker is not None:
            return self.worker
        host, pid = socket.gethostname(), os.getpid()
        worker_id = f"{host}:{pid}:{secrets.token_hex(3)}"
        key = lock_key("worker", worker_id)
        classid, objid = halves(key)
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_lock(?)", (key,))  # session-level: held on
            now = self._server_now(conn)
            conn.execute(
                "INSERT INTO workers (worker_id, site, hostname, pid, max_parallel,"
                " lock_classid, lock_objid, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (worker_id, site, host, pid, max_parallel, classid, objid, now, now))
        self.worker = WorkerInfo(worker_id=worker_id, site=site, hostname=host, pid=pid,
                                 max_parallel=max_parallel, started_at=now, heartbeat_at=now,
                                 alive=True)
        return self.worker

    def _me(self) -> WorkerInfo:
        if self.worker is None:
            raise StateError("this queue connection is not a worker", hint="call register()")
        return self.worker

    def heartbeat(self) -> None:
        """Say this worker is alive and acting; StateError when its session is gone."""
        me = self._me()
        with self._tx() as conn:
            conn.execute("UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?",
                         (self._server_now(conn), me.worker_id))

    def unregister(self) -> None:
        """A clean stop: the row says so, the worker lock is released."""
        me = self._me()
        with self._tx() as conn:
            conn.execute("UPDATE workers SET stopped_at = ? WHERE worker_id = ?",
                         (self._server_now(conn), me.worker_id))
        with suppress(psycopg.Error):
            self._conn.execute("SELECT pg_advisory_unlock(?)", (lock_key("worker", me.worker_id),))
        self.worker = None

    def claim(self) -> Claim | None:
        """The next service of this worker's site, or None (nothing to do now, the site at
        its limit, or every campaign with work here stopped)."""
        me = self._me()
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("claims", me.site),))
            row = conn.execute(
                "SELECT q.campaign_run, q.service, q.wave, q.claims, c.site_limits FROM work_queue q"
                " JOIN work_campaigns c ON c.campaign_run = q.campaign_run"
                " JOIN runs r ON r.run_id = q.campaign_run"
                " WHERE q.site = ? AND r.status = 'running' AND c.stopped IS NULL"
                " AND q.wave = (SELECT MIN(q2.wave) FROM work_queue q2"
                f"  WHERE q2.campaign_run = q.campaign_run AND q2.state IN {_OPEN})"
                " AND (q.state = 'queued' OR (q.state = 'claimed' AND NOT EXISTS ("
                f"  SELECT 1 FROM workers w WHERE w.worker_id = q.worker_id AND {alive('w')})))"
                " ORDER BY c.enqueued_at, q.position LIMIT 1 FOR UPDATE OF q SKIP LOCKED",
                (me.site,)).fetchone()
            if row is None:
                return None
            limit = json.loads(row["site_limits"]).get(me.site)
            if limit is not None and self._in_flight(conn, me.site) >= int(limit):
                return None
            conn.execute("SELECT pg_advisory_xact_lock(?)",
                         (lock_key("queue", row["campaign_run"]),))
            if conn.scalar("SELECT stopped FROM work_campaigns WHERE campaign_run = ?",
                           (row["campaign_run"],)) is not None:
                return None  # stopped by a finish that committed while this waited
            claims = int(row["claims"]) + 1
            conn.execute(
                "UPDATE work_queue SET state = 'claimed', worker_id = ?, claims = ?,"
                " claimed_at = ? WHERE campaign_run = ? AND service = ?",
                (me.worker_id, claims, self._server_now(conn), row["campaign_run"],
                 row["service"]))
        return Claim(campaign_run=row["campaign_run"], service=row["service"], site=me.site,
                     wave=int(row["wave"]), claims=claims)

    def _in_flight(self, conn: PgConnection, site: str) -> int:
        return int(conn.scalar(
            "SELECT COUNT(*) FROM work_queue q JOIN workers w ON w.worker_id = q.worker_id"
            f" WHERE q.site = ? AND q.state = 'claimed' AND {alive('w')}", (site,)))

    def finish(self, claim: Claim, state: str, outcome: str, *, failed_hosts: int = 0
               ) -> bool:
        """Record how the claimed service ended (done, failed, deferred). False: it is no
        longer this worker's (it was taken over: this worker's session was lost), nothing
        recorded. Stops the campaign when its budget is spent or `on_failure: stop`."""
        if state not in ("done", "failed", "deferred"):
            raise BadInput(f"finish: unknown state {state!r}", hint="done, failed or deferred")
        me = self._me()
        run = claim.campaign_run
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE work_queue SET state = ?, outcome = ?, failed_hosts = ?, finished_at = ?"
                " WHERE campaign_run = ? AND service = ? AND state = 'claimed'"
                " AND worker_id = ? RETURNING stop_on_failure",
                (state, outcome, failed_hosts, self._server_now(conn), run, claim.service,
                 me.worker_id)).fetchone()
            if row is None:
                return False
            conn.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("queue", run),))
            why = None
            if state == "failed" and row["stop_on_failure"]:
                why = f"{claim.service} failed (on_failure: stop)"
            elif state == "failed":
                why = _budget_spent(conn, run)
            elif state == "deferred":
                why = f"deferred: {outcome}"
            if why is not None:
                conn.execute("UPDATE work_campaigns SET stopped = ? WHERE campaign_run = ?"
                             " AND stopped IS NULL", (why, run))
        return True


    def give_back(self, claim: Claim, why: str) -> bool:
        """The claimed service goes back to the queue, untouched by this worker (its run
        lock is held by a live holder: a worker whose queue session was lost but whose
        child still runs). False: it is no longer this worker's."""
        me = self._me()
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE work_queue SET state = 'queued', outcome = ? WHERE campaign_run = ?"
                " AND service = ? AND state = 'claimed' AND worker_id = ? RETURNING service",
                (why, claim.campaign_run, claim.service, me.worker_id)).fetchone()
        return row is not None


def _budget_spent(conn: PgConnection, run: str) -> str | None:
    """Why `run`'s failure budget is spent (counted over every worker), or None."""
    row = conn.execute(
        "SELECT c.max_failed_services AS max_services, c.max_failed_hosts_percent AS pct,"
        " c.hosts_total, (SELECT COUNT(*) FROM work_queue q WHERE q.campaign_run ="
        " c.campaign_run AND q.state = 'failed') AS failed, (SELECT COALESCE(SUM("
        "q.failed_hosts), 0) FROM work_queue q WHERE q.campaign_run = c.campaign_run)"
        " AS failed_hosts FROM work_campaigns c WHERE c.campaign_run = ?", (run,)).fetchone()
    if row is None:
        return None
    failed, hosts = int(row["failed"]), int(row["failed_hosts"])
    if row["max_services"] is not None and failed >= int(row["max_services"]):
        return (f"failure budget spent: {failed} failed services (max_failed_services: "
                f"{row['max_services']})")
    total = int(row["hosts_total"])
    if row["pct"] is not None and total and hosts * 100 >= int(row["pct"]) * total:
        return (f"failure budget spent: {hosts} of {total} hosts failed "
                f"(max_failed_hosts_percent: {row['pct']})")
    return None


def _worker(row: Mapping[str, Any]) -> WorkerInfo:
    return WorkerInfo(worker_id=row["worker_id"], site=row["w_site"], hostname=row["hostname"],
                      pid=int(row["pid"]), max_parallel=int(row["max_parallel"]),
                      started_at=row["started_at"], heartbeat_at=row["heartbeat_at"],
                      alive=bool(row["alive"]), stopped_at=row["stopped_at"])
