"""The per-service rollout: precheck -> patch standby -> verify -> canary (the bake's
exposure steps, when configured) -> flip -> bake -> done.

Every step is journaled before and after it runs; a killed run (even `kill -9`) resumes from
the journal with `resume`: ended steps are skipped (they give back what they found, see
`steps.base.Step`), the others run again (they are idempotent). Invariants kept here and in
the steps:
- traffic never moves to a side whose last verification failed or predates its patch;
- the router is the truth about the live side; a disagreeing store stops the run;
- the live side is never touched (Ansible is limited to the standby's inventory group);
- a flip that degrades during bake is flipped back automatically.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.config.loaded import LoadedConfig, parse_package_arg
from orchestrator.config.models import PackageSpec
from orchestrator.errors import BluegreenError
from orchestrator.inventory import Fleet
from orchestrator.rollout.context import Event, RunContext, new_run_id
from orchestrator.rollout.records import StepRecord
from orchestrator.rollout.recovery import check_traffic, ends_recorded
from orchestrator.rollout.steps.bake import Bake
from orchestrator.rollout.steps.base import Step
from orchestrator.rollout.steps.canary import Canary
from orchestrator.rollout.steps.flip import Flip
from orchestrator.rollout.steps.patch import Patch, patch_level
from orchestrator.rollout.steps.precheck import Precheck
from orchestrator.rollout.steps.verify import Verify
from orchestrator.rollout.tools import RolloutTools
from orchestrator.routers.base import Router
from orchestrator.state.base import StateStore
from orchestrator.state.models import Run
from orchestrator.traffic import failpoints

# new_run_id (context) and patch_level (steps.patch) are also importable from here
__all__ = ["PIPELINE", "STEPS", "Rollout", "RolloutResult", "new_run_id", "patch_level"]

PIPELINE: tuple[Step, ...] = (Precheck(), Patch(), Verify(), Canary(), Flip(), Bake())
STEPS = tuple(step.name for step in PIPELINE)


@dataclass
class RolloutResult:
    run_id: str
    service: str
    status: str
    from_side: str | None
    to_side: str | None
    message: str
    seconds: float
    steps: dict[str, StepRecord] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "service": self.service, "status": self.status,
            "from": self.from_side, "to": self.to_side, "message": self.message,
            "seconds": round(self.seconds, 2),
            "steps": {name: record.as_dict() for name, record in self.steps.items()},
        }


class Rollout:
    """One service's rollout. Build it, then call `start()` or `resume(run)`."""

    def __init__(self, config: LoadedConfig, store: StateStore, router: Router, *, actor: str,
                 on_event: Callable[[Event], None] | None = None,
                 advisories: Sequence[dict[str, Any]] = (),
                 may_flip: Callable[[str], str | None] | None = None,
                 tools: RolloutTools | None = None, fleet: Fleet | None = None) -> None:
        self.tools = tools or RolloutTools()
        self.fleet = fleet  # the inventory, parsed once for the command (here if not given)
        self.config, self.store, self.router, self.actor = config, store, router, actor
        self.on_event = on_event or (lambda _e: None)
        self.advisories = list(advisories)
        self.may_flip = may_flip  # a campaign's hook: None allows the flip, else why not

    def start(self, service: str, packages: Sequence[PackageSpec] | None = None, *,
              reason: str | None = None, run_id: str | None = None, kind: str = "rollout",
              extra_params: dict[str, Any] | None = None) -> RolloutResult:
        svc = self.config.service(service)
        chosen = list(packages) if packages else list(svc.patch.packages)
        params = {
            "packages": [str(p) for p in chosen],
            "security_updates": not chosen and svc.patch.security_updates,
            **(extra_params or {}),  # e.g. {"campaign_run": ID} for a campaign's child run
        }
        self._check_inputs(service)
        run_id = run_id or new_run_id(service)
        self.store.acquire_lock(service, run_id)
        try:
            run = self.store.create_run(run_id, kind, service, params, self.actor, reason=reason)
        except BaseException:
            self.store.release_lock(service, run_id)
            raise
        return self._drive(run)

    def _check_inputs(self, service: str) -> None:
        """Bad input (inventory, playbook path) fails here, before the lock or the run is
        written: bad input changes nothing, not even the audit chain."""
        if not self.tools.check_inputs:
            return
        fleet = self._fleet()
        if fleet is not None:
            fleet.service(service)
        self.config.playbook_path(service)

    def _fleet(self) -> Fleet | None:
        if self.fleet is None and self.tools.check_inputs:
            from orchestrator.inventory import load_fleet

            self.fleet = load_fleet(self.config)
        return self.fleet

    def resume(self, run: Run) -> RolloutResult:
        if run.service is None:
            raise BluegreenError(f"run {run.run_id} has no service")
        self.store.acquire_lock(run.service, run.run_id)  # takes over a dead holder's lock
        from orchestrator.patching.ssh import remove_stale_run_dirs

        remove_stale_run_dirs()  # what the killed run left: its ansible-runner artifacts
        self.on_event(Event(run.run_id, "resume", "info", f"resuming {run.run_id}"))
        return self._drive(run)

    def _context(self, run: Run) -> RunContext:
        packages = [parse_package_arg(p) for p in run.params.get("packages", [])]
        return RunContext(
            self.config, self.store, self.router, self.tools, run, self.actor, self.on_event,
            packages, patch_level(packages, bool(run.params.get("security_updates"))),
            self.advisories, self.may_flip)

    # ---- the state machine ---------------------------------------------------------------
    def _drive(self, run: Run) -> RolloutResult:
        started = time.monotonic()
        ctx = self._context(run)
        result = RolloutResult(run.run_id, ctx.service, "running", None, None, "", 0.0)
        with ends_recorded(ctx):
            ctx.fleet = self._fleet()
            journal = self.store.journal(run.run_id)
            ended = {e.step: e.data for e in journal if e.phase == "end"}
            for step in PIPELINE:
                if step.name in ended:
                    step.resume(ctx, ended[step.name])
            check_traffic(ctx, set(ended), {e.step for e in journal if e.phase == "begin"})
            if "flip" in ended:
                ctx.run_again.clear()  # traffic moved already: nothing left to bind
            for step in PIPELINE:
                self._sides(result, ctx)
                if step.name in ended and step.name not in ctx.run_again:
                    continue
                if isinstance(step, Canary) and not step.applies(ctx):
                    continue  # no bake.steps: not journaled, the rollout as before
                ctx.check_not_aborted()
                self.store.journal_begin(run.run_id, step.name, {"at": _now()})
                failpoints.hit(f"{step.name}:begin")
                ctx.emit(step.name, "begin", step.name)
                record = step.run(ctx)
                data = record.as_dict()
                self.store.journal_end(run.run_id, step.name, data)
                failpoints.hit(f"{step.name}:end")
                result.steps[step.name] = record
                ctx.emit(step.name, "end", record.describe(), data)
            self._sides(result, ctx)
            result.status, result.message = "done", (
                f"{ctx.service}: {result.to_side} is live and patched ({ctx.level}); "
                f"{result.from_side} kept as standby")
            self.store.finish_run(run.run_id, "done", result.message)
        result.seconds = time.monotonic() - started
        return result

    @staticmethod
    def _sides(result: RolloutResult, ctx: RunContext) -> None:
        if ctx.plan is not None:
            result.from_side, result.to_side = ctx.plan.live, ctx.plan.standby


def _now() -> str:
    return datetime.now(UTC).isoformat()
