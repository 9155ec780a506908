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
