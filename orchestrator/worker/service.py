"""One claimed service, run by a worker: checked against the campaign's sealed run row,
then patched through its child rollout exactly as a one-machine campaign does
(`campaign.child.ChildRuns`: the `service:NAME` step of the campaign's journal, the child
started, or resumed after a takeover under the service's run lock with a new fencing
epoch), with the site's reach (the config's site view) and this thread's own store and
router."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from orchestrator.campaign.child import ChildRuns, RolloutFactory
from orchestrator.campaign.context import RunContext
from orchestrator.campaign.events import CampaignEvent
from orchestrator.campaign.journal import APPROVAL, Journal, Outcome
from orchestrator.campaign.model import Campaign, campaign_from_dict
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import LockHeld
from orchestrator.inventory import Fleet
from orchestrator.notify import Notifier
from orchestrator.routers.base import Router
from orchestrator.schedule.window import window_state
from orchestrator.state.base import StateStore
from orchestrator.state.models import Run
from orchestrator.state.queue import Claim


@dataclass(frozen=True)
class Served:
    """How a claimed service ended, for `WorkQueue.finish`."""

    state: str
    """done | failed | deferred | queued (given back: another live holder has the
    service's run lock)"""
    outcome: str
    failed_hosts: int = 0


def serve(view: LoadedConfig, fleet: Fleet, claim: Claim, *,
          on_event: Callable[[CampaignEvent], None], clock: Callable[[], datetime],
          rollouts: RolloutFactory | None = None,
          routers: Callable[[LoadedConfig], Router] | None = None) -> Served:
    """Run the claimed service's child rollout; how it ended. Never raises for the
    service's own failures (they are its outcome); a claim this worker must not act on
    (not a running campaign run of this store, not a service of this site) is failed
    without touching anything."""
    from orchestrator.traffic import store_and_router

    with store_and_router(view, routers) as (store, router):
        run = store.get_run(claim.campaign_run)  # its seal is checked: a forged row raises
        refused = _refusal(view, run, claim)
        if refused is not None or run is None:
            return Served("failed", refused or "no such run")
        campaign = campaign_from_dict(run.params["campaign"], f"campaign run {run.run_id}")
        window = window_state(campaign.window, clock())
        if not window.open:  # patching starts only inside the window, as on one machine
            return Served("deferred", f"the maintenance window is closed: {window.reason}")
        wave = next(i for i, w in enumerate(run.params["waves"]) if claim.service in w)
        ctx = RunContext(view, store, router, fleet=fleet, actor=run.actor, clock=clock,
                         on_event=on_event, notifier=Notifier([]))
        children = ChildRuns(ctx, rollouts, raise_lock_held=True)
        try:
            outcome = children.service(run, campaign, claim.service, wave,
                                       lambda _s: _may_flip(store, run, campaign, clock))
        except LockHeld as exc:  # a live holder: it ends the service, or gives it up
            return Served("queued", exc.message)
    if outcome.outcome is Outcome.DONE:
        return Served("done", "done")
    if outcome.outcome is Outcome.DEFERRED:
        return Served("deferred", "the window closed before the flip, or approval is awaited")
    hosts = len(fleet.service(claim.service).blue)
    return Served("failed", str(outcome), failed_hosts=hosts)


def _refusal(view: LoadedConfig, run: Run | None, claim: Claim) -> str | None:
    """Why this worker must not act on `claim`, or None."""
    if run is None or run.kind != "campaign":
        return f"{claim.campaign_run} is no campaign run of this store"
    if run.status != "running":
        return f"campaign run {run.run_id} is {run.status}"
    if not any(claim.service in wave for wave in run.params.get("waves", [])):
        return f"{claim.service} is not a service of campaign run {run.run_id}"
    if claim.service not in view.services:
        return f"{claim.service} is not a service of site {view.site}"
    return None


def _may_flip(store: StateStore, run: Run, campaign: Campaign,
              clock: Callable[[], datetime]) -> str | None:
    """Asked by the child right before its flip: manual approval, then the window."""
    if campaign.approval.mode == "manual" and campaign.approval.at == "before_flip":
        if APPROVAL not in Journal(store, run.run_id).ended():
            return f"awaiting manual approval (`bluegreen campaign approve {campaign.name}`)"
    state = window_state(campaign.window, clock())
    return None if state.open else state.reason
