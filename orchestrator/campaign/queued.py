"""A campaign run by workers (`campaign run --workers`, issue 24): instead of patching its
services itself, the run hands them to the work queue of the shared PostgreSQL store and
waits until they ended, wherever they ran. Waves, windows, approvals and `on_failure` keep
their meaning: workers claim only the first wave with services left, start a service only
inside the window, ask for the approval and the window right before each flip; a failure
in a wave with `on_failure: stop`, or the campaign's fleet-wide failure budget, stops new
claims in the store (services in flight end). A site whose services wait and that has no
live worker is reported; after `workers.no_worker_deadline` the run is deferred or fails
(`workers.on_no_worker`). The run ends as a one-machine run does, with the same statuses
and exit codes, from the journal the workers' children wrote."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from orchestrator.campaign.child import ChildRuns
from orchestrator.campaign.context import RunContext
from orchestrator.campaign.events import Aborted, CampaignResult
from orchestrator.campaign.journal import APPROVAL, Journal, Step
from orchestrator.campaign.model import Campaign
from orchestrator.campaign.scheduler import WaveScheduler
from orchestrator.inventory import Fleet
from orchestrator.state.models import Run
from orchestrator.state.queue import Budget, ItemStatus, QueuedService, WorkQueue, open_work_queue
from orchestrator.state.registry import StateLocation

POLL_S = 1.0


class QueueScheduler(WaveScheduler):
    """`WaveScheduler.run_waves` through the workers of each service's site."""

    poll_s = POLL_S
    """How often the queue is read while the workers run the services."""

    def __init__(self, ctx: RunContext, children: ChildRuns, *, hosts_total: int,
                 wait_for_window: bool, stop: threading.Event,
                 fleets: Callable[[str], Fleet]) -> None:
        super().__init__(ctx, children, hosts_total=hosts_total,
                         wait_for_window=wait_for_window, stop=stop)
        self._fleets = fleets

    def run_waves(self, run: Run, campaign: Campaign, waves: list[list[str]],
                  result: CampaignResult) -> None:
        ctx = self.ctx
        if campaign.approval.mode == "manual" and campaign.approval.at == "before_patch":
            if not self._approved(run):
                return self._await_approval(run, campaign, result)
        work = open_work_queue(ctx.config.state)
        try:
            self._enqueue(work, run, campaign, waves)
            self._wait(work, run, campaign, result)
        finally:
            work.close()
        return None

    def _enqueue(self, work: WorkQueue, run: Run, campaign: Campaign,
                 waves: list[list[str]]) -> None:
        config = self.ctx.config
        queued = []
        for wi, names in enumerate(waves):
            stop = campaign.waves[wi].on_failure == "stop"
            queued.append([QueuedService(
                service=svc, site=config.site_of(svc), wave=wi, stop_on_failure=stop,
                hosts=len(self._fleets(config.site_of(svc)).service(svc).blue))
                for svc in names])
        limits = {name: site.max_parallel for name, site in config.model.sites.items()
                  if site.max_parallel is not None}
        b = campaign.workers.budget
        left = work.enqueue(run.run_id, queued, site_limits=limits, budget=Budget(
            b.max_failed_services, b.max_failed_hosts_percent))
        sites = sorted({s.site for wave in queued for s in wave})
        self.ctx.emit("info", f"{left} services handed to the workers of "
                      f"{', '.join(sites)}", {"sites": sites, "services": left})

    def _wait(self, work: WorkQueue, run: Run, campaign: Campaign,
              result: CampaignResult) -> None:
        ctx = self.ctx
        seen: dict[str, tuple[str, str | None]] = {}
        orphaned: dict[str, float] = {}  # site -> since when its waiting services had no worker
        deadline = campaign.workers.no_worker_deadline.total_seconds()
        while True:
            try:
                ctx.check_not_aborted(run.run_id)
            except Aborted:
                work.stop(run.run_id, "aborted")  # workers start nothing more of it
                raise
            items = work.items(run.run_id)
            self._report(items, seen)
            open_items = [i for i in items if i.state in ("queued", "claimed")]
            running = [i for i in open_items if i.state == "claimed" and i.worker is not None
                       and i.worker.alive]
            stopped = work.stopped(run.run_id)
            if not open_items or (stopped is not None and not running):
                return self._end(run, campaign, items, stopped, result)
            late = self._sites_without_workers(work, open_items, orphaned)
            over = [site for site in late if time.monotonic() - orphaned[site] >= deadline]
            if over:
                why = (f"no live worker of site {', '.join(over)} for "
                       f"{campaign.workers.no_worker_deadline}")
                work.stop(run.run_id, f"deferred: {why}")
                if campaign.workers.on_no_worker == "fail":
                    return ctx.fail(run.run_id, f"campaign {campaign.name}: {why} "
                                    "(on_no_worker: fail)", 1, result)
                rest = [i.service for i in open_items]
                return self._defer(run, rest, why, result)
            self._stop.wait(self.poll_s)

    def _sites_without_workers(self, work: WorkQueue, open_items: list[ItemStatus],
                               orphaned: dict[str, float]) -> list[str]:
        """Sites of the first open wave's waiting services with no live worker (each
        reported once), and since when (`orphaned`)."""
        first = min(i.wave for i in open_items)
        waiting = {i.site for i in open_items if i.wave == first and not (
            i.state == "claimed" and i.worker is not None and i.worker.alive)}
        live = {w.site for w in work.workers() if w.alive}
        late = sorted(waiting - live)
        for site in late:
            if site not in orphaned:
                orphaned[site] = time.monotonic()
                self.ctx.emit("warning", f"site {site} has no live worker: its services wait "
                              "(start `bluegreen worker --site " + site + "` on a machine of "
                              "that site)", {"site": site})
        for site in set(orphaned) - set(late):
            del orphaned[site]
        return late

    def _report(self, items: list[ItemStatus], seen: dict[str, tuple[str, str | None]]) -> None:
        for item in items:
            who = item.worker.worker_id if item.worker else None
            if seen.get(item.service) == (item.state, who):
                continue
            seen[item.service] = (item.state, who)
            if item.state == "queued":
                continue
            where = (f" by worker {item.worker.hostname} pid {item.worker.pid} (site "
                     f"{item.site})" if item.worker else "")
            again = " (taken over)" if item.state == "claimed" and item.claims > 1 else ""
            text = item.outcome if item.state != "claimed" else "running"
            self.ctx.emit("service", f"{item.service}: {item.state}{where}{again}: {text}",
                          {"service": item.service, **item.as_dict()})

    def _end(self, run: Run, campaign: Campaign, items: list[ItemStatus], stopped: str | None,
             result: CampaignResult) -> None:
        """How the run ends, from the journal the children wrote (as on one machine)."""
        ctx = self.ctx
        ends = Journal(ctx.store, run.run_id).ended()
        failures = [(i.service, ends.get(Step.of_service(i.service), {}))
                    for i in items if i.state == "failed"]
        first = next((int(end.get("exit_code") or 1) for _, end in failures), 1)
        named = ", ".join(f"{svc} {end.get('status', 'failed')}" for svc, end in failures)
        if stopped is not None and not stopped.startswith("deferred"):
            return ctx.fail(run.run_id, f"campaign {campaign.name}: {named}; stopping "
                            f"({stopped})", first, result)
        deferred = [i.service for i in items if i.state in ("deferred", "queued")]
        if deferred:
            if (campaign.approval.mode == "manual" and campaign.approval.at == "before_flip"
                    and APPROVAL not in Journal(ctx.store, run.run_id).ended()):
                return self._await_approval(run, campaign, result)
            return self._defer(run, deferred, "the window closed before the flip", result)
        if failures:
            return ctx.fail(run.run_id, f"campaign {campaign.name}: finished with failures "
                            f"(on_failure: continue): {named}", first, result)
        return None


@dataclass(frozen=True)
class QueueView:
    """Who runs what in a run by workers, as `campaign status` shows it."""

    workers: dict[str, dict[str, Any]]
    """service -> {site, host, pid, alive} of the worker that has (had) it."""
    sites: dict[str, dict[str, Any]]
    """site -> {live_workers, waiting}: a site whose services wait without a live worker
    is what `campaign status` warns about."""


def queue_view(location: StateLocation, run: Run) -> QueueView | None:
    """The queue's view of `run` (None: the run is not one by workers)."""
    if not run.params.get("workers"):
        return None
    with closing(open_work_queue(location, what="campaign status of a run by workers")) as work:
        items = work.items(run.run_id)
        live: dict[str, int] = {}
        for worker in work.workers():
            if worker.alive:
                live[worker.site] = live.get(worker.site, 0) + 1
    sites: dict[str, dict[str, Any]] = {}
    for item in items:
        site = sites.setdefault(item.site, {"live_workers": live.get(item.site, 0),
                                            "waiting": 0})
        if item.state == "queued" or (item.state == "claimed" and not (
                item.worker is not None and item.worker.alive)):
            site["waiting"] += 1
    workers = {i.service: i.as_dict()["worker"] for i in items if i.worker is not None}
    return QueueView(workers=workers, sites=sites)
