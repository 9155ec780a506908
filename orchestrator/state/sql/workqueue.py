"""The work queue of campaigns run by workers (issue 24): its tables and its typed rows.

The queue itself lives only in the PostgreSQL store (`state/postgresql/queue.py`: claims
with `FOR UPDATE SKIP LOCKED`, liveness by session advisory locks); the tables are created
on both backends so that the two schemas stay the same, and SQLite never fills them
(`--workers` is refused there). Queue rows are no record: what a worker did is in the runs,
the journal and the audit chain; a worker checks every claim against the campaign's
sealed run row before it acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ItemState = Literal["queued", "claimed", "done", "failed", "deferred"]
TERMINAL: tuple[ItemState, ...] = ("done", "failed", "deferred")

WORK_QUEUE: tuple[str, ...] = (
    # one row per campaign run handed to workers: its fleet-wide failure budget and the
    # per-site limits, and why no new service may start any more (stopped)
    """CREATE TABLE work_campaigns (
        campaign_run TEXT PRIMARY KEY, max_failed_services INTEGER,
        max_failed_hosts_percent INTEGER, hosts_total INTEGER NOT NULL,
        site_limits TEXT NOT NULL, enqueued_at TEXT NOT NULL, stopped TEXT)""",
    # one row per service of such a run: where it runs (site), its place (wave, position),
    # who claimed it, how often (claims: 2 and more are takeovers), and how it ended
    """CREATE TABLE work_queue (
        campaign_run TEXT NOT NULL REFERENCES work_campaigns (campaign_run),
        service TEXT NOT NULL, site TEXT NOT NULL, wave INTEGER NOT NULL,
        position INTEGER NOT NULL, hosts INTEGER NOT NULL,
        stop_on_failure INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued'
            CHECK (state IN ('queued', 'claimed', 'done', 'failed', 'deferred')),
        worker_id TEXT, claims INTEGER NOT NULL DEFAULT 0, claimed_at TEXT,
        outcome TEXT, failed_hosts INTEGER NOT NULL DEFAULT 0, finished_at TEXT,
        PRIMARY KEY (campaign_run, service))""",
    "CREATE INDEX work_queue_by_site ON work_queue (site, state)",
    # one row per worker process: its site and host, and the session advisory lock
    # (lock_key("worker", worker_id), as pg_locks shows it) that says it is alive
    """CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY, site TEXT NOT NULL, hostname TEXT NOT NULL,
        pid INTEGER NOT NULL, max_parallel INTEGER NOT NULL, lock_classid BIGINT NOT NULL,
        lock_objid BIGINT NOT NULL, started_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL,
        stopped_at TEXT)""",
)
"""The migration adding the work queue: SQLite's schema 7, PostgreSQL's schema 4."""


@dataclass(frozen=True)
class QueuedService:
    """One service handed to the workers."""

    service: str
    site: str
    wave: int
    hosts: int
    """Hosts of a side (what a failure costs the hosts budget)."""
    stop_on_failure: bool
    """Its wave's `on_failure: stop`: its failure stops the campaign."""


@dataclass(frozen=True)
class Budget:
    """When a campaign stops starting services, counted across all workers and waves."""

    max_failed_services: int | None = None
    max_failed_hosts_percent: int | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process as the store knows it."""

    worker_id: str
    site: str
    hostname: str
    pid: int
    max_parallel: int
    started_at: str
    heartbeat_at: str
    alive: bool
    """Its database session (and so its advisory lock) still exists."""
    stopped_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "site": self.site, "host": self.hostname,
                "pid": self.pid, "max_parallel": self.max_parallel,
                "started_at": self.started_at, "heartbeat_at": self.heartbeat_at,
                "alive": self.alive, "stopped_at": self.stopped_at}


@dataclass(frozen=True)
class Claim:
    """A service a worker claimed: run its child rollout, then `finish` it."""

    campaign_run: str
    service: str
    site: str
    wave: int
    claims: int
    """1: the first claim; more: a takeover from a worker that died."""

    @property
    def takeover(self) -> bool:
        return self.claims > 1


@dataclass(frozen=True)
class ItemStatus:
    """One queued service's state, and the worker that has (or had) it."""

    service: str
    site: str
    wave: int
    state: ItemState
    claims: int
    outcome: str | None
    worker: WorkerInfo | None

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "site": self.site, "wave": self.wave,
                "state": self.state, "claims": self.claims, "outcome": self.outcome,
                "worker": None if self.worker is None else {
                    "site": self.worker.site, "host": self.worker.hostname,
                    "pid": self.worker.pid, "alive": self.worker.alive}}
