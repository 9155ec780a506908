"""`bluegreen worker --site NAME`: one orchestrator machine's share of campaigns run by
workers (issue 24). Until asked to stop it registers in the store's work queue (its
session advisory lock is its liveness), heartbeats, claims services of its site while it
has room (`max_parallel`), and runs each in a thread of its own (its own store connection
and router, the site's reach); the queue connection is used by the loop's thread only.

Stopping (SIGTERM, `stop` set): no new claims; the services in flight run to their end
(a rollout is not cut in the middle by a stop: systemd's TimeoutStopSec must allow for
it), then the worker unregisters. When the queue fails (its session lost), the same: no
new claims, the services in flight run to their end, then the error is raised (non-zero
exit). A claimed service whose run lock a live holder has (a worker that lost its queue
session, its child still running) is given back to the queue, not failed. A worker killed -9 instead loses its session: another
worker of the site takes its services over and resumes their children from the journal.
"""

from __future__ import annotations

import queue as threads_queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.campaign.child import RolloutFactory
from orchestrator.campaign.events import CampaignEvent
from orchestrator.config.loaded import LoadedConfig
from orchestrator.inventory import Fleet
from orchestrator.routers.base import Router
from orchestrator.state.queue import Claim, WorkQueue, open_work_queue
from orchestrator.worker.service import Served, serve

HEARTBEAT_S = 5.0
POLL_S = 1.0


@dataclass(frozen=True)
class WorkerEvent:
    """Progress for the CLI. kind: started | claimed | step | finished | stopping |
    stopped | warning."""

    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(UTC)


class Worker:
    """One worker process of one site. Build it, then `run()` until `stop` is set."""

    def __init__(self, config: LoadedConfig, site: str, *, max_parallel: int = 1,
                 on_event: Callable[[WorkerEvent], None] | None = None,
                 stop: threading.Event | None = None, poll_s: float = POLL_S,
                 heartbeat_s: float = HEARTBEAT_S, clock: Callable[[], datetime] = _now,
                 rollouts: RolloutFactory | None = None,
                 routers: Callable[[LoadedConfig], Router] | None = None,
                 fleet: Fleet | None = None) -> None:
        self.view = config.for_site(site)  # BadInput: a site without services
        self.site = site
        self.max_parallel = max_parallel
        self.on_event = on_event or (lambda _e: None)
        self.stop = stop or threading.Event()
        self.poll_s = poll_s
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self._rollouts = rollouts
        self._routers = routers
        self._fleet = fleet
        self._done: threads_queue.Queue[tuple[Claim, Served]] = threads_queue.Queue()
        self._emit_lock = threading.Lock()
        self._paused_until = 0.0
        """No claims before (monotonic): a service was just given back to the queue."""

    def run(self) -> int:
        """Serve until `stop` is set and the services in flight ended; the number of
        services this worker ended."""
        from orchestrator.inventory import load_fleet

        fleet = self._fleet or load_fleet(self.view)  # BadInput before registering
        work = open_work_queue(self.view.state, what="bluegreen worker")
        served = 0
        try:
            me = work.register(self.site, self.max_parallel)
            self._emit("started", f"worker {me.worker_id} of site {self.site} "
                       f"(max_parallel {self.max_parallel})", me.as_dict())
            in_flight: dict[str, threading.Thread] = {}
            try:
                served = self._serve_until_stopped(work, in_flight, fleet)
            except Exception as exc:
                self._drain(me.worker_id, in_flight, exc)
                raise
            work.unregister()
            self._emit("stopped", f"worker {me.worker_id} stopped; {served} services served",
                       {"served": served})
        finally:
            work.close()
        return served

    def _serve_until_stopped(self, work: WorkQueue, in_flight: dict[str, threading.Thread],
                             fleet: Fleet) -> int:
        served = 0
        beat = time.monotonic()
        while True:
            served += self._collect(work, in_flight)
            if time.monotonic() - beat >= self.heartbeat_s:
                work.heartbeat()
                beat = time.monotonic()
            if self.stop.is_set():
                if not in_flight:
                    return served
            else:
                self._claim_more(work, in_flight, fleet)
            self.stop.wait(self.poll_s) if not in_flight else self._wait_one(in_flight)

    def _drain(self, worker_id: str, in_flight: dict[str, threading.Thread],
               exc: Exception) -> None:
        """The queue failed (its session lost, the server restarted): claim nothing more,
        let the services in flight run to their end (their children hold their run locks
        on sessions of their own; what they did is in the runs, journal and audit), then
        the caller raises. What they ended cannot be recorded in the queue: the worker
        that takes them over finds their children ended and records that."""
        self._emit("stopping", f"worker {worker_id}: the work queue failed "
                   f"({type(exc).__name__}: {exc}); claiming nothing more, waiting for "
                   f"{len(in_flight)} services in flight", {"in_flight": sorted(in_flight)})
        for thread in list(in_flight.values()):
            thread.join()
        while not self._done.empty():
            claim, out = self._done.get_nowait()
            self._emit("finished", f"{claim.service}: {out.state}: {out.outcome} (not "
                       "recorded in the queue: it failed)",
                       {"service": claim.service, "state": out.state,
                        "outcome": out.outcome, "recorded": False})

    def _claim_more(self, work: WorkQueue, in_flight: dict[str, threading.Thread],
                    fleet: Fleet) -> None:
        if time.monotonic() < self._paused_until:
            return
        while len(in_flight) < self.max_parallel and not self.stop.is_set():
            claim = work.claim()
            if claim is None:
                return
            how = "took over" if claim.takeover else "claimed"
            self._emit("claimed", f"{claim.service}: {how} (campaign run {claim.campaign_run}, "
                       f"wave {claim.wave + 1}, claim {claim.claims})",
                       {"service": claim.service, "campaign_run": claim.campaign_run,
                        "takeover": claim.takeover})
            thread = threading.Thread(target=self._serve, args=(claim, fleet),
                                      name=f"worker-{claim.service}", daemon=True)
            in_flight[claim.service] = thread
            thread.start()

    def _serve(self, claim: Claim, fleet: Fleet) -> None:
        try:
            out = serve(self.view, fleet, claim, on_event=self._child_event, clock=self.clock,
                        rollouts=self._rollouts, routers=self._routers)
        except BaseException as exc:  # noqa: BLE001 - a bug or a lost store: say, move on
            out = Served("failed", f"{type(exc).__name__}: {exc}")
        self._done.put((claim, out))

    def _wait_one(self, in_flight: dict[str, threading.Thread]) -> None:
        """Sleep until a service ends or the poll interval passed."""
        try:
            item = self._done.get(timeout=self.poll_s)
        except threads_queue.Empty:
            return
        self._done.put(item)

    def _collect(self, work: WorkQueue, in_flight: dict[str, threading.Thread]) -> int:
        """Finish the services whose threads ended; how many."""
        ended = 0
        while True:
            try:
                claim, out = self._done.get_nowait()
            except threads_queue.Empty:
                return ended
            in_flight.pop(claim.service).join()
            if out.state == "queued":  # a live holder has it: back to the queue, a pause
                work.give_back(claim, out.outcome)
                self._paused_until = time.monotonic() + self.poll_s
                self._emit("finished", f"{claim.service}: given back: {out.outcome}",
                           {"service": claim.service, "state": out.state,
                            "outcome": out.outcome, "recorded": False})
                continue
            mine = work.finish(claim, out.state, out.outcome, failed_hosts=out.failed_hosts)
            ended += 1
            note = "" if mine else " (no longer this worker's: taken over; nothing recorded)"
            self._emit("finished", f"{claim.service}: {out.state}: {out.outcome}{note}",
                       {"service": claim.service, "state": out.state,
                        "outcome": out.outcome, "recorded": mine})

    def _child_event(self, ev: CampaignEvent) -> None:
        self._emit("step", ev.message, ev.data)

    def _emit(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        with self._emit_lock:
            self.on_event(WorkerEvent(kind, message, data or {}))
