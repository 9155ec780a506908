"""The work queue of campaigns run by workers, by store URL: PostgreSQL only.

Workers on several machines need one shared queue, lock service and record: the team
store. A SQLite file belongs to one machine, so `--workers` and `bluegreen worker` are
refused there with the fix. psycopg is imported only when a queue is opened.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.errors import BadInput
from orchestrator.state.registry import StateLocation
from orchestrator.state.sql.workqueue import (
    Budget,
    Claim,
    ItemStatus,
    QueuedService,
    WorkerInfo,
)

__all__ = ["Budget", "Claim", "ItemStatus", "QueuedService", "WorkQueue", "WorkerInfo",
           "check_shared", "open_work_queue"]
_QUEUE_MODULE = "orchestrator.state.postgresql.queue"


class WorkQueue(Protocol):
    """`orchestrator.state.postgresql.queue.PgWorkQueue`: see there for the rules."""

    worker: WorkerInfo | None

    def close(self) -> None: ...
    def enqueue(self, campaign_run: str, waves: Sequence[Sequence[QueuedService]], *,
                budget: Budget, site_limits: Mapping[str, int]) -> int: ...
    def stop(self, campaign_run: str, why: str) -> None: ...
    def stopped(self, campaign_run: str) -> str | None: ...
    def items(self, campaign_run: str) -> list[ItemStatus]: ...
    def workers(self, site: str | None = None) -> list[WorkerInfo]: ...
    def register(self, site: str, max_parallel: int) -> WorkerInfo: ...
    def heartbeat(self) -> None: ...
    def unregister(self) -> None: ...
    def claim(self) -> Claim | None: ...
    def finish(self, claim: Claim, state: str, outcome: str, *, failed_hosts: int = 0
               ) -> bool: ...
    def give_back(self, claim: Claim, why: str) -> bool: ...


def open_work_queue(location: StateLocation, *, what: str = "--workers") -> WorkQueue:
    """The queue in the store at `location`; BadInput (exit 2) for a SQLite store."""
    check_shared(location, what=what)
    module = importlib.import_module(_QUEUE_MODULE)  # psycopg: only now, only here
    queue: WorkQueue = module.PgWorkQueue(location.url, label=location.label)
    return queue


def check_shared(location: StateLocation, *, what: str = "--workers") -> None:
    """BadInput (exit 2) unless the store at `location` can hold the queue: before a
    command that needs one changes anything."""
    if location.scheme != "postgresql":
        raise BadInput(
            f"{what} needs the shared PostgreSQL store (team mode); the state store here is "
            f"the SQLite file {location.label}, which only this machine sees",
            hint="set `state.url: postgresql://USER@HOST/DB` in bluegreen.yml on every machine "
            "(README: Team mode), or run the campaign on this machine without --workers",
        )
