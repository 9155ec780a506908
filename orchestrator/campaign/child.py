"""One service of a campaign run, patched through its own child run of kind "rollout":
the journal's `service:NAME` step begun with the child's run id before the child exists
(so a kill -9 in between resumes it), the child started, resumed or read back when it
already ended, and what became of the service recorded as the step's end."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.campaign.context import RunContext
from orchestrator.campaign.events import now_text
from orchestrator.campaign.journal import (
    DEFERRED_OUTCOME,
    DONE,
    ROLLED_BACK,
    Journal,
    ServiceOutcome,
    Step,
    StepKind,
)
from orchestrator.campaign.model import Campaign, advisories_for, packages_for
from orchestrator.campaign.state import engine_result_from_run, standby_versions
from orchestrator.config.loaded import LoadedConfig
from orchestrator.errors import BluegreenError, LockHeld, OutsideWindow, RolledBack, StateError
from orchestrator.inventory import Fleet
from orchestrator.routers.base import Router
from orchestrator.state.base import StateStore
from orchestrator.state.models import RESUMABLE_STATUSES, Run

if TYPE_CHECKING:
    from orchestrator.rollout.runner import Rollout


class RolloutFactory(Protocol):
    """Makes a service's child rollout (tests: one with fakes, `orchestrator.testing`)."""

    def __call__(self, config: LoadedConfig, store: StateStore, router: Router, *, actor: str,
                 on_event: Callable[[Any], None], advisories: Sequence[dict[str, Any]],
                 may_flip: Callable[[str], str | None], fleet: Fleet) -> Rollout: ...


def real_rollout(config: LoadedConfig, store: StateStore, router: Router, *, actor: str,
                 on_event: Callable[[Any], None], advisories: Sequence[dict[str, Any]],
                 may_flip: Callable[[str], str | None], fleet: Fleet) -> Rollout:
    from orchestrator.rollout.runner import Rollout

    return Rollout(config, store, router, actor=actor, on_event=on_event,
                   advisories=advisories, may_flip=may_flip, fleet=fleet)


def recorded_outcome(end: dict[str, Any]) -> ServiceOutcome:
    """What became of a service, from its journal step's end record."""
    status = end.get("status")
    if status == DONE.outcome:
        return DONE
    if status == ROLLED_BACK.outcome:
        return ROLLED_BACK
    if status == DEFERRED_OUTCOME.outcome:
        return DEFERRED_OUTCOME
    return ServiceOutcome.failed(int(end.get("exit_code") or 1))


class ChildRuns:
    """The child rollouts of one campaign run (in this thread's store and router)."""

    def __init__(self, ctx: RunContext, rollouts: RolloutFactory | None = None, *,
                 raise_lock_held: bool = False) -> None:
        self.ctx = ctx
        self._rollouts = rollouts or real_rollout
        self._raise_lock_held = raise_lock_held
        """A worker's: LockHeld (the service's run lock has a live holder) is raised with
        nothing recorded, for the worker to give the service back to the queue."""

    def service(self, run: Run, campaign: Campaign, svc: str, wave: int,
                may_flip: Callable[[str], str | None]) -> ServiceOutcome:
        """Patch one service through its child rollout; what became of it. `may_flip` is
        asked by the child right before its flip (None: go ahead, else why not)."""
        from orchestrator.rollout.context import new_run_id

        ctx = self.ctx
        step = Step.of_service(svc)
        journal = Journal(ctx.store, run.run_id)
        ended = journal.ended().get(step)
        if ended is not None:  # another worker's child ended it (that worker lost its queue)
            return recorded_outcome(ended)
        begun = journal.begun().get(step)
        engine = self._rollouts(
            ctx.config,
            ctx.store,
            ctx.router,
            actor=ctx.actor,
            on_event=lambda ev: self._child_event(svc, ev),
            advisories=[a.model_dump(mode="json") for a in advisories_for(campaign, svc)],
            may_flip=may_flip,
            fleet=ctx.fleet,
        )
        try:
            child = ctx.store.get_run(begun["child_run"]) if begun else None
            if begun and child is not None and child.status not in RESUMABLE_STATUSES:
                out = engine_result_from_run(child)
            elif begun and child is not None:
                out = engine.resume(child).as_dict()
            else:
                child_id = begun["child_run"] if begun else new_run_id(svc)
                if not begun:
                    before = standby_versions(ctx.config, ctx.router, svc, campaign, ctx.fleet)
                    journal.begin(step, {"child_run": child_id, "wave": wave, "before": before})
                out = engine.start(
                    svc,
                    packages_for(campaign, svc),
                    reason=f"campaign {campaign.name}",
                    run_id=child_id,
                    extra_params={"campaign_run": run.run_id, "campaign": campaign.name},
                ).as_dict()
        except OutsideWindow:
            return DEFERRED_OUTCOME
        except RolledBack as exc:
            ctx.notifier.send("rolled_back", service=svc, error=exc.message)
            self._end(journal, step, ROLLED_BACK, exc)
            return ROLLED_BACK
        except BluegreenError as exc:
            if isinstance(exc, LockHeld) and self._raise_lock_held:
                raise
            ctx.check_not_aborted(run.run_id)
            ctx.notifier.send("failed", service=svc, error=exc.message)
            failed = ServiceOutcome.failed(exc.exit_code)
            self._end(journal, step, failed, exc)
            return failed
        status = str(out.get("status", "done"))
        try:
            journal.end(step, {"status": status, "from": out.get("from"), "to": out.get("to"),
                               "at": now_text()})
        except StateError:  # ended meanwhile by the child's first worker: its record holds
            ended = journal.ended().get(step)
            if ended is None:
                raise
            return recorded_outcome(ended)
        ctx.emit("service", f"{svc}: {out.get('message', status)}", {"service": svc})
        return DONE if status == "done" else ServiceOutcome.failed(1)

    def hosts_done(self, run_id: str) -> int:
        """Hosts of the services that ended (their standby's hosts, as recorded at begin)."""
        journal = Journal(self.ctx.store, run_id)
        begun, ends = journal.begun(), journal.ended()
        return sum(
            len((begun.get(step) or {}).get("before") or {})
            for step in ends
            if step.kind is StepKind.SERVICE
        )

    def _end(self, journal: Journal, step: Step, outcome: ServiceOutcome,
             exc: BluegreenError) -> None:
        if step not in journal.begun():
            journal.begin(step, {"child_run": None})
        status = str(outcome.outcome)
        journal.end(
            step,
            {"status": status, "error": exc.message, "exit_code": exc.exit_code,
             "at": now_text()},
        )
        self.ctx.emit("service", f"{step.service}: {status}: {exc.message}",
                      {"service": step.service})

    def _child_event(self, service: str, ev: Any) -> None:
        if ev.step == "flip" and ev.phase == "end":
            self.ctx.notifier.send(
                "service_flipped",
                service=service,
                **{k: ev.data.get(k) for k in ("from", "to")},
            )
        noisy = ev.step == "patch" and ev.data.get("status") not in (
            "changed",
            "failed",
            "unreachable",
        )
        if ev.phase in ("begin", "end") or (ev.phase == "progress" and not noisy):
            self.ctx.emit("step", f"{service} [{ev.step}] {ev.message}", {"service": service})
