"""Patch campaigns: advisories applied to many services in ordered waves, inside a
maintenance window, with approvals, deferral, resume and converge.

A campaign run is a run of kind "campaign" in the state store. Its journal holds one step
per service (`service:NAME`, begun with the child rollout's run id before that rollout is
created), the approval (`approval`, begun when the run reaches the approval point, ended by
`campaign approve`), deferrals and converges (`converge:NAME`), typed in `campaign.journal`.
Each service is patched by its own child run of kind "rollout" (`Rollout`, params
`campaign_run`). `resume` continues from the journal: finished services are skipped, a child
in flight is resumed with `Rollout.resume` (also after kill -9).

Rules kept here:
- no flip outside the window: the child's `may_flip` hook checks the window (and manual
  approval) right before the flip; a refused flip leaves the patched+verified standby as
  it is, the child "deferred", and the rest of the campaign deferred (exit 6);
- services are touched by one run at a time: the campaign refuses (LockHeld, exit 5) when a
  service is locked or belongs to another unfinished campaign;
- the campaign itself holds the lock `campaign:NAME` while a process drives it.

This module holds the entry points (start, resume, `run --continue`) and one run's life:
its lock, its params, its webhooks, how it ends. `campaign.scheduler` runs the waves,
`campaign.child` each service's child rollout, `campaign.converge` the old sides after
the retention period; `campaign.context` is what they share while a process drives a run.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.campaign.child import ChildRuns, RolloutFactory
from orchestrator.campaign.context import RunContext
from orchestrator.campaign.converge import converge_due
from orchestrator.campaign.events import (
    AWAITING,
    Aborted,
    CampaignEvent,
    CampaignResult,
    campaign_lock,
    emit,
    now_utc,
    window_note,
)
from orchestrator.campaign.model import (
    Campaign,
    campaign_from_dict,
    load_campaign,
)
from orchestrator.campaign.runs import (
    NothingToContinue,
    RunningElsewhere,
    run_to_continue,
    running_elsewhere,
)
from orchestrator.campaign.scheduler import WaveScheduler
from orchestrator.campaign.state import check_conflicts, service_states
from orchestrator.campaign.waves import resolve_waves
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BadInput, BluegreenError, LockHeld
from orchestrator.inventory import Fleet
from orchestrator.notify import Notifier
from orchestrator.routers.base import Router
from orchestrator.schedule.window import window_state
from orchestrator.secrets import safe_url
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, Run
from orchestrator.state.registry import StateLocation
from orchestrator.traffic.failpoints import Crash

__all__ = ["AWAITING", "CampaignEvent", "CampaignResult", "CampaignRunner", "campaign_lock"]

_SETTLE_ATTEMPTS = 40
_SETTLE_DELAY_S = 0.25
"""`run --continue` losing the lock race to a holder whose lock row is not committed yet
looks again this often (10 s in all) before it reports the lock as held."""


class CampaignRunner:
    """Drives one campaign run. Build it, then `start(campaign, file)` or `resume(run)`."""

    def __init__(
        self,
        config: LoadedConfig,
        store: StateStore,
        router: Router,
        *,
        actor: str,
        on_event: Callable[[CampaignEvent], None] | None = None,
        wait_for_window: bool = False,
        clock: Callable[[], datetime] = now_utc,
        fleet: Fleet | None = None,
        rollouts: RolloutFactory | None = None,
        workers: bool = False,
    ) -> None:
        if workers:  # before anything changes: the queue needs the shared store
            from orchestrator.state.queue import check_shared

            check_shared(config.state)
        self.workers = workers
        """Hand the services to the workers of their sites (`campaign.queued`) instead of
        patching them here."""
        self._site_fleets: dict[str, Fleet] = {}
        self.config = config
        self._fleet = fleet  # the inventory, parsed once for the command (here if not given)
        self._rollouts = rollouts
        self.store = store
        self.router = router
        self.actor = actor
        self.on_event = on_event or (lambda _e: None)
        self.wait_for_window = wait_for_window
        self.clock = clock
        self._stop = threading.Event()

    @property
    def fleet(self) -> Fleet:
        if self._fleet is None:
            from orchestrator.inventory import load_fleet

            self._fleet = load_fleet(self.config)
        return self._fleet

    def site_fleet(self, site: str) -> Fleet:
        """The inventory of `site` (the command's own unless the site has one of its own)."""
        own = self.config.model.sites.get(site)
        if own is None or own.inventory is None:
            return self.fleet
        if site not in self._site_fleets:
            from orchestrator.inventory import load_fleet

            self._site_fleets[site] = load_fleet(self.config.for_site(site))
        return self._site_fleets[site]

    def _fleet_of(self, service: str) -> Fleet:
        return self.site_fleet(self.config.site_of(service))

    # ---- entry points ------------------------------------------------------------------
    def run(self, campaign: Campaign, file: str, *, continue_run: bool = False
            ) -> CampaignResult | NothingToContinue | RunningElsewhere:
        """`campaign run FILE`: a new run; with `continue_run` (`--continue`, what timers
        run) the campaign's unfinished run is resumed, nothing happens once its last run
        ended (NothingToContinue), and a run another live process drives is left to it
        (RunningElsewhere)."""
        attempts = _SETTLE_ATTEMPTS if continue_run else 1
        for attempt in range(attempts):
            earlier = run_to_continue(self.store, campaign.name, file) if continue_run else None
            if isinstance(earlier, NothingToContinue):
                return earlier
            try:
                return self.resume(earlier) if earlier else self.start(campaign, Path(file))
            except LockHeld:
                # timers of several machines fire together: one runs the window, the rest
                # say who. The winner holds the lock a moment before its lock row and run
                # are committed: until they are, look again (its row, its run, or its end).
                elsewhere = running_elsewhere(self.store, campaign.name) if continue_run else None
                if elsewhere is not None:
                    return elsewhere
                if attempt + 1 >= attempts:
                    raise
                time.sleep(_SETTLE_DELAY_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def start(self, campaign: Campaign, source: Path) -> CampaignResult:
        waves = resolve_waves(campaign, self.config, self.fleet)
        services = [s for w in waves for s in w]
        self._check_reach(services, self.workers)
        check_conflicts(self.store, campaign.name, services, own_run=None)
        run_id = f"campaign-{campaign.name}-{now_utc():%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
        self.store.acquire_lock(campaign_lock(campaign.name), run_id)
        params = {
            "name": campaign.name,
            "file": str(source.resolve()),
            "config": str(self.config.path),
            "campaign": storable(campaign),
            "webhooks_sha256": webhooks_digest(campaign.notify.webhooks),
            "waves": waves,
            **({"workers": True} if self.workers else {}),  # run by the sites' workers
        }
        try:
            run = self.store.create_run(  # a start interleaved with another leaves one run
                run_id, "campaign", None, params, self.actor, reason=f"campaign {campaign.name}",
                exclusive_of={"name": campaign.name},
            )
        except BaseException:
            self.store.release_lock(campaign_lock(campaign.name), run_id)
            raise
        return self._drive(run, resumed=False, webhooks=list(campaign.notify.webhooks))

    def resume(self, run: Run) -> CampaignResult:
        if run.status not in RESUMABLE_STATUSES:
            raise BadInput(
                f"campaign run {run.run_id} already ended ({run.status})",
                hint="start a new run with `bluegreen campaign run FILE`",
            )
        name = str(run.params["name"])
        services = [s for w in run.params["waves"] for s in w]
        self._check_reach(services, self.workers or bool(run.params.get("workers")))
        check_conflicts(self.store, name, services, own_run=run.run_id)
        self.store.acquire_lock(campaign_lock(name), run.run_id)  # takes over a dead holder
        from orchestrator.patching.ssh import remove_stale_run_dirs

        remove_stale_run_dirs()  # what the killed run left: its ansible-runner artifacts
        return self._drive(run, resumed=True, webhooks=self._stored_webhooks(run))

    def _check_reach(self, services: Sequence[str], workers: bool) -> None:
        """Run here (no workers), every service is patched, probed and flipped with this
        config's top-level inventory, ssh and router: BadInput (exit 2, before anything
        changes) for a service of a site with reach of its own."""
        if workers:
            return
        reach = set(self.config.sites_with_reach)
        for svc in services:
            site = self.config.site_of(svc)
            if site in reach:
                raise BadInput(
                    f"{self.config.path}: services.{svc}.site: site {site!r} has its own "
                    f"inventory, ssh or router (sites.{site}); a campaign run on this one "
                    f"machine would patch and flip {svc} with the top-level ones",
                    hint=f"run it with --workers and `bluegreen worker --site {site}` on a "
                    f"machine of {site}, or leave {svc} out of this campaign",
                )

    # ---- the campaign ------------------------------------------------------------------
    def _stored_webhooks(self, run: Run) -> list[str]:
        """The webhooks of a run being resumed. The store keeps only their scheme and host
        (URLs often carry tokens), so they are read again from the campaign file, and used
        only if they are the very URLs the run started with."""
        digest = run.params.get("webhooks_sha256")
        if not digest:
            return []
        try:
            urls = list(load_campaign(str(run.params["file"])).notify.webhooks)
        except (BluegreenError, KeyError):
            urls = []
        if webhooks_digest(urls) == digest:
            return urls
        self._emit("warning", f"webhooks not called on this resume: {run.params.get('file')} "
                   "is gone or its webhooks changed since the run started", {})
        return []

    def _drive(self, run: Run, *, resumed: bool, webhooks: list[str]) -> CampaignResult:
        campaign = campaign_from_dict(run.params["campaign"], f"campaign run {run.run_id}")
        if resumed:
            # a resume keeps the window (and everything else) the run started with: say so
            self._emit("info", "resumed with the window the run started with: "
                       + window_note(window_state(campaign.window, self.clock())))
        waves: list[list[str]] = run.params["waves"]
        total = sum(len(w) for w in waves)
        hosts_total = sum(len(self._fleet_of(s).service(s).blue) for w in waves for s in w)
        result = CampaignResult(run.run_id, campaign.name, "running", "", 0)
        notifier = Notifier(
            webhooks,
            timeout=campaign.notify.timeout_seconds,
            retries=campaign.notify.retries,
            campaign=campaign.name,
            run_id=run.run_id,
            audit_head=partial(audit_head_text, self.config.state),
        )
        ctx = RunContext(self.config, self.store, self.router, fleet=self.fleet,
                         actor=self.actor, clock=self.clock, on_event=self.on_event,
                         notifier=notifier)
        scheduler = WaveScheduler(ctx, ChildRuns(ctx, self._rollouts), hosts_total=hosts_total,
                                  wait_for_window=self.wait_for_window, stop=self._stop)
        if self.workers or run.params.get("workers"):  # also on resume, as it started
            from orchestrator.campaign.queued import QueueScheduler

            scheduler = QueueScheduler(ctx, ChildRuns(ctx, self._rollouts),
                                       fleets=self.site_fleet, hosts_total=hosts_total,
                                       wait_for_window=self.wait_for_window, stop=self._stop)
        crashed = False
        notifier.send("started", resumed=resumed, services=total, waves=len(waves))
        try:
            scheduler.run_waves(run, campaign, waves, result)
            if result.status == "running" and campaign.retention.converge:
                converge_due(ctx, run, campaign, waves, result)
            if result.status == "running":
                result.status, result.exit_code = "done", 0
                result.message = f"campaign {campaign.name}: {total} services patched"
                self.store.finish_run(run.run_id, "done", result.message)
                states = service_states(self.store, run.run_id, waves)
                notifier.send("done", services={n: st.as_dict() for n, st in states.items()})
        except Aborted as exc:
            result.status, result.message, result.exit_code = "aborted", str(exc), 1
        except Crash:  # a simulated kill -9 (tests): no cleanup at all
            crashed = True
            raise
        except BaseException as exc:  # bugs, Ctrl-C: the journal allows `campaign resume`
            if isinstance(exc, BluegreenError):
                result.exit_code = exc.exit_code
            notifier.send("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            notifier.close()
            lock = None if crashed else self.store.get_lock(campaign_lock(campaign.name))
            if lock is not None and lock.run_id == run.run_id:
                self.store.release_lock(campaign_lock(campaign.name), run.run_id)
        result.services = service_states(self.store, run.run_id, waves)
        return result

    def _emit(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        emit(self.on_event, kind, message, data)


# ---- the run's params --------------------------------------------------------------------


def storable(campaign: Campaign) -> dict[str, Any]:
    """The campaign as kept in the run's params (and so in the audit chain and `history
    --json`): webhook URLs reduced to scheme and host, since they often carry tokens."""
    doc = campaign.model_dump(mode="json")
    doc["notify"]["webhooks"] = [safe_url(u) for u in campaign.notify.webhooks]
    return doc


def webhooks_digest(urls: Sequence[str]) -> str | None:
    """sha256 of the webhook URLs (None: there are none): lets a resume check that the
    campaign file still has the URLs the run started with, without storing them."""
    if not urls:
        return None
    return hashlib.sha256(json.dumps(list(urls)).encode()).hexdigest()


def audit_head_text(location: StateLocation) -> str | None:
    """The audit head as SEQ:HASH, for webhook events (a witness outside the store)."""
    from orchestrator.state.registry import read_head

    head = read_head(location)
    return None if head is None else f"{head.count}:{head.head_hash}"
