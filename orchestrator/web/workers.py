"""Workers in the views (issue 24): per site, its live workers (host, pid, heartbeat age,
the services each has claimed), its share of the queue of the campaigns run by workers,
and whether such a campaign waits on the site with no live worker there.

Read from the work queue of the shared PostgreSQL store (`state.queue`), read only: no
claim, no lock. A SQLite store has no workers: the views show none (no error).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.state.audit import parse_ts
from orchestrator.state.models import Run
from orchestrator.state.queue import ItemStatus, open_work_queue
from orchestrator.state.registry import StateLocation

QUEUE_STATES = ("queued", "claimed", "done", "failed", "deferred")

WorkersReader = Callable[[list[Run], datetime], "list[SiteWorkers]"]
"""Reads the sites' workers, given the store's runs (oldest first) and the time now."""


@dataclass(frozen=True)
class WorkerView:
    worker_id: str
    host: str
    pid: int
    max_parallel: int
    heartbeat_age_s: float
    """Seconds since its last heartbeat (the store's clock against this machine's)."""
    claimed: list[str] = field(default_factory=list)
    """Services it has claimed and not finished, in campaigns still running."""


@dataclass(frozen=True)
class SiteWorkers:
    site: str
    workers: list[WorkerView]
    """Its live workers (their database session is there)."""
    waiting: int
    """Services of running campaigns by workers that wait for a worker of this site
    (queued, or claimed by a worker that died)."""
    queue: dict[str, int]
    """Services of running campaigns by workers, per queue state."""

    @property
    def unserved(self) -> bool:
        """A campaign waits on this site and no worker of it is live."""
        return self.waiting > 0 and not self.workers

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "unserved": self.unserved}


def reader(location: StateLocation) -> WorkersReader | None:
    """The reader for the store at `location`; None for a store without workers (SQLite)."""
    if location.scheme != "postgresql":
        return None

    def read(runs: list[Run], now: datetime) -> list[SiteWorkers]:
        return read_workers(location, runs, now)

    return read


def read_workers(location: StateLocation, runs: list[Run], now: datetime
                 ) -> list[SiteWorkers]:
    running = [r for r in runs if r.kind == "campaign" and r.params.get("workers")
               and r.status == "running"]
    with closing(open_work_queue(location, what="the workers' view")) as work:
        live = [w for w in work.workers() if w.alive]
        items = [i for r in running for i in work.items(r.run_id)]
    claimed: dict[str, list[str]] = {}
    for item in items:
        if item.state == "claimed" and item.worker is not None:
            claimed.setdefault(item.worker.worker_id, []).append(item.service)
    sites = sorted({w.site for w in live} | {i.site for i in items})
    out = []
    for site in sites:
        mine = [i for i in items if i.site == site]
        out.append(SiteWorkers(
            site=site,
            workers=[WorkerView(worker_id=w.worker_id, host=w.hostname, pid=w.pid,
                                max_parallel=w.max_parallel,
                                heartbeat_age_s=_age(w.heartbeat_at, now),
                                claimed=claimed.get(w.worker_id, []))
                     for w in live if w.site == site],
            waiting=sum(1 for i in mine if _waiting(i)),
            queue={state: sum(1 for i in mine if i.state == state) for state in QUEUE_STATES},
        ))
    return out


def _waiting(item: ItemStatus) -> bool:
    return item.state == "queued" or (item.state == "claimed" and not (
        item.worker is not None and item.worker.alive))


def _age(at: str, now: datetime) -> float:
    return round(max(0.0, (now - parse_ts(at)).total_seconds()), 3)
